"""`manage.py bench_health`: the dataset-health check (audit/health.py) on folder-per-emotion trees,
each tree standing for one batch of a project, through the same `health.assess` a project's check
runs; or (`--synthetic`) a generated project checked by the audit worker's own code."""

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
    assessed = health.assess(prints, [originals], batches, no_face, features, predicted)
    groups, conflicting, reasons = assessed.groups, assessed.conflicting, assessed.reasons
    figures = {"images": len(files), **assessed.figures(), **run_figures(started)}
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


def run_figures(started: float) -> dict:
    return {
        "seconds": round(time.monotonic() - started, 1),
        # ru_maxrss is in kilobytes on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


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


# --- A generated project: the worker's own health phase at scale ----------------------------------

SYNTHETIC_PREFIX = "bench-health"
# Every 100 images: one exact copy (in another batch; every other one with another label), one
# copy saved again at JPEG quality 60 and one shifted by a pixel; every 1,000 one blank picture.
EXACT_AT, REENCODED_AT, SHIFTED_AT, BLANK_AT = 1, 51, 76, 500


def bench_project(count: int, model_file: Path, seed: int = 0) -> dict:
    """Build a project of `count` generated 48-pixel grey pictures with planted copies, run one
    audit of it through audit_execute (label audit, health check, map, store) and return the
    figures. Call it inside a throwaway database (the command does); it writes files under
    SYNTHETIC_PREFIX/ in the default storage, which `synthetic_cleanup` removes."""
    from audit.models import AuditRun
    from audit.services import audit_execute

    started = time.monotonic()
    project, planted = _synthetic_project(count, model_file, np.random.default_rng(seed))
    built = round(time.monotonic() - started, 1)
    started = time.monotonic()
    run = AuditRun.objects.create(project=project)
    audit_execute(run.id)
    run.refresh_from_db()
    if run.status != AuditRun.Status.DONE:
        raise ValueError(f"the audit run ended {run.status}: {run.error}")
    checked = run.summary["health"]
    figures = {key: value for key, value in checked.items() if not isinstance(value, dict)}
    figures.pop("model_version", None)
    seconds = run_figures(started)
    return {
        **figures,
        **planted,
        "build_seconds": built,
        **{f"seconds_{phase}": value for phase, value in checked["seconds"].items()},
        **seconds,
    }


def _synthetic_project(count: int, model_file: Path, rng: np.random.Generator):
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile

    from inference.models import ModelVersion
    from projects.models import Batch, Image, Project

    version = ModelVersion(
        name="bench-health", input_size=48, grayscale=True, class_order=list(EMOTIONS), is_active=True
    )
    version.file.save(f"{SYNTHETIC_PREFIX}/model.keras", ContentFile(model_file.read_bytes()), save=False)
    version.save()
    owner = get_user_model().objects.create_user(username="bench-health-owner")
    project = Project.objects.create(name="bench health", created_by=owner)
    batches = [
        Batch.objects.create(project=project, status=Batch.Status.DONE) for _ in range(max(2, count // 5000))
    ]
    planted = {"planted_exact": 0, "planted_near": 0, "planted_blank": 0}
    rows, previous, source = [], None, None
    for n in range(count):
        batch = batches[(n // 1000) % len(batches)]
        label = EMOTIONS[int(rng.integers(len(EMOTIONS)))]
        kind, picture, data = _synthetic_picture(n, previous, rng)
        if kind:
            planted[f"planted_{kind}"] += 1
        image = _synthetic_image(project, batch, n, data, label, rng)
        if kind in ("exact", "near"):
            # A copy of the previous image, with its label and the model's verdict.
            image.original_label, image.probabilities = source.original_label, source.probabilities
            image.predicted_label, image.confidence = source.predicted_label, source.confidence
        if kind == "exact":
            image.batch = batches[(n // 1000 + 1) % len(batches)]  # a leak into another batch
            if n % 200 == EXACT_AT:
                image.original_label = _other(image.original_label)  # and a conflict
        rows.append(image)
        previous, source = (picture, data), image
        if len(rows) == 2000:
            Image.objects.bulk_create(rows)
            rows = []
    Image.objects.bulk_create(rows)
    return project, planted


def _synthetic_picture(n: int, previous, rng: np.random.Generator) -> tuple[str, PILImage.Image, bytes]:
    """(what was planted, or "", the picture, its JPEG bytes)."""
    step = n % 100
    if previous is not None and step == EXACT_AT:
        return "exact", *previous
    if previous is not None and step in (REENCODED_AT, SHIFTED_AT):
        picture = previous[0] if step == REENCODED_AT else _shifted(previous[0])
        return "near", picture, _jpeg(picture, 60 if step == REENCODED_AT else 90)
    if n % 1000 == BLANK_AT:
        picture = PILImage.new("L", (48, 48), int(rng.integers(40, 200)))
        return "blank", picture, _jpeg(picture, 90)
    coarse = PILImage.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8), "L")
    picture = coarse.resize((48, 48), PILImage.Resampling.BICUBIC)
    return "", picture, _jpeg(picture, 90)


def _synthetic_image(project, batch, n: int, data: bytes, label: str, rng: np.random.Generator):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from projects.models import Image

    name = default_storage.save(f"{SYNTHETIC_PREFIX}/{n // 1000}/{n}.jpg", ContentFile(data))
    weights = rng.random(len(EMOTIONS))
    weights[EMOTIONS.index(label)] += rng.random() * 4
    weights /= weights.sum()
    predicted = EMOTIONS[int(weights.argmax())]
    return Image(
        project=project,
        batch=batch,
        file=name,
        original_name=f"face-{n:06d}.jpg",
        original_label=label,
        width=48,
        height=48,
        status=Image.Status.LABELED,
        predicted_label=predicted,
        confidence=float(weights.max()),
        probabilities={e: round(float(w), 4) for e, w in zip(EMOTIONS, weights, strict=True)},
        face_box=[0, 0, 48, 48],
        face_path=Image.FacePath.SMALL,
    )


def _other(label: str) -> str:
    return EMOTIONS[(EMOTIONS.index(label) + 1) % len(EMOTIONS)]


def _shifted(picture: PILImage.Image) -> PILImage.Image:
    """Moved one pixel right, its left edge repeated into the gap."""
    pixels = np.asarray(picture)
    return PILImage.fromarray(np.concatenate([pixels[:, :1], pixels[:, :-1]], axis=1), "L")


def _jpeg(picture: PILImage.Image, quality: int) -> bytes:
    import io

    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def synthetic_cleanup() -> None:
    """Remove the generated files (call it before the throwaway database goes)."""
    from django.core.files.storage import default_storage

    from inference.models import ModelVersion
    from projects.models import Image

    names = Image.objects.filter(file__startswith=SYNTHETIC_PREFIX).values_list("file", flat=True)
    for name in [*names.iterator(chunk_size=5000), *ModelVersion.objects.values_list("file", flat=True)]:
        if name.startswith(SYNTHETIC_PREFIX):
            default_storage.delete(name)
