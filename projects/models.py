import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Emotion(models.TextChoices):
    """FER2013's seven classes, in FER2013's own order. They live with the labels that use them
    (inference's models read them from here: this app is below inference)."""

    # The values are machine-readable (API, export folders) and stay English; the labels are
    # what pages show.
    ANGRY = "angry", _("angry")
    DISGUST = "disgust", _("disgust")
    FEAR = "fear", _("fear")
    HAPPY = "happy", _("happy")
    SAD = "sad", _("sad")
    SURPRISE = "surprise", _("surprise")
    NEUTRAL = "neutral", _("neutral")


EMOTIONS: tuple[str, ...] = tuple(Emotion.values)


class LabelPolicy(models.TextChoices):
    """Which label is final (exported) for an image nobody reviewed; a reviewed label always wins."""

    MODEL = "model", _("the model's label for every image")
    ORIGINAL = "original", _("keep original labels")
    ORIGINAL_SUGGESTED = "original_suggested", _("keep original labels, take confident audit suggestions")


# What each policy's final labels are worth to people: the share of FER2013's validation/ images
# whose final label got the most of ten FER+ crowd votes (`export_crowd_agreement_<policy>` of
#   python manage.py bench_audit --data ../shared/data/fer2013/validation \
#       --votes ../shared/data/ferplus/votes.csv
# with the model below active). New projects start with the best of them and the project page
# quotes them. After measuring a new default model, update this dict and the model's name (which
# `bench_health` also takes as its default), then the Makefile's OUR_MODEL_NAME.
POLICY_CROWD_AGREEMENT = {
    LabelPolicy.MODEL: 0.860,
    LabelPolicy.ORIGINAL: 0.652,
    LabelPolicy.ORIGINAL_SUGGESTED: 0.725,
}
POLICY_MEASURED_WITH = "facelabel-crowd-v5"


def default_label_policy() -> str:
    """The policy whose final labels agreed best with the crowd: what a new project starts with."""
    return str(max(POLICY_CROWD_AGREEMENT, key=POLICY_CROWD_AGREEMENT.__getitem__))


def final_label_under(
    policy: str,
    *,
    reviewed: str,
    original: str,
    predicted: str,
    suggested: str = "",
    confident: bool = False,
    unsure: bool = False,
) -> str:
    """The one definition of the final label; selectors.final_label_expression mirrors it in SQL.

    `unsure`: the image has an unsure reason, so the model's label does not count (it goes to
    `unsure/` unless a reviewer, its original label or a confident suggestion gives it one).
    """
    if reviewed:
        return reviewed
    if unsure:
        predicted = ""
    if policy == LabelPolicy.MODEL:
        return predicted
    if policy == LabelPolicy.ORIGINAL_SUGGESTED and confident and suggested:
        return suggested
    return original or predicted


class ExcludedExport(models.TextChoices):
    """What the export does with excluded images; the manifest lists them either way."""

    FOLDER = "folder", _("put them in an excluded/ folder")
    OMIT = "omit", _("leave them out of the folders")


class Project(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Opt-in: when a newer model version becomes active, the schedule relabels this project's
    # images that an older version labeled (reviewed labels are never touched).
    relabel_on_new_model = models.BooleanField(default=False)
    # A callable, so new figures in POLICY_CROWD_AGREEMENT change the default without a migration.
    label_policy = models.CharField(max_length=20, choices=LabelPolicy.choices, default=default_label_policy)
    # Set when an owner changes the policy; empty while the project keeps the default it started with.
    label_policy_chosen_at = models.DateTimeField(null=True, blank=True)
    label_policy_chosen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")
    # Bumped after every write to the project's images (events.images_changed): cached counts of
    # the grid, summary and health page are keyed by it.
    images_version = models.PositiveBigIntegerField(default=0, editable=False)
    # Where the export puts images a reviewer excluded (duplicates, unusable): never silently lost.
    export_excluded = models.CharField(
        max_length=10, choices=ExcludedExport.choices, default=ExcludedExport.FOLDER
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    # Ordered from least to most powerful: ROLE_RANK relies on it.
    VIEWER = "viewer"
    REVIEWER = "reviewer"
    OWNER = "owner"


ROLE_RANK = {role: rank for rank, role in enumerate(Role.values)}


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Batch(models.Model):
    class Status(models.TextChoices):
        UPLOADING = "uploading", _("uploading")  # images still streaming in; stored ones get labeled
        LABELING = "labeling", _("labeling")
        DONE = "done", _("done")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="batches")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Sent by the upload form: a double-clicked submit carries the same token and gets one batch.
    upload_token = models.UUIDField(default=uuid.uuid4)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UPLOADING)
    image_count = models.PositiveIntegerField(default=0)
    # The first UPLOAD_REJECTIONS_KEPT of them: a ZIP of 60,000 junk members must not make every
    # page that shows the batch megabytes long. rejected_count counts them all.
    rejected = models.JSONField(default=list, blank=True, help_text="[{name, reason}] per file")
    rejected_count = models.PositiveIntegerField(default=0)
    # Set when every file of the upload was read; empty while it streams in or if it broke off,
    # and then the same upload token sent again imports what is missing.
    uploaded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Last time a labeling task was queued for the batch or finished a chunk of it: the recovery
    # sweep re-queues batches whose heartbeat went quiet (lost message, killed worker).
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        constraints = [
            models.UniqueConstraint(fields=["project", "upload_token"], name="one_batch_per_upload")
        ]

    def __str__(self) -> str:
        return f"Batch {self.pk} of {self.project}"


