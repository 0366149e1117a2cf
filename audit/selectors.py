"""Reads: audit runs and the dataset health page's figures."""

from django.db.models import Count, F, Q, QuerySet
from django.http import Http404

from projects.models import EMOTIONS, Image, Project
from projects.selectors import confusion_table, label_groups

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
