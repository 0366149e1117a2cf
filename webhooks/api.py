"""REST API views of this app (DRF), routed under /api/v1/.

Any member may list a project's webhooks and their deliveries; only owners change them and only
owners see the signing secret.
"""

from contextlib import contextmanager

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from projects.models import Role
from projects.selectors import membership_get, project_get_for_user

from . import selectors, services
from .models import Event, Webhook, WebhookDelivery

# --- serializers --------------------------------------------------------------------------------


class WebhookCreateInput(serializers.Serializer):
    url = serializers.CharField(max_length=500, help_text="http(s) URL on a public address")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices),
        allow_empty=False,
        required=False,
        help_text="default: every event",
    )


class WebhookUpdateInput(serializers.Serializer):
    url = serializers.CharField(max_length=500, required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices), allow_empty=False, required=False
    )
    is_active = serializers.BooleanField(required=False)
    rotate_secret = serializers.BooleanField(required=False, default=False, help_text="issue a new secret")


class WebhookOutput(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    secret = serializers.SerializerMethodField(
        help_text="HMAC-SHA256 key of X-Facelabel-Signature; shown to owners only, null for others"
    )

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "is_active", "secret", "created_by", "created_at"]

    def get_secret(self, webhook: Webhook) -> str | None:
        return webhook.secret if self.context.get("show_secret") else None


class WebhookDeliveryOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "payload",
            "status",
            "attempts",
            "response_status",
            "response_body",
            "error",
            "created_at",
            "last_attempt_at",
            "delivered_at",
        ]


_MESSAGES = serializers.ListField(child=serializers.CharField(), required=False)
ERRORS = {
    400: inline_serializer(
        "WebhookValidationError", {"url": _MESSAGES, "events": _MESSAGES, "non_field_errors": _MESSAGES}
    ),
    403: inline_serializer("WebhookForbidden", {"detail": serializers.CharField()}),
    404: inline_serializer("WebhookNotFound", {"detail": serializers.CharField()}),
}


@contextmanager
def _as_api_errors():
    # Services raise Django's ValidationError; DRF answers 400 only for its own.
    try:
        yield
    except DjangoValidationError as exc:
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        raise ValidationError(detail) from exc


# --- views --------------------------------------------------------------------------------------


class WebhookListApi(APIView):
    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_list",
        responses={200: WebhookOutput(many=True), 404: ERRORS[404]},
    )
    def get(self, request, project_id: int):
        membership = membership_get(request.user, project_id)
        context = {"show_secret": membership.role == Role.OWNER}
        return Response(
            WebhookOutput(selectors.webhooks_of(membership.project), many=True, context=context).data
        )

    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_create",
        request=WebhookCreateInput,
        responses={201: WebhookOutput, **ERRORS},
    )
    def post(self, request, project_id: int):
        project = project_get_for_user(request.user, project_id, Role.OWNER)
        data = _valid(WebhookCreateInput, request.data)
        with _as_api_errors():
            webhook = services.webhook_create(project=project, user=request.user, **data)
        return Response(
            WebhookOutput(webhook, context={"show_secret": True}).data, status=status.HTTP_201_CREATED
        )


class WebhookDetailApi(APIView):
    @extend_schema(
        tags=["webhooks"], operation_id="webhooks_retrieve", responses={200: WebhookOutput, 404: ERRORS[404]}
    )
    def get(self, request, project_id: int, webhook_id: int):
        membership = membership_get(request.user, project_id)
        webhook = selectors.webhook_get(membership.project, webhook_id)
        context = {"show_secret": membership.role == Role.OWNER}
        return Response(WebhookOutput(webhook, context=context).data)

    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_partial_update",
        request=WebhookUpdateInput,
        responses={200: WebhookOutput, **ERRORS},
    )
    def patch(self, request, project_id: int, webhook_id: int):
        project = project_get_for_user(request.user, project_id, Role.OWNER)
        webhook = selectors.webhook_get(project, webhook_id)
        data = _valid(WebhookUpdateInput, request.data, partial=True)
        with _as_api_errors():
            webhook = services.webhook_update(webhook=webhook, **data)
        return Response(WebhookOutput(webhook, context={"show_secret": True}).data)

    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_destroy",
        responses={204: None, 403: ERRORS[403], 404: ERRORS[404]},
    )
    def delete(self, request, project_id: int, webhook_id: int):
        project = project_get_for_user(request.user, project_id, Role.OWNER)
        services.webhook_delete(webhook=selectors.webhook_get(project, webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListApi(APIView):
    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_deliveries_list",
        responses={
            200: inline_serializer(
                "PaginatedWebhookDeliveryList",
                {
                    "count": serializers.IntegerField(),
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": WebhookDeliveryOutput(many=True),
                },
            ),
            404: ERRORS[404],
        },
    )
    def get(self, request, project_id: int, webhook_id: int):
        project = project_get_for_user(request.user, project_id)
        deliveries = selectors.deliveries_of(selectors.webhook_get(project, webhook_id))
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        return paginator.get_paginated_response(WebhookDeliveryOutput(page, many=True).data)


def _valid(serializer_class, data, partial: bool = False) -> dict:
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


urlpatterns = [
    path("projects/<int:project_id>/webhooks/", WebhookListApi.as_view(), name="api-webhooks"),
    path(
        "projects/<int:project_id>/webhooks/<int:webhook_id>/",
        WebhookDetailApi.as_view(),
        name="api-webhook",
    ),
    path(
        "projects/<int:project_id>/webhooks/<int:webhook_id>/deliveries/",
        WebhookDeliveryListApi.as_view(),
        name="api-webhook-deliveries",
    ),
]
