"""The profile page: a user's API tokens (create, list, revoke), and the password change."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordChangeView
from django.contrib.messages.views import SuccessMessageMixin
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from . import selectors, services
from .models import ApiToken


@never_cache  # the response that shows a new key must not be kept by any cache
@login_required
def profile(request):
    new_key = None
    if request.method == "POST":
        try:
            _, new_key = services.api_token_create(user=request.user, name=request.POST.get("name", ""))
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("accounts:profile")
    # Rendered, not redirected, after a create: the key is shown in this response only.
    context = {
        "tokens": selectors.api_tokens_of(request.user),
        "new_key": new_key,
        "api_docs": reverse("api-docs"),
    }
    return render(request, "accounts/profile.html", context)


@login_required
@require_POST
def token_revoke(request, token_id: int):
    try:
        token = services.api_token_revoke(user=request.user, token_id=token_id)
    except ApiToken.DoesNotExist:
        messages.error(request, _("No such token."))
    else:
        messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect("accounts:profile")


class PasswordChange(SuccessMessageMixin, PasswordChangeView):
    """Django's own view (it keeps this session signed in); every user, not only staff, may use it."""

    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:profile")
    success_message = _("Your password was changed.")
