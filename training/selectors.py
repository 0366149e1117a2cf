"""Reads for trial pages."""

from django.db.models import QuerySet

from projects.models import EMOTIONS

from .config import DEFAULTS, FIELDS
from .models import Trial, TrialEpoch
from .presets import PRESETS, preset_config


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


def trial_model_card(
    trial: Trial, *, file_name: str, sha256: str, evaluation, validation_dir: str, crowd=None
) -> str:
    """A Markdown model card: data, command, recipe, timings, and the shipped file's scores on
    validation as the inference engine (and so `evaluate_model`) computes them."""
    import json
    import os

    history = list(trial_history(trial))
    best = max(history, key=lambda row: row.val_accuracy or 0.0) if history else None
    minutes = (trial.seconds_total or 0) / 60
    plain = " without flip averaging" if trial.config.get("flip_averaging") else ""
    # Settings that `train` takes as options of their own (`init_from` -> `--init-from`).
    options = {"votes", "init_from", "epochs", "backup_dir"}
    overrides = " ".join(
        f"--{name.replace('_', '-')} {value}"
        if name in options
        else f"--set {name}={json.dumps(value, separators=(',', ':'))}"
        for name, value in trial.config.items()
        if name in FIELDS and value != _preset_value(trial.preset, name)
    )
    lines = [
        f"# {file_name}",
        "",
        f"Trained by facelabel trial {trial.pk} ({trial.name}), preset `{trial.preset}`.",
        "",
        "| | |",
        "|---|---|",
        f"| data | `{trial.data_dir}` (train/ for training, validation/ for checkpoints) |",
        f"| command | `python manage.py train --preset {trial.preset} --data {trial.data_dir}"
        + (f" {overrides}" if overrides else "")
        + "` |",
        *(
            [f"| starts from | `{trial.config['init_from']}` (its own card gives its recipe and time) |"]
            if trial.config.get("init_from")
            else []
        ),
        *(
            [
                f"| targets | the crowd's vote distribution per face, `{trial.config['votes']}`; left out: "
                f"{json.dumps(trial.metrics.get('left_out', {}))} |"
            ]
            if trial.config.get("votes")
            else []
        ),
        f"| seed | {trial.config.get('seed')} |",
        f"| epochs | {trial.epochs_done} of {trial.config.get('epochs')}; best validation epoch "
        f"{best.epoch if best else '-'} ({best.val_accuracy:.4f}{plain}) |"
        if best
        else f"| epochs | {trial.epochs_done} |",
        f"| wall time | {minutes:.1f} min, training and evaluation, on {os.cpu_count()} CPU cores "
        f"({trial.started_at:%Y-%m-%d %H:%M} UTC start) |",
        f"| file | `{file_name}`, sha256 `{sha256}` |",
        f"| validation accuracy | **{evaluation.accuracy:.4f}** on {evaluation.image_count} images of "
        f"`{validation_dir}` |",
        f"| the trial's own evaluation | {trial.metrics.get('accuracy')} accuracy, macro F1 "
        f"{trial.metrics.get('macro_f1')} (TensorFlow's JPEG decoder, whole images, no face finding) |",
        "",
        "Reproduce the score: `python manage.py evaluate_model --data "
        f"{validation_dir}` with this model active (the inference engine's path: face finding, "
        "resizing, LiteRT).",
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for label in evaluation.labels:
        lines.append(
            f"| {label} | {evaluation.precision[label]:.4f} | {evaluation.recall[label]:.4f} | "
            f"{evaluation.f1[label]:.4f} | {evaluation.support[label]} |"
        )
    lines += ["", "## Confusion matrix (rows: true, columns: predicted)", ""]
    lines += ["| | " + " | ".join(evaluation.labels) + " |", "|---" * (len(evaluation.labels) + 1) + "|"]
    for label, row in zip(evaluation.labels, evaluation.confusion, strict=True):
        lines.append(f"| {label} | " + " | ".join(str(n) for n in row) + " |")
    if crowd is not None:
        lines += _crowd_card(crowd, validation_dir, trial.config["votes"])
    lines += ["", "## Recipe", "", "```json", json.dumps(trial.config, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def _crowd_card(crowd, validation_dir: str, votes: str) -> list[str]:
    score = crowd.score
    lines = [
        "",
        "## Against the crowd (ten votes per face)",
        "",
        f"On the {score.counted} images of `{validation_dir}` whose most-voted answer is an emotion "
        f"({score.non_emotion} mostly contempt/unknown/not-a-face and {score.unmatched} without votes "
        f"left out): **crowd agreement {score.agreement:.4f}**, annotator share "
        f"{score.annotator_share:.4f}, expected calibration error {crowd.ece:.4f}.",
        "",
        f"Reproduce: `python manage.py evaluate_model --data {validation_dir} --votes {votes}`.",
        "",
        "| crowd class | recall | support |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {crowd.recall[label]:.4f} | {crowd.support[label]} |" for label in EMOTIONS]
    lines += ["", "Rows: the crowd's majority; columns: predicted.", ""]
    lines += ["| | " + " | ".join(EMOTIONS) + " |", "|---" * (len(EMOTIONS) + 1) + "|"]
    for label, row in zip(EMOTIONS, crowd.confusion, strict=True):
        lines.append(f"| {label} | " + " | ".join(str(n) for n in row) + " |")
    return lines


def _preset_value(preset: str, name: str):
    settings = preset_config(preset) if preset in PRESETS else {}
    value = settings.get(name, DEFAULTS[name])
    return list(value) if isinstance(value, tuple) else value
