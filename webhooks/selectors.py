"""Reads: a project's webhooks and their deliveries."""

from django.db.models import QuerySet
from django.http import Http404

from projects.models import Project

from .models import Webhook, WebhookDelivery


def webhooks_of(project: Project) -> QuerySet[Webhook]:
    return Webhook.objects.filter(project=project).select_related("created_by").order_by("id")


def webhook_get(project: Project, webhook_id: int) -> Webhook:
    webhook = Webhook.objects.filter(project=project, id=webhook_id).select_related("created_by").first()
    if webhook is None:
        raise Http404("No such webhook.")
    return webhook


def deliveries_of(webhook: Webhook) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(webhook=webhook).order_by("-created_at", "-id")
