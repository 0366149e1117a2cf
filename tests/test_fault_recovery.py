"""QUALITY.md 27-32: consistent exports, resumable uploads, heartbeats and fast recovery, an
upload that never blocks a worker, the sweep of leftovers, bounded rejection lists.

The real worker kills and database blips run in tests/integration/test_recovery.py.
"""

import csv
import io
import logging
import os
import threading
import time
import uuid
import zipfile
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from facelabel.claims import ClaimHeartbeat
from inference import services as inference
from inference import tasks
from projects import decoding, exports
from projects import services as projects
from projects import tasks as project_tasks
from projects.models import Batch, Export, Image
from tests.conftest import client_for, zip_bytes
from tests.factories import face_jpeg

API = "/api/v1"


def jpg(name: str, seed: int = 0) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, face_jpeg(seed), content_type="image/jpeg")


def wait_for(condition, timeout: float = 10, what: str = "a state"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# --- 28. Exports: one read of the rows --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_export_built_while_a_reviewer_relabels_agrees_with_its_manifest(
    project, users, active_model, monkeypatch
):
    files = [jpg(f"f{i}.jpg", i) for i in range(8)]
    batch = projects.batch_create(project=project, user=users["bob"], files=files)
    tasks.label_batch(batch.id)
    export = Export.objects.create(project=project, requested_by=users["bob"])
    real_rows = exports.images_for_export

    def reviewer_relabels_everything() -> None:
        # Another connection, as a reviewer's request would be, committed at once.
        try:
            Image.objects.filter(project=project).update(reviewed_label="surprise", reviewed_by=users["bob"])
        finally:
            connection.close()

    class RelabeledOnceRead:
        """The rows as read, and then the reviewer's change lands, before anything else."""

        def __init__(self, queryset):
            self.queryset = queryset

        def iterator(self, chunk_size):
            yield from self.queryset.iterator(chunk_size=chunk_size)
            if not relabeled.is_set():
                relabeled.set()
                reviewer = threading.Thread(target=reviewer_relabels_everything)
                reviewer.start()
                reviewer.join()

    relabeled = threading.Event()
    monkeypatch.setattr(exports, "images_for_export", lambda p: RelabeledOnceRead(real_rows(p)))

    project_tasks.export_project_zip(export.id)

    export.refresh_from_db()
    assert relabeled.is_set() and export.status == Export.Status.READY
    assert Image.objects.filter(reviewed_label="surprise").count() == 8
    with zipfile.ZipFile(export.file.open()) as archive:
        manifest = list(csv.DictReader(io.TextIOWrapper(archive.open("manifest.csv"), encoding="utf-8")))
        assert sorted(archive.namelist()) == sorted(["manifest.csv", *[row["file"] for row in manifest]])
    assert all(row["file"].startswith(f"{row['final_label'] or 'unsure'}/") for row in manifest)


# --- 30. Heartbeats and recovery within a minute ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_keeps_a_held_claim_fresh_from_its_own_connection(project, users):
    long_ago = timezone.now() - timedelta(hours=1)
    export = Export.objects.create(project=project, status=Export.Status.RUNNING, claimed_at=long_ago)

    def beat():
        Export.objects.filter(id=export.id).update(claimed_at=timezone.now())

    with ClaimHeartbeat(beat, timeout=0.3):
        wait_for(lambda: Export.objects.get(id=export.id).claimed_at > long_ago, what="a beat")
    assert inference.batches_stalled() == [] and exports.exports_stalled() == []


def test_a_heartbeat_does_not_beat_inside_a_transaction(project, users):
    # Another connection could not see a claim this transaction made: there is nothing to keep.
    beats = []
    with ClaimHeartbeat(lambda: beats.append(1), timeout=0.03) as heartbeat:
        time.sleep(0.1)
    assert heartbeat._thread is None and beats == []


def test_an_export_whose_worker_died_is_taken_over_after_30_seconds_not_30_minutes(project, users):
    export = Export.objects.create(project=project, requested_by=users["bob"])
    Export.objects.filter(id=export.id).update(
        status=Export.Status.RUNNING, claimed_at=timezone.now() - timedelta(seconds=31), attempts=1
    )
    assert exports.exports_stalled() == [export.id]


def test_an_export_that_died_on_every_try_fails_instead_of_looping(project, users, settings):
    export = Export.objects.create(project=project, requested_by=users["bob"])
    Export.objects.filter(id=export.id).update(
        status=Export.Status.RUNNING,
        claimed_at=timezone.now() - timedelta(seconds=31),
        attempts=settings.EXPORT_MAX_ATTEMPTS,
    )
    assert exports.exports_stalled() == []
    export.refresh_from_db()
    assert export.status == Export.Status.FAILED and "every try" in export.error


