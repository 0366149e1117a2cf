"""REST API views of this app (DRF), routed under /api/v1/: a user's own API tokens."""

from django.http import Http404
from django.urls import path
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from facelabel.errors import ERROR, INVALID

from . import selectors, services
from .models import ApiToken


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Token <key>` in the schema (spectacular finds it on import)."""

    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")  # noqa: S106 (a scheme name)


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="Shown this once: only its hash is stored.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiTokenListView(APIView):
    @extend_schema(tags=["tokens"], responses={200: ApiTokenSerializer(many=True), 401: ERROR})
    def get(self, request):
        return Response(ApiTokenSerializer(selectors.api_tokens_of(request.user), many=True).data)

    @extend_schema(
        tags=["tokens"],
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer, 400: INVALID, 401: ERROR},
    )
    def post(self, request):
        serializer = ApiTokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, key = services.api_token_create(user=request.user, **serializer.validated_data)
        token.key = key
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)


class ApiTokenDetailView(APIView):
    @extend_schema(tags=["tokens"], responses={204: None, 401: ERROR, 404: ERROR})
    def delete(self, request, token_id: int):
        """Revoke the token. Other users' tokens do not exist for you (404)."""
        try:
            services.api_token_revoke(user=request.user, token_id=token_id)
        except ApiToken.DoesNotExist:
            raise Http404("No such token.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("tokens/", ApiTokenListView.as_view(), name="api-tokens"),
    path("tokens/<int:token_id>/", ApiTokenDetailView.as_view(), name="api-token"),
]
