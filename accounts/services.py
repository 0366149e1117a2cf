"""API tokens: create (the key is returned once), revoke."""

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
