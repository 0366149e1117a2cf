"""The model we ship: it loads the way `make run` registers it, and its card backs the claim."""

import re
from pathlib import Path

import numpy as np
import pytest

from inference.engine import EmotionModel
from projects.models import EMOTIONS, POLICY_MEASURED_WITH

MODELS = Path(__file__).resolve().parent.parent / "models"
# The default model is named once, where its policy figures were measured; the Makefile follows.
DEFAULT = POLICY_MEASURED_WITH
OLDER = ["facelabel-crowd-v3", "facelabel-crowd-v2", "facelabel-cnn-v1"]


@pytest.mark.parametrize("name", [DEFAULT, *OLDER])
def test_the_shipped_models_serve_with_the_settings_make_run_registers(tmp_path, name):
    shipped = MODELS / f"{name}.keras"
    model = EmotionModel(shipped, 48, True, "zero_one", EMOTIONS, cache_dir=tmp_path)
    pixels = np.random.default_rng(0).random((4, 48, 48, 1), dtype=np.float32)
    probabilities = model.predict(pixels)
    assert probabilities.shape == (4, 7) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    # Flip averaging is part of the file: a face and its mirror image get the same answer.
    assert np.allclose(probabilities, model.predict(pixels[:, :, ::-1]), atol=1e-4)


def test_the_model_card_records_the_target_accuracy_and_the_files_digest():
    import hashlib

    card = (MODELS / "facelabel-cnn-v1.md").read_text()
    accuracy = float(re.search(r"validation accuracy \| \*\*([0-9.]+)\*\*", card).group(1))
    assert accuracy >= 0.66
    digest = hashlib.sha256((MODELS / "facelabel-cnn-v1.keras").read_bytes()).hexdigest()
    assert f"sha256 `{digest}`" in card


def test_the_default_models_card_records_the_crowd_target_and_the_files_digest():
    import hashlib

    card = (MODELS / f"{DEFAULT}.md").read_text()
    agreement = float(re.search(r"\*\*crowd agreement ([0-9.]+)\*\*", card).group(1))
    assert agreement >= 0.85  # the target; v3 0.8441, v2 0.8405, the folder-trained v1 0.673
    digest = hashlib.sha256((MODELS / f"{DEFAULT}.keras").read_bytes()).hexdigest()
    assert f"sha256 `{digest}`" in card


def test_make_run_activates_the_crowd_model_and_keeps_the_older_ones():
    makefile = (MODELS.parent / "Makefile").read_text()
    assert f"OUR_MODEL_NAME := {DEFAULT}\n" in makefile
    assert f"OLDER_MODEL_NAMES := {' '.join(OLDER)}\n" in makefile and "--name fer-mini-xception" in makefile


def test_the_default_models_int8_file_labels_like_it_and_make_run_registers_it(tmp_path):
    from inference.engine import INT8_TOLERANCE

    shipped = MODELS / f"{DEFAULT}.keras"
    int8 = MODELS / f"{DEFAULT}.int8.tflite"
    model = EmotionModel(shipped, 48, True, "zero_one", EMOTIONS, cache_dir=tmp_path, int8_path=int8)
    assert model.backend == "litert-int8"
    model.check_agreement(model._run, INT8_TOLERANCE)
    assert "--int8 models/$(OUR_MODEL_NAME).int8.tflite" in (MODELS.parent / "Makefile").read_text()
