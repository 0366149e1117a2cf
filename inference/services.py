"""The model at work: claiming images, labeling them in chunks, building exports, recovering
work that a dead worker or a lost message left behind.

Every step claims its rows atomically (a token plus a timestamp), so a repeated task, a second
worker or a recovery sweep never labels an image twice or builds an export twice.
"""

import csv
import io
import logging
import shutil
import tempfile
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePath

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, InterfaceError, connection, transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.text import get_valid_filename
from PIL import Image as PILImage

from facelabel.claims import ClaimHeartbeat, on_fresh_connection
from projects.models import Batch, Export, Image, Project, final_label_under
from projects.selectors import images_for_export
from projects.services import upload_close_abandoned

from .models import EMOTIONS, ModelVersion
from .unsure import unsure_reason

logger = logging.getLogger(__name__)

LABEL_FIELDS = [
    "status",
    "predicted_label",
    "confidence",
    "probabilities",
    "model_version",
    "face_box",
    "face_path",
    "unsure_reason",
    "labeled_at",
    "error",
]


def active_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


@dataclass
class Claim:
    token: uuid.UUID
    images: list[Image]


def _claimable(stale_before) -> Q:
    return Q(status=Image.Status.PENDING) | Q(status=Image.Status.PROCESSING, claimed_at__lt=stale_before)


