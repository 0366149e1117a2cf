import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Measure the label audit on a folder-per-emotion tree whose labels count as truth: flip a share "
        "of the labels at random, audit, and score how well the flipped ones are found and fixed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, type=Path, help="folder with one sub-folder per emotion")
        parser.add_argument("--noise", type=float, default=0.2, help="share of labels to flip, 0..1")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--cv", action="store_true", help="the cross-validated audit")
        parser.add_argument("--model", help="model version name (default: the active one)")

    def handle(self, *args, data: Path, noise: float, seed: int, cv: bool, model: str | None, **options):
        # Imported here so that `manage.py help` does not load TensorFlow and scikit-learn.
        from audit.bench import bench_folder

        if not data.is_dir():
            raise CommandError(f"--data {data} is not a folder (expected one sub-folder per emotion).")
        if not 0 <= noise < 1:
            raise CommandError("--noise must be at least 0 and below 1.")
        started = time.monotonic()
        try:
            figures = bench_folder(data, noise=noise, seed=seed, cross_validated=cv, model_name=model)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        figures["seconds"] = round(time.monotonic() - started, 1)
        for name, value in figures.items():
            self.stdout.write(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
