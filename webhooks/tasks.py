"""Celery tasks: thin, take ids, safe to repeat (a finished delivery is left alone)."""

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from . import services


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_webhook(self, delivery_id: int) -> None:
    retry_in = services.delivery_send(delivery_id)
    if retry_in is not None:
        # The delivery row counts attempts and stops at WEBHOOK_MAX_ATTEMPTS; Celery's own cap is
        # the same number, as a second bound.
        raise self.retry(countdown=retry_in, max_retries=settings.WEBHOOK_MAX_ATTEMPTS)


@shared_task(ignore_result=True)
def recover_stalled_deliveries() -> None:
    """The schedule's sweep of this app (RECOVERY_INTERVAL): deliveries whose message was lost are
    sent again; a delivery that is no longer pending is left alone."""
    for delivery_id in services.deliveries_stalled():
        deliver_webhook.delay(delivery_id)


@worker_ready.connect
def _recover_on_start(sender=None, **kwargs) -> None:
    # A worker that starts after a crash should not wait a whole sweep interval to resume work.
    recover_stalled_deliveries.delay()
