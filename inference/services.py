"""The model at work: claiming images, labeling them in chunks, recovering labeling that a dead
worker or a lost message left behind, predicting single images, registering model versions.

Every step claims its rows atomically (a token plus a timestamp), so a repeated task, a second
worker or a recovery sweep never labels an image twice.
"""

import hashlib
import io
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import DatabaseError, InterfaceError, transaction
from django.db.models import F, Q
from django.utils import timezone
from PIL import Image as PILImage

from facelabel.claims import ClaimHeartbeat, claimable, job_claim, on_fresh_connection
from facelabel.errors import ServiceError
from facelabel.rows import rows_update
from projects import events
from projects.decoding import Rejection, decode_image
from projects.models import EMOTIONS, Batch, Image

from .engine import INT8_TOLERANCE, EmotionModel, _local_file, load_model_version
from .faces import find_face, stored_face
from .models import ModelVersion
from .selectors import active_model_version
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


@dataclass
class Claim:
    token: uuid.UUID
    images: list[Image]


def images_claim(batch_id: int, limit: int, *, retries: bool) -> Claim:
    """Claim up to `limit` images of the batch for this worker.

    Fresh images are claimed in chunks; images already tried once (their worker died or the
    model raised) are claimed one at a time so a poison image can only take itself down.
    """
    stale_before = timezone.now() - timedelta(seconds=settings.LABEL_CLAIM_TIMEOUT)
    _fail_exhausted(batch_id, stale_before)
    waiting = {"waiting": Image.Status.PENDING, "running": Image.Status.PROCESSING}
    candidates = Image.objects.filter(claimable(**waiting, stale_before=stale_before), batch_id=batch_id)
    candidates = candidates.filter(attempts__gt=0) if retries else candidates.filter(attempts=0)
    ids = list(candidates.order_by("id").values_list("id", flat=True)[:limit])
    token = uuid.uuid4()
    if ids:
        job_claim(
            Image.objects.filter(id__in=ids),
            **waiting,
            stale_after=settings.LABEL_CLAIM_TIMEOUT,
            claim_token=token,
            attempts=F("attempts") + 1,
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
            events.batch_finished.send(sender=Batch, batch_id=batch_id)
    return True


def faces_read(images: list[Image]) -> list:
    """Each image's face (inference.faces.Face), or the error that kept it from being read."""
    faces = []
    for image in images:
        try:
            faces.append(find_face(stored_face(image.file.name)))
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
    """
    attnames = [Image._meta.get_field(name).attname for name in LABEL_FIELDS]
    rows = [
        (
            *(getattr(image, attname) for attname in attnames),
            int(image.status == Image.Status.LABELED),
            image.id,
            token,
        )
        for image in images
    ]
    also = "claim_token = NULL, times_labeled = times_labeled + %s"
    rows_update(Image, LABEL_FIELDS, ["id", "claim_token"], rows, also=also)
    if images:
        events.images_changed(images[0].project_id)  # a claim holds one batch's images


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


# Recovery -----------------------------------------------------------------------------------


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
    for project_id in set(Batch.objects.filter(id__in=batch_ids).values_list("project_id", flat=True)):
        events.images_changed(project_id)
    Batch.objects.filter(id__in=batch_ids).exclude(status=Batch.Status.UPLOADING).update(
        status=Batch.Status.LABELING, heartbeat_at=None, finished_at=None
    )
    return count


def batches_stalled() -> list[int]:
    """Batches that nobody labels although someone should: their message was lost (broker down
    at upload, worker killed) or their worker died mid-way."""
    return list(_batches_stalled(timezone.now()).values_list("id", flat=True))


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


class NoActiveModel(ServiceError):
    status_code = 503


def image_predict(name: str, data: bytes) -> Prediction:
    """One image in, its emotion out, through the same checks, face finding and model as batch
    labeling. Raises ValueError with the upload's rejection reason for a bad file."""
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


# Model versions ------------------------------------------------------------------------------


def model_version_register(
    name: str, file: File, *, load_from: Path | None = None, int8: Path | None = None, **fields
) -> tuple[ModelVersion, bool]:
    """The model version called `name`: registered now from `file` (True), or the one registered
    before (False), which must be the same model, since a version's labels must stay
    explainable and a name is never reused for another model. `fields` are the model's settings
    (input_size, grayscale, preprocessing, class_order), and may add metrics and notes.

    `load_from`, a local copy of the file, is loaded once with those settings first: that proves
    they fit together, and leaves the converted fast model in MODEL_CACHE_DIR so that workers
    start without converting. Raises ValidationError when the file does not fit its settings or
    the name belongs to another model.

    `int8`, the model's int8 LiteRT file (`quantize_model`), is checked against the model and
    stored with it, also on a version registered before without one."""
    model_settings = {key: fields[key] for key in MODEL_SETTINGS if key in fields}
    version = ModelVersion.objects.filter(name=name).first()
    if version is not None:
        _ensure_same(version, file, model_settings)
        if int8 is not None and not version.int8_file:
            _int8_check(_local_file(version, version.file), int8, model_settings)
            _int8_attach(version, int8)
        return version, False
    if load_from is not None:
        try:
            EmotionModel(load_from, **model_settings)
        except (OSError, ValueError) as exc:
            raise ValidationError(f"{load_from} cannot be used with these settings: {exc}") from exc
        if int8 is not None:
            _int8_check(load_from, int8, model_settings)
    version = ModelVersion(name=name, **fields)
    version.file.save(Path(file.name).name, file, save=False)
    if int8 is not None:
        _int8_attach(version, int8, save=False)
    version.save()
    return version, True


def _int8_check(model_file: Path, int8: Path, model_settings: dict) -> None:
    try:
        model = EmotionModel(model_file, **model_settings, int8_path=int8)
        if model.backend != "litert-int8":
            raise ValueError("LiteRT cannot run it")
        model.check_agreement(model._run, INT8_TOLERANCE)
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{int8} is not an int8 file of this model: {exc}") from exc


def _int8_attach(version: ModelVersion, int8: Path, save: bool = True) -> None:
    with int8.open("rb") as handle:
        version.int8_file.save(int8.name, File(handle), save=save)


MODEL_SETTINGS = ("input_size", "grayscale", "preprocessing", "class_order")


def _ensure_same(version: ModelVersion, file: File, fields: dict) -> None:
    different = [name for name, value in fields.items() if getattr(version, name) != value]
    with version.file.open("rb") as stored:
        if _digest(stored) != _digest(file):
            different.append("file")
    if different:
        raise ValidationError(
            f"A model version named {version.name!r} already exists with a different "
            f"{', '.join(different)}; register this one under a new name."
        )


def _digest(handle) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def model_version_activate(version: ModelVersion) -> None:
    """Make `version` the one that labels new images."""
    # One transaction, deactivating first: the database allows a single active version.
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.is_active = True
