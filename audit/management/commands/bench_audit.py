import csv
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Measure the label audit on a folder-per-emotion tree whose labels count as truth: flip a share "
        "of the labels at random, audit, and score how well the flipped ones are found and fixed. With "
        "--votes, real noise instead: the folders are the given labels and the crowd's majority is the truth."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, type=Path, help="folder with one sub-folder per emotion")
        parser.add_argument("--noise", type=float, default=0.2, help="share of labels to flip, 0..1")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--cv", action="store_true", help="the cross-validated audit")
        parser.add_argument("--model", help="model version name (default: the active one)")
        parser.add_argument("--votes", type=Path, help="crowd votes CSV: measure against real noise")
        parser.add_argument("--report", type=Path, help="with --votes: one CSV row per image here")

    def handle(self, *args, data: Path, noise: float, seed: int, cv: bool, model: str | None, **options):
        # Imported here so that `manage.py help` does not load TensorFlow and scikit-learn.
        from audit.bench import bench_folder, bench_votes

        if not data.is_dir():
            raise CommandError(f"--data {data} is not a folder (expected one sub-folder per emotion).")
        if not 0 <= noise < 1:
            raise CommandError("--noise must be at least 0 and below 1.")
        if options["report"] and not options["votes"]:
            raise CommandError("--report needs --votes.")
        started = time.monotonic()
        try:
            if options["votes"]:
                figures, rows = bench_votes(data, options["votes"], cross_validated=cv, model_name=model)
            else:
                figures = bench_folder(data, noise=noise, seed=seed, cross_validated=cv, model_name=model)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        figures["seconds"] = round(time.monotonic() - started, 1)
        for name, value in figures.items():
            self.stdout.write(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
        if options["report"]:
            with options["report"].open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            self.stdout.write(f"report: {options['report']}")
