"""Writes for trials: create (validated, queued on commit), cancel, promote, fail lost ones."""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from facelabel.claims import job_claim
from inference.models import ModelVersion
from inference.services import model_version_activate, model_version_register
from projects.models import EMOTIONS

from .config import config_to_dict, config_validate
from .models import Trial
from .presets import PRESETS, preset_config

LOST_MESSAGE = "the worker stopped: no heartbeat for {seconds} s"


def trial_create(
    *,
    name: str,
    preset: str,
    config: dict | None,
    data_dir: str = "",
    project=None,
    validation_fraction: float = 0.2,
    user=None,
    start: bool = True,
) -> Trial:
    """A validated trial from a preset and overrides; queued once the transaction commits.
    `start=False` leaves it queued without a task (the `train` command runs it in-process)."""
    if preset not in PRESETS:
        raise ValidationError({"preset": [f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}."]})
    validated = config_validate(preset_config(preset) | (config or {}))
    _check_data_source(data_dir, project, validation_fraction)
    trial = Trial.objects.create(
        name=name,
        preset=preset,
        config=config_to_dict(validated),
        data_source=Trial.DataSource.PROJECT if project is not None else Trial.DataSource.FOLDER,
        data_dir=str(data_dir) if project is None else "",
        project=project,
        validation_fraction=validation_fraction,
        created_by=user,
    )
    if start:
        transaction.on_commit(lambda: _queue_trial(trial.pk))
    return trial


def _queue_trial(trial_id: int) -> None:
    from .tasks import run_trial  # tasks.py imports this module

    run_trial.delay(trial_id)


def _check_data_source(data_dir: str, project, validation_fraction: float) -> None:
    if project is not None:
        if data_dir:
            raise ValidationError({"data_dir": ["Give a data folder or a project, not both."]})
        if not 0 < validation_fraction < 1:
            raise ValidationError({"validation_fraction": ["Must be between 0 and 1 (exclusive)."]})
        return
    if not data_dir:
        raise ValidationError(
            {"data_dir": ["Give a data folder (with train/ and validation/) or a project."]}
        )
    root = Path(data_dir)
    for part in ("train", "validation"):
        folder = root / part
        emotions = {p.name.lower() for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
        if not emotions & set(EMOTIONS):
            raise ValidationError(
                {
                    "data_dir": [
                        f"{folder} must exist and hold one folder per emotion ({', '.join(EMOTIONS)})."
                    ]
                }
            )


def trial_claim(trial_id: int) -> bool:
    """Queued -> running, atomically: a repeated task delivery finds nothing to claim. A trial
    is never taken over: one whose worker died fails (trials_fail_lost)."""
    claimed = job_claim(
        Trial.objects.filter(pk=trial_id),
        waiting=Trial.Status.QUEUED,
        running=Trial.Status.RUNNING,
        stale_after=None,
        stamp="heartbeat_at",
        started_at=timezone.now(),
    )
    return claimed == 1


def trial_cancel(trial: Trial) -> Trial:
    """A queued trial is cancelled at once; a running one stops at its next epoch end."""
    Trial.objects.filter(pk=trial.pk, status=Trial.Status.QUEUED).update(
        status=Trial.Status.CANCELLED, cancel_requested=True, finished_at=timezone.now()
    )
    Trial.objects.filter(pk=trial.pk, status=Trial.Status.RUNNING).update(cancel_requested=True)
    trial.refresh_from_db()
    return trial


def trial_promote(trial: Trial, *, activate: bool = True) -> ModelVersion:
    """The trial's best model as a new model version (made active unless told otherwise)."""
    if trial.status != Trial.Status.SUCCEEDED or not trial.model_file:
        raise ValidationError("Only a trial that succeeded has a model to promote.")
    name = f"trial-{trial.pk}-{slugify(trial.name)}"[:100]
    fields = {
        "input_size": trial.config["input_size"],
        "grayscale": trial.config["grayscale"],
        "preprocessing": ModelVersion.Preprocessing.ZERO_ONE,
        "class_order": list(EMOTIONS),
    }
    notes = f"Promoted from training trial {trial.pk} ({trial.preset})."
    # Promoting twice reuses the version rather than failing on the name.
    with trial.model_file.open("rb") as handle:
        version, _ = model_version_register(
            name, File(handle, name=f"{name}.keras"), metrics=trial.metrics, notes=notes, **fields
        )
    if activate:
        model_version_activate(version)
    trial.model_version = version
    trial.save(update_fields=["model_version"])
    return version


def trials_requeue_waiting() -> list[int]:
    """Queued trials nobody has picked up for a heartbeat timeout (their message may have been
    lost with the broker) are queued again; the row claim makes a duplicate message harmless.
    Touching heartbeat_at keeps a trial that waits behind a long one from being re-sent every
    sweep."""
    stale = timezone.now() - timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT)
    waiting = Trial.objects.filter(status=Trial.Status.QUEUED).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at=None, created_at__lt=stale)
    )
    ids = list(waiting.values_list("id", flat=True))
    Trial.objects.filter(id__in=ids, status=Trial.Status.QUEUED).update(heartbeat_at=timezone.now())
    return ids


def trials_fail_lost() -> int:
    """Running trials whose heartbeat stopped lost their worker: mark them failed."""
    seconds = settings.TRAINING_HEARTBEAT_TIMEOUT
    stale = timezone.now() - timedelta(seconds=seconds)
    return Trial.objects.filter(status=Trial.Status.RUNNING, heartbeat_at__lt=stale).update(
        status=Trial.Status.FAILED, error=LOST_MESSAGE.format(seconds=seconds), finished_at=timezone.now()
    )
