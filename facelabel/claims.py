"""Claiming a job row, keeping the claim alive, and letting go of it after a fault.

Every long job (a labeling chunk, an export, an audit, a trial, an upload) claims its row with
`job_claim` (a status, a token and a timestamp); a sweep (`jobs_stalled`) takes over rows whose
timestamp went stale. `ClaimHeartbeat`
refreshes that timestamp from a thread of its own while the job runs, so the stale limit can be a
few beats (seconds) instead of the longest step a job might take (minutes), and a dead worker's
job is picked up within a minute. `on_fresh_connection` writes a failure after the database
connection may have died under the job (a database restart, `pg_terminate_backend`).
"""

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from django.db import DatabaseError, InterfaceError, connection
from django.db.models import Q, QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A claim counts as abandoned after this many missed beats.
BEATS_PER_TIMEOUT = 3
FRESH_WRITE_TRIES = 3


class ClaimHeartbeat:
    """Call `beat` every `timeout / BEATS_PER_TIMEOUT` seconds while the `with` block runs.

    The beat runs on the thread's own database connection, closed after every beat so that a
    connection killed between two beats costs one missed beat, not the claim. A claim made
    inside an open transaction (a caller's atomic block, a test) is invisible to other
    connections, so nothing can take it over and no thread is started.
    """

    def __init__(self, beat: Callable[[], object], timeout: float, name: str = "claim"):
        self.beat = beat
        self.interval = max(timeout / BEATS_PER_TIMEOUT, 0.05)
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ClaimHeartbeat":
        if not connection.in_atomic_block:
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.name}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:
                logger.warning("heartbeat of %s failed; trying again next beat", self.name, exc_info=True)
            finally:
                connection.close()


def on_fresh_connection(write: Callable[[], T]) -> T:
    """Run a write (a job's failure or release) on a new connection: the one the job used may
    have died with the fault being reported, and a write on it would fail too, leaving the job
    claimed until its heartbeat goes stale. A brief outage gets a few tries."""
    attempt = 1
    while True:
        if not connection.in_atomic_block:  # inside a transaction, closing would lose its work
            connection.close()
        try:
            return write()
        except (DatabaseError, InterfaceError):
            if attempt >= FRESH_WRITE_TRIES or connection.in_atomic_block:
                raise
        time.sleep(attempt)
        attempt += 1


def job_claim(
    jobs: QuerySet,
    *,
    waiting: str,
    running: str,
    stale_after: float | None,
    stamp: str = "claimed_at",
    **claimed,
) -> int:
    """Move the rows of `jobs` that wait, or that run under a claim stale for `stale_after`
    seconds, to `running`, stamping `stamp` with the time and writing `claimed` (a token, an
    attempt count). Returns how many rows this worker got.

    The WHERE clause is re-checked under each row's lock, so of two racing workers only one gets
    each row; the loser gets none (or fewer) and moves on.
    """
    now = timezone.now()
    stale_before = None if stale_after is None else now - timedelta(seconds=stale_after)
    rows = jobs.filter(claimable(waiting=waiting, running=running, stale_before=stale_before, stamp=stamp))
    return rows.update(status=running, **{stamp: now}, **claimed)


def claimable(*, waiting: str, running: str, stale_before, stamp: str = "claimed_at") -> Q:
    """Rows a worker may claim: waiting ones, and running ones whose claim went stale (none
    when `stale_before` is None)."""
    if stale_before is None:
        return Q(status=waiting)
    return Q(status=waiting) | Q(status=running, **{f"{stamp}__lt": stale_before})


def job_fail(mine: QuerySet, exc: Exception, *, retry: bool, waiting: str, failed: str) -> None:
    """A claimed job (`mine`: its row, still under our token) hit `exc`: give it back for another
    try, or fail it, on a fresh connection (see on_fresh_connection)."""
    status = waiting if retry else failed
    error = str(exc)[:2000]
    on_fresh_connection(lambda: mine.update(status=status, error=error))


def jobs_stalled(
    jobs: QuerySet,
    *,
    waiting: str,
    running: str,
    failed: str,
    stale_after: float,
    max_attempts: int,
    error: str,
) -> list[int]:
    """Jobs nobody works on although someone should: waiting longer than `stale_after` (their
    message was lost) or running under a stale claim (their worker died). Running ones out of
    tries fail with `error` instead."""
    stale_before = timezone.now() - timedelta(seconds=stale_after)
    stale_running = Q(status=running, claimed_at__lt=stale_before)
    jobs.filter(stale_running, attempts__gte=max_attempts).update(status=failed, error=error)
    return list(
        jobs.filter(Q(status=waiting, created_at__lt=stale_before) | stale_running)
        .order_by("id")
        .values_list("id", flat=True)
    )