def images_claim(batch_id: int, limit: int, *, retries: bool) -> Claim:
    """Claim up to `limit` images of the batch for this worker.

    Fresh images are claimed in chunks; images already tried once (their worker died or the
    model raised) are claimed one at a time so a poison image can only take itself down.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.LABEL_CLAIM_TIMEOUT)
    _fail_exhausted(batch_id, stale_before)
    candidates = Image.objects.filter(_claimable(stale_before), batch_id=batch_id)
    candidates = candidates.filter(attempts__gt=0) if retries else candidates.filter(attempts=0)
    ids = list(candidates.order_by("id").values_list("id", flat=True)[:limit])
    token = uuid.uuid4()
    if ids:
        # The WHERE clause is re-checked under the row lock, so of two racing workers only one
        # gets each row; the loser just claims fewer.
        Image.objects.filter(_claimable(stale_before), id__in=ids).update(
            status=Image.Status.PROCESSING, claim_token=token, claimed_at=now, attempts=F("attempts") + 1
        )
    return Claim(token, list(Image.objects.filter(claim_token=token).order_by("id")))


def _fail_exhausted(batch_id: int, stale_before) -> None:
    Image.objects.filter(
        batch_id=batch_id,
        status=Image.Status.PROCESSING,
        claimed_at__lt=stale_before,
        attempts__gte=settings.LABEL_MAX_ATTEMPTS,
    ).update(
        status=Image.Status.FAILED,
        claim_token=None,
        error="The worker stopped while labeling this image on every try.",
    )


def batch_label(batch_id: int, *, time_budget: float | None = None) -> bool:
    """Label the batch's claimable images chunk by chunk. Returns True when work is left over
    (the time budget ran out), so the caller can queue a continuation.

    Memory: two chunks of decoded faces (LABEL_CHUNK_SIZE x input size) at a time, the one
    being labeled and the next.
    """
    if not Batch.objects.filter(id=batch_id).exclude(status=Batch.Status.DONE).exists():
        return False
    version = active_model_version()
    if version is None:
        logger.warning("batch %s waits: no active model version", batch_id)
        return False
    from .engine import load_model_version

    model = load_model_version(version)
    deadline = time.monotonic() + (time_budget or settings.LABEL_TASK_TIME_BUDGET)
    Batch.objects.filter(id=batch_id, started_at=None).update(started_at=timezone.now())
    held = _HeldClaims()
    beat = ClaimHeartbeat(
        lambda: _labeling_beat(batch_id, held), settings.LABEL_CLAIM_TIMEOUT, f"batch-{batch_id}"
    )
    # The next chunk is claimed and its faces read on a thread while the model labels this one:
    # reading and decoding a chunk takes a fifth of the model's time, and would otherwise leave
    # a core idle between two predictions (Pillow and LiteRT both release the GIL).
    with beat, ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces") as reader:
        try:
            claim = _claim_next(batch_id, held)
            reading = reader.submit(faces_read, claim.images)
            while claim.images:
                upcoming = _claim_next(batch_id, held) if time.monotonic() < deadline else None
                upcoming_reading = reader.submit(faces_read, upcoming.images) if upcoming else None
                images_label(claim, reading.result(), version, model)
                held.tokens.discard(claim.token)
                Batch.objects.filter(id=batch_id).update(heartbeat_at=timezone.now())
                if upcoming is None:
                    return True
                claim, reading = upcoming, upcoming_reading
        except (DatabaseError, InterfaceError):
            # Give the chunks back at once (on a new connection) rather than leaving them
            # claimed until their heartbeat goes stale. The images were not at fault, so the
            # try is not counted against them.
            on_fresh_connection(lambda: [claim_release(token) for token in list(held.tokens)])
            raise
    # An unfinished upload queues labeling again with every slice it commits and when it ends,
    # so no worker ever waits here for images that have not arrived.
    batch_finish_if_done(batch_id)
    return False


def _claim_next(batch_id: int, held: "_HeldClaims") -> Claim:
    claim = images_claim(batch_id, settings.LABEL_CHUNK_SIZE, retries=False)
    if not claim.images:
        claim = images_claim(batch_id, 1, retries=True)
    if claim.images:
        held.tokens.add(claim.token)
    return claim


@dataclass
class _HeldClaims:
    tokens: set[uuid.UUID] = field(default_factory=set)


def _labeling_beat(batch_id: int, held: _HeldClaims) -> None:
    now = timezone.now()
    Batch.objects.filter(id=batch_id).update(heartbeat_at=now)
    tokens = list(held.tokens)
    if tokens:
        Image.objects.filter(claim_token__in=tokens).update(claimed_at=now)


def claim_release(token: uuid.UUID) -> int:
    return Image.objects.filter(claim_token=token, status=Image.Status.PROCESSING).update(
        status=Image.Status.PENDING, claim_token=None, attempts=F("attempts") - 1
    )


def batch_finish_if_done(batch_id: int) -> bool:
    open_images = Image.objects.filter(
        batch_id=batch_id, status__in=[Image.Status.PENDING, Image.Status.PROCESSING]
    )
    if open_images.exists():
        return False
    with transaction.atomic():
        finished = Batch.objects.filter(id=batch_id, status=Batch.Status.LABELING).update(
            status=Batch.Status.DONE, finished_at=timezone.now()
        )
        if finished:
            _batch_finished_event(batch_id)
            _audit_if_labeled(batch_id)
    return True


def _audit_if_labeled(batch_id: int) -> None:
    # Original labels (ZIP folders) are what the audit checks; other batches change nothing.
    from audit.services import audit_start

    batch = Batch.objects.select_related("project").get(id=batch_id)
    if batch.images.exclude(original_label="").filter(status=Image.Status.LABELED).exists():
        audit_start(project=batch.project)


def _batch_finished_event(batch_id: int) -> None:
    from webhooks.services import webhook_event

    batch = Batch.objects.get(id=batch_id)
    counts = dict(batch.images.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    payload = {
        "batch": batch.id,
        "status": batch.status,
        "images": batch.image_count,
        "labeled": counts.get(Image.Status.LABELED, 0),
        "failed": counts.get(Image.Status.FAILED, 0),
        "finished_at": batch.finished_at.isoformat(),
    }
    webhook_event(batch.project_id, "batch.finished", payload)


def faces_read(images: list[Image]) -> list:
    """Each image's face (inference.faces.Face), or the error that kept it from being read."""
    faces = []
    for image in images:
        try:
            faces.append(_face_of(image))
        except Exception as exc:  # noqa: BLE001 - any decode failure fails only this image
            faces.append(exc)
    return faces


def images_label(claim: Claim, faces: list, version: ModelVersion, model) -> None:
    """Label a claimed chunk, given faces_read(claim.images)."""
    ready, ready_faces = [], []
    for image, face in zip(claim.images, faces, strict=True):
        if isinstance(face, Exception):
            _mark_failed(image, f"Could not read the image: {face}")
        else:
            ready.append(image)
            ready_faces.append(face)
    now = timezone.now()
    try:
        probabilities = model.predict(model.preprocess(ready_faces)) if ready_faces else []
    except Exception as exc:
        logger.exception("model failed on a chunk of %s images", len(ready))
        _after_model_error(ready, exc)
        probabilities, ready, ready_faces = [], [], []
    for image, face, probs in zip(ready, ready_faces, probabilities, strict=True):
        best = int(probs.argmax())
        image.status = Image.Status.LABELED
        image.predicted_label = EMOTIONS[best]
        image.confidence = float(probs[best])
        image.probabilities = {e: round(float(p), 6) for e, p in zip(EMOTIONS, probs, strict=True)}
        image.model_version = version
        image.face_box = list(face.box)
        image.face_path = face.path
        image.unsure_reason = unsure_reason(face.path, image.confidence)
        image.labeled_at = now
        image.error = ""
    labels_write(claim.token, claim.images)


