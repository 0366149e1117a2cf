"""The REST API under /api/v1/: every endpoint's happy path and validation errors, and the
permission matrix of QUALITY.md items 11-14 (owner, reviewer, viewer, another team, anonymous,
revoked token), each asserting the status code and the database state afterwards."""

import io
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import api_token_create, api_token_revoke
from projects import services
from projects.models import EMOTIONS, ROLE_RANK, Batch, Export, Image, Membership, Project, Role
from tests.conftest import register_tiny_model, zip_bytes
from tests.factories import face_jpeg

API = "/api/v1"
ACTORS = ("owner", "reviewer", "viewer", "outsider", "anonymous", "revoked")
USERNAME_OF = {
    "owner": "alice",
    "reviewer": "bob",
    "viewer": "charlie",
    "outsider": "dave",
    "revoked": "alice",
}


def token_client(user) -> APIClient:
    _, key = api_token_create(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def jpg(name: str = "face.jpg", seed: int = 0) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, face_jpeg(seed), content_type="image/jpeg")


@pytest.fixture
def as_(users, outsider):
    """as_("viewer") is an APIClient authenticated the way that actor would be."""

    def client(actor: str) -> APIClient:
        if actor == "anonymous":
            return APIClient()
        user = outsider if actor == "outsider" else users[USERNAME_OF[actor]]
        if actor != "revoked":
            return token_client(user)
        token, key = api_token_create(user=user, name="old")
        api_token_revoke(user=user, token_id=token.id)
        revoked = APIClient()
        revoked.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return revoked

    return client


@pytest.fixture
def image(project, users):
    """One image the model has labeled, without running the model (the matrix needs many)."""
    batch = Batch.objects.create(project=project, uploaded_by=users["bob"], status=Batch.Status.DONE)
    probabilities = dict.fromkeys(EMOTIONS, 0.05) | {"happy": 0.7}
    return Image.objects.create(
        project=project,
        batch=batch,
        file="images/x.jpg",
        original_name="x.jpg",
        original_label="sad",
        status=Image.Status.LABELED,
        predicted_label="happy",
        confidence=0.7,
        probabilities=probabilities,
        face_box=[0, 0, 48, 48],
        face_path=Image.FacePath.SMALL,
    )


