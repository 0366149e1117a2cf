"""How the API answers the services' refusals: one exception handler for every app
(REST_FRAMEWORK["EXCEPTION_HANDLER"]), so views call services without wrapping them.

- Django's ValidationError is a 400: field errors by field (`{"url": [...]}`, NON_FIELD_ERRORS
  under DRF's `non_field_errors`), any other under `{"detail": [messages]}`.
- A ServiceError answers its own status with its own body (409 for a conflict, 503 with no model).
- Everything else goes to DRF's own handler.
"""

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler


class ServiceError(Exception):
    """A refusal that is not invalid input: the API answers `status_code` with `body()`."""

    status_code = 400

    def body(self) -> dict:
        return {"detail": str(self)}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ServiceError):
        return Response(exc.body(), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(validation_body(exc))
    return exception_handler(exc, context)


def validation_body(exc: DjangoValidationError) -> dict:
    if not hasattr(exc, "error_dict"):
        return {"detail": exc.messages}
    return {
        (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
        for field, messages in exc.message_dict.items()
    }


# The answers above, as the schema documents them.
class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


ERROR = OpenApiResponse(
    ErrorSerializer, description="Not authenticated (401), forbidden (403), not found (404)"
)
INVALID = OpenApiResponse(
    OpenApiTypes.OBJECT, description="Validation error: `{field: [messages]}` or `{detail: [messages]}`"
)
