"""REST API views of this app (DRF), routed under /api/v1/.

Each view checks membership through the selectors (404 for other teams, 403 below the needed
role), validates its input with a serializer, calls one service or selector and answers with an
output serializer. Input serializers list only the fields a client may set, so `project`,
`status`, `predicted_label` and the like in a body are ignored.
"""

from django.conf import settings
from django.core.exceptions import TooManyFilesSent
from django.http import Http404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from facelabel.errors import ERROR, INVALID

from . import exports, selectors, services
from .decoding import check_upload_request, content_length, too_many_files
from .models import (
    EMOTIONS,
    Batch,
    Emotion,
    ExcludedExport,
    Export,
    Image,
    LabelChange,
    LabelPolicy,
    Membership,
    Project,
    Role,
)

# Ids beyond a 64-bit integer cannot name a row, and the database driver raises an overflow
# error (a 500) on them where Django does not catch it first (`in` lookups, the batch filter).
MAX_ID = 2**63 - 1


# --- Errors, as the schema documents them ------------------------------------------------------


STALE = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="A label in `shown` is no longer final: `{detail: [message], final_labels: {id: label}}`",
)
READ_ERRORS = {401: ERROR, 404: ERROR}
WRITE_ERRORS = {400: INVALID, 401: ERROR, 403: ERROR, 404: ERROR}


class ProjectScopedView(APIView):
    def project(self, role: str = Role.VIEWER) -> Project:
        return selectors.project_get_for_user(self.request.user, self.kwargs["project_id"], role)


class ImagePagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


# --- Projects -----------------------------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    label_policy_chosen_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, help_text="The owner who changed the policy, if one did."
    )

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "relabel_on_new_model",
            "label_policy",
            "label_policy_chosen_at",
            "label_policy_chosen_by",
            "export_excluded",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, default="", allow_blank=True, max_length=10_000)


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    relabel_on_new_model = serializers.BooleanField(required=False)
    label_policy = serializers.ChoiceField(
        choices=LabelPolicy.choices,
        required=False,
        help_text="Which label an unreviewed image exports with. New projects start with the policy "
        "that agreed best with crowd votes (the project page quotes the figures).",
    )
    export_excluded = serializers.ChoiceField(
        choices=ExcludedExport.choices,
        required=False,
        help_text="Images a reviewer excluded (duplicates, unusable): in an excluded/ folder of the "
        "export, or left out of its folders; the manifest lists them either way.",
    )


class ProjectListView(generics.ListAPIView):
    serializer_class = ProjectSerializer

    def get_queryset(self):
        # The image count's GROUP BY drops Meta.ordering; pages need a stable order.
        projects = selectors.projects_for_user(self.request.user).select_related(
            "created_by", "label_policy_chosen_by"
        )
        return projects.order_by("-created_at", "-id")

    @extend_schema(tags=["projects"], responses={200: ProjectSerializer(many=True), 401: ERROR})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["projects"],
        request=ProjectCreateSerializer,
        responses={201: ProjectSerializer, 400: INVALID, 401: ERROR},
    )
    def post(self, request):
        data = _valid(ProjectCreateSerializer, request.data)
        project = services.project_create(user=request.user, **data)
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(ProjectScopedView):
    @extend_schema(tags=["projects"], responses={200: ProjectSerializer, **READ_ERRORS})
    def get(self, request, project_id: int):
        return Response(ProjectSerializer(self.project()).data)

    @extend_schema(
        tags=["projects"], request=ProjectUpdateSerializer, responses={200: ProjectSerializer, **WRITE_ERRORS}
    )
    def patch(self, request, project_id: int):
        project = self.project(Role.OWNER)
        data = _valid(ProjectUpdateSerializer, request.data)
        project = services.project_update(project=project, user=request.user, **data)
        return Response(ProjectSerializer(project).data)

    @extend_schema(tags=["projects"], responses={204: None, 401: ERROR, 403: ERROR, 404: ERROR})
    def delete(self, request, project_id: int):
        services.project_delete(project=self.project(Role.OWNER))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- Members ------------------------------------------------------------------------------------


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["user_id", "username", "role", "created_at"]
        read_only_fields = fields


class MemberCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class MemberListView(ProjectScopedView):
    @extend_schema(tags=["members"], responses={200: MemberSerializer(many=True), **READ_ERRORS})
    def get(self, request, project_id: int):
        return Response(MemberSerializer(selectors.members_of(self.project()), many=True).data)

    @extend_schema(
        tags=["members"],
        request=MemberCreateSerializer,
        responses={201: MemberSerializer, **WRITE_ERRORS},
        description="Add a member, or change the role of one already in the project.",
    )
    def post(self, request, project_id: int):
        project = self.project(Role.OWNER)
        data = _valid(MemberCreateSerializer, request.data)
        membership = services.member_set(project=project, **data)
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(ProjectScopedView):
    def membership(self, project: Project) -> Membership:
        membership = selectors.members_of(project).filter(user_id=self.kwargs["user_id"]).first()
        if membership is None:
            raise Http404("That user is not a member of this project.")
        return membership

    @extend_schema(
        tags=["members"], request=MemberUpdateSerializer, responses={200: MemberSerializer, **WRITE_ERRORS}
    )
    def patch(self, request, project_id: int, user_id: int):
        project = self.project(Role.OWNER)
        username = self.membership(project).user.username
        data = _valid(MemberUpdateSerializer, request.data)
        membership = services.member_set(project=project, username=username, role=data["role"])
        return Response(MemberSerializer(membership).data)

    @extend_schema(tags=["members"], responses={204: None, **WRITE_ERRORS})
    def delete(self, request, project_id: int, user_id: int):
        project = self.project(Role.OWNER)
        services.member_remove(project=project, user_id=self.membership(project).user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Batches ------------------------------------------------------------------------------------


class RejectedFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    reason = serializers.CharField()
    imported = serializers.BooleanField(required=False, help_text="Imported, with a note.")


class BatchSerializer(serializers.ModelSerializer):
    uploaded_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    rejected = serializers.SerializerMethodField(
        help_text="The first page of rejected files; all of them: .../batches/{id}/rejected/"
    )

    class Meta:
        model = Batch
        fields = [
            "id",
            "status",
            "image_count",
            "rejected",
            "rejected_count",
            "uploaded_at",
            "uploaded_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(RejectedFileSerializer(many=True))
    def get_rejected(self, batch: Batch) -> list[dict]:
        return list(selectors.batch_rejections(batch).object_list)


class BatchUploadSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True, use_url=False),
        help_text="Many JPGs (or PNG/WebP), or one ZIP whose folder names are the original labels.",
    )
    upload_token = serializers.UUIDField(
        required=False, help_text="Send the same token again (a retry) and get the same batch."
    )


class BatchCreatedSerializer(serializers.Serializer):
    batch = serializers.IntegerField()
    images = serializers.IntegerField()
    rejected = RejectedFileSerializer(many=True, help_text="The first page of rejected files.")
    rejected_count = serializers.IntegerField()


class UploadInProgressSerializer(serializers.Serializer):
    detail = serializers.CharField()
    batch = serializers.IntegerField()
    images = serializers.IntegerField(help_text="Images of the upload stored so far.")


class BatchErrorSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    original_name = serializers.CharField()
    error = serializers.CharField()


class BatchProgressSerializer(serializers.Serializer):
    batch = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Batch.Status.choices)
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    labeled = serializers.IntegerField()
    failed = serializers.IntegerField()
    pending = serializers.IntegerField()
    images_per_second = serializers.FloatField(allow_null=True)
    errors = BatchErrorSerializer(many=True)
    rejected = RejectedFileSerializer(many=True, help_text="The first page of rejected files.")
    rejected_count = serializers.IntegerField()


