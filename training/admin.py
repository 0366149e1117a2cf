import io
import json
from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage
from django.db.models import Max
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from projects.models import EMOTIONS

from . import services
from .forms import TrialStartForm
from .models import Trial
from .plots import confusion_png, learning_curves_png
from .presets import PRESETS

STATUS_COLOURS = {
    Trial.Status.QUEUED: "#666",
    Trial.Status.RUNNING: "#1565c0",
    Trial.Status.SUCCEEDED: "#2e7d32",
    Trial.Status.FAILED: "#c62828",
    Trial.Status.CANCELLED: "#ef6c00",
}
ACTIVE = (Trial.Status.QUEUED, Trial.Status.RUNNING)
MAX_COMPARED = 10

# Row label and the configuration key it shows (training.config.TrainingConfig's names).
COMPARED_CONFIG = [
    ("architecture", "architecture"),
    ("optimizer", "optimizer"),
    ("learning rate", "learning_rate"),
    ("batch size", "batch_size"),
    ("epochs", "epochs"),
    ("dropout per conv block", "conv_dropout"),
    ("dense dropout", "dropout"),
    ("L2", "l2"),
]
# Augmentation is on when any of these is set (non-zero, true or a range).
AUGMENTATION_KEYS = (
    "rotation",
    "width_shift",
    "height_shift",
    "zoom",
    "shear",
    "horizontal_flip",
    "brightness_range",
    "channel_shift",
    "random_crop",
)


def input_description(config: dict) -> str:
    size = config.get("input_size", "?")
    return f"{size}x{size} {'gray' if config.get('grayscale', True) else 'RGB'}"


def augmentation_on(config: dict) -> bool:
    return any(config.get(key) for key in AUGMENTATION_KEYS)


def duration(trial: Trial) -> timedelta | None:
    if trial.started_at is None:
        return None
    end = trial.finished_at or timezone.now()
    return timedelta(seconds=round((end - trial.started_at).total_seconds()))


def png_response(data: bytes) -> HttpResponse:
    response = HttpResponse(data, content_type="image/png")
    # Curves change every epoch; a cached image would show a stale trial.
    response["Cache-Control"] = "no-store"
    return response


