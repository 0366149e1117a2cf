"""Celery tasks: thin, take ids, safe to repeat (the run claims itself first)."""

from celery import shared_task

from inference.tasks import ML_TASK

from . import services


@shared_task(**ML_TASK, soft_time_limit=1800, time_limit=1860)
def audit_project(run_id: int) -> None:
    services.audit_execute(run_id)
