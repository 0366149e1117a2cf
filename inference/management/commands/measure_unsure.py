"""Re-measure UNSURE_MIN_CONFIDENCE for the active (or a named) model: per threshold, the share
of a folder-per-emotion tree's images sent to unsure and the accuracy of the labels kept."""

import random
from functools import partial
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference.models import ModelVersion
from inference.unsure import format_sweep, photo_check, threshold_for_share, unsure_sweep
from projects.models import EMOTIONS

THRESHOLDS = [round(0.2 + 0.02 * i, 2) for i in range(21)]  # 0.20 to 0.60


class Command(BaseCommand):
    help = "How many images each confidence threshold sends to unsure, and the accuracy of the rest."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, type=Path, help="folder with one sub-folder per emotion")
        parser.add_argument("--model", help="model version name (default: the active one)")
        parser.add_argument(
            "--max-share", type=float, default=0.05, help="suggest the highest threshold under this share"
        )
        parser.add_argument(
            "--votes", help="FER+ votes.csv: also score the labels kept against the crowd's majority"
        )
        parser.add_argument(
            "--photos",
            type=int,
            default=0,
            help="also paste this many images into 640x480 frames and check the face detector on them",
        )

    def handle(
        self,
        *args,
        data: Path,
        model: str | None,
        max_share: float,
        votes: str | None,
        photos: int,
        **options,
    ):
        # Imported here so that `manage.py help` does not load TensorFlow and OpenCV.
        from inference.engine import load_model_version
        from inference.evaluation import predict_folder

        if not data.is_dir():
            raise CommandError(f"--data {data} is not a folder (expected one sub-folder per emotion).")
        versions = ModelVersion.objects.all()
        version = versions.filter(name=model).first() if model else versions.filter(is_active=True).first()
        if version is None:
            raise CommandError(
                f"No model version named {model!r}." if model else "No active model version: register one."
            )
        emotion_model = load_model_version(version)
        try:
            predictions = predict_folder(emotion_model, data)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        confidence = predictions.probabilities.max(axis=1)
        accuracy, rows = unsure_sweep(confidence, predictions.predicted == predictions.truth, THRESHOLDS)
        crowd = self._crowd(predictions, confidence, votes) if votes else None
        self.stdout.write(f"model: {version.name}\nimages: {len(predictions.truth)}")
        suggested = threshold_for_share(rows, max_share)
        self.stdout.write(format_sweep(accuracy, rows, settings.UNSURE_MIN_CONFIDENCE, suggested, crowd))
        if photos:
            self._photos(emotion_model, predictions, photos)

    def _crowd(self, predictions, confidence: np.ndarray, votes_file: str):
        # Imported here so that `manage.py help` does not load scikit-learn and OpenCV.
        from inference.crowd import votes_key, votes_read

        try:
            votes = votes_read(votes_file)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        # Only images the crowd saw as one of the seven emotions count, as in evaluate_model.
        found = [votes.get(votes_key(path)) for path in predictions.files]
        counted = np.array([v is not None and v.counts_as_emotion for v in found])
        if not counted.any():
            raise CommandError(f"None of the images under the data folder has votes in {votes_file}.")
        agrees = np.array(
            [
                v.agrees(EMOTIONS[p])
                for v, p, c in zip(found, predictions.predicted, counted, strict=True)
                if c
            ]
        )
        return unsure_sweep(confidence[counted], agrees, THRESHOLDS)

    def _photos(self, emotion_model, predictions, count: int) -> None:
        # Imported here so that `manage.py help` does not load the other command's dependencies.
        from inference.management.commands.bench_predict import as_photo

        total = len(predictions.files)
        chosen = sorted(random.Random(0).sample(range(total), min(count, total)))
        check = photo_check(
            emotion_model,
            [predictions.files[i] for i in chosen],
            np.asarray(predictions.truth)[chosen],
            partial(as_photo, width=640),
        )
        self.stdout.write(
            f"\nphotos: {check.images} faces pasted into 640x480 frames\n"
            f"face_found: {check.detected_share:.4f}\n"
            f"accuracy_face_found: {check.detected_accuracy:.4f}\n"
            f"accuracy_whole_photo: {check.whole_accuracy:.4f} (these are no_face now)"
        )
