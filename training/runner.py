"""Run one claimed trial to the end: train, evaluate, store results. Used by the Celery task and
by `manage.py train`, so the shell and the admin train exactly the same way."""

import functools
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.utils import timezone

from facelabel.claims import ClaimHeartbeat, on_fresh_connection
from projects.models import EMOTIONS

from . import data, plots
from .architectures import build_model, with_dtype_policy, with_flip_averaging
from .config import TrainingConfig, config_validate
from .models import Trial, TrialEpoch

logger = logging.getLogger(__name__)
# Within a long epoch, refresh the heartbeat (and look for a cancel) at most this often.
HEARTBEAT_SECONDS = 60


class TrialCancelled(Exception):
    pass


def run(trial_id: int, *, verbose: int = 0) -> Trial:
    """Train a trial that is already claimed (status running). Never raises for training errors:
    the trial ends succeeded, cancelled or failed with the error text."""
    trial = Trial.objects.get(pk=trial_id)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"trial-{trial.pk}-"))
    # Beats from a thread of their own as well: loading data, validating and saving run for
    # minutes without a batch end, and a short timeout must not take them for a lost worker.
    running = Trial.objects.filter(pk=trial.pk, status=Trial.Status.RUNNING)
    beat = ClaimHeartbeat(
        lambda: running.update(heartbeat_at=timezone.now()), settings.TRAINING_HEARTBEAT_TIMEOUT, "trial"
    )
    try:
        with beat:
            _train_and_store(trial, workdir, verbose)
        status, error = Trial.Status.SUCCEEDED, ""
    except TrialCancelled:
        status, error = Trial.Status.CANCELLED, ""
    except Exception as exc:  # any failure, TF's many kinds included, must end the trial
        logger.exception("trial %s failed", trial.pk)
        status, error = Trial.Status.FAILED, f"{type(exc).__name__}: {exc}"[:5000]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    trial.status, trial.error = status, error
    trial.finished_at = timezone.now()
    trial.seconds_total = round(time.monotonic() - started, 1)
    # On a new connection: the fault that ended the trial may have been the database's.
    on_fresh_connection(lambda: trial.save(update_fields=["status", "error", "finished_at", "seconds_total"]))
    return trial


