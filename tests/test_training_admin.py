"""The training admin: start, list, inspect, compare, cancel and promote trials.

No test trains: trials and their epochs are written directly, and `trial_create` is replaced
where a real one would queue training.
"""

import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from inference.models import ModelVersion
from projects.models import EMOTIONS
from tests.factories import make_tiny_model
from training.models import Trial, TrialEpoch
from training.presets import PRESETS
from training.services import trial_cancel

CONFIG = {
    "architecture": "cnn_trial",
    "input_size": 48,
    "grayscale": True,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "batch_size": 64,
    "epochs": 10,
    "rotation": 30.0,
}


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def make_trial(name="trial A", status=Trial.Status.SUCCEEDED, epochs=3, **fields) -> Trial:
    now = timezone.now()
    trial = Trial.objects.create(
        name=name,
        preset="trial_1",
        config=fields.pop("config", CONFIG),
        status=status,
        data_dir="/data/fer2013",
        started_at=now - timedelta(minutes=5),
        finished_at=None if status in (Trial.Status.QUEUED, Trial.Status.RUNNING) else now,
        epochs_done=epochs,
        seconds_total=300.0,
        **fields,
    )
    TrialEpoch.objects.bulk_create(
        TrialEpoch(
            trial=trial,
            epoch=n,
            loss=1.5 - n / 10,
            accuracy=0.3 + n / 20,
            val_loss=1.6 - n / 10,
            val_accuracy=0.25 + n / 20,
            learning_rate=0.001,
            seconds=12.5,
        )
        for n in range(1, epochs + 1)
    )
    return trial


def with_metrics(trial: Trial, accuracy: float = 0.6123) -> Trial:
    labels = list(EMOTIONS)
    trial.metrics = {
        "accuracy": accuracy,
        "labels": labels,
        "precision": {label: 0.5 + i / 100 for i, label in enumerate(labels)},
        "recall": {label: 0.4 + i / 100 for i, label in enumerate(labels)},
        "f1": {label: 0.45 + i / 100 for i, label in enumerate(labels)},
        "support": {label: 100 + i for i, label in enumerate(labels)},
        "confusion": [[10 if i == j else 1 for j in range(7)] for i in range(7)],
    }
    trial.save(update_fields=["metrics"])
    return trial


def change_url(trial: Trial) -> str:
    return reverse("admin:training_trial_change", args=[trial.id])


@pytest.fixture
def non_staff_client(client, users):
    client.force_login(users["alice"])
    return client


def test_the_list_shows_status_colour_epoch_progress_and_best_accuracy(
    admin_client, django_assert_max_num_queries
):
    make_trial("running one", status=Trial.Status.RUNNING, epochs=3)
    for n in range(5):
        make_trial(f"finished {n}", epochs=2)

    with django_assert_max_num_queries(12):  # constant: no query per row
        response = admin_client.get(reverse("admin:training_trial_changelist"))

    assert response.status_code == 200
    html = response.content.decode()
    assert '<progress value="3" max="10" title="3 of 10 epochs"></progress> 3/10' in html
    assert '<strong style="color: #1565c0">Running</strong>' in html
    assert '<strong style="color: #2e7d32">Succeeded</strong>' in html
    assert "0.400" in html  # best val_accuracy of the running trial: 0.25 + 3/20
    assert "Start a trial" in html


def test_the_trial_page_shows_configuration_epochs_and_per_class_metrics(admin_client):
    trial = with_metrics(make_trial())

    response = admin_client.get(change_url(trial))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="trial-epochs"' in html
    assert html.count("<td>12.5</td>") == 3  # one row per epoch
    assert 'id="trial-per-class"' in html
    assert "<td>disgust</td><td>0.510</td><td>0.410</td>" in html
    assert "0.6123" in html
    assert "&quot;learning_rate&quot;: 0.001" in html  # pretty JSON, escaped
    assert reverse("admin:training_trial_curves", args=[trial.id]) in html
    assert reverse("admin:training_trial_confusion", args=[trial.id]) in html
    assert "Promote to active model" in html
    assert 'http-equiv="refresh"' not in html
    assert 'name="_save"' not in html  # read-only page


def test_a_running_trial_page_refreshes_itself_and_offers_cancel(admin_client):
    trial = make_trial(status=Trial.Status.RUNNING, epochs=0)

    response = admin_client.get(change_url(trial))

    html = response.content.decode()
    assert '<meta http-equiv="refresh" content="5">' in html
    assert reverse("admin:training_trial_cancel", args=[trial.id]) in html
    assert "Promote to active model" not in html
    assert "No epoch has finished yet." in html


