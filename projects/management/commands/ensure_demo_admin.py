import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the demo admin account if it does not exist, with DEMO_ADMIN_PASSWORD or a generated "
        "password that is shown this once."
    )

    def handle(self, *args, **options):
        username = os.getenv("DEMO_ADMIN_USERNAME", "admin")
        site = os.getenv("SITE_URL", "http://localhost:8000")
        users = get_user_model().objects
        if users.filter(username=username).exists():
            # The password is never printed again: it is only known at creation.
            self.stdout.write(
                f"Log in at {site}/ as {username} "
                f"(`manage.py changepassword {username}` sets a new password)."
            )
            return
        # Generated, not a default: a password written in the code or a README is known to everyone.
        password = os.getenv("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.create_superuser(username=username, email="", password=password)
        shown = "the password in DEMO_ADMIN_PASSWORD" if os.getenv("DEMO_ADMIN_PASSWORD") else password
        self.stdout.write(
            f"Created the demo admin. Log in at {site}/ as {username} / {shown}\n"
            "This password is shown only now; `manage.py changepassword` sets a new one."
        )