def _train_and_store(trial: Trial, workdir: Path, verbose: int) -> None:
    config = config_validate(trial.config)
    _configure_tensorflow()
    import keras

    # The policy is global to the process: a worker's next trial, or its labeling, must not
    # inherit this one's.
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        _train(trial, config, workdir, verbose)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _train(trial: Trial, config: TrainingConfig, workdir: Path, verbose: int) -> None:
    import keras

    keras.utils.set_random_seed(config.seed)
    train_split, validation_split = _splits(trial, config)
    model = _initial_model(config)
    steps_per_epoch = -(-len(train_split) // config.batch_size)
    model.compile(
        optimizer=_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    backup = Path(config.backup_dir) if config.backup_dir else None
    best_file = (backup or workdir) / "best.keras"
    recorder = _epoch_recorder(trial.pk)
    model.fit(
        data.dataset(train_split, config, training=True),
        validation_data=data.dataset(validation_split, config, training=False),
        epochs=config.epochs,
        class_weight=data.class_weights(train_split.labels) if config.class_weights else None,
        callbacks=[recorder, *_callbacks(trial, config, best_file), *_backup_callbacks(backup)],
        shuffle=False,  # the training dataset shuffles itself
        verbose=verbose,
    )
    if recorder.cancelled:
        raise TrialCancelled
    if not best_file.is_file():  # no epoch had a val_accuracy to compare: keep the last weights
        model.save(best_file)
    # Shipped in float32 whatever the trial trained in: LiteRT, int8 calibration and the
    # agreement check all expect it. The flip-averaging layers built below take the global
    # policy, and in bfloat16 they made a file LiteRT cannot convert.
    keras.mixed_precision.set_global_policy("float32")
    best = with_dtype_policy(keras.models.load_model(best_file, compile=False), "float32")
    shipped_file = workdir / "shipped.keras"
    if config.flip_averaging:
        # Checkpoints were chosen on the plain model; the shipped file averages with the mirror.
        best = with_flip_averaging(best)
    best.save(shipped_file)
    metrics = evaluate(
        best,
        data.dataset(validation_split, config, training=False),
        validation_split.labels,
        validation_split.targets,
    )
    metrics["best_epoch"] = _best_epoch(trial.pk)
    if config.votes:
        metrics["left_out"] = {"train": train_split.left_out, "validation": validation_split.left_out}
    _store_results(trial, metrics, shipped_file)
    if backup is not None:  # stored: a run started again in this folder starts afresh
        best_file.unlink()
        best_file.with_suffix(".json").unlink(missing_ok=True)


def _splits(trial: Trial, config: TrainingConfig) -> tuple[data.Split, data.Split]:
    if trial.data_source == Trial.DataSource.PROJECT:
        if trial.project is None:
            raise ValueError("the trial's project was deleted")
        if config.votes:
            raise ValueError("crowd votes are matched to files of a server folder, not to a project")
        return data.project_splits(trial.project, config, trial.validation_fraction)
    train, validation = data.folder_splits(trial.data_dir, config.votes)
    if not len(train) or not len(validation):
        raise ValueError(
            f"{trial.data_dir} has no images in train/ or validation/ emotion folders"
            + (" that have an emotion in the crowd votes" if config.votes else "")
        )
    return train, validation


def _initial_model(config: TrainingConfig):
    """A fresh network of the configured architecture, or the network saved in init_from."""
    if not config.init_from:
        return build_model(config)
    import keras

    model = keras.models.load_model(config.init_from, compile=False)
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if model.name.endswith("_flip_mean") and len(inner) == 1:
        model = inner[0]  # train the network itself; flip averaging is applied again on saving
    expected = (config.input_size, config.input_size, config.channels)
    if tuple(model.input_shape[1:]) != expected or model.output_shape[-1] != len(EMOTIONS):
        raise ValueError(
            f"{config.init_from} takes {model.input_shape[1:]} and gives {model.output_shape[-1]} classes; "
            f"this trial needs {expected} and {len(EMOTIONS)}"
        )
    # A saved file keeps each layer's dtype policy; the trial's own precision replaces it.
    return with_dtype_policy(model, config.precision)


def _optimizer(config: TrainingConfig, steps_per_epoch: int):
    import keras

    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        warmup = config.warmup_epochs * steps_per_epoch
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate,
            decay_steps=config.epochs * steps_per_epoch - warmup,
            warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    extra = {"clipnorm": config.clipnorm} if config.clipnorm else {}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(
            learning_rate, momentum=config.momentum, nesterov=config.nesterov, **extra
        )
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, **extra)
    return keras.optimizers.Adam(learning_rate, **extra)


def _callbacks(trial: Trial, config: TrainingConfig, best_file: Path) -> list:
    import keras

    log_dir = Path(settings.VAR_DIR) / "tensorboard" / str(trial.pk)
    Trial.objects.filter(pk=trial.pk).update(log_dir=str(log_dir))
    # The best score is kept beside the best checkpoint, so that a resumed run (backup_dir)
    # replaces the checkpoint only with a better epoch, not with its first one.
    score_file = best_file.with_suffix(".json")
    best_so_far = json.loads(score_file.read_text()) if score_file.is_file() and best_file.is_file() else None
    checkpoint = keras.callbacks.ModelCheckpoint(
        best_file,
        monitor="val_accuracy",
        mode="max",
        save_best_only=True,
        initial_value_threshold=best_so_far,
    )
    keep_score = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: score_file.write_text(json.dumps(float(checkpoint.best)))
    )
    callbacks = [checkpoint, keep_score]
    # tensorflow-cpu does not pull in TensorBoard; without it the logs are skipped, not the trial.
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), profile_batch=0))
    else:
        logger.warning("TensorBoard is not installed: trial %s writes no TensorBoard logs", trial.pk)
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
            )
        )
    # A cosine schedule owns the learning rate; the plateau callback cannot set it.
    if config.lr_plateau_patience and config.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=config.lr_plateau_factor, patience=config.lr_plateau_patience
            )
        )
    return callbacks


