"""HTML: the dataset health page and its forms. The "likely mislabeled" queue is the review grid
filtered and ordered by the audit (projects/views.py review, static/js/review.js)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from projects import selectors as project_selectors
from projects import services as project_services
from projects.models import EMOTIONS, LabelPolicy, Role

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
