"""/api/v1/: every app's API views (each app keeps them in its api.py)."""

urlpatterns: list = []
