from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    class Preprocessing(models.TextChoices):
        MINUS_ONE_ONE = "minus_one_one", "scale to [-1, 1]"
        ZERO_ONE = "zero_one", "scale to [0, 1]"

    name = models.CharField(max_length=100, unique=True)
    file = models.FileField(upload_to="models/")
    # The same model quantized to int8 for LiteRT (`manage.py quantize_model`): several times
    # faster on a CPU; what it costs in agreement with the crowd is in `metrics["int8"]`.
    int8_file = models.FileField(upload_to="models/", blank=True)
    input_size = models.PositiveSmallIntegerField(default=64)
    grayscale = models.BooleanField(default=True)
    class_order = models.JSONField(default=list, help_text="The model's output classes, in order.")
    preprocessing = models.CharField(
        max_length=20, choices=Preprocessing.choices, default=Preprocessing.MINUS_ONE_ONE
    )
    metrics = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_model_version"
            )
        ]

    def __str__(self) -> str:
        return self.name
