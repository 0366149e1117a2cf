import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "facelabel.settings")

app = Celery("facelabel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def worker_argv(queues: str = "inference,exports,default", name: str = "worker") -> list[str]:
    """The command line of one worker process with one pool child, as `make run` starts them;
    TensorFlow is loaded in the child after the fork, never in the parent."""
    import sys

    return [
        sys.executable, "-m", "celery", "-A", "facelabel", "worker", "-Q", queues, "-n", f"{name}@%h",
        "--concurrency", "1", "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle",
        "--loglevel", "INFO",
    ]  # fmt: skip
