"""The whole app in Polish: emotion names, status words and the services' messages, while the
values machines read (form values, links, the API's JSON) stay English."""

import pytest
from django.conf import settings
from django.urls import reverse

from audit.models import AuditRun
from projects.models import Batch, Export, Image, LabelChange
from tests.conftest import client_for


@pytest.fixture
def polish(client, users):
    client_for(client, users["bob"])
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "pl"
    return client


@pytest.fixture
def images(project, users):
    batch = Batch.objects.create(project=project, status=Batch.Status.LABELING)
    happy = Image.objects.create(
        project=project,
        batch=batch,
        file="images/0.jpg",
        original_name="0.jpg",
        status=Image.Status.LABELED,
        original_label="sad",
        predicted_label="happy",
        confidence=0.9,
        probabilities={"happy": 0.9, "sad": 0.1},
        likely_mislabeled=True,
        suggested_label="angry",
        label_quality=0.05,
    )
    Image.objects.create(
        project=project, batch=batch, file="images/1.jpg", original_name="1.jpg", status=Image.Status.PENDING
    )
    LabelChange.objects.create(project=project, image=happy, user=users["bob"], to_label="fear", how="single")
    Export.objects.create(project=project, status=Export.Status.READY, image_count=2)
    AuditRun.objects.create(project=project, status=AuditRun.Status.RUNNING)
    return happy


def test_the_review_grid_names_emotions_and_statuses_in_polish(polish, project, images):
    body = polish.get(reverse("projects:review", args=[project.id])).content.decode()
    assert "radość" in body and "smutek" in body and "złość" in body  # model, original, suggestion
    assert '<option value="happy">radość</option>' in body  # the value a request sends stays English
    assert "oczekuje" in body  # the pending image's status
    assert "najpierw najmniej pewne" in body  # the order "least sure first"
    assert 'data-emotion-names="złość,odraza,strach,radość,smutek,zaskoczenie,neutralność"' in body


def test_the_summary_and_health_pages_speak_polish(polish, project, images):
    summary = polish.get(reverse("projects:detail", args=[project.id])).content.decode()
    assert "radość" in summary and "gotowy" in summary  # the export is ready
    assert "etykietowanie" in summary  # the batch is labeling
    assert "?final=happy" in summary  # links keep the English codes
    health = polish.get(reverse("audit:health", args=[project.id])).content.decode()
    assert "w toku" in health and "prawdopodobieństwa modelu etykietującego" in health
    assert "zaskoczenie" in health


def test_the_image_detail_and_batch_pages_speak_polish(polish, project, images):
    detail = polish.get(reverse("projects:image", args=[project.id, images.id])).content.decode()
    assert "strach" in detail and "radość" in detail  # history, probabilities
    batch = polish.get(reverse("projects:batch", args=[project.id, images.batch_id])).content.decode()
    assert "etykietowanie" in batch and 'data-status-done="gotowe"' in batch


def test_service_errors_shown_in_pages_are_polish(polish, project, images):
    response = polish.post(
        reverse("projects:image_label", args=[project.id, images.id]),
        {"label": "joy"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "nie jest żadną z siedmiu emocji" in response.json()["error"]
    polish.post(reverse("audit:audit_create", args=[project.id]), {"kind": "nonsense"})
    health = polish.get(reverse("audit:health", args=[project.id])).content.decode()
    assert "Nieznany rodzaj audytu" in health


def test_the_api_keeps_english_codes(polish, project, images):
    data = polish.get(reverse("api-images", args=[project.id])).json()
    assert {row["predicted_label"] for row in data["results"]} <= {"happy", ""}
