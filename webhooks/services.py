"""Writes: webhooks of a project, the deliveries an event creates, and sending one delivery.

A delivery is a row first and an HTTP request second: the event commits the rows, a Celery task
sends each one, and the row records every attempt, so the admin shows what the receiver answered.
"""

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import requests
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone

from projects.models import Batch, Export, Image, Project

from .models import Event, Webhook, WebhookDelivery, new_secret
from .targets import UnresolvableHost, pinned_post, target_check, target_validate

logger = logging.getLogger(__name__)

MAX_WEBHOOKS_PER_PROJECT = 20  # every event fans out to each of them
RESPONSE_BODY_CHARS = 2000
MAX_BACKOFF_SECONDS = 600
USER_AGENT = "facelabel-webhooks/1"


# --- webhooks -----------------------------------------------------------------------------------


def webhook_create(*, project: Project, user, url: str, events: list[str] | None = None) -> Webhook:
    url = url.strip()
    target_validate(url)
    events = _clean_events(events)
    with transaction.atomic():
        # Counted under the project's row lock so two parallel requests cannot both pass the cap.
        Project.objects.select_for_update().filter(id=project.id).first()
        if Webhook.objects.filter(project=project).count() >= MAX_WEBHOOKS_PER_PROJECT:
            raise ValidationError(
                {NON_FIELD_ERRORS: f"A project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks."}
            )
        return Webhook.objects.create(project=project, url=url, events=events, created_by=user)


def webhook_update(
    *,
    webhook: Webhook,
    url: str | None = None,
    events: list[str] | None = None,
    is_active: bool | None = None,
    rotate_secret: bool = False,
) -> Webhook:
    fields = []
    if url is not None:
        webhook.url = url.strip()
        target_validate(webhook.url)
        fields.append("url")
    if events is not None:
        webhook.events = _clean_events(events)
        fields.append("events")
    if is_active is not None:
        webhook.is_active = is_active
        fields.append("is_active")
    if rotate_secret:
        webhook.secret = new_secret()
        fields.append("secret")
    if fields:
        webhook.save(update_fields=fields)
    return webhook


def webhook_delete(*, webhook: Webhook) -> None:
    # Its deliveries go with it; a task still queued for one of them finds nothing and stops.
    webhook.delete()


def _clean_events(events: list[str] | None) -> list[str]:
    if events is None:
        return list(Event.values)
    unknown = sorted(set(events) - set(Event.values))
    if unknown:
        raise ValidationError({"events": f"Unknown events {unknown}; choose from {Event.values}."})
    if not events:
        raise ValidationError({"events": "Choose at least one event."})
    return [event for event in Event.values if event in events]  # stable order, no duplicates


# --- events and deliveries ----------------------------------------------------------------------


def webhook_event(project_id: int, event: str, payload: dict) -> list[int]:
    """Record one delivery per active webhook of the project that wants `event` and send each
    one once the surrounding transaction commits. Returns the ids of the new deliveries."""
    if event not in Event.values:
        raise ValueError(f"unknown webhook event {event!r}")
    webhooks = Webhook.objects.filter(project_id=project_id, is_active=True)
    # JSONField `contains` on lists is not supported by SQLite, so the few webhooks are filtered here.
    wanted = [webhook for webhook in webhooks if event in webhook.events]
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(webhook=webhook, event=event, payload=payload) for webhook in wanted
    )
    delivery_ids = [delivery.id for delivery in deliveries]
    for delivery_id in delivery_ids:
        # robust: a broker that is down must not undo the work that fired the event.
        transaction.on_commit(lambda delivery_id=delivery_id: _queue_delivery(delivery_id), robust=True)
    return delivery_ids


