"""QUALITY.md faults: repeated deliveries, poison images, interrupted exports, stale ids,
production settings."""

import os
import subprocess
import sys
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from inference import services as inference
from inference import tasks
from projects import exports, services
from projects import tasks as project_tasks
from projects.models import Batch, Export, Image
from tests.factories import face_jpeg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def batch(project, users, active_model):
    files = [SimpleUploadedFile(f"f{i}.jpg", face_jpeg(i)) for i in range(6)]
    # Outside on_commit capture: the batch is created but nothing labels it yet.
    return services.batch_create(project=project, user=users["bob"], files=files)


def test_the_same_labeling_task_twice_labels_each_image_once(batch):
    tasks.label_batch(batch.id)
    tasks.label_batch(batch.id)
    assert list(Image.objects.values_list("times_labeled", flat=True)) == [1] * 6
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DONE


def test_a_late_result_from_a_worker_that_lost_its_claim_is_dropped(batch, active_model):
    from inference.engine import load_model_version

    first = inference.images_claim(batch.id, 6, retries=False)
    # The first worker goes quiet; after the claim timeout a second worker takes the images over.
    Image.objects.update(claimed_at=timezone.now() - timedelta(hours=1))
    second = inference.images_claim(batch.id, 6, retries=True)
    assert len(second.images) == 6
    model = load_model_version(active_model)
    inference.images_label(second, inference.faces_read(second.images), active_model, model)
    inference.images_label(first, inference.faces_read(first.images), active_model, model)
    assert list(Image.objects.values_list("times_labeled", flat=True)) == [1] * 6


class PoisonModel:
    """The real model, except that it raises whenever a given image is in the batch."""

    def __init__(self, model, poison_pixels: np.ndarray):
        self.model, self.poison = model, poison_pixels

    def preprocess(self, faces):
        return self.model.preprocess(faces)

    def predict(self, batch):
        if any(np.array_equal(row, self.poison) for row in batch):
            raise RuntimeError("model crashed")
        return self.model.predict(batch)


def test_an_image_that_breaks_the_model_fails_after_bounded_tries(project, users, active_model, settings):
    from inference import engine
    from inference.faces import find_face

    files = [SimpleUploadedFile(f"f{i}.jpg", face_jpeg(i)) for i in range(5)]
    files.append(SimpleUploadedFile("poison.jpg", face_jpeg(99, size=48)))
    batch = services.batch_create(project=project, user=users["bob"], files=files)
    real = engine.load_model_version(active_model)
    poison_image = Image.objects.get(original_name="poison.jpg")
    from PIL import Image as PILImage

    with default_storage.open(poison_image.file.name) as handle:
        poison = real.preprocess([find_face(PILImage.open(handle).convert("L"))])[0]
    key = (active_model.pk, active_model.file.name, active_model.int8_file.name)
    engine._loaded[key] = PoisonModel(real, poison)

    for _ in range(settings.LABEL_MAX_ATTEMPTS + 2):
        inference.batch_label(batch.id)

    poison_image.refresh_from_db()
    assert poison_image.status == Image.Status.FAILED
    assert poison_image.attempts == settings.LABEL_MAX_ATTEMPTS
    assert "model failed" in poison_image.error
    others = Image.objects.exclude(id=poison_image.id)
    assert set(others.values_list("status", flat=True)) == {Image.Status.LABELED}
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DONE


def test_an_image_whose_worker_died_every_time_is_failed(batch, settings):
    Image.objects.update(
        status=Image.Status.PROCESSING,
        attempts=settings.LABEL_MAX_ATTEMPTS,
        claimed_at=timezone.now() - timedelta(hours=1),
    )
    inference.batch_label(batch.id)
    assert set(Image.objects.values_list("status", flat=True)) == {Image.Status.FAILED}
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DONE


def test_an_interrupted_export_is_never_served_and_a_rerun_completes(batch, users, monkeypatch):
    tasks.label_batch(batch.id)
    export = Export.objects.create(project=batch.project, requested_by=users["bob"])
    real_open = FileSystemStorage.open
    calls = {"n": 0}

    def failing_open(storage, name, mode="rb"):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk went away")
        return real_open(storage, name, mode)

    monkeypatch.setattr(FileSystemStorage, "open", failing_open)
    with pytest.raises(OSError):
        project_tasks.export_project_zip(export.id)
    export.refresh_from_db()
    assert export.status == Export.Status.PENDING and not export.file
    assert not default_storage.exists(f"exports/{batch.project_id}")

    monkeypatch.undo()
    project_tasks.export_project_zip(export.id)
    export.refresh_from_db()
    assert export.status == Export.Status.READY
    with zipfile.ZipFile(export.file.open()) as archive:
        assert archive.testzip() is None
        assert len(archive.namelist()) == 7


def test_the_same_export_task_twice_builds_one_zip(batch, users):
    tasks.label_batch(batch.id)
    export = Export.objects.create(project=batch.project, requested_by=users["bob"])
    project_tasks.export_project_zip(export.id)
    first = Export.objects.get(id=export.id).file.name
    project_tasks.export_project_zip(export.id)
    export.refresh_from_db()
    assert export.file.name == first
    assert len(default_storage.listdir(f"exports/{batch.project_id}")[1]) == 1


def test_tasks_given_missing_or_finished_ids_do_nothing(batch):
    tasks.label_batch(999_999)
    project_tasks.export_project_zip(999_999)
    Batch.objects.filter(id=batch.id).update(status=Batch.Status.DONE)
    tasks.label_batch(batch.id)
    assert set(Image.objects.values_list("status", flat=True)) == {Image.Status.PENDING}


def test_the_recovery_sweep_requeues_only_quiet_batches(batch, settings):
    assert inference.batches_stalled() == [] and exports.exports_stalled() == []
    Batch.objects.filter(id=batch.id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert inference.batches_stalled() == [batch.id]
    tasks.recover_stalled_labeling()  # eager: labels the batch right here
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DONE
    assert inference.batch_touch(batch.id) is False


def test_production_settings_pass_the_deploy_check():
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECURE_HTTPS": "true",
        "SECRET_KEY": "x" * 64 + "production-secret-from-the-environment",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_host_header_is_400(client, db):
    assert client.get("/login/", HTTP_HOST="evil.example").status_code == 400
