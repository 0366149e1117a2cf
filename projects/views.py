"""HTML pages and the small JSON endpoints the pages call. Each view checks membership through
the selectors (404 for other teams, 403 below the needed role) and calls one service."""

import json
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import TooManyFilesSent, ValidationError
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.http import require_GET, require_POST

from . import exports, selectors, services
from .decoding import UploadRefused, check_upload_request, content_length, too_many_files
from .models import EMOTIONS, Batch, Emotion, Image, LabelChange, Role

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
    summary = selectors.project_summary(project)
    context = {
        "project": project,
        "role": membership.role,
        "summary": summary,
        "charts": selectors.project_charts(project, summary),
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
def project_settings(request, project_id: int):
    """Owners rename, describe and configure the project here, or delete it."""
    project = selectors.project_get_for_user(request.user, project_id, Role.OWNER)
    if request.method == "POST":
        if "delete" in request.POST:
            return _project_delete(request, project)
        try:
            services.project_update(
                project=project,
                user=request.user,
                name=request.POST.get("name", ""),
                description=request.POST.get("description", "").strip(),
                relabel_on_new_model=request.POST.get("relabel_on_new_model") == "on",
                label_policy=request.POST.get("label_policy", project.label_policy),
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, _("Settings saved."))
        return redirect("projects:settings", project.id)
    context = {
        "project": project,
        "role": Role.OWNER,
        "label_policy": selectors.label_policy_in_force(project),
    }
    return render(request, "projects/settings.html", context)


def _project_delete(request, project):
    # Typing the name is the confirmation: a delete removes every image and export for good.
    if request.POST.get("confirm_name", "").strip() != project.name:
        messages.error(request, _("Type the project's name exactly to delete it."))
        return redirect("projects:settings", project.id)
    name = project.name
    services.project_delete(project=project)
    messages.success(request, _("Project “%(name)s” deleted.") % {"name": name})
    return redirect("projects:list")


@login_required
def upload(request, project_id: int):
    project = selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    if request.method != "POST":
        role = selectors.membership_get(request.user, project_id).role  # for the tabs only
        context = {
            "project": project,
            "role": role,
            "upload_token": uuid.uuid4(),
            # upload.js splits a larger drop into requests under these limits.
            "max_files": settings.UPLOAD_MAX_FILES,
            "max_bytes": settings.UPLOAD_MAX_BYTES,
        }
        return render(request, "projects/upload.html", context)
    try:
        check_upload_request(None, content_length(request))  # before the body is read
        try:
            files = request.FILES.getlist("files")
        except TooManyFilesSent:
            raise too_many_files() from None
        check_upload_request(len(files), content_length(request))
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


@login_required
@require_GET
def batch_detail(request, project_id: int, batch_id: int):
    membership = selectors.membership_get(request.user, project_id)
    project = membership.project
    batch = selectors.batch_get(project, batch_id)
    context = {
        "project": project,
        "role": membership.role,
        "batch": batch,
        "progress": selectors.batch_progress(batch),
        "rejections": selectors.batch_rejections(batch, request.GET.get("rejected_page")),
        "unlisted": batch.rejected_count - len(batch.rejected),
        "batch_statuses": Batch.Status.choices,  # progress.js shows the JSON's status in these words
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
    page = selectors.images_page(project, filters, request.GET.get("page"), per_page)
    query = request.GET.copy()
    query.pop("page", None)
    names = {code: str(label) for code, label in Emotion.choices}
    _grid_cards(project, page.object_list, names, back=request.get_full_path())
    context = {
        "project": project,
        "role": membership.role,
        "can_review": membership.role in (Role.REVIEWER, Role.OWNER),
        "page": page,
        "filters": filters,
        "emotions": EMOTIONS,
        "emotion_names": names,
        # One <select>'s options, rendered once for every card: a grid page of 48 cards spent
        # most of its time in the template tags that built them per card.
        "override_options": format_html_join("", '<option value="{}">{}</option>', names.items()),
        "duplicate_choices": _health_choices(Image.DuplicateKind.choices),
        "unusable_choices": Image.UnusableReason.choices,
        "excluded_choices": Image.ExcludedReason.choices,
        "statuses": Image.Status.choices,
        "unsure_reasons": Image.UnsureReason.choices,
        "query": query.urlencode(),
        "per_page": per_page,
        "page_sizes": PAGE_SIZES,
    }
    return render(request, "projects/review.html", context)


def _grid_cards(project, images, names: dict, back: str) -> None:
    """What each card shows, computed once per card in Python instead of by template filters
    and {% url %} tags, which made rendering 48 cards most of a grid page's time."""
    prefix = reverse("projects:image", args=[project.id, 0]).removesuffix("0/")
    back = urlencode({"back": back})
    for image in images:
        final = image.final_label
        image.card = {
            "final": final,
            "final_name": names.get(final, final),
            "predicted_name": names.get(image.predicted_label, image.predicted_label),
            "original_name_label": names.get(image.original_label, image.original_label),
            "suggested_name": names.get(image.suggested_label, image.suggested_label),
            "detail": f"{prefix}{image.id}/?{back}",
            "label_url": f"{prefix}{image.id}/label/",
            "thumb": f"{prefix}{image.id}/thumb.jpg",
        }


def _health_choices(kinds) -> list[tuple[str, str]]:
    return [
        ("yes", _("any copy")),
        ("conflicting", _("copies with different labels")),
        ("cross_batch", _("copies in several batches (leak)")),
        *kinds,
        ("no", _("no copy")),
    ]


def _page_size(value) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        return PAGE_SIZES[1]
    return size if size in PAGE_SIZES else PAGE_SIZES[1]


@login_required
@require_GET
def image_detail(request, project_id: int, image_id: int):
    membership = selectors.membership_get(request.user, project_id)
    image = selectors.image_get(membership.project, image_id)
    context = {
        "project": membership.project,
        "role": membership.role,
        "can_review": membership.role in (Role.REVIEWER, Role.OWNER),
        "image": image,
        "source": selectors.image_final_label_source(image),
        "probabilities": selectors.image_probabilities(image),
        "history": selectors.image_history(image)[:200],
        "back": _review_return_url(request, project_id),
        "excluded_reasons": Image.ExcludedReason.choices,
    }
    return render(request, "projects/image_detail.html", context)


def _review_return_url(request, project_id: int) -> str:
    # Only a path of this site: the query string is the grid's filter, never a redirect target.
    back = request.GET.get("back", "")
    if url_has_allowed_host_and_scheme(back, allowed_hosts=None) and back.startswith("/"):
        return back
    return reverse("projects:review", args=[project_id])


@login_required
@require_POST
def image_label(request, project_id: int, image_id: int):
    project = selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    image = selectors.image_get(project, image_id)
    payload = _json_body(request)
    keyboard = payload.get("how") == LabelChange.How.KEYBOARD
    how = LabelChange.How.KEYBOARD if keyboard else LabelChange.How.SINGLE
    try:
        if payload.get("clear"):
            image = services.image_clear_review(image=image, user=request.user, how=how)
        elif "accept" in payload:
            # The grid sends the final label its card shows: Accept confirms that label or nothing.
            shown = str(payload["accept"] or "")
            how = how if keyboard else LabelChange.How.ACCEPT
            image = services.image_accept(image=image, user=request.user, shown=shown, how=how)
        else:
            label = payload.get("label")
            image = services.image_set_label(image=image, user=request.user, label=label, how=how)
    except services.FinalLabelChanged as exc:
        image.refresh_from_db()
        return JsonResponse({"error": " ".join(exc.messages), **_image_json(image)}, status=409)
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)
    return JsonResponse(_image_json(image))


@login_required
@require_POST
def images_bulk_label(request, project_id: int):
    """Bulk review of the picked `ids`, or with `filter` (the grid's query string) of every image
    that matches it: set `label`, accept the final labels, or take the confident suggestions."""
    project = selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    payload = _json_body(request)
    ids = _bulk_ids(project, payload)
    if ids is None:
        return JsonResponse({"error": "ids must be a list of at most 1000 image ids."}, status=400)
    try:
        shown = _shown_labels(payload.get("shown"))
    except (AttributeError, ValueError):
        return JsonResponse({"error": "shown must map image ids to the labels their cards show."}, status=400)
    bulk = {"project": project, "image_ids": ids, "user": request.user}
    try:
        if payload.get("suggestions"):
            changed = services.images_take_confident_suggestions(**bulk)
        elif payload.get("label") is None and shown is not None:
            changed = services.images_accept(**bulk, shown=shown, how=LabelChange.How.BULK)
        else:
            changed = services.images_set_label(**bulk, label=payload.get("label"))
    except services.FinalLabelChanged as exc:
        return JsonResponse({"error": " ".join(exc.messages), "final_labels": exc.final_labels}, status=409)
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)
    return JsonResponse({"changed": changed})


