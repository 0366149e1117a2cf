import os

from celery import Celery
from django.db import InterfaceError, OperationalError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "facelabel.settings")

app = Celery("facelabel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Long work (labeling, exports, audits): acknowledged only when done, re-delivered if the worker
# dies, retried a bounded number of times on database hiccups (SQLite busy, a PostgreSQL
# failover, a killed connection: the retry runs on a new one, Celery closes the broken connection
# before each task).
ML_TASK = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": 5,
}


def worker_argv(queues: str = "inference,exports,default", name: str = "worker") -> list[str]:
    """The command line of one worker process with one pool child, as `make run` starts them;
    TensorFlow is loaded in the child after the fork, never in the parent."""
    import sys

    return [
        sys.executable, "-m", "celery", "-A", "facelabel", "worker", "-Q", queues, "-n", f"{name}@%h",
        "--concurrency", "1", "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle",
        "--loglevel", "INFO",
    ]  # fmt: skip
