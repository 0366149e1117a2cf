"""`manage.py bench_audit`: the audit's own code (probabilities or cross-validated features,
confident learning, the suggestions policy) on a dataset whose true labels are known."""

import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from inference.models import EMOTIONS, ModelVersion
from projects.models import LabelPolicy, final_label_under

from . import confident
from .features import cross_validated_probabilities, feature_extractor
from .services import FEATURE_CHUNK, features_of

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def bench_folder(
    data_dir: Path, *, noise: float, seed: int, cross_validated: bool, model_name: str | None = None
) -> dict:
    from inference.engine import load_model_version
    from inference.faces import find_face

    version = _version(model_name)
    model = load_model_version(version)
    files, truth = _labeled_files(Path(data_dir))
    given, flipped = flip_labels(truth, noise, seed)
    # Faces are found as labeling finds them (face_of in inference/services.py).
    faces = [find_face(_open(path)) for path in files]
    started = time.monotonic()
    if cross_validated:
        extract, _ = feature_extractor(model.keras_model, len(EMOTIONS))
        probs = cross_validated_probabilities(features_of(model, extract, faces), given, len(EMOTIONS))
    else:
        chunks = [faces[i : i + FEATURE_CHUNK] for i in range(0, len(faces), FEATURE_CHUNK)]
        # Rounded as labeling stores them.
        probs = np.round(np.concatenate([model.predict(model.preprocess(c)) for c in chunks]), 6)
    result = confident.audit(given, probs)
    audit_seconds = time.monotonic() - started
    after = np.array(
        [
            EMOTIONS.index(
                final_label_under(
                    LabelPolicy.ORIGINAL_SUGGESTED,
                    reviewed="",
                    original=EMOTIONS[g],
                    predicted=EMOTIONS[int(p.argmax())],
                    suggested=EMOTIONS[s] if s >= 0 else "",
                    confident=bool(c),
                )
            )
            for g, p, s, c in zip(given, probs, result.suggested, result.confident, strict=True)
        ]
    )
    return {
        "model": version.name,
        "audit": "cross_validated" if cross_validated else "model",
        "images": len(truth),
        "noise": round(float(flipped.mean()), 4),
        **_scores(flipped, result),
        "label_accuracy_before": float((given == truth).mean()),
        "label_accuracy_after": float((after == truth).mean()),
        "estimated_noise": float(1 - np.trace(result.joint)),
        "audit_seconds": round(audit_seconds, 1),
    }


def flip_labels(truth: np.ndarray, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Exactly round(noise * n) labels, chosen at random, moved to a random other class."""
    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(truth), dtype=bool)
    flipped[rng.choice(len(truth), size=round(noise * len(truth)), replace=False)] = True
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, len(EMOTIONS), flipped.sum())) % len(EMOTIONS)
    return given, flipped


def _scores(flipped: np.ndarray, result: confident.Audit) -> dict:
    from sklearn.metrics import roc_auc_score

    found = result.issues & flipped
    return {
        # A low probability of the given label should rank the flipped labels first.
        "auroc": float(roc_auc_score(flipped, -result.label_quality))
        if 0 < flipped.sum() < len(flipped)
        else float("nan"),
        "flagged": int(result.issues.sum()),
        "flag_precision": float(found.sum() / max(result.issues.sum(), 1)),
        "flag_recall": float(found.sum() / flipped.sum()) if flipped.any() else float("nan"),
        "confident_suggestions": int(result.confident.sum()),
    }


def _version(name: str | None) -> ModelVersion:
    versions = ModelVersion.objects.all()
    version = versions.filter(name=name).first() if name else versions.filter(is_active=True).first()
    if version is None:
        raise ValueError(
            f"No model version named {name!r}." if name else "No active model version: register one."
        )
    return version


def _labeled_files(data_dir: Path) -> tuple[list[Path], np.ndarray]:
    files, labels = [], []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and p.name in EMOTIONS):
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
                labels.append(EMOTIONS.index(folder.name))
    if not files:
        raise ValueError(f"no images under {data_dir}/<emotion>/")
    return files, np.array(labels, dtype=np.int64)


def _open(path: Path) -> PILImage.Image:
    with PILImage.open(path) as picture:
        picture.load()
        return picture if picture.mode in ("L", "RGB") else picture.convert("RGB")
