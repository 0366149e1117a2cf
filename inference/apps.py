from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"

    def ready(self):
        from . import receivers  # noqa: F401 (connects this app's receivers to projects' events)
