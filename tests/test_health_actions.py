"""Dataset health actions (issue 14): keep one duplicate, resolve a conflicting group, exclude and
include images, each one undoable step; their API; the duplicates, map, health and image pages."""

import gzip
import json
import uuid

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit import selectors as audit_selectors
from projects import selectors, services
from projects.models import Batch, Image, LabelChange
from tests.conftest import client_for

How = LabelChange.How


def add_images(project, count: int, batch=None, **fields) -> list[Image]:
    batch = batch or Batch.objects.create(project=project, status=Batch.Status.DONE)
    start = Image.objects.count()
    rows = [
        Image(
            project=project,
            batch=batch,
            file=f"images/{start + n}.jpg",
            original_name=f"face{start + n}.jpg",
            status=Image.Status.LABELED,
            predicted_label="happy",
            confidence=0.9,
            **fields,
        )
        for n in range(count)
    ]
    return Image.objects.bulk_create(rows)


def as_group(images: list[Image], kind="exact", conflicting=False, cross_batch=False) -> int:
    number = min(image.id for image in images)
    Image.objects.filter(id__in=[i.id for i in images]).update(
        duplicate_group=number,
        duplicate_kind=kind,
        duplicate_conflicting=conflicting,
        duplicate_cross_batch=cross_batch,
    )
    return number


def state(image: Image) -> tuple[str, str]:
    image.refresh_from_db()
    return image.reviewed_label, image.excluded_reason


@pytest.fixture
def group(project):
    """Three copies (originals sad, sad, angry: conflicting) and an unrelated image."""
    images = add_images(project, 3, original_label="sad")
    Image.objects.filter(id=images[2].id).update(original_label="angry")
    number = as_group(images, conflicting=True)
    other = add_images(project, 1, original_label="sad")[0]
    return number, images, other


class TestKeepOne:
    def test_it_excludes_the_other_copies_as_one_undo_step(self, project, users, group):
        _number, (a, b, c), other = group
        changed = services.duplicate_keep(project=project, user=users["bob"], image_id=b.id)
        assert changed == 2
        assert [state(i)[1] for i in (a, b, c, other)] == ["duplicate", "", "duplicate", ""]
        rows = LabelChange.objects.filter(how=How.KEEP_ONE)
        assert sorted(rows.values_list("image_id", "from_excluded", "to_excluded")) == [
            (a.id, "", "duplicate"),
            (c.id, "", "duplicate"),
        ]
        assert len(set(rows.values_list("action", flat=True))) == 1

    def test_keeping_another_copy_includes_the_kept_one_again(self, project, users, group):
        _number, (a, b, c), _ = group
        services.duplicate_keep(project=project, user=users["bob"], image_id=b.id)
        assert services.duplicate_keep(project=project, user=users["bob"], image_id=a.id) == 2
        assert [state(i)[1] for i in (a, b, c)] == ["", "duplicate", "duplicate"]

    def test_a_copy_excluded_as_unusable_stays_so(self, project, users, group):
        _number, (a, b, c), _ = group
        Image.objects.filter(id=c.id).update(excluded_reason="unusable")
        services.duplicate_keep(project=project, user=users["bob"], image_id=c.id)
        assert [state(i)[1] for i in (a, b, c)] == ["duplicate", "duplicate", "unusable"]

    def test_undo_includes_them_again_and_redo_excludes_them(self, project, users, group):
        _number, (a, b, c), _ = group
        bob = users["bob"]
        services.duplicate_keep(project=project, user=bob, image_id=a.id)
        assert services.label_undo(project=project, user=bob) == 2
        assert [state(i) for i in (a, b, c)] == [("", "")] * 3
        assert services.label_redo(project=project, user=bob) == 2
        assert [state(i) for i in (a, b, c)] == [("", ""), ("", "duplicate"), ("", "duplicate")]

    def test_an_image_outside_any_group_or_the_named_one_is_refused(self, project, users, group):
        number, (a, _, _), other = group
        with pytest.raises(ValidationError):
            services.duplicate_keep(project=project, user=users["bob"], image_id=other.id)
        with pytest.raises(ValidationError):
            services.duplicate_keep(project=project, user=users["bob"], image_id=a.id, group=number + 1)
        assert not LabelChange.objects.exists()


