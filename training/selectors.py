"""Reads for trial pages."""

from django.db.models import QuerySet

from .config import FIELDS
from .models import Trial, TrialEpoch


def trial_history(trial: Trial) -> QuerySet[TrialEpoch]:
    """The trial's epochs in order."""
    return TrialEpoch.objects.filter(trial=trial).order_by("epoch")


def trials_compare(ids: list[int]) -> dict:
    """Selected trials side by side.

    Returns {"trials": [Trial, ...] in the order given, "config": [(setting, [value per trial],
    differs)], "metrics": [(name, [value per trial])]} with accuracy, macro F1, per-class F1,
    best validation accuracy, epochs done and total seconds."""
    found = Trial.objects.filter(pk__in=ids).prefetch_related("epochs").in_bulk()
    trials = [found[pk] for pk in ids if pk in found]
    config = []
    for name in FIELDS:
        values = [trial.config.get(name) for trial in trials]
        config.append((name, values, any(value != values[0] for value in values)))
    return {"trials": trials, "config": config, "metrics": _metric_rows(trials)}


def _metric_rows(trials: list[Trial]) -> list[tuple[str, list]]:
    rows = [
        ("accuracy", [trial.metrics.get("accuracy") for trial in trials]),
        ("macro F1", [trial.metrics.get("macro_f1") for trial in trials]),
        ("best val. accuracy", [_best_val_accuracy(trial) for trial in trials]),
        ("epochs done", [trial.epochs_done for trial in trials]),
        ("seconds", [trial.seconds_total for trial in trials]),
    ]
    labels = next((trial.metrics["labels"] for trial in trials if "labels" in trial.metrics), [])
    for label in labels:
        values = [trial.metrics.get("per_class", {}).get(label, {}).get("f1") for trial in trials]
        rows.append((f"F1 {label}", values))
    return rows


def _best_val_accuracy(trial: Trial) -> float | None:
    values = [row.val_accuracy for row in trial.epochs.all() if row.val_accuracy is not None]
    return max(values, default=None)
