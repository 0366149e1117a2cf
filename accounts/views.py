"""The profile page: a user's API tokens (create, list, revoke)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
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
    context = {"tokens": selectors.api_tokens_of(request.user), "new_key": new_key}
    return render(request, "accounts/profile.html", context)


@login_required
@require_POST
def token_revoke(request, token_id: int):
    try:
        token = services.api_token_revoke(user=request.user, token_id=token_id)
    except ApiToken.DoesNotExist:
        messages.error(request, "No such token.")
    else:
        messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("accounts:profile")
