from django.contrib import admin

from .models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "input_size", "grayscale", "preprocessing", "created_at"]
    list_filter = ["is_active", "grayscale"]
    search_fields = ["name"]
