from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.throttling import SimpleRateThrottle

from .models import ApiToken, token_digest

# Writing last_used_at on every request would turn each API read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenFailureThrottle(SimpleRateThrottle):
    """Counts wrong, revoked and expired API tokens per client address (rate `token_failures`).
    Over the rate, the address is refused every token, right ones too, until its failures age
    out: what django-axes does for passwords, so keys cannot be guessed at full speed."""

    scope = "token_failures"

    def get_cache_key(self, request, view=None) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def locked_out(self, request) -> bool:
        now = self.timer()
        history = self.cache.get(self.get_cache_key(request), [])
        return sum(1 for moment in history if moment > now - self.duration) >= self.num_requests

    def record_failure(self, request) -> None:
        self.allow_request(request, None)  # records the failure while under the rate


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <key>` (or `Bearer <key>`). A wrong, revoked or expired key is a 401;
    too many of them from one address, a 429."""

    keywords = ("token", "bearer")

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].decode(errors="replace").lower() not in self.keywords:
            return None
        throttle = TokenFailureThrottle()
        if throttle.locked_out(request):
            raise exceptions.Throttled(
                wait=throttle.duration, detail="Too many invalid API tokens from this address."
            )
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the header as `Authorization: Token <key>`.")
        key = parts[1].decode(errors="replace")
        token = ApiToken.objects.select_related("user").filter(digest=token_digest(key)).first()
        problem = _refusal(token)
        if problem:
            throttle.record_failure(request)
            raise exceptions.AuthenticationFailed(problem)
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(id=token.id).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate) rather than 403 when credentials are missing.
        return "Token"


def _refusal(token: ApiToken | None) -> str:
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return "Invalid or revoked API token."
    max_age_days = settings.API_TOKEN_MAX_AGE_DAYS
    if max_age_days and timezone.now() - token.created_at > timedelta(days=max_age_days):
        return "This API token has expired; create a new one on your profile page."
    return ""