# What the review grid filters on and the final label is made of (see Image.Meta.indexes).
GRID_COLUMNS = (
    "status",
    "original_label",
    "predicted_label",
    "reviewed_label",
    "unsure_reason",
    "likely_mislabeled",
    "suggestion_confident",
    "suggested_label",
    "batch",
)

# The columns an image's final label is made of, plus its status: selectors.label_groups counts
# the images by them, in the order of the image_label_groups index.
LABEL_GROUP_COLUMNS = (
    "original_label",
    "predicted_label",
    "reviewed_label",
    "unsure_reason",
    "suggestion_confident",
    "suggested_label",
    "status",
)


class Image(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        PROCESSING = "processing", _("processing")
        LABELED = "labeled", _("labeled")
        FAILED = "failed", _("failed")

    class FacePath(models.TextChoices):
        DETECTED = "detected", _("face found (BlazeFace, else Haar cascade)")
        WHOLE = "whole", _("no face found: whole image used")
        SMALL = "small", _("face crop: whole image used")
        BLANK = "blank", _("blank image: nothing to find")

    class UnsureReason(models.TextChoices):
        """Why the model's label is not used (see inference/unsure.py); empty when it is."""

        NO_FACE = "no_face", _("no face found")
        LOW_CONFIDENCE = "low_confidence", _("the model is unsure")

    class DuplicateKind(models.TextChoices):
        EXACT = "exact", _("exact copies (same pixels)")
        NEAR = "near", _("near copies (perceptual hash)")

    class UnusableReason(models.TextChoices):
        """Why the dataset health check thinks the image is no use as a face (audit/health.py)."""

        BLANK = "blank", _("blank or nearly uniform")
        NO_FACE = "no_face", _("no face found in a photo")
        OUTLIER = "outlier", _("far from every class (outlier)")

    class ExcludedReason(models.TextChoices):
        """Why a reviewer took the image out of the emotion folders of the export."""

        DUPLICATE = "duplicate", _("a copy of another image that was kept")
        UNUSABLE = "unusable", _("unusable as a face")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to="images/%Y/%m/%d/", max_length=200)
    thumbnail = models.FileField(upload_to="thumbnails/%Y/%m/%d/", max_length=200, blank=True)
    # Shown to people (escaped), never used as a path.
    original_name = models.CharField(max_length=255)
    original_label = models.CharField(max_length=10, choices=Emotion.choices, blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    predicted_label = models.CharField(max_length=10, choices=Emotion.choices, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    probabilities = models.JSONField(null=True, blank=True, help_text="{emotion: probability}")
    model_version = models.ForeignKey(
        "inference.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    face_box = models.JSONField(null=True, blank=True, help_text="[x, y, width, height]")
    face_path = models.CharField(max_length=10, choices=FacePath.choices, blank=True)
    unsure_reason = models.CharField(max_length=16, choices=UnsureReason.choices, blank=True)
    labeled_at = models.DateTimeField(null=True, blank=True)
    times_labeled = models.PositiveIntegerField(default=0)

    reviewed_label = models.CharField(max_length=10, choices=Emotion.choices, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    # The latest label audit's verdict on original_label (see audit/confident.py); empty until an
    # audit covers the image.
    label_quality = models.FloatField(
        null=True, blank=True, help_text="Out-of-sample probability of the original label"
    )
    likely_mislabeled = models.BooleanField(default=False)
    suggested_label = models.CharField(max_length=10, choices=Emotion.choices, blank=True)
    suggestion_confident = models.BooleanField(
        default=False, help_text="Strong enough to replace the original under the suggestions policy"
    )

    # The latest dataset health check (audit/health.py) over all of the project's batches: its
    # group number is the smallest image id in the group, so a group keeps its number across runs.
    duplicate_group = models.PositiveBigIntegerField(null=True, blank=True)
    duplicate_kind = models.CharField(max_length=5, choices=DuplicateKind.choices, blank=True)
    # Members carry different original or final labels: one of them is wrong.
    duplicate_conflicting = models.BooleanField(default=False)
    # Members sit in more than one batch: a leak when the batches are training and test sets.
    duplicate_cross_batch = models.BooleanField(default=False)
    unusable_reason = models.CharField(max_length=10, choices=UnusableReason.choices, blank=True)
    # Set by a reviewer's action (undoable, in LabelChange); the export honours the project's
    # export_excluded choice.
    excluded_reason = models.CharField(max_length=10, choices=ExcludedReason.choices, blank=True)
    # The dataset map: a 2-D projection of the model's penultimate features.
    map_x = models.FloatField(null=True, blank=True)
    map_y = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["batch", "status"]),
            models.Index(fields=["project", "predicted_label"]),
            models.Index(fields=["project", "original_label"]),
            models.Index(fields=["status", "claimed_at"]),
            models.Index(fields=["project", "likely_mislabeled", "label_quality"]),
            # One per order of the review grid (selectors.IMAGE_ORDERS). Each also holds every
            # column the grid's filters, counts and the summary read, so a page, a count or the
            # summary at 100,000 images is a scan of the index alone: the rows, with their
            # probabilities and paths, are several times larger. `id` comes right after the
            # order's column so it still breaks ties (bench_review measures them).
            models.Index(
                fields=["project", "id", "confidence", "label_quality", *GRID_COLUMNS], name="image_grid_id"
            ),
            models.Index(
                fields=["project", "confidence", "id", "label_quality", *GRID_COLUMNS],
                name="image_grid_confidence",
            ),
            models.Index(
                fields=["project", "label_quality", "id", "confidence", *GRID_COLUMNS],
                name="image_grid_quality",
            ),
            # selectors.label_groups: the summary's and health page's counts in index order.
            models.Index(fields=["project", *LABEL_GROUP_COLUMNS], name="image_label_groups"),
            # The duplicates listing, and the grid's health filters (few rows each).
            models.Index(fields=["project", "duplicate_group"], name="image_duplicates"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=0, confidence__lte=1),
                name="confidence_is_a_probability",
            )
        ]

    def __str__(self) -> str:
        return self.original_name

    @property
    def final_label(self) -> str:
        return final_label_under(
            self.project.label_policy,
            reviewed=self.reviewed_label,
            original=self.original_label,
            predicted=self.predicted_label,
            suggested=self.suggested_label,
            confident=self.suggestion_confident,
            unsure=bool(self.unsure_reason),
        )


class Export(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        RUNNING = "running", _("running")
        READY = "ready", _("ready")
        FAILED = "failed", _("failed")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Set only once the whole ZIP is in storage, so a half-written file is never served.
    file = models.FileField(upload_to="exports/", max_length=200, blank=True)
    image_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Export {self.pk} of {self.project}"


class LabelChange(models.Model):
    """One change of an image's reviewed label: who, when, from what, to what, and how.

    Rows written by one user action share `action`, so a bulk action is undone as one step.
    Empty labels mean "no reviewed label" (the final label then follows the project's policy).
    """

    class How(models.TextChoices):
        SINGLE = "single", _("single")
        KEYBOARD = "keyboard", _("keyboard")
        BULK = "bulk", _("bulk")
        ACCEPT = "accept", _("accept")
        POLICY = "policy", _("policy")
        UNDO = "undo", _("undo")
        REDO = "redo", _("redo")
        KEEP_ONE = "keep_one", _("kept one copy, excluded the rest")
        RESOLVE = "resolve", _("resolved a conflicting group")
        EXCLUDE = "exclude", _("excluded")
        INCLUDE = "include", _("included again")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_changes")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="label_changes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    from_label = models.CharField(max_length=10, choices=Emotion.choices, blank=True)
    to_label = models.CharField(max_length=10, choices=Emotion.choices, blank=True)
    # Image.excluded_reason before and after (equal when only the label changed).
    from_excluded = models.CharField(max_length=10, choices=Image.ExcludedReason.choices, blank=True)
    to_excluded = models.CharField(max_length=10, choices=Image.ExcludedReason.choices, blank=True)
    how = models.CharField(max_length=10, choices=How.choices)
    action = models.UUIDField(default=uuid.uuid4, db_index=True)
    # Set on an action's rows once it was undone (and cleared again by redo): the undo stack.
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["image", "at"]),
            models.Index(fields=["project", "user", "at"]),
        ]

    def __str__(self) -> str:
        return f"{self.image_id}: {self.from_label or '-'} -> {self.to_label or '-'} ({self.how})"
