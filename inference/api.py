"""REST API of the model: which versions exist, and single-image prediction."""

from dataclasses import asdict

from django.conf import settings
from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from projects.models import EMOTIONS, Image

from . import services
from .models import ModelVersion
from .selectors import active_model_version


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id", "name", "input_size", "grayscale", "class_order", "preprocessing", "metrics",
            "is_active", "created_at",
        ]  # fmt: skip


@extend_schema(tags=["models"])
class ModelVersionListView(generics.ListAPIView):
    """Every model version; `is_active` marks the one that labels new images."""

    queryset = ModelVersion.objects.order_by("-created_at")
    serializer_class = ModelVersionSerializer


class ActiveModelVersionView(APIView):
    @extend_schema(
        tags=["models"],
        responses={200: ModelVersionSerializer, 404: OpenApiResponse(description="none active")},
    )
    def get(self, request):
        version = active_model_version()
        if version is None:
            return Response({"detail": "No model version is active."}, status=status.HTTP_404_NOT_FOUND)
        return Response(ModelVersionSerializer(version).data)


@extend_schema_serializer(component_name="PredictInput")  # the schema keeps its name
class PredictSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="A JPEG, PNG or WebP image with one face.")

    def validate_image(self, image):
        if image.size > settings.IMAGE_MAX_BYTES:
            raise serializers.ValidationError(f"The image is over {settings.IMAGE_MAX_BYTES} bytes.")
        return image


class PredictionSerializer(serializers.Serializer):
    emotion = serializers.ChoiceField(choices=EMOTIONS)
    confidence = serializers.FloatField()
    probabilities = serializers.DictField(child=serializers.FloatField())
    face_box = serializers.ListField(child=serializers.IntegerField(), help_text="[x, y, width, height]")
    face_path = serializers.ChoiceField(choices=Image.FacePath.values)
    unsure_reason = serializers.ChoiceField(
        choices=Image.UnsureReason.values,
        allow_blank=True,
        help_text="Empty when the emotion can be trusted; no_face (none found, or a blank image) or "
        "low_confidence (under UNSURE_MIN_CONFIDENCE) when it is only the model's best guess.",
    )
    model_version = serializers.CharField()


class PredictView(APIView):
    """Synchronous prediction for one image (the activities page and quick integrations)."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        tags=["predict"],
        request=PredictSerializer,
        responses={
            200: PredictionSerializer,
            400: OpenApiResponse(description="not a usable image"),
            503: OpenApiResponse(description="no active model"),
        },
    )
    def post(self, request):
        data = PredictSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        image = data.validated_data["image"]
        try:
            prediction = services.image_predict(image.name, image.read())
        except ValueError as exc:
            return Response({"image": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(PredictionSerializer(asdict(prediction)).data)


urlpatterns = [
    path("models/", ModelVersionListView.as_view(), name="api-models"),
    path("models/active/", ActiveModelVersionView.as_view(), name="api-model-active"),
    path("predict/", PredictView.as_view(), name="api-predict"),
]
