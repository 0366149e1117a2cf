"""The API's error bodies, as clients see them: pinned before the per-app mappings became one
exception handler (facelabel/errors.py), so that clients keep reading them the same way."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts.services import api_token_create
from projects.models import Image
from tests.factories import face_jpeg

API = "/api/v1"


def api(user) -> APIClient:
    _, key = api_token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_service_refusal_is_a_400_with_its_messages_under_detail(project, users):
    url = f"{API}/projects/{project.id}/members/"
    response = api(users["alice"]).post(url, {"username": "zoe", "role": "viewer"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": ["There is no user called “zoe”. An admin adds team members."]}


def test_a_refused_member_change_is_a_400_with_its_messages_under_detail(project, users):
    url = f"{API}/projects/{project.id}/members/{users['alice'].id}/"
    response = api(users["alice"]).delete(url)
    assert response.status_code == 400
    assert response.json() == {"detail": ["A project keeps at least one owner."]}


def test_nothing_to_undo_is_a_400_with_its_message_under_detail(project, users):
    response = api(users["bob"]).post(f"{API}/projects/{project.id}/images/undo/")
    assert response.status_code == 400
    assert list(response.json()) == ["detail"] and len(response.json()["detail"]) == 1


def test_an_audit_of_nothing_is_a_400_with_its_message_under_detail(project, users):
    response = api(users["alice"]).post(f"{API}/projects/{project.id}/audits/", {}, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": ["No labeled image of this project has an original label to check."]}


def test_a_webhook_refusal_names_its_field(project, users):
    url = f"{API}/projects/{project.id}/webhooks/"
    response = api(users["alice"]).post(url, {"url": "ftp://example.com/hook"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"url": ["Webhook URLs must start with http:// or https://."]}


def test_a_webhook_refusal_of_no_field_is_under_non_field_errors(project, users, settings, monkeypatch):
    from webhooks import services

    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    monkeypatch.setattr(services, "MAX_WEBHOOKS_PER_PROJECT", 0)
    url = f"{API}/projects/{project.id}/webhooks/"
    response = api(users["alice"]).post(url, {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["A project has at most 0 webhooks."]}


def test_predicting_without_an_active_model_is_a_503_with_a_detail(users):
    image = SimpleUploadedFile("me.jpg", face_jpeg(3))
    response = api(users["alice"]).post(f"{API}/predict/", {"image": image})
    assert response.status_code == 503
    assert response.json() == {"detail": "No model version is active."}


def test_accepting_a_stale_label_is_a_409_with_the_labels_now(project, users):
    batch = project.batches.create(uploaded_by=users["bob"], status="done")
    image = Image.objects.create(
        project=project,
        batch=batch,
        file="x.jpg",
        original_name="x.jpg",
        status="labeled",
        predicted_label="sad",
    )
    url = f"{API}/projects/{project.id}/images/bulk-accept/"
    body = {"ids": [image.id], "shown": {str(image.id): "happy"}}
    response = api(users["bob"]).post(url, body, format="json")
    assert response.status_code == 409
    assert set(response.json()) == {"detail", "final_labels"}
    assert response.json()["final_labels"] == {str(image.id): "sad"}
    assert isinstance(response.json()["detail"], list)


@pytest.mark.parametrize("length", ["10000000000000", "not a number"])
def test_an_upload_refused_before_reading_is_answered_with_a_detail(project, users, settings, length):
    settings.UPLOAD_MAX_BYTES = 1000
    response = api(users["bob"]).post(
        f"{API}/projects/{project.id}/batches/", {}, HTTP_CONTENT_LENGTH=length, format="multipart"
    )
    assert response.status_code in (400, 413)
    assert list(response.json()) in (["detail"], ["files"])
