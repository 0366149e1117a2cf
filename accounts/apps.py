from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        from . import checks, signals  # noqa: F401 (registers the deployment checks and receivers)
