"""Training trials: configuration, presets, the Celery task end to end, cancel, promote."""

import io
import re
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone

from inference.models import ModelVersion
from projects.models import EMOTIONS
from tests.factories import TINY_TRIAL, face_jpeg
from training import services
from training.config import config_to_dict, config_validate
from training.models import Trial, TrialEpoch
from training.presets import PRESETS, preset_config
from training.selectors import trial_history, trials_compare
from training.tasks import run_trial

TINY = TINY_TRIAL


@pytest.fixture(autouse=True)
def _var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.IMAGENET_WEIGHTS_DIR = ""


@pytest.fixture
def faces_dir(db, tmp_path):
    """train/ with 3 faces per emotion and validation/ with 2."""
    root = tmp_path / "faces"
    for part, count in (("train", 3), ("validation", 2)):
        for label, emotion in enumerate(EMOTIONS):
            folder = root / part / emotion
            folder.mkdir(parents=True)
            for n in range(count):
                (folder / f"{n}.jpg").write_bytes(face_jpeg(label * 10 + n))
    return root


def make_trial(faces_dir, *, start: bool = True, **overrides) -> Trial:
    return services.trial_create(
        name="tiny run", preset="trial_1", config=TINY | overrides, data_dir=str(faces_dir), start=start
    )


def errors_of(data: dict) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as raised:
        config_validate(data)
    return raised.value.message_dict


def test_config_refuses_unknown_settings_by_name():
    assert "Unknown setting 'learnig_rate'" in errors_of({"learnig_rate": 0.1})["learnig_rate"][0]


def test_config_refuses_out_of_range_and_wrong_types_per_field():
    errors = errors_of(
        {"learning_rate": -0.01, "epochs": "ten", "input_size": 16, "grayscale": 1, "precision": "float16"}
    )
    assert "mixed_bfloat16" in errors["precision"][0]
    assert errors["learning_rate"] == ["Must be in (0, 1]; got -0.01."]
    assert errors["epochs"] == ["Must be a whole number, got 'ten'."]
    assert errors["input_size"] == ["Must be in [32, 224]; got 16."]
    assert errors["grayscale"] == ["Must be true or false, got 1."]


def test_config_refuses_a_dropout_list_that_does_not_match_the_blocks():
    assert "one dropout per convolutional block" in errors_of({"conv_dropout": [0.2]})["conv_dropout"][0]


def test_config_refuses_block_counts_and_warmup_that_do_not_fit():
    errors = errors_of({"conv_filters": [8, 16], "conv_dropout": [0, 0], "convs_per_block": [1, 5]})
    assert "whole number in [1, 4]" in errors["convs_per_block"][0]
    errors = errors_of({"conv_filters": [8, 16], "conv_dropout": [0, 0], "convs_per_block": [1]})
    assert "one count per convolutional block" in errors["convs_per_block"][0]
    assert errors_of({"epochs": 3, "warmup_epochs": 3})["warmup_epochs"] == ["Must be fewer than epochs."]
    assert "plateau, cosine" in errors_of({"lr_schedule": "step"})["lr_schedule"][0]


def test_convs_per_block_sets_the_depth_of_each_block():
    from training.architectures import build_model

    base = {"architecture": "facelabel_cnn", "conv_filters": [8, 16], "conv_dropout": [0, 0]}
    convs = [
        sum(type(layer).__name__ == "Conv2D" for layer in build_model(config_validate(base | extra)).layers)
        for extra in ({}, {"convs_per_block": [1, 1]}, {"convs_per_block": [3, 2]})
    ]
    assert convs == [4, 2, 5]


