"""Reads: which projects a user may see, the review grid's filters, progress and summaries."""

import hashlib
import math
import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import Case, Count, F, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce, NullIf
from django.http import Http404
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext as _

from .models import (
    EMOTIONS,
    LABEL_GROUP_COLUMNS,
    POLICY_CROWD_AGREEMENT,
    POLICY_MEASURED_WITH,
    ROLE_RANK,
    Batch,
    Export,
    Image,
    LabelChange,
    LabelPolicy,
    Membership,
    Project,
    Role,
    default_label_policy,
    final_label_under,
)


def projects_for_user(user) -> QuerySet[Project]:
    # A count per project from the project's index, where a join of every image of every project
    # grouped by project read them all (110 ms for a team with a 100,000-image project).
    images = Image.objects.filter(project=OuterRef("pk")).order_by().values("project")
    count = Subquery(images.annotate(n=Count("id")).values("n"))
    return Project.objects.filter(memberships__user=user).annotate(image_count=Coalesce(count, 0))


def membership_get(user, project_id: int) -> Membership:
    """The user's membership of the project, or 404: other teams' projects do not exist for them."""
    if not user.is_authenticated:
        raise Http404
    membership = Membership.objects.select_related("project").filter(user=user, project_id=project_id).first()
    if membership is None:
        raise Http404("No such project.")
    return membership


def project_get_for_user(user, project_id: int, role: str = Role.VIEWER) -> Project:
    """The project if the user is a member with at least `role`; 404 for non-members, 403 below role."""
    membership = membership_get(user, project_id)
    if ROLE_RANK[membership.role] < ROLE_RANK[role]:
        raise PermissionDenied(f"This needs the {role} role; you are a {membership.role}.")
    return membership.project


def final_label_expression(policy: str = LabelPolicy.MODEL):
    """models.final_label_under in SQL."""
    reviewed = NullIf(F("reviewed_label"), Value(""))
    predicted = Case(When(unsure_reason="", then=F("predicted_label")), default=Value(""))
    if policy == LabelPolicy.MODEL:
        return Coalesce(reviewed, predicted)
    original = NullIf(F("original_label"), Value(""))
    if policy == LabelPolicy.ORIGINAL:
        return Coalesce(reviewed, original, predicted)
    suggestion = Case(When(suggestion_confident=True, then=NullIf(F("suggested_label"), Value(""))))
    return Coalesce(reviewed, suggestion, original, predicted)


@dataclass(frozen=True)
class PolicyFigure:
    policy: str
    label: str
    agreement: float  # share of images whose final label the crowd voted for most

    @property
    def percent(self) -> float:
        return self.agreement * 100


@dataclass(frozen=True)
class LabelPolicyInForce:
    """Which final-label policy a project uses and why: the measured default or an owner's choice."""

    policy: str
    label: str
    default: str
    default_label: str
    chosen_at: datetime | None  # None: the project kept the default it started with
    chosen_by: str
    figures: list[PolicyFigure]  # best first
    measured_with: str

    @property
    def is_default(self) -> bool:
        return self.chosen_at is None and self.policy == self.default


def label_policy_in_force(project: Project) -> LabelPolicyInForce:
    figures = sorted(
        (
            PolicyFigure(policy, LabelPolicy(policy).label, share)
            for policy, share in POLICY_CROWD_AGREEMENT.items()
        ),
        key=lambda figure: -figure.agreement,
    )
    default = default_label_policy()
    chosen_by = project.label_policy_chosen_by
    return LabelPolicyInForce(
        policy=project.label_policy,
        label=LabelPolicy(project.label_policy).label,
        default=default,
        default_label=LabelPolicy(default).label,
        chosen_at=project.label_policy_chosen_at,
        chosen_by=chosen_by.get_username() if chosen_by else "",
        figures=figures,
        measured_with=POLICY_MEASURED_WITH,
    )


