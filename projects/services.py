"""Writes: projects and members, batches from uploads, review labels, exports."""

import logging
import uuid
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from inference.models import EMOTIONS

from .imports import ImportedImage, Rejection, iter_upload
from .models import Batch, Export, Image, Membership, Project, Role

logger = logging.getLogger(__name__)

# Rows are inserted in slices so a 30,000-image ZIP never holds every row in memory.
INSERT_SLICE = 1000


def project_create(*, user, name: str, description: str = "") -> Project:
    name = name.strip()
    if not name:
        raise ValidationError("A project needs a name.")
    with transaction.atomic():
        project = Project.objects.create(name=name[:200], description=description, created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.OWNER)
    return project


def member_set(*, project: Project, username: str, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}.")
    user = get_user_model().objects.filter(username=username.strip(), is_active=True).first()
    if user is None:
        raise ValidationError(f"There is no user called {username!r}. An admin adds team members.")
    with transaction.atomic():
        membership, _ = Membership.objects.select_for_update().get_or_create(
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
            raise ValidationError("That user is not a member of this project.")
        _refuse_last_owner_change(membership, None)
        membership.delete()


def _refuse_last_owner_change(membership: Membership, new_role: str | None) -> None:
    # A project without an owner could never be managed again.
    if membership.role == Role.OWNER and new_role != Role.OWNER:
        owners = Membership.objects.filter(project=membership.project, role=Role.OWNER).count()
        if owners <= 1:
            raise ValidationError("A project keeps at least one owner.")


def batch_create(*, project: Project, user, files: Iterable, upload_token: uuid.UUID | None = None) -> Batch:
    """Store every valid image of the upload in one new batch and queue its labeling.

    A repeated upload token (a double-clicked submit) returns the batch it already made. Files are
    written to storage before the rows; if the transaction fails they are removed again.
    """
    upload_token = upload_token or uuid.uuid4()
    existing = Batch.objects.filter(project=project, upload_token=upload_token).first()
    if existing is not None:
        return existing
    saved: list[str] = []
    try:
        with transaction.atomic():
            batch = Batch.objects.create(
                project=project, uploaded_by=user, upload_token=upload_token, heartbeat_at=timezone.now()
            )
            count, rejected = _batch_fill(batch, iter_upload(files), saved)
            batch.image_count = count
            batch.rejected = rejected
            if count == 0:
                batch.status = Batch.Status.DONE
                batch.finished_at = timezone.now()
            batch.save(update_fields=["image_count", "rejected", "status", "finished_at"])
            if count:
                transaction.on_commit(lambda: _queue_labeling(batch.id), robust=True)
    except IntegrityError:
        _delete_files(saved)
        # The same token raced us to the insert: the other request's batch is the one.
        existing = Batch.objects.filter(project=project, upload_token=upload_token).first()
        if existing is None:
            raise
        return existing
    except BaseException:
        _delete_files(saved)
        raise
    return batch


def _batch_fill(batch: Batch, items: Iterable, saved: list[str]) -> tuple[int, list[dict]]:
    rows: list[Image] = []
    rejected: list[dict] = []
    count = 0
    for item in items:
        if isinstance(item, Rejection):
            rejected.append({"name": item.name, "reason": item.reason})
            continue
        if item.note:
            rejected.append({"name": item.name, "reason": item.note, "imported": True})
        rows.append(_image_row(batch, item, saved))
        if len(rows) >= INSERT_SLICE:
            count += len(Image.objects.bulk_create(rows))
            rows = []
    count += len(Image.objects.bulk_create(rows))
    return count, rejected


def _image_row(batch: Batch, item: ImportedImage, saved: list[str]) -> Image:
    # Generated names: the user's file name never becomes a path.
    # Fanned out over 256 folders: file creation slows down in folders of many thousand files.
    stem = uuid.uuid4().hex
    file_name = default_storage.save(
        f"images/{batch.project_id}/{stem[:2]}/{stem}.jpg", ContentFile(item.content)
    )
    saved.append(file_name)
    thumbnail = ""
    if item.thumbnail:
        thumbnail = default_storage.save(
            f"thumbnails/{batch.project_id}/{stem[:2]}/{stem}.jpg", ContentFile(item.thumbnail)
        )
        saved.append(thumbnail)
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


def _queue_labeling(batch_id: int) -> None:
    from inference.tasks import queue_batch_labeling

    queue_batch_labeling(batch_id)


def image_set_label(*, image: Image, user, label: str | None) -> Image:
    """Review one image: `label` overrides the model; None accepts the model's label."""
    label = _review_label(image, label)
    image.reviewed_label = label
    image.reviewed_by = user
    image.reviewed_at = timezone.now()
    image.save(update_fields=["reviewed_label", "reviewed_by", "reviewed_at"])
    return image


def _review_label(image: Image, label: str | None) -> str:
    if label is None:
        if not image.predicted_label:
            raise ValidationError("This image has no model label to accept yet.")
        return image.predicted_label
    if label not in EMOTIONS:
        raise ValidationError(f"{label!r} is not one of the seven emotions.")
    return label


def images_set_label(*, project: Project, image_ids: list[int], user, label: str | None) -> int:
    """Bulk review. With label None every chosen image that has a model label gets it accepted."""
    images = Image.objects.filter(project=project, id__in=image_ids)
    now = timezone.now()
    if label is None:
        return images.exclude(predicted_label="").update(
            reviewed_label=F("predicted_label"), reviewed_by=user, reviewed_at=now
        )
    if label not in EMOTIONS:
        raise ValidationError(f"{label!r} is not one of the seven emotions.")
    return images.update(reviewed_label=label, reviewed_by=user, reviewed_at=now)


def image_clear_review(*, image: Image) -> Image:
    image.reviewed_label = ""
    image.reviewed_by = None
    image.reviewed_at = None
    image.save(update_fields=["reviewed_label", "reviewed_by", "reviewed_at"])
    return image


def export_start(*, project: Project, user) -> Export:
    with transaction.atomic():
        export = Export.objects.create(project=project, requested_by=user)
        transaction.on_commit(lambda: _queue_export(export.id), robust=True)
    return export


def _queue_export(export_id: int) -> None:
    from inference.tasks import export_project_zip

    export_project_zip.delay(export_id)