def _bulk_ids(project, payload: dict):
    """The picked ids (at most 1000), or a query of all images matching the grid's filter."""
    if isinstance(payload.get("filter"), str):
        filters = selectors.ImageFilters.from_query(QueryDict(payload["filter"]))
        return selectors.images_filtered(project, filters).order_by().values("id")
    ids = payload.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids) or len(ids) > 1000:
        return None
    return ids


@login_required
@require_POST
def label_undo(request, project_id: int, redo: bool = False):
    """Undo or redo the user's last review action: JSON for the grid's script, else a redirect."""
    project = selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    replay = services.label_redo if redo else services.label_undo
    try:
        changed = replay(project=project, user=request.user)
    except ValidationError as exc:
        error = " ".join(exc.messages)
        if request.headers.get("Accept") == "application/json":
            return JsonResponse({"error": error}, status=400)
        messages.info(request, error)
    else:
        if request.headers.get("Accept") == "application/json":
            return JsonResponse({"changed": changed})
        done = _("%(count)s labels set again.") if redo else _("%(count)s labels changed back.")
        messages.success(request, done % {"count": changed})
    return redirect(_review_return_url(request, project_id))


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
    membership = selectors.membership_get(request.user, project_id)
    project = membership.project
    export = selectors.export_get(project, export_id)
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"status": export.status, "images": export.image_count, "error": export.error})
    context = {"project": project, "role": membership.role, "export": export}
    return render(request, "projects/export_detail.html", context)


@login_required
@require_GET
def export_download(request, project_id: int, export_id: int):
    project = selectors.project_get_for_user(request.user, project_id)
    return exports.export_download(project, export_id)


def bad_request(request, exception=None):
    """handler400. Django refuses a body past DATA_UPLOAD_MAX_NUMBER_FILES wherever it is first
    read, and the CSRF check reads it before the upload view can: the uploader still gets why."""
    if isinstance(exception, TooManyFilesSent):
        return JsonResponse({"error": too_many_files().message}, status=400)
    return defaults.bad_request(request, exception)


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")
