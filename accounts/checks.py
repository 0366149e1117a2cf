"""A deployment check (`manage.py check --deploy`) that refuses a missing, published or weak
SECRET_KEY as an error, where Django's own check only warns: whoever knows the key can forge
sessions and password-reset links."""

from django.conf import settings
from django.core.checks import Error, Tags, register

# Keys that were once the embedded default, or that Django's startproject writes.
PUBLISHED_KEYS = {"dev-only-insecure-key-set-SECRET_KEY-in-production-3f9a1c7e5b"}
MIN_LENGTH = 50
MIN_UNIQUE_CHARACTERS = 5


@register(Tags.security, deploy=True)
def secret_key_check(app_configs=None, **kwargs) -> list[Error]:
    key = getattr(settings, "SECRET_KEY", "") or ""
    if not key or getattr(settings, "SECRET_KEY_IS_GENERATED", False):
        return [
            Error(
                "SECRET_KEY is not set in the environment.",
                hint="Set SECRET_KEY to a random value of 50 or more characters, the same for every "
                "web and worker process (the key generated into var/ is for one development machine).",
                id="accounts.E001",
            )
        ]
    if key in PUBLISHED_KEYS or key.startswith("django-insecure-"):
        return [Error("SECRET_KEY is a published default.", hint="Generate a new one.", id="accounts.E002")]
    if len(key) < MIN_LENGTH or len(set(key)) < MIN_UNIQUE_CHARACTERS:
        return [
            Error(
                f"SECRET_KEY is weak: under {MIN_LENGTH} characters or under "
                f"{MIN_UNIQUE_CHARACTERS} different ones.",
                hint='python -c "import secrets; print(secrets.token_urlsafe(50))"',
                id="accounts.E003",
            )
        ]
    return []
