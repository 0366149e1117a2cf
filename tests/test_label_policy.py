"""The final-label policy in force and Accept under it: new projects start with the policy that
agreed best with crowd votes, the project page says which policy is in force and why, and Accept
(the grid's button and Enter, bulk, API) confirms exactly the final label the card shows under
the project's policy, refusing a stale card instead of recording another label."""

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from projects import models, selectors, services
from projects.models import Batch, Image, LabelPolicy, Project
from tests.conftest import client_for

# One image per case: what the model said, the folder it came from and the audit's suggestion.
CASES = {
    "confident": {"predicted_label": "happy", "original_label": "sad", "suggested_label": "fear"},
    "doubtful": {"predicted_label": "angry", "original_label": "neutral", "suggested_label": "disgust"},
    "no_original": {"predicted_label": "surprise", "original_label": "", "suggested_label": ""},
}
# The final label each card shows under each policy.
FINAL = {
    LabelPolicy.MODEL: {"confident": "happy", "doubtful": "angry", "no_original": "surprise"},
    LabelPolicy.ORIGINAL: {"confident": "sad", "doubtful": "neutral", "no_original": "surprise"},
    LabelPolicy.ORIGINAL_SUGGESTED: {"confident": "fear", "doubtful": "neutral", "no_original": "surprise"},
}


@pytest.fixture
def images(project) -> dict[str, Image]:
    batch = Batch.objects.create(project=project, status=Batch.Status.DONE)
    made = {}
    for name, labels in CASES.items():
        made[name] = Image.objects.create(
            project=project,
            batch=batch,
            file=f"images/{name}.jpg",
            original_name=f"{name}.jpg",
            status=Image.Status.LABELED,
            confidence=0.6,
            likely_mislabeled=bool(labels["suggested_label"]),
            suggestion_confident=name == "confident",
            **labels,
        )
    return made


def use_policy(project: Project, policy: str) -> None:
    services.project_update(project=project, label_policy=policy)


def accept(client, image: Image, body: dict):
    url = reverse("projects:image_label", args=[image.project_id, image.id])
    return client.post(url, json.dumps(body), content_type="application/json")


def shown_on_the_grid(client, project: Project) -> dict[int, str]:
    """The final label each card of the review grid shows (what Accept sends back)."""
    page = client.get(reverse("projects:review", args=[project.id]))
    return {image.id: image.final_label for image in page.context["page"]}


class TestDefaultPolicy:
    def test_the_default_is_the_policy_that_agreed_best_with_the_crowd(self):
        best = max(models.POLICY_CROWD_AGREEMENT, key=models.POLICY_CROWD_AGREEMENT.get)
        assert models.default_label_policy() == best == LabelPolicy.MODEL
        assert set(models.POLICY_CROWD_AGREEMENT) == set(LabelPolicy)

    def test_a_new_project_takes_the_default_from_the_measured_figures(self, users, monkeypatch):
        monkeypatch.setitem(models.POLICY_CROWD_AGREEMENT, LabelPolicy.ORIGINAL_SUGGESTED, 0.9)
        project = services.project_create(user=users["alice"], name="After a new model")
        project.refresh_from_db()
        assert project.label_policy == LabelPolicy.ORIGINAL_SUGGESTED
        assert (project.label_policy_chosen_at, project.label_policy_chosen_by) == (None, None)

    def test_an_owner_changing_the_policy_is_recorded_as_their_choice(self, client, project, users):
        url = reverse("audit:policy_set", args=[project.id])
        response = client_for(client, users["alice"]).post(url, {"label_policy": "original"})
        project.refresh_from_db()
        assert response.status_code == 302
        assert (project.label_policy, project.label_policy_chosen_by) == ("original", users["alice"])
        assert project.label_policy_chosen_at is not None

    def test_saving_the_form_unchanged_keeps_the_project_on_the_default(self, client, project, users):
        url = reverse("audit:policy_set", args=[project.id])
        response = client_for(client, users["alice"]).post(url, {"label_policy": "model"})
        project.refresh_from_db()
        assert response.status_code == 302
        assert (project.label_policy, project.label_policy_chosen_at) == ("model", None)
        assert selectors.label_policy_in_force(project).is_default

    def test_the_api_says_who_chose_the_policy(self, project, users):
        from accounts.services import api_token_create

        _, key = api_token_create(user=users["alice"], name="test")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        response = api.patch(f"/api/v1/projects/{project.id}/", {"label_policy": "original"}, format="json")
        project.refresh_from_db()
        assert response.status_code == 200
        assert response.json()["label_policy_chosen_by"] == "alice"
        assert project.label_policy_chosen_by == users["alice"]


