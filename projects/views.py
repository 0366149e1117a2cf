"""HTML pages and the small JSON endpoints the pages call. Each view checks membership through
the selectors (404 for other teams, 403 below the needed role) and calls one service."""

import json
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import TooManyFilesSent, ValidationError
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from inference.models import EMOTIONS

from . import selectors, services
from .imports import UploadRefused, check_upload_request, too_many_files
from .models import Export, Image, Role

PAGE_SIZES = (24, 48, 96, 192)


@login_required
def project_list(request):
    if request.method == "POST":
        try:
            project = services.project_create(
                user=request.user,
                name=request.POST.get("name", ""),
                description=request.POST.get("description", ""),
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("projects:list")
        return redirect("projects:detail", project.id)
    projects = selectors.projects_for_user(request.user)
    return render(request, "projects/project_list.html", {"projects": projects})


@login_required
@require_GET
def project_detail(request, project_id: int):
    membership = selectors.membership_get(request.user, project_id)
    project = membership.project
    context = {
        "project": project,
        "role": membership.role,
        "summary": selectors.project_summary(project),
        "label_policy": selectors.label_policy_in_force(project),
        "batches": project.batches.defer("rejected")[:20],
        "exports": project.exports.select_related("requested_by")[:10],
        "emotions": EMOTIONS,
    }
    return render(request, "projects/project_detail.html", context)


@login_required
def members(request, project_id: int):
    membership = selectors.membership_get(request.user, project_id)
    project = membership.project
    if request.method == "POST":
        project = selectors.project_get_for_user(request.user, project_id, Role.OWNER)
        try:
            if request.POST.get("remove"):
                services.member_remove(project=project, user_id=int(request.POST["remove"]))
            else:
                services.member_set(
                    project=project,
                    username=request.POST.get("username", ""),
                    role=request.POST.get("role", ""),
                )
        except (ValidationError, ValueError) as exc:
            messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
        return redirect("projects:members", project.id)
    context = {
        "project": project,
        "role": membership.role,
        "members": selectors.members_of(project),
        "roles": Role.choices,
    }
    return render(request, "projects/members.html", context)


@login_required
def upload(request, project_id: int):
    project = selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    if request.method != "POST":
        return render(request, "projects/upload.html", {"project": project, "upload_token": uuid.uuid4()})
    try:
        check_upload_request(None, _content_length(request))  # before the body is read
        try:
            files = request.FILES.getlist("files")
        except TooManyFilesSent:
            raise too_many_files() from None
        check_upload_request(len(files), _content_length(request))
        token = uuid.UUID(request.POST.get("upload_token") or str(uuid.uuid4()))
    except UploadRefused as exc:
        return JsonResponse({"error": exc.message}, status=exc.status_code)
    except ValueError:
        return JsonResponse({"error": "upload_token must be a UUID."}, status=400)
    try:
        batch = services.batch_create(project=project, user=request.user, files=files, upload_token=token)
    except services.UploadInProgress as exc:
        return JsonResponse({"error": str(exc), "batch": exc.batch.id, "images": exc.stored}, status=409)
    return JsonResponse(
        {
            "batch": batch.id,
            "images": batch.image_count,
            "rejected": list(selectors.batch_rejections(batch).object_list),
            "rejected_count": batch.rejected_count,
            "url": reverse("projects:batch", args=[project.id, batch.id]),
        },
        status=201,
    )


def _content_length(request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


@login_required
@require_GET
def batch_detail(request, project_id: int, batch_id: int):
    project = selectors.project_get_for_user(request.user, project_id)
    batch = selectors.batch_get(project, batch_id)
    context = {
        "project": project,
        "batch": batch,
        "progress": selectors.batch_progress(batch),
        "rejections": selectors.batch_rejections(batch, request.GET.get("rejected_page")),
        "unlisted": batch.rejected_count - len(batch.rejected),
    }
    return render(request, "projects/batch_detail.html", context)


@login_required
@require_GET
def batch_progress(request, project_id: int, batch_id: int):
    project = selectors.project_get_for_user(request.user, project_id)
    return JsonResponse(selectors.batch_progress(selectors.batch_get(project, batch_id)))


@login_required
@require_GET
def review(request, project_id: int):
    membership = selectors.membership_get(request.user, project_id)
    project = membership.project
    filters = selectors.ImageFilters.from_query(request.GET)
    per_page = _page_size(request.GET.get("per_page"))
    page = Paginator(selectors.images_filtered(project, filters), per_page).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "project": project,
        "role": membership.role,
        "can_review": membership.role in (Role.REVIEWER, Role.OWNER),
        "page": page,
        "filters": filters,
        "emotions": EMOTIONS,
        "statuses": Image.Status.values,
        "unsure_reasons": Image.UnsureReason.choices,
        "query": query.urlencode(),
        "per_page": per_page,
        "page_sizes": PAGE_SIZES,
    }
    return render(request, "projects/review.html", context)


def _page_size(value) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        return PAGE_SIZES[1]
    return size if size in PAGE_SIZES else PAGE_SIZES[1]


@login_required
@require_POST
def image_label(request, project_id: int, image_id: int):
    project = selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    image = selectors.image_get(project, image_id)
    payload = _json_body(request)
    try:
        if payload.get("clear"):
            image = services.image_clear_review(image=image)
        elif "accept" in payload:
            # The grid sends the final label its card shows: Accept confirms that label or nothing.
            image = services.image_accept(image=image, user=request.user, shown=str(payload["accept"] or ""))
        else:
            image = services.image_set_label(image=image, user=request.user, label=payload.get("label"))
    except services.FinalLabelChanged as exc:
        image.refresh_from_db()
        return JsonResponse({"error": " ".join(exc.messages), **_image_json(image)}, status=409)
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)
    return JsonResponse(_image_json(image))