@pytest.fixture
def api_labeled_project(project, users, db, tmp_path, django_capture_on_commit_callbacks):
    """Ten images uploaded through the API and labeled by the tiny model in the eager worker."""
    model = register_tiny_model(tmp_path)
    archive = zip_bytes({f"{EMOTIONS[i % 7]}/face{i}.jpg": face_jpeg(i) for i in range(10)})
    with django_capture_on_commit_callbacks(execute=True):
        response = token_client(users["bob"]).post(
            f"{API}/projects/{project.id}/batches/",
            {"files": [SimpleUploadedFile("set.zip", archive)]},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    project.model = model
    return project


# --- The permission matrix ----------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    method: str
    path: str  # formatted with p (project), i (image), b (batch), e (export), bob, charlie
    role: str  # the least role that may do it
    success: int
    body: Any = None
    changed: Any = None  # (ctx) -> bool: did the action happen? None for reads


def upload_body():
    return {"files": [jpg("new.jpg", 5)]}


ACTIONS = {
    "list projects": Action("get", "/projects/", Role.VIEWER, 200),
    "read project": Action("get", "/projects/{p}/", Role.VIEWER, 200),
    "rename project": Action(
        "patch",
        "/projects/{p}/",
        Role.OWNER,
        200,
        {"name": "Renamed"},
        lambda c: Project.objects.get(id=c["p"]).name == "Renamed",
    ),
    "delete project": Action(
        "delete",
        "/projects/{p}/",
        Role.OWNER,
        204,
        None,
        lambda c: not Project.objects.filter(id=c["p"]).exists(),
    ),
    "list members": Action("get", "/projects/{p}/members/", Role.VIEWER, 200),
    "add member": Action(
        "post",
        "/projects/{p}/members/",
        Role.OWNER,
        201,
        {"username": "erin", "role": "reviewer"},
        lambda c: Membership.objects.filter(project_id=c["p"], user__username="erin").exists(),
    ),
    "change role": Action(
        "patch",
        "/projects/{p}/members/{charlie}/",
        Role.OWNER,
        200,
        {"role": "reviewer"},
        lambda c: Membership.objects.get(project_id=c["p"], user_id=c["charlie"]).role == Role.REVIEWER,
    ),
    "remove member": Action(
        "delete",
        "/projects/{p}/members/{bob}/",
        Role.OWNER,
        204,
        None,
        lambda c: not Membership.objects.filter(project_id=c["p"], user_id=c["bob"]).exists(),
    ),
    "list batches": Action("get", "/projects/{p}/batches/", Role.VIEWER, 200),
    "read batch": Action("get", "/projects/{p}/batches/{b}/", Role.VIEWER, 200),
    "upload": Action(
        "post",
        "/projects/{p}/batches/",
        Role.REVIEWER,
        201,
        upload_body,
        lambda c: Image.objects.filter(project_id=c["p"], original_name="new.jpg").exists(),
    ),
    "list images": Action("get", "/projects/{p}/images/", Role.VIEWER, 200),
    "read image": Action("get", "/projects/{p}/images/{i}/", Role.VIEWER, 200),
    "relabel": Action(
        "patch",
        "/projects/{p}/images/{i}/",
        Role.REVIEWER,
        200,
        {"reviewed_label": "fear"},
        lambda c: Image.objects.get(id=c["i"]).reviewed_label == "fear",
    ),
    "bulk accept": Action(
        "post",
        "/projects/{p}/images/bulk-accept/",
        Role.REVIEWER,
        200,
        lambda: None,  # filled in by the test: needs the image id
        lambda c: Image.objects.get(id=c["i"]).reviewed_label == "happy",
    ),
    "list exports": Action("get", "/projects/{p}/exports/", Role.VIEWER, 200),
    "start export": Action(
        "post",
        "/projects/{p}/exports/",
        Role.VIEWER,
        202,
        {},
        lambda c: Export.objects.filter(project_id=c["p"]).count() == 2,
    ),
    "read export": Action("get", "/projects/{p}/exports/{e}/", Role.VIEWER, 200),
}


def expected_status(action: Action, actor: str) -> int:
    if actor in ("anonymous", "revoked"):
        return 401
    if actor == "outsider":
        # Listing one's own projects is allowed to anyone; another team's project is not there.
        return 200 if action.path == "/projects/" else 404
    return action.success if ROLE_RANK[Role(actor)] >= ROLE_RANK[action.role] else 403


def send(client: APIClient, action: Action, ctx: dict):
    url = API + action.path.format(**ctx)
    body = action.body() if callable(action.body) else action.body
    if action.path.endswith("bulk-accept/"):
        body = {"ids": [ctx["i"]]}
    kind = "multipart" if action.path.endswith("batches/") else "json"
    return getattr(client, action.method)(url, body, format=kind)


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", ACTIONS)
def test_permission_matrix(name, actor, as_, project, users, image, django_user_model):
    django_user_model.objects.create_user(username="erin", password="erin-password")
    export = Export.objects.create(project=project, requested_by=users["charlie"])
    ctx = {
        "p": project.id,
        "i": image.id,
        "b": image.batch_id,
        "e": export.id,
        "bob": users["bob"].id,
        "charlie": users["charlie"].id,
    }
    action = ACTIONS[name]
    response = send(as_(actor), action, ctx)
    expected = expected_status(action, actor)
    assert response.status_code == expected, response.content
    if action.changed is not None:
        assert action.changed(ctx) == (expected == action.success)


def test_another_teams_project_is_not_listed(as_, project, outsider):
    response = as_("outsider").get(f"{API}/projects/")
    assert [p["name"] for p in response.json()["results"]] == ["Dave's team"]


def test_a_removed_member_gets_404(as_, project, users, image):
    client = as_("viewer")
    services.member_remove(project=project, user_id=users["charlie"].id)
    assert client.get(f"{API}/projects/{project.id}/images/{image.id}/").status_code == 404
    assert client.post(f"{API}/projects/{project.id}/exports/").status_code == 404
    assert not Export.objects.exists()


def test_objects_of_another_project_are_404_through_a_project_one_belongs_to(as_, project, image, outsider):
    own = Project.objects.get(name="Dave's team")
    response = as_("outsider").patch(
        f"{API}/projects/{own.id}/images/{image.id}/", {"reviewed_label": "fear"}, format="json"
    )
    image.refresh_from_db()
    assert response.status_code == 404
    assert image.reviewed_label == ""


ENDPOINTS = [
    ("get", "/projects/"),
    ("post", "/projects/"),
    ("get", "/projects/{p}/"),
    ("patch", "/projects/{p}/"),
    ("delete", "/projects/{p}/"),
    ("get", "/projects/{p}/members/"),
    ("post", "/projects/{p}/members/"),
    ("patch", "/projects/{p}/members/{u}/"),
    ("delete", "/projects/{p}/members/{u}/"),
    ("get", "/projects/{p}/batches/"),
    ("post", "/projects/{p}/batches/"),
    ("get", "/projects/{p}/batches/1/"),
    ("get", "/projects/{p}/images/"),
    ("get", "/projects/{p}/images/1/"),
    ("patch", "/projects/{p}/images/1/"),
    ("post", "/projects/{p}/images/bulk-accept/"),
    ("get", "/projects/{p}/exports/"),
    ("post", "/projects/{p}/exports/"),
    ("get", "/projects/{p}/exports/1/"),
    ("get", "/projects/{p}/exports/1/download/"),
    ("get", "/tokens/"),
    ("post", "/tokens/"),
    ("delete", "/tokens/1/"),
]


@pytest.mark.parametrize("header", ["", "Token fl_wrong", "Token", "Bearer nope", "revoked"])
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_answers_401_without_a_valid_token(method, path, header, project, users):
    client = APIClient()
    if header == "revoked":
        token, key = api_token_create(user=users["alice"], name="old")
        api_token_revoke(user=users["alice"], token_id=token.id)
        header = f"Token {key}"
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = getattr(client, method)(API + path.format(p=project.id, u=users["bob"].id))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert Project.objects.get(id=project.id).name == "Alice's faces"
    assert Membership.objects.filter(project=project).count() == 3


# --- Session authentication and CSRF ------------------------------------------------------------


class TestSessionAuth:
    def test_a_logged_in_browser_reads_without_a_token(self, project, users):
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(users["charlie"])
        assert client.get(f"{API}/projects/{project.id}/").json()["name"] == "Alice's faces"

    def test_a_session_post_without_csrf_is_refused(self, users):
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(users["alice"])
        response = client.post(f"{API}/projects/", {"name": "Forged"}, format="json")
        assert response.status_code == 403
        assert not Project.objects.filter(name="Forged").exists()

    def test_a_session_patch_without_csrf_is_refused(self, project, users):
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(users["alice"])
        response = client.patch(f"{API}/projects/{project.id}/", {"name": "Forged"}, format="json")
        project.refresh_from_db()
        assert response.status_code == 403
        assert project.name == "Alice's faces"

    def test_a_session_post_with_the_csrf_token_goes_through(self, users):
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(users["alice"])
        client.get(reverse("accounts:profile"))  # sets the CSRF cookie, as any page does
        token = client.cookies["csrftoken"].value
        response = client.post(f"{API}/projects/", {"name": "Real"}, format="json", HTTP_X_CSRFTOKEN=token)
        assert response.status_code == 201
        assert Project.objects.filter(name="Real", memberships__user=users["alice"]).exists()


# --- Projects and members -----------------------------------------------------------------------


class TestProjects:
    def test_creating_a_project_makes_the_creator_its_owner(self, as_, users):
        response = as_("reviewer").post(f"{API}/projects/", {"name": "Bob's set"}, format="json")
        project = Project.objects.get(id=response.json()["id"])
        assert response.status_code == 201
        assert response.json()["created_by"] == "bob"
        assert Membership.objects.get(project=project, user=users["bob"]).role == Role.OWNER

    @pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 201}])
    def test_a_project_needs_a_name(self, as_, users, body):
        response = as_("owner").post(f"{API}/projects/", body, format="json")
        assert response.status_code == 400
        assert list(Project.objects.values_list("name", flat=True)) == ["Dave's team"]

    def test_the_list_is_paginated(self, as_, project):
        body = as_("viewer").get(f"{API}/projects/").json()
        assert body["count"] == 1
        assert body["results"][0]["id"] == project.id

    def test_owner_updates_name_description_and_relabel_opt_in(self, as_, project):
        body = {"name": "New", "description": "d", "relabel_on_new_model": True}
        response = as_("owner").patch(f"{API}/projects/{project.id}/", body, format="json")
        project.refresh_from_db()
        assert response.status_code == 200
        assert (project.name, project.description, project.relabel_on_new_model) == ("New", "d", True)

    def test_a_blank_new_name_is_refused(self, as_, project):
        response = as_("owner").patch(f"{API}/projects/{project.id}/", {"name": " "}, format="json")
        project.refresh_from_db()
        assert response.status_code == 400
        assert project.name == "Alice's faces"

    def test_mass_assignment_is_ignored(self, as_, project, outsider):
        body = {"name": "Mine", "id": 999, "created_by": outsider.id, "owner": outsider.id}
        response = as_("owner").patch(f"{API}/projects/{project.id}/", body, format="json")
        project.refresh_from_db()
        assert response.status_code == 200
        assert (project.id, project.name, project.created_by.username) == (
            response.json()["id"],
            "Mine",
            "alice",
        )
        assert not Membership.objects.filter(project=project, user=outsider).exists()


