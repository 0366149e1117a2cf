"""API tokens: create (the key is returned once), revoke, and revoke them all when the user's
password changes."""

import secrets

from django.core.exceptions import ValidationError
from django.utils import timezone

from .models import ApiToken, token_digest

KEY_PREFIX = "fl_"


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    name = name.strip()
    if not name:
        raise ValidationError("A token needs a name, so you can tell your tokens apart.")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:100], digest=token_digest(key), prefix=key[:10])
    return token, key


def api_token_revoke(*, user, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(user=user, id=token_id).first()
    if token is None:
        raise ApiToken.DoesNotExist
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_tokens_revoke_if_password_changed(*, user, update_fields=None) -> int:
    """Called as `user` is about to be saved: when the password being saved differs from the
    stored one, revoke all of the user's tokens, as Django ends their sessions. A leaked token must
    not outlive the password change its owner makes after noticing. Returns how many."""
    if user.pk is None or (update_fields is not None and "password" not in update_fields):
        return 0
    stored = type(user).objects.filter(pk=user.pk).values_list("password", flat=True).first()
    if stored is None or stored == user.password:
        return 0
    return ApiToken.objects.filter(user_id=user.pk, revoked_at=None).update(revoked_at=timezone.now())