class BatchListView(ProjectScopedView, generics.ListAPIView):
    serializer_class = BatchSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return self.project().batches.select_related("uploaded_by")

    @extend_schema(tags=["batches"], responses={200: BatchSerializer(many=True), **READ_ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["batches"],
        request={"multipart/form-data": BatchUploadSerializer},
        responses={201: BatchCreatedSerializer, 409: UploadInProgressSerializer, 413: ERROR, **WRITE_ERRORS},
        description="Upload images into a new batch; the worker labels them. Reviewers and owners. "
        "The same `upload_token` sent again returns the batch once its upload is complete, imports "
        "what is missing if it broke off, and answers 409 while it is still being imported.",
    )
    def post(self, request, project_id: int):
        project = self.project(Role.REVIEWER)
        length = content_length(request)
        check_upload_request(None, length)  # before request.FILES, so the body is never read
        try:
            data = _valid(BatchUploadSerializer, request.data)
        except TooManyFilesSent:
            raise too_many_files() from None
        check_upload_request(len(data["files"]), length)
        batch = services.batch_create(
            project=project, user=request.user, files=data["files"], upload_token=data.get("upload_token")
        )
        body = {
            "batch": batch.id,
            "images": batch.image_count,
            "rejected": selectors.batch_rejections(batch).object_list,
            "rejected_count": batch.rejected_count,
        }
        return Response(BatchCreatedSerializer(body).data, status=status.HTTP_201_CREATED)


class BatchDetailView(ProjectScopedView):
    @extend_schema(tags=["batches"], responses={200: BatchProgressSerializer, **READ_ERRORS})
    def get(self, request, project_id: int, batch_id: int):
        batch = selectors.batch_get(self.project(), batch_id)
        return Response(BatchProgressSerializer(selectors.batch_progress(batch)).data)


class RejectionPagination(PageNumberPagination):
    def get_page_size(self, request) -> int:
        return settings.UPLOAD_REJECTIONS_PAGE


class BatchRejectedView(ProjectScopedView, generics.ListAPIView):
    serializer_class = RejectedFileSerializer
    pagination_class = RejectionPagination

    def get_queryset(self):
        return selectors.batch_get(self.project(), self.kwargs["batch_id"]).rejected

    @extend_schema(
        tags=["batches"],
        responses={200: RejectedFileSerializer(many=True), **READ_ERRORS},
        description="The files the upload rejected or imported with a note, a page at a time (the "
        "batch keeps the first UPLOAD_REJECTIONS_KEPT; its rejected_count counts them all).",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- Images -------------------------------------------------------------------------------------


class ImageSerializer(serializers.ModelSerializer):
    final_label = serializers.CharField(read_only=True)
    reviewed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    # A plain string: the exclude action's `reason` documents the choices (one enum name for them
    # in the schema, which the deploy check wants).
    excluded_reason = serializers.CharField(
        read_only=True, help_text="Why a reviewer excluded the image: duplicate, unusable, or empty"
    )

    class Meta:
        model = Image
        fields = [
            "id",
            "batch",
            "original_name",
            "status",
            "original_label",
            "predicted_label",
            "reviewed_label",
            "final_label",
            "confidence",
            "reviewed_by",
            "label_quality",
            "likely_mislabeled",
            "suggested_label",
            "suggestion_confident",
            "unsure_reason",
            "duplicate_group",
            "duplicate_kind",
            "duplicate_conflicting",
            "duplicate_cross_batch",
            "unusable_reason",
            "excluded_reason",
            "map_x",
            "map_y",
        ]
        read_only_fields = fields


class ImageDetailSerializer(ImageSerializer):
    probabilities = serializers.DictField(
        child=serializers.FloatField(), allow_null=True, help_text="All seven emotions, summing to 1."
    )
    face_box = serializers.ListField(
        child=serializers.IntegerField(), allow_null=True, help_text="[x, y, width, height] in pixels."
    )
    model_version = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta(ImageSerializer.Meta):
        fields = [
            *ImageSerializer.Meta.fields,
            "probabilities",
            "face_box",
            "face_path",
            "model_version",
            "error",
            "width",
            "height",
            "labeled_at",
            "reviewed_at",
        ]
        read_only_fields = fields


class ImageReviewSerializer(serializers.Serializer):
    reviewed_label = serializers.ChoiceField(
        choices=Emotion.choices, allow_null=True, help_text="An emotion, or null to clear the review."
    )


class BulkAcceptSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), allow_empty=False, max_length=1000
    )
    label = serializers.ChoiceField(
        choices=Emotion.choices,
        allow_null=True,
        required=False,
        default=None,
        help_text="The label to set; null (the default) accepts each image's final label under the "
        "project's label policy.",
    )
    shown = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=10),
        required=False,
        default=None,
        allow_null=True,
        help_text="With label null: {image id: the final label your client showed}. If any of them "
        "is no longer the final label, nothing is accepted and the answer is 409 with the labels now.",
    )

    def validate_shown(self, value):
        if value is None:
            return None
        try:
            return {int(image_id): label for image_id, label in value.items()}
        except ValueError as exc:
            raise serializers.ValidationError("The keys are image ids.") from exc


class BulkAcceptedSerializer(serializers.Serializer):
    changed = serializers.IntegerField()


