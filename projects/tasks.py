"""Celery tasks: thin, take ids (or nothing), safe to repeat."""

import logging

from celery import shared_task
from celery.signals import worker_ready

from facelabel.celery import ML_TASK

from . import exports, services

logger = logging.getLogger(__name__)


@shared_task(**ML_TASK, soft_time_limit=3600, time_limit=3660)
def export_project_zip(export_id: int) -> None:
    exports.export_build(export_id)


@shared_task(ignore_result=True)
def recover_stalled_work() -> None:
    """The schedule's sweep of this app (RECOVERY_INTERVAL): uploads whose request died are
    closed (their images then get labeled), exports whose message was lost or whose worker died
    are queued again. A duplicate task is harmless: the export claims its row first."""
    services.uploads_close_abandoned()
    for export_id in exports.exports_stalled():
        logger.info("re-queueing stalled export %s", export_id)
        export_project_zip.delay(export_id)


@shared_task(ignore_result=True)
def sweep_orphan_files() -> None:
    """Scheduled (ORPHAN_SWEEP_INTERVAL): remove leftovers of uploads that died half-way."""
    services.files_sweep()


@worker_ready.connect
def _recover_on_start(sender=None, **kwargs) -> None:
    # A worker that starts after a crash should not wait a whole sweep interval to resume work.
    recover_stalled_work.delay()
