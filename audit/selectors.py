"""Reads: audit runs, the dataset health page's figures, duplicate groups and the dataset map."""

from dataclasses import dataclass, field

from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Q, QuerySet
from django.http import Http404

from projects.models import EMOTIONS, Image, Project
from projects.selectors import confusion_table, counts_cached, final_label_expression, label_groups

from .models import AuditRun


def audit_runs(project: Project) -> QuerySet[AuditRun]:
    return AuditRun.objects.filter(project=project).select_related("requested_by")


def audit_run_get(project: Project, run_id: int) -> AuditRun:
    run = audit_runs(project).filter(id=run_id).first()
    if run is None:
        raise Http404("No such audit run.")
    return run


def latest_audit(project: Project) -> AuditRun | None:
    return audit_runs(project).filter(status=AuditRun.Status.DONE).first()


def dataset_health(project: Project) -> dict:
    """The latest audit's estimates next to the live state of the review."""
    run = latest_audit(project)
    images = Image.objects.filter(project=project)
    flagged = images.filter(likely_mislabeled=True)
    review = flagged.aggregate(
        total=Count("id"),
        open=Count("id", filter=Q(reviewed_label="")),
        took_suggestion=Count("id", filter=Q(reviewed_label=F("suggested_label"))),
        kept_original=Count("id", filter=Q(reviewed_label=F("original_label"))),
        confident=Count("id", filter=Q(suggestion_confident=True)),
    )
    return {
        "run": run,
        "in_progress": audit_runs(project)
        .filter(status__in=[AuditRun.Status.PENDING, AuditRun.Status.RUNNING])
        .first(),
        "flagged": review,
        "classes": _class_rows(run),
        "joint": _heat_rows(run),
        "changes": final_vs_original(project),
        "dataset": dataset_health_counts(project),
    }


def _class_rows(run: AuditRun | None) -> list[dict]:
    if run is None:
        return []
    summary = run.summary
    return [
        {
            "emotion": emotion,
            "images": summary["label_counts"][emotion],
            "threshold": summary["thresholds"][emotion],
            "noise_rate": summary["noise_rates"][emotion],
        }
        for emotion in EMOTIONS
    ]


def _heat_rows(run: AuditRun | None) -> list[tuple[str, list[dict]]]:
    """The estimated joint as (given label, cells); each cell's shade is its share of the row, so
    the off-diagonal cells show where each class's wrong labels come from."""
    if run is None:
        return []
    rows = []
    for emotion, counts in zip(EMOTIONS, run.summary["calibrated_joint"], strict=True):
        total = sum(counts) or 1
        # The shade stops at 60 % red so dark text stays readable (WCAG AA) on the fullest cell.
        cells = [
            {"count": n, "share": round(n / total, 3), "shade": round(0.6 * n / total, 3)} for n in counts
        ]
        rows.append((emotion, cells))
    return rows


def final_vs_original(project: Project) -> dict:
    """Original label (rows) against the final label under the project's policy (columns)."""
    policy = project.label_policy
    table = confusion_table((g.original, g.final_label(policy), g.count) for g in label_groups(project))
    total = sum(sum(row.values()) for row in table.values())
    changed = total - sum(table[e][e] for e in EMOTIONS)
    return {
        "rows": [(original, [table[original][e] for e in EMOTIONS]) for original in EMOTIONS],
        "total": total,
        "changed": changed,
    }


def dataset_health_counts(project: Project) -> dict:
    """Duplicate groups by kind, conflicting and cross-batch groups, unusable images by reason and
    excluded images, as the latest dataset health check and the reviewers left them: one query."""
    images = Image.objects.filter(project=project)
    groups = {
        "exact_groups": Q(duplicate_kind=Image.DuplicateKind.EXACT),
        "near_groups": Q(duplicate_kind=Image.DuplicateKind.NEAR),
        "conflicting_groups": Q(duplicate_conflicting=True),
        "cross_batch_groups": Q(duplicate_cross_batch=True),
    }
    unusable = {reason: Q(unusable_reason=reason) for reason in Image.UnusableReason.values}
    counts = counts_cached(
        project,
        "dataset-health",
        lambda: images.aggregate(
            **{name: Count("duplicate_group", distinct=True, filter=where) for name, where in groups.items()},
            duplicate_images=Count("id", filter=Q(duplicate_group__isnull=False)),
            **{f"unusable_{reason}": Count("id", filter=where) for reason, where in unusable.items()},
            excluded=Count("id", filter=~Q(excluded_reason="")),
            excluded_duplicate=Count("id", filter=Q(excluded_reason=Image.ExcludedReason.DUPLICATE)),
            excluded_unusable=Count("id", filter=Q(excluded_reason=Image.ExcludedReason.UNUSABLE)),
            unusable_included=Count("id", filter=~Q(unusable_reason="") & Q(excluded_reason="")),
        ),
    )
    counts = dict(counts)  # changed below: never the cached object itself
    counts["groups"] = counts["exact_groups"] + counts["near_groups"]
    counts["unusable"] = [
        {"reason": value, "label": label, "count": counts.pop(f"unusable_{value}")}
        for value, label in Image.UnusableReason.choices
    ]
    counts["unusable_total"] = sum(row["count"] for row in counts["unusable"])
    return counts