class TestProjectPage:
    def page(self, client, user, project, language="en") -> str:
        url = reverse("projects:detail", args=[project.id])
        response = client_for(client, user).get(url, headers={"accept-language": language})
        assert response.status_code == 200
        return response.content.decode()

    def test_it_says_the_default_policy_is_in_force_and_why(self, client, project, users):
        page = self.page(client, users["charlie"], project)
        assert "Policy in force: <b>the model&#x27;s label for every image</b>." in page
        assert "This is the default: its final labels agreed best with the crowd." in page
        for share in models.POLICY_CROWD_AGREEMENT.values():
            assert f"{share * 100:.1f} %" in page
        assert models.POLICY_MEASURED_WITH in page
        assert "Change the policy" not in page  # viewers cannot

    def test_it_says_when_an_owner_chose_another_policy(self, client, project, users):
        services.project_update(project=project, user=users["alice"], label_policy=LabelPolicy.ORIGINAL)
        page = self.page(client, users["alice"], project)
        assert "Policy in force: <b>keep original labels</b>." in page
        assert "An owner chose it (alice, " in page
        default = "the model&#x27;s label for every image"
        assert f"The default, <b>{default}</b>, agreed best with the crowd." in page
        assert "Change the policy" in page

    def test_it_says_when_the_measured_best_changed_since_the_project_began(
        self, client, project, users, monkeypatch
    ):
        monkeypatch.setitem(models.POLICY_CROWD_AGREEMENT, LabelPolicy.ORIGINAL, 0.9)
        page = self.page(client, users["bob"], project)
        assert "Policy in force: <b>the model&#x27;s label for every image</b>." in page
        assert "It was the default when this project was created" in page
        assert "is now <b>keep original labels</b>." in page

    def test_it_says_it_in_polish(self, client, project, users):
        page = self.page(client, users["charlie"], project, language="pl")
        assert "Obowiązująca zasada: <b>etykieta modelu dla każdego obrazu</b>." in page
        assert "To zasada domyślna" in page
        # The measured figure, with a decimal comma.
        figure = models.POLICY_CROWD_AGREEMENT[models.LabelPolicy.MODEL] * 100
        assert f"{figure:.1f} %".replace(".", ",") in page

    def test_the_health_page_says_it_beside_the_form(self, client, project, users):
        url = reverse("audit:health", args=[project.id])
        page = client_for(client, users["alice"]).get(url).content.decode()
        assert "Policy in force: <b>the model&#x27;s label for every image</b>." in page
        assert "the model&#x27;s label for every image (the default)" in page


class TestAcceptUnderEachPolicy:
    @pytest.mark.parametrize("policy", LabelPolicy.values)
    def test_accept_confirms_the_final_label_the_card_shows(self, client, project, users, images, policy):
        use_policy(project, policy)
        bob = client_for(client, users["bob"])
        shown = shown_on_the_grid(bob, project)
        for name, image in images.items():
            assert shown[image.id] == FINAL[policy][name]
            response = accept(bob, image, {"accept": shown[image.id]})
            image.refresh_from_db()
            assert response.status_code == 200
            assert response.json()["final_label"] == FINAL[policy][name]
            assert (image.reviewed_label, image.reviewed_by) == (FINAL[policy][name], users["bob"])

    @pytest.mark.parametrize("policy", [LabelPolicy.ORIGINAL, LabelPolicy.ORIGINAL_SUGGESTED])
    def test_accept_never_silently_takes_the_models_label(self, project, users, images, policy):
        use_policy(project, policy)
        image = services.image_set_label(image=images["confident"], user=users["bob"], label=None)
        assert image.reviewed_label == FINAL[policy]["confident"] != image.predicted_label

    @pytest.mark.parametrize("policy", LabelPolicy.values)
    def test_accept_after_an_override_confirms_the_override(self, client, project, users, images, policy):
        use_policy(project, policy)
        bob = client_for(client, users["bob"])
        image = images["confident"]
        assert accept(bob, image, {"label": "disgust"}).json()["final_label"] == "disgust"
        response = accept(bob, image, {"accept": "disgust"})
        image.refresh_from_db()
        assert (response.status_code, image.reviewed_label) == (200, "disgust")

    def test_a_card_from_before_a_policy_change_is_refused_with_the_label_now(
        self, client, project, users, images
    ):
        bob = client_for(client, users["bob"])
        shown = shown_on_the_grid(bob, project)  # under the model's labels: happy
        use_policy(project, LabelPolicy.ORIGINAL)
        image = images["confident"]
        response = accept(bob, image, {"accept": shown[image.id]})
        image.refresh_from_db()
        assert response.status_code == 409
        assert "changed since this page was loaded" in response.json()["error"]
        assert response.json()["final_label"] == "sad"
        assert (image.reviewed_label, image.reviewed_by) == ("", None)
        # The card now shows "sad"; accepting that works.
        assert accept(bob, image, {"accept": "sad"}).status_code == 200
        image.refresh_from_db()
        assert image.reviewed_label == "sad"

    def test_a_card_from_before_a_relabel_is_refused(self, client, project, users, images):
        bob = client_for(client, users["bob"])
        image = images["no_original"]
        shown = shown_on_the_grid(bob, project)[image.id]
        Image.objects.filter(id=image.id).update(predicted_label="fear")  # a newer model's label
        response = accept(bob, image, {"accept": shown})
        image.refresh_from_db()
        assert (response.status_code, response.json()["final_label"]) == (409, "fear")
        assert image.reviewed_label == ""

    def test_another_reviewers_override_is_not_overwritten_by_a_stale_accept(self, project, users, images):
        image = images["confident"]
        services.image_set_label(image=Image.objects.get(id=image.id), user=users["alice"], label="fear")
        with pytest.raises(services.FinalLabelChanged):
            services.image_accept(image=image, user=users["bob"], shown="happy")
        image.refresh_from_db()
        assert (image.reviewed_label, image.reviewed_by) == ("fear", users["alice"])

    def test_an_image_without_a_label_cannot_be_accepted(self, client, project, users, images):
        image = images["no_original"]
        Image.objects.filter(id=image.id).update(predicted_label="", status=Image.Status.PENDING)
        response = accept(client_for(client, users["bob"]), image, {"accept": ""})
        image.refresh_from_db()
        assert response.status_code == 400
        assert image.reviewed_label == ""

    def test_a_viewer_cannot_accept(self, client, project, users, images):
        image = images["confident"]
        response = accept(client_for(client, users["charlie"]), image, {"accept": "happy"})
        image.refresh_from_db()
        assert (response.status_code, image.reviewed_label) == (403, "")

    def test_the_grid_sends_what_the_card_shows(self, client, project, users, images):
        use_policy(project, LabelPolicy.ORIGINAL)
        page = client_for(client, users["bob"]).get(reverse("projects:review", args=[project.id]))
        html = page.content.decode()
        assert f'data-id="{images["confident"].id}"' in html
        assert 'data-final="sad"' in html
        assert "<kbd>Enter</kbd> / <kbd>a</kbd></dt><dd>accept the final label shown" in html
        assert "follow the project's policy: <b>keep original labels</b>" in html


