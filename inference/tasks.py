"""Celery tasks: thin, take ids, safe to repeat (every service claims its rows first)."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from django.conf import settings

from facelabel.celery import ML_TASK

from . import services

logger = logging.getLogger(__name__)


@shared_task(**ML_TASK, soft_time_limit=600, time_limit=660)
def label_batch(batch_id: int) -> None:
    try:
        more = services.batch_label(batch_id)
    except SoftTimeLimitExceeded:
        # Claimed rows go stale and are picked up again; start the continuation now.
        more = True
    if more:
        label_batch.delay(batch_id)


@shared_task(ignore_result=True)
def recover_stalled_labeling() -> None:
    """The schedule's labeling sweep: waiting images get labeled whether or not their task ever
    ran. Two schedulers running it at once queue duplicate tasks, which the row claims make
    harmless."""
    services.batches_reopen_waiting()
    for batch_id in services.batches_stalled():
        if services.batch_touch(batch_id):
            logger.info("re-queueing stalled batch %s", batch_id)
            _queue_label_tasks(batch_id)


@shared_task(ignore_result=True)
def relabel_outdated_images() -> None:
    """Opt-in projects: relabel what an older model version labeled, once a new one is active."""
    if services.images_mark_outdated():
        recover_stalled_labeling.delay()


def queue_batch_labeling(batch_id: int) -> None:
    """Queue the labeling of a batch. If the broker is unreachable the batch stays pending and
    the recovery sweep queues it later: the upload itself never fails for that."""
    try:
        _queue_label_tasks(batch_id)
    except Exception:
        logger.exception("could not queue batch %s; the recovery sweep will", batch_id)


def _queue_label_tasks(batch_id: int) -> None:
    # Several tasks share one batch through row claims, so more workers finish it sooner.
    for _ in range(max(1, settings.LABEL_TASKS_PER_BATCH)):
        label_batch.delay(batch_id)


@worker_ready.connect
def _recover_on_start(sender=None, **kwargs) -> None:
    # A worker that starts after a crash should not wait a whole sweep interval to resume work.
    recover_stalled_labeling.delay()
