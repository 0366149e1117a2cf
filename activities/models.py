from django.conf import settings
from django.db import models


class DanceScore(models.Model):
    """One finished round of Joy's dance challenge by a logged-in visitor; anonymous rounds are
    scored but not kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dance_scores")
    score = models.PositiveIntegerField()
    perfect = models.PositiveSmallIntegerField()
    good = models.PositiveSmallIntegerField()
    best_combo = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-score", "-created_at"]
        indexes = [models.Index(fields=["user", "-score"], name="dance_best_by_user")]

    def __str__(self) -> str:
        return f"{self.user} · {self.score}"
