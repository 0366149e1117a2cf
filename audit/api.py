"""REST API of the label audit (DRF), routed under /api/v1/. Per-image scores, flags and
suggestions are fields of the image endpoints (projects/api.py), with their filters."""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from projects.api import READ_ERRORS, WRITE_ERRORS, ProjectScopedView, _valid
from projects.models import EMOTIONS, Role

from . import selectors, services
from .models import AuditRun


class AuditRunSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = AuditRun
        fields = [
            "id",
            "kind",
            "status",
            "image_count",
            "flagged_count",
            "summary",
            "error",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "seconds",
        ]
        read_only_fields = fields


class AuditStartSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=AuditRun.Kind.choices,
        default=AuditRun.Kind.MODEL,
        help_text="model: the labeling model's probabilities; cross_validated: K folds of a light "
        "classifier on the model's features, for images the model may have trained on.",
    )


class ClassHealthSerializer(serializers.Serializer):
    emotion = serializers.ChoiceField(choices=EMOTIONS)
    images = serializers.IntegerField(help_text="Images with this original label in the audit")
    threshold = serializers.FloatField(allow_null=True, help_text="Mean probability of the class")
    noise_rate = serializers.FloatField(help_text="Estimated share of these labels that are wrong")


class FlaggedSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    open = serializers.IntegerField(help_text="Flagged and not reviewed yet")
    took_suggestion = serializers.IntegerField()
    kept_original = serializers.IntegerField()
    confident = serializers.IntegerField(help_text="Suggestions the suggestions policy takes")


class HealthSerializer(serializers.Serializer):
    run = AuditRunSerializer(allow_null=True, help_text="The latest finished audit")
    in_progress = AuditRunSerializer(allow_null=True)
    label_policy = serializers.CharField()
    classes = ClassHealthSerializer(many=True)
    flagged = FlaggedSerializer()
    estimated_joint = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="Images by original label (rows) and estimated true label (columns), in `emotions` order",
    )
    final_vs_original = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="Images by original label (rows) and final label under the policy (columns)",
    )
    changed = serializers.IntegerField(help_text="Images whose final label differs from the original")
    emotions = serializers.ListField(child=serializers.CharField())


class AuditListView(ProjectScopedView, generics.ListAPIView):
    serializer_class = AuditRunSerializer

    def get_queryset(self):
        return selectors.audit_runs(self.project())

    @extend_schema(tags=["audit"], responses={200: AuditRunSerializer(many=True), **READ_ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["audit"],
        request=AuditStartSerializer,
        responses={202: AuditRunSerializer, **WRITE_ERRORS},
        description="Start a label audit (reviewers and owners); poll the run until it is done.",
    )
    def post(self, request, project_id: int):
        project = self.project(Role.REVIEWER)
        data = _valid(AuditStartSerializer, request.data)
        run = services.audit_start(project=project, user=request.user, kind=data["kind"])
        return Response(AuditRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class AuditDetailView(ProjectScopedView):
    @extend_schema(tags=["audit"], responses={200: AuditRunSerializer, **READ_ERRORS})
    def get(self, request, project_id: int, run_id: int):
        return Response(AuditRunSerializer(selectors.audit_run_get(self.project(), run_id)).data)


class HealthView(ProjectScopedView):
    @extend_schema(
        tags=["audit"],
        responses={200: HealthSerializer, **READ_ERRORS},
        description="Dataset health: the latest audit's noise estimates and the review's progress.",
    )
    def get(self, request, project_id: int):
        project = self.project()
        health = selectors.dataset_health(project)
        body = {
            "run": health["run"],
            "in_progress": health["in_progress"],
            "label_policy": project.label_policy,
            "classes": health["classes"],
            "flagged": health["flagged"],
            "estimated_joint": [[cell["count"] for cell in cells] for _, cells in health["joint"]],
            "final_vs_original": [row for _, row in health["changes"]["rows"]],
            "changed": health["changes"]["changed"],
            "emotions": list(EMOTIONS),
        }
        return Response(HealthSerializer(body).data)


P = "projects/<int:project_id>/"
urlpatterns = [
    path(P + "audits/", AuditListView.as_view(), name="api-audits"),
    path(P + "audits/<int:run_id>/", AuditDetailView.as_view(), name="api-audit"),
    path(P + "health/", HealthView.as_view(), name="api-health"),
]
