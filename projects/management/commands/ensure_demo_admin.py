import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo admin account if it does not exist, and print how to log in."

    def handle(self, *args, **options):
        username = os.getenv("DEMO_ADMIN_USERNAME", "admin")
        password = os.getenv("DEMO_ADMIN_PASSWORD", "facelabel-demo")
        users = get_user_model().objects
        if not users.filter(username=username).exists():
            users.create_superuser(username=username, email="", password=password)
            self.stdout.write(f"Created the demo admin {username!r}.")
        self.stdout.write(
            f"Log in at {os.getenv('SITE_URL', 'http://localhost:8000')}/ as {username} / {password} "
            "(set DEMO_ADMIN_PASSWORD to choose another; an existing account keeps its password)."
        )
