from django.contrib import admin

from .models import AuditRun


@admin.register(AuditRun)
class AuditRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "kind",
        "status",
        "image_count",
        "flagged_count",
        "created_at",
        "seconds",
    ]
    list_filter = ["kind", "status"]
    search_fields = ["project__name"]
    readonly_fields = [
        "claim_token",
        "claimed_at",
        "attempts",
        "image_count",
        "flagged_count",
        "summary",
        "error",
        "started_at",
        "finished_at",
    ]