class TestMembers:
    def test_members_are_listed_with_their_roles(self, as_, project):
        body = as_("viewer").get(f"{API}/projects/{project.id}/members/").json()
        assert [(m["username"], m["role"]) for m in body] == [
            ("alice", "owner"),
            ("bob", "reviewer"),
            ("charlie", "viewer"),
        ]

    @pytest.mark.parametrize(
        "body", [{"username": "nobody", "role": "viewer"}, {"username": "dave", "role": "king"}, {}]
    )
    def test_adding_an_unknown_user_or_role_is_refused(self, as_, project, outsider, body):
        response = as_("owner").post(f"{API}/projects/{project.id}/members/", body, format="json")
        assert response.status_code == 400
        assert not Membership.objects.filter(project=project, user=outsider).exists()

    def test_the_last_owner_cannot_be_removed_or_demoted(self, as_, project, users):
        owner = as_("owner")
        url = f"{API}/projects/{project.id}/members/{users['alice'].id}/"
        assert owner.delete(url).status_code == 400
        assert owner.patch(url, {"role": "viewer"}, format="json").status_code == 400
        assert Membership.objects.get(project=project, user=users["alice"]).role == Role.OWNER

    def test_a_second_owner_lets_the_first_leave(self, as_, project, users):
        owner = as_("owner")
        owner.patch(
            f"{API}/projects/{project.id}/members/{users['bob'].id}/", {"role": "owner"}, format="json"
        )
        response = owner.delete(f"{API}/projects/{project.id}/members/{users['alice'].id}/")
        assert response.status_code == 204
        assert list(project.memberships.values_list("user__username", "role").order_by("user__username")) == [
            ("bob", "owner"),
            ("charlie", "viewer"),
        ]

    def test_a_non_member_user_id_is_404(self, as_, project, outsider):
        response = as_("owner").patch(
            f"{API}/projects/{project.id}/members/{outsider.id}/", {"role": "owner"}, format="json"
        )
        assert response.status_code == 404
        assert not Membership.objects.filter(project=project, user=outsider).exists()

    def test_an_invalid_role_change_is_refused(self, as_, project, users):
        url = f"{API}/projects/{project.id}/members/{users['charlie'].id}/"
        response = as_("owner").patch(url, {"role": "god"}, format="json")
        assert response.status_code == 400
        assert Membership.objects.get(project=project, user=users["charlie"]).role == Role.VIEWER


