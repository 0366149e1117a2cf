"""Exports: a project's images in a ZIP, one folder per final label, with a manifest.

An export claims its row (facelabel.claims.job_claim) before building, so a repeated task, a
second worker or the recovery sweep never builds it twice at once, and one whose worker died is
built again. The ZIP is written under a temporary name and stored under its final one when
complete.
"""

import csv
import io
import shutil
import tempfile
import uuid
import zipfile
from pathlib import PurePath

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.http import FileResponse, Http404
from django.utils import timezone
from django.utils.text import get_valid_filename

from facelabel.claims import ClaimHeartbeat, job_claim, job_fail, jobs_stalled

from . import events
from .models import ExcludedExport, Export, Project, final_label_under
from .selectors import export_get, images_for_export

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
    "duplicate_group",
    "unusable_reason",
    "excluded_reason",
]
EXCLUDED_FOLDER = "excluded"


def export_build(export_id: int) -> bool:
    """Write the project's ZIP to a temporary file, then store it under its final name.

    Memory stays flat: rows stream from the database, files stream through the ZIP writer.
    """
    token = uuid.uuid4()
    claimed = job_claim(
        Export.objects.filter(id=export_id, attempts__lt=settings.EXPORT_MAX_ATTEMPTS),
        waiting=Export.Status.PENDING,
        running=Export.Status.RUNNING,
        stale_after=settings.EXPORT_CLAIM_TIMEOUT,
        claim_token=token,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return False
    export = Export.objects.select_related("project").get(id=export_id)
    mine = Export.objects.filter(id=export.id, claim_token=token)
    try:
        with (
            ClaimHeartbeat(
                lambda: mine.update(claimed_at=timezone.now()),
                settings.EXPORT_CLAIM_TIMEOUT,
                f"export-{export.id}",
            ),
            tempfile.TemporaryFile(suffix=".zip") as archive,
        ):
            count = _write_export_zip(export.project, archive)
            archive.seek(0)
            name = default_storage.save(
                f"exports/{export.project_id}/export-{export.id}-{token.hex[:8]}.zip", File(archive)
            )
    except Exception as exc:
        retry = export.attempts < settings.EXPORT_MAX_ATTEMPTS
        job_fail(mine, exc, retry=retry, waiting=Export.Status.PENDING, failed=Export.Status.FAILED)
        raise
    with transaction.atomic():
        finished = mine.update(
            status=Export.Status.READY, file=name, image_count=count, finished_at=timezone.now(), error=""
        )
        if finished:
            events.export_ready.send(sender=Export, export_id=export.id)
    if not finished:
        default_storage.delete(name)
    return bool(finished)


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
                if not row["file"]:
                    continue  # excluded and left out (export_excluded "omit"): in the manifest only
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
    labeled (failed or still waiting).

    An image a reviewer excluded (a duplicate, unusable) goes to `excluded/` when the
    project's export_excluded is "folder"; with "omit" it is left out of the ZIP and its row's
    `file` is empty. Either way the manifest lists it, with its `excluded_reason`."""
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
        excluded = image["excluded_reason"]
        if excluded:
            folder = EXCLUDED_FOLDER
        path = ""
        if not excluded or project.export_excluded == ExcludedExport.FOLDER:
            path = _unique_path(folder, image, used)
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
            "duplicate_group": image["duplicate_group"] or "",
            "unusable_reason": image["unusable_reason"],
            "excluded_reason": excluded,
        }


def _unique_path(folder: str, image: dict, used: set[str]) -> str:
    stem = get_valid_filename(PurePath(image["original_name"]).stem)[:100] or "image"
    path = f"{folder}/{stem}.jpg"
    if path in used:
        path = f"{folder}/{stem}-{image['id']}.jpg"
    used.add(path)
    return path


def csv_safe(value) -> str:
    """Neutralise cells a spreadsheet would run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    if text and text[0] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def exports_stalled() -> list[int]:
    """Exports nobody builds although someone should: lost message, dead worker. Those that
    used up their tries fail instead."""
    return jobs_stalled(
        Export.objects.all(),
        waiting=Export.Status.PENDING,
        running=Export.Status.RUNNING,
        failed=Export.Status.FAILED,
        stale_after=settings.EXPORT_CLAIM_TIMEOUT,
        max_attempts=settings.EXPORT_MAX_ATTEMPTS,
        error="The worker stopped while building this export on every try.",
    )


def export_download(project: Project, export_id: int) -> FileResponse:
    """The export's ZIP as an attachment (the API and the page both answer with it); 404 until
    it is ready."""
    export = export_get(project, export_id)
    if export.status != Export.Status.READY or not export.file:
        raise Http404("This export is not ready.")
    filename = f"facelabel-project-{project.id}-export-{export.id}.zip"
    return FileResponse(default_storage.open(export.file.name, "rb"), as_attachment=True, filename=filename)
