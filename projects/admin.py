from django.contrib import admin
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils.html import format_html

from .models import Batch, Export, Image, LabelChange, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "created_by", "created_at"]
    search_fields = ["name", "description"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["project__name", "user__username"]
    autocomplete_fields = ["user", "project"]


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "uploaded_by", "image_count", "status", "created_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["project__name"]
    readonly_fields = ["upload_token", "rejected", "started_at", "finished_at", "heartbeat_at"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = [
        "thumb",
        "original_name",
        "project",
        "status",
        "original_label",
        "predicted_label",
        "confidence",
        "reviewed_label",
        "model_version",
    ]
    list_filter = [
        "status",
        "predicted_label",
        "original_label",
        "reviewed_label",
        "face_path",
        "model_version",
    ]
    search_fields = ["original_name", "project__name"]
    list_select_related = ["project", "model_version"]
    readonly_fields = [
        "thumb",
        "probabilities",
        "face_box",
        "face_path",
        "claim_token",
        "claimed_at",
        "attempts",
        "times_labeled",
        "labeled_at",
    ]
    raw_id_fields = ["batch", "reviewed_by"]

    def get_urls(self):
        thumbnail = path(
            "<int:image_id>/thumbnail/",
            self.admin_site.admin_view(self.thumbnail_view),
            name="projects_image_thumbnail",
        )
        return [thumbnail, *super().get_urls()]

    def thumbnail_view(self, request, image_id: int):
        # Media is never public: the site checks membership, the admin checks admin permissions.
        image = Image.objects.filter(id=image_id).first()
        if image is None or not self.has_view_permission(request, image):
            raise Http404
        name = image.thumbnail.name or image.file.name
        return FileResponse(default_storage.open(name, "rb"), content_type="image/jpeg")

    @admin.display(description="image")
    def thumb(self, image: Image) -> str:
        url = reverse("admin:projects_image_thumbnail", args=[image.id])
        # format_html escapes the user's file name.
        return format_html('<img src="{}" alt="{}" width="48" height="48">', url, image.original_name)


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "image_count", "requested_by", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = ["file", "claim_token", "claimed_at", "attempts", "error"]


@admin.register(LabelChange)
class LabelChangeAdmin(admin.ModelAdmin):
    """Read-only: the history is what happened; undo in the app writes new rows."""

    list_display = ["at", "project", "image", "user", "from_label", "to_label", "how", "undone_at"]
    list_filter = ["how"]
    list_select_related = ["project", "image", "user"]
    search_fields = ["image__original_name", "user__username"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
