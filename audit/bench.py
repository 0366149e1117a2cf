"""`manage.py bench_audit`: the audit's own code (probabilities or cross-validated features,
confident learning, the suggestions policy) on a dataset whose true labels are known."""

import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from inference.models import ModelVersion
from projects.models import EMOTIONS, LabelPolicy, Project, final_label_under

from . import confident
from .features import cross_validated_probabilities, feature_extractor
from .services import FEATURE_CHUNK, features_of

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def bench_folder(
    data_dir: Path, *, noise: float, seed: int, cross_validated: bool, model_name: str | None = None
) -> dict:
    version = _version(model_name)
    files, truth = labeled_files(Path(data_dir))
    given, flipped = flip_labels(truth, noise, seed)
    started = time.monotonic()
    probs, result, _ = _audit(version, files, given, cross_validated)
    audit_seconds = time.monotonic() - started
    after = np.array(
        [
            EMOTIONS.index(label)
            for label in final_labels(LabelPolicy.ORIGINAL_SUGGESTED, given, probs, result, [""] * len(given))
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


def bench_votes(data_dir: Path, votes_file: Path, *, cross_validated: bool, model_name: str | None = None):
    """Real noise: the folders are the given labels and the crowd's votes are the truth.

    Every image is audited, as in a project; the scores count the images whose crowd majority is
    an emotion (inference/crowd.py). A policy's export agreement is over the faces its export
    sorts into emotion folders; the share it sends to `unsure/` is given beside it. Returns
    (figures, report rows).
    """
    # Imported here so that `manage.py help` does not load scikit-learn and OpenCV.
    from inference.crowd import CrowdScore, votes_key, votes_read

    votes = votes_read(votes_file)
    version = _version(model_name)
    files, given = labeled_files(Path(data_dir))
    probs, result, unsure = _audit(version, files, given, cross_validated)
    crowd = [votes.get(votes_key(path)) for path in files]
    counted = np.array([c is not None and c.counts_as_emotion for c in crowd])
    if not counted.any():
        raise ValueError(
            f"no image under {data_dir} has crowd votes with an emotion majority in {votes_file}"
        )
    disputed = np.array(
        [
            bool(c is not None and c.counts_as_emotion and not c.agrees(EMOTIONS[g]))
            for c, g in zip(crowd, given, strict=True)
        ]
    )
    finals = {policy: final_labels(policy, given, probs, result, unsure) for policy in LabelPolicy.values}
    figures = {"model": version.name, "audit": "cross_validated" if cross_validated else "model"}
    figures |= {
        "images": len(files),
        "crowd_images": int(counted.sum()),
        "real_noise": float(disputed[counted].mean()),
    }
    scores = _scores(disputed[counted], _subset(result, counted))
    figures["real_noise_auroc"] = scores.pop("auroc")
    figures |= scores
    figures["unsure"] = sum(1 for reason in unsure if reason)
    for policy, labels in finals.items():
        score = CrowdScore()
        for c, label in zip(crowd, labels, strict=True):
            if label:  # sorted into an emotion folder
                score.add(c, label)
        figures[f"export_crowd_agreement_{policy}"] = score.agreement
        figures[f"export_unsure_{policy}"] = 1 - score.counted / counted.sum()
    figures["default_policy"] = Project().label_policy
    rows = [
        {
            "file": votes_key(path),
            "original": EMOTIONS[g],
            "predicted": EMOTIONS[int(p.argmax())],
            "label_quality": f"{q:.6f}",
            "likely_mislabeled": bool(issue),
            "suggested_label": EMOTIONS[s] if s >= 0 else "",
            "confident": bool(c),
            "unsure_reason": unsure[i],
            **{f"final_{policy}": labels[i] or "unsure" for policy, labels in finals.items()},
        }
        for i, (path, g, p, q, issue, s, c) in enumerate(
            zip(
                files,
                given,
                probs,
                result.label_quality,
                result.issues,
                result.suggested,
                result.confident,
                strict=True,
            )
        )
    ]
    return figures, rows


def _audit(version: ModelVersion, files: list[Path], given: np.ndarray, cross_validated: bool):
    """The active model's probabilities (or cross-validated ones), the confident-learning audit and
    each image's unsure reason, all as labeling and the audit find them."""
    # Imported here so that `manage.py help` does not load TensorFlow and OpenCV.
    from inference.engine import load_model_version
    from inference.faces import find_face
    from inference.unsure import unsure_reason

    model = load_model_version(version)
    # Faces are found as labeling finds them (face_of in inference/services.py).
    faces = [find_face(_open(path)) for path in files]
    if cross_validated:
        extract, _ = feature_extractor(model.keras_model, len(EMOTIONS))
        probs = cross_validated_probabilities(features_of(model, extract, faces), given, len(EMOTIONS))
    else:
        chunks = [faces[i : i + FEATURE_CHUNK] for i in range(0, len(faces), FEATURE_CHUNK)]
        # Rounded as labeling stores them.
        probs = np.round(np.concatenate([model.predict(model.preprocess(c)) for c in chunks]), 6)
    unsure = [unsure_reason(face.path, float(p.max())) for face, p in zip(faces, probs, strict=True)]
    return probs, confident.audit(given, probs), unsure


def final_labels(
    policy: str, given: np.ndarray, probs: np.ndarray, result: confident.Audit, unsure: list[str]
) -> list[str]:
    """Each image's final label under a policy, nobody having reviewed it (what the export holds:
    "" for the `unsure/` folder)."""
    return [
        final_label_under(
            policy,
            reviewed="",
            original=EMOTIONS[g],
            predicted=EMOTIONS[int(p.argmax())],
            suggested=EMOTIONS[s] if s >= 0 else "",
            confident=bool(c),
            unsure=bool(reason),
        )
        for g, p, s, c, reason in zip(given, probs, result.suggested, result.confident, unsure, strict=True)
    ]


def _subset(result: confident.Audit, keep: np.ndarray) -> confident.Audit:
    import dataclasses

    return dataclasses.replace(
        result,
        label_quality=result.label_quality[keep],
        issues=result.issues[keep],
        confident=result.confident[keep],
        suggested=result.suggested[keep],
    )


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


def labeled_files(data_dir: Path) -> tuple[list[Path], np.ndarray]:
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