def labels_write(token: uuid.UUID, images: list[Image]) -> None:
    """Write a chunk's results in one statement executed for many rows, in one transaction.

    Only rows still carrying our token are written: if a slow worker lost its claim to a
    recovery sweep, its late results are dropped instead of labeling the image twice.
    (Django's bulk_update builds a CASE expression per field and row in Python, which cost
    more than the model itself; executemany keeps the write well under the prediction time.)
    """
    if not images:
        return
    fields = [Image._meta.get_field(name) for name in LABEL_FIELDS]
    columns = ", ".join(f"{connection.ops.quote_name(field.column)} = %s" for field in fields)
    table = connection.ops.quote_name(Image._meta.db_table)
    # Only quoted names from the model are formatted in; every value is a parameter.
    sql = f"UPDATE {table} SET {columns}, claim_token = NULL, times_labeled = times_labeled + %s WHERE id = %s AND claim_token = %s"  # noqa: E501, S608
    token_value = Image._meta.get_field("claim_token").get_db_prep_value(token, connection)
    rows = [
        (
            *(field.get_db_prep_save(getattr(image, field.attname), connection) for field in fields),
            int(image.status == Image.Status.LABELED),
            image.id,
            token_value,
        )
        for image in images
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _face_of(image: Image):
    from .faces import find_face

    with default_storage.open(image.file.name, "rb") as handle:
        picture = PILImage.open(handle)
        picture.load()
    if picture.mode not in ("L", "RGB"):
        picture = picture.convert("RGB")
    return find_face(picture)


def _mark_failed(image: Image, error: str) -> None:
    image.status = Image.Status.FAILED
    image.error = error[:2000]


def _after_model_error(images: list[Image], exc: Exception) -> None:
    """Give each image of a failed chunk back for single retries, or fail it when out of tries."""
    for image in images:
        if image.attempts >= settings.LABEL_MAX_ATTEMPTS:
            _mark_failed(image, f"The model failed on this image {image.attempts} times: {exc}")
        else:
            image.status = Image.Status.PENDING
            image.error = f"The model failed (try {image.attempts}): {exc}"[:2000]


# Exports ------------------------------------------------------------------------------------

MANIFEST_COLUMNS = [
    "file",
    "original_name",
    "original_label",
    "predicted_label",
    "confidence",
    "final_label",
    "reviewed_by",
    "status",
    "label_quality",
    "likely_mislabeled",
    "suggested_label",
    "unsure_reason",
]


def export_build(export_id: int) -> bool:
    """Write the project's ZIP to a temporary file, then store it under its final name.

    Memory stays flat: rows stream from the database, files stream through the ZIP writer.
    """
    claim = _export_claim(export_id)
    if claim is None:
        return False
    export, token = claim

    def beat() -> None:
        Export.objects.filter(id=export.id, claim_token=token).update(claimed_at=timezone.now())

    try:
        with (
            ClaimHeartbeat(beat, settings.EXPORT_CLAIM_TIMEOUT, f"export-{export.id}"),
            tempfile.TemporaryFile(suffix=".zip") as archive,
        ):
            count = _write_export_zip(export.project, archive)
            archive.seek(0)
            name = default_storage.save(
                f"exports/{export.project_id}/export-{export.id}-{token.hex[:8]}.zip", File(archive)
            )
    except Exception as exc:
        error = exc
        on_fresh_connection(lambda: _export_failed(export, token, error))
        raise
    with transaction.atomic():
        finished = Export.objects.filter(id=export.id, claim_token=token).update(
            status=Export.Status.READY, file=name, image_count=count, finished_at=timezone.now(), error=""
        )
        if finished:
            _export_ready_event(export, count)
    if not finished:
        default_storage.delete(name)
    return bool(finished)


def _export_ready_event(export: Export, count: int) -> None:
    from webhooks.services import webhook_event

    path = reverse("projects:export_download", args=[export.project_id, export.id])
    payload = {"export": export.id, "images": count, "download": settings.SITE_URL.rstrip("/") + path}
    webhook_event(export.project_id, "export.ready", payload)


def _export_claim(export_id: int) -> tuple[Export, uuid.UUID] | None:
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.EXPORT_CLAIM_TIMEOUT)
    token = uuid.uuid4()
    claimed = Export.objects.filter(
        Q(status=Export.Status.PENDING) | Q(status=Export.Status.RUNNING, claimed_at__lt=stale_before),
        id=export_id,
        attempts__lt=settings.EXPORT_MAX_ATTEMPTS,
    ).update(status=Export.Status.RUNNING, claim_token=token, claimed_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return None
    return Export.objects.select_related("project").get(id=export_id), token


def _export_failed(export: Export, token: uuid.UUID, exc: Exception) -> None:
    status = (
        Export.Status.FAILED if export.attempts >= settings.EXPORT_MAX_ATTEMPTS else Export.Status.PENDING
    )
    Export.objects.filter(id=export.id, claim_token=token).update(status=status, error=str(exc)[:2000])


SNAPSHOT_COLUMNS = ["stored", *MANIFEST_COLUMNS]


def _write_export_zip(project: Project, archive) -> int:
    """The rows are read from the database once, into a temporary file, and both the manifest
    and the images are written from that one snapshot: reviewers relabeling while the ZIP is
    built change neither, so every manifest row names a file of the ZIP. (Two reads, one per
    pass, disagreed on every image relabeled in between.) Memory stays flat either way."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as snapshot:
        writer = csv.DictWriter(snapshot, SNAPSHOT_COLUMNS, extrasaction="ignore")
        count = 0
        for row in export_rows(project):
            writer.writerow(row)
            count += 1
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("manifest.csv", "w", force_zip64=True) as raw:
                manifest = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                writer = csv.writer(manifest)
                writer.writerow(MANIFEST_COLUMNS)
                for row in _snapshot_rows(snapshot):
                    writer.writerow([csv_safe(row[column]) for column in MANIFEST_COLUMNS])
                manifest.flush()
                manifest.detach()
            for row in _snapshot_rows(snapshot):
                with (
                    default_storage.open(row["stored"], "rb") as src,
                    zf.open(row["file"], "w", force_zip64=True) as dst,
                ):
                    shutil.copyfileobj(src, dst, 1024 * 1024)
    return count


def _snapshot_rows(snapshot):
    snapshot.seek(0)
    yield from csv.DictReader(snapshot, SNAPSHOT_COLUMNS)


def export_rows(project: Project):
    """One manifest row per image, with its path inside the ZIP: `<final label>/<name>.jpg`,
    `unsure/` for images without one whose model label is not trusted (no face found, too low a
    confidence: `unsure_reason` says which), or `unlabeled/` for images the model has not
    labeled (failed or still waiting)."""
    used: set[str] = set()
    for image in images_for_export(project).iterator(chunk_size=2000):
        final = final_label_under(
            project.label_policy,
            reviewed=image["reviewed_label"],
            original=image["original_label"],
            predicted=image["predicted_label"],
            suggested=image["suggested_label"],
            confident=image["suggestion_confident"],
            unsure=bool(image["unsure_reason"]),
        )
        folder = final or ("unsure" if image["unsure_reason"] else "unlabeled")
        stem = get_valid_filename(PurePath(image["original_name"]).stem)[:100] or "image"
        path = f"{folder}/{stem}.jpg"
        if path in used:
            path = f"{folder}/{stem}-{image['id']}.jpg"
        used.add(path)
        confidence, quality = image["confidence"], image["label_quality"]
        yield {
            "file": path,
            "stored": image["file"],
            "original_name": image["original_name"],
            "original_label": image["original_label"],
            "predicted_label": image["predicted_label"],
            "confidence": "" if confidence is None else f"{confidence:.4f}",
            "final_label": final,
            "reviewed_by": image["reviewed_by__username"] or "",
            "status": image["status"],
            "label_quality": "" if quality is None else f"{quality:.4f}",
            "likely_mislabeled": "yes" if image["likely_mislabeled"] else "",
            "suggested_label": image["suggested_label"],
            "unsure_reason": image["unsure_reason"],
        }


def csv_safe(value) -> str:
    """Neutralise cells a spreadsheet would run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    if text and text[0] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


# Recovery -----------------------------------------------------------------------------------


def uploads_close_abandoned() -> int:
    """Uploads whose request died mid-way (server restarted, client gone): keep the images that
    were stored, say what happened, and let them be labeled."""
    quiet_since = timezone.now() - timedelta(seconds=settings.UPLOAD_HEARTBEAT_TIMEOUT)
    batch_ids = Batch.objects.filter(status=Batch.Status.UPLOADING, heartbeat_at__lt=quiet_since)
    return sum(upload_close_abandoned(batch_id) for batch_id in batch_ids.values_list("id", flat=True))


def batches_reopen_waiting() -> int:
    """Finished batches that hold waiting images again (added later, or reset by an admin) go
    back to labeling, with a quiet heartbeat so the sweep queues them at once."""
    batch_ids = set(
        Image.objects.filter(status=Image.Status.PENDING, batch__status=Batch.Status.DONE).values_list(
            "batch_id", flat=True
        )
    )
    return Batch.objects.filter(id__in=batch_ids, status=Batch.Status.DONE).update(
        status=Batch.Status.LABELING, heartbeat_at=None, finished_at=None
    )


def images_mark_outdated() -> int:
    """In projects that opted in, send images labeled by an older model version back to the
    queue. Their old label stays visible until the new one is written; reviewed images are left
    alone (the reviewer's label is final). Repeating this is harmless: relabeled images carry
    the active version and no longer match."""
    version = active_model_version()
    if version is None:
        return 0
    outdated = Image.objects.filter(
        project__relabel_on_new_model=True, status=Image.Status.LABELED, reviewed_label=""
    ).exclude(model_version=version)
    batch_ids = set(outdated.values_list("batch_id", flat=True))
    count = outdated.update(status=Image.Status.PENDING)
    Batch.objects.filter(id__in=batch_ids).exclude(status=Batch.Status.UPLOADING).update(
        status=Batch.Status.LABELING, heartbeat_at=None, finished_at=None
    )
    return count


def stalled_work() -> tuple[list[int], list[int]]:
    """Batches and exports that nobody is working on although they should be: their message
    was lost (broker down at upload, worker killed) or their worker died mid-way."""
    now = timezone.now()
    batch_ids = list(_batches_stalled(now).values_list("id", flat=True))
    export_stale = now - timedelta(seconds=settings.EXPORT_CLAIM_TIMEOUT)
    running_stale = Q(status=Export.Status.RUNNING, claimed_at__lt=export_stale)
    Export.objects.filter(running_stale, attempts__gte=settings.EXPORT_MAX_ATTEMPTS).update(
        status=Export.Status.FAILED, error="The worker stopped while building this export on every try."
    )
    export_ids = list(
        Export.objects.filter(Q(status=Export.Status.PENDING, created_at__lt=export_stale) | running_stale)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return batch_ids, export_ids


def _batches_stalled(now):
    """Batches to labeling whose heartbeat went quiet, and batches holding an image whose claim
    went stale: claims beat while their worker lives, so a stale one lost its worker."""
    quiet_since = now - timedelta(seconds=settings.LABEL_CLAIM_TIMEOUT)
    stale_claims = Image.objects.filter(status=Image.Status.PROCESSING, claimed_at__lt=quiet_since)
    quiet = Q(status=Batch.Status.LABELING) & (Q(heartbeat_at__lt=quiet_since) | Q(heartbeat_at=None))
    return Batch.objects.filter(quiet | Q(id__in=stale_claims.values("batch_id"))).exclude(
        status=Batch.Status.DONE
    )


def batch_touch(batch_id: int) -> bool:
    """Mark the batch as just queued; False if another sweep did so a moment ago."""
    now = timezone.now()
    return bool(_batches_stalled(now).filter(id=batch_id).update(heartbeat_at=now))


# Single images --------------------------------------------------------------------------------


@dataclass
class Prediction:
    emotion: str
    confidence: float
    probabilities: dict[str, float]
    face_box: list[int]
    face_path: str
    unsure_reason: str  # "" when the emotion can be trusted, else no_face or low_confidence
    model_version: str


class NoActiveModel(Exception):
    pass


def image_predict(name: str, data: bytes) -> Prediction:
    """One image in, its emotion out, through the same checks, face finding and model as batch
    labeling. Raises ValueError with the upload's rejection reason for a bad file."""
    from projects.imports import Rejection, decode_image

    from .engine import load_model_version
    from .faces import find_face

    decoded = decode_image(name, data)
    if isinstance(decoded, Rejection):
        raise ValueError(decoded.reason)
    version = active_model_version()
    if version is None:
        raise NoActiveModel("No model version is active.")
    model = load_model_version(version)
    face = find_face(PILImage.open(io.BytesIO(decoded.content)))
    probs = model.predict(model.preprocess([face]))[0]
    best = int(probs.argmax())
    return Prediction(
        emotion=EMOTIONS[best],
        confidence=float(probs[best]),
        probabilities={e: round(float(p), 6) for e, p in zip(EMOTIONS, probs, strict=True)},
        face_box=list(face.box),
        face_path=face.path,
        unsure_reason=unsure_reason(face.path, float(probs[best])),
        model_version=version.name,
    )
