"""The whole product with real processes: upload a ZIP over HTTP, a real Celery worker labels it,
a reviewer overrides one label, an export is built and downloaded and checked file by file."""

import csv
import io
import re
import time
import zipfile

import pytest

from projects.models import EMOTIONS
from tests.conftest import zip_bytes
from tests.factories import face_jpeg
from tests.integration.stack import HTTP_TIMEOUT, REDIS_URL

pytestmark = pytest.mark.integration


def create_project(stack, session, name: str) -> int:
    response = session.post(f"{stack.url}/", data={"name": name}, timeout=HTTP_TIMEOUT)
    return int(re.search(r"/projects/(\d+)/", response.url).group(1))


def upload(stack, session, project_id: int, files: dict[str, bytes]) -> dict:
    response = session.post(
        f"{stack.url}/projects/{project_id}/upload/",
        files=[("files", (name, data)) for name, data in files.items()],
        timeout=120,
    )
    assert response.status_code == 201, response.text
    return response.json()


def export_and_download(stack, session, project_id: int) -> zipfile.ZipFile:
    response = session.post(f"{stack.url}/projects/{project_id}/exports/", timeout=HTTP_TIMEOUT)
    export_url = response.url

    def ready():
        status = session.get(export_url, headers={"Accept": "application/json"}, timeout=HTTP_TIMEOUT).json()
        assert status["status"] != "failed", status
        return status["status"] == "ready"

    stack.wait_for(ready, 120, "the export")
    download = session.get(export_url + "download/", timeout=60)
    assert download.status_code == 200
    return zipfile.ZipFile(io.BytesIO(download.content))


@pytest.mark.parametrize("backend", ["services", "embedded"])
def test_zip_upload_is_labeled_reviewed_and_exported(make_stack, backend):
    stack = make_stack(backend)
    stack.create_user("alice", "alice-password")
    stack.start_web()
    stack.start_worker()
    stack.start_beat()
    alice = stack.login("alice", "alice-password")
    project_id = create_project(stack, alice, "Integration faces")

    members = {f"{EMOTIONS[i % 7]}/face-{i}.jpg": face_jpeg(i) for i in range(40)}
    members["happy/broken.jpg"] = b"not an image at all"
    members["__MACOSX/._face-1.jpg"] = b"junk"
    result = upload(stack, alice, project_id, {"set.zip": zip_bytes(members)})
    assert result["images"] == 40
    assert [r["name"] for r in result["rejected"]] == ["happy/broken.jpg"]

    batch = result["batch"]
    stack.wait_for(lambda: stack.progress(alice, project_id, batch)["status"] == "done", 180, "labeling")
    progress = stack.progress(alice, project_id, batch)
    assert (progress["total"], progress["labeled"], progress["failed"]) == (40, 40, 0)

    rows = stack.sql(
        "SELECT id, original_label, predicted_label, times_labeled FROM projects_image ORDER BY id"
    )
    assert len(rows) == 40
    assert all(predicted in EMOTIONS and times == 1 for _, _, predicted, times in rows)

    overridden_id = rows[0][0]
    override = next(e for e in EMOTIONS if e != rows[0][2])
    response = alice.post(
        f"{stack.url}/projects/{project_id}/images/{overridden_id}/label/",
        json={"label": override},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200 and response.json()["final_label"] == override

    archive = export_and_download(stack, alice, project_id)
    manifest = list(csv.DictReader(io.TextIOWrapper(archive.open("manifest.csv"), encoding="utf-8")))
    assert len(manifest) == 40
    final = dict(
        stack.sql(
            "SELECT original_name, CASE WHEN reviewed_label != '' THEN reviewed_label "
            "ELSE predicted_label END FROM projects_image"
        )
    )
    for row in manifest:
        assert row["final_label"] == final[row["original_name"]]
        assert row["file"].startswith(row["final_label"] + "/")
        assert row["original_label"] == row["original_name"].split("/")[0]
        # Every image is in the ZIP under its folder, byte for byte the image that was uploaded.
        assert archive.read(row["file"]) == members[row["original_name"]]
    overridden = [r for r in manifest if r["reviewed_by"] == "alice"]
    assert len(overridden) == 1 and overridden[0]["final_label"] == override
    assert sorted(archive.namelist()) == sorted(["manifest.csv", *[r["file"] for r in manifest]])


def test_a_worker_killed_mid_batch_leaves_every_image_labeled_exactly_once(make_stack):
    # Larger images go through face detection, so a chunk takes long enough to be interrupted.
    stack = make_stack("services", LABEL_CHUNK_SIZE=4)
    stack.create_user("alice", "alice-password")
    stack.start_web()
    stack.start_beat()
    alice = stack.login("alice", "alice-password")
    project_id = create_project(stack, alice, "Crash test")
    files = {f"face-{i}.jpg": face_jpeg(i, size=320, mode="RGB") for i in range(240)}
    batch = upload(stack, alice, project_id, {"faces.zip": zip_bytes(files)})["batch"]

    def labeled() -> int:
        return stack.sql("SELECT count(*) FROM projects_image WHERE status = 'labeled'")[0][0]

    def processing() -> int:
        return stack.sql("SELECT count(*) FROM projects_image WHERE status = 'processing'")[0][0]

    def claim_held() -> bool:
        return labeled() >= 8 and processing() > 0

    def statement_running() -> bool:
        running = stack.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state = 'active'"
        )
        return running[0][0] > 0

    def frozen_holding_a_claim() -> bool:
        # Look with the worker running first: stopping it on every look would slow it down.
        if not claim_held():
            return False
        # Frozen, the worker cannot finish its chunk between this look and the kill, so the kill
        # lands while a claim is held, not between two chunks. A statement it sent just before it
        # stopped (its chunk's COMMIT) still runs in the database: look once none runs.
        stack.freeze("first")
        held = False
        try:
            held = not statement_running() and claim_held()
        finally:
            if not held:
                stack.thaw("first")
        return held

    stack.start_worker("first")
    stack.wait_for(frozen_holding_a_claim, 180, "a claim held after the first images", interval=0.05)
    stack.kill("first")
    assert labeled() < 240, "the batch finished before the worker could be killed"

    stack.start_worker("second")
    stack.wait_for(lambda: stack.progress(alice, project_id, batch)["status"] == "done", 240, "recovery")
    rows = stack.sql("SELECT status, times_labeled FROM projects_image")
    assert len(rows) == 240
    assert all(status == "labeled" and times == 1 for status, times in rows), rows


def test_an_upload_while_the_broker_is_down_is_labeled_later(make_stack):
    stack = make_stack("services", CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    stack.create_user("alice", "alice-password")
    stack.start_web()
    alice = stack.login("alice", "alice-password")
    project_id = create_project(stack, alice, "Broker down")
    started = time.monotonic()
    result = upload(stack, alice, project_id, {"a.jpg": face_jpeg(1), "b.jpg": face_jpeg(2)})
    assert time.monotonic() - started < 60
    assert stack.sql("SELECT count(*) FROM projects_image WHERE status = 'pending'")[0][0] == 2

    # The broker comes back: the recovery sweep queues the batch nobody could queue before.
    stack.env["CELERY_BROKER_URL"] = REDIS_URL
    stack.start_worker()
    stack.start_beat()
    stack.wait_for(
        lambda: stack.progress(alice, project_id, result["batch"])["status"] == "done", 120, "late labeling"
    )
