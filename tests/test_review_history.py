"""Label history, undo and redo, bulk by filter, confident suggestions and the image detail page."""

import pytest
from django.urls import reverse

from projects import services
from projects.models import Batch, Image, LabelChange, LabelPolicy
from tests.conftest import client_for

How = LabelChange.How


@pytest.fixture
def images(project):
    """Four labeled images: the model says happy, the originals say sad; #3 and #4 flagged."""
    batch = Batch.objects.create(project=project, status=Batch.Status.DONE)
    rows = []
    for n in range(4):
        flagged = n >= 2
        rows.append(
            Image.objects.create(
                project=project,
                batch=batch,
                file=f"images/{n}.jpg",
                original_name=f"face{n}.jpg",
                original_label="sad",
                status=Image.Status.LABELED,
                predicted_label="happy",
                confidence=0.9,
                probabilities={"happy": 0.9, "sad": 0.1},
                face_box=[1, 2, 30, 30],
                likely_mislabeled=flagged,
                suggested_label="fear" if flagged else "",
                suggestion_confident=flagged,
                label_quality=0.05 if flagged else 0.8,
            )
        )
    return rows


def reviewed(image: Image) -> str:
    image.refresh_from_db()
    return image.reviewed_label


class TestHistory:
    def test_every_kind_of_change_is_recorded_with_who_and_how(self, project, images, users):
        bob = users["bob"]
        services.image_set_label(image=images[0], user=bob, label="angry", how=How.KEYBOARD)
        services.image_accept(image=images[1], user=bob, shown="happy")
        ids = [images[2].id, images[3].id]
        services.images_set_label(project=project, image_ids=ids, user=bob, label="fear")
        services.image_clear_review(image=images[0], user=bob)

        first = images[0].label_changes.order_by("at", "id")
        first = list(first.values_list("from_label", "to_label", "how"))
        assert first == [("", "angry", How.KEYBOARD), ("angry", "", How.SINGLE)]
        assert images[1].label_changes.get().how == How.ACCEPT
        bulk = LabelChange.objects.filter(how=How.BULK)
        assert bulk.count() == 2 and len(set(bulk.values_list("action", flat=True))) == 1
        assert set(LabelChange.objects.values_list("user__username", flat=True)) == {"bob"}

    def test_setting_the_same_label_again_records_nothing(self, images, users):
        services.image_set_label(image=images[0], user=users["bob"], label="angry")
        services.image_set_label(image=images[0], user=users["bob"], label="angry")
        assert images[0].label_changes.count() == 1

    def test_the_api_lists_the_history_newest_first(self, client, project, images, users):
        services.image_set_label(image=images[0], user=users["bob"], label="angry")
        services.image_set_label(image=images[0], user=users["alice"], label="fear")
        url = f"/api/v1/projects/{project.id}/images/{images[0].id}/history/"
        response = client_for(client, users["charlie"]).get(url)
        assert response.status_code == 200
        rows = response.json()["results"]
        assert [(r["user"], r["from_label"], r["to_label"]) for r in rows] == [
            ("alice", "angry", "fear"),
            ("bob", "", "angry"),
        ]

    def test_the_history_of_another_teams_image_is_not_found(self, client, project, images, outsider):
        url = f"/api/v1/projects/{project.id}/images/{images[0].id}/history/"
        assert client_for(client, outsider).get(url).status_code == 404