class TestResolve:
    def test_every_copy_gets_the_label_and_the_group_no_longer_conflicts(self, project, users, group):
        number, images, other = group
        changed = services.duplicate_resolve(project=project, user=users["bob"], group=number, label="sad")
        assert changed == 3
        for image in images:
            image.refresh_from_db()
            assert (image.reviewed_label, image.reviewed_by, image.duplicate_conflicting) == (
                "sad",
                users["bob"],
                False,
            )
        assert state(other) == ("", "")
        assert set(LabelChange.objects.values_list("how", "from_label", "to_label")) == {
            (How.RESOLVE, "", "sad")
        }

    def test_undo_restores_the_labels_and_keeps_exclusions(self, project, users, group):
        number, (a, b, c), _ = group
        bob = users["bob"]
        services.image_set_label(image=a, user=users["alice"], label="fear")
        Image.objects.filter(id=c.id).update(excluded_reason="duplicate")
        services.duplicate_resolve(project=project, user=bob, group=number, label="angry")
        services.label_undo(project=project, user=bob)
        assert [state(i) for i in (a, b, c)] == [("fear", ""), ("", ""), ("", "duplicate")]
        services.label_redo(project=project, user=bob)
        assert [state(i) for i in (a, b, c)] == [("angry", ""), ("angry", ""), ("angry", "duplicate")]

    def test_an_unknown_label_or_group_is_refused(self, project, users, group):
        number = group[0]
        with pytest.raises(ValidationError):
            services.duplicate_resolve(project=project, user=users["bob"], group=number, label="bored")
        with pytest.raises(ValidationError):
            services.duplicate_resolve(project=project, user=users["bob"], group=10**9, label="sad")


class TestExcludeAndInclude:
    def test_excluding_a_whole_filter_is_one_undo_step(self, project, users):
        unusable = add_images(project, 30, unusable_reason="blank")
        fine = add_images(project, 5)
        Image.objects.filter(id=unusable[0].id).update(excluded_reason="duplicate")
        bob = users["bob"]
        filters = selectors.ImageFilters.from_query(QueryDict("unusable=yes"))
        images = selectors.images_filtered(project, filters)
        changed = services.images_exclude(project=project, user=bob, images=images, reason="unusable")
        assert changed == 29
        assert state(unusable[0])[1] == "duplicate"  # already excluded: keeps its reason
        assert Image.objects.filter(excluded_reason="unusable").count() == 29
        assert len(set(LabelChange.objects.values_list("action", flat=True))) == 1
        assert services.label_undo(project=project, user=bob) == 29
        assert Image.objects.filter(excluded_reason="unusable").count() == 0
        assert services.label_redo(project=project, user=bob) == 29
        assert Image.objects.filter(excluded_reason="unusable").count() == 29
        assert all(state(image) == ("", "") for image in fine)

    def test_include_puts_them_back_and_undo_excludes_them_again(self, project, users):
        images = add_images(project, 3, excluded_reason="unusable")
        bob = users["bob"]
        chosen = Image.objects.filter(id__in=[images[0].id, images[1].id])
        assert services.images_include(project=project, user=bob, images=chosen) == 2
        assert [state(i)[1] for i in images] == ["", "", "unusable"]
        services.label_undo(project=project, user=bob)
        assert [state(i)[1] for i in images] == ["unusable"] * 3

    def test_undo_leaves_a_label_someone_set_since_and_restores_the_exclusion(self, project, users):
        image = add_images(project, 1)[0]
        bob = users["bob"]
        services.images_exclude(project=project, user=bob, images=Image.objects.all(), reason="duplicate")
        services.image_set_label(image=image, user=users["alice"], label="sad")
        services.label_undo(project=project, user=bob)
        assert state(image) == ("sad", "")

    def test_another_projects_images_are_left_alone(self, project, users, outsider):
        others = Batch.objects.create(project=outsider.projects.get(), status=Batch.Status.DONE)
        theirs = add_images(others.project, 2, batch=others)
        changed = services.images_exclude(
            project=project, user=users["bob"], images=Image.objects.all(), reason="unusable"
        )
        assert changed == 0
        assert all(state(image)[1] == "" for image in theirs)

    def test_an_unknown_reason_is_refused(self, project, users):
        add_images(project, 1)
        with pytest.raises(ValidationError):
            services.images_exclude(
                project=project, user=users["bob"], images=Image.objects.all(), reason="ugly"
            )


