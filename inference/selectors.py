"""Reads: which model version labels new images."""

from .models import ModelVersion


def active_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()
