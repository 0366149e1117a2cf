"""Writes: starting audits, running them, storing each image's verdict.

A run claims itself (a token plus a timestamp) like exports do, so a repeated task or a second
worker never runs it twice at once, and a run whose worker died is picked up again. Results are
written in one transaction together with the run's status, and only if no newer run of the same
project finished first.
"""

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from facelabel.claims import ClaimHeartbeat, job_claim, job_fail, jobs_stalled, on_fresh_connection
from facelabel.rows import rows_update
from inference.engine import load_model_version
from inference.faces import FACE_MAX_SIDE, Face, stored_face
from inference.selectors import active_model_version
from projects import events
from projects.models import EMOTIONS, Batch, Image, Project, final_label_under

from . import confident, health
from .features import cross_validated_probabilities, feature_extractor
from .models import AuditRun

logger = logging.getLogger(__name__)

# Faces are decoded, preprocessed and passed through the model this many at a time: the memory
# held is one chunk of inputs plus the (n, d) feature matrix, about 30 MB for 30,000 images.
FEATURE_CHUNK = 256


class AuditRefused(Exception):
    """The data cannot be audited this way (not the worker's fault): fail without retrying."""


def audit_start(*, project: Project, user=None, kind: str = AuditRun.Kind.MODEL) -> AuditRun:
    """Queue an audit of the project once this transaction commits. A request while a run of the
    same kind is still waiting joins that run."""
    if kind not in AuditRun.Kind.values:
        raise ValidationError(_("Unknown audit kind %(kind)r.") % {"kind": kind})
    # Without original labels the run still checks the dataset's health (duplicates, unusable
    # images, the map); it needs labeled images all the same.
    if not _labeled_images(project).exists():
        raise ValidationError(_("No labeled image of this project has an original label to check."))
    if kind == AuditRun.Kind.CROSS_VALIDATED and active_model_version() is None:
        raise ValidationError(_("A cross-validated audit needs an active model version."))
    with transaction.atomic():
        waiting = AuditRun.objects.filter(project=project, kind=kind, status=AuditRun.Status.PENDING).first()
        if waiting is not None:
            return waiting
        run = AuditRun.objects.create(project=project, kind=kind, requested_by=user)
        transaction.on_commit(lambda: queue_audit(run.id), robust=True)
    return run


def audit_after_labeling(batch_id: int) -> None:
    """A batch finished labeling: audit its project if the batch brought original labels (ZIP
    folders), which are what the audit checks; other batches change nothing."""
    batch = Batch.objects.select_related("project").get(id=batch_id)
    if batch.images.exclude(original_label="").filter(status=Image.Status.LABELED).exists():
        audit_start(project=batch.project)


def queue_audit(run_id: int) -> None:
    """If the broker is unreachable the run stays pending and the recovery sweep queues it."""
    from .tasks import audit_project  # tasks.py imports this module

    try:
        audit_project.delay(run_id)
    except Exception:
        logger.exception("could not queue audit run %s; the recovery sweep will", run_id)


def _labeled_images(project_or_id):
    return Image.objects.filter(project=project_or_id, status=Image.Status.LABELED)


def _audited_images(project_or_id):
    return _labeled_images(project_or_id).exclude(original_label="")


