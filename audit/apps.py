from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "label audit"

    def ready(self):
        from . import receivers  # noqa: F401 (connects this app's receivers to projects' events)
