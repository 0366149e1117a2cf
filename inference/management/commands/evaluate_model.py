import csv
import dataclasses
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference.models import ModelVersion
from projects.models import EMOTIONS


class Command(BaseCommand):
    help = (
        "Accuracy, per-class scores and the confusion matrix of a model on a folder-per-emotion tree; "
        "with --votes, its agreement with crowd votes too."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, type=Path, help="folder with one sub-folder per emotion")
        parser.add_argument("--model", help="model version name (default: the active one)")
        parser.add_argument("--votes", type=Path, help="crowd votes CSV (votes.csv's columns)")
        parser.add_argument("--predictions", type=Path, help="write one CSV row per image here")
        parser.add_argument("--save", action="store_true", help="store the figures as the version's metrics")

    def handle(self, *args, data: Path, model: str | None, votes: Path | None, save: bool, **options):
        # Imported here so that `manage.py help` does not load scikit-learn and OpenCV.
        from inference.crowd import format_crowd_evaluation, votes_key, votes_read
        from inference.engine import load_model_version
        from inference.evaluation import (
            format_evaluation,
            predict_folder,
            score_against_crowd,
            score_folder_labels,
        )

        if not data.is_dir():
            raise CommandError(f"--data {data} is not a folder (expected one sub-folder per emotion).")
        try:
            crowd = votes_read(votes) if votes else None
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        versions = ModelVersion.objects.all()
        version = versions.filter(name=model).first() if model else versions.filter(is_active=True).first()
        if version is None:
            raise CommandError(
                f"No model version named {model!r}." if model else "No active model version: register one."
            )
        try:
            emotion_model = load_model_version(version)
            predictions = predict_folder(emotion_model, data)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        evaluation = score_folder_labels(predictions)
        self.stdout.write(f"model: {version.name}")
        self.stdout.write(f"backend: {emotion_model.backend}")
        self.stdout.write(format_evaluation(evaluation))
        metrics = {"data": str(data.resolve()), **dataclasses.asdict(evaluation)}
        if crowd is not None:
            result = score_against_crowd(predictions, crowd)
            self.stdout.write("")
            self.stdout.write(format_crowd_evaluation(result))
            metrics["crowd"] = {
                "votes": str(votes.resolve()),
                "crowd_agreement": round(result.score.agreement, 4),
                "annotator_share": round(result.score.annotator_share, 4),
                "ece": round(result.ece, 4),
                "images": result.score.counted,
                "recall": result.recall,
                "confusion": result.confusion,
            }
        if options["predictions"]:
            keys = [votes_key(path) for path in predictions.files]
            predicted = [EMOTIONS[i] for i in predictions.predicted]
            _write_predictions(options["predictions"], keys, predicted, predictions.probabilities)
            self.stdout.write(f"predictions: {options['predictions']}")
        if save:
            version.metrics = metrics
            version.save(update_fields=["metrics"])
            self.stdout.write(f"saved as the metrics of {version.name}")


def _write_predictions(path: Path, keys: list[str], predicted: list[str], probabilities) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "predicted", "confidence", *EMOTIONS])
        for key, label, row in zip(keys, predicted, probabilities, strict=True):
            writer.writerow([key, label, f"{row.max():.4f}", *(f"{p:.4f}" for p in row)])