def val_accuracy_overlay_png(trials: list[Trial]) -> bytes:
    """One chart with each trial's validation accuracy per epoch."""
    from matplotlib.figure import Figure  # no pyplot: Figure renders with Agg and no global state

    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.subplots()
    for trial in trials:
        points = [(row.epoch, row.val_accuracy) for row in trial.epochs.all() if row.val_accuracy is not None]
        if points:
            axes.plot(*zip(*points, strict=True), label=trial.name)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation accuracy")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "preset",
        "status_badge",
        "progress",
        "best_val_accuracy",
        "started_at",
        "duration_display",
        "created_by",
    ]
    list_filter = ["status", "preset"]
    list_select_related = ["created_by"]
    search_fields = ["name", "preset"]
    actions = ["compare_trials", "cancel_trials"]
    fieldsets = [
        (None, {"fields": ["name", "preset", "status_badge", "created_by", "error"]}),
        ("Configuration", {"fields": ["config_pretty"]}),
        ("Data", {"fields": ["data_source", "data_dir", "project", "validation_fraction"]}),
        (
            "Timings",
            {
                "fields": [
                    "progress",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "heartbeat_at",
                    "duration_display",
                ]
            },
        ),
        ("Results", {"fields": ["final_accuracy", "model_file_name", "log_dir", "model_version"]}),
    ]
    readonly_fields = [field for _name, options in fieldsets for field in options["fields"]]
    change_form_template = "admin/training/trial/change_form.html"
    change_list_template = "admin/training/trial/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(best_val=Max("epochs__val_accuracy"))

    def get_urls(self):
        def view(function, name, route):
            return path(route, self.admin_site.admin_view(function), name=f"training_trial_{name}")

        return [
            view(self.curves_view, "curves", "<int:trial_id>/curves.png"),
            view(self.confusion_view, "confusion", "<int:trial_id>/confusion.png"),
            view(self.promote_view, "promote", "<int:trial_id>/promote/"),
            view(self.cancel_view, "cancel", "<int:trial_id>/cancel/"),
            view(self.compare_view, "compare", "compare/"),
            view(self.compare_curves_view, "compare_curves", "compare/curves.png"),
            *super().get_urls(),
        ]

    # List columns and read-only fields

    @admin.display(description="status", ordering="status")
    def status_badge(self, trial: Trial) -> str:
        colour = STATUS_COLOURS.get(trial.status, "#666")
        return format_html('<strong style="color: {}">{}</strong>', colour, trial.get_status_display())

    @admin.display(description="epochs")
    def progress(self, trial: Trial) -> str:
        planned = trial.epochs_planned
        return format_html(
            '<progress value="{}" max="{}" title="{} of {} epochs"></progress> {}/{}',
            trial.epochs_done,
            max(planned, 1),
            trial.epochs_done,
            planned,
            trial.epochs_done,
            planned,
        )

    @admin.display(description="best val. accuracy", ordering="best_val")
    def best_val_accuracy(self, trial: Trial) -> str:
        best = getattr(trial, "best_val", None)
        return "—" if best is None else f"{best:.3f}"

    @admin.display(description="duration")
    def duration_display(self, trial: Trial) -> str:
        elapsed = duration(trial)
        return "—" if elapsed is None else str(elapsed)

    @admin.display(description="configuration")
    def config_pretty(self, trial: Trial) -> str:
        return format_html("<pre>{}</pre>", json.dumps(trial.config, indent=2, sort_keys=True))

    @admin.display(description="best model file")
    def model_file_name(self, trial: Trial) -> str:
        # The name only: media is never served by URL, and promoting is how the model is used.
        return trial.model_file.name or "—"

    @admin.display(description="final accuracy")
    def final_accuracy(self, trial: Trial) -> str:
        accuracy = trial.metrics.get("accuracy")
        return "—" if accuracy is None else f"{accuracy:.4f}"

    # Start a trial: the add view is a form that calls the service

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = TrialStartForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                trial = services.trial_create(**form.trial_create_kwargs(), user=request.user)
            except ValidationError as error:
                form.add_service_errors(error)
            else:
                messages.success(request, f"Trial “{trial.name}” is queued.")
                return HttpResponseRedirect(reverse("admin:training_trial_change", args=[trial.id]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Start a trial",
            "form": form,
            "preset_configs": {name: config for name, (_description, config) in PRESETS.items()},
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/training/trial/start.html", context)

    # Trial page

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # Every field is read-only: the page is for watching a trial, the buttons act on it.
        context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        if obj is not None:
            context.update(self.trial_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def trial_context(self, request, trial: Trial) -> dict:
        metrics = trial.metrics or {}
        labels = metrics.get("labels") or list(metrics.get("f1", {}))
        per_class = [
            {
                "label": label,
                **{key: metrics.get(key, {}).get(label) for key in ("precision", "recall", "f1", "support")},
            }
            for label in labels
        ]
        can_change = self.has_change_permission(request, trial)
        return {
            "trial": trial,
            "epochs": list(trial.epochs.all()),
            "per_class": per_class,
            "has_confusion": bool(trial.confusion_image or metrics.get("confusion")),
            "auto_refresh": trial.status in ACTIVE,
            "can_promote": can_change and trial.status == Trial.Status.SUCCEEDED,
            "can_cancel": can_change and trial.status in ACTIVE and not trial.cancel_requested,
        }

    def get_trial(self, request, trial_id: int, *, change: bool = False) -> Trial:
        trial = Trial.objects.filter(id=trial_id).first()
        allowed = self.has_change_permission if change else self.has_view_permission
        if trial is None or not allowed(request, trial):
            raise Http404
        return trial

    def curves_view(self, request, trial_id: int):
        epochs = list(self.get_trial(request, trial_id).epochs.all())
        if not epochs:
            raise Http404("No epoch has finished yet.")
        return png_response(learning_curves_png(epochs))

    def confusion_view(self, request, trial_id: int):
        trial = self.get_trial(request, trial_id)
        if trial.confusion_image:
            return FileResponse(
                default_storage.open(trial.confusion_image.name, "rb"), content_type="image/png"
            )
        if not trial.metrics.get("confusion"):
            raise Http404("The trial has no confusion matrix.")
        labels = trial.metrics.get("labels") or list(EMOTIONS)
        return png_response(confusion_png(trial.metrics["confusion"], labels))

    @method_decorator(require_POST)
    def promote_view(self, request, trial_id: int):
        trial = self.get_trial(request, trial_id, change=True)
        try:
            version = services.trial_promote(trial, activate=True)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, f"Model version “{version.name}” is now the active model.")
        return HttpResponseRedirect(reverse("admin:training_trial_change", args=[trial.id]))

    @method_decorator(require_POST)
    def cancel_view(self, request, trial_id: int):
        trial = self.get_trial(request, trial_id, change=True)
        self.cancel_trials(request, Trial.objects.filter(id=trial.id))
        return HttpResponseRedirect(reverse("admin:training_trial_change", args=[trial.id]))

    # Actions

    @admin.action(description="Compare selected trials", permissions=["view"])
    def compare_trials(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("id", flat=True)[:MAX_COMPARED])
        return HttpResponseRedirect(f"{reverse('admin:training_trial_compare')}?ids={ids}")

    @admin.action(description="Cancel selected trials", permissions=["change"])
    def cancel_trials(self, request, queryset):
        cancelled = [services.trial_cancel(trial).name for trial in queryset.filter(status__in=ACTIVE)]
        if cancelled:
            messages.success(
                request, f"Cancel requested for {len(cancelled)} trial(s): {', '.join(cancelled)}."
            )
        else:
            messages.warning(request, "Only queued or running trials can be cancelled.")

    # Comparison

    def compared_trials(self, request) -> list[Trial]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        ids = [int(part) for part in request.GET.get("ids", "").split(",") if part.strip().isdigit()]
        trials = (
            self.get_queryset(request)
            .filter(id__in=ids[:MAX_COMPARED])
            .order_by("id")
            .prefetch_related("epochs")
        )
        return list(trials)

    def compare_view(self, request):
        trials = self.compared_trials(request)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Compare trials",
            "trials": trials,
            "rows": comparison_rows(trials),
            "ids": ",".join(str(trial.id) for trial in trials),
        }
        return TemplateResponse(request, "admin/training/trial/compare.html", context)

    def compare_curves_view(self, request):
        return png_response(val_accuracy_overlay_png(self.compared_trials(request)))


def comparison_rows(trials: list[Trial]) -> list[tuple[str, list]]:
    def fmt(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    rows = [
        ("preset", [trial.preset or "—" for trial in trials]),
        ("input", [input_description(trial.config) for trial in trials]),
        *[(label, [trial.config.get(key, "—") for trial in trials]) for label, key in COMPARED_CONFIG],
        ("augmentation", ["on" if augmentation_on(trial.config) else "off" for trial in trials]),
        ("status", [trial.get_status_display() for trial in trials]),
        ("epochs run", [trial.epochs_done for trial in trials]),
        ("best val. accuracy", [fmt(trial.best_val) for trial in trials]),
        ("final accuracy", [fmt(trial.metrics.get("accuracy")) for trial in trials]),
    ]
    labels = list(EMOTIONS) + sorted(
        {label for trial in trials for label in trial.metrics.get("f1", {})} - set(EMOTIONS)
    )
    rows += [
        (f"F1 {label}", [fmt(trial.metrics.get("f1", {}).get(label)) for trial in trials]) for label in labels
    ]
    rows.append(("seconds", [fmt(trial.seconds_total, 0) for trial in trials]))
    return rows
