"""This app's answers to the events of the apps below it (projects/events.py): one line each."""

from django.dispatch import receiver

from projects import events

from . import services


@receiver(events.batch_finished)
def _batch_finished(sender, batch_id: int, **kwargs) -> None:
    services.batch_finished_notify(batch_id)


@receiver(events.export_ready)
def _export_ready(sender, export_id: int, **kwargs) -> None:
    services.export_ready_notify(export_id)