# --- Batches ------------------------------------------------------------------------------------


class TestBatches:
    def test_an_uploaded_zip_is_labeled_and_its_progress_reported(self, as_, api_labeled_project):
        batch = Batch.objects.get()
        response = as_("viewer").get(f"{API}/projects/{api_labeled_project.id}/batches/{batch.id}/")
        body = response.json()
        assert response.status_code == 200
        assert (body["status"], body["total"], body["done"], body["labeled"]) == ("done", 10, 10, 10)
        listed = as_("viewer").get(f"{API}/projects/{api_labeled_project.id}/batches/").json()
        assert [b["id"] for b in listed["results"]] == [batch.id]

    def test_upload_answers_with_the_batch_and_rejected_files(self, as_, project):
        files = [jpg("a.jpg", 1), SimpleUploadedFile("notes.txt", b"hello")]
        response = as_("reviewer").post(f"{API}/projects/{project.id}/batches/", {"files": files})
        body = response.json()
        assert response.status_code == 201
        assert body["images"] == 1
        assert [r["name"] for r in body["rejected"]] == ["notes.txt"]
        assert Batch.objects.get(id=body["batch"]).image_count == 1

    def test_the_same_upload_token_gives_the_same_batch(self, as_, project):
        client, token = as_("reviewer"), str(uuid.uuid4())
        url = f"{API}/projects/{project.id}/batches/"
        first = client.post(url, {"files": [jpg()], "upload_token": token}).json()
        second = client.post(url, {"files": [jpg()], "upload_token": token}).json()
        assert first["batch"] == second["batch"]
        assert Batch.objects.count() == 1

    @pytest.mark.parametrize(
        "body", [{}, {"files": [jpg()], "upload_token": "not-a-uuid"}, {"files": "text"}]
    )
    def test_a_bad_upload_is_refused_whole(self, as_, project, body):
        response = as_("reviewer").post(f"{API}/projects/{project.id}/batches/", body)
        assert response.status_code == 400
        assert not Batch.objects.exists()

    def test_a_body_over_the_limit_is_refused_before_it_is_read(self, as_, project, settings):
        settings.UPLOAD_MAX_BYTES = 100
        response = as_("reviewer").post(f"{API}/projects/{project.id}/batches/", {"files": [jpg()]})
        assert response.status_code == 413
        assert "too large" in response.json()["detail"]
        assert not Batch.objects.exists()

    def test_too_many_files_are_refused(self, as_, project, settings):
        settings.UPLOAD_MAX_FILES = 1
        files = [jpg("a.jpg"), jpg("b.jpg")]
        response = as_("reviewer").post(f"{API}/projects/{project.id}/batches/", {"files": files})
        assert response.status_code == 400
        assert not Batch.objects.exists()

    def test_another_projects_batch_is_404(self, as_, project, image, outsider):
        own = Project.objects.get(name="Dave's team")
        response = as_("outsider").get(f"{API}/projects/{own.id}/batches/{image.batch_id}/")
        assert response.status_code == 404