class TestUndo:
    def test_undo_restores_no_reviewed_label_and_redo_sets_it_again(self, project, images, users):
        bob = users["bob"]
        services.image_set_label(image=images[0], user=bob, label="angry")
        assert services.label_undo(project=project, user=bob) == 1
        assert reviewed(images[0]) == ""
        assert images[0].reviewed_by is None
        assert services.label_redo(project=project, user=bob) == 1
        assert reviewed(images[0]) == "angry"

    def test_undo_restores_the_previous_label(self, project, images, users):
        bob = users["bob"]
        services.image_set_label(image=images[0], user=bob, label="angry")
        services.image_set_label(image=images[0], user=bob, label="fear")
        services.label_undo(project=project, user=bob)
        assert reviewed(images[0]) == "angry"
        services.label_undo(project=project, user=bob)
        assert reviewed(images[0]) == ""
        with pytest.raises(services.NothingToUndo):
            services.label_undo(project=project, user=bob)

    def test_a_bulk_action_is_undone_as_one_step(self, project, images, users):
        bob = users["bob"]
        services.image_set_label(image=images[0], user=bob, label="angry")
        ids = [image.id for image in images]
        services.images_set_label(project=project, image_ids=ids, user=bob, label="fear")
        assert services.label_undo(project=project, user=bob) == 4
        assert [reviewed(image) for image in images] == ["angry", "", "", ""]

    def test_undo_leaves_what_someone_else_changed_since(self, project, images, users):
        services.image_set_label(image=images[0], user=users["bob"], label="angry")
        services.image_set_label(image=images[0], user=users["alice"], label="fear")
        assert services.label_undo(project=project, user=users["bob"]) == 0
        assert reviewed(images[0]) == "fear"

    def test_undo_is_per_user(self, project, images, users):
        services.image_set_label(image=images[0], user=users["bob"], label="angry")
        with pytest.raises(services.NothingToUndo):
            services.label_undo(project=project, user=users["alice"])

    def test_a_new_action_after_undo_ends_redo(self, project, images, users):
        bob = users["bob"]
        services.image_set_label(image=images[0], user=bob, label="angry")
        services.label_undo(project=project, user=bob)
        services.image_set_label(image=images[1], user=bob, label="fear")
        with pytest.raises(services.NothingToUndo):
            services.label_redo(project=project, user=bob)

    def test_two_undos_are_redone_in_reverse_order(self, project, images, users):
        bob = users["bob"]
        services.image_set_label(image=images[0], user=bob, label="angry")
        services.image_set_label(image=images[1], user=bob, label="fear")
        services.label_undo(project=project, user=bob)
        services.label_undo(project=project, user=bob)
        assert [reviewed(images[0]), reviewed(images[1])] == ["", ""]
        services.label_redo(project=project, user=bob)
        assert [reviewed(images[0]), reviewed(images[1])] == ["angry", ""]
        services.label_redo(project=project, user=bob)
        assert [reviewed(images[0]), reviewed(images[1])] == ["angry", "fear"]
        services.label_undo(project=project, user=bob)
        assert [reviewed(images[0]), reviewed(images[1])] == ["angry", ""]

    def test_undo_and_redo_are_recorded_in_the_history(self, project, images, users):
        bob = users["bob"]
        services.image_set_label(image=images[0], user=bob, label="angry")
        services.label_undo(project=project, user=bob)
        services.label_redo(project=project, user=bob)
        hows = list(images[0].label_changes.order_by("at", "id").values_list("how", flat=True))
        assert hows == [How.SINGLE, How.UNDO, How.REDO]

    def test_the_grid_undoes_over_json_and_a_viewer_cannot(self, client, project, images, users):
        url = reverse("projects:label_undo", args=[project.id])
        client_for(client, users["bob"])
        client.post(
            reverse("projects:image_label", args=[project.id, images[0].id]),
            {"label": "angry", "how": "keyboard"},
            content_type="application/json",
        )
        assert images[0].label_changes.get().how == How.KEYBOARD
        response = client.post(url, HTTP_ACCEPT="application/json")
        assert response.status_code == 200 and response.json() == {"changed": 1}
        assert reviewed(images[0]) == ""
        response = client.post(url, HTTP_ACCEPT="application/json")
        assert response.status_code == 400
        client_for(client, users["charlie"])
        assert client.post(url).status_code == 403

    def test_the_api_undoes_and_redoes(self, client, project, images, users):
        client_for(client, users["bob"])
        client.patch(
            f"/api/v1/projects/{project.id}/images/{images[0].id}/",
            {"reviewed_label": "angry"},
            content_type="application/json",
        )
        response = client.post(f"/api/v1/projects/{project.id}/images/undo/")
        assert response.status_code == 200 and response.json() == {"changed": 1}
        assert reviewed(images[0]) == ""
        assert client.post(f"/api/v1/projects/{project.id}/images/redo/").json() == {"changed": 1}
        assert reviewed(images[0]) == "angry"
        assert client.post(f"/api/v1/projects/{project.id}/images/redo/").status_code == 400


