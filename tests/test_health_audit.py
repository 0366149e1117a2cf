"""The dataset health check inside the product: the audit worker's health phase over every batch of
a project, a health-only run for a project without original labels, the export's exclusion rules
and the API (health counts, the duplicates listing, the new image and project fields)."""

import csv
import io
import zipfile

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image as PILImage
from rest_framework.test import APIClient

from audit import services as audit_services
from audit.models import AuditRun
from projects import services
from projects.exports import export_rows
from projects.models import EMOTIONS, Batch, ExcludedExport, Image
from tests.conftest import client_for
from tests.test_health import reencoded, shifted, texture

API = "/api/v1"


def jpeg(picture: PILImage.Image, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def store(project, batch, name: str, data: bytes, original: str = "", predicted: str = "happy", **fields):
    stored = default_storage.save(f"images/{name}.jpg", ContentFile(data))
    probabilities = dict.fromkeys(EMOTIONS, 0.01)
    probabilities[predicted] = 0.94
    return Image.objects.create(
        project=project,
        batch=batch,
        file=stored,
        original_name=f"{name}.jpg",
        original_label=original,
        status=Image.Status.LABELED,
        predicted_label=predicted,
        confidence=0.94,
        probabilities=probabilities,
        face_box=[0, 0, 48, 48],
        face_path=fields.pop("face_path", Image.FacePath.SMALL),
        **fields,
    )


@pytest.fixture
def dataset(project, users, active_model):
    """Two batches: an exact copy across them with different labels, a re-encoded copy and a
    1-px-shifted copy inside the first, a blank image, a noise photo where no face was found, and
    eighteen unrelated pictures."""
    first, second = (
        Batch.objects.create(project=project, uploaded_by=users["bob"], status=Batch.Status.DONE)
        for _ in range(2)
    )
    named = {}
    for n in range(18):
        named[f"face{n}"] = store(project, first, f"face{n}", jpeg(texture(200 + n)), EMOTIONS[n % 7])
    leaked = jpeg(texture(300))
    named["leak_train"] = store(project, first, "leak_train", leaked, "happy")
    named["leak_test"] = store(project, second, "leak_test", leaked, "sad")
    named["jpeg"] = store(project, first, "jpeg", jpeg(texture(301)), "fear")
    named["jpeg_copy"] = store(project, first, "jpeg_copy", jpeg(reencoded(texture(301), 60)), "fear")
    named["shift"] = store(project, first, "shift", jpeg(texture(62)), "angry")
    named["shift_copy"] = store(project, first, "shift_copy", jpeg(shifted(texture(62), 0, -1)), "angry")
    named["blank"] = store(project, first, "blank", jpeg(PILImage.new("L", (48, 48), 120)), "neutral")
    noise = np.random.default_rng(5).integers(0, 256, (240, 320), dtype=np.uint8)
    named["noise"] = store(
        project, second, "noise", jpeg(PILImage.fromarray(noise, "L")), "", face_path=Image.FacePath.WHOLE
    )
    project.named = named
    return project


def run_health(project, capture, user=None) -> AuditRun:
    with capture(execute=True):
        run = audit_services.audit_start(project=project, user=user)
    run.refresh_from_db()
    assert run.status == AuditRun.Status.DONE, run.error
    return run


def fresh(image: Image) -> Image:
    image.refresh_from_db()
    return image


class TestHealthPhase:
    def test_copies_conflicts_leaks_and_unusable_images_are_written_to_every_image(
        self, dataset, django_capture_on_commit_callbacks
    ):
        run = run_health(dataset, django_capture_on_commit_callbacks)
        images = {name: fresh(image) for name, image in dataset.named.items()}
        train, test = images["leak_train"], images["leak_test"]
        assert train.duplicate_group == test.duplicate_group == train.id
        assert train.duplicate_kind == Image.DuplicateKind.EXACT
        assert train.duplicate_conflicting and train.duplicate_cross_batch
        for name in ("jpeg", "shift"):
            original, copy = images[name], images[f"{name}_copy"]
            assert original.duplicate_group == copy.duplicate_group == original.id, name
            assert original.duplicate_kind == Image.DuplicateKind.NEAR
            assert not original.duplicate_conflicting and not original.duplicate_cross_batch
        assert images["blank"].unusable_reason == Image.UnusableReason.BLANK
        assert images["noise"].unusable_reason == Image.UnusableReason.NO_FACE
        assert all(images[f"face{n}"].duplicate_group is None for n in range(18))
        assert Image.objects.filter(map_x=None).count() == 0
        assert Image.objects.filter(map_x__gte=0, map_x__lte=1, map_y__gte=0, map_y__lte=1).count() == 26
        checked = run.summary["health"]
        assert (checked["images"], checked["unreadable"]) == (26, 0)
        assert (checked["exact_duplicate_groups"], checked["near_duplicate_groups"]) == (1, 2)
        assert (checked["conflicting_groups"], checked["cross_batch_groups"]) == (1, 1)
        assert checked["unusable_blank"] == 1 and checked["unusable_no_face"] == 1
        assert set(checked["seconds"]) == {"read", "check", "map"}
        assert checked["model_version"] == "tiny"

    def test_a_group_conflicts_when_only_the_final_labels_differ(
        self, dataset, users, django_capture_on_commit_callbacks
    ):
        copy = dataset.named["jpeg_copy"]
        services.image_set_label(image=copy, user=users["bob"], label="surprise")
        run_health(dataset, django_capture_on_commit_callbacks)
        assert fresh(dataset.named["jpeg"]).duplicate_conflicting

    def test_a_rerun_after_a_copy_is_deleted_clears_the_group_of_the_one_left(
        self, dataset, django_capture_on_commit_callbacks
    ):
        run_health(dataset, django_capture_on_commit_callbacks)
        assert fresh(dataset.named["shift"]).duplicate_group is not None
        dataset.named["shift_copy"].delete()
        run = run_health(dataset, django_capture_on_commit_callbacks)
        left = fresh(dataset.named["shift"])
        assert left.duplicate_group is None and left.duplicate_kind == ""
        assert run.summary["health"]["near_duplicate_groups"] == 1
        # The other groups keep their numbers: the smallest id of each.
        assert fresh(dataset.named["leak_test"]).duplicate_group == dataset.named["leak_train"].id

    def test_a_missing_file_is_counted_and_the_rest_is_checked(
        self, dataset, django_capture_on_commit_callbacks
    ):
        default_storage.delete(dataset.named["face3"].file.name)
        run = run_health(dataset, django_capture_on_commit_callbacks)
        assert run.summary["health"]["unreadable"] == 1
        assert fresh(dataset.named["leak_test"]).duplicate_cross_batch

    def test_a_run_finishing_after_a_newer_one_writes_no_health_fields(
        self, dataset, django_capture_on_commit_callbacks
    ):
        older = audit_services.audit_start(project=dataset)
        AuditRun.objects.filter(id=older.id).update(status=AuditRun.Status.RUNNING)
        AuditRun.objects.create(project=dataset, status=AuditRun.Status.DONE)  # a newer one finished
        AuditRun.objects.filter(id=older.id).update(status=AuditRun.Status.PENDING)
        audit_services.audit_execute(older.id)
        older.refresh_from_db()
        assert older.status == AuditRun.Status.SUPERSEDED
        assert not Image.objects.exclude(duplicate_group=None).exists()
        assert not Image.objects.exclude(unusable_reason="").exists()

    def test_without_a_model_the_check_still_finds_copies_and_blank_images(
        self, dataset, active_model, django_capture_on_commit_callbacks
    ):
        active_model.is_active = False
        active_model.save(update_fields=["is_active"])
        run = run_health(dataset, django_capture_on_commit_callbacks)
        assert run.summary["health"]["exact_duplicate_groups"] == 1
        assert fresh(dataset.named["blank"]).unusable_reason == Image.UnusableReason.BLANK
        assert fresh(dataset.named["blank"]).map_x is None


class TestHealthOnly:
    def test_a_project_without_original_labels_gets_the_health_check(
        self, dataset, users, django_capture_on_commit_callbacks
    ):
        Image.objects.update(original_label="")
        run = run_health(dataset, django_capture_on_commit_callbacks, users["bob"])
        assert run.image_count == 0 and run.summary["label_audit"].startswith("skipped")
        assert run.summary["health"]["exact_duplicate_groups"] == 1
        assert fresh(dataset.named["leak_train"]).duplicate_cross_batch
        assert not fresh(dataset.named["leak_train"]).duplicate_conflicting  # no labels differ

    def test_the_health_page_shows_a_health_only_run(
        self, client, dataset, users, django_capture_on_commit_callbacks
    ):
        Image.objects.update(original_label="")
        run_health(dataset, django_capture_on_commit_callbacks)
        page = client_for(client, users["charlie"]).get(reverse("audit:health", args=[dataset.id]))
        assert page.status_code == 200


class TestExport:
    def exclude(self, project):
        named = project.named
        Image.objects.filter(id=named["blank"].id).update(excluded_reason=Image.ExcludedReason.UNUSABLE)
        Image.objects.filter(id=named["leak_test"].id).update(excluded_reason=Image.ExcludedReason.DUPLICATE)

    def test_excluded_images_go_to_the_excluded_folder_and_the_manifest_says_why(
        self, dataset, django_capture_on_commit_callbacks
    ):
        run_health(dataset, django_capture_on_commit_callbacks)
        self.exclude(dataset)
        rows = {row["original_name"]: row for row in export_rows(dataset)}
        assert rows["blank.jpg"]["file"] == "excluded/blank.jpg"
        assert rows["blank.jpg"]["excluded_reason"] == "unusable"
        assert rows["blank.jpg"]["unusable_reason"] == "blank"
        assert rows["leak_test.jpg"]["file"] == "excluded/leak_test.jpg"
        assert rows["leak_test.jpg"]["duplicate_group"] == dataset.named["leak_train"].id
        assert rows["leak_train.jpg"]["file"].startswith(rows["leak_train.jpg"]["final_label"] + "/")
        assert rows["face0.jpg"]["duplicate_group"] == "" and rows["face0.jpg"]["excluded_reason"] == ""

    def test_with_omit_excluded_images_are_left_out_of_the_zip_but_listed_in_its_manifest(
        self, client, dataset, users, django_capture_on_commit_callbacks
    ):
        run_health(dataset, django_capture_on_commit_callbacks)
        self.exclude(dataset)
        services.project_update(project=dataset, export_excluded=ExcludedExport.OMIT)
        archive = self.download(client, dataset, users, django_capture_on_commit_callbacks)
        manifest = list(csv.DictReader(io.TextIOWrapper(archive.open("manifest.csv"), encoding="utf-8")))
        assert len(manifest) == 26
        rows = {row["original_name"]: row for row in manifest}
        assert rows["blank.jpg"]["file"] == "" and rows["blank.jpg"]["excluded_reason"] == "unusable"
        assert rows["leak_test.jpg"]["duplicate_group"] == str(dataset.named["leak_train"].id)
        names = archive.namelist()
        assert len(names) == 1 + 24 and not any(name.startswith("excluded/") for name in names)
        assert all(row["file"] in names for row in manifest if row["file"])

    def test_with_folder_the_zip_has_the_excluded_folder(
        self, client, dataset, users, django_capture_on_commit_callbacks
    ):
        self.exclude(dataset)
        archive = self.download(client, dataset, users, django_capture_on_commit_callbacks)
        assert {"excluded/blank.jpg", "excluded/leak_test.jpg"} <= set(archive.namelist())
        assert len(archive.namelist()) == 1 + 26

    def download(self, client, project, users, capture) -> zipfile.ZipFile:
        viewer = client_for(client, users["charlie"])
        with capture(execute=True):
            viewer.post(reverse("projects:export_create", args=[project.id]))
        export = project.exports.get()
        response = viewer.get(reverse("projects:export_download", args=[project.id, export.id]))
        assert response.status_code == 200
        return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


class TestApi:
    def test_the_duplicates_listing_puts_conflicting_then_cross_batch_groups_first(
        self, dataset, users, django_capture_on_commit_callbacks
    ):
        named = dataset.named
        run_health(dataset, django_capture_on_commit_callbacks)
        # A second cross-batch group that does not conflict: the shifted copy moves to batch 2.
        Image.objects.filter(id=named["shift_copy"].id).update(batch=named["leak_test"].batch)
        run_health(dataset, django_capture_on_commit_callbacks)
        response = api_as(users["charlie"]).get(f"{API}/projects/{dataset.id}/duplicates/")
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 3
        groups = body["results"]
        assert [g["group"] for g in groups] == [named["leak_train"].id, named["shift"].id, named["jpeg"].id]
        assert [(g["conflicting"], g["cross_batch"]) for g in groups] == [
            (True, True),
            (False, True),
            (False, False),
        ]
        first = groups[0]
        assert (first["kind"], first["size"]) == ("exact", 2)
        members = {m["id"]: m for m in first["members"]}
        test = members[named["leak_test"].id]
        assert test["batch"] == named["leak_test"].batch_id
        assert (test["original_label"], test["final_label"], test["excluded_reason"]) == ("sad", "happy", "")

    def test_the_duplicates_listing_is_paginated(self, dataset, users, django_capture_on_commit_callbacks):
        run_health(dataset, django_capture_on_commit_callbacks)
        url = f"{API}/projects/{dataset.id}/duplicates/?page_size=2"
        first = api_as(users["charlie"]).get(url).json()
        assert len(first["results"]) == 2 and first["next"] and first["previous"] is None
        second = api_as(users["charlie"]).get(first["next"]).json()
        assert len(second["results"]) == 1 and second["next"] is None

    def test_another_team_gets_404_and_no_login_401(self, dataset, outsider):
        assert api_as(outsider).get(f"{API}/projects/{dataset.id}/duplicates/").status_code == 404
        assert APIClient().get(f"{API}/projects/{dataset.id}/duplicates/").status_code in (401, 403)

    def test_the_health_endpoint_counts_groups_unusable_and_excluded_images(
        self, dataset, users, django_capture_on_commit_callbacks
    ):
        run_health(dataset, django_capture_on_commit_callbacks)
        Image.objects.filter(id=dataset.named["blank"].id).update(excluded_reason="unusable")
        body = api_as(users["charlie"]).get(f"{API}/projects/{dataset.id}/health/").json()
        assert body["duplicate_groups"] == {"exact": 1, "near": 2}
        assert (body["conflicting_groups"], body["cross_batch_groups"], body["duplicate_images"]) == (1, 1, 6)
        assert body["unusable"] == {"blank": 1, "no_face": 1, "outlier": body["unusable"]["outlier"]}
        assert body["excluded"] == {"total": 1, "duplicate": 0, "unusable": 1}

    def test_images_carry_the_health_fields_read_only(
        self, dataset, users, django_capture_on_commit_callbacks
    ):
        run_health(dataset, django_capture_on_commit_callbacks)
        blank = dataset.named["blank"]
        url = f"{API}/projects/{dataset.id}/images/{blank.id}/"
        body = api_as(users["bob"]).get(url).json()
        assert body["unusable_reason"] == "blank" and body["excluded_reason"] == ""
        assert 0 <= body["map_x"] <= 1 and body["duplicate_group"] is None
        listed = (
            api_as(users["bob"]).get(f"{API}/projects/{dataset.id}/images/?duplicates=cross_batch").json()
        )
        assert {row["id"] for row in listed["results"]} == {
            dataset.named["leak_train"].id,
            dataset.named["leak_test"].id,
        }
        api_as(users["bob"]).patch(url, {"unusable_reason": "", "reviewed_label": "sad"}, format="json")
        assert fresh(blank).unusable_reason == "blank"

    def test_only_the_owner_sets_export_excluded(self, dataset, users):
        url = f"{API}/projects/{dataset.id}/"
        assert api_as(users["bob"]).patch(url, {"export_excluded": "omit"}, format="json").status_code == 403
        response = api_as(users["alice"]).patch(url, {"export_excluded": "omit"}, format="json")
        assert response.status_code == 200 and response.json()["export_excluded"] == "omit"
        dataset.refresh_from_db()
        assert dataset.export_excluded == ExcludedExport.OMIT
        bad = api_as(users["alice"]).patch(url, {"export_excluded": "shred"}, format="json")
        assert bad.status_code == 400