# --- Images -------------------------------------------------------------------------------------


class TestImages:
    def test_detail_has_everything_the_model_said(self, as_, api_labeled_project):
        image = Image.objects.first()
        body = as_("viewer").get(f"{API}/projects/{api_labeled_project.id}/images/{image.id}/").json()
        assert set(body["probabilities"]) == set(EMOTIONS)
        assert body["face_box"] == [0, 0, 48, 48]
        assert body["face_path"] == "small"
        assert body["model_version"] == "tiny"
        assert body["status"] == "labeled"
        assert body["predicted_label"] == body["final_label"] == image.predicted_label
        assert body["original_name"] == image.original_name
        assert body["confidence"] == pytest.approx(image.confidence)

    def test_the_list_filters_like_the_review_grid(self, as_, api_labeled_project):
        client, url = as_("viewer"), f"{API}/projects/{api_labeled_project.id}/images/"
        happy = Image.objects.filter(original_label="happy").count()
        assert client.get(url, {"original": "happy"}).json()["count"] == happy
        assert client.get(url, {"min_confidence": "1.01"}).json()["count"] == 0
        assert client.get(url, {"min_confidence": "junk", "status": "bogus"}).json()["count"] == 10
        page = client.get(url, {"page_size": 3, "order": "confidence"}).json()
        confidences = [i["confidence"] for i in page["results"]]
        assert (page["count"], len(confidences), confidences) == (10, 3, sorted(confidences))

    def test_a_reviewer_sets_and_clears_a_label(self, as_, project, image, users):
        client, url = as_("reviewer"), f"{API}/projects/{project.id}/images/{image.id}/"
        response = client.patch(url, {"reviewed_label": "fear"}, format="json")
        image.refresh_from_db()
        assert response.json()["final_label"] == "fear"
        assert (image.reviewed_label, image.reviewed_by) == ("fear", users["bob"])
        response = client.patch(url, {"reviewed_label": None}, format="json")
        image.refresh_from_db()
        assert response.status_code == 200
        assert (image.reviewed_label, image.reviewed_by, image.final_label) == ("", None, "happy")

    @pytest.mark.parametrize("body", [{"reviewed_label": "bored"}, {}, {"reviewed_label": 3}])
    def test_an_invalid_label_is_refused(self, as_, project, image, body):
        response = as_("reviewer").patch(
            f"{API}/projects/{project.id}/images/{image.id}/", body, format="json"
        )
        image.refresh_from_db()
        assert response.status_code == 400
        assert image.reviewed_label == ""

    def test_mass_assignment_on_an_image_is_ignored(self, as_, project, image, outsider):
        other = Project.objects.get(name="Dave's team")
        body = {
            "reviewed_label": "sad",
            "predicted_label": "angry",
            "status": "failed",
            "project": other.id,
            "confidence": 0.1,
        }
        response = as_("reviewer").patch(
            f"{API}/projects/{project.id}/images/{image.id}/", body, format="json"
        )
        image.refresh_from_db()
        assert response.status_code == 200
        assert (image.reviewed_label, image.predicted_label, image.status) == ("sad", "happy", "labeled")
        assert (image.project_id, image.confidence) == (project.id, 0.7)

    def test_bulk_accept_takes_the_model_labels_or_sets_one(self, as_, project, image):
        client, url = as_("reviewer"), f"{API}/projects/{project.id}/images/bulk-accept/"
        assert client.post(url, {"ids": [image.id]}, format="json").json() == {"changed": 1}
        image.refresh_from_db()
        assert image.reviewed_label == "happy"
        assert client.post(url, {"ids": [image.id], "label": "sad"}, format="json").json() == {"changed": 1}
        image.refresh_from_db()
        assert image.reviewed_label == "sad"

    def test_bulk_accept_leaves_other_projects_alone(self, as_, project, image, outsider):
        own = Project.objects.get(name="Dave's team")
        url = f"{API}/projects/{own.id}/images/bulk-accept/"
        response = as_("outsider").post(url, {"ids": [image.id], "label": "sad"}, format="json")
        image.refresh_from_db()
        assert response.json() == {"changed": 0}
        assert image.reviewed_label == ""

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"ids": []},
            {"ids": "1"},
            {"ids": list(range(1, 1002))},
            {"ids": [1], "label": "bored"},
            {"ids": [-1]},
        ],
    )
    def test_bulk_accept_validates_its_input(self, as_, project, image, body):
        response = as_("reviewer").post(
            f"{API}/projects/{project.id}/images/bulk-accept/", body, format="json"
        )
        image.refresh_from_db()
        assert response.status_code == 400
        assert image.reviewed_label == ""