def audit_execute(run_id: int) -> bool:
    """Run the audit if it is still to do. Returns True when this call wrote its results."""
    token = uuid.uuid4()
    claimed = job_claim(
        AuditRun.objects.filter(id=run_id, attempts__lt=settings.AUDIT_MAX_ATTEMPTS),
        waiting=AuditRun.Status.PENDING,
        running=AuditRun.Status.RUNNING,
        stale_after=settings.AUDIT_CLAIM_TIMEOUT,
        claim_token=token,
        started_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return False
    run = AuditRun.objects.select_related("project").get(id=run_id)
    mine = AuditRun.objects.filter(id=run.id, claim_token=token)
    try:
        with ClaimHeartbeat(
            lambda: mine.update(claimed_at=timezone.now()), settings.AUDIT_CLAIM_TIMEOUT, "audit"
        ):
            # Read first: decoding and features are most of the work, and a cross-validated audit
            # takes its features from this read instead of decoding every image a second time.
            read = health_read(run.project)
            ids, result, summary = _compute(run, read)
            checked = health_check(run.project, read, ids, result)
            return _store(run, token, ids, result, summary | {"health": checked.summary}, checked)
    except AuditRefused as exc:
        error = str(exc)
        on_fresh_connection(
            lambda: mine.update(status=AuditRun.Status.FAILED, error=error, finished_at=timezone.now())
        )
        return False
    except Exception as exc:
        # The connection may have died with the fault (a database blip): a write on it would
        # leave the run claimed until its heartbeat goes stale.
        retry = run.attempts < settings.AUDIT_MAX_ATTEMPTS
        job_fail(mine, exc, retry=retry, waiting=AuditRun.Status.PENDING, failed=AuditRun.Status.FAILED)
        raise


def _compute(run: AuditRun, read: "HealthRead") -> tuple[np.ndarray, confident.Audit | None, dict]:
    """The label audit; (no ids, None, an empty summary) when no image has an original label, and
    the run only checks the dataset's health."""
    rows = list(
        _audited_images(run.project_id)
        .exclude(probabilities=None)
        .order_by("id")
        .values_list("id", "original_label", "probabilities", "file", "face_box")
    )
    if not rows:
        if not _labeled_images(run.project_id).exists():
            raise AuditRefused("No labeled image of this project has an original label to check.")
        return np.zeros(0, np.int64), None, audit_summary(np.zeros(0, np.int64), None)
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    labels = np.array([EMOTIONS.index(row[1]) for row in rows], dtype=np.int64)
    timings: dict[str, float] = {}
    extra: dict = {}
    if run.kind == AuditRun.Kind.CROSS_VALIDATED:
        probs = _cross_validated(rows, labels, timings, extra, read)
    else:
        probs = np.array([[row[2].get(e, 0.0) for e in EMOTIONS] for row in rows], dtype=np.float64)
    started = time.monotonic()
    result = confident.audit(labels, probs)
    timings["confident_learning"] = round(time.monotonic() - started, 3)
    return ids, result, audit_summary(labels, result) | extra | {"seconds": timings}


def _cross_validated(rows, labels: np.ndarray, timings: dict, extra: dict, read: "HealthRead") -> np.ndarray:
    present = np.bincount(labels, minlength=len(EMOTIONS))
    if (present >= 2).sum() < 2:
        raise AuditRefused("A cross-validated audit needs two or more classes with two or more images each.")
    version = active_model_version()
    if version is None:
        raise AuditRefused("A cross-validated audit needs an active model version.")
    model = load_model_version(version)
    started = time.monotonic()
    extract, layer = feature_extractor(model.keras_model, len(EMOTIONS))
    features = read.features_of([row[0] for row in rows]) if read.model_name == version.name else None
    if features is None:  # an image the read could not decode raises here, as it should
        faces = (_stored_face(row[3], row[4], model.grayscale) for row in rows)
        features = features_of(model, extract, faces)
    timings["features"] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    probs = cross_validated_probabilities(features, labels, len(EMOTIONS))
    timings["folds"] = round(time.monotonic() - started, 3)
    extra.update({"model_version": version.name, "features": f"{layer}, {features.shape[1]} values"})
    return probs


def features_of(model, extract, faces: Iterable) -> np.ndarray:
    """Penultimate features of each face, preprocessed exactly as for labeling, a chunk at a time."""
    faces = iter(faces)
    parts = []
    while chunk := list(islice(faces, FEATURE_CHUNK)):
        parts.append(extract(model.preprocess(chunk)))
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def _stored_face(name: str, box, grayscale: bool) -> Face:
    """The face the labeling used, cut out again by its stored box instead of searched for."""
    return _face_of(stored_face(name), box, grayscale)


def _face_of(picture, box, grayscale: bool) -> Face:
    """The face cut out of a decoded stored image by the box its labeling found."""
    mode = "L" if grayscale else "RGB"
    picture = picture if picture.mode == mode else picture.convert(mode)
    if box:
        x, y, w, h = box
        picture = picture.crop((x, y, x + w, y + h))
    picture.thumbnail((FACE_MAX_SIDE, FACE_MAX_SIDE))
    return Face(np.asarray(picture), tuple(box or (0, 0, *picture.size)), "whole")


def audit_summary(labels: np.ndarray, result: confident.Audit | None) -> dict:
    """The run's dataset-level figures; with no result (no original labels) every count is zero."""
    counts = np.bincount(labels, minlength=len(EMOTIONS))
    if result is None:
        zeros = [[0] * len(EMOTIONS) for _ in EMOTIONS]
        return {
            "classes": list(EMOTIONS),
            "images": 0,
            "flagged": 0,
            "confident_suggestions": 0,
            "label_counts": dict.fromkeys(EMOTIONS, 0),
            "thresholds": dict.fromkeys(EMOTIONS),
            "noise_rates": dict.fromkeys(EMOTIONS, 0.0),
            "estimated_noise": 0.0,
            "confident_joint": zeros,
            "calibrated_joint": zeros,
            "joint": zeros,
            "label_audit": "skipped: no image has an original label",
        }
    thresholds = [
        None if t >= confident.ABSENT_CLASS_THRESHOLD else round(float(t), 4) for t in result.thresholds
    ]
    return {
        "classes": list(EMOTIONS),
        "images": len(labels),
        "flagged": int(result.issues.sum()),
        "confident_suggestions": int(result.confident.sum()),
        "label_counts": dict(zip(EMOTIONS, counts.tolist(), strict=True)),
        "thresholds": dict(zip(EMOTIONS, thresholds, strict=True)),
        "noise_rates": dict(zip(EMOTIONS, np.round(result.noise_rates, 4).tolist(), strict=True)),
        "estimated_noise": round(float(1 - np.trace(result.joint)), 4),
        "confident_joint": result.confident_joint.tolist(),
        "calibrated_joint": result.calibrated_joint.tolist(),
        "joint": np.round(result.joint, 5).tolist(),
    }


def _store(
    run: AuditRun,
    token: uuid.UUID,
    ids: np.ndarray,
    result: confident.Audit | None,
    summary: dict,
    checked: "HealthCheck | None" = None,
) -> bool:
    with transaction.atomic():
        newer = AuditRun.objects.filter(project=run.project_id, status=AuditRun.Status.DONE, id__gt=run.id)
        status = AuditRun.Status.SUPERSEDED if newer.exists() else AuditRun.Status.DONE
        finished = AuditRun.objects.filter(id=run.id, claim_token=token).update(
            status=status,
            summary=summary,
            image_count=len(ids),
            flagged_count=summary["flagged"],
            finished_at=timezone.now(),
            error="",
            claim_token=None,
        )
        if not finished or status == AuditRun.Status.SUPERSEDED:
            return False
        Image.objects.filter(project=run.project_id).update(
            label_quality=None, likely_mislabeled=False, suggested_label="", suggestion_confident=False
        )
        if result is not None:
            _write_verdicts(ids, result)
        if checked is not None:
            _write_health(run.project_id, checked)
        events.images_changed(run.project_id)
    return True


def _write_verdicts(ids: np.ndarray, result: confident.Audit) -> None:
    names = ["label_quality", "likely_mislabeled", "suggested_label", "suggestion_confident"]
    rows = [
        (
            round(float(quality), 6),
            bool(flagged),
            EMOTIONS[suggested] if suggested >= 0 else "",
            bool(sure),
            int(image_id),
        )
        for image_id, quality, flagged, suggested, sure in zip(
            ids, result.label_quality, result.issues, result.suggested, result.confident, strict=True
        )
    ]
    rows_update(Image, names, ["id"], rows)


def runs_stalled() -> list[int]:
    """Runs nobody works on although they should be: lost message, dead worker. Runs that used up
    their tries fail instead."""
    return jobs_stalled(
        AuditRun.objects.all(),
        waiting=AuditRun.Status.PENDING,
        running=AuditRun.Status.RUNNING,
        failed=AuditRun.Status.FAILED,
        stale_after=settings.AUDIT_CLAIM_TIMEOUT,
        max_attempts=settings.AUDIT_MAX_ATTEMPTS,
        error="The worker stopped while running this audit on every try.",
    )


# --- Dataset health beyond labels (audit/health.py) ---------------------------------------------

# Columns of the images the health check reads, and the fields it writes.
HEALTH_COLUMNS = (
    "id",
    "batch_id",
    "file",
    "face_box",
    "face_path",
    "original_label",
    "reviewed_label",
    "predicted_label",
    "unsure_reason",
)
HEALTH_FIELDS = (
    "duplicate_group",
    "duplicate_kind",
    "duplicate_conflicting",
    "duplicate_cross_batch",
    "unusable_reason",
    "map_x",
    "map_y",
)


@dataclass
class HealthCheck:
    rows: list[tuple]  # HEALTH_FIELDS' values, then the image id, for images with something to say
    summary: dict


@dataclass
class HealthRead:
    """Every labeled image of a project decoded once: HEALTH_COLUMNS of the readable ones, their
    fingerprints and the active model's penultimate features (None without a model)."""

    rows: list[tuple]
    ids: np.ndarray
    unreadable: int
    prints: list
    features: np.ndarray | None
    model_name: str
    seconds: float

    def features_of(self, image_ids: list[int]) -> np.ndarray | None:
        """The features of these images in this order; None if any of them was not read."""
        if self.features is None:
            return None
        position = {image_id: n for n, image_id in enumerate(self.ids.tolist())}
        if any(image_id not in position for image_id in image_ids):
            return None
        return self.features[[position[image_id] for image_id in image_ids]]


def health_read(project: Project) -> HealthRead:
    """Memory: each image is decoded once, FEATURE_CHUNK at a time; what is kept per image is its
    digest, hash, a 1 KB thumbnail and the model's features (a few hundred floats)."""
    started = time.monotonic()
    rows = list(_labeled_images(project.id).order_by("id").values_list(*HEALTH_COLUMNS))
    positions, prints, features, model_name = _health_read(rows)
    readable = [rows[n] for n in positions]
    ids = np.array([row[0] for row in readable], np.int64)
    seconds = round(time.monotonic() - started, 3)
    return HealthRead(readable, ids, len(rows) - len(readable), prints, features, model_name, seconds)


def health_check(
    project: Project, read: HealthRead, audited_ids: np.ndarray, result: confident.Audit | None
) -> HealthCheck:
    """Duplicates, conflicts, leaks, unusable images and the map over all of the project's labeled
    images, from their stored files (`read`). `audited_ids` and `result` are this run's label audit,
    whose suggestions the final labels compared within a group take. The neighbour searches are
    chunked (audit/health.py), so nothing grows with n x n.
    """
    seconds: dict[str, float] = {"read": read.seconds}
    readable, ids, prints, features = read.rows, read.ids, read.prints, read.features
    started = time.monotonic()
    finals = _final_labels(project, readable, audited_ids, result)
    assessed = health.assess(
        prints,
        [[row[5] for row in readable], finals],
        [row[1] for row in readable],
        no_face=np.array([row[4] == Image.FacePath.WHOLE for row in readable], bool),
        features=features,
        predicted=np.array([EMOTIONS.index(row[7]) if row[7] else -1 for row in readable], np.int64),
    )
    seconds["check"] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    points = health.dataset_map(features) if features is not None else None
    seconds["map"] = round(time.monotonic() - started, 3)
    summary = {
        "images": len(ids),
        "unreadable": read.unreadable,
        "model_version": read.model_name,
        **assessed.figures(),
        "seconds": seconds,
    }
    return HealthCheck(_health_rows(ids, assessed, points), summary)


def _health_rows(ids: np.ndarray, assessed: health.Assessment, points) -> list[tuple]:
    """HEALTH_FIELDS' values and the id, for the images with something to write."""
    groups, reasons = assessed.groups, assessed.reasons
    numbers = health.group_numbers(groups, ids)
    out = []
    for n, image_id in enumerate(ids.tolist()):
        g = int(groups.group[n])
        if g < 0 and not reasons[n] and points is None:
            continue
        x, y = (None, None) if points is None else (round(float(v), 5) for v in points[n])
        if g < 0:
            group = (None, "", False, False)
        else:
            kind = Image.DuplicateKind.EXACT if groups.exact[g] else Image.DuplicateKind.NEAR
            group = (int(numbers[n]), kind, bool(assessed.conflicting[g]), bool(assessed.cross_batch[g]))
        out.append((*group, reasons[n], x, y, image_id))
    return out


def _health_read(rows: list[tuple]) -> tuple[list[int], list, np.ndarray | None, str]:
    """Each stored file decoded once: (positions of the readable rows, their fingerprints, the
    active model's penultimate features of the face each labeling used, the model's name). A file
    that cannot be read is left out, and counted."""
    version = active_model_version()
    model = load_model_version(version) if version is not None else None
    extract = feature_extractor(model.keras_model, len(EMOTIONS))[0] if model is not None else None
    positions, prints, features = [], [], []
    for start in range(0, len(rows), FEATURE_CHUNK):
        faces = []
        for position, row in enumerate(rows[start : start + FEATURE_CHUNK], start):
            try:
                picture = stored_face(row[2])
            except (OSError, ValueError, SyntaxError):
                logger.warning("health check: image %s (%s) cannot be read", row[0], row[2])
                continue
            positions.append(position)
            prints.append(health.fingerprint(picture))
            if model is not None:
                faces.append(_face_of(picture, row[3], model.grayscale))
        if faces:
            features.append(extract(model.preprocess(faces)).astype(np.float32))
    stacked = np.concatenate(features) if features else None
    return positions, prints, stacked, version.name if version is not None else ""


def _final_labels(project: Project, rows: list[tuple], audited_ids: np.ndarray, result) -> list[str]:
    """Each image's final label as it will be once this run's suggestions are written."""
    suggestions: dict[int, tuple[str, bool]] = {}
    if result is not None:
        for image_id, suggested, sure in zip(audited_ids, result.suggested, result.confident, strict=True):
            if suggested >= 0:
                suggestions[int(image_id)] = (EMOTIONS[suggested], bool(sure))
    finals = []
    for image_id, _batch, _file, _box, _path, original, reviewed, predicted, unsure in rows:
        suggested, sure = suggestions.get(image_id, ("", False))
        finals.append(
            final_label_under(
                project.label_policy,
                reviewed=reviewed,
                original=original,
                predicted=predicted,
                suggested=suggested,
                confident=sure,
                unsure=bool(unsure),
            )
        )
    return finals


def _write_health(project_id: int, checked: HealthCheck) -> None:
    """Inside _store's transaction: every image's fields cleared, then this run's written, so an
    image no longer in a group (its copy deleted) loses its group."""
    Image.objects.filter(project=project_id).update(
        duplicate_group=None,
        duplicate_kind="",
        duplicate_conflicting=False,
        duplicate_cross_batch=False,
        unusable_reason="",
        map_x=None,
        map_y=None,
    )
    rows_update(Image, HEALTH_FIELDS, ["id"], checked.rows)
