"""HTML: the dataset health page and its forms, the duplicate groups, the dataset map and the
exclusion buttons. The "likely mislabeled" queue is the review grid filtered and ordered by the
audit (projects/views.py review, static/js/review.js)."""

import math
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET, require_POST

from projects import selectors as project_selectors
from projects import services as project_services
from projects.models import EMOTIONS, Image, LabelPolicy, Role

from . import selectors, services
from .models import AuditRun


@login_required
@require_GET
def health(request, project_id: int):
    membership = project_selectors.membership_get(request.user, project_id)
    project = membership.project
    context = {
        "project": project,
        "role": membership.role,
        "can_review": membership.role in (Role.REVIEWER, Role.OWNER),
        "is_owner": membership.role == Role.OWNER,
        "health": selectors.dataset_health(project),
        "runs": selectors.audit_runs(project)[:10],
        "policies": LabelPolicy.choices,
        "label_policy": project_selectors.label_policy_in_force(project),
        "kinds": AuditRun.Kind.choices,
        "emotions": EMOTIONS,
    }
    return render(request, "audit/health.html", context)


@login_required
@require_POST
def audit_create(request, project_id: int):
    project = project_selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    try:
        services.audit_start(project=project, user=request.user, kind=request.POST.get("kind", ""))
        messages.success(request, _("The audit is queued; this page shows its results when it is done."))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("audit:health", project.id)


@login_required
@require_POST
def policy_set(request, project_id: int):
    project = project_selectors.project_get_for_user(request.user, project_id, Role.OWNER)
    try:
        project_services.project_update(
            project=project, user=request.user, label_policy=request.POST.get("label_policy", "")
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("audit:health", project.id)


def _changed_message(request, changed: int, done: str) -> None:
    if changed:
        messages.success(request, done % {"count": changed} + " " + _("Undo takes it back."))
    else:
        messages.info(request, _("Nothing needed changing."))


def _back(request, default: str) -> str:
    # Only a path of this site, as the review grid's own return links.
    back = request.POST.get("back", "")
    if back.startswith("/") and url_has_allowed_host_and_scheme(back, allowed_hosts=None):
        return back
    return default


@login_required
@require_GET
def duplicates(request, project_id: int):
    membership = project_selectors.membership_get(request.user, project_id)
    project = membership.project
    context = {
        "project": project,
        "role": membership.role,
        "can_review": membership.role in (Role.REVIEWER, Role.OWNER),
        "page": selectors.duplicate_groups_page(project, request.GET.get("page")),
        "emotions": EMOTIONS,
    }
    return render(request, "audit/duplicates.html", context)


@login_required
@require_POST
def duplicate_keep(request, project_id: int, group: int):
    project = project_selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    selectors.duplicate_group_get(project, group)
    try:
        image_id = int(request.POST.get("image", ""))
        changed = project_services.duplicate_keep(
            project=project, user=request.user, image_id=image_id, group=group
        )
    except ValueError:
        messages.error(request, _("Choose the image to keep."))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        _changed_message(request, changed, _("Kept one image; %(count)s images changed."))
    return redirect(_back(request, reverse("audit:duplicates", args=[project.id])))


@login_required
@require_POST
def duplicate_resolve(request, project_id: int, group: int):
    project = project_selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    selectors.duplicate_group_get(project, group)
    try:
        changed = project_services.duplicate_resolve(
            project=project, user=request.user, group=group, label=request.POST.get("label", "")
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        _changed_message(request, changed, _("Group resolved; %(count)s labels changed."))
    return redirect(_back(request, reverse("audit:duplicates", args=[project.id])))


@login_required
@require_POST
def image_exclude(request, project_id: int, image_id: int, include: bool = False):
    """The image detail page's Exclude and Include again buttons."""
    project = project_selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    image = project_selectors.image_get(project, image_id)
    images = Image.objects.filter(id=image.id)
    try:
        if include:
            changed = project_services.images_include(project=project, user=request.user, images=images)
        else:
            reason = request.POST.get("reason", "")
            changed = project_services.images_exclude(
                project=project, user=request.user, images=images, reason=reason
            )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        done = _("The image is in the export's folders again.") if include else _("The image is excluded.")
        _changed_message(request, changed, done)
    detail = reverse("projects:image", args=[project.id, image.id])
    back = _back(request, "")
    return redirect(f"{detail}?{urlencode({'back': back})}" if back else detail)


@login_required
@require_POST
def unusable_exclude(request, project_id: int):
    """The health page's "Exclude all unusable images": one undoable action however many."""
    project = project_selectors.project_get_for_user(request.user, project_id, Role.REVIEWER)
    filters = project_selectors.ImageFilters.from_query(QueryDict("unusable=yes&excluded=no"))
    images = project_selectors.images_filtered(project, filters)
    changed = project_services.images_exclude(
        project=project, user=request.user, images=images, reason=Image.ExcludedReason.UNUSABLE
    )
    _changed_message(request, changed, _("%(count)s unusable images excluded."))
    return redirect("audit:health", project.id)


MAP_BOX_FIELDS = ("x0", "y0", "x1", "y1")


@login_required
@require_GET
def dataset_map(request, project_id: int):
    """The dataset map. Its script draws the points and selects a rectangle by dragging; the box's
    number fields do the same without a mouse, and without a script too (this view counts)."""
    membership = project_selectors.membership_get(request.user, project_id)
    project = membership.project
    box = _map_box(request.GET)
    selected = None
    if box is not None:
        filters = project_selectors.ImageFilters.from_query(QueryDict(f"map_box={','.join(map(str, box))}"))
        selected = project_selectors.images_filtered(project, filters).count()
    context = {
        "project": project,
        "role": membership.role,
        "has_map": selectors.map_exists(project),
        "box": dict(zip(MAP_BOX_FIELDS, box, strict=True)) if box else {},
        "box_query": urlencode({"map_box": ",".join(map(str, box))}) if box else "",
        "selected": selected,
        "emotions": EMOTIONS,
    }
    return render(request, "audit/map.html", context)


def _map_box(params) -> tuple[float, ...] | None:
    try:
        values = tuple(float(params[name]) for name in MAP_BOX_FIELDS)
    except (KeyError, ValueError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


# Compressed here only: the points hold no secret a compression side channel could reveal, and at
# 100,000 images they shrink from 2.4 MB to a fraction of that.
@gzip_page
@login_required
@require_GET
def map_points(request, project_id: int):
    project = project_selectors.project_get_for_user(request.user, project_id)
    response = JsonResponse(selectors.map_points(project))
    response["Cache-Control"] = "private, no-cache"
    return response