def test_flip_averaging_predicts_the_mean_of_an_image_and_its_mirror():
    import numpy as np

    from training.architectures import build_model, with_flip_averaging

    model = build_model(config_validate(TINY | {"input_size": 48}))
    pixels = np.random.default_rng(0).random((3, 48, 48, 1), dtype=np.float32)
    expected = (model.predict(pixels, verbose=0) + model.predict(pixels[:, :, ::-1], verbose=0)) / 2
    averaged = with_flip_averaging(model)
    assert np.allclose(averaged.predict(pixels, verbose=0), expected, atol=1e-5)
    # An asymmetric image and its mirror get the same answer from the averaged model.
    assert np.allclose(
        averaged.predict(pixels, verbose=0), averaged.predict(pixels[:, :, ::-1], verbose=0), atol=1e-5
    )


def test_mixup_blends_faces_and_their_targets_with_the_same_share():
    import numpy as np

    from training.data import Split, dataset

    # Each face is one flat grey level and its target is one-hot: a blended face's level gives its
    # share, and its target must carry that same share of its own class and the rest of another.
    levels = np.arange(0, 252, 36, dtype=np.uint8)
    split = Split(labels=np.arange(7), pixels=np.repeat(levels, 48 * 48).reshape(7, 48, 48, 1))
    config = config_validate(TINY | {"input_size": 48, "mixup": 0.4, "batch_size": 7})
    faces, targets = next(iter(dataset(split, config, training=True)))
    faces, targets = faces.numpy(), targets.numpy()
    assert np.allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    own = targets.max(axis=1)
    assert (own >= 0.5 - 1e-6).all() and (own < 1.0).any()
    for face, target in zip(faces, targets, strict=True):
        assert face.mean() == pytest.approx(float(target @ levels) / 255.0, abs=1e-4)


