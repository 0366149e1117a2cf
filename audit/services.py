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
from projects.models import EMOTIONS, Batch, Image, Project

from . import confident
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
    if not _audited_images(project).exists():
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


def _audited_images(project_or_id):
    return Image.objects.filter(project=project_or_id, status=Image.Status.LABELED).exclude(original_label="")


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
            ids, result, summary = _compute(run)
            return _store(run, token, ids, result, summary)
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


def _compute(run: AuditRun) -> tuple[np.ndarray, confident.Audit, dict]:
    rows = list(
        _audited_images(run.project_id)
        .exclude(probabilities=None)
        .order_by("id")
        .values_list("id", "original_label", "probabilities", "file", "face_box")
    )
    if not rows:
        raise AuditRefused("No labeled image of this project has an original label to check.")
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    labels = np.array([EMOTIONS.index(row[1]) for row in rows], dtype=np.int64)
    timings: dict[str, float] = {}
    extra: dict = {}
    if run.kind == AuditRun.Kind.CROSS_VALIDATED:
        probs = _cross_validated(rows, labels, timings, extra)
    else:
        probs = np.array([[row[2].get(e, 0.0) for e in EMOTIONS] for row in rows], dtype=np.float64)
    started = time.monotonic()
    result = confident.audit(labels, probs)
    timings["confident_learning"] = round(time.monotonic() - started, 3)
    return ids, result, audit_summary(labels, result) | extra | {"seconds": timings}


def _cross_validated(rows, labels: np.ndarray, timings: dict, extra: dict) -> np.ndarray:
    present = np.bincount(labels, minlength=len(EMOTIONS))
    if (present >= 2).sum() < 2:
        raise AuditRefused("A cross-validated audit needs two or more classes with two or more images each.")
    version = active_model_version()
    if version is None:
        raise AuditRefused("A cross-validated audit needs an active model version.")
    model = load_model_version(version)
    started = time.monotonic()
    extract, layer = feature_extractor(model.keras_model, len(EMOTIONS))
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
    picture = stored_face(name, box, "L" if grayscale else "RGB")
    picture.thumbnail((FACE_MAX_SIDE, FACE_MAX_SIDE))
    return Face(np.asarray(picture), tuple(box or (0, 0, *picture.size)), "whole")


def audit_summary(labels: np.ndarray, result: confident.Audit) -> dict:
    counts = np.bincount(labels, minlength=len(EMOTIONS))
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


def _store(run: AuditRun, token: uuid.UUID, ids: np.ndarray, result: confident.Audit, summary: dict) -> bool:
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
        _write_verdicts(ids, result)
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
