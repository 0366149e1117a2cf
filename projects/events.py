"""What happens to a project's work, announced once for the apps above this one.

Django signals rather than an orchestration module: the listeners live in higher apps (inference
labels batches, audit audits them, webhooks tell the outside world), and this app must import
none of them. Each listening app connects one-line receivers in its own `receivers.py` (loaded by
its AppConfig.ready) that call one of its services, so adding a listener changes only the app
that listens. Receivers run in the sender's transaction, and an error in one propagates to the
sender, as a direct call did: work that must wait for the commit queues itself with on_commit.
"""

from django.db import transaction
from django.db.models import F
from django.dispatch import Signal

from .models import Project

# A batch holds images waiting for the model: an upload committed a slice, an abandoned upload
# was closed. Arguments: batch_id. Sent after the commit.
batch_waiting = Signal()

# Every image of a batch is labeled or failed. Arguments: batch_id. Sent inside the transaction
# that marks the batch done, exactly once per batch finishing.
batch_finished = Signal()

# An export's ZIP is stored and ready to download. Arguments: export_id. Sent inside the
# transaction that marks it ready.
export_ready = Signal()


def images_changed(project_id: int) -> None:
    """Some of the project's images changed (added, labeled, reviewed, audited, deleted): the
    counts cached for the review grid, the summary and the health page (selectors) are no longer
    to be trusted. Every writer of images calls this; the counts also expire on their own after
    GRID_COUNT_CACHE_SECONDS, should one not."""
    # After the commit, or a count read in between would be cached under the new version; and
    # not holding the project's row while the writer's transaction runs.
    transaction.on_commit(
        lambda: Project.objects.filter(id=project_id).update(images_version=F("images_version") + 1)
    )
