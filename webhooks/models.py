import secrets

from django.conf import settings
from django.db import models


class Event(models.TextChoices):
    BATCH_FINISHED = "batch.finished"
    EXPORT_READY = "export.ready"


def all_events() -> list[str]:
    return list(Event.values)


def new_secret() -> str:
    # 32 random bytes: as strong as the SHA-256 key it feeds, and URL-safe for copy and paste.
    return secrets.token_urlsafe(32)


class Webhook(models.Model):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=500)
    secret = models.CharField(max_length=64, default=new_secret)
    events = models.JSONField(default=all_events, help_text=f"a subset of {Event.values}")
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.url} ({self.project})"


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=30, choices=Event.choices)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # Counted when an attempt starts, so an attempt that crashes the worker still counts.
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="the first 2000 characters")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["webhook", "-created_at"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.event} #{self.pk} to {self.webhook.url}"