# The review grid's sort orders; "least sure first" is where a reviewer's time pays off most.
IMAGE_ORDERS = {
    "id": ("id",),
    "confidence": ("confidence", "id"),
    # Ties broken by the id in the same direction, so the index is read backwards as it is:
    # "id" ascending made SQLite sort each run of equal values again (120 ms deep in 100,000).
    "-confidence": ("-confidence", "-id"),
    # The audit queue: the labels the audit trusts least first; images it did not score last.
    "label_quality": (F("label_quality").asc(nulls_last=True), "id"),
    "-label_quality": (F("label_quality").desc(nulls_last=True), "-id"),
}


UNSURE_CHOICES = ("yes", "no", *Image.UnsureReason.values)
# Dataset health filters: "yes" is any duplicate, the rest narrow it to one kind of group.
DUPLICATE_CHOICES = ("yes", "no", "conflicting", "cross_batch", *Image.DuplicateKind.values)
UNUSABLE_CHOICES = ("yes", "no", *Image.UnusableReason.values)
EXCLUDED_CHOICES = ("yes", "no", *Image.ExcludedReason.values)


@dataclass(frozen=True)
class ImageFilters:
    predicted: str = ""
    original: str = ""
    final: str = ""  # an emotion, or "unsure"
    disagrees: bool = False
    likely_mislabeled: bool | None = None
    reviewed: str = ""  # "", "yes" or "no"
    unsure: str = ""  # "", "yes" (any reason), "no", or one of Image.UnsureReason
    status: str = ""
    min_confidence: float | None = None
    max_confidence: float | None = None
    batch: int | None = None
    duplicates: str = ""  # one of DUPLICATE_CHOICES
    duplicate_group: int | None = None
    unusable: str = ""  # one of UNUSABLE_CHOICES
    excluded: str = ""  # one of EXCLUDED_CHOICES
    # A rectangle of the dataset map (x0, y0, x1, y1): the points someone selected there.
    map_box: tuple[float, float, float, float] | None = None
    order: str = "id"

    @classmethod
    def from_query(cls, params) -> "ImageFilters":
        def label(name: str) -> str:
            value = params.get(name, "")
            return value if value in EMOTIONS else ""

        def number(name: str, kind=float):
            try:
                value = kind(params.get(name, ""))
            except (TypeError, ValueError):
                return None
            # Beyond these the database driver overflows; no id or confidence is that large.
            return value if abs(value) < 2**53 else None

        return cls(
            predicted=label("predicted"),
            original=label("original"),
            final="unsure" if params.get("final") == "unsure" else label("final"),
            disagrees=params.get("disagrees") in {"1", "on", "true"},
            likely_mislabeled=_flag(params.get("likely_mislabeled")),
            reviewed=params.get("reviewed", "") if params.get("reviewed") in {"yes", "no"} else "",
            unsure=params.get("unsure", "") if params.get("unsure") in UNSURE_CHOICES else "",
            status=params.get("status", "") if params.get("status") in Image.Status.values else "",
            min_confidence=number("min_confidence"),
            max_confidence=number("max_confidence"),
            batch=number("batch", int),
            duplicates=_choice(params.get("duplicates"), DUPLICATE_CHOICES),
            duplicate_group=number("duplicate_group", int),
            unusable=_choice(params.get("unusable"), UNUSABLE_CHOICES),
            excluded=_choice(params.get("excluded"), EXCLUDED_CHOICES),
            map_box=_box(params.get("map_box")),
            order=params.get("order") if params.get("order") in IMAGE_ORDERS else "id",
        )


def _choice(value, choices) -> str:
    return value if value in choices else ""


def _box(value) -> tuple[float, float, float, float] | None:
    try:
        x0, y0, x1, y1 = (float(part) for part in str(value).split(","))
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return None
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _flag(value) -> bool | None:
    if value in {"1", "on", "true", "yes"}:
        return True
    if value in {"0", "off", "false", "no"}:
        return False
    return None


