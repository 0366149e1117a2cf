"""This app's answers to the events of the apps below it (projects/events.py): one line each."""

from django.dispatch import receiver

from projects import events

from . import services


@receiver(events.batch_finished)
def _audit_after_labeling(sender, batch_id: int, **kwargs) -> None:
    services.audit_after_labeling(batch_id)
