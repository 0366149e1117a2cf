"""POST /api/v1/predict/ and the model-version endpoints."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts.services import api_token_create, api_token_revoke
from projects.models import EMOTIONS
from tests.factories import face_jpeg


@pytest.fixture
def api(users):
    _, key = api_token_create(user=users["alice"], name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_predict_returns_the_emotion_probabilities_and_face_box(api, active_model):
    response = api.post("/api/v1/predict/", {"image": SimpleUploadedFile("me.jpg", face_jpeg(3))})
    body = response.json()
    assert response.status_code == 200
    assert body["emotion"] in EMOTIONS and set(body["probabilities"]) == set(EMOTIONS)
    assert body["confidence"] == pytest.approx(max(body["probabilities"].values()), abs=1e-5)
    assert body["face_box"] == [0, 0, 48, 48] and body["face_path"] == "small"
    assert body["model_version"] == "tiny"


def test_predict_agrees_with_batch_labeling(
    api, active_model, project, users, django_capture_on_commit_callbacks
):
    from projects import services
    from projects.models import Image

    with django_capture_on_commit_callbacks(execute=True):
        services.batch_create(
            project=project, user=users["bob"], files=[SimpleUploadedFile("a.jpg", face_jpeg(5))]
        )
    labeled = Image.objects.get()
    body = api.post("/api/v1/predict/", {"image": SimpleUploadedFile("a.jpg", face_jpeg(5))}).json()
    assert body["emotion"] == labeled.predicted_label
    assert body["probabilities"] == pytest.approx(labeled.probabilities, abs=1e-5)


def test_predict_refuses_what_is_not_an_image(api, active_model):
    response = api.post("/api/v1/predict/", {"image": SimpleUploadedFile("x.jpg", b"<svg></svg>")})
    assert response.status_code == 400
    assert response.json() == {"image": ["not an image"]}


def test_predict_without_an_active_model_is_503(api):
    response = api.post("/api/v1/predict/", {"image": SimpleUploadedFile("me.jpg", face_jpeg(3))})
    assert response.status_code == 503


@pytest.mark.parametrize("header", [None, "Token wrong", "Token revoked"])
def test_predict_needs_a_valid_token(users, active_model, header):
    client = APIClient()
    if header == "Token revoked":
        token, key = api_token_create(user=users["alice"], name="old")
        api_token_revoke(user=users["alice"], token_id=token.id)
        header = f"Token {key}"
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post("/api/v1/predict/", {"image": SimpleUploadedFile("me.jpg", face_jpeg(3))})
    assert response.status_code == 401


def test_model_versions_list_and_active(api, active_model):
    listed = api.get("/api/v1/models/").json()
    assert [version["name"] for version in listed["results"]] == ["tiny"]
    assert api.get("/api/v1/models/active/").json()["name"] == "tiny"
