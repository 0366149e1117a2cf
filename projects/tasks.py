"""Celery tasks: thin, take ids (or nothing), safe to repeat."""

from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def sweep_orphan_files() -> None:
    """Scheduled (ORPHAN_SWEEP_INTERVAL): remove leftovers of uploads that died half-way."""
    services.files_sweep()