def test_a_viewer_may_do_none_of_it(project, users, group):
    number, (a, _, _), _ = group
    charlie = users["charlie"]
    everything = Image.objects.all()
    for call in (
        lambda: services.duplicate_keep(project=project, user=charlie, image_id=a.id),
        lambda: services.duplicate_resolve(project=project, user=charlie, group=number, label="sad"),
        lambda: services.images_exclude(project=project, user=charlie, images=everything, reason="unusable"),
        lambda: services.images_include(project=project, user=charlie, images=everything),
    ):
        with pytest.raises(PermissionDenied):
            call()
    assert not LabelChange.objects.exists()


# --- API ----------------------------------------------------------------------------------------


def api(project, tail: str) -> str:
    return f"/api/v1/projects/{project.id}/{tail}"


class TestApi:
    def test_keep_answers_the_count_and_the_undo_step(self, client, project, users, group):
        number, (a, b, _c), _ = group
        response = client_for(client, users["bob"]).post(
            api(project, f"duplicates/{number}/keep/"), {"image": b.id}, content_type="application/json"
        )
        assert response.status_code == 200
        body = response.json()
        assert body["changed"] == 2
        assert set(LabelChange.objects.values_list("action", flat=True)) == {uuid.UUID(body["action"])}
        assert state(a)[1] == "duplicate"

    def test_keep_refuses_a_missing_image_or_one_of_another_group(self, client, project, users, group):
        number, _, other = group
        client_for(client, users["bob"])
        url = api(project, f"duplicates/{number}/keep/")
        response = client.post(url, {}, content_type="application/json")
        assert response.status_code == 400 and "image" in response.json()
        response = client.post(url, {"image": other.id}, content_type="application/json")
        assert response.status_code == 400
        assert "not in duplicate group" in response.json()["detail"][0]
        missing = api(project, "duplicates/99999999999999999999999/keep/")
        assert client.post(missing, {"image": other.id}, content_type="application/json").status_code == 404
        assert not LabelChange.objects.exists()

    def test_resolve_sets_the_label_and_refuses_a_bad_one(self, client, project, users, group):
        number, images, _ = group
        client_for(client, users["alice"])
        url = api(project, f"duplicates/{number}/resolve/")
        response = client.post(url, {"label": "bored"}, content_type="application/json")
        assert response.status_code == 400 and "label" in response.json()
        response = client.post(url, {"label": "angry"}, content_type="application/json")
        assert response.status_code == 200 and response.json()["changed"] == 3
        assert [state(i)[0] for i in images] == ["angry"] * 3

    def test_exclude_by_filter_then_undo_through_the_api(self, client, project, users):
        add_images(project, 4, unusable_reason="no_face")
        add_images(project, 2)
        client_for(client, users["bob"])
        response = client.post(
            api(project, "images/exclude/"),
            {"filter": "unusable=yes", "reason": "unusable"},
            content_type="application/json",
        )
        assert response.status_code == 200 and response.json()["changed"] == 4
        assert Image.objects.filter(excluded_reason="unusable").count() == 4
        assert client.post(api(project, "images/undo/")).json() == {"changed": 4}
        assert not Image.objects.exclude(excluded_reason="").exists()

    def test_exclude_and_include_by_ids(self, client, project, users):
        images = add_images(project, 3)
        client_for(client, users["bob"])
        ids = [images[0].id, images[1].id]
        body = {"ids": ids, "reason": "duplicate"}
        assert (
            client.post(api(project, "images/exclude/"), body, content_type="application/json").json()[
                "changed"
            ]
            == 2
        )
        response = client.post(api(project, "images/include/"), {"ids": ids}, content_type="application/json")
        assert response.json()["changed"] == 2
        response = client.post(api(project, "images/include/"), {"ids": ids}, content_type="application/json")
        assert response.json() == {"changed": 0, "action": None}

    @pytest.mark.parametrize(
        "body",
        [
            {"reason": "unusable"},
            {"ids": [1], "filter": "", "reason": "unusable"},
            {"ids": [], "reason": "unusable"},
            {"ids": ["x"], "reason": "unusable"},
            {"ids": [1], "reason": "ugly"},
            {"ids": [1]},
        ],
    )
    def test_exclude_says_what_is_wrong_with_the_input(self, client, project, users, body):
        add_images(project, 1)
        response = client_for(client, users["bob"]).post(
            api(project, "images/exclude/"), body, content_type="application/json"
        )
        assert response.status_code == 400
        assert response.json()
        assert not Image.objects.exclude(excluded_reason="").exists()

    def test_a_viewer_gets_403_and_another_team_404(self, client, project, users, group, outsider):
        number, (a, _, _), _ = group
        calls = [
            (f"duplicates/{number}/keep/", {"image": a.id}),
            (f"duplicates/{number}/resolve/", {"label": "sad"}),
            ("images/exclude/", {"ids": [a.id], "reason": "duplicate"}),
            ("images/include/", {"ids": [a.id]}),
        ]
        for user, expected in ((users["charlie"], 403), (outsider, 404)):
            client_for(client, user)
            for tail, body in calls:
                response = client.post(api(project, tail), body, content_type="application/json")
                assert response.status_code == expected, tail
        assert not LabelChange.objects.exists()
        assert state(a) == ("", "")

    def test_the_schema_documents_the_actions(self, client, users):
        response = client_for(client, users["alice"]).get("/api/schema/")
        assert response.status_code == 200
        text = response.content.decode()
        for path in (
            "duplicates/{group}/keep/",
            "duplicates/{group}/resolve/",
            "images/exclude/",
            "images/include/",
        ):
            assert path in text


