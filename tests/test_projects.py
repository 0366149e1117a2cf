"""Projects, members, uploads, review and export through the web views, with the permission
rules of QUALITY.md (other teams get 404, roles below the need get 403, nothing changes)."""

import csv
import io
import json
import uuid
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from projects import services
from projects.models import EMOTIONS, Batch, Export, Image, Membership, Project, Role
from tests.conftest import client_for, zip_bytes
from tests.factories import face_jpeg


def upload(client, project, files, token=None):
    data = {"files": files}
    if token:
        data["upload_token"] = str(token)
    return client.post(reverse("projects:upload", args=[project.id]), data)


def post_label(client, image: Image, body: dict):
    url = reverse("projects:image_label", args=[image.project_id, image.id])
    return client.post(url, json.dumps(body), content_type="application/json")


def jpg(name: str, seed: int = 0) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, face_jpeg(seed), content_type="image/jpeg")


class TestProjects:
    def test_a_user_sees_only_projects_they_belong_to(self, client, project, outsider):
        response = client_for(client, outsider).get(reverse("projects:list"))
        assert response.status_code == 200
        assert b"Dave&#x27;s team" in response.content
        assert b"Alice" not in response.content

    def test_creating_a_project_makes_the_creator_its_owner(self, client, users):
        response = client_for(client, users["bob"]).post(reverse("projects:list"), {"name": "New set"})
        project = Project.objects.get(name="New set")
        assert response.status_code == 302
        assert Membership.objects.get(project=project, user=users["bob"]).role == Role.OWNER

    def test_anonymous_users_are_sent_to_log_in(self, client, project):
        response = client.get(reverse("projects:detail", args=[project.id]))
        assert response.status_code == 302
        assert reverse("login") in response["Location"]

    def test_owner_adds_and_removes_members(self, client, project, outsider):
        owner = client_for(client, project.created_by)
        url = reverse("projects:members", args=[project.id])
        owner.post(url, {"username": "dave", "role": "reviewer"})
        assert Membership.objects.get(project=project, user=outsider).role == Role.REVIEWER
        owner.post(url, {"remove": outsider.id})
        assert not Membership.objects.filter(project=project, user=outsider).exists()

    def test_the_last_owner_cannot_be_removed(self, client, project):
        owner = client_for(client, project.created_by)
        owner.post(reverse("projects:members", args=[project.id]), {"remove": project.created_by.id})
        assert Membership.objects.filter(project=project, role=Role.OWNER).count() == 1

    def test_a_reviewer_cannot_manage_members(self, client, project, users, outsider):
        response = client_for(client, users["bob"]).post(
            reverse("projects:members", args=[project.id]), {"username": "dave", "role": "owner"}
        )
        assert response.status_code == 403
        assert not Membership.objects.filter(project=project, user=outsider).exists()


class TestUpload:
    def test_jpgs_become_one_batch_of_pending_images(self, client, project, users):
        response = upload(client_for(client, users["bob"]), project, [jpg("a.jpg", 1), jpg("b.jpg", 2)])
        assert response.status_code == 201
        batch = Batch.objects.get(id=response.json()["batch"])
        assert batch.image_count == 2
        assert sorted(batch.images.values_list("original_name", flat=True)) == ["a.jpg", "b.jpg"]

    def test_a_zip_gives_original_labels_from_folder_names(self, client, project, users):
        archive = zip_bytes(
            {"happy/x.jpg": face_jpeg(1), "Sad/y.jpg": face_jpeg(2), "misc/z.jpg": face_jpeg(3)}
        )
        response = upload(client_for(client, users["bob"]), project, [SimpleUploadedFile("set.zip", archive)])
        assert response.status_code == 201
        labels = dict(Image.objects.values_list("original_name", "original_label"))
        assert labels == {"happy/x.jpg": "happy", "Sad/y.jpg": "sad", "misc/z.jpg": ""}
        # The unknown folder is reported, not dropped.
        assert any(r["name"] == "misc/z.jpg" for r in response.json()["rejected"])

    def test_bad_files_are_reported_by_name_and_the_rest_goes_ahead(self, client, project, users):
        files = [
            jpg("good.jpg"),
            SimpleUploadedFile("empty.jpg", b""),
            SimpleUploadedFile("page.jpg", b"<html><body>hi</body></html>"),
            SimpleUploadedFile("cut.jpg", face_jpeg(4)[:200]),
        ]
        response = upload(client_for(client, users["bob"]), project, files)
        body = response.json()
        assert response.status_code == 201
        assert body["images"] == 1
        assert sorted(r["name"] for r in body["rejected"]) == ["cut.jpg", "empty.jpg", "page.jpg"]
        assert all(r["reason"] for r in body["rejected"])

    def test_file_names_are_stored_under_generated_names(self, client, project, users):
        evil = "../../<img src=x onerror=alert(1)>\u202e.jpg"
        upload(client_for(client, users["bob"]), project, [jpg(evil)])
        image = Image.objects.get()
        assert "<img" not in image.file.name and ".." not in image.file.name
        assert image.file.name.startswith(f"images/{project.id}/")

    def test_the_same_upload_token_twice_makes_one_batch(self, client, project, users):
        token = uuid.uuid4()
        bob = client_for(client, users["bob"])
        first = upload(bob, project, [jpg("a.jpg")], token)
        second = upload(bob, project, [jpg("a.jpg")], token)
        assert first.json()["batch"] == second.json()["batch"]
        assert Batch.objects.count() == 1
        assert Image.objects.count() == 1

    def test_too_many_files_are_refused_whole(self, client, project, users, settings):
        settings.UPLOAD_MAX_FILES = 2
        response = upload(client_for(client, users["bob"]), project, [jpg(f"{i}.jpg") for i in range(3)])
        assert response.status_code == 400
        assert Batch.objects.count() == 0 and Image.objects.count() == 0

    def test_a_body_over_the_cap_is_refused(self, client, project, users, settings):
        settings.UPLOAD_MAX_BYTES = 1000
        response = upload(client_for(client, users["bob"]), project, [jpg("a.jpg"), jpg("b.jpg")])
        assert response.status_code == 413
        assert Batch.objects.count() == 0

    def test_a_viewer_cannot_upload(self, client, project, users):
        response = upload(client_for(client, users["charlie"]), project, [jpg("a.jpg")])
        assert response.status_code == 403
        assert Batch.objects.count() == 0