@login_required
@require_POST
def images_bulk_label(request, project_id: int):
    project = selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    payload = _json_body(request)
    ids = payload.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids) or len(ids) > 1000:
        return JsonResponse({"error": "ids must be a list of at most 1000 image ids."}, status=400)
    try:
        shown = _shown_labels(payload.get("shown"))
    except (AttributeError, ValueError):
        return JsonResponse({"error": "shown must map image ids to the labels their cards show."}, status=400)
    try:
        if payload.get("label") is None and shown is not None:
            changed = services.images_accept(project=project, image_ids=ids, user=request.user, shown=shown)
        else:
            changed = services.images_set_label(
                project=project, image_ids=ids, user=request.user, label=payload.get("label")
            )
    except services.FinalLabelChanged as exc:
        return JsonResponse({"error": " ".join(exc.messages), "final_labels": exc.final_labels}, status=409)
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)
    return JsonResponse({"changed": changed})


def _shown_labels(value) -> dict[int, str] | None:
    """The bulk Accept's {image id: final label its card showed}, or None when not sent."""
    if value is None:
        return None
    return {int(image_id): str(label or "") for image_id, label in value.items()}


def _json_body(request) -> dict:
    try:
        payload = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _image_json(image: Image) -> dict:
    return {
        "id": image.id,
        "predicted_label": image.predicted_label,
        "reviewed_label": image.reviewed_label,
        "final_label": image.final_label,
        "confidence": image.confidence,
    }


@login_required
@require_GET
def image_file(request, project_id: int, image_id: int, kind: str):
    if kind not in ("thumb", "full"):
        raise Http404
    project = selectors.project_get_for_user(request.user, project_id)
    image = selectors.image_get(project, image_id)
    name = image.thumbnail.name if kind == "thumb" and image.thumbnail else image.file.name
    response = FileResponse(default_storage.open(name, "rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_POST
def export_create(request, project_id: int):
    project = selectors.project_get_for_user(request.user, project_id)
    export = services.export_start(project=project, user=request.user)
    return redirect("projects:export", project.id, export.id)


@login_required
@require_GET
def export_detail(request, project_id: int, export_id: int):
    project = selectors.project_get_for_user(request.user, project_id)
    export = selectors.export_get(project, export_id)
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"status": export.status, "images": export.image_count, "error": export.error})
    return render(request, "projects/export_detail.html", {"project": project, "export": export})


@login_required
@require_GET
def export_download(request, project_id: int, export_id: int):
    project = selectors.project_get_for_user(request.user, project_id)
    export = selectors.export_get(project, export_id)
    if export.status != Export.Status.READY or not export.file:
        raise Http404("This export is not ready.")
    filename = f"facelabel-project-{project.id}-export-{export.id}.zip"
    return FileResponse(default_storage.open(export.file.name, "rb"), as_attachment=True, filename=filename)


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")