# --- Exports ------------------------------------------------------------------------------------


class TestExports:
    def test_a_viewer_starts_polls_and_downloads_an_export(
        self, as_, api_labeled_project, django_capture_on_commit_callbacks
    ):
        client, base = as_("viewer"), f"{API}/projects/{api_labeled_project.id}/exports/"
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(base)
        assert response.status_code == 202
        export = Export.objects.get(id=response.json()["id"])
        assert client.get(f"{base}{export.id}/").json()["status"] == "ready"
        assert client.get(base).json()["results"][0]["id"] == export.id
        download = client.get(f"{base}{export.id}/download/")
        assert download.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).namelist()
        assert "manifest.csv" in names
        assert len([n for n in names if n.endswith(".jpg")]) == 10

    def test_an_export_that_is_not_ready_is_404(self, as_, project, users):
        export = Export.objects.create(project=project, requested_by=users["bob"])
        response = as_("viewer").get(f"{API}/projects/{project.id}/exports/{export.id}/download/")
        assert response.status_code == 404

    def test_another_teams_export_cannot_be_downloaded(self, as_, project, outsider):
        export = Export.objects.create(project=project, status=Export.Status.READY)
        export.file.save("x.zip", ContentFile(b"secret"))
        own = Project.objects.get(name="Dave's team")
        for project_id in (project.id, own.id):
            response = as_("outsider").get(f"{API}/projects/{project_id}/exports/{export.id}/download/")
            assert response.status_code == 404