def test_random_erasing_blanks_a_rectangle_of_some_faces_only():
    import numpy as np

    from training.data import Split, dataset

    split = Split(labels=np.zeros(200, np.int64), pixels=np.zeros((200, 48, 48, 1), np.uint8))
    config = config_validate(TINY | {"input_size": 48, "random_erasing": 0.5, "batch_size": 200})
    faces = next(iter(dataset(split, config, training=True)))[0].numpy()[..., 0]
    erased = [face for face in faces if face.any()]
    assert 60 < len(erased) < 140
    for face in erased:
        rows, cols = np.flatnonzero(face.any(axis=1)), np.flatnonzero(face.any(axis=0))
        box = face[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        # One filled rectangle, at most a fifth of the face (rounding to whole pixels aside).
        assert (box > 0).mean() > 0.95 and box.size <= 0.2 * 48 * 48 + 2 * 48
    # Validation batches are never changed.
    assert not next(iter(dataset(split, config, training=False)))[0].numpy().any()


def test_erasing_and_mixup_take_the_augmented_batch_in_bfloat16_training():
    import keras
    import numpy as np

    from training.data import Split, dataset

    # The augmentation layers compute in bfloat16 under the trial's policy; erasing and mixup
    # failed on their bfloat16 output (SelectV2 of bfloat16 and float32) when the run started.
    split = Split(labels=np.arange(7), pixels=np.full((7, 48, 48, 1), 128, np.uint8))
    config = config_validate(TINY | {"input_size": 48, "random_erasing": 1.0, "mixup": 0.4, "batch_size": 7})
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        faces, targets = next(iter(dataset(split, config, training=True)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert faces.dtype.name == "float32" and faces.shape == (7, 48, 48, 1)
    assert np.allclose(targets.numpy().sum(axis=1), 1.0, atol=1e-5)
    assert (faces.numpy() != 128 / 255).any()  # every face had a rectangle erased


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from training.runner import _optimizer

    config = config_validate({"lr_schedule": "cosine", "learning_rate": 0.1, "epochs": 4, "warmup_epochs": 1})
    schedule = _optimizer(config, steps_per_epoch=10).learning_rate
    assert float(schedule) == 0.0  # step 0 of the warm-up
    rates = [float(_optimizer(config, 10)._learning_rate(step)) for step in (5, 10, 25, 40)]
    assert rates[0] == pytest.approx(0.05) and rates[1] == pytest.approx(0.1)
    assert rates[1] > rates[2] > rates[3] and rates[3] == pytest.approx(0.0, abs=1e-6)


def test_transfer_preset_without_weights_says_how_to_proceed():
    errors = errors_of(preset_config("trial_9"))
    message = errors["imagenet_weights"][0]
    assert "No ImageNet weights file" in message and "IMAGENET_WEIGHTS_DIR" in message
    assert "train_from_scratch_ok" in message


def test_transfer_preset_finds_weights_in_the_weights_folder(settings, tmp_path):
    settings.IMAGENET_WEIGHTS_DIR = str(tmp_path)
    weights = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    weights.write_bytes(b"stand-in")
    assert config_validate(preset_config("vgg16")).imagenet_weights == str(weights)


def test_transfer_preset_refuses_grayscale():
    errors = errors_of(preset_config("trial_9") | {"grayscale": True, "train_from_scratch_ok": True})
    assert "colour" in errors["grayscale"][0]


def test_presets_are_faithful_to_the_original_trials():
    assert config_validate(preset_config("trial_6")).input_size == 96
    assert config_validate(preset_config("trial_6")).epochs == 200
    assert config_validate(preset_config("trial_2")).conv_filters == (64, 128, 256, 512)
    assert config_validate(preset_config("trial_8")).clipnorm == 1.0
    vgg = config_validate(preset_config("vgg16") | {"train_from_scratch_ok": True})
    assert (vgg.input_size, vgg.grayscale, vgg.batch_size, vgg.epochs) == (150, False, 64, 30)
    assert (vgg.early_stopping_patience, vgg.lr_plateau_patience) == (5, 3)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates_and_builds(name):
    from training.architectures import build_model

    config = config_validate(preset_config(name) | {"train_from_scratch_ok": True})
    assert config_validate(config_to_dict(config)) == config  # the stored form round-trips
    model = build_model(config)
    assert tuple(model.input_shape) == (None, config.input_size, config.input_size, config.channels)
    assert tuple(model.output_shape) == (None, 7)


def test_a_trial_trains_through_the_task_and_its_promoted_model_labels_new_batches(
    faces_dir, project, users, django_capture_on_commit_callbacks
):
    # One test for the whole path: training a model costs seconds, even a tiny one.
    from inference.engine import EmotionModel
    from projects import services as project_services
    from projects.models import Image

    with django_capture_on_commit_callbacks(execute=True):
        trial = make_trial(faces_dir)
    trial.refresh_from_db()
    assert trial.status == Trial.Status.SUCCEEDED, trial.error
    assert [row.epoch for row in trial_history(trial)] == [1, 2]
    assert trial.epochs_done == 2 and trial.heartbeat_at and trial.seconds_total > 0
    assert all(row.learning_rate == pytest.approx(0.001) and row.seconds > 0 for row in trial_history(trial))
    assert sum(map(sum, trial.metrics["confusion"])) == trial.metrics["validation_count"] == 14
    assert set(trial.metrics["per_class"]) == set(EMOTIONS)
    assert 0 <= trial.metrics["accuracy"] <= 1
    assert trial.model_file.name.endswith(".keras") and trial.model_file.size > 0
    assert trial.confusion_image.open("rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert trial.log_dir.endswith(f"tensorboard/{trial.pk}")
    assert trials_compare([trial.pk])["metrics"][0] == ("accuracy", [trial.metrics["accuracy"]])

    version = services.trial_promote(trial)

    version.refresh_from_db()
    trial.refresh_from_db()
    assert version.is_active and trial.model_version == version
    assert (version.input_size, version.grayscale, version.preprocessing) == (48, True, "zero_one")
    assert version.metrics == trial.metrics and version.name == f"trial-{trial.pk}-tiny-run"
    EmotionModel(version.file.path, 48, True, "zero_one", EMOTIONS)
    with django_capture_on_commit_callbacks(execute=True):
        project_services.batch_create(
            project=project, user=users["alice"], files=[SimpleUploadedFile("new.jpg", face_jpeg(77))]
        )
    image = Image.objects.get()
    assert image.model_version == version and image.predicted_label in EMOTIONS


def test_our_recipe_trains_with_cosine_decay_and_ships_a_flip_averaged_model(
    faces_dir, django_capture_on_commit_callbacks
):
    import keras
    import numpy as np

    from inference.engine import EmotionModel

    with django_capture_on_commit_callbacks(execute=True):
        trial = services.trial_create(
            name="ours, tiny",
            preset="facelabel_cnn",
            config=preset_config("facelabel_cnn")
            | TINY
            | {"conv_dropout": [0, 0.1], "convs_per_block": [1, 2], "epochs": 3, "warmup_epochs": 1},
            data_dir=str(faces_dir),
        )
    trial.refresh_from_db()
    assert trial.status == Trial.Status.SUCCEEDED, trial.error
    rates = [row.learning_rate for row in trial_history(trial)]
    assert rates[0] > rates[1] > rates[2]  # decaying after the warm-up epoch
    shipped = keras.models.load_model(trial.model_file.path, compile=False)
    assert shipped.get_layer("mirror") and shipped.name.endswith("_flip_mean")
    # The engine (LiteRT) serves it like any other model; its answer does not depend on the side.
    engine = EmotionModel(trial.model_file.path, 48, True, "zero_one", EMOTIONS)
    pixels = np.random.default_rng(1).random((2, 48, 48, 1), dtype=np.float32)
    assert np.allclose(engine.predict(pixels), engine.predict(pixels[:, :, ::-1]), atol=1e-4)

    # Shipping it: the card's accuracy is what evaluate_model reproduces for the registered file.
    shipped_dir = faces_dir.parent / "shipped"
    call_command("model_card", trial.pk, "--name", "ours-tiny", "--dir", shipped_dir, stdout=io.StringIO())
    card = (shipped_dir / "ours-tiny.md").read_text()
    assert "python manage.py train --preset facelabel_cnn" in card and "| seed | 1234 |" in card
    card_accuracy = re.search(r"validation accuracy \| \*\*([0-9.]+)\*\* on 14 images", card).group(1)
    call_command(
        "register_model",
        "--name",
        "ours-tiny",
        "--file",
        str(shipped_dir / "ours-tiny.keras"),
        "--input-size",
        "48",
        "--preprocessing",
        "zero_one",
        "--activate",
        stdout=io.StringIO(),
    )
    out = io.StringIO()
    call_command("evaluate_model", "--data", str(faces_dir / "validation"), stdout=out)
    assert f"accuracy: {card_accuracy}" in out.getvalue()


def test_a_trial_in_bfloat16_ships_a_float32_model_and_leaves_the_process_in_float32(
    faces_dir, django_capture_on_commit_callbacks
):
    import keras

    from inference.engine import EmotionModel

    with django_capture_on_commit_callbacks(execute=True):
        # With the mirror-image averaging the shipped presets use: its layers are built after
        # training, and once came out in bfloat16 (a file LiteRT could not convert).
        trial = make_trial(faces_dir, precision="mixed_bfloat16", init_from="", flip_averaging=True)
    trial.refresh_from_db()
    assert trial.status == Trial.Status.SUCCEEDED, trial.error
    assert keras.mixed_precision.global_policy().name == "float32"
    shipped = keras.models.load_model(trial.model_file.path, compile=False)
    assert "emotions_flip_mean" in {layer.name for layer in shipped.layers}
    assert {layer.dtype_policy.name for layer in shipped.layers} == {"float32"}
    # Converted and checked against Keras like any float32 model, not refused for bfloat16 drift.
    assert EmotionModel(trial.model_file.path, 48, True, "zero_one", EMOTIONS).backend == "litert"


def test_bfloat16_continues_a_saved_float32_model_with_its_weights(faces_dir, tmp_path):
    import keras
    import numpy as np

    from training.architectures import build_model, with_dtype_policy

    model = build_model(config_validate(TINY))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = with_dtype_policy(model, "mixed_bfloat16")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed.get_layer("emotions").dtype_policy.name == "float32"
    convolutions = [layer for layer in mixed.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions and {layer.dtype_policy.name for layer in convolutions} == {"mixed_bfloat16"}
    pixels = np.random.default_rng(0).random((3, 48, 48, 1), dtype=np.float32)
    # The same weights, computed in bfloat16: close, not equal.
    assert np.abs(mixed.predict(pixels, verbose=0) - model.predict(pixels, verbose=0)).max() < 0.02


def test_a_trial_started_again_in_its_backup_folder_resumes_where_it_stopped(
    faces_dir, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    import keras

    from training import runner

    class StopAtThirdEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("the machine went away")

    callbacks = runner._callbacks
    monkeypatch.setattr(runner, "_callbacks", lambda *args: [*callbacks(*args), StopAtThirdEpoch()])
    backup = tmp_path / "backup"
    settings_ = {"epochs": 4, "lr_schedule": "cosine", "learning_rate": 0.01, "backup_dir": str(backup)}
    with django_capture_on_commit_callbacks(execute=True):
        first = make_trial(faces_dir, **settings_)
    first.refresh_from_db()
    assert first.status == Trial.Status.FAILED and "the machine went away" in first.error
    assert [row.epoch for row in trial_history(first)] == [1, 2]
    assert (backup / "best.keras").is_file()

    monkeypatch.setattr(runner, "_callbacks", callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        second = make_trial(faces_dir, **settings_)
    second.refresh_from_db()
    assert second.status == Trial.Status.SUCCEEDED, second.error
    # Epochs 3 and 4 only, on the learning rate schedule where the first run left it.
    resumed = list(trial_history(second))
    assert [row.epoch for row in resumed] == [3, 4]
    second_epoch_rate = trial_history(first).get(epoch=2).learning_rate
    assert second_epoch_rate > resumed[0].learning_rate > resumed[1].learning_rate
    assert not (backup / "best.keras").exists()  # stored with the trial; the next run starts afresh


def test_a_repeated_delivery_does_nothing(faces_dir):
    trial = make_trial(faces_dir, start=False)
    Trial.objects.filter(pk=trial.pk).update(status=Trial.Status.RUNNING)
    run_trial.delay(trial.pk)
    assert not TrialEpoch.objects.exists()


def test_only_a_succeeded_trial_can_be_promoted(faces_dir):
    trial = make_trial(faces_dir, start=False)
    with pytest.raises(ValidationError):
        services.trial_promote(trial)
    assert not ModelVersion.objects.exists()


def test_cancel_stops_a_running_trial_at_the_end_of_an_epoch(faces_dir):
    trial = make_trial(faces_dir, start=False)
    Trial.objects.filter(pk=trial.pk).update(cancel_requested=True)
    run_trial.delay(trial.pk)
    trial.refresh_from_db()
    assert trial.status == Trial.Status.CANCELLED
    assert TrialEpoch.objects.filter(trial=trial).count() == 1
    assert not trial.model_file


def test_cancel_of_a_queued_trial_is_immediate(faces_dir):
    trial = services.trial_cancel(make_trial(faces_dir, start=False))
    assert trial.status == Trial.Status.CANCELLED and trial.finished_at


def test_a_trial_can_train_on_a_projects_final_labels(project, users, django_capture_on_commit_callbacks):
    from projects import services as project_services
    from projects.models import Image
    from tests.conftest import register_tiny_model

    register_tiny_model()
    files = [SimpleUploadedFile(f"{n}.jpg", face_jpeg(n)) for n in range(14)]
    with django_capture_on_commit_callbacks(execute=True):
        project_services.batch_create(project=project, user=users["alice"], files=files)
    for n, image in enumerate(Image.objects.order_by("id")):
        Image.objects.filter(pk=image.pk).update(reviewed_label=EMOTIONS[n % 7])

    config = TINY | {"epochs": 1}
    trial = services.trial_create(
        name="from project", preset="trial_1", config=config, project=project, start=False
    )
    run_trial.delay(trial.pk)
    trial.refresh_from_db()
    assert trial.status == Trial.Status.SUCCEEDED, trial.error
    assert trial.data_source == Trial.DataSource.PROJECT and trial.metrics["validation_count"] == 7


def test_project_data_takes_the_final_labels_of_the_projects_policy(project, users):
    from projects.models import Batch, Image
    from training.data import project_splits

    batch = Batch.objects.create(project=project, uploaded_by=users["alice"])
    for n in range(14):
        Image.objects.create(
            project=project,
            batch=batch,
            file=SimpleUploadedFile(f"{n}.jpg", face_jpeg(n)),
            original_name=f"{n}.jpg",
            original_label=EMOTIONS[n % 7],
            predicted_label="happy" if n % 2 else "",
        )
    config = config_validate(TINY)
    project.label_policy = "original"
    project.save(update_fields=["label_policy"])
    train, validation = project_splits(project, config, 0.5)
    assert sorted([*train.labels, *validation.labels]) == sorted(n % 7 for n in range(14))
    project.label_policy = "model"  # only the 7 images the model labeled, all happy
    project.save(update_fields=["label_policy"])
    train, validation = project_splits(project, config, 0.5)
    assert len(train) + len(validation) == 7 and set(train.labels) == {EMOTIONS.index("happy")}


def test_a_folder_without_emotion_folders_is_refused(tmp_path):
    with pytest.raises(ValidationError) as raised:
        services.trial_create(name="x", preset="trial_1", config={}, data_dir=str(tmp_path))
    assert "one folder per emotion" in raised.value.message_dict["data_dir"][0]


def test_a_running_trial_without_heartbeat_is_marked_failed(db, settings):
    settings.TRAINING_HEARTBEAT_TIMEOUT = 600
    old = timezone.now() - timedelta(seconds=601)
    lost = Trial.objects.create(name="lost", status=Trial.Status.RUNNING, heartbeat_at=old)
    alive = Trial.objects.create(name="alive", status=Trial.Status.RUNNING, heartbeat_at=timezone.now())

    assert services.trials_fail_lost() == 1
    lost.refresh_from_db()
    alive.refresh_from_db()
    assert lost.status == Trial.Status.FAILED and "the worker stopped" in lost.error
    assert alive.status == Trial.Status.RUNNING


def test_a_queued_trial_nobody_picked_up_is_queued_again_once(db, settings):
    settings.TRAINING_HEARTBEAT_TIMEOUT = 600
    waiting = Trial.objects.create(name="waiting", status=Trial.Status.QUEUED)
    fresh = Trial.objects.create(name="fresh", status=Trial.Status.QUEUED)
    Trial.objects.filter(id=waiting.id).update(created_at=timezone.now() - timedelta(seconds=601))

    assert services.trials_requeue_waiting() == [waiting.id]
    assert services.trials_requeue_waiting() == []  # touched: not sent again on the next sweep
    fresh.refresh_from_db()
    assert fresh.heartbeat_at is None


def test_ctrl_c_in_the_train_command_cancels_the_trial(faces_dir, monkeypatch):
    from django.core.management import CommandError, call_command

    from training import runner

    def interrupted(trial_id, verbose=0):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted)
    with pytest.raises(CommandError, match="interrupted"):
        call_command("train", "--preset", "trial_1", "--data", str(faces_dir), "--epochs", "1")
    trial = Trial.objects.get()
    assert trial.status == Trial.Status.CANCELLED and trial.finished_at is not None
