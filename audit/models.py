from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditRun(models.Model):
    """One confident-learning pass over a project's originally labeled images. Its per-image
    verdicts live on projects.Image (label_quality, likely_mislabeled, suggested_label); the run
    keeps the dataset-level figures for the health page."""

    class Kind(models.TextChoices):
        MODEL = "model", _("the labeling model's probabilities")
        CROSS_VALIDATED = "cross_validated", _("cross-validated on the model's features")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")
        # A newer run finished first; this one's results were dropped, not written.
        SUPERSEDED = "superseded", _("superseded")

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="audit_runs")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.MODEL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    image_count = models.PositiveIntegerField(default=0)
    flagged_count = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "status"])]

    def __str__(self) -> str:
        return f"Audit {self.pk} of {self.project} ({self.kind})"

    @property
    def seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return round((self.finished_at - self.started_at).total_seconds(), 2)
        return None
