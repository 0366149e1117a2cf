"""Writes: projects and members, batches from uploads, review labels, exports."""

import logging
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from inference.models import EMOTIONS

from .imports import ImportedImage, Rejection, iter_upload
from .models import Batch, Export, Image, LabelPolicy, Membership, Project, Role

logger = logging.getLogger(__name__)

# Rows are inserted in slices so a 30,000-image ZIP never holds every row in memory.
INSERT_SLICE = 500
STORAGE_THREADS = 2


def project_create(*, user, name: str, description: str = "") -> Project:
    name = name.strip()
    if not name:
        raise ValidationError("A project needs a name.")
    with transaction.atomic():
        project = Project.objects.create(name=name[:200], description=description, created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.OWNER)
    return project


def project_update(*, project: Project, user=None, **fields) -> Project:
    """Change name, description, relabel_on_new_model or label_policy (`user` is the one who does)."""
    if "label_policy" in fields:
        if fields["label_policy"] not in LabelPolicy.values:
            raise ValidationError(f"Unknown label policy {fields['label_policy']!r}.")
        # Only a change counts as an owner's choice: re-saving the form keeps the project on the
        # measured default, and the project page keeps saying so.
        if fields["label_policy"] != project.label_policy:
            fields.update(label_policy_chosen_at=timezone.now(), label_policy_chosen_by=user)
    if "name" in fields:
        fields["name"] = fields["name"].strip()[:200]
        if not fields["name"]:
            raise ValidationError("A project needs a name.")
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
    """Store every valid image of the upload in a new batch, labeling it while it streams in.

    Images are committed in slices and the worker starts on the first slice while the rest is
    still being read, so a large ZIP is labeled in about the time it takes to import it. A
    repeated upload token (a double-clicked submit) returns the batch it already made. If the
    import breaks off, the images already stored stay in the batch and the batch says so.
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
        return Batch.objects.get(project=project, upload_token=upload_token)
    transaction.on_commit(lambda: _queue_labeling(batch.id), robust=True)
    filler = _BatchFiller(batch)
    try:
        filler.fill(iter_upload(files))
    except BaseException as exc:
        filler.rejected.append({"name": "(upload)", "reason": f"the upload broke off: {exc}"[:500]})
        raise
    finally:
        filler.close()
    return batch


class _BatchFiller:
    """Writes images to storage on a few threads (storage is I/O: local disks and S3 both wait
    far more than they compute) and commits their rows a slice at a time."""

    def __init__(self, batch: Batch):
        self.batch = batch
        self.count = 0
        self.rejected: list[dict] = []
        self.pool = ThreadPoolExecutor(max_workers=STORAGE_THREADS, thread_name_prefix="store")

    def fill(self, items: Iterable) -> None:
        pending: list[tuple[ImportedImage, Future]] = []
        try:
            for item in items:
                if isinstance(item, Rejection):
                    self.rejected.append({"name": item.name, "reason": item.reason})
                    continue
                if item.note:
                    self.rejected.append({"name": item.name, "reason": item.note, "imported": True})
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
        stored = [(item, future.result()) for item, future in pending]
        rows = [_image_row(self.batch, item, *names) for item, names in stored]
        try:
            with transaction.atomic():
                Image.objects.bulk_create(rows)
                Batch.objects.filter(id=self.batch.id).update(heartbeat_at=timezone.now())
        except BaseException:
            _delete_files([name for _, names in stored for name in names if name])
            raise
        self.count += len(rows)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        now = timezone.now()
        done = self.count == 0
        Batch.objects.filter(id=self.batch.id).update(
            image_count=self.count,
            rejected=self.rejected,
            status=Batch.Status.DONE if done else Batch.Status.LABELING,
            finished_at=now if done else None,
            heartbeat_at=now,
        )
        self.batch.refresh_from_db()


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


def _queue_labeling(batch_id: int) -> None:
    from inference.tasks import queue_batch_labeling

    queue_batch_labeling(batch_id)


class FinalLabelChanged(ValidationError):
    """Accept was pressed on a label that is no longer the image's final label: since the page
    loaded, the policy changed, the model relabeled the image, an audit or another reviewer
    changed it. Nothing was written; `final_labels` maps image id to the final label now."""

    def __init__(self, final_labels: dict[int, str]):
        self.final_labels = final_labels
        now = ", ".join(
            f"#{image_id} is now {label or 'unlabeled'}" for image_id, label in final_labels.items()
        )
        super().__init__(f"The final label changed since this page was loaded ({now}); nothing was accepted.")


def image_set_label(*, image: Image, user, label: str | None) -> Image:
    """Review one image: `label` overrides the final label; None accepts it (image_accept)."""
    if label is None:
        return image_accept(image=image, user=user)
    if label not in EMOTIONS:
        raise ValidationError(f"{label!r} is not one of the seven emotions.")
    image.reviewed_label = label
    image.reviewed_by = user
    image.reviewed_at = timezone.now()
    image.save(update_fields=["reviewed_label", "reviewed_by", "reviewed_at"])
    return image


def image_accept(*, image: Image, user, shown: str | None = None) -> Image:
    """Accept: the image's final label under the project's policy, as it is now, becomes its
    reviewed label. `shown` is the final label the reviewer saw; if it is no longer the final
    label, FinalLabelChanged is raised and nothing is written."""
    shown_by_id = None if shown is None else {image.id: shown}
    if not images_accept(project=image.project, image_ids=[image.id], user=user, shown=shown_by_id):
        raise ValidationError("This image has no label to accept yet.")
    image.refresh_from_db()
    return image


def images_accept(
    *, project: Project, image_ids: list[int], user, shown: dict[int, str] | None = None
) -> int:
    """Bulk Accept: every chosen image that has a final label gets it confirmed as its reviewed
    label; returns how many. With `shown` (image id -> the final label the page showed), nothing
    is written if any of them is no longer the final label (FinalLabelChanged)."""
    with transaction.atomic():
        # Locked from the read to the write, so another reviewer's override in between is seen
        # (and refused as a change) rather than overwritten by a label computed before it. The
        # project is read in the same query: its policy as it is now decides the final label.
        rows = (
            Image.objects.select_for_update(of=("self",))
            .select_related("project")
            .filter(project=project, id__in=image_ids)
            .order_by("id")
        )
        finals = {image.id: image.final_label for image in rows}
        changed = {i: finals[i] for i, label in (shown or {}).items() if i in finals and finals[i] != label}
        if changed:
            raise FinalLabelChanged(changed)
        by_label: dict[str, list[int]] = {}
        for image_id, label in finals.items():
            if label:
                by_label.setdefault(label, []).append(image_id)
        now = timezone.now()
        for label, ids in by_label.items():
            Image.objects.filter(id__in=ids).update(reviewed_label=label, reviewed_by=user, reviewed_at=now)
    return sum(len(ids) for ids in by_label.values())


def images_set_label(*, project: Project, image_ids: list[int], user, label: str | None) -> int:
    """Bulk review: set `label` on every chosen image, or with None accept each final label."""
    if label is None:
        return images_accept(project=project, image_ids=image_ids, user=user)
    if label not in EMOTIONS:
        raise ValidationError(f"{label!r} is not one of the seven emotions.")
    images = Image.objects.filter(project=project, id__in=image_ids)
    return images.update(reviewed_label=label, reviewed_by=user, reviewed_at=timezone.now())


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
