from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Trial(models.Model):
    """One training run: a validated configuration, its data, its progress and its results."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    class DataSource(models.TextChoices):
        FOLDER = "folder", "server folder with train/ and validation/"
        PROJECT = "project", "a project's final labels"

    name = models.CharField(max_length=200)
    preset = models.CharField(max_length=50, blank=True)
    config = models.JSONField(default=dict, help_text="Validated training configuration.")
    data_source = models.CharField(max_length=10, choices=DataSource.choices, default=DataSource.FOLDER)
    data_dir = models.CharField(max_length=500, blank=True)
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="trials"
    )
    validation_fraction = models.FloatField(default=0.2, help_text="For project data: share held out.")

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written after every epoch: a trial whose heartbeat stops was lost with its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    epochs_done = models.PositiveIntegerField(default=0)
    seconds_total = models.FloatField(null=True, blank=True)

    metrics = models.JSONField(default=dict, blank=True, help_text="accuracy, per-class scores, confusion")
    model_file = models.FileField(upload_to="trials/", max_length=200, blank=True)
    confusion_image = models.FileField(upload_to="trials/", max_length=200, blank=True)
    log_dir = models.CharField(max_length=500, blank=True, help_text="TensorBoard logs")
    model_version = models.ForeignKey(
        "inference.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Set when the trial was promoted.",
    )  # fmt: skip

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def epochs_planned(self) -> int:
        return int(self.config.get("epochs", 0))


class TrialEpoch(models.Model):
    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="epochs")
    epoch = models.PositiveIntegerField()
    loss = models.FloatField()
    accuracy = models.FloatField()
    val_loss = models.FloatField(null=True)
    val_accuracy = models.FloatField(null=True)
    learning_rate = models.FloatField()
    seconds = models.FloatField()

    class Meta:
        ordering = ["trial", "epoch"]
        constraints = [models.UniqueConstraint(fields=["trial", "epoch"], name="one_row_per_epoch")]

    def __str__(self) -> str:
        return f"{self.trial} epoch {self.epoch}"