@pytest.fixture
def labeled_project(project, users, active_model, django_capture_on_commit_callbacks):
    archive = zip_bytes({f"{EMOTIONS[i % 7]}/face{i}.jpg": face_jpeg(i) for i in range(10)})
    with django_capture_on_commit_callbacks(execute=True):
        services.batch_create(
            project=project, user=users["bob"], files=[SimpleUploadedFile("set.zip", archive)]
        )
    return project


class TestLabelingAndReview:
    def test_an_uploaded_batch_is_labeled_by_the_active_model(self, labeled_project, active_model):
        batch = Batch.objects.get()
        assert batch.status == Batch.Status.DONE
        for image in Image.objects.all():
            assert image.status == Image.Status.LABELED
            assert image.predicted_label in EMOTIONS
            assert image.model_version == active_model
            assert set(image.probabilities) == set(EMOTIONS)
            assert abs(sum(image.probabilities.values()) - 1) < 1e-3
            assert image.confidence == pytest.approx(max(image.probabilities.values()), abs=1e-5)
            assert image.face_path == Image.FacePath.SMALL
            assert image.face_box == [0, 0, 48, 48]
            assert image.times_labeled == 1

    def test_progress_reports_done_over_total(self, client, labeled_project, users):
        batch = Batch.objects.get()
        response = client_for(client, users["charlie"]).get(
            reverse("projects:batch_progress", args=[labeled_project.id, batch.id])
        )
        assert response.json()["done"] == response.json()["total"] == 10

    def test_a_reviewer_overrides_one_label(self, client, labeled_project, users):
        image = Image.objects.first()
        response = post_label(client_for(client, users["bob"]), image, {"label": "fear"})
        image.refresh_from_db()
        assert response.status_code == 200
        assert (image.reviewed_label, image.reviewed_by, image.final_label) == ("fear", users["bob"], "fear")

    def test_a_label_outside_the_seven_is_refused(self, client, labeled_project, users):
        image = Image.objects.first()
        response = post_label(client_for(client, users["bob"]), image, {"label": "bored"})
        image.refresh_from_db()
        assert response.status_code == 400
        assert image.reviewed_label == ""

    def test_a_viewer_cannot_relabel(self, client, labeled_project, users):
        image = Image.objects.first()
        response = post_label(client_for(client, users["charlie"]), image, {"label": "fear"})
        image.refresh_from_db()
        assert response.status_code == 403
        assert image.reviewed_label == ""

    def test_bulk_accept_takes_the_model_labels(self, client, labeled_project, users):
        ids = list(Image.objects.values_list("id", flat=True)[:4])
        response = client_for(client, users["bob"]).post(
            reverse("projects:bulk_label", args=[labeled_project.id]),
            json.dumps({"ids": ids, "label": None}),
            content_type="application/json",
        )
        assert response.json() == {"changed": 4}
        for image in Image.objects.filter(id__in=ids):
            assert image.reviewed_label == image.predicted_label

    def test_review_grid_filters(self, client, labeled_project, users):
        bob = client_for(client, users["bob"])
        url = reverse("projects:review", args=[labeled_project.id])
        happy = Image.objects.filter(original_label="happy").count()
        assert bob.get(url, {"original": "happy"}).context["page"].paginator.count == happy
        disagreeing = [i for i in Image.objects.all() if i.predicted_label != i.original_label]
        assert bob.get(url, {"disagrees": "1"}).context["page"].paginator.count == len(disagreeing)
        assert bob.get(url, {"min_confidence": "1.01"}).context["page"].paginator.count == 0
        assert bob.get(url, {"reviewed": "yes"}).context["page"].paginator.count == 0

    def test_review_grid_escapes_file_names(self, client, project, users, active_model):
        services.batch_create(
            project=project, user=users["bob"], files=[jpg("<img src=x onerror=alert(1)>.jpg")]
        )
        response = client_for(client, users["bob"]).get(reverse("projects:review", args=[project.id]))
        assert b"<img src=x" not in response.content
        assert b"&lt;img src=x onerror=alert(1)&gt;.jpg" in response.content

    def test_the_summary_counts_final_labels(self, client, labeled_project, users):
        response = client_for(client, users["charlie"]).get(
            reverse("projects:detail", args=[labeled_project.id])
        )
        counts = dict(response.context["summary"]["final_counts"])
        assert sum(counts.values()) == 10