def images_filtered(project: Project, filters: ImageFilters) -> QuerySet[Image]:
    # The project rides along: every image's final label depends on the project's label policy.
    images = Image.objects.filter(project=project).select_related("reviewed_by", "project")
    if filters.predicted:
        images = images.filter(predicted_label=filters.predicted)
    if filters.original:
        images = images.filter(original_label=filters.original)
    if filters.final == "unsure":
        # What the export puts in unsure/: no final label, because the model's was not trusted.
        final = final_label_expression(project.label_policy)
        images = images.annotate(final=final).filter(final="").exclude(unsure_reason="")
    elif filters.final:
        final = final_label_expression(project.label_policy)
        images = images.annotate(final=final).filter(final=filters.final)
    if filters.disagrees:
        images = images.exclude(original_label="").exclude(predicted_label="")
        images = images.exclude(original_label=F("predicted_label"))
    if filters.likely_mislabeled is not None:
        images = images.filter(likely_mislabeled=filters.likely_mislabeled)
    if filters.reviewed == "yes":
        images = images.exclude(reviewed_label="")
    elif filters.reviewed == "no":
        images = images.filter(reviewed_label="")
    if filters.unsure == "yes":
        images = images.exclude(unsure_reason="")
    elif filters.unsure == "no":
        images = images.filter(unsure_reason="")
    elif filters.unsure:
        images = images.filter(unsure_reason=filters.unsure)
    if filters.status:
        images = images.filter(status=filters.status)
    if filters.min_confidence is not None:
        images = images.filter(confidence__gte=filters.min_confidence)
    if filters.max_confidence is not None:
        images = images.filter(confidence__lte=filters.max_confidence)
    if filters.batch is not None:
        images = images.filter(batch_id=filters.batch)
    return _health_filtered(images, filters).order_by(*IMAGE_ORDERS[filters.order])


def _health_filtered(images: QuerySet[Image], filters: ImageFilters) -> QuerySet[Image]:
    if filters.duplicates == "yes":
        images = images.filter(duplicate_group__isnull=False)
    elif filters.duplicates == "no":
        images = images.filter(duplicate_group__isnull=True)
    elif filters.duplicates == "conflicting":
        images = images.filter(duplicate_conflicting=True)
    elif filters.duplicates == "cross_batch":
        images = images.filter(duplicate_cross_batch=True)
    elif filters.duplicates:
        images = images.filter(duplicate_kind=filters.duplicates)
    if filters.duplicate_group is not None:
        images = images.filter(duplicate_group=filters.duplicate_group)
    for name, value in (("unusable_reason", filters.unusable), ("excluded_reason", filters.excluded)):
        if value == "yes":
            images = images.exclude(**{name: ""})
        elif value == "no":
            images = images.filter(**{name: ""})
        elif value:
            images = images.filter(**{name: value})
    if filters.map_box is not None:
        x0, y0, x1, y1 = filters.map_box
        images = images.filter(map_x__gte=x0, map_x__lte=x1, map_y__gte=y0, map_y__lte=y1)
    return images


def _counts_key(project: Project, *parts) -> str:
    """A cache key that changes whenever the project's images do (events.images_changed bumps
    images_version); created_at tells apart projects of a database made again with the same ids."""
    return ":".join(
        map(str, ("counts", project.id, project.created_at.timestamp(), project.images_version, *parts))
    )


class _CachedCountPaginator(Paginator):
    """Counting a filter's images is a scan of the project's index entries (20-60 ms at 100,000
    images) on every page; the count is kept until the project's images change, so paging
    through a filter pays it once."""

    def __init__(self, object_list, per_page, project: Project, name: str):
        super().__init__(object_list, per_page)
        self._project, self._name = project, name

    @cached_property
    def count(self) -> int:
        return counts_cached(self._project, self._name, self.object_list.count)


