"""This app's answers to the events of the apps below it (projects/events.py): one line each."""

from django.dispatch import receiver

from projects import events

from . import tasks


@receiver(events.batch_waiting)
def _label_batch(sender, batch_id: int, **kwargs) -> None:
    tasks.queue_batch_labeling(batch_id)