def batch_finished_notify(batch_id: int) -> list[int]:
    batch = Batch.objects.get(id=batch_id)
    counts = dict(batch.images.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    payload = {
        "batch": batch.id,
        "status": batch.status,
        "images": batch.image_count,
        "labeled": counts.get(Image.Status.LABELED, 0),
        "failed": counts.get(Image.Status.FAILED, 0),
        "finished_at": batch.finished_at.isoformat(),
    }
    return webhook_event(batch.project_id, Event.BATCH_FINISHED, payload)


def export_ready_notify(export_id: int) -> list[int]:
    export = Export.objects.get(id=export_id)
    path = reverse("projects:export_download", args=[export.project_id, export.id])
    download = settings.SITE_URL.rstrip("/") + path
    payload = {"export": export.id, "images": export.image_count, "download": download}
    return webhook_event(export.project_id, Event.EXPORT_READY, payload)


def _queue_delivery(delivery_id: int) -> None:
    from .tasks import deliver_webhook  # tasks.py imports this module

    deliver_webhook.delay(delivery_id)


def deliveries_stalled() -> list[int]:
    """Pending deliveries that nothing is going to send: their message was lost (broker down
    when the event fired, a worker killed). Quiet for longer than the longest backoff."""
    quiet_since = timezone.now() - timedelta(seconds=MAX_BACKOFF_SECONDS + settings.WEBHOOK_TIMEOUT + 60)
    pending = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
    return list(
        pending.filter(
            Q(last_attempt_at__lt=quiet_since) | Q(last_attempt_at=None, created_at__lt=quiet_since)
        ).values_list("id", flat=True)
    )


def retry_delay(attempts: int) -> int:
    """Seconds to wait after the given number of failed attempts: 2, 4, 8 ... up to 10 minutes."""
    return min(2**attempts, MAX_BACKOFF_SECONDS)


def delivery_send(delivery_id: int) -> int | None:
    """Make one attempt at a pending delivery and record its outcome.

    Returns the seconds to wait before the next attempt when the receiver may succeed later
    (5xx, 429, timeout, connection error), or None when there is nothing more to do: delivered,
    failed for good, out of attempts, already finished, or claimed by a parallel task.
    """
    delivery = WebhookDelivery.objects.select_related("webhook").filter(id=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING or not _claim(delivery):
        return None
    if delivery.webhook.is_active:
        outcome = _post(delivery)
    else:
        outcome = _Outcome(error="The webhook was disabled before this delivery was sent.")
    retry = outcome.retryable and delivery.attempts < settings.WEBHOOK_MAX_ATTEMPTS
    if retry:
        status = WebhookDelivery.Status.PENDING
    else:
        status = WebhookDelivery.Status.SUCCEEDED if outcome.ok else WebhookDelivery.Status.FAILED
    _record(delivery, status, outcome)
    return retry_delay(delivery.attempts) if retry else None


def _claim(delivery: WebhookDelivery) -> bool:
    # Of two tasks holding the same delivery (a re-delivered message) only one makes the attempt.
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        id=delivery.id, status=WebhookDelivery.Status.PENDING, attempts=delivery.attempts
    ).update(attempts=F("attempts") + 1, last_attempt_at=now)
    delivery.attempts += 1
    delivery.last_attempt_at = now
    return claimed == 1


@dataclass(frozen=True)
class _Outcome:
    ok: bool = False
    retryable: bool = False
    status: int | None = None
    body: str = ""
    error: str = ""


def delivery_body(delivery: WebhookDelivery) -> bytes:
    """The exact bytes sent and signed. `sent_at` is inside the signature, so a receiver can
    refuse old replays."""
    document = {
        "delivery": delivery.id,
        "event": delivery.event,
        "project": delivery.webhook.project_id,
        "sent_at": timezone.now().isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(delivery: WebhookDelivery) -> _Outcome:
    webhook = delivery.webhook
    try:
        # Checked again at send time, and the request goes to the address checked now: the
        # host's DNS may point somewhere else since it was saved, or between check and connect.
        target = target_check(webhook.url)
    except UnresolvableHost as exc:
        return _Outcome(retryable=True, error="; ".join(exc.messages))  # maybe a passing DNS outage
    except ValidationError as exc:
        return _Outcome(error="Refused: " + "; ".join(exc.messages))
    body = delivery_body(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Facelabel-Event": delivery.event,
        "X-Facelabel-Delivery": str(delivery.id),
        "X-Facelabel-Signature": signature(webhook.secret, body),
    }
    try:
        with pinned_post(target, data=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT) as response:
            return _judge(response)
    except (requests.Timeout, requests.ConnectionError) as exc:
        return _Outcome(retryable=True, error=f"{type(exc).__name__}: {exc}"[:RESPONSE_BODY_CHARS])
    except requests.RequestException as exc:
        return _Outcome(error=f"{type(exc).__name__}: {exc}"[:RESPONSE_BODY_CHARS])


def _judge(response: requests.Response) -> _Outcome:
    # Read only the start of the answer: a receiver must not make the worker download a large body.
    raw = response.raw.read(RESPONSE_BODY_CHARS * 4, decode_content=True) or b""
    body = raw.decode(response.encoding or "utf-8", errors="replace")[:RESPONSE_BODY_CHARS]
    code = response.status_code
    if 200 <= code < 300:
        return _Outcome(ok=True, status=code, body=body)
    retryable = code == 429 or code >= 500
    error = f"HTTP {code}"
    if 300 <= code < 400:
        error += " (redirects are not followed)"
    return _Outcome(retryable=retryable, status=code, body=body, error=error)


def _record(delivery: WebhookDelivery, status: str, outcome: _Outcome) -> None:
    delivery.status = status
    delivery.response_status = outcome.status
    delivery.response_body = outcome.body
    delivery.error = outcome.error
    fields = ["status", "response_status", "response_body", "error"]
    if status == WebhookDelivery.Status.SUCCEEDED:
        delivery.delivered_at = timezone.now()
        fields.append("delivered_at")
    delivery.save(update_fields=fields)
    if status == WebhookDelivery.Status.FAILED:
        logger.warning(
            "webhook delivery %s failed (attempt %s): %s", delivery.id, delivery.attempts, outcome.error
        )