@dataclass
class DuplicateGroup:
    number: int
    kind: str
    conflicting: bool
    cross_batch: bool
    members: list[Image] = field(default_factory=list)

    @property
    def kind_label(self) -> str:
        return Image.DuplicateKind(self.kind).label if self.kind in Image.DuplicateKind.values else ""

    @property
    def majority_label(self) -> str:
        """The final label most members carry: the Resolve form's first choice."""
        labels = [image.final_label for image in self.members if image.final_label]
        return max(EMOTIONS, key=labels.count) if labels else ""


DUPLICATE_GROUPS_PER_PAGE = 20


def duplicate_groups_page(project: Project, number, per_page: int = DUPLICATE_GROUPS_PER_PAGE) -> Page:
    """A page of the project's duplicate groups, conflicting ones first, then those across batches
    (a leak), then the rest; each with its members. Three queries whatever the page: the count,
    the page's group numbers, and their members."""
    groups = (
        Image.objects.filter(project=project, duplicate_group__isnull=False)
        .values("duplicate_group")
        .annotate(
            conflicting=Count("id", filter=Q(duplicate_conflicting=True)),
            cross_batch=Count("id", filter=Q(duplicate_cross_batch=True)),
        )
        .order_by("-conflicting", "-cross_batch", "duplicate_group")
    )
    page = Paginator(groups, per_page).get_page(number)
    numbers = [row["duplicate_group"] for row in page.object_list]
    by_number = {
        row["duplicate_group"]: DuplicateGroup(
            row["duplicate_group"], "", bool(row["conflicting"]), bool(row["cross_batch"])
        )
        for row in page.object_list
    }
    members = Image.objects.filter(project=project, duplicate_group__in=numbers).select_related("batch")
    members = members.defer("batch__rejected")  # a batch's rejected files: a long list, unused
    for image in members.order_by("duplicate_group", "id"):
        image.project = project  # its final label reads the project's policy; saves a query each
        group = by_number[image.duplicate_group]
        group.kind = group.kind or image.duplicate_kind
        group.members.append(image)
    page.object_list = [by_number[n] for n in numbers]
    return page


# The dataset map's flag codes, most telling first: a point shows the first that applies.
MAP_FLAGS = ("excluded", "unusable", "duplicate", "likely_mislabeled")


def map_exists(project: Project) -> bool:
    return Image.objects.filter(project=project, map_x__isnull=False, map_y__isnull=False).exists()


def map_points(project: Project) -> dict:
    """Every mapped image as compact parallel arrays for the map's canvas, in one query:
    coordinates, original and final labels as indices into `emotions` (-1: none), and a flag as an
    index into `flags` (-1: none)."""
    rows = (
        Image.objects.filter(project=project, map_x__isnull=False, map_y__isnull=False)
        .annotate(final=final_label_expression(project.label_policy))
        .order_by()
        .values_list(
            "map_x",
            "map_y",
            "original_label",
            "final",
            "excluded_reason",
            "unusable_reason",
            "duplicate_group",
            "likely_mislabeled",
        )
    )
    index = {emotion: i for i, emotion in enumerate(EMOTIONS)}
    xs, ys, originals, finals, flags = [], [], [], [], []
    for x, y, original, final, excluded, unusable, group, mislabeled in rows.iterator(chunk_size=5000):
        xs.append(round(x, 4))
        ys.append(round(y, 4))
        originals.append(index.get(original, -1))
        finals.append(index.get(final or "", -1))
        flags.append(
            0 if excluded else 1 if unusable else 2 if group is not None else 3 if mislabeled else -1
        )
    return {
        "emotions": list(EMOTIONS),
        "flags": list(MAP_FLAGS),
        "x": xs,
        "y": ys,
        "original": originals,
        "final": finals,
        "flag": flags,
    }


# Group numbers are image ids: past a 64-bit integer PostgreSQL refuses the query (a 500).
_MAX_GROUP = 2**63 - 1


def duplicate_group_exists(project: Project, group: int) -> bool:
    if not 0 < group <= _MAX_GROUP:
        return False
    return Image.objects.filter(project=project, duplicate_group=group).exists()


def duplicate_group_get(project: Project, group: int) -> int:
    """The group's number, or 404 when the project has no such duplicate group."""
    if not duplicate_group_exists(project, group):
        raise Http404("No such duplicate group.")
    return group