class TestExport:
    def test_export_zip_sorts_images_by_final_label_with_a_manifest(
        self, client, labeled_project, users, django_capture_on_commit_callbacks
    ):
        image = Image.objects.first()
        services.image_set_label(image=image, user=users["bob"], label="disgust")
        viewer = client_for(client, users["charlie"])
        with django_capture_on_commit_callbacks(execute=True):
            response = viewer.post(reverse("projects:export_create", args=[labeled_project.id]))
        export = Export.objects.get()
        assert response.status_code == 302
        assert export.status == Export.Status.READY
        download = viewer.get(reverse("projects:export_download", args=[labeled_project.id, export.id]))
        archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
        rows = list(csv.DictReader(io.TextIOWrapper(archive.open("manifest.csv"), encoding="utf-8")))
        assert len(rows) == 10
        for row in rows:
            db_image = Image.objects.get(original_name=row["original_name"])
            assert row["final_label"] == db_image.final_label
            assert row["file"].split("/")[0] == db_image.final_label
            assert archive.read(row["file"]) == db_image.file.read()
        reviewed = next(r for r in rows if r["original_name"] == image.original_name)
        assert (reviewed["final_label"], reviewed["reviewed_by"]) == ("disgust", "bob")
        assert sorted(archive.namelist()) == sorted(["manifest.csv", *[r["file"] for r in rows]])

    def test_manifest_cells_cannot_become_formulas(
        self, project, users, active_model, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            services.batch_create(project=project, user=users["bob"], files=[jpg("=HYPERLINK(1).jpg")])
            export = services.export_start(project=project, user=users["bob"])
        export.refresh_from_db()
        archive = zipfile.ZipFile(export.file.open())
        manifest = archive.read("manifest.csv").decode()
        assert "'=HYPERLINK(1).jpg" in manifest

    def test_an_export_that_is_not_ready_cannot_be_downloaded(self, client, project, users):
        export = Export.objects.create(project=project, requested_by=users["bob"])
        response = client_for(client, users["bob"]).get(
            reverse("projects:export_download", args=[project.id, export.id])
        )
        assert response.status_code == 404


class TestOtherTeams:
    """QUALITY.md 11: another team's objects are 404 by id or guessed URL, and nothing changes."""

    def test_everything_of_another_team_is_404(self, client, labeled_project, outsider):
        image = Image.objects.first()
        batch = Batch.objects.get()
        export = services.export_start(project=labeled_project, user=labeled_project.created_by)
        dave = client_for(client, outsider)
        pid = labeled_project.id
        gets = [
            reverse("projects:detail", args=[pid]),
            reverse("projects:review", args=[pid]),
            reverse("projects:members", args=[pid]),
            reverse("projects:upload", args=[pid]),
            reverse("projects:batch", args=[pid, batch.id]),
            reverse("projects:batch_progress", args=[pid, batch.id]),
            reverse("projects:image_file", args=[pid, image.id, "thumb"]),
            reverse("projects:image_file", args=[pid, image.id, "full"]),
            reverse("projects:export", args=[pid, export.id]),
            reverse("projects:export_download", args=[pid, export.id]),
        ]
        for url in gets:
            assert dave.get(url).status_code == 404, url
        posts = [
            reverse("projects:image_label", args=[pid, image.id]),
            reverse("projects:bulk_label", args=[pid]),
            reverse("projects:export_create", args=[pid]),
            reverse("projects:members", args=[pid]),
            reverse("projects:upload", args=[pid]),
        ]
        for url in posts:
            body = json.dumps({"label": "fear", "ids": [image.id]})
            assert dave.post(url, body, content_type="application/json").status_code == 404, url
        image.refresh_from_db()
        assert image.reviewed_label == ""
        assert Export.objects.count() == 1

    def test_a_removed_member_loses_access(self, client, labeled_project, users):
        Membership.objects.filter(project=labeled_project, user=users["charlie"]).delete()
        response = client_for(client, users["charlie"]).get(
            reverse("projects:detail", args=[labeled_project.id])
        )
        assert response.status_code == 404

    def test_another_projects_image_id_is_404_inside_your_own_project(
        self, client, labeled_project, outsider
    ):
        other = Project.objects.get(name="Dave's team")
        image = Image.objects.first()
        response = client_for(client, outsider).get(
            reverse("projects:image_file", args=[other.id, image.id, "full"])
        )
        assert response.status_code == 404


class TestAdminAndPages:
    def test_admin_pages_list_every_model(self, client, labeled_project, admin_user):
        client.force_login(admin_user)
        image = Image.objects.first()
        export = Export.objects.create(project=labeled_project)
        pages = [
            "/admin/projects/project/",
            f"/admin/projects/project/{labeled_project.id}/change/",
            "/admin/projects/membership/",
            "/admin/projects/batch/",
            "/admin/projects/image/",
            "/admin/projects/image/?predicted_label=happy&status=labeled",
            f"/admin/projects/image/{image.id}/change/",
            "/admin/projects/export/",
            f"/admin/projects/export/{export.id}/change/",
            "/admin/inference/modelversion/",
        ]
        for page in pages:
            assert client.get(page).status_code == 200, page
        thumbnail = client.get(reverse("admin:projects_image_thumbnail", args=[image.id]))
        assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"

    def test_admin_thumbnails_are_for_staff_only(self, client, labeled_project, users):
        image = Image.objects.first()
        response = client_for(client, users["alice"]).get(
            reverse("admin:projects_image_thumbnail", args=[image.id])
        )
        assert response.status_code == 302  # to the admin login

    def test_the_review_page_makes_a_fixed_number_of_queries(
        self, client, labeled_project, users, django_assert_max_num_queries
    ):
        services.images_set_label(
            project=labeled_project,
            image_ids=list(Image.objects.values_list("id", flat=True)),
            user=users["bob"],
            label=None,
        )
        bob = client_for(client, users["bob"])
        bob.get(reverse("projects:review", args=[labeled_project.id]))  # warm the session
        with django_assert_max_num_queries(8):
            response = bob.get(reverse("projects:review", args=[labeled_project.id]))
        assert response.status_code == 200

    def test_the_summary_page_makes_a_fixed_number_of_queries(
        self, client, labeled_project, users, django_assert_max_num_queries
    ):
        charlie = client_for(client, users["charlie"])
        with django_assert_max_num_queries(14):
            response = charlie.get(reverse("projects:detail", args=[labeled_project.id]))
        assert response.status_code == 200

    def test_fields_a_reviewer_may_not_set_are_ignored(self, client, labeled_project, users):
        image = Image.objects.first()
        before = (image.predicted_label, image.status, image.project_id, image.confidence)
        forged = {
            "label": "fear",
            "predicted_label": "happy",
            "status": "failed",
            "project": 999,
            "confidence": 0,
        }
        response = post_label(client_for(client, users["bob"]), image, forged)
        image.refresh_from_db()
        assert response.status_code == 200
        assert image.reviewed_label == "fear"
        assert (image.predicted_label, image.status, image.project_id, image.confidence) == before


def test_the_review_grid_puts_the_least_sure_first(client, labeled_project, users):
    response = client_for(client, users["bob"]).get(
        reverse("projects:review", args=[labeled_project.id]), {"order": "confidence"}
    )
    shown = [image.confidence for image in response.context["page"]]
    assert shown == sorted(shown) and len(shown) == 10


def test_deleting_a_project_removes_its_rows_and_files(labeled_project, django_capture_on_commit_callbacks):
    from django.core.files.storage import default_storage

    names = list(Image.objects.values_list("file", flat=True))
    assert all(default_storage.exists(name) for name in names)
    with django_capture_on_commit_callbacks(execute=True):
        services.project_delete(project=labeled_project)
    assert not Image.objects.exists() and not Batch.objects.exists()
    assert not any(default_storage.exists(name) for name in names)
