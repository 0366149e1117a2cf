"""Celery tasks for training: thin, take ids, safe to repeat."""

from celery import shared_task

from . import runner, services

# One trial can take a day on CPU. Acknowledged when done and re-delivered if the worker dies;
# the re-delivery finds the trial no longer queued and does nothing, and `fail_lost_trials` marks
# it failed once its heartbeat is stale, so a trial is never "running" forever.
# It runs on the "training" queue (CELERY_TASK_ROUTES).
TRAINING_TASK = {"acks_late": True, "reject_on_worker_lost": True}


@shared_task(**TRAINING_TASK, soft_time_limit=3 * 24 * 3600, time_limit=3 * 24 * 3600 + 600)
def run_trial(trial_id: int) -> None:
    if services.trial_claim(trial_id):
        runner.run(trial_id)


@shared_task(ignore_result=True)
def fail_lost_trials() -> None:
    """Periodic: trials whose worker died are marked failed, trials whose message was lost are
    queued again. Safe to run anywhere, any time."""
    services.trials_fail_lost()
    for trial_id in services.trials_requeue_waiting():
        run_trial.delay(trial_id)
