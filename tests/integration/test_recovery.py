"""QUALITY.md 29-30 with real processes on PostgreSQL and Redis: a worker SIGKILLed while it holds
a claim, every database connection terminated under a working worker, a web process killed in
the middle of an upload. With the embedded timings (claims beat every LABEL_CLAIM_TIMEOUT / 3,
the sweep runs every RECOVERY_INTERVAL), every image ends labeled exactly once within 60 s."""

import contextlib
import threading
import time
import uuid

import pytest
import requests
from django.conf import settings

from tests.conftest import zip_bytes
from tests.factories import face_jpeg
from tests.integration.stack import HTTP_TIMEOUT
from tests.integration.test_pipeline import create_project, upload

pytestmark = pytest.mark.integration

RECOVERY_LIMIT = 60
# What a deployment gets without setting anything: the embedded defaults, not the tests' short ones.
EMBEDDED_TIMINGS = {
    "LABEL_CLAIM_TIMEOUT": settings.LABEL_CLAIM_TIMEOUT,
    "EXPORT_CLAIM_TIMEOUT": settings.EXPORT_CLAIM_TIMEOUT,
    "RECOVERY_INTERVAL": settings.RECOVERY_INTERVAL,
}


def count(stack, status: str) -> int:
    return stack.sql("SELECT count(*) FROM projects_image WHERE status = ?", (status,))[0][0]


def statement_running(stack) -> bool:
    running = stack.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state = 'active'"
    )
    return running[0][0] > 0


def frozen_holding_a_claim(stack, worker: str, total: int):
    """A look that freezes the worker (SIGSTOP) once it holds a claim with images still to do
    and no statement of its own running, so the fault lands on a held claim."""

    def look() -> bool:
        if not (count(stack, "labeled") >= 8 and count(stack, "processing") > 0):
            return False
        stack.freeze(worker)
        held = not statement_running(stack) and count(stack, "processing") > 0
        held = held and count(stack, "labeled") < total
        if not held:
            stack.thaw(worker)
        return held

    return look


def assert_labeled_exactly_once(stack, total: int) -> None:
    rows = stack.sql("SELECT status, times_labeled FROM projects_image")
    assert len(rows) == total
    assert all(status == "labeled" and times == 1 for status, times in rows), rows


def faces_zip(total: int, size: int = 320) -> bytes:
    # Larger images go through face detection, so a chunk takes long enough to be interrupted.
    return zip_bytes({f"face-{i}.jpg": face_jpeg(i, size=size, mode="RGB") for i in range(total)})


def uploaded(make_stack, name: str, total: int):
    """A stack on the embedded timings (web, beat, no worker yet) with `total` faces uploaded."""
    stack = make_stack("services", LABEL_CHUNK_SIZE=4, **EMBEDDED_TIMINGS)
    stack.create_user("alice", "alice-password")
    stack.start_web()
    stack.start_beat()
    alice = stack.login("alice", "alice-password")
    project_id = create_project(stack, alice, name)
    batch = upload(stack, alice, project_id, {"faces.zip": faces_zip(total)})["batch"]
    return stack, alice, project_id, batch


def test_a_worker_killed_while_holding_a_claim_costs_under_a_minute(make_stack):
    total = 160
    stack, alice, project_id, batch = uploaded(make_stack, "Killed worker", total)

    stack.start_worker("first")
    stack.wait_for(frozen_holding_a_claim(stack, "first", total), 240, "a claim held", interval=0.05)
    stack.kill("first")
    killed = time.monotonic()
    stack.start_worker("second")  # what a supervisor does; its start-up counts in the minute

    def done() -> bool:
        return stack.progress(alice, project_id, batch)["status"] == "done"

    stack.wait_for(done, RECOVERY_LIMIT, "every image labeled after the kill")
    print(f"\nrecovered from SIGKILL in {time.monotonic() - killed:.1f} s")
    assert_labeled_exactly_once(stack, total)


