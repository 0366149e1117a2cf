import dataclasses
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference.models import ModelVersion


class Command(BaseCommand):
    help = "Accuracy, per-class scores and the confusion matrix of a model on a folder-per-emotion tree."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, type=Path, help="folder with one sub-folder per emotion")
        parser.add_argument("--model", help="model version name (default: the active one)")
        parser.add_argument("--save", action="store_true", help="store the figures as the version's metrics")

    def handle(self, *args, data: Path, model: str | None, save: bool, **options):
        # Imported here so that `manage.py help` does not load scikit-learn and OpenCV.
        from inference.engine import load_model_version
        from inference.evaluation import evaluate_folder, format_evaluation

        if not data.is_dir():
            raise CommandError(f"--data {data} is not a folder (expected one sub-folder per emotion).")
        versions = ModelVersion.objects.all()
        version = versions.filter(name=model).first() if model else versions.filter(is_active=True).first()
        if version is None:
            raise CommandError(
                f"No model version named {model!r}." if model else "No active model version: register one."
            )
        try:
            evaluation = evaluate_folder(load_model_version(version), data)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"model: {version.name}")
        self.stdout.write(format_evaluation(evaluation))
        if save:
            version.metrics = {"data": str(data.resolve()), **dataclasses.asdict(evaluation)}
            version.save(update_fields=["metrics"])
            self.stdout.write(f"saved as the metrics of {version.name}")
