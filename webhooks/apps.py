from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self):
        from . import receivers  # noqa: F401 (connects this app's receivers to projects' events)