def test_the_curves_image_is_a_fresh_png_for_staff(admin_client):
    trial = make_trial()

    response = admin_client.get(reverse("admin:training_trial_curves", args=[trial.id]))

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert "no-store" in response["Cache-Control"]
    assert response.content.startswith(b"\x89PNG")


def test_the_confusion_image_is_served_from_the_file_or_drawn_from_metrics(admin_client):
    drawn = with_metrics(make_trial("drawn"))
    stored = make_trial("stored")
    stored.confusion_image.save("confusion.png", ContentFile(tiny_png()))

    for trial in (drawn, stored):
        response = admin_client.get(reverse("admin:training_trial_confusion", args=[trial.id]))
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body.startswith(b"\x89PNG")


def test_images_of_a_trial_without_results_are_not_found(admin_client):
    trial = make_trial(status=Trial.Status.QUEUED, epochs=0)

    assert admin_client.get(reverse("admin:training_trial_curves", args=[trial.id])).status_code == 404
    assert admin_client.get(reverse("admin:training_trial_confusion", args=[trial.id])).status_code == 404


@pytest.mark.parametrize("name", ["curves", "confusion"])
def test_images_send_non_staff_users_to_the_login_page(non_staff_client, name):
    trial = with_metrics(make_trial())

    response = non_staff_client.get(reverse(f"admin:training_trial_{name}", args=[trial.id]))

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_the_compare_action_shows_both_trials_side_by_side(admin_client):
    first = with_metrics(make_trial("first", epochs=2), accuracy=0.55)
    second = with_metrics(make_trial("second", epochs=4, config={**CONFIG, "input_size": 96}), accuracy=0.61)

    response = admin_client.post(
        reverse("admin:training_trial_changelist"),
        {"action": "compare_trials", "_selected_action": [first.id, second.id]},
    )
    assert response.status_code == 302
    page = admin_client.get(response["Location"])

    assert page.status_code == 200
    html = page.content.decode()
    assert "first</a>" in html and "second</a>" in html
    assert "<td>48x48 gray</td><td>96x96 gray</td>" in html
    assert "<td>0.550</td><td>0.610</td>" in html  # final accuracy
    assert "F1 disgust" in html
    assert f"compare/curves.png?ids={first.id},{second.id}" in html


def test_the_comparison_chart_overlays_validation_accuracy(admin_client):
    first, second = make_trial("first"), make_trial("second")

    url = reverse("admin:training_trial_compare_curves")
    response = admin_client.get(f"{url}?ids={first.id},{second.id}")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")


def test_the_cancel_action_requests_cancellation_of_running_trials(admin_client):
    running = make_trial("running", status=Trial.Status.RUNNING)
    finished = make_trial("finished")

    response = admin_client.post(
        reverse("admin:training_trial_changelist"),
        {"action": "cancel_trials", "_selected_action": [running.id, finished.id]},
    )

    assert response.status_code == 302
    running.refresh_from_db()
    finished.refresh_from_db()
    assert running.cancel_requested is True
    assert finished.cancel_requested is False
    assert finished.status == Trial.Status.SUCCEEDED


def test_the_cancel_button_calls_trial_cancel(admin_client, monkeypatch):
    trial = make_trial(status=Trial.Status.RUNNING)
    calls = []
    monkeypatch.setattr("training.services.trial_cancel", lambda t: calls.append(t.id) or trial_cancel(t))

    response = admin_client.post(reverse("admin:training_trial_cancel", args=[trial.id]))

    assert response.status_code == 302
    assert calls == [trial.id]
    trial.refresh_from_db()
    assert trial.cancel_requested is True


def test_promote_makes_the_trial_model_the_active_model_version(admin_client, tmp_path):
    trial = with_metrics(make_trial())
    trial.model_file.save("best.keras", ContentFile(make_tiny_model(tmp_path / "best.keras").read_bytes()))

    response = admin_client.post(reverse("admin:training_trial_promote", args=[trial.id]), follow=True)

    assert response.status_code == 200
    version = ModelVersion.objects.get(is_active=True)
    assert f"Model version “{version.name}” is now the active model." in response.content.decode()
    trial.refresh_from_db()
    assert trial.model_version == version


def test_promote_refuses_a_trial_that_did_not_succeed(admin_client):
    trial = make_trial(status=Trial.Status.FAILED, error="worker lost")

    response = admin_client.post(reverse("admin:training_trial_promote", args=[trial.id]), follow=True)

    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert not ModelVersion.objects.exists()
    trial.refresh_from_db()
    assert trial.model_version is None


def test_promote_only_accepts_post(admin_client):
    trial = make_trial()

    response = admin_client.get(reverse("admin:training_trial_promote", args=[trial.id]))

    assert response.status_code == 405