# --- Tokens -------------------------------------------------------------------------------------


class TestTokens:
    def test_a_new_key_is_shown_once_and_works(self, as_, users):
        response = as_("viewer").post(f"{API}/tokens/", {"name": "nightly"}, format="json")
        key = response.json()["key"]
        token = ApiToken.objects.get(id=response.json()["id"])
        assert response.status_code == 201
        assert (token.user, token.name, token.prefix) == (users["charlie"], "nightly", key[:10])
        fresh = APIClient()
        fresh.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        listed = fresh.get(f"{API}/tokens/").json()
        assert {t["name"] for t in listed} == {"test", "nightly"}
        assert all("key" not in t for t in listed)

    @pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "  "}, {"name": "x" * 101}])
    def test_a_token_needs_a_name(self, as_, body):
        response = as_("viewer").post(f"{API}/tokens/", body, format="json")
        assert response.status_code == 400
        assert ApiToken.objects.count() == 1  # the one the client authenticates with

    def test_revoking_a_token_locks_it_out(self, users):
        token, key = api_token_create(user=users["bob"], name="ci")
        client = token_client(users["bob"])
        assert client.delete(f"{API}/tokens/{token.id}/").status_code == 204
        token.refresh_from_db()
        assert token.revoked_at is not None
        revoked = APIClient()
        revoked.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert revoked.get(f"{API}/projects/").status_code == 401

    def test_another_users_token_is_404(self, users):
        token, _ = api_token_create(user=users["alice"], name="mine")
        response = token_client(users["bob"]).delete(f"{API}/tokens/{token.id}/")
        token.refresh_from_db()
        assert response.status_code == 404
        assert token.revoked_at is None


# --- The profile page ---------------------------------------------------------------------------


class TestProfilePage:
    def test_it_lists_the_users_own_tokens(self, client, users):
        api_token_create(user=users["alice"], name="alices-token")
        api_token_create(user=users["bob"], name="bobs-token")
        client.force_login(users["alice"])
        response = client.get(reverse("accounts:profile"))
        assert response.status_code == 200
        assert b"alices-token" in response.content
        assert b"bobs-token" not in response.content

    def test_a_created_key_is_shown_once(self, client, users):
        client.force_login(users["alice"])
        response = client.post(reverse("accounts:profile"), {"name": "laptop"})
        token = ApiToken.objects.get(user=users["alice"], name="laptop")
        key = response.context["new_key"]
        assert response.status_code == 200
        assert key.encode() in response.content
        assert token.prefix == key[:10]
        assert key.encode() not in client.get(reverse("accounts:profile")).content

    def test_a_token_is_revoked_by_its_owner_only(self, client, users):
        token, _ = api_token_create(user=users["alice"], name="laptop")
        client.force_login(users["bob"])
        client.post(reverse("accounts:token_revoke", args=[token.id]))
        token.refresh_from_db()
        assert token.revoked_at is None
        client.force_login(users["alice"])
        response = client.post(reverse("accounts:token_revoke", args=[token.id]))
        token.refresh_from_db()
        assert response.status_code == 302
        assert token.revoked_at is not None

    def test_revoking_needs_a_post_with_csrf(self, users):
        from django.test import Client

        token, _ = api_token_create(user=users["alice"], name="laptop")
        client = Client(enforce_csrf_checks=True)
        client.force_login(users["alice"])
        assert client.get(reverse("accounts:token_revoke", args=[token.id])).status_code == 405
        assert client.post(reverse("accounts:token_revoke", args=[token.id])).status_code == 403
        token.refresh_from_db()
        assert token.revoked_at is None

    def test_anonymous_users_are_sent_to_log_in(self, client):
        response = client.get(reverse("accounts:profile"))
        assert response.status_code == 302
        assert reverse("login") in response["Location"]


def test_the_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/projects/{project_id}/images/bulk-accept/" in schema.content
    assert client.get("/api/docs/").status_code == 200
