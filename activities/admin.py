from django.contrib import admin

from .models import DanceScore


@admin.register(DanceScore)
class DanceScoreAdmin(admin.ModelAdmin):
    list_display = ["user", "score", "perfect", "good", "best_combo", "created_at"]
    list_select_related = ["user"]
    search_fields = ["user__username"]
    readonly_fields = ["created_at"]