def test_promote_is_not_open_to_non_staff(non_staff_client):
    trial = make_trial()

    response = non_staff_client.post(reverse("admin:training_trial_promote", args=[trial.id]))

    assert response.status_code == 302
    assert not ModelVersion.objects.exists()


def first_preset() -> str:
    return next(iter(PRESETS))


def test_the_start_form_embeds_each_preset_configuration(admin_client):
    response = admin_client.get(reverse("admin:training_trial_add"))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="trial-preset-configs"' in html
    assert f'<option value="{first_preset()}">' in html
    assert 'name="config"' in html


def start_data(**overrides) -> dict:
    return {
        "name": "my trial",
        "preset": first_preset(),
        "config": "",
        "data_source": "folder",
        "data_dir": "/data/fer2013",
        "validation_fraction": "0.2",
        **overrides,
    }


def test_the_start_form_shows_the_services_validation_errors(admin_client, monkeypatch):
    def refuse(**kwargs):
        raise ValidationError(
            {
                "learning_rate": ["Must be in (0, 1]; got 5."],
                "data_dir": ["No train/ folder in /data/fer2013."],
            }
        )

    monkeypatch.setattr("training.services.trial_create", refuse)

    response = admin_client.post(
        reverse("admin:training_trial_add"), start_data(config='{"learning_rate": 5}')
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "learning_rate: Must be in (0, 1]; got 5." in html
    assert "No train/ folder in /data/fer2013." in html
    assert not Trial.objects.exists()


def test_the_start_form_refuses_json_that_is_not_an_object(admin_client, monkeypatch):
    monkeypatch.setattr("training.services.trial_create", lambda **kwargs: pytest.fail("not called"))

    response = admin_client.post(reverse("admin:training_trial_add"), start_data(config="[1, 2"))

    assert response.status_code == 200
    assert "Not valid JSON" in response.content.decode()


def test_the_start_form_needs_a_project_for_project_data(admin_client, monkeypatch):
    monkeypatch.setattr("training.services.trial_create", lambda **kwargs: pytest.fail("not called"))

    response = admin_client.post(reverse("admin:training_trial_add"), start_data(data_source="project"))

    assert response.status_code == 200
    assert "Choose the project whose labels to train on." in response.content.decode()


def test_the_start_form_creates_the_trial_and_opens_its_page(admin_client, monkeypatch, project):
    calls = []

    def create(**kwargs):
        calls.append(kwargs)
        return Trial.objects.create(name=kwargs["name"], preset=kwargs["preset"], config=CONFIG)

    monkeypatch.setattr("training.services.trial_create", create)

    response = admin_client.post(
        reverse("admin:training_trial_add"),
        start_data(
            config='{"epochs": 2}', data_source="project", project=project.id, validation_fraction="0.25"
        ),
    )

    trial = Trial.objects.get()
    assert response.status_code == 302
    assert response["Location"] == change_url(trial)
    admin = get_user_model().objects.get(username="admin")
    assert calls == [
        {
            "name": "my trial",
            "preset": first_preset(),
            "config": {"epochs": 2},
            "data_dir": "",
            "project": project,
            "validation_fraction": 0.25,
            "user": admin,
        }
    ]


def test_an_empty_configuration_means_the_preset_defaults(admin_client, monkeypatch):
    calls = []

    def create(**kwargs):
        calls.append(kwargs)
        return Trial.objects.create(name=kwargs["name"], preset=kwargs["preset"])

    monkeypatch.setattr("training.services.trial_create", create)

    response = admin_client.post(reverse("admin:training_trial_add"), start_data())

    assert response.status_code == 302
    assert calls[0]["config"] is None
    assert calls[0]["data_dir"] == "/data/fer2013"
    assert calls[0]["project"] is None


def test_the_start_form_passes_crowd_votes_into_the_recipe(admin_client, monkeypatch):
    calls = []

    def create(**kwargs):
        calls.append(kwargs)
        return Trial.objects.create(name=kwargs["name"], preset=kwargs["preset"], config=CONFIG)

    monkeypatch.setattr("training.services.trial_create", create)
    data = start_data(config='{"epochs": 2}', votes="/data/ferplus/votes.csv")
    response = admin_client.post(reverse("admin:training_trial_add"), data)

    assert response.status_code == 302
    assert calls[0]["config"] == {"epochs": 2, "votes": "/data/ferplus/votes.csv"}


def test_the_start_form_says_when_the_votes_file_is_missing(admin_client, tmp_path):
    response = admin_client.post(
        reverse("admin:training_trial_add"),
        start_data(data_dir=str(tmp_path), votes=str(tmp_path / "none.csv")),
    )

    assert response.status_code == 200
    assert f"The file {tmp_path / 'none.csv'} does not exist on the server." in response.content.decode()
    assert not Trial.objects.exists()