def _backup_callbacks(backup: Path | None) -> list:
    """Keras's own BackupAndRestore (weights, optimizer state, epoch; the learning rate schedule
    follows the optimizer's step count) resumes an interrupted run in the same folder."""
    if backup is None:
        return []
    import keras

    return [keras.callbacks.BackupAndRestore(str(backup / "last"))]


def _epoch_recorder(trial_id: int):
    """A Keras callback that writes each epoch to the database, keeps the heartbeat fresh and
    stops training when a cancel was requested."""
    return _recorder_class()(trial_id)


@functools.cache
def _recorder_class():
    import keras

    class _EpochRecorder(keras.callbacks.Callback):
        def __init__(self, trial_id: int):
            super().__init__()
            self.trial_id = trial_id
            self.cancelled = False
            self._epoch_started = time.monotonic()
            self._last_beat = time.monotonic()

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_started = time.monotonic()

        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() - self._last_beat > HEARTBEAT_SECONDS:
                self._beat()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            TrialEpoch.objects.update_or_create(
                trial_id=self.trial_id,
                epoch=epoch + 1,
                defaults={
                    "loss": float(logs["loss"]),
                    "accuracy": float(logs["accuracy"]),
                    "val_loss": _float_or_none(logs.get("val_loss")),
                    "val_accuracy": _float_or_none(logs.get("val_accuracy")),
                    "learning_rate": float(self.model.optimizer.learning_rate.numpy()),
                    "seconds": round(time.monotonic() - self._epoch_started, 2),
                },
            )
            Trial.objects.filter(pk=self.trial_id).update(epochs_done=epoch + 1)
            self._beat()

        def _beat(self) -> None:
            self._last_beat = time.monotonic()
            Trial.objects.filter(pk=self.trial_id).update(heartbeat_at=timezone.now())
            if Trial.objects.filter(pk=self.trial_id, cancel_requested=True).exists():
                self.cancelled = True
                self.model.stop_training = True

    return _EpochRecorder


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


def evaluate(model, validation, labels: np.ndarray, targets: np.ndarray | None = None) -> dict:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on the validation data;
    with crowd vote distributions, `labels` are the crowd's majorities and crowd agreement (either
    side of a tie agrees) is added."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    predicted = np.argmax(model.predict(validation, verbose=0), axis=1)
    extra = {}
    if targets is not None:
        chosen = targets[np.arange(len(predicted)), predicted]
        extra["crowd_agreement"] = round(float(np.mean(chosen >= targets.max(axis=1))), 4)
    classes = list(range(len(EMOTIONS)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    per_class = {
        emotion: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "f1": round(float(f1[i]), 4),
            "support": int(support[i]),
        }
        for i, emotion in enumerate(EMOTIONS)
    }
    return {
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "macro_f1": round(float(np.mean(f1)), 4),
        "per_class": per_class,
        "confusion": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "labels": list(EMOTIONS),
        "validation_count": len(labels),
        **extra,
    }


def _best_epoch(trial_id: int) -> int | None:
    best = TrialEpoch.objects.filter(trial_id=trial_id, val_accuracy__isnull=False).order_by("-val_accuracy")
    row = best.first()
    return row.epoch if row else None


def _store_results(trial: Trial, metrics: dict, best_file: Path) -> None:
    trial.metrics = metrics
    with best_file.open("rb") as handle:
        trial.model_file.save(f"trial-{trial.pk}.keras", File(handle), save=False)
    png = plots.confusion_png(metrics["confusion"], metrics["labels"])
    trial.confusion_image.save(f"trial-{trial.pk}-confusion.png", ContentFile(png), save=False)
    trial.save(update_fields=["metrics", "model_file", "confusion_image"])


def _configure_tensorflow() -> None:
    """Training thread settings; they only apply before TensorFlow first runs in the process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    threads = settings.TRAINING_THREADS
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        logger.info("TensorFlow already ran in this process; keeping its thread settings")
