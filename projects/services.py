"""Writes: projects and members, batches from uploads, review labels, exports."""

import logging
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from itertools import islice
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from facelabel.claims import ClaimHeartbeat
from facelabel.errors import ServiceError
from facelabel.rows import rows_insert

from . import events, selectors
from .decoding import ImportedImage, Rejection, iter_upload
from .models import (
    EMOTIONS,
    ROLE_RANK,
    Batch,
    Export,
    Image,
    LabelChange,
    LabelPolicy,
    Membership,
    Project,
    Role,
)

logger = logging.getLogger(__name__)

# Rows are inserted in slices so a 30,000-image ZIP never holds every row in memory.
INSERT_SLICE = 500
STORAGE_THREADS = 2


def project_create(*, user, name: str, description: str = "") -> Project:
    name = name.strip()
    if not name:
        raise ValidationError(_("A project needs a name."))
    with transaction.atomic():
        project = Project.objects.create(name=name[:200], description=description, created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.OWNER)
    return project


def project_update(*, project: Project, user=None, **fields) -> Project:
    """Change name, description, relabel_on_new_model or label_policy (`user` is the one who does)."""
    if "label_policy" in fields:
        if fields["label_policy"] not in LabelPolicy.values:
            raise ValidationError(_("Unknown label policy %(policy)r.") % {"policy": fields["label_policy"]})
        # Only a change counts as an owner's choice: re-saving the form keeps the project on the
        # measured default, and the project page keeps saying so.
        if fields["label_policy"] != project.label_policy:
            fields.update(label_policy_chosen_at=timezone.now(), label_policy_chosen_by=user)
    if "name" in fields:
        fields["name"] = fields["name"].strip()[:200]
        if not fields["name"]:
            raise ValidationError(_("A project needs a name."))
    for name, value in fields.items():
        setattr(project, name, value)
    if fields:
        project.save(update_fields=list(fields))
    return project


def project_delete(*, project: Project) -> None:
    """Delete the project, its batches, images and exports, and their files once that commits."""
    images = Image.objects.filter(project=project)
    names = [name for pair in images.values_list("file", "thumbnail") for name in pair if name]
    names += [name for name in Export.objects.filter(project=project).values_list("file", flat=True) if name]
    with transaction.atomic():
        project.delete()
        transaction.on_commit(lambda: _delete_files(names), robust=True)


