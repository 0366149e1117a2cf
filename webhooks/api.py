"""REST API views of this app (DRF), routed under /api/v1/.

Any member may list a project's webhooks and their deliveries; only owners change them and only
owners see the signing secret.
"""

from django.urls import path
from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from projects.models import Role
from projects.selectors import membership_get, project_get_for_user

from . import selectors, services
from .models import Event, Webhook, WebhookDelivery

# --- serializers --------------------------------------------------------------------------------


@extend_schema_serializer(component_name="WebhookCreateInput")  # the schema keeps its name
class WebhookCreateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500, help_text="http(s) URL on a public address")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices),
        allow_empty=False,
        required=False,
        help_text="default: every event",
    )


@extend_schema_serializer(component_name="WebhookUpdateInput")  # the schema keeps its name
class WebhookUpdateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500, required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices), allow_empty=False, required=False
    )
    is_active = serializers.BooleanField(required=False)
    rotate_secret = serializers.BooleanField(required=False, default=False, help_text="issue a new secret")


@extend_schema_serializer(component_name="WebhookOutput")  # the schema keeps its name
class WebhookSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    secret = serializers.SerializerMethodField(
        help_text="HMAC-SHA256 key of X-Facelabel-Signature; shown to owners only, null for others"
    )

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "is_active", "secret", "created_by", "created_at"]

    def get_secret(self, webhook: Webhook) -> str | None:
        return webhook.secret if self.context.get("show_secret") else None


@extend_schema_serializer(component_name="WebhookDeliveryOutput")  # the schema keeps its name
class WebhookDeliverySerializer(serializers.ModelSerializer):
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


# --- views --------------------------------------------------------------------------------------


class WebhookListView(APIView):
    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_list",
        responses={200: WebhookSerializer(many=True), 404: ERRORS[404]},
    )
    def get(self, request, project_id: int):
        membership = membership_get(request.user, project_id)
        context = {"show_secret": membership.role == Role.OWNER}
        return Response(
            WebhookSerializer(selectors.webhooks_of(membership.project), many=True, context=context).data
        )

    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_create",
        request=WebhookCreateSerializer,
        responses={201: WebhookSerializer, **ERRORS},
    )
    def post(self, request, project_id: int):
        project = project_get_for_user(request.user, project_id, Role.OWNER)
        data = _valid(WebhookCreateSerializer, request.data)
        webhook = services.webhook_create(project=project, user=request.user, **data)
        return Response(
            WebhookSerializer(webhook, context={"show_secret": True}).data, status=status.HTTP_201_CREATED
        )


class WebhookDetailView(APIView):
    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_retrieve",
        responses={200: WebhookSerializer, 404: ERRORS[404]},
    )
    def get(self, request, project_id: int, webhook_id: int):
        membership = membership_get(request.user, project_id)
        webhook = selectors.webhook_get(membership.project, webhook_id)
        context = {"show_secret": membership.role == Role.OWNER}
        return Response(WebhookSerializer(webhook, context=context).data)

    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_partial_update",
        request=WebhookUpdateSerializer,
        responses={200: WebhookSerializer, **ERRORS},
    )
    def patch(self, request, project_id: int, webhook_id: int):
        project = project_get_for_user(request.user, project_id, Role.OWNER)
        webhook = selectors.webhook_get(project, webhook_id)
        data = _valid(WebhookUpdateSerializer, request.data, partial=True)
        webhook = services.webhook_update(webhook=webhook, **data)
        return Response(WebhookSerializer(webhook, context={"show_secret": True}).data)

    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_destroy",
        responses={204: None, 403: ERRORS[403], 404: ERRORS[404]},
    )
    def delete(self, request, project_id: int, webhook_id: int):
        project = project_get_for_user(request.user, project_id, Role.OWNER)
        services.webhook_delete(webhook=selectors.webhook_get(project, webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListView(APIView):
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
                    "results": WebhookDeliverySerializer(many=True),
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
        return paginator.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


def _valid(serializer_class, data, partial: bool = False) -> dict:
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


urlpatterns = [
    path("projects/<int:project_id>/webhooks/", WebhookListView.as_view(), name="api-webhooks"),
    path(
        "projects/<int:project_id>/webhooks/<int:webhook_id>/",
        WebhookDetailView.as_view(),
        name="api-webhook",
    ),
    path(
        "projects/<int:project_id>/webhooks/<int:webhook_id>/deliveries/",
        WebhookDeliveryListView.as_view(),
        name="api-webhook-deliveries",
    ),
]
