"""Receivers of Django's own signals; each calls one service."""

from django.conf import settings
from django.db.models.signals import pre_save
from django.dispatch import receiver

from . import services


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def revoke_api_tokens_on_password_change(sender, instance, update_fields=None, **kwargs):
    services.api_tokens_revoke_if_password_changed(user=instance, update_fields=update_fields)