def member_set(*, project: Project, username: str, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError(_("Unknown role %(role)r.") % {"role": role})
    user = get_user_model().objects.filter(username=username.strip(), is_active=True).first()
    if user is None:
        raise ValidationError(
            _("There is no user called “%(name)s”. An admin adds team members.") % {"name": username.strip()}
        )
    with transaction.atomic():
        membership, _created = Membership.objects.select_for_update().get_or_create(
            project=project, user=user, defaults={"role": role}
        )
        if membership.role != role:
            _refuse_last_owner_change(membership, role)
            membership.role = role
            membership.save(update_fields=["role"])
    return membership


def member_remove(*, project: Project, user_id: int) -> None:
    with transaction.atomic():
        membership = Membership.objects.select_for_update().filter(project=project, user_id=user_id).first()
        if membership is None:
            raise ValidationError(_("That user is not a member of this project."))
        _refuse_last_owner_change(membership, None)
        membership.delete()


def _refuse_last_owner_change(membership: Membership, new_role: str | None) -> None:
    # A project without an owner could never be managed again.
    if membership.role == Role.OWNER and new_role != Role.OWNER:
        owners = Membership.objects.filter(project=membership.project, role=Role.OWNER).count()
        if owners <= 1:
            raise ValidationError(_("A project keeps at least one owner."))


class UploadInProgress(ServiceError):
    """The same upload token is being imported by a request that is still alive (or died less
    than UPLOAD_HEARTBEAT_TIMEOUT ago): nothing was imported, send it again in a moment."""

    status_code = 409

    def __init__(self, batch: Batch, stored: int):
        self.batch = batch
        self.stored = stored
        seconds = settings.UPLOAD_HEARTBEAT_TIMEOUT
        super().__init__(
            f"This upload is still being imported ({stored} images stored so far), or its request "
            f"stopped less than {seconds} s ago. Send it again in a moment to import the rest."
        )

    def body(self) -> dict:
        return {"detail": str(self), "batch": self.batch.id, "images": self.stored}


def batch_create(*, project: Project, user, files: Iterable, upload_token: uuid.UUID | None = None) -> Batch:
    """Store every valid image of the upload in a new batch, labeling it while it streams in.

    Images are committed in slices, each of which queues labeling, so a large ZIP is labeled in
    about the time it takes to import it. The same upload token sent again (a double-click, a
    retry after a crash) never makes a second batch: once the upload is complete it returns the
    batch; if it broke off, the images stored are skipped and the rest imported; while its first
    request still imports, UploadInProgress is raised. The filling request beats, so one that
    died is known within UPLOAD_HEARTBEAT_TIMEOUT.
    """
    upload_token = upload_token or uuid.uuid4()
    try:
        with transaction.atomic():
            batch = Batch.objects.create(
                project=project,
                uploaded_by=user,
                upload_token=upload_token,
                status=Batch.Status.UPLOADING,
                heartbeat_at=timezone.now(),
            )
    except IntegrityError:
        batch = Batch.objects.get(project=project, upload_token=upload_token)
        if batch.uploaded_at is not None:
            return batch
        if not _upload_resume_claim(batch):
            raise UploadInProgress(batch, batch.images.count()) from None
        batch.refresh_from_db()
    filler = _BatchFiller(batch)
    with ClaimHeartbeat(filler.beat, settings.UPLOAD_HEARTBEAT_TIMEOUT, f"upload-{batch.id}"):
        try:
            filler.fill(iter_upload(files, skip=_stored_names(batch)))
        except BaseException as exc:
            filler.reject("(upload)", f"the upload broke off: {exc}"[:500])
            filler.close(complete=False)
            raise
    filler.close(complete=True)
    return batch


def _upload_resume_claim(batch: Batch) -> bool:
    """Take over an upload that broke off; of two retries at once only one gets it."""
    now = timezone.now()
    quiet_since = now - timedelta(seconds=settings.UPLOAD_HEARTBEAT_TIMEOUT)
    alive = Q(status=Batch.Status.UPLOADING, heartbeat_at__gte=quiet_since)
    return bool(
        Batch.objects.filter(id=batch.id, uploaded_at=None)
        .exclude(alive)
        .update(status=Batch.Status.UPLOADING, heartbeat_at=now, finished_at=None)
    )


def _stored_names(batch: Batch) -> Callable[[str], bool]:
    """Skip, for each name, as many files as the batch already stored under it (a ZIP may hold
    a name twice), so a resumed upload imports exactly what is missing."""
    left = Counter(batch.images.values_list("original_name", flat=True))

    def skip(name: str) -> bool:
        if left[name[:255]] > 0:
            left[name[:255]] -= 1
            return True
        return False

    return skip


def uploads_close_abandoned() -> int:
    """Uploads whose request died mid-way (server restarted, client gone): keep the images that
    were stored, say what happened, and let them be labeled."""
    quiet_since = timezone.now() - timedelta(seconds=settings.UPLOAD_HEARTBEAT_TIMEOUT)
    batch_ids = Batch.objects.filter(status=Batch.Status.UPLOADING, heartbeat_at__lt=quiet_since)
    return sum(upload_close_abandoned(batch_id) for batch_id in batch_ids.values_list("id", flat=True))


def upload_close_abandoned(batch_id: int) -> int:
    """An upload whose request died (server killed, client gone): keep the images it stored,
    say that it is incomplete, and let them be labeled. The same upload sent again resumes it."""
    quiet_since = timezone.now() - timedelta(seconds=settings.UPLOAD_HEARTBEAT_TIMEOUT)
    batch = Batch.objects.filter(id=batch_id, status=Batch.Status.UPLOADING).first()
    if batch is None:
        return 0
    stored = batch.images.count()
    note = {
        "name": "(upload)",
        "reason": f"the upload stopped before the end, after {stored} images; they are kept, "
        "and sending the same upload again imports the rest",
    }
    closed = Batch.objects.filter(id=batch_id, status=Batch.Status.UPLOADING, heartbeat_at__lt=quiet_since)
    if not closed.update(
        status=Batch.Status.LABELING,
        image_count=stored,
        rejected=[note, *batch.rejected][: settings.UPLOAD_REJECTIONS_KEPT],
        rejected_count=F("rejected_count") + 1,
    ):
        return 0
    transaction.on_commit(lambda: _queue_labeling(batch_id), robust=True)
    return 1


class _BatchFiller:
    """Writes images to storage on a few threads (storage is I/O: local disks and S3 both wait
    far more than they compute) and commits their rows a slice at a time."""

    def __init__(self, batch: Batch):
        self.batch = batch
        # A resumed upload keeps the notes on images it stored before; rejections come again.
        self.rejected: list[dict] = [entry for entry in batch.rejected if entry.get("imported")]
        self.rejected_count = len(self.rejected)
        self.pool = ThreadPoolExecutor(max_workers=STORAGE_THREADS, thread_name_prefix="store")

    def beat(self) -> None:
        uploading = Batch.objects.filter(id=self.batch.id, status=Batch.Status.UPLOADING)
        uploading.update(heartbeat_at=timezone.now())

    def reject(self, name: str, reason: str, **extra) -> None:
        self.rejected_count += 1
        if len(self.rejected) < settings.UPLOAD_REJECTIONS_KEPT:
            self.rejected.append({"name": name, "reason": reason, **extra})

    def fill(self, items: Iterable) -> None:
        pending: list[tuple[ImportedImage, Future]] = []
        try:
            for item in items:
                if isinstance(item, Rejection):
                    self.reject(item.name, item.reason)
                    continue
                if item.note:
                    self.reject(item.name, item.note, imported=True)
                pending.append((item, self.pool.submit(_store_image, self.batch.project_id, item)))
                if len(pending) >= INSERT_SLICE:
                    self._commit(pending)
                    pending = []
        except BaseException:
            # Files of the slice that never got its rows would be orphans.
            for _, future in pending:
                if not future.exception():
                    _delete_files([name for name in future.result() if name])
            raise
        self._commit(pending)

    def _commit(self, pending: list[tuple[ImportedImage, Future]]) -> None:
        stored, error = [], None
        for item, future in pending:
            try:
                stored.append((item, future.result()))
            except Exception as exc:  # noqa: BLE001 - raised below, once the others are cleaned up
                error = error or exc
        try:
            if error is not None:
                raise error
            with transaction.atomic():
                rows_insert(Image, [_image_row(self.batch, item, *names) for item, names in stored])
                Batch.objects.filter(id=self.batch.id).update(heartbeat_at=timezone.now())
                events.images_changed(self.batch.project_id)
                # Labeling starts on each slice as it commits: it never waits for the rest.
                transaction.on_commit(lambda: _queue_labeling(self.batch.id), robust=True)
        except BaseException:
            _delete_files([name for _, names in stored for name in names if name])
            raise

    def close(self, *, complete: bool) -> None:
        self.pool.shutdown(wait=True)
        now = timezone.now()
        count = self.batch.images.count()  # a resumed upload's earlier images included
        done = count == 0
        Batch.objects.filter(id=self.batch.id).update(
            image_count=count,
            rejected=self.rejected,
            rejected_count=self.rejected_count,
            status=Batch.Status.DONE if done else Batch.Status.LABELING,
            finished_at=now if done else None,
            heartbeat_at=now,
            uploaded_at=now if complete else None,
        )
        self.batch.refresh_from_db()
        if not done:
            # Labeling that found nothing more to do while the upload went on finishes the batch
            # only when queued again after it ends.
            transaction.on_commit(lambda: _queue_labeling(self.batch.id), robust=True)


def _store_image(project_id: int, item: ImportedImage) -> tuple[str, str]:
    # Generated names: the user's file name never becomes a path. Fanned out over 256 folders,
    # because creating files slows down in folders of many thousand files.
    stem = uuid.uuid4().hex
    name = default_storage.save(f"images/{project_id}/{stem[:2]}/{stem}.jpg", ContentFile(item.content))
    thumbnail = ""
    if item.thumbnail:
        thumbnail = default_storage.save(
            f"thumbnails/{project_id}/{stem[:2]}/{stem}.jpg", ContentFile(item.thumbnail)
        )
    return name, thumbnail


def _image_row(batch: Batch, item: ImportedImage, file_name: str, thumbnail: str) -> Image:
    return Image(
        project_id=batch.project_id,
        batch=batch,
        file=file_name,
        thumbnail=thumbnail,
        original_name=item.name[:255],
        original_label=item.original_label,
        width=item.width,
        height=item.height,
    )


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not remove %s after a failed upload", name)


# Leftovers ------------------------------------------------------------------------------------

SWEPT_FOLDERS = ("images", "thumbnails", "exports")
SWEEP_CHUNK = 1000
# Django names the temporary file of each large uploaded file tmpXXXXXXXX.upload<.ext>.
UPLOAD_TEMP_PATTERN = "tmp*.upload*"


def files_sweep() -> tuple[int, int]:
    """Remove stored files that no row refers to (a web process killed between storing a
    slice's files and committing its rows, a disk that filled up mid-slice) and the upload temp
    files of requests that were killed, all older than ORPHAN_FILE_GRACE: younger ones may
    belong to an upload still under way. Returns (orphans, temp files) removed."""
    cutoff = timezone.now() - timedelta(seconds=settings.ORPHAN_FILE_GRACE)
    orphans = 0
    for folder in SWEPT_FOLDERS:
        stored = _stored_files_older_than(folder, cutoff)
        while chunk := list(islice(stored, SWEEP_CHUNK)):
            unreferenced = set(chunk) - _referenced(chunk)
            _delete_files(sorted(unreferenced))
            orphans += len(unreferenced)
    temp_files = _upload_temp_files_remove(cutoff)
    logger.info(
        "file sweep: removed %s orphan media files and %s stale upload temp files", orphans, temp_files
    )
    return orphans, temp_files


def _stored_files_older_than(folder: str, cutoff) -> Iterable[str]:
    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in files:
        path = f"{folder}/{name}"
        if default_storage.get_modified_time(path) < cutoff:
            yield path
    for sub in folders:
        yield from _stored_files_older_than(f"{folder}/{sub}", cutoff)


def _referenced(names: list[str]) -> set[str]:
    return (
        set(Image.objects.filter(file__in=names).values_list("file", flat=True))
        | set(Image.objects.filter(thumbnail__in=names).values_list("thumbnail", flat=True))
        | set(Export.objects.filter(file__in=names).values_list("file", flat=True))
    )


def _upload_temp_files_remove(cutoff) -> int:
    """Only our own user's files matching Django's upload temp name: the folder may be shared."""
    folder = Path(settings.FILE_UPLOAD_TEMP_DIR or tempfile.gettempdir())
    removed = 0
    for path in folder.glob(UPLOAD_TEMP_PATTERN):
        try:
            info = path.stat()
            if path.is_file() and info.st_uid == os.getuid() and info.st_mtime < cutoff.timestamp():
                path.unlink()
                removed += 1
        except OSError:
            logger.warning("could not remove the stale upload temp file %s", path)
    return removed


def _queue_labeling(batch_id: int) -> None:
    events.batch_waiting.send(sender=Batch, batch_id=batch_id)


class FinalLabelChanged(ServiceError, ValidationError):
    """Accept was pressed on a label that is no longer the image's final label: since the page
    loaded, the policy changed, the model relabeled the image, an audit or another reviewer
    changed it. Nothing was written; `final_labels` maps image id to the final label now."""

    status_code = 409

    def __init__(self, final_labels: dict[int, str]):
        self.final_labels = final_labels
        now = ", ".join(
            f"#{image_id} is now {label or 'unlabeled'}" for image_id, label in final_labels.items()
        )
        super().__init__(f"The final label changed since this page was loaded ({now}); nothing was accepted.")

    def body(self) -> dict:
        return {"detail": self.messages, "final_labels": self.final_labels}


How = LabelChange.How
LABEL_WRITE_SLICE = 2000


def image_set_label(*, image: Image, user, label: str | None, how: str = How.SINGLE) -> Image:
    """Review one image: `label` overrides the final label; None accepts it (image_accept)."""
    if label is None:
        return image_accept(image=image, user=user, how=how)
    if label not in EMOTIONS:
        raise ValidationError(_("%(label)r is not one of the seven emotions.") % {"label": label})
    _labels_write(project=image.project, image_ids=[image.id], user=user, how=how, label=label)
    image.refresh_from_db()
    return image


def image_accept(*, image: Image, user, shown: str | None = None, how: str = How.ACCEPT) -> Image:
    """Accept: the image's final label under the project's policy, as it is now, becomes its
    reviewed label. `shown` is the final label the reviewer saw; if it is no longer the final
    label, FinalLabelChanged is raised and nothing is written."""
    shown_by_id = None if shown is None else {image.id: shown}
    if not images_accept(project=image.project, image_ids=[image.id], user=user, shown=shown_by_id, how=how):
        raise ValidationError(_("This image has no label to accept yet."))
    image.refresh_from_db()
    return image


def images_accept(
    *,
    project: Project,
    image_ids: Iterable[int],
    user,
    shown: dict[int, str] | None = None,
    how: str = How.ACCEPT,
) -> int:
    """Bulk Accept: every chosen image that has a final label gets it confirmed as its reviewed
    label; returns how many. With `shown` (image id -> the final label the page showed), nothing
    is written if any of them is no longer the final label (FinalLabelChanged)."""

    def final_if_still_shown(rows: list[Image]) -> dict[int, str]:
        finals = {image.id: image.final_label for image in rows}
        changed = {i: finals[i] for i, label in (shown or {}).items() if i in finals and finals[i] != label}
        if changed:
            raise FinalLabelChanged(changed)
        return {image_id: label for image_id, label in finals.items() if label}

    return _labels_write(project=project, image_ids=image_ids, user=user, how=how, label=final_if_still_shown)


def images_set_label(
    *, project: Project, image_ids: Iterable[int], user, label: str | None, how: str = How.BULK
) -> int:
    """Bulk review: set `label` on every chosen image, or with None accept each final label."""
    if label is None:
        return images_accept(project=project, image_ids=image_ids, user=user, how=how)
    if label not in EMOTIONS:
        raise ValidationError(_("%(label)r is not one of the seven emotions.") % {"label": label})
    return _labels_write(project=project, image_ids=image_ids, user=user, how=how, label=label)


def image_clear_review(*, image: Image, user=None, how: str = How.SINGLE) -> Image:
    """Forget the reviewed label: the final label follows the project's policy again."""
    _labels_write(project=image.project, image_ids=[image.id], user=user, how=how, label="")
    image.refresh_from_db()
    return image


def images_take_confident_suggestions(
    *, project: Project, user, image_ids: Iterable[int] | None = None
) -> int:
    """Every unreviewed image the audit is confident about gets the audit's suggested label as
    its reviewed label, recorded as one undoable action; returns how many."""
    images = Image.objects.filter(project=project, reviewed_label="", suggestion_confident=True)
    images = images.exclude(suggested_label="")
    if image_ids is not None:
        images = images.filter(id__in=image_ids)

    def suggested(rows: list[Image]) -> dict[int, str]:
        # Checked again on the locked rows: an audit or a reviewer may have come in between.
        still = [i for i in rows if i.suggestion_confident and i.suggested_label and not i.reviewed_label]
        return {image.id: image.suggested_label for image in still}

    ids = images.values_list("id", flat=True)
    return _labels_write(project=project, image_ids=ids, user=user, how=How.POLICY, label=suggested)


def _labels_write(
    *,
    project: Project,
    image_ids: Iterable[int],
    user,
    how: str,
    label: str | Callable[[list[Image]], dict[int, str]],
) -> int:
    """Set reviewed labels through _review_write. `label` is a label for every image ("" clears
    the review), or a function from the locked rows to {image id: label}. Returns how many images
    it reviewed."""

    def as_targets(rows: list[Image]) -> dict[int, ReviewTarget]:
        labels = label(rows) if callable(label) else {image.id: label for image in rows}
        return {image_id: (target, None) for image_id, target in labels.items()}

    return _review_write(project=project, image_ids=image_ids, user=user, how=how, targets=as_targets)[0]


# The fields of an image that review targets and its final label depend on.
REVIEW_FIELDS = (
    "project",
    "reviewed_label",
    "excluded_reason",
    "original_label",
    "predicted_label",
    "suggested_label",
    "suggestion_confident",
    "unsure_reason",
)

# (reviewed label, excluded reason) an image should get; None leaves that field as it is.
ReviewTarget = tuple[str | None, str | None]


def _review_write(
    *,
    project: Project,
    image_ids: Iterable[int],
    user,
    how: str,
    targets: Callable[[list[Image]], dict[int, ReviewTarget]],
) -> tuple[int, int]:
    """The one writer of reviewed labels and exclusions: sets them and records each change in
    LabelChange under one action id (one undo step). `targets` maps the locked rows to
    {image id: (label, excluded reason)}. Returns (images targeted, images changed)."""
    with transaction.atomic():
        # Locked from the read to the write, so another reviewer's change in between is seen
        # (and, for Accept, refused) rather than overwritten by a label computed before it. The
        # project is read in the same query: its policy as it is now decides the final label.
        rows = list(
            Image.objects.select_for_update(of=("self",))
            .select_related("project")
            # What targets and Image.final_label read: a bulk action over a whole filter builds
            # one model per image, and a full row costs twice as much to build.
            .only(*REVIEW_FIELDS, "project__label_policy")
            .filter(project=project, id__in=image_ids)
            .order_by("id")
        )
        wanted = targets(rows)
        before = {image.id: (image.reviewed_label, image.excluded_reason) for image in rows}
        now = timezone.now()
        labels = {i: label for i, (label, _) in wanted.items() if label is not None}
        for target, ids in _ids_by_value(labels).items():
            # Cleared ("") means nobody reviewed it: no reviewer, no time.
            _update_in_slices(
                ids,
                reviewed_label=target,
                reviewed_by=user if target else None,
                reviewed_at=now if target else None,
            )
        reasons = {i: reason for i, (_, reason) in wanted.items() if reason not in (None, before[i][1])}
        for reason, ids in _ids_by_value(reasons).items():
            _update_in_slices(ids, excluded_reason=reason)
        action = uuid.uuid4()
        changes = []
        for image_id, (label, reason) in wanted.items():
            then_label, then_reason = before[image_id]
            now_label = then_label if label is None else label
            now_reason = then_reason if reason is None else reason
            if (then_label, then_reason) == (now_label, now_reason):
                continue
            changes.append(
                LabelChange(
                    project=project,
                    image_id=image_id,
                    user=user,
                    at=now,
                    from_label=then_label,
                    to_label=now_label,
                    from_excluded=then_reason,
                    to_excluded=now_reason,
                    how=how,
                    action=action,
                )
            )
        rows_insert(LabelChange, changes)
        if changes:
            events.images_changed(project.id)
    return len(wanted), len(changes)


def _ids_by_value(values: dict[int, str]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for image_id, value in values.items():
        grouped.setdefault(value, []).append(image_id)
    return grouped


def _update_in_slices(ids: list[int], **fields) -> None:
    # A bulk action over a whole filter may name more ids than SQLite takes in one statement.
    for start in range(0, len(ids), LABEL_WRITE_SLICE):
        Image.objects.filter(id__in=ids[start : start + LABEL_WRITE_SLICE]).update(**fields)


class NothingToUndo(ValidationError):
    """The user has no action left to undo (or redo) in the project."""


def label_undo(*, project: Project, user) -> int:
    """Undo the user's latest not yet undone action in the project (all images of a bulk action
    at once): each image gets back the reviewed label and the exclusion it had before, "" included.
    A field someone changed since is left alone. Returns how many images changed back."""
    with transaction.atomic():
        action = selectors.label_action_to_undo(project, user)
        if action is None:
            raise NothingToUndo(_("There is nothing to undo."))
        return _action_replay(project, user, action, backwards=True)


def label_redo(*, project: Project, user) -> int:
    """Redo the action the user undid last, unless they did something new since."""
    with transaction.atomic():
        action = selectors.label_action_to_redo(project, user)
        if action is None:
            raise NothingToUndo(_("There is nothing to redo."))
        return _action_replay(project, user, action, backwards=False)


def _action_replay(project: Project, user, action: uuid.UUID, *, backwards: bool) -> int:
    changes = list(LabelChange.objects.select_for_update().filter(project=project, action=action))
    # image id -> ((label, excluded) the action, or its undo, left; (label, excluded) to put back)
    wanted = {c.image_id: ((c.to_label, c.to_excluded), (c.from_label, c.from_excluded)) for c in changes}
    if not backwards:
        wanted = {image_id: (now, then) for image_id, (then, now) in wanted.items()}

    def still_as_left(rows: list[Image]) -> dict[int, ReviewTarget]:
        # Another reviewer's later change wins over the undo: only fields the action changed and
        # that are still as the action (or its undo) left them go back.
        targets = {}
        for image in rows:
            (left_label, left_reason), (back_label, back_reason) = wanted[image.id]
            label = back_label if back_label != left_label and image.reviewed_label == left_label else None
            reason = (
                back_reason if back_reason != left_reason and image.excluded_reason == left_reason else None
            )
            if (label, reason) != (None, None):
                targets[image.id] = (label, reason)
        return targets

    how = How.UNDO if backwards else How.REDO
    ids = LabelChange.objects.filter(project=project, action=action).values("image_id")
    changed = _review_write(project=project, image_ids=ids, user=user, how=how, targets=still_as_left)[0]
    undone_at = timezone.now() if backwards else None
    LabelChange.objects.filter(project=project, action=action).update(undone_at=undone_at)
    return changed


# Dataset health actions: duplicates kept or resolved, images excluded from the export's emotion
# folders or included again. Each is one undoable action (label_undo, label_redo).


def _require_reviewer(project: Project, user) -> None:
    role = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    if role is None or ROLE_RANK[role] < ROLE_RANK[Role.REVIEWER]:
        raise PermissionDenied(_("Only reviewers and owners change images."))


def duplicate_keep(*, project: Project, user, image_id: int, group: int | None = None) -> int:
    """Keep this image of its duplicate group and exclude every other member as a duplicate (one
    already excluded for another reason stays so); the kept one is included again if it was
    excluded as a duplicate. With `group`, the image must be in that group. Returns how many
    images changed."""
    _require_reviewer(project, user)
    found = Image.objects.filter(project=project, id=image_id).values_list("duplicate_group", flat=True)
    # Past a 64-bit integer the database driver overflows (a 500): no image has such an id.
    number = found.first() if 0 < image_id < 2**63 else None
    if group is not None and number != group:
        raise ValidationError(
            _("Image %(image)s is not in duplicate group %(group)s.") % {"image": image_id, "group": group}
        )
    if number is None:
        raise ValidationError(_("Image %(image)s is in no duplicate group.") % {"image": image_id})
    duplicate = Image.ExcludedReason.DUPLICATE

    def keep_one(rows: list[Image]) -> dict[int, ReviewTarget]:
        targets: dict[int, ReviewTarget] = {}
        for row in rows:
            if row.id == image_id and row.excluded_reason == duplicate:
                targets[row.id] = (None, "")
            elif row.id != image_id and not row.excluded_reason:
                targets[row.id] = (None, duplicate)
        return targets

    members = Image.objects.filter(project=project, duplicate_group=number).values("id")
    return _review_write(project=project, image_ids=members, user=user, how=How.KEEP_ONE, targets=keep_one)[1]


def duplicate_resolve(*, project: Project, user, group: int, label: str) -> int:
    """Every member of the duplicate group gets `label` as its reviewed label, and the group no
    longer conflicts (the next audit computes that flag again). Returns how many images changed."""
    _require_reviewer(project, user)
    if label not in EMOTIONS:
        raise ValidationError(_("%(label)r is not one of the seven emotions.") % {"label": label})
    members = Image.objects.filter(project=project, duplicate_group=group)
    with transaction.atomic():
        ids = list(members.values_list("id", flat=True))
        if not ids:
            raise ValidationError(_("There is no duplicate group %(group)s.") % {"group": group})
        changed = _review_write(
            project=project,
            image_ids=ids,
            user=user,
            how=How.RESOLVE,
            targets=lambda rows: {row.id: (label, None) for row in rows},
        )[1]
        if members.filter(duplicate_conflicting=True).update(duplicate_conflicting=False):
            events.images_changed(project.id)
    return changed


def images_exclude(*, project: Project, user, images, reason: str) -> int:
    """Exclude the chosen images (a queryset of the project's images, a whole filter if need be)
    from the export's emotion folders, as one undoable action. Images already excluded keep their
    reason. Returns how many images changed."""
    _require_reviewer(project, user)
    if reason not in Image.ExcludedReason.values:
        raise ValidationError(_("%(reason)r is not a reason to exclude an image.") % {"reason": reason})

    def included(rows: list[Image]) -> dict[int, ReviewTarget]:
        return {row.id: (None, reason) for row in rows if not row.excluded_reason}

    ids = images.filter(project=project).order_by().values("id")
    return _review_write(project=project, image_ids=ids, user=user, how=How.EXCLUDE, targets=included)[1]


def images_include(*, project: Project, user, images) -> int:
    """Put excluded images back into the export's emotion folders, as one undoable action.
    Returns how many images changed."""
    _require_reviewer(project, user)

    def excluded(rows: list[Image]) -> dict[int, ReviewTarget]:
        return {row.id: (None, "") for row in rows if row.excluded_reason}

    ids = images.filter(project=project).order_by().values("id")
    return _review_write(project=project, image_ids=ids, user=user, how=How.INCLUDE, targets=excluded)[1]


def export_start(*, project: Project, user) -> Export:
    with transaction.atomic():
        export = Export.objects.create(project=project, requested_by=user)
        transaction.on_commit(lambda: _queue_export(export.id), robust=True)
    return export


def _queue_export(export_id: int) -> None:
    from .tasks import export_project_zip  # tasks.py imports this module

    export_project_zip.delay(export_id)
