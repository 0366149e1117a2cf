"""`manage.py bench_health`: the dataset-health check (audit/health.py) on folder-per-emotion trees,
each tree standing for one batch of a project, as a project's check would run it."""

import resource
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from projects.models import EMOTIONS

from . import health
from .bench import labeled_files

CHUNK = 512


def bench_trees(trees: list[Path], *, model_name: str | None = None) -> tuple[dict, list[dict]]:
    """(figures, one report row per image)."""
    started = time.monotonic()
    files, originals, batches = _tree_files(trees)
    prints, no_face, features, predicted = _read(files, model_name)
    groups = health.duplicate_groups([p.digest for p in prints], [p.phash for p in prints])
    conflicting, cross = health.group_flags(groups, [originals], batches)
    outlier = health.outliers(features, predicted)
    reasons = health.unusable_reasons(np.array([p.spread for p in prints]), no_face, outlier)
    figures = {
        "images": len(files),
        "exact_duplicate_groups": int(groups.exact.sum()),
        "near_duplicate_groups": int((~groups.exact).sum()),
        "conflicting_groups": int(conflicting.sum()),
        "cross_batch_groups": int(cross.sum()),
        "unusable": sum(1 for reason in reasons if reason),
        **{
            f"unusable_{reason}": reasons.count(reason)
            for reason in (health.BLANK, health.NO_FACE, health.OUTLIER)
        },
        "seconds": round(time.monotonic() - started, 1),
        # ru_maxrss is in kilobytes on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    prefixed = len(trees) > 1
    rows = [
        {
            "file": f"{trees[batch].name}/{path.parent.name}/{path.name}"
            if prefixed
            else f"{path.parent.name}/{path.name}",
            "duplicate_group": "" if group < 0 else int(group),
            "conflicting": int(group >= 0 and conflicting[group]),
            "unusable_reason": reason,
        }
        for path, batch, group, reason in zip(files, batches, groups.group, reasons, strict=True)
    ]
    return figures, rows


def _tree_files(trees: list[Path]) -> tuple[list[Path], list[str], list[int]]:
    files, originals, batches = [], [], []
    for batch, tree in enumerate(trees):
        paths, labels = labeled_files(tree)
        files += paths
        originals += [EMOTIONS[label] for label in labels]
        batches += [batch] * len(paths)
    return files, originals, batches


def _read(files: list[Path], model_name: str | None):
    """Each file decoded once: its fingerprint, and its face found as labeling finds it, whose
    penultimate features and predicted class the active model gives, a chunk at a time."""
    # Imported here so that `manage.py help` does not load TensorFlow and OpenCV.
    from audit.features import feature_extractor
    from inference.engine import load_model_version
    from inference.faces import find_face
    from inference.models import ModelVersion
    from inference.selectors import active_model_version
    from inference.unsure import NO_FACE_PATHS

    version = ModelVersion.objects.filter(name=model_name).first() if model_name else active_model_version()
    if version is None:
        raise ValueError(f"no model version {model_name!r}" if model_name else "no active model version")
    model = load_model_version(version)
    extract, _ = feature_extractor(model.keras_model)
    prints, no_face, features, predicted = [], [], [], []
    for start in range(0, len(files), CHUNK):
        faces = []
        for path in files[start : start + CHUNK]:
            with PILImage.open(path) as picture:
                picture.load()
                prints.append(health.fingerprint(picture))
                faces.append(find_face(picture))
        no_face.extend(face.path in NO_FACE_PATHS and face.path != "blank" for face in faces)
        batch = model.preprocess(faces)
        features.append(extract(batch))
        predicted.append(model.predict(batch).argmax(axis=1))
    return prints, np.array(no_face), np.concatenate(features), np.concatenate(predicted)