IMAGE_FILTERS = [
    OpenApiParameter("predicted", enum=EMOTIONS, description="Model label"),
    OpenApiParameter("original", enum=EMOTIONS, description="Original label (from the ZIP folder)"),
    OpenApiParameter(
        "final",
        enum=[*EMOTIONS, "unsure"],
        description="Final label (the reviewer's, else as the project's policy says); unsure: none, "
        "because the model's was not trusted (what the export puts in unsure/)",
    ),
    OpenApiParameter("disagrees", bool, description="Original and model labels differ"),
    OpenApiParameter("likely_mislabeled", bool, description="The latest label audit flagged the original"),
    OpenApiParameter("reviewed", enum=["yes", "no"]),
    OpenApiParameter(
        "unsure",
        enum=list(selectors.UNSURE_CHOICES),
        description="yes: the model's label is not used (no face found, or too unsure; exported "
        "to unsure/ unless reviewed); no: it is; or one reason",
    ),
    OpenApiParameter("status", enum=Image.Status.values),
    OpenApiParameter("min_confidence", float),
    OpenApiParameter("max_confidence", float),
    OpenApiParameter("batch", int),
    OpenApiParameter(
        "duplicates",
        enum=list(selectors.DUPLICATE_CHOICES),
        description="yes: in a group of copies (the latest health check); no: not; or one kind of "
        "group (conflicting labels, across batches, exact, near)",
    ),
    OpenApiParameter("duplicate_group", int, description="The members of one group of copies"),
    OpenApiParameter("unusable", enum=list(selectors.UNUSABLE_CHOICES)),
    OpenApiParameter("excluded", enum=list(selectors.EXCLUDED_CHOICES)),
    OpenApiParameter("map_box", str, description="x0,y0,x1,y1: a rectangle of the dataset map (0 to 1)"),
    OpenApiParameter(
        "order",
        enum=list(selectors.IMAGE_ORDERS),
        description="confidence: least sure first; label_quality: least trusted original label first",
    ),
]


