"""REST API views of this app (DRF), routed under /api/v1/."""

urlpatterns: list = []
