"""/api/v1/: each app keeps its API views and their routes in its own api.py."""

from accounts.api import urlpatterns as accounts_api
from audit.api import urlpatterns as audit_api
from inference.api import urlpatterns as inference_api
from projects.api import urlpatterns as projects_api
from webhooks.api import urlpatterns as webhooks_api

urlpatterns = [*projects_api, *inference_api, *accounts_api, *webhooks_api, *audit_api]