# --- Pages --------------------------------------------------------------------------------------


def health_dataset(project, images: int):
    """`images` images of which a tenth are unusable, with exact, near, conflicting and
    cross-batch duplicate groups and some excluded ones."""
    rows = add_images(project, images, original_label="sad")
    as_group(rows[0:3], conflicting=True)
    as_group(rows[3:5], kind="near", cross_batch=True)
    as_group(rows[5:7])
    unusable = [image.id for image in rows[10 : 10 + images // 10]]
    Image.objects.filter(id__in=unusable).update(unusable_reason="blank")
    Image.objects.filter(id=rows[1].id).update(excluded_reason="duplicate")
    return rows


class TestHealthPage:
    def test_it_counts_groups_unusable_and_excluded_images_with_links(self, client, project, users):
        health_dataset(project, 40)
        response = client_for(client, users["bob"]).get(reverse("audit:health", args=[project.id]))
        assert response.status_code == 200
        data = response.context["health"]["dataset"]
        assert (data["exact_groups"], data["near_groups"], data["groups"]) == (2, 1, 3)
        assert (data["conflicting_groups"], data["cross_batch_groups"]) == (1, 1)
        assert (data["duplicate_images"], data["excluded"], data["unusable_total"]) == (7, 1, 4)
        html = response.content.decode()
        review = reverse("projects:review", args=[project.id])
        for query in ("duplicates=conflicting", "duplicates=cross_batch", "unusable=yes", "excluded=yes"):
            assert f"{review}?{query}" in html
        assert reverse("audit:duplicates", args=[project.id]) in html
        assert 'id="exclude-unusable"' in html and "Exclude all 4 unusable images" in html

    def test_exclude_all_unusable_is_one_undoable_step(self, client, project, users):
        health_dataset(project, 40)
        client_for(client, users["bob"])
        response = client.post(reverse("audit:unusable_exclude", args=[project.id]), follow=True)
        assert response.status_code == 200
        assert "4 unusable images excluded." in response.content.decode()
        assert Image.objects.filter(excluded_reason="unusable").count() == 4
        services.label_undo(project=project, user=users["bob"])
        assert Image.objects.filter(excluded_reason="unusable").count() == 0

    def test_a_viewer_sees_the_counts_but_no_button(self, client, project, users):
        health_dataset(project, 20)
        client_for(client, users["charlie"])
        html = client.get(reverse("audit:health", args=[project.id])).content.decode()
        assert 'id="dataset-health"' in html and 'id="exclude-unusable"' not in html
        assert client.post(reverse("audit:unusable_exclude", args=[project.id])).status_code == 403
        assert not Image.objects.filter(excluded_reason="unusable").exists()

    def test_its_query_count_does_not_grow_with_the_images(self, client, project, users, outsider):
        client_for(client, users["bob"])
        health_dataset(project, 20)
        url = reverse("audit:health", args=[project.id])
        client.get(url)  # the session's first request reads more
        with CaptureQueriesContext(connection) as small:
            assert client.get(url).status_code == 200
        health_dataset(project, 300)
        with CaptureQueriesContext(connection) as large:
            assert client.get(url).status_code == 200
        assert len(large) == len(small)


class TestDuplicatesPage:
    def test_conflicting_groups_come_first_then_leaks(self, client, project, users):
        rows = add_images(project, 9, original_label="happy")
        plain = as_group(rows[0:2])
        leak = as_group(rows[2:4], cross_batch=True)
        conflict = as_group(rows[4:7], conflicting=True)
        response = client_for(client, users["bob"]).get(reverse("audit:duplicates", args=[project.id]))
        assert response.status_code == 200
        groups = list(response.context["page"])
        assert [g.number for g in groups] == [conflict, leak, plain]
        assert [len(g.members) for g in groups] == [3, 2, 2]
        html = response.content.decode()
        assert reverse("projects:image_file", args=[project.id, rows[4].id, "thumb"]) in html
        assert html.count('class="keep-one"') == 7
        assert f"?duplicate_group={conflict}" in html
        assert 'for="resolve-' in html and reverse("projects:label_undo", args=[project.id]) in html

    def test_keep_this_one_and_resolve_from_the_page(self, client, project, users, group):
        number, (a, b, c), _ = group
        client_for(client, users["bob"])
        page = reverse("audit:duplicates", args=[project.id])
        keep = reverse("audit:duplicate_keep", args=[project.id, number])
        response = client.post(keep, {"image": c.id, "back": page + "?page=1"})
        assert response.status_code == 302 and response["Location"] == page + "?page=1"
        assert [state(i)[1] for i in (a, b, c)] == ["duplicate", "duplicate", ""]
        resolve = reverse("audit:duplicate_resolve", args=[project.id, number])
        response = client.post(resolve, {"label": "fear"}, follow=True)
        assert "Group resolved; 3 labels changed." in response.content.decode()
        assert [state(i)[0] for i in (a, b, c)] == ["fear"] * 3
        response = client.post(resolve, {"label": "bored"}, follow=True)
        assert "is not one of the seven emotions" in response.content.decode()
        response = client.post(keep, {"image": "x"}, follow=True)
        assert "Choose the image to keep." in response.content.decode()
        response = client.post(keep, {"image": str(10**30)}, follow=True)
        assert f"is not in duplicate group {number}" in response.content.decode()

    def test_a_viewer_sees_groups_without_buttons_and_may_not_post(self, client, project, users, group):
        number, (a, _, _), _ = group
        client_for(client, users["charlie"])
        html = client.get(reverse("audit:duplicates", args=[project.id])).content.decode()
        assert 'class="dup-member' in html and 'class="keep-one"' not in html
        response = client.post(reverse("audit:duplicate_keep", args=[project.id, number]), {"image": a.id})
        assert response.status_code == 403

    def test_an_unknown_group_is_not_found(self, client, project, users, group):
        client_for(client, users["bob"])
        response = client.post(
            reverse("audit:duplicate_resolve", args=[project.id, 10**30]), {"label": "sad"}
        )
        assert response.status_code == 404

    def test_it_pages_groups_in_a_constant_number_of_queries(self, client, project, users):
        rows = add_images(project, 6)
        as_group(rows[0:2])
        as_group(rows[2:6], conflicting=True)
        client_for(client, users["bob"])
        url = reverse("audit:duplicates", args=[project.id])
        client.get(url)  # the session's first request reads more
        with CaptureQueriesContext(connection) as small:
            assert client.get(url).status_code == 200
        many = add_images(project, 120)
        for start in range(0, 120, 3):
            as_group(many[start : start + 3], cross_batch=start % 2 == 0)
        with CaptureQueriesContext(connection) as large:
            response = client.get(url)
        assert len(response.context["page"]) == audit_selectors.DUPLICATE_GROUPS_PER_PAGE
        assert len(large) == len(small)
        assert client.get(url + "?page=3").status_code == 200


class TestImageDetail:
    def test_it_shows_the_group_unusable_and_excluded_reasons(self, client, project, users, group):
        number, (a, _, _), _ = group
        Image.objects.filter(id=a.id).update(unusable_reason="outlier", excluded_reason="unusable")
        client_for(client, users["bob"])
        html = client.get(reverse("projects:image", args=[project.id, a.id])).content.decode()
        assert f"?duplicate_group={number}" in html
        assert "far from every class (outlier)" in html and "unusable as a face" in html
        assert 'id="include-image"' in html

    def test_exclude_and_include_again_from_the_page(self, client, project, users, group):
        _, (a, _, _), _ = group
        client_for(client, users["bob"])
        exclude = reverse("audit:image_exclude", args=[project.id, a.id])
        response = client.post(exclude, {"reason": "duplicate", "back": "/somewhere/"})
        detail = reverse("projects:image", args=[project.id, a.id])
        assert response.status_code == 302 and response["Location"].startswith(detail + "?back=")
        assert state(a)[1] == "duplicate"
        html = client.get(detail).content.decode()
        assert 'id="include-image"' in html
        client.post(reverse("audit:image_include", args=[project.id, a.id]))
        assert state(a)[1] == ""
        assert client.post(exclude, {"back": "https://evil.example/"})["Location"] == detail
        assert state(a)[1] == ""  # no reason given: refused with a message

    def test_a_viewer_has_no_buttons(self, client, project, users, group):
        _, (a, _, _), _ = group
        client_for(client, users["charlie"])
        html = client.get(reverse("projects:image", args=[project.id, a.id])).content.decode()
        assert 'id="exclude-image"' not in html
        assert client.post(reverse("audit:image_exclude", args=[project.id, a.id])).status_code == 403


class TestMap:
    def test_without_a_map_it_says_how_to_get_one(self, client, project, users):
        add_images(project, 3)
        html = (
            client_for(client, users["charlie"]).get(reverse("audit:map", args=[project.id])).content.decode()
        )
        assert 'id="no-map"' in html and "audit" in html and "js/map.js" not in html

    def test_the_points_are_compact_arrays_in_one_query(
        self, client, project, users, django_assert_num_queries
    ):
        rows = add_images(project, 5, original_label="sad")
        for n, image in enumerate(rows[:4]):
            Image.objects.filter(id=image.id).update(map_x=n * 0.5, map_y=1 - n * 0.25)
        Image.objects.filter(id=rows[1].id).update(excluded_reason="duplicate")
        Image.objects.filter(id=rows[2].id).update(likely_mislabeled=True, reviewed_label="fear")
        with django_assert_num_queries(1):
            points = audit_selectors.map_points(project)
        sad, happy, fear = (points["emotions"].index(e) for e in ("sad", "happy", "fear"))
        rows = zip(*(points[key] for key in ("x", "y", "original", "final", "flag")), strict=True)
        assert sorted(rows) == [
            (0.0, 1.0, sad, happy, -1),  # the model's label under the model policy
            (0.5, 0.75, sad, happy, 0),  # excluded
            (1.0, 0.5, sad, fear, 3),  # likely mislabeled, reviewed as fear
            (1.5, 0.25, sad, happy, -1),
        ]
        response = client_for(client, users["charlie"]).get(reverse("audit:map_points", args=[project.id]))
        assert response.status_code == 200 and response.json() == points
        html = client.get(reverse("audit:map", args=[project.id])).content.decode()
        assert 'id="map-canvas"' in html and "js/map.js" in html and 'for="map-colour"' in html

    def test_a_large_map_is_sent_gzipped(self, client, project, users):
        # Django pads gzip output with up to 100 random bytes (against BREACH) and sends the
        # smaller of the two, so only a map far larger than that padding is certain to be zipped.
        for n, image in enumerate(add_images(project, 300)):
            Image.objects.filter(id=image.id).update(map_x=n / 300, map_y=1 - n / 300)
        client_for(client, users["charlie"])
        url = reverse("audit:map_points", args=[project.id])
        zipped = client.get(url, HTTP_ACCEPT_ENCODING="gzip")
        assert zipped["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(zipped.content)) == client.get(url).json()

    def test_the_box_fields_link_to_the_grid_without_a_script(self, client, project, users):
        rows = add_images(project, 4)
        for n, image in enumerate(rows):
            Image.objects.filter(id=image.id).update(map_x=n, map_y=n)
        client_for(client, users["charlie"])
        response = client.get(
            reverse("audit:map", args=[project.id]), {"x0": 2, "y0": 0.5, "x1": 0.5, "y1": 2.5}
        )
        html = response.content.decode()
        assert "Open 2 images in the grid" in html
        review = client.get(reverse("projects:review", args=[project.id]), {"map_box": "0.5,0.5,2.0,2.5"})
        assert review.context["page"].paginator.count == 2

    def test_the_tabs_lead_to_duplicates_and_map(self, client, project, users):
        html = (
            client_for(client, users["charlie"]).get(reverse("audit:map", args=[project.id])).content.decode()
        )
        assert reverse("audit:duplicates", args=[project.id]) in html
        assert f'href="{reverse("audit:map", args=[project.id])}" aria-current="page"' in html


def test_the_new_pages_speak_polish(client, project, users, group):
    number, (a, _, _), _ = group
    Image.objects.filter(id=a.id).update(unusable_reason="blank", map_x=0.5, map_y=0.5)
    client_for(client, users["bob"])
    client.cookies["django_language"] = "pl"
    duplicates = client.get(reverse("audit:duplicates", args=[project.id])).content.decode()
    assert (
        "Zachowaj ten" in duplicates
        and "sprzeczne etykiety" in duplicates
        and "Rozstrzygnij na" in duplicates
    )
    health = client.get(reverse("audit:health", args=[project.id])).content.decode()
    assert "1 grupa duplikatów" in health and "Wyklucz 1 bezużyteczny obraz" in health
    page = client.get(reverse("audit:map", args=[project.id]), {"x0": 0, "y0": 0, "x1": 1, "y1": 1})
    assert "Koloruj według" in page.content.decode() and "wybrane obrazy: 1" in page.content.decode()
    detail = client.get(reverse("projects:image", args=[project.id, a.id])).content.decode()
    assert f"grupa {number}" in detail and "Wyklucz" in detail