def test_terminated_database_connections_cost_under_a_minute_and_no_500s(make_stack):
    total = 160
    stack, alice, project_id, batch = uploaded(make_stack, "Database blip", total)
    progress_url = f"{stack.url}/projects/{project_id}/batches/{batch}/progress/"
    # Every kept connection of the web process is opened before the blip.
    for _ in range(8):
        assert alice.get(progress_url, timeout=HTTP_TIMEOUT).status_code == 200

    stack.start_worker()
    stack.wait_for(frozen_holding_a_claim(stack, "worker", total), 240, "a claim held", interval=0.05)
    terminated = stack.sql(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS killed"
    )[0][0]
    blip = time.monotonic()
    stack.thaw("worker")
    assert terminated >= 2  # at least the worker's and the web's

    statuses = []

    def done() -> bool:
        response = alice.get(progress_url, timeout=HTTP_TIMEOUT)
        statuses.append(response.status_code)
        return response.status_code == 200 and response.json()["status"] == "done"

    stack.wait_for(done, RECOVERY_LIMIT, "every image labeled after the blip")
    print(f"\nrecovered from pg_terminate_backend in {time.monotonic() - blip:.1f} s")
    assert set(statuses) == {200}, statuses
    assert_labeled_exactly_once(stack, total)


def test_the_same_upload_sent_again_after_the_web_process_died_imports_the_rest(make_stack):
    total = 1500
    stack = make_stack("services", UPLOAD_HEARTBEAT_TIMEOUT=3)
    stack.create_user("alice", "alice-password")
    stack.start_web()
    stack.start_worker()
    stack.start_beat()
    alice = stack.login("alice", "alice-password")
    project_id = create_project(stack, alice, "Killed upload")
    token = str(uuid.uuid4())
    archive = zip_bytes({f"happy/face-{i}.jpg": face_jpeg(i) for i in range(total)})

    def send(session: requests.Session) -> requests.Response:
        return session.post(
            f"{stack.url}/projects/{project_id}/upload/",
            data={"upload_token": token},
            files=[("files", ("faces.zip", archive))],
            timeout=120,
        )

    first = threading.Thread(target=lambda: _ignoring_errors(send, alice), daemon=True)
    first.start()

    def stored() -> int:
        return stack.sql("SELECT count(*) FROM projects_image")[0][0]

    def frozen_mid_upload() -> bool:
        if stored() < 500:
            return False
        stack.freeze("web")
        uploading = stack.sql("SELECT status FROM projects_batch")[0][0] == "uploading"
        assert uploading and stored() < total, "the upload finished before the web process could be killed"
        return True

    stack.wait_for(frozen_mid_upload, 120, "the first slices stored", interval=0.02)
    stack.kill("web")
    first.join(timeout=30)
    partial = stored()
    stack.start_web()
    alice.headers["Referer"] = stack.url

    answers = []

    def complete():
        response = send(alice)
        answers.append(response.status_code)
        # 409 while the dead request's heartbeat is younger than UPLOAD_HEARTBEAT_TIMEOUT.
        assert response.status_code in (201, 409), response.text
        return response if response.status_code == 201 else None

    response = stack.wait_for(complete, 60, "the retried upload to be taken")
    assert set(answers) <= {201, 409} and answers[-1] == 201
    assert response.json()["images"] == total and response.json()["rejected"] == []
    names = stack.sql("SELECT count(*), count(DISTINCT original_name) FROM projects_image")[0]
    assert names == (total, total) and partial < total
    batch = response.json()["batch"]
    stack.wait_for(lambda: stack.progress(alice, project_id, batch)["status"] == "done", 180, "labeling")
    assert_labeled_exactly_once(stack, total)


def _ignoring_errors(send, session) -> None:
    with contextlib.suppress(requests.RequestException):  # the web process was killed under it
        send(session)
