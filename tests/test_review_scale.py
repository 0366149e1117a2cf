"""What the review workspace relies on to stay fast at 100,000 images (bench_review measures it):
the grid reads a page's ids from an index and then only the page's rows, the summary and health
page take every count from one grouped read, and the busy pages make a bounded number of queries
however many images and projects there are."""

import random

import pytest
from django.db.models import Count, F
from django.urls import reverse

from audit.models import AuditRun
from projects import selectors
from projects.models import EMOTIONS, Batch, Image, LabelPolicy, Membership, Project, Role
from tests.conftest import client_for


@pytest.fixture
def many(project, users):
    """Sixty images with every kind of value the orders and filters see, ties and nulls included."""
    rng = random.Random(3)
    batch = Batch.objects.create(project=project, status=Batch.Status.DONE)
    images = []
    for i in range(60):
        labeled = i % 15 != 0
        predicted = rng.choice(EMOTIONS) if labeled else ""
        images.append(
            Image(
                project=project,
                batch=batch,
                file=f"images/{i}.jpg",
                original_name=f"{i}.jpg",
                status=Image.Status.LABELED if labeled else Image.Status.PENDING,
                original_label=rng.choice([*EMOTIONS, ""]),
                predicted_label=predicted,
                # Ties on purpose: the id must break them the same way on every page.
                confidence=round(rng.choice([0.2, 0.5, rng.random()]), 3) if labeled else None,
                unsure_reason=Image.UnsureReason.LOW_CONFIDENCE if i % 11 == 0 and labeled else "",
                label_quality=None if i % 4 == 0 else rng.choice([0.1, rng.random()]),
                likely_mislabeled=i % 5 == 0,
                suggested_label=rng.choice(EMOTIONS) if i % 5 == 0 else "",
                suggestion_confident=i % 10 == 0,
                reviewed_label=rng.choice(EMOTIONS) if i % 7 == 0 else "",
                reviewed_by=users["bob"] if i % 7 == 0 else None,
            )
        )
    Image.objects.bulk_create(images)
    return batch


def _expected(project, order: str, **filters) -> list[int]:
    """The order in Python: nulls last for the audit's quality, ties broken by id (descending in
    the descending orders)."""
    images = list(Image.objects.filter(project=project, **filters).order_by("id"))

    def key(image):
        field = order.lstrip("-")
        if field == "id":
            return (0, image.id)
        value = getattr(image, field)
        tie = -image.id if order.startswith("-") else image.id
        if value is None:
            # The audit's order puts them last; confidence leaves them where the database sorts
            # NULL (lowest on SQLite, highest on PostgreSQL). Among them, the id decides.
            low = _nulls_sort_low()
            first = False if field == "label_quality" else (low if order == "confidence" else not low)
            return (0 if first else 2, 0, tie)
        return (1, -value if order.startswith("-") else value, tie)

    return [image.id for image in sorted(images, key=key)]


def _nulls_sort_low() -> bool:
    from django.db import connection

    return connection.vendor == "sqlite"


@pytest.mark.parametrize("order", list(selectors.IMAGE_ORDERS))
def test_every_page_of_every_order_shows_the_right_images_in_the_right_order(
    client, users, project, many, order
):
    client_for(client, users["charlie"])
    url = reverse("projects:review", args=[project.id])
    shown = []
    for number in (1, 2, 3):
        page = client.get(url, {"order": order, "per_page": 24, "page": number}).context["page"]
        assert page.number == number and page.paginator.num_pages == 3 and page.paginator.count == 60
        shown += [image.id for image in page]
    assert shown == _expected(project, order)


def test_a_filtered_order_pages_through_exactly_the_matching_images(client, users, project, many):
    client_for(client, users["charlie"])
    url = reverse("projects:review", args=[project.id])
    query = {"reviewed": "no", "order": "label_quality", "per_page": 24}
    first = client.get(url, {**query, "page": 1}).context["page"]
    pages = [first] + [client.get(url, {**query, "page": n}).context["page"] for n in (2, 3)]
    assert first.paginator.count == Image.objects.filter(project=project, reviewed_label="").count() > 48
    shown = [image.id for page in pages for image in page]
    assert shown == _expected(project, "label_quality", reviewed_label="")


def test_the_grid_page_reads_only_its_own_rows_with_the_reviewer_and_project(
    client, users, project, many, django_assert_max_num_queries
):
    client_for(client, users["bob"])
    url = reverse("projects:review", args=[project.id])
    # session, user, membership, count, the page's ids, the page's rows (+ reviewer)
    with django_assert_max_num_queries(8):
        response = client.get(url, {"order": "confidence", "per_page": 48, "page": 2})
    page = response.context["page"]
    assert len(page.object_list) == 12
    assert all(image.project is project or image.project.id == project.id for image in page)
    reviewed = [image for image in page if image.reviewed_label]
    assert all(image.reviewed_by.username == "bob" for image in reviewed)