def test_a_stale_image_claim_requeues_its_batch_although_another_worker_beat_it(project, users, active_model):
    batch = projects.batch_create(project=project, user=users["bob"], files=[jpg("a.jpg")])
    # A live worker beat the batch a moment ago, but the worker that claimed this image died.
    Batch.objects.filter(id=batch.id).update(heartbeat_at=timezone.now())
    Image.objects.update(
        status=Image.Status.PROCESSING, claimed_at=timezone.now() - timedelta(seconds=31), attempts=1
    )
    assert inference.batches_stalled() == [batch.id]
    tasks.recover_stalled_labeling()
    image = Image.objects.get()
    assert (image.status, image.times_labeled) == (Image.Status.LABELED, 1)


def test_a_database_error_mid_chunk_gives_the_chunk_back_at_once(project, users, active_model, monkeypatch):
    files = [jpg(f"f{i}.jpg", i) for i in range(4)]
    batch = projects.batch_create(project=project, user=users["bob"], files=files)

    def connection_killed(token, images):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(inference, "labels_write", connection_killed)
    with pytest.raises(OperationalError):
        inference.batch_label(batch.id)
    # Not left claimed for a heartbeat timeout, and the images' tries are not spent on it.
    assert list(Image.objects.values_list("status", "attempts", "claim_token")) == [("pending", 0, None)] * 4
    monkeypatch.undo()
    inference.batch_label(batch.id)
    assert list(Image.objects.values_list("status", "times_labeled")) == [("labeled", 1)] * 4


def test_audits_and_trials_are_taken_over_within_a_minute(project, users, settings):
    from audit.models import AuditRun
    from audit.services import runs_stalled
    from training.models import Trial
    from training.services import trials_fail_lost

    run = AuditRun.objects.create(project=project, status=AuditRun.Status.RUNNING, attempts=1)
    AuditRun.objects.filter(id=run.id).update(claimed_at=timezone.now() - timedelta(seconds=31))
    trial = Trial.objects.create(
        name="lost", status=Trial.Status.RUNNING, heartbeat_at=timezone.now() - timedelta(seconds=46)
    )
    assert runs_stalled() == [run.id]
    assert trials_fail_lost() == 1
    trial.refresh_from_db()
    assert trial.status == Trial.Status.FAILED
    assert settings.RECOVERY_INTERVAL + max(settings.LABEL_CLAIM_TIMEOUT, settings.EXPORT_CLAIM_TIMEOUT) < 60


def test_kept_database_connections_are_checked_before_use(settings):
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


# --- 31. An unfinished upload never blocks a worker ------------------------------------------


def test_labeling_returns_at_once_while_an_upload_is_still_arriving(project, users, active_model):
    batch = Batch.objects.create(
        project=project, uploaded_by=users["bob"], status=Batch.Status.UPLOADING, heartbeat_at=timezone.now()
    )
    # A long budget and a loose bound: waiting for the upload would take the whole 30 s, while a
    # busy machine must not fail a labeling that returned at once.
    started = time.monotonic()
    more = inference.batch_label(batch.id, time_budget=30)
    assert not more and time.monotonic() - started < 15
    batch.refresh_from_db()
    assert batch.status == Batch.Status.UPLOADING