class ImageListView(ProjectScopedView, generics.ListAPIView):
    serializer_class = ImageSerializer
    pagination_class = ImagePagination

    def get_queryset(self):
        filters = selectors.ImageFilters.from_query(self.request.query_params)
        return selectors.images_filtered(self.project(), filters)

    @extend_schema(
        tags=["images"],
        parameters=IMAGE_FILTERS,
        responses={200: ImageSerializer(many=True), **READ_ERRORS},
        description="The review grid's images and filters; invalid filter values are ignored.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ImageDetailView(ProjectScopedView):
    @extend_schema(tags=["images"], responses={200: ImageDetailSerializer, **READ_ERRORS})
    def get(self, request, project_id: int, image_id: int):
        image = selectors.image_get(self.project(), image_id)
        return Response(ImageDetailSerializer(image).data)

    @extend_schema(
        tags=["images"],
        request=ImageReviewSerializer,
        responses={200: ImageDetailSerializer, **WRITE_ERRORS},
        description="Set the reviewed label (reviewers and owners); null clears the review.",
    )
    def patch(self, request, project_id: int, image_id: int):
        image = selectors.image_get(self.project(Role.REVIEWER), image_id)
        label = _valid(ImageReviewSerializer, request.data)["reviewed_label"]
        if label is None:
            image = services.image_clear_review(image=image, user=request.user)
        else:
            image = services.image_set_label(image=image, user=request.user, label=label)
        return Response(ImageDetailSerializer(image).data)


class ImageBulkAcceptView(ProjectScopedView):
    @extend_schema(
        tags=["images"],
        request=BulkAcceptSerializer,
        responses={200: BulkAcceptedSerializer, 409: STALE, **WRITE_ERRORS},
        description="Review many images at once: set `label`, or accept each image's final label "
        "under the project's label policy (what the grid's Accept does), checked against `shown`.",
    )
    def post(self, request, project_id: int):
        project = self.project(Role.REVIEWER)
        data = _valid(BulkAcceptSerializer, request.data)
        if data["label"] is None:
            changed = services.images_accept(
                project=project,
                image_ids=data["ids"],
                user=request.user,
                shown=data["shown"],
                how=LabelChange.How.BULK,
            )
        else:
            changed = services.images_set_label(
                project=project, image_ids=data["ids"], user=request.user, label=data["label"]
            )
        return Response(BulkAcceptedSerializer({"changed": changed}).data)


class LabelChangeSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = LabelChange
        fields = ["id", "at", "user", "from_label", "to_label", "how", "action", "undone_at"]
        read_only_fields = fields


class ImageHistoryView(ProjectScopedView, generics.ListAPIView):
    serializer_class = LabelChangeSerializer
    pagination_class = ImagePagination

    def get_queryset(self):
        return selectors.image_history(selectors.image_get(self.project(), self.kwargs["image_id"]))

    @extend_schema(
        tags=["images"],
        responses={200: LabelChangeSerializer(many=True), **READ_ERRORS},
        description="Every change of the image's reviewed label, newest first: who, when, from, to "
        "and how (single, keyboard, bulk, accept, policy, undo, redo). Empty labels mean no reviewed "
        "label. Rows of one action share `action`; `undone_at` is set while it is undone.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TakeSuggestionsView(ProjectScopedView):
    @extend_schema(
        tags=["images"],
        request=None,
        parameters=IMAGE_FILTERS,
        responses={200: BulkAcceptedSerializer, **WRITE_ERRORS},
        description="Every unreviewed image matching the filters whose audit suggestion is confident "
        "gets that label as its reviewed label: one action, undone as one step.",
    )
    def post(self, request, project_id: int):
        project = self.project(Role.REVIEWER)
        filters = selectors.ImageFilters.from_query(request.query_params)
        ids = selectors.images_filtered(project, filters).order_by().values("id")
        changed = services.images_take_confident_suggestions(
            project=project, user=request.user, image_ids=ids
        )
        return Response(BulkAcceptedSerializer({"changed": changed}).data)


class UndoneSerializer(serializers.Serializer):
    changed = serializers.IntegerField(help_text="Images whose reviewed label changed back (or again).")


class LabelUndoView(ProjectScopedView):
    redo = False

    @extend_schema(
        tags=["images"],
        request=None,
        responses={200: UndoneSerializer, **WRITE_ERRORS},
        description="Undo (or redo) your latest review action in this project; a bulk action is one "
        "step. Images someone else changed since are left alone. 400 when there is nothing to undo.",
    )
    def post(self, request, project_id: int):
        project = self.project(Role.REVIEWER)
        replay = services.label_redo if self.redo else services.label_undo
        changed = replay(project=project, user=request.user)
        return Response(UndoneSerializer({"changed": changed}).data)


# --- Exports ------------------------------------------------------------------------------------


class ExportSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Export
        fields = ["id", "status", "image_count", "error", "requested_by", "created_at", "finished_at"]
        read_only_fields = fields


class ExportListView(ProjectScopedView, generics.ListAPIView):
    serializer_class = ExportSerializer

    def get_queryset(self):
        return self.project().exports.select_related("requested_by")

    @extend_schema(tags=["exports"], responses={200: ExportSerializer(many=True), **READ_ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["exports"],
        request=None,
        responses={202: ExportSerializer, **READ_ERRORS},
        description="Start building a ZIP of the project; poll the export until it is ready.",
    )
    def post(self, request, project_id: int):
        export = services.export_start(project=self.project(), user=request.user)
        return Response(ExportSerializer(export).data, status=status.HTTP_202_ACCEPTED)


class ExportDetailView(ProjectScopedView):
    @extend_schema(tags=["exports"], responses={200: ExportSerializer, **READ_ERRORS})
    def get(self, request, project_id: int, export_id: int):
        return Response(ExportSerializer(selectors.export_get(self.project(), export_id)).data)


class ExportDownloadView(ProjectScopedView):
    @extend_schema(
        tags=["exports"],
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The ZIP"),
            **READ_ERRORS,
        },
        description="The export's ZIP; 404 until it is ready.",
    )
    def get(self, request, project_id: int, export_id: int):
        return exports.export_download(self.project(), export_id)


P = "projects/<int:project_id>/"
urlpatterns = [
    path("projects/", ProjectListView.as_view(), name="api-projects"),
    path(P, ProjectDetailView.as_view(), name="api-project"),
    path(P + "members/", MemberListView.as_view(), name="api-members"),
    path(P + "members/<int:user_id>/", MemberDetailView.as_view(), name="api-member"),
    path(P + "batches/", BatchListView.as_view(), name="api-batches"),
    path(P + "batches/<int:batch_id>/", BatchDetailView.as_view(), name="api-batch"),
    path(P + "batches/<int:batch_id>/rejected/", BatchRejectedView.as_view(), name="api-batch-rejected"),
    path(P + "images/", ImageListView.as_view(), name="api-images"),
    path(P + "images/bulk-accept/", ImageBulkAcceptView.as_view(), name="api-images-bulk-accept"),
    path(P + "images/<int:image_id>/", ImageDetailView.as_view(), name="api-image"),
    path(P + "images/<int:image_id>/history/", ImageHistoryView.as_view(), name="api-image-history"),
    path(
        P + "images/take-confident-suggestions/",
        TakeSuggestionsView.as_view(),
        name="api-images-take-suggestions",
    ),
    path(P + "images/undo/", LabelUndoView.as_view(), name="api-images-undo"),
    path(P + "images/redo/", LabelUndoView.as_view(redo=True), name="api-images-redo"),
    path(P + "exports/", ExportListView.as_view(), name="api-exports"),
    path(P + "exports/<int:export_id>/", ExportDetailView.as_view(), name="api-export"),
    path(P + "exports/<int:export_id>/download/", ExportDownloadView.as_view(), name="api-export-download"),
]