def images_page(project: Project, filters: ImageFilters, number, per_page: int) -> Page:
    """One page of the review grid. Its ids are read first, from the order's index alone
    (Image.Meta.indexes), and only then the page's own rows: an OFFSET over whole rows read
    43,000 rows to show page 900 of 100,000 images least sure first."""
    ids = images_filtered(project, filters).values_list("id", flat=True)
    unordered = hashlib.sha1(repr(replace(filters, order="")).encode(), usedforsecurity=False)
    name = f"grid:{project.label_policy}:{unordered.hexdigest()}"
    page = _CachedCountPaginator(ids, per_page, project, name).get_page(number)
    wanted = list(page.object_list)
    rows = Image.objects.filter(id__in=wanted).select_related("reviewed_by").in_bulk()
    page.object_list = [rows[i] for i in wanted if i in rows]
    for image in page.object_list:
        image.project = project  # its final label reads the project's policy; saves a join
    return page


def image_get(project: Project, image_id: int) -> Image:
    image = Image.objects.filter(project=project, id=image_id).first()
    if image is None:
        raise Http404("No such image.")
    image.project = project  # its final label reads the project's policy; saves a query
    return image


def image_final_label_source(image: Image) -> str:
    """Where the image's final label comes from, in words (final_label_under's branches)."""
    policy = image.project.label_policy
    if image.reviewed_label:
        return _("reviewed by %(user)s") % {
            "user": image.reviewed_by.get_username() if image.reviewed_by else "?"
        }
    if policy == LabelPolicy.ORIGINAL_SUGGESTED and image.suggestion_confident and image.suggested_label:
        return _("the audit's confident suggestion (project policy)")
    if policy == LabelPolicy.MODEL and not image.unsure_reason and image.predicted_label:
        return _("the model (project policy)")
    if image.original_label:
        return _("the original label (project policy)")
    if image.predicted_label and not image.unsure_reason:
        return _("the model: there is no original label")
    return _("none: exported to unsure/")


def image_probabilities(image: Image) -> list[tuple[str, float]]:
    """All seven emotions with the model's probability, in the project's emotion order."""
    probabilities = image.probabilities or {}
    return [(emotion, float(probabilities.get(emotion) or 0.0)) for emotion in EMOTIONS]


def image_history(image: Image) -> QuerySet[LabelChange]:
    """Every change of the image's reviewed label, newest first, with its author."""
    return image.label_changes.select_related("user").order_by("-at", "-id")


# Undo and redo work on the user's own actions in a project; undo and redo rows themselves are
# history, not steps (undoing an undo is a redo).
_STEPS = ~Q(how__in=[LabelChange.How.UNDO, LabelChange.How.REDO])


def label_action_to_undo(project: Project, user) -> uuid.UUID | None:
    """The user's latest action that is not undone."""
    steps = LabelChange.objects.filter(_STEPS, project=project, user=user, undone_at=None)
    return steps.order_by("-at", "-id").values_list("action", flat=True).first()


def label_action_to_redo(project: Project, user) -> uuid.UUID | None:
    """The action the user undid last, unless they did something new after undoing it."""
    mine = LabelChange.objects.filter(_STEPS, project=project, user=user)
    undone = mine.exclude(undone_at=None).order_by("-undone_at", "-id")
    undone = undone.values_list("action", "undone_at").first()
    if undone is None or mine.filter(undone_at=None, at__gt=undone[1]).exists():
        return None
    return undone[0]


def batch_get(project: Project, batch_id: int) -> Batch:
    batch = Batch.objects.filter(project=project, id=batch_id).first()
    if batch is None:
        raise Http404("No such batch.")
    return batch


def export_get(project: Project, export_id: int) -> Export:
    export = Export.objects.filter(project=project, id=export_id).first()
    if export is None:
        raise Http404("No such export.")
    return export


