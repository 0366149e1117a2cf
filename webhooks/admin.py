from django import forms
from django.contrib import admin
from django.forms.models import BaseInlineFormSet

from . import services
from .models import Webhook, WebhookDelivery

DELIVERY_FIELDS = [
    "event",
    "status",
    "attempts",
    "response_status",
    "error",
    "created_at",
    "last_attempt_at",
    "delivered_at",
]
RECENT_DELIVERIES = 50


class RecentDeliveriesFormSet(BaseInlineFormSet):
    # A busy webhook has thousands of deliveries; the change page shows the latest few.
    def get_queryset(self):
        return super().get_queryset().order_by("-created_at", "-id")[:RECENT_DELIVERIES]


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    formset = RecentDeliveriesFormSet
    fields = DELIVERY_FIELDS
    readonly_fields = DELIVERY_FIELDS
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = f"latest {RECENT_DELIVERIES} deliveries"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class WebhookAdminForm(forms.ModelForm):
    class Meta:
        model = Webhook
        fields = ["project", "url", "events", "is_active"]

    def clean_url(self) -> str:
        # The same target rules as the API: admins can be tricked into pasting an internal URL too.
        url = self.cleaned_data["url"].strip()
        try:
            services.target_validate(url)
        except forms.ValidationError as exc:
            raise forms.ValidationError(exc.messages) from exc
        return url


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    form = WebhookAdminForm
    list_display = ["url", "project", "events", "is_active", "created_by", "created_at"]
    list_filter = ["is_active"]
    list_select_related = ["project", "created_by"]
    search_fields = ["url", "project__name"]
    autocomplete_fields = ["project"]
    readonly_fields = ["secret", "created_by", "created_at"]
    inlines = [WebhookDeliveryInline]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "webhook", "event", "status", "attempts", "response_status", "created_at"]
    list_filter = ["status", "event"]
    list_select_related = ["webhook__project"]
    search_fields = ["webhook__url", "webhook__project__name"]
    fields = ["webhook", "payload", "response_body", *DELIVERY_FIELDS]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
