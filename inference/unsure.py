"""When the model's label is not used: no face was found, or the model is too unsure.

Such an image keeps its prediction (for reviewers and the manifest), but an unreviewed one is
exported to `unsure/` instead of an emotion folder. The confidence threshold depends on the
model, so it is a setting, re-measured with `manage.py measure_unsure` (`unsure_sweep` below):
how many faces each threshold sends to unsure, and how accurate the labels kept are.
"""

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image as PILImage

from projects.models import Image

from .faces import find_face

# A large image where no face was found is predicted whole, and that guess is near chance: of 600
# FER2013 validation faces pasted into 640x480 frames (`measure_unsure --photos 600`), the 3% that
# no detector found got 18% right labels, the faces found 63%.
NO_FACE_PATHS = ("whole", "blank")


def unsure_reason(face_path: str, confidence: float, min_confidence: float | None = None) -> str:
    """Why the model's label is not to be used for an image, or "" when it is."""
    if face_path in NO_FACE_PATHS:
        return Image.UnsureReason.NO_FACE
    threshold = settings.UNSURE_MIN_CONFIDENCE if min_confidence is None else min_confidence
    if confidence < threshold:
        return Image.UnsureReason.LOW_CONFIDENCE
    return ""


@dataclass(frozen=True)
class SweepRow:
    threshold: float
    unsure_share: float  # of the images, those below the threshold
    kept_accuracy: float  # of the rest, those whose label is right
    unsure_accuracy: float  # of those sent to unsure, those the model had right anyway


def unsure_sweep(
    confidence: np.ndarray, right: np.ndarray, thresholds: Iterable[float]
) -> tuple[float, list[SweepRow]]:
    """The overall accuracy, and for each threshold what sending the images below it to unsure
    does. `confidence` is each image's top probability, `right` whether its label is right (by
    its folder, or by the crowd's votes)."""
    rows = []
    for threshold in thresholds:
        unsure = confidence < threshold
        rows.append(
            SweepRow(
                threshold=float(threshold),
                unsure_share=float(unsure.mean()),
                kept_accuracy=float(right[~unsure].mean()) if (~unsure).any() else 0.0,
                unsure_accuracy=float(right[unsure].mean()) if unsure.any() else 0.0,
            )
        )
    return float(right.mean()), rows


def threshold_for_share(rows: list[SweepRow], max_share: float) -> SweepRow | None:
    """The highest threshold that sends at most `max_share` of the images to unsure."""
    fitting = [row for row in rows if row.unsure_share <= max_share]
    return max(fitting, key=lambda row: row.threshold) if fitting else None


def format_sweep(
    accuracy: float,
    rows: list[SweepRow],
    current: float,
    suggested: SweepRow | None,
    crowd: tuple[float, list[SweepRow]] | None = None,
) -> str:
    """The sweep as a table; `crowd` (the same sweep scored against crowd votes) adds a column."""
    lines = [f"accuracy: {accuracy:.4f} (every image labeled)"]
    if crowd is not None:
        lines.append(f"crowd_agreement: {crowd[0]:.4f} (every image labeled)")
    header = f"{'threshold':>9}{'unsure':>9}{'accuracy of the rest':>22}{'accuracy of unsure':>20}"
    lines += ["", header + (f"{'crowd agreement of the rest':>29}" if crowd else "")]
    for i, row in enumerate(rows):
        mark = "  <- UNSURE_MIN_CONFIDENCE" if abs(row.threshold - current) < 1e-9 else ""
        agreement = f"{crowd[1][i].kept_accuracy:>29.4f}" if crowd else ""
        lines.append(
            f"{row.threshold:>9.2f}{row.unsure_share:>9.2%}{row.kept_accuracy:>22.4f}"
            f"{row.unsure_accuracy:>20.4f}{agreement}{mark}"
        )
    if suggested is not None:
        lines += [
            "",
            f"suggested: UNSURE_MIN_CONFIDENCE={suggested.threshold:.2f} "
            f"({suggested.unsure_share:.2%} unsure, accuracy of the rest {suggested.kept_accuracy:.4f})",
        ]
    return "\n".join(lines)


@dataclass(frozen=True)
class PhotoCheck:
    images: int
    detected_share: float  # of the faces pasted into photos, those the detector found
    detected_accuracy: float  # labels right where the face was found
    whole_accuracy: float  # labels right where the whole photo was predicted (now: no_face)


def photo_check(
    model, files: list[Path], truth: np.ndarray, as_photo: Callable[[bytes], bytes]
) -> PhotoCheck:
    """Each face pasted into a photo-sized frame (`as_photo`), through face finding and the model:
    how often the detector finds it, and how good the label is when it does and when it does not.

    Memory: all the crops of `files` at once (at most FACE_MAX_SIDE square each), so keep it to
    a few thousand.
    """
    mode = "L" if model.grayscale else "RGB"
    photos = (PILImage.open(io.BytesIO(as_photo(path.read_bytes()))) for path in files)
    faces = [find_face(photo.convert(mode)) for photo in photos]
    right = model.predict(model.preprocess(faces)).argmax(axis=1) == truth
    detected = np.array([face.path == "detected" for face in faces])
    return PhotoCheck(
        images=len(faces),
        detected_share=float(detected.mean()),
        detected_accuracy=float(right[detected].mean()) if detected.any() else 0.0,
        whole_accuracy=float(right[~detected].mean()) if (~detected).any() else 0.0,
    )
