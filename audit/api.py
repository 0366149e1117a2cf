"""REST API of the label audit (DRF), routed under /api/v1/. Per-image scores, flags and
suggestions are fields of the image endpoints (projects/api.py), with their filters."""

import uuid

from django.http import QueryDict
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from projects import selectors as project_selectors
from projects import services as project_services
from projects.api import MAX_ID, READ_ERRORS, WRITE_ERRORS, ProjectScopedView, _valid
from projects.models import EMOTIONS, Emotion, Image, Role

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


class DuplicateCountsSerializer(serializers.Serializer):
    exact = serializers.IntegerField(help_text="Groups of pixel-identical copies")
    near = serializers.IntegerField(help_text="Groups with re-encoded, retouched or shifted copies")


class UnusableCountsSerializer(serializers.Serializer):
    blank = serializers.IntegerField()
    no_face = serializers.IntegerField()
    outlier = serializers.IntegerField()


class ExcludedCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    unusable = serializers.IntegerField()


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
    duplicate_groups = DuplicateCountsSerializer(help_text="Groups of copies by kind (latest health check)")
    duplicate_images = serializers.IntegerField(help_text="Images in a group of copies")
    conflicting_groups = serializers.IntegerField(help_text="Groups whose members carry different labels")
    cross_batch_groups = serializers.IntegerField(help_text="Groups with members in more than one batch")
    unusable = UnusableCountsSerializer(help_text="Images no use as faces, by reason")
    excluded = ExcludedCountsSerializer(help_text="Images a reviewer excluded from the emotion folders")


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
            **_dataset_counts(health["dataset"]),
        }
        return Response(HealthSerializer(body).data)


def _dataset_counts(counts: dict) -> dict:
    return {
        "duplicate_groups": {"exact": counts["exact_groups"], "near": counts["near_groups"]},
        "duplicate_images": counts["duplicate_images"],
        "conflicting_groups": counts["conflicting_groups"],
        "cross_batch_groups": counts["cross_batch_groups"],
        "unusable": {row["reason"]: row["count"] for row in counts["unusable"]},
        "excluded": {
            "total": counts["excluded"],
            "duplicate": counts["excluded_duplicate"],
            "unusable": counts["excluded_unusable"],
        },
    }


class DuplicateMemberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    batch = serializers.IntegerField(source="batch_id")
    original_name = serializers.CharField()
    original_label = serializers.CharField()
    final_label = serializers.CharField()
    excluded_reason = serializers.CharField()
    unusable_reason = serializers.CharField()


class DuplicateGroupSerializer(serializers.Serializer):
    group = serializers.IntegerField(source="number", help_text="The smallest image id in the group")
    # A plain string: a second choice field for Image.DuplicateKind would give the schema a second
    # enum name for the image's duplicate_kind (a deploy-check warning).
    kind = serializers.CharField(help_text="exact (same pixels) or near (re-encoded, retouched or shifted)")
    conflicting = serializers.BooleanField(help_text="Members carry different original or final labels")
    cross_batch = serializers.BooleanField(help_text="Members sit in more than one batch")
    size = serializers.SerializerMethodField()
    members = DuplicateMemberSerializer(many=True)

    def get_size(self, group) -> int:
        return len(group.members)


class DuplicatePageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Groups in all")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = DuplicateGroupSerializer(many=True)


MAX_DUPLICATES_PAGE = 100


class DuplicateListView(ProjectScopedView):
    @extend_schema(
        tags=["audit"],
        parameters=[
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int, description=f"At most {MAX_DUPLICATES_PAGE} groups"),
        ],
        responses={200: DuplicatePageSerializer, **READ_ERRORS},
        description="The latest health check's groups of copies with their members: groups whose "
        "labels conflict first, then groups across batches (a leak), then the rest.",
    )
    def get(self, request, project_id: int):
        project = self.project()
        size = _page_size(request.query_params.get("page_size"))
        page = selectors.duplicate_groups_page(project, request.query_params.get("page"), size)
        body = {
            "count": page.paginator.count,
            "next": _page_link(request, page.next_page_number()) if page.has_next() else None,
            "previous": _page_link(request, page.previous_page_number()) if page.has_previous() else None,
            "results": page.object_list,
        }
        return Response(DuplicatePageSerializer(body).data)


def _page_size(value) -> int:
    try:
        return min(max(int(value), 1), MAX_DUPLICATES_PAGE)
    except (TypeError, ValueError):
        return selectors.DUPLICATE_GROUPS_PER_PAGE


def _page_link(request, number: int) -> str:
    return replace_query_param(request.build_absolute_uri(), "page", number)


P = "projects/<int:project_id>/"
urlpatterns = [
    path(P + "audits/", AuditListView.as_view(), name="api-audits"),
    path(P + "audits/<int:run_id>/", AuditDetailView.as_view(), name="api-audit"),
    path(P + "health/", HealthView.as_view(), name="api-health"),
    path(P + "duplicates/", DuplicateListView.as_view(), name="api-duplicates"),
]


# --- Dataset health actions: keep one duplicate, resolve a group, exclude and include images -----


