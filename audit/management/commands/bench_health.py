import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Check the health of folder-per-emotion trees beyond their labels, with the project's own code: "
        "exact and near duplicates, groups whose copies carry different labels, copies across trees "
        "(each tree is one batch: a test set leaking into a training set) and unusable images."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--data",
            required=True,
            type=Path,
            nargs="+",
            help="one or more folders with one sub-folder per emotion",
        )
        parser.add_argument("--model", help="model version name (default: the active one)")
        parser.add_argument("--report", type=Path, help="one CSV row per image here")

    def handle(self, *args, data: list[Path], model: str | None, report: Path | None, **options):
        # Imported here so that `manage.py help` does not load TensorFlow and scikit-learn.
        from audit.health_bench import bench_trees

        for tree in data:
            if not tree.is_dir():
                raise CommandError(f"--data {tree} is not a folder (expected one sub-folder per emotion).")
        try:
            figures, rows = bench_trees(data, model_name=model)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for name, value in figures.items():
            self.stdout.write(f"{name}: {value}")
        if report:
            with report.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            self.stdout.write(f"report: {report}")