def batch_progress(batch: Batch) -> dict:
    counts = dict(batch.images.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    total = sum(counts.values())
    labeled = counts.get(Image.Status.LABELED, 0)
    failed = counts.get(Image.Status.FAILED, 0)
    rate = None
    if batch.started_at and labeled:
        end = batch.finished_at or timezone.now()
        seconds = max((end - batch.started_at).total_seconds(), 1e-3)
        rate = round(labeled / seconds, 1)
    errors = list(batch.images.filter(status=Image.Status.FAILED).values("id", "original_name", "error")[:50])
    return {
        "batch": batch.id,
        "status": batch.status,
        "total": total,
        "done": labeled + failed,
        "labeled": labeled,
        "failed": failed,
        "pending": counts.get(Image.Status.PENDING, 0) + counts.get(Image.Status.PROCESSING, 0),
        "images_per_second": rate,
        "errors": errors,
        "rejected": list(batch_rejections(batch).object_list),
        "rejected_count": batch.rejected_count,
    }


def batch_rejections(batch: Batch, page=1) -> Page:
    """One page of the files the upload rejected (or imported with a note). The batch keeps the
    first UPLOAD_REJECTIONS_KEPT; `batch.rejected_count` counts them all."""
    return Paginator(batch.rejected, settings.UPLOAD_REJECTIONS_PAGE).get_page(page)


@dataclass(frozen=True)
class LabelGroup:
    """How many images share one combination of LABEL_GROUP_COLUMNS."""

    original: str
    predicted: str
    reviewed: str
    unsure_reason: str
    confident: bool
    suggested: str
    status: str
    count: int

    def final_label(self, policy: str) -> str:
        return final_label_under(
            policy,
            reviewed=self.reviewed,
            original=self.original,
            predicted=self.predicted,
            suggested=self.suggested,
            confident=self.confident,
            unsure=bool(self.unsure_reason),
        )


def label_groups(project: Project) -> list[LabelGroup]:
    """The project's images counted by LABEL_GROUP_COLUMNS: a few hundred groups from which the
    summary, the charts and the health page take every count they show, in one read of an index
    instead of one scan of 100,000 rows per figure. Final labels come from final_label_under."""

    def read():
        query = Image.objects.filter(project=project).values_list(*LABEL_GROUP_COLUMNS)
        return list(query.annotate(n=Count("id")).order_by(*LABEL_GROUP_COLUMNS))

    return [LabelGroup(*row) for row in counts_cached(project, "label-groups", read)]


def counts_cached(project: Project, name: str, read):
    """read()'s result (counts over the project's images), kept in the cache until the project's
    images change: a scan of 100,000 index entries costs 30-60 ms on every page view otherwise."""
    key = _counts_key(project, name)
    value = cache.get(key)
    if value is None:
        value = read()
        cache.set(key, value, settings.GRID_COUNT_CACHE_SECONDS)
    return value


def confusion_table(counts) -> dict[str, dict[str, int]]:
    """One label against another, every emotion both ways, from (row label, column label, count)
    triples (label_groups gives them). Triples missing either label, or holding something other
    than an emotion, are left out; the summary's original-vs-model table and the health page's
    original-vs-final table both come from here."""
    table = {emotion: dict.fromkeys(EMOTIONS, 0) for emotion in EMOTIONS}
    for row, column, n in counts:
        if row in table and column in table:
            table[row][column] += n
    return table


def project_summary(project: Project) -> dict:
    groups = label_groups(project)
    final_counts: dict[str, int] = {}
    unsure_counts: dict[str, int] = {}
    status_counts: dict[str, int] = {}
    original_counts: dict[str, int] = {}
    table = confusion_table((group.original, group.predicted, group.count) for group in groups)
    matching = sum(table[emotion][emotion] for emotion in EMOTIONS)
    disagreements = sum(n for row in table.values() for n in row.values()) - matching
    reviewed = 0
    for group in groups:
        n = group.count
        status_counts[group.status] = status_counts.get(group.status, 0) + n
        reviewed += n if group.reviewed else 0
        if group.original:
            original_counts[group.original] = original_counts.get(group.original, 0) + n
        if group.status == Image.Status.FAILED:
            continue
        final = group.final_label(project.label_policy)
        # No final label: unsure/ in the export when the model had a label it did not trust.
        if not final and group.unsure_reason:
            unsure_counts[group.unsure_reason] = unsure_counts.get(group.unsure_reason, 0) + n
        else:
            final_counts[final] = final_counts.get(final, 0) + n
    return {
        "total": sum(status_counts.values()),
        "status_counts": status_counts,
        "reviewed": reviewed,
        "disagreements": disagreements,
        "final_counts": [(emotion, final_counts.get(emotion, 0)) for emotion in EMOTIONS],
        "original_counts": original_counts,
        "unlabeled": final_counts.get("", 0),
        "unsure": [
            (reason, label, unsure_counts[reason])
            for reason, label in Image.UnsureReason.choices
            if unsure_counts.get(reason)
        ],
        "unsure_total": sum(unsure_counts.values()),
        "confusion": [(original, [table[original][p] for p in EMOTIONS]) for original in EMOTIONS],
        "has_original_labels": any(any(row.values()) for row in table.values()),
    }


def members_of(project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")


def images_for_export(project: Project) -> QuerySet:
    return (
        Image.objects.filter(project=project)
        .order_by("id")
        .values(
            "id",
            "file",
            "original_name",
            "original_label",
            "predicted_label",
            "confidence",
            "reviewed_label",
            "reviewed_by__username",
            "status",
            "label_quality",
            "likely_mislabeled",
            "suggested_label",
            "suggestion_confident",
            "unsure_reason",
            "duplicate_group",
            "unusable_reason",
            "excluded_reason",
        )
    )


CONFIDENCE_BINS = 10


def _confidence_bins(project: Project, step: float) -> dict[str, int]:
    """How many images fall in each confidence bin, in one query of one count per bin: each reads
    its own range of the image_grid_confidence index, where one count with ten filters tests all
    ten on every image."""
    images = Image.objects.filter(project=project).order_by()
    parts = [
        images.filter(
            Q(confidence__gte=i * step)
            & (Q(confidence__lt=(i + 1) * step) if i < CONFIDENCE_BINS - 1 else Q(confidence__lte=1))
        )
        .annotate(bin=Value(i))
        .values("bin")
        .annotate(n=Count("id"))
        .values_list("bin", "n")
        for i in range(CONFIDENCE_BINS)
    ]
    counts = dict(parts[0].union(*parts[1:], all=True))
    return {f"bin{i}": counts.get(i, 0) for i in range(CONFIDENCE_BINS)}


def project_charts(project: Project, summary: dict) -> dict:
    """What the summary page draws: class balance (original against final label), the model's
    confidence in ten bins, and the confusion matrix's cells with the grid filter each opens.
    Widths are percentages of the largest bar, so the page needs no charting script."""
    originals = summary["original_counts"]
    finals = dict(summary["final_counts"])
    top = max([*originals.values(), *finals.values(), 1])
    balance = [
        {
            "emotion": emotion,
            "original": originals.get(emotion, 0),
            "final": finals.get(emotion, 0),
            "original_width": round(100 * originals.get(emotion, 0) / top, 1),
            "final_width": round(100 * finals.get(emotion, 0) / top, 1),
        }
        for emotion in EMOTIONS
    ]
    step = 1 / CONFIDENCE_BINS
    counts = _confidence_bins(project, step)
    highest = max([*counts.values(), 1])
    histogram = [
        {
            "low": round(i * step, 2),
            "high": round((i + 1) * step, 2),
            "count": counts[f"bin{i}"],
            "height": round(100 * counts[f"bin{i}"] / highest, 1),
        }
        for i in range(CONFIDENCE_BINS)
    ]
    largest = max([n for _, row in summary["confusion"] for n in row] + [1])
    confusion = [
        (
            original,
            [
                {"predicted": predicted, "count": n, "shade": round(0.6 * n / largest, 3)}
                for predicted, n in zip(EMOTIONS, row, strict=True)
            ],
        )
        for original, row in summary["confusion"]
    ]
    return {"balance": balance, "histogram": histogram, "confusion": confusion}