class DuplicateKeepSerializer(serializers.Serializer):
    image = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="The member to keep")


class DuplicateResolveSerializer(serializers.Serializer):
    label = serializers.ChoiceField(choices=Emotion.choices, help_text="The label every member gets")


class ImageChoiceSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        allow_empty=False,
        max_length=1000,
        required=False,
        help_text="Image ids (other projects' ids are ignored)",
    )
    filter = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=4000,
        help_text="Instead of ids: every image matching the review grid's query string, e.g. "
        "`unusable=yes` (an empty string matches every image)",
    )

    def validate(self, data):
        if ("ids" in data) == ("filter" in data):
            raise serializers.ValidationError(
                "Send either ids (a list of image ids) or filter (the review grid's query string)."
            )
        return data


class ImageExcludeSerializer(ImageChoiceSerializer):
    reason = serializers.ChoiceField(choices=Image.ExcludedReason.choices)


class HealthActionSerializer(serializers.Serializer):
    changed = serializers.IntegerField(help_text="Images whose label or exclusion changed")
    action = serializers.UUIDField(
        allow_null=True, help_text="The undo step (null when nothing changed); undo with images/undo/"
    )


def _action_done(project, user, changed: int) -> Response:
    action: uuid.UUID | None = None
    if changed:
        action = project_selectors.label_action_to_undo(project, user)
    return Response(HealthActionSerializer({"changed": changed, "action": action}).data)


def _chosen_images(project, data: dict):
    if "filter" in data:
        filters = project_selectors.ImageFilters.from_query(QueryDict(data["filter"]))
        return project_selectors.images_filtered(project, filters)
    return Image.objects.filter(project=project, id__in=data["ids"])


class DuplicateKeepView(ProjectScopedView):
    @extend_schema(
        tags=["audit"],
        request=DuplicateKeepSerializer,
        responses={200: HealthActionSerializer, **WRITE_ERRORS},
        description="Keep one image of a duplicate group and exclude the others from the export's "
        "emotion folders (reviewers and owners); one undo step. 404 for an unknown group, 400 "
        "when the image is not in it.",
    )
    def post(self, request, project_id: int, group: int):
        project = self.project(Role.REVIEWER)
        selectors.duplicate_group_get(project, group)
        data = _valid(DuplicateKeepSerializer, request.data)
        changed = project_services.duplicate_keep(
            project=project, user=request.user, image_id=data["image"], group=group
        )
        return _action_done(project, request.user, changed)


class DuplicateResolveView(ProjectScopedView):
    @extend_schema(
        tags=["audit"],
        request=DuplicateResolveSerializer,
        responses={200: HealthActionSerializer, **WRITE_ERRORS},
        description="Give every member of a duplicate group the same reviewed label, so it no longer "
        "conflicts (reviewers and owners); one undo step.",
    )
    def post(self, request, project_id: int, group: int):
        project = self.project(Role.REVIEWER)
        selectors.duplicate_group_get(project, group)
        data = _valid(DuplicateResolveSerializer, request.data)
        changed = project_services.duplicate_resolve(
            project=project, user=request.user, group=group, label=data["label"]
        )
        return _action_done(project, request.user, changed)


class ImageExcludeView(ProjectScopedView):
    @extend_schema(
        tags=["audit"],
        request=ImageExcludeSerializer,
        responses={200: HealthActionSerializer, **WRITE_ERRORS},
        description="Exclude images (by ids, or all matching a filter such as `unusable=yes`) from "
        "the export's emotion folders; the project's export_excluded says where they go instead. "
        "Images already excluded keep their reason. One undo step, however many images.",
    )
    def post(self, request, project_id: int):
        project = self.project(Role.REVIEWER)
        data = _valid(ImageExcludeSerializer, request.data)
        images = _chosen_images(project, data)
        changed = project_services.images_exclude(
            project=project, user=request.user, images=images, reason=data["reason"]
        )
        return _action_done(project, request.user, changed)


class ImageIncludeView(ProjectScopedView):
    @extend_schema(
        tags=["audit"],
        request=ImageChoiceSerializer,
        responses={200: HealthActionSerializer, **WRITE_ERRORS},
        description="Put excluded images (by ids, or all matching a filter) back into the export's "
        "emotion folders. One undo step.",
    )
    def post(self, request, project_id: int):
        project = self.project(Role.REVIEWER)
        data = _valid(ImageChoiceSerializer, request.data)
        changed = project_services.images_include(
            project=project, user=request.user, images=_chosen_images(project, data)
        )
        return _action_done(project, request.user, changed)


urlpatterns += [
    path(P + "duplicates/<int:group>/keep/", DuplicateKeepView.as_view(), name="api-duplicate-keep"),
    path(P + "duplicates/<int:group>/resolve/", DuplicateResolveView.as_view(), name="api-duplicate-resolve"),
    path(P + "images/exclude/", ImageExcludeView.as_view(), name="api-images-exclude"),
    path(P + "images/include/", ImageIncludeView.as_view(), name="api-images-include"),
]