def test_every_committed_slice_and_the_end_of_the_upload_queue_labeling(
    project, users, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(projects, "INSERT_SLICE", 2)
    monkeypatch.setattr(projects, "_queue_labeling", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        batch = projects.batch_create(
            project=project, user=users["bob"], files=[jpg(f"{i}.jpg", i) for i in range(5)]
        )
    # Slices of 2, 2 and 1 images, then the end of the upload (which lets labeling finish it).
    assert queued == [batch.id] * 4
    batch.refresh_from_db()
    assert (batch.status, batch.image_count) == (Batch.Status.LABELING, 5) and batch.uploaded_at


@pytest.mark.django_db(transaction=True)
def test_a_slow_upload_keeps_beating_between_slices(project, users, settings, monkeypatch):
    settings.UPLOAD_HEARTBEAT_TIMEOUT = 0.3
    monkeypatch.setattr(projects, "_queue_labeling", lambda batch_id: None)
    started = timezone.now()

    def slow_items(files, skip=None):
        yield decoding.decode_image("a.jpg", face_jpeg(1))
        # The next image takes long (a big PNG, a slow client): the batch must still look alive.
        wait_for(lambda: Batch.objects.get().heartbeat_at > started, what="a beat mid-slice")
        yield decoding.decode_image("b.jpg", face_jpeg(2))

    monkeypatch.setattr(projects, "iter_upload", slow_items)
    batch = projects.batch_create(project=project, user=users["bob"], files=[])
    assert batch.image_count == 2


def test_an_abandoned_upload_is_closed_and_labeled_by_the_sweep(project, users, active_model):
    token = uuid.uuid4()
    _an_upload_killed_after(project, users, token, stored=2)
    project_tasks.recover_stalled_work()
    tasks.recover_stalled_labeling()
    batch = Batch.objects.get()
    assert batch.status == Batch.Status.DONE and batch.uploaded_at is None
    assert "after 2 images" in batch.rejected[0]["reason"]
    assert list(Image.objects.values_list("status", flat=True)) == ["labeled"] * 2


# --- 29. Retried uploads: resumed, or plainly incomplete ------------------------------------


def _an_upload_killed_after(project, users, token, stored: int) -> Batch:
    """What a web process killed mid-upload leaves: a batch still 'uploading', some images, a
    heartbeat that stopped."""
    batch = projects.batch_create(
        project=project,
        user=users["bob"],
        files=[jpg(f"{i}.jpg", i) for i in range(stored)],
        upload_token=token,
    )
    Batch.objects.filter(id=batch.id).update(
        status=Batch.Status.UPLOADING,
        uploaded_at=None,
        image_count=0,
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )
    return batch


def test_the_same_token_after_a_killed_upload_imports_only_what_is_missing(client, project, users):
    token = uuid.uuid4()
    batch = _an_upload_killed_after(project, users, token, stored=3)
    files = [jpg(f"{i}.jpg", i) for i in range(7)] + [SimpleUploadedFile("junk.jpg", b"junk")]

    response = client_for(client, users["bob"]).post(
        reverse("projects:upload", args=[project.id]), {"files": files, "upload_token": str(token)}
    )

    assert response.status_code == 201
    assert response.json()["batch"] == batch.id and response.json()["images"] == 7
    assert [r["name"] for r in response.json()["rejected"]] == ["junk.jpg"]
    names = sorted(Image.objects.values_list("original_name", flat=True))
    assert names == sorted(f"{i}.jpg" for i in range(7))
    batch.refresh_from_db()
    assert batch.uploaded_at and batch.status == Batch.Status.LABELING and batch.image_count == 7


def test_the_same_token_resumes_an_upload_that_broke_off_inside_a_zip(project, users, monkeypatch):
    token = uuid.uuid4()
    members = {f"happy/{i}.jpg": face_jpeg(i) for i in range(6)} | {"happy/again.jpg": face_jpeg(1)}
    real_iter = projects.iter_upload

    def breaks_after_four(files, skip=None):
        for n, item in enumerate(real_iter(files, skip)):
            if n == 4:
                raise OSError("No space left on device")
            yield item

    monkeypatch.setattr(projects, "iter_upload", breaks_after_four)
    monkeypatch.setattr(projects, "INSERT_SLICE", 2)  # two slices committed before the break
    with pytest.raises(OSError):
        projects.batch_create(
            project=project,
            user=users["bob"],
            files=[SimpleUploadedFile("set.zip", zip_bytes(members))],
            upload_token=token,
        )
    assert Image.objects.count() == 4 and Batch.objects.get().uploaded_at is None
    monkeypatch.undo()

    batch = projects.batch_create(
        project=project,
        user=users["bob"],
        files=[SimpleUploadedFile("set.zip", zip_bytes(members))],
        upload_token=token,
    )

    assert batch.image_count == 7 and batch.uploaded_at
    assert sorted(Image.objects.values_list("original_name", flat=True)) == sorted(members)
    assert not any(entry["name"] == "(upload)" for entry in batch.rejected)


def test_the_same_token_while_the_upload_is_still_arriving_is_refused_with_how_far_it_got(
    project, users, outsider
):
    from tests.test_api import token_client

    token = uuid.uuid4()
    batch = _an_upload_killed_after(project, users, token, stored=2)
    Batch.objects.filter(id=batch.id).update(heartbeat_at=timezone.now())  # still beating

    response = token_client(users["bob"]).post(
        f"{API}/projects/{project.id}/batches/",
        {"files": [jpg(f"{i}.jpg", i) for i in range(5)], "upload_token": str(token)},
    )

    assert response.status_code == 409
    assert response.json()["images"] == 2 and "2 images stored so far" in response.json()["detail"]
    assert Image.objects.count() == 2


# --- 27. Cost caps: bounded, paginated rejection lists; the 1,001-file error ----------------


def test_rejections_are_kept_bounded_counted_and_paginated(client, project, users, settings):
    settings.UPLOAD_REJECTIONS_KEPT = 5
    settings.UPLOAD_REJECTIONS_PAGE = 2
    junk = zip_bytes({f"junk/{i}.jpg": b"not an image" for i in range(9)} | {"happy/a.jpg": face_jpeg(1)})
    bob = client_for(client, users["bob"])

    body = bob.post(
        reverse("projects:upload", args=[project.id]), {"files": [SimpleUploadedFile("j.zip", junk)]}
    )

    body = body.json()
    assert (body["images"], body["rejected_count"], len(body["rejected"])) == (1, 9, 2)
    batch = Batch.objects.get()
    assert (len(batch.rejected), batch.rejected_count) == (5, 9)
    progress = bob.get(reverse("projects:batch_progress", args=[project.id, batch.id])).json()
    assert (len(progress["rejected"]), progress["rejected_count"]) == (2, 9)
    page = bob.get(reverse("projects:batch", args=[project.id, batch.id]), {"rejected_page": 3})
    assert page.status_code == 200 and b"junk/4.jpg" in page.content and b"junk/0.jpg" not in page.content
    assert b"4 more are counted but not listed" in page.content
    api = APIClient()
    api.force_authenticate(users["bob"])
    listed = api.get(f"{API}/projects/{project.id}/batches/{batch.id}/rejected/", {"page": 2}).json()
    assert listed["count"] == 5 and [r["name"] for r in listed["results"]] == ["junk/2.jpg", "junk/3.jpg"]


def test_1001_files_get_a_json_error_with_the_reason(client, project, users):
    files = [SimpleUploadedFile(f"{i}.jpg", b"x") for i in range(1001)]
    web = client_for(client, users["bob"]).post(
        reverse("projects:upload", args=[project.id]), {"files": files}
    )
    api = APIClient()
    api.force_authenticate(users["bob"])
    files = [SimpleUploadedFile(f"{i}.jpg", b"x") for i in range(1001)]
    rest = api.post(f"{API}/projects/{project.id}/batches/", {"files": files})

    assert (web.status_code, rest.status_code) == (400, 400)
    assert web.json()["error"] == "too many files: more than 1000 (limit 1000 per upload)"
    assert rest.json()["detail"] == "too many files: more than 1000 (limit 1000 per upload)"
    assert not Batch.objects.exists()


# --- 32. The sweep of leftovers -----------------------------------------------------------------


def _aged(path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def test_the_sweep_removes_old_orphan_files_and_upload_temp_files(project, users, settings, tmp_path, caplog):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    (tmp_path / "uploads").mkdir()
    batch = projects.batch_create(project=project, user=users["bob"], files=[jpg("kept.jpg")])
    kept = Image.objects.get().file.name
    orphans = [
        default_storage.save(f"images/{project.id}/ab/orphan.jpg", ContentFile(b"x")),
        default_storage.save(f"thumbnails/{project.id}/ab/orphan.jpg", ContentFile(b"x")),
        default_storage.save(f"exports/{project.id}/export-9-dead.zip", ContentFile(b"x")),
    ]
    young = default_storage.save(f"images/{project.id}/cd/young.jpg", ContentFile(b"x"))
    for name in [kept, *orphans]:
        _aged(default_storage.path(name), 2 * settings.ORPHAN_FILE_GRACE)
    stale_temp = tmp_path / "uploads" / "tmpk3j4h5.upload.zip"
    young_temp = tmp_path / "uploads" / "tmpa1b2c3.upload.zip"
    other = tmp_path / "uploads" / "notes.txt"
    for path in (stale_temp, young_temp, other):
        path.write_bytes(b"x" * 100)
    for path in (stale_temp, other):
        _aged(path, 2 * settings.ORPHAN_FILE_GRACE)

    with caplog.at_level(logging.INFO, logger="projects.services"):
        from projects.tasks import sweep_orphan_files

        sweep_orphan_files()

    assert [default_storage.exists(name) for name in orphans] == [False, False, False]
    assert default_storage.exists(kept) and default_storage.exists(young)
    assert not stale_temp.exists() and young_temp.exists() and other.exists()
    assert "removed 3 orphan media files and 1 stale upload temp files" in caplog.text
    assert batch.images.count() == 1
