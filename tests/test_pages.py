"""The pages around the review grid: project settings, password change, tabs, error pages, messages."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from projects.models import POLICY_CROWD_AGREEMENT, Batch, Image, LabelPolicy, Project
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a long new one 42"


def settings_url(project) -> str:
    return reverse("projects:settings", args=[project.id])


def test_an_owner_renames_describes_and_configures_the_project(client, users, project):
    client_for(client, users["alice"])
    response = client.post(
        settings_url(project),
        {
            "name": "  Renamed faces ",
            "description": "FER2013 relabel",
            "relabel_on_new_model": "on",
            "label_policy": LabelPolicy.ORIGINAL,
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.name == "Renamed faces"
    assert project.description == "FER2013 relabel"
    assert project.relabel_on_new_model is True
    assert project.label_policy == LabelPolicy.ORIGINAL
    assert project.label_policy_chosen_by == users["alice"]


def test_saving_unchanged_settings_keeps_the_measured_default(client, users, project):
    client_for(client, users["alice"])
    policy = project.label_policy
    client.post(settings_url(project), {"name": project.name, "label_policy": policy})
    project.refresh_from_db()
    assert project.label_policy == policy
    assert project.label_policy_chosen_at is None
    assert project.relabel_on_new_model is False  # an unticked box is a no


def test_the_settings_page_shows_each_policy_with_its_measured_agreement(client, users, project):
    client_for(client, users["alice"])
    response = client.get(settings_url(project))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="label_policy"' in body
    for agreement in POLICY_CROWD_AGREEMENT.values():
        assert f"{agreement * 100:.1f} %" in body
    assert 'aria-current="page"' in body and 'id="delete-project"' in body


def test_an_empty_name_is_refused_with_a_message(client, users, project):
    client_for(client, users["alice"])
    response = client.post(settings_url(project), {"name": "  "}, follow=True)
    assert "A project needs a name." in response.content.decode()
    project.refresh_from_db()
    assert project.name == "Alice's faces"


def test_only_owners_reach_the_settings(client, users, project, outsider):
    assert client_for(client, users["bob"]).get(settings_url(project)).status_code == 403
    assert client.post(settings_url(project), {"name": "Bob's now"}).status_code == 403
    assert client_for(client, outsider).get(settings_url(project)).status_code == 404
    project.refresh_from_db()
    assert project.name == "Alice's faces"


def test_delete_needs_the_typed_name(client, users, project):
    client_for(client, users["alice"])
    response = client.post(settings_url(project), {"delete": "1", "confirm_name": "Alice"})
    assert response.status_code == 302
    assert Project.objects.filter(id=project.id).exists()
    response = client.post(settings_url(project), {"delete": "1", "confirm_name": "Alice's faces"})
    assert response.status_code == 302 and response["Location"] == reverse("projects:list")
    assert not Project.objects.filter(id=project.id).exists()


def test_the_settings_tab_is_for_owners_only(client, users, project):
    detail = reverse("projects:detail", args=[project.id])
    assert settings_url(project) in client_for(client, users["alice"]).get(detail).content.decode()
    assert settings_url(project) not in client_for(client, users["bob"]).get(detail).content.decode()


@pytest.mark.parametrize(
    ("query", "tab"),
    [("", "Review"), ("?likely_mislabeled=1", "Likely mislabeled"), ("?final=unsure", "Unsure")],
)
def test_the_active_tab_is_marked(client, users, project, query, tab):
    client_for(client, users["alice"])
    body = client.get(reverse("projects:review", args=[project.id]) + query).content.decode()
    tabs = body.split('class="tabs"', 1)[1].split("</nav>", 1)[0]
    assert tabs.count('aria-current="page"') == 1
    assert f'aria-current="page">{tab}</a>' in tabs


def test_every_user_changes_their_password(client, users):
    client_for(client, users["charlie"])
    assert reverse("accounts:password_change") in client.get(reverse("accounts:profile")).content.decode()
    response = client.post(
        reverse("accounts:password_change"),
        {"old_password": "charlie-password", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("accounts:profile")
    assert 'class="success"' in response.content.decode()
    users["charlie"].refresh_from_db()
    assert users["charlie"].check_password(NEW_PASSWORD)


def test_a_wrong_old_password_is_refused(client, users):
    client_for(client, users["charlie"])
    response = client.post(
        reverse("accounts:password_change"),
        {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200 and 'class="errors"' in response.content.decode()
    users["charlie"].refresh_from_db()
    assert users["charlie"].check_password("charlie-password")


def test_the_404_page_is_styled_with_a_way_back(client, users, project, outsider):
    response = client_for(client, outsider).get(reverse("projects:detail", args=[project.id]))
    assert response.status_code == 404
    body = response.content.decode()
    assert "error-page" in body and f'href="{reverse("projects:list")}"' in body


def test_the_403_page_is_styled_with_a_way_back(client, users, project):
    response = client_for(client, users["bob"]).get(settings_url(project))
    assert response.status_code == 403
    assert "error-page" in response.content.decode()


def test_the_500_page_renders_without_a_request():
    from django.template import loader

    body = loader.get_template("500.html").render({})
    assert "error-page" in body and 'href="/"' in body


def test_messages_carry_their_level(client, users, project):
    client_for(client, users["alice"])
    ok = client.post(settings_url(project), {"name": "New"}, follow=True).content.decode()
    assert '<li class="success">' in ok
    bad = client.post(settings_url(project), {"name": ""}, follow=True).content.decode()
    assert '<li class="error">' in bad


def test_too_many_files_get_a_json_reason_even_when_the_csrf_check_reads_the_body(users, project, settings):
    settings.UPLOAD_MAX_FILES = settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["alice"])
    url = reverse("projects:upload", args=[project.id])
    client.get(url)
    files = [SimpleUploadedFile(f"{name}.jpg", b"x") for name in "abc"]
    response = client.post(url, {"files": files}, headers={"X-CSRFToken": client.cookies["csrftoken"].value})
    assert response.status_code == 400
    assert "too many files" in response.json()["error"]
    assert not project.images.exists()


@pytest.fixture
def labeled(project):
    batch = Batch.objects.create(project=project, status=Batch.Status.DONE)
    rows = [("happy", "happy", 0.95), ("happy", "sad", 0.55), ("sad", "sad", 0.35), ("angry", "sad", 0.05)]
    for i, (original, predicted, confidence) in enumerate(rows):
        Image.objects.create(
            project=project,
            batch=batch,
            file=f"images/{i}.jpg",
            original_name=f"{i}.jpg",
            status=Image.Status.LABELED,
            original_label=original,
            predicted_label=predicted,
            confidence=confidence,
        )
    return batch


def test_the_summary_charts_class_balance_confidence_and_a_linked_confusion_matrix(
    client, users, project, labeled
):
    client_for(client, users["charlie"])
    response = client.get(reverse("projects:detail", args=[project.id]))
    charts = response.context["charts"]
    balance = {row["emotion"]: (row["original"], row["final"]) for row in charts["balance"]}
    assert balance["happy"] == (2, 1) and balance["sad"] == (1, 3) and balance["angry"] == (1, 0)
    assert [b["count"] for b in charts["histogram"]] == [1, 0, 0, 1, 0, 1, 0, 0, 0, 1]
    body = response.content.decode()
    review = reverse("projects:review", args=[project.id])
    assert f'href="{review}?original=angry&amp;predicted=sad"' in body
    assert f'href="{review}?min_confidence=0.9&amp;max_confidence=1.0&amp;order=confidence"' in body
    # The link opens exactly that cell's images.
    grid = client.get(review, {"original": "angry", "predicted": "sad"})
    assert [image.original_name for image in grid.context["page"]] == ["3.jpg"]


def test_the_health_page_updates_itself_while_an_audit_runs(client, users, project, labeled):
    from audit.models import AuditRun

    client_for(client, users["bob"])
    health = reverse("audit:health", args=[project.id])
    assert "js/reload.js" not in client.get(health).content.decode()
    run = AuditRun.objects.create(project=project, kind=AuditRun.Kind.MODEL, status=AuditRun.Status.RUNNING)
    body = client.get(health).content.decode()
    assert "js/reload.js" in body
    assert f'data-watch-json="{reverse("api-audit", args=[project.id, run.id])}"' in body


def test_a_batch_still_labeling_asks_to_be_watched(client, users, project, labeled):
    client_for(client, users["charlie"])
    url = reverse("projects:batch", args=[project.id, labeled.id])
    assert 'data-watch-kind="batch"' not in client.get(url).content.decode()
    Batch.objects.filter(id=labeled.id).update(status=Batch.Status.LABELING)
    assert 'data-watch-kind="batch"' in client.get(url).content.decode()
