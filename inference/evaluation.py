"""Scoring a model on a folder-per-emotion image tree (FER2013's `validation/` layout)."""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from projects.models import EMOTIONS

from .crowd import CrowdEvaluation, crowd_evaluate, votes_key
from .engine import EmotionModel
from .faces import find_face

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    precision: dict[str, float]
    recall: dict[str, float]
    f1: dict[str, float]
    support: dict[str, int]
    confusion: list[list[int]]  # rows: true label, columns: predicted, both in `labels` order
    image_count: int
    labels: list[str] = field(default_factory=lambda: list(EMOTIONS))
    skipped: list[str] = field(default_factory=list)  # files that could not be read


@dataclass(frozen=True)
class Predictions:
    files: list[Path]
    truth: np.ndarray  # folder label indices
    probabilities: np.ndarray  # (n, 7) in EMOTIONS order
    skipped: list[str]

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def predict_folder(model: EmotionModel, data_dir: Path, batch_size: int = 256) -> Predictions:
    """Predict every image under data_dir/<emotion>/ as the product does (face finding, resizing).

    Memory: one batch of decoded images at a time.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} is not a folder")
    files = list(labeled_files(data_dir))
    kept, truth, probabilities, skipped = [], [], [], []
    mode = "L" if model.grayscale else "RGB"
    for start in range(0, len(files), batch_size):
        faces = []
        for path, label in files[start : start + batch_size]:
            try:
                with Image.open(path) as image:
                    faces.append(find_face(image.convert(mode)))
            except (OSError, UnidentifiedImageError) as exc:
                logger.warning("skipping %s: %s", path, exc)
                skipped.append(str(path.relative_to(data_dir)))
                continue
            kept.append(path)
            truth.append(label)
        if faces:
            probabilities.append(model.predict(model.preprocess(faces)))
    if not truth:
        raise ValueError(f"no readable images under {data_dir}/<emotion>/")
    return Predictions(kept, np.array(truth), np.concatenate(probabilities), skipped)


def evaluate_folder(model: EmotionModel, data_dir: Path, batch_size: int = 256) -> Evaluation:
    """Predict every image under data_dir/<emotion>/ and score the predictions against the folders."""
    predictions = predict_folder(model, data_dir, batch_size)
    return score_folder_labels(predictions)


def score_folder_labels(predictions: Predictions) -> Evaluation:
    return _scored(predictions.truth, predictions.predicted, predictions.skipped)


def score_against_crowd(predictions: Predictions, votes: dict) -> CrowdEvaluation:
    """The predictions scored against crowd votes (inference/crowd.py), confidence included."""
    return crowd_evaluate(
        [votes_key(path) for path in predictions.files],
        [EMOTIONS[i] for i in predictions.predicted],
        votes,
        predictions.probabilities.max(axis=1),
    )


def labeled_files(data_dir: Path) -> Iterator[tuple[Path, int]]:
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        if folder.name not in EMOTIONS:
            logger.warning("ignoring %s: not one of the seven emotions", folder)
            continue
        label = EMOTIONS.index(folder.name)
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                yield path, label


def _scored(truth: np.ndarray, predicted: np.ndarray, skipped: list[str]) -> Evaluation:
    labels = list(range(len(EMOTIONS)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )

    def per_class(values) -> dict[str, float]:
        return {emotion: float(v) for emotion, v in zip(EMOTIONS, values, strict=True)}

    return Evaluation(
        accuracy=float(accuracy_score(truth, predicted)),
        precision=per_class(precision),
        recall=per_class(recall),
        f1=per_class(f1),
        support={emotion: int(n) for emotion, n in zip(EMOTIONS, support, strict=True)},
        confusion=confusion_matrix(truth, predicted, labels=labels).tolist(),
        image_count=len(truth),
        skipped=skipped,
    )


def format_evaluation(ev: Evaluation) -> str:
    """A plain-text report: accuracy, a per-class table and the confusion matrix."""
    width = max(len(label) for label in ev.labels) + 2
    lines = [
        f"images: {ev.image_count}" + (f" ({len(ev.skipped)} unreadable, skipped)" if ev.skipped else ""),
        f"accuracy: {ev.accuracy:.4f}",
        "",
        f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for label in ev.labels:
        lines.append(
            f"{label:<{width}}{ev.precision[label]:>10.4f}{ev.recall[label]:>10.4f}"
            f"{ev.f1[label]:>10.4f}{ev.support[label]:>10}"
        )
    lines += ["", "confusion matrix (rows: true label, columns: predicted label)"]
    lines.append(" " * width + "".join(f"{label[:8]:>9}" for label in ev.labels))
    for label, row in zip(ev.labels, ev.confusion, strict=True):
        lines.append(f"{label:<{width}}" + "".join(f"{n:>9}" for n in row))
    return "\n".join(lines)
