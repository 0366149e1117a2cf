"""Celery tasks: thin, take ids, safe to repeat (the run claims itself first)."""

import logging

from celery import shared_task
from celery.signals import worker_ready

from facelabel.celery import ML_TASK

from . import services

logger = logging.getLogger(__name__)


@shared_task(**ML_TASK, soft_time_limit=1800, time_limit=1860)
def audit_project(run_id: int) -> None:
    services.audit_execute(run_id)


@shared_task(ignore_result=True)
def recover_stalled_audits() -> None:
    """The schedule's sweep of this app (RECOVERY_INTERVAL): runs whose message was lost or whose
    worker died are queued again; the run's claim makes a duplicate harmless."""
    for run_id in services.runs_stalled():
        logger.info("re-queueing stalled audit run %s", run_id)
        services.queue_audit(run_id)


@worker_ready.connect
def _recover_on_start(sender=None, **kwargs) -> None:
    # A worker that starts after a crash should not wait a whole sweep interval to resume work.
    recover_stalled_audits.delay()