class TestBulkAccept:
    def bulk(self, client, project, body):
        url = reverse("projects:bulk_label", args=[project.id])
        return client.post(url, json.dumps(body), content_type="application/json")

    @pytest.mark.parametrize("policy", LabelPolicy.values)
    def test_bulk_accept_confirms_each_final_label(self, client, project, users, images, policy):
        use_policy(project, policy)
        bob = client_for(client, users["bob"])
        shown = shown_on_the_grid(bob, project)
        response = self.bulk(bob, project, {"ids": list(shown), "label": None, "shown": shown})
        assert response.json() == {"changed": 3}
        for name, image in images.items():
            image.refresh_from_db()
            assert image.reviewed_label == FINAL[policy][name]

    def test_a_stale_page_accepts_nothing(self, client, project, users, images):
        bob = client_for(client, users["bob"])
        shown = shown_on_the_grid(bob, project)
        use_policy(project, LabelPolicy.ORIGINAL_SUGGESTED)
        response = self.bulk(bob, project, {"ids": list(shown), "label": None, "shown": shown})
        assert response.status_code == 409
        assert response.json()["final_labels"] == {
            str(images["confident"].id): "fear",
            str(images["doubtful"].id): "neutral",
        }
        assert not Image.objects.exclude(reviewed_label="").exists()

    def test_malformed_shown_labels_are_refused(self, client, project, users, images):
        bob = client_for(client, users["bob"])
        response = self.bulk(bob, project, {"ids": [images["confident"].id], "label": None, "shown": ["x"]})
        assert response.status_code == 400
        assert not Image.objects.exclude(reviewed_label="").exists()

    @pytest.mark.parametrize("policy", LabelPolicy.values)
    def test_the_api_accepts_final_labels_and_refuses_stale_ones(self, project, users, images, policy):
        from accounts.services import api_token_create

        use_policy(project, policy)
        _, key = api_token_create(user=users["bob"], name="test")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        url = f"/api/v1/projects/{project.id}/images/bulk-accept/"
        confident = images["confident"]
        stale = {str(confident.id): "surprise"}
        response = api.post(url, {"ids": [confident.id], "shown": stale}, format="json")
        assert response.status_code == 409
        assert response.json()["final_labels"] == {str(confident.id): FINAL[policy]["confident"]}
        ids = [image.id for image in images.values()]
        assert api.post(url, {"ids": ids}, format="json").json() == {"changed": 3}
        for name, image in images.items():
            image.refresh_from_db()
            assert image.reviewed_label == FINAL[policy][name]