class TestBulk:
    def test_a_filter_labels_every_matching_image_not_only_a_page(self, client, project, images, users):
        response = client_for(client, users["bob"]).post(
            reverse("projects:bulk_label", args=[project.id]),
            {"filter": "likely_mislabeled=1&per_page=24&page=1", "label": "neutral"},
            content_type="application/json",
        )
        assert response.status_code == 200 and response.json() == {"changed": 2}
        assert [reviewed(image) for image in images] == ["", "", "neutral", "neutral"]
        assert LabelChange.objects.filter(how=How.BULK).values("action").distinct().count() == 1

    def test_taking_confident_suggestions_is_one_undoable_action(self, client, project, images, users):
        client_for(client, users["bob"])
        response = client.post(
            reverse("projects:bulk_label", args=[project.id]),
            {"filter": "", "suggestions": True},
            content_type="application/json",
        )
        assert response.json() == {"changed": 2}
        assert [reviewed(image) for image in images] == ["", "", "fear", "fear"]
        assert set(LabelChange.objects.values_list("how", flat=True)) == {How.POLICY}
        services.label_undo(project=project, user=users["bob"])
        assert [reviewed(image) for image in images] == ["", "", "", ""]

    def test_the_api_takes_confident_suggestions_of_a_filter(self, client, project, images, users):
        url = f"/api/v1/projects/{project.id}/images/take-confident-suggestions/?batch={images[0].batch_id}"
        response = client_for(client, users["bob"]).post(url)
        assert response.status_code == 200 and response.json() == {"changed": 2}
        assert [reviewed(image) for image in images] == ["", "", "fear", "fear"]
        assert client.post(f"/api/v1/projects/{project.id}/images/undo/").json() == {"changed": 2}
        assert [reviewed(image) for image in images] == ["", "", "", ""]

    def test_a_viewer_cannot_bulk_label_a_filter(self, client, project, images, users):
        response = client_for(client, users["charlie"]).post(
            reverse("projects:bulk_label", args=[project.id]),
            {"filter": "", "label": "neutral"},
            content_type="application/json",
        )
        assert response.status_code == 403
        assert not LabelChange.objects.exists()


class TestImageDetail:
    def test_it_shows_probabilities_labels_source_and_history(self, client, project, images, users):
        project.label_policy = LabelPolicy.ORIGINAL_SUGGESTED
        project.save(update_fields=["label_policy"])
        services.image_set_label(image=images[1], user=users["bob"], label="angry")
        response = client_for(client, users["charlie"]).get(
            reverse("projects:image", args=[project.id, images[2].id])
        )
        assert response.status_code == 200
        page = response.content.decode()
        assert "confident suggestion" in page
        assert page.count('class="bar"') == 7
        response = client.get(reverse("projects:image", args=[project.id, images[1].id]))
        page = response.content.decode()
        assert "reviewed by bob" in page and "history" in page.lower()

    def test_every_grid_card_links_to_its_detail_page(self, client, project, images, users):
        response = client_for(client, users["charlie"]).get(
            reverse("projects:review", args=[project.id]), {"likely_mislabeled": "1"}
        )
        page = response.content.decode()
        for image in images[2:]:
            assert f'href="{reverse("projects:image", args=[project.id, image.id])}?back=' in page

    def test_its_queries_do_not_grow_with_the_history(
        self, client, project, images, users, django_assert_max_num_queries
    ):
        for n in range(20):
            user = users["bob"] if n % 2 else users["alice"]
            services.image_set_label(image=images[0], user=user, label="angry" if n % 2 else "fear")
        client_for(client, users["charlie"])
        url = reverse("projects:image", args=[project.id, images[0].id])
        with django_assert_max_num_queries(8):
            page = client.get(url).content.decode()
        assert page.count('<td class="who">') == 20

    def test_another_team_gets_404(self, client, project, images, outsider):
        url = reverse("projects:image", args=[project.id, images[0].id])
        assert client_for(client, outsider).get(url).status_code == 404

    def test_back_only_returns_to_this_site(self, client, project, images, users):
        url = reverse("projects:image", args=[project.id, images[0].id])
        page = client_for(client, users["bob"]).get(url + "?back=https://evil.example/").content.decode()
        assert '<a href="https://evil.example/"' not in page
        assert f'<a href="{reverse("projects:review", args=[project.id])}"' in page