def test_a_page_past_the_end_shows_the_last_page(client, users, project, many):
    client_for(client, users["charlie"])
    page = client.get(reverse("projects:review", args=[project.id]), {"page": 99, "per_page": 24})
    assert page.context["page"].number == 3 and len(page.context["page"].object_list) == 12


@pytest.mark.parametrize("policy", LabelPolicy.values)
def test_the_summary_from_label_groups_matches_counting_each_figure_in_sql(project, many, policy):
    project.label_policy = policy
    project.save(update_fields=["label_policy"])
    summary = selectors.project_summary(project)
    images = Image.objects.filter(project=project)
    final = selectors.final_label_expression(policy)
    finals = dict(
        images.exclude(status=Image.Status.FAILED)
        .annotate(final=final)
        .exclude(final="", unsure_reason__gt="")
        .values_list("final")
        .annotate(n=Count("id"))
        .values_list("final", "n")
    )
    assert summary["final_counts"] == [(emotion, finals.get(emotion, 0)) for emotion in EMOTIONS]
    assert summary["unlabeled"] == finals.get("", 0)
    assert summary["total"] == 60
    assert summary["reviewed"] == images.exclude(reviewed_label="").count()
    disagree = images.exclude(original_label="").exclude(predicted_label="")
    assert summary["disagreements"] == disagree.exclude(original_label=F("predicted_label")).count()
    confusion = dict(summary["confusion"])
    for original, predicted in disagree.values_list("original_label", "predicted_label").distinct():
        n = disagree.filter(original_label=original, predicted_label=predicted).count()
        assert confusion[original][EMOTIONS.index(predicted)] == n


def test_the_project_list_counts_each_projects_images_including_none(users, project, many):
    empty = Project.objects.create(name="empty", created_by=users["alice"])
    Membership.objects.create(project=empty, user=users["alice"], role=Role.OWNER)
    counts = {p.name: p.image_count for p in selectors.projects_for_user(users["alice"])}
    assert counts == {project.name: 60, "empty": 0}


def test_the_busy_pages_make_a_bounded_number_of_queries(
    client, users, project, many, django_assert_max_num_queries
):
    for n in range(15):
        other = Project.objects.create(name=f"other {n}", created_by=users["alice"])
        Membership.objects.create(project=other, user=users["alice"], role=Role.OWNER)
    AuditRun.objects.create(project=project, status=AuditRun.Status.DONE, summary=_audit_summary())
    client_for(client, users["alice"])
    with django_assert_max_num_queries(8):
        assert client.get(reverse("projects:list")).status_code == 200
    # label groups, ten confidence bins, batches, exports and the page's own reads
    with django_assert_max_num_queries(20):
        assert client.get(reverse("projects:detail", args=[project.id])).status_code == 200
    with django_assert_max_num_queries(12):
        assert client.get(reverse("audit:health", args=[project.id])).status_code == 200


def _audit_summary() -> dict:
    return {
        "label_counts": dict.fromkeys(EMOTIONS, 5),
        "thresholds": dict.fromkeys(EMOTIONS, 0.4),
        "noise_rates": dict.fromkeys(EMOTIONS, 0.1),
        "estimated_noise": 0.1,
        "calibrated_joint": [[1] * 7 for _ in EMOTIONS],
    }


def _count_queries(captured) -> int:
    return sum("COUNT(" in query["sql"].upper() for query in captured.captured_queries)


def test_a_filters_count_is_read_once_until_the_projects_images_change(
    client, users, project, many, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from projects import services

    client = client_for(client, users["alice"])
    url = reverse("projects:review", args=[project.id]) + "?reviewed=yes&per_page=24"
    reviewed = Image.objects.filter(project=project).exclude(reviewed_label="")
    with CaptureQueriesContext(connection) as first:
        assert client.get(url).context["page"].paginator.count == reviewed.count()
    with CaptureQueriesContext(connection) as second:
        assert client.get(url + "&page=2").context["page"].paginator.count == reviewed.count()
    # Paging on through the same filter: the filter's count is not read again.
    assert _count_queries(first) - _count_queries(second) == 1

    unreviewed = Image.objects.filter(project=project, reviewed_label="", status=Image.Status.LABELED)
    with django_capture_on_commit_callbacks(execute=True):
        changed = services.images_set_label(
            project=project,
            image_ids=list(unreviewed.values_list("id", flat=True)[:3]),
            user=users["alice"],
            label="happy",
        )
    assert changed == 3
    project.refresh_from_db()
    assert project.images_version == 1
    # The write said so: the next page counts again and shows the three new reviews.
    assert client.get(url).context["page"].paginator.count == reviewed.count()


def test_labeling_a_chunk_changes_the_projects_images_version(project, django_capture_on_commit_callbacks):
    from inference.services import labels_write

    batch = Batch.objects.create(project=project, status=Batch.Status.LABELING)
    image = Image.objects.create(project=project, batch=batch, file="images/x.jpg", original_name="x.jpg")
    with django_capture_on_commit_callbacks(execute=True):
        labels_write(image.claim_token, [image])
    project.refresh_from_db()
    assert project.images_version == 1
