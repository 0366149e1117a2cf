import csv
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from projects.models import POLICY_MEASURED_WITH

# The shipped default model (models/, see the README), relative to the repository: the one whose
# figures the label policies quote, so a new default is named in one place.
DEFAULT_MODEL_FILE = f"models/{POLICY_MEASURED_WITH}.keras"


class Command(BaseCommand):
    help = (
        "Check the health of folder-per-emotion trees beyond their labels, with the project's own code: "
        "exact and near duplicates, groups whose copies carry different labels, copies across trees "
        "(each tree is one batch: a test set leaking into a training set) and unusable images. With "
        "--synthetic N instead: a generated N-image project in a throwaway database, checked by the "
        "audit worker's own health phase."
    )

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--data",
            type=Path,
            nargs="+",
            help="one or more folders with one sub-folder per emotion",
        )
        source.add_argument(
            "--synthetic",
            type=int,
            metavar="N",
            help="generate an N-image project with planted copies and blank pictures and audit it",
        )
        parser.add_argument("--model", help="model version name (default: the active one); --data only")
        parser.add_argument(
            "--model-file",
            type=Path,
            help=f"the .keras model the generated project is checked with (48 px, grey; default "
            f"{DEFAULT_MODEL_FILE}); --synthetic only",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--report", type=Path, help="one CSV row per image here; --data only")

    def handle(self, *args, data: list[Path] | None, synthetic: int | None, **options):
        figures = self._synthetic(synthetic, options) if synthetic is not None else self._trees(data, options)
        for name, value in figures.items():
            self.stdout.write(f"{name}: {value}")

    def _trees(self, data: list[Path], options) -> dict:
        # Imported here so that `manage.py help` does not load TensorFlow and scikit-learn.
        from audit.health_bench import bench_trees

        for tree in data:
            if not tree.is_dir():
                raise CommandError(f"--data {tree} is not a folder (expected one sub-folder per emotion).")
        try:
            figures, rows = bench_trees(data, model_name=options["model"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if report := options["report"]:
            with report.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            figures["report"] = report
        return figures

    def _synthetic(self, count: int, options) -> dict:
        from django.test.utils import setup_test_environment, teardown_test_environment

        from audit.health_bench import bench_project, synthetic_cleanup

        model_file = options["model_file"] or Path(settings.BASE_DIR) / DEFAULT_MODEL_FILE
        if count < 2:
            raise CommandError("--synthetic needs 2 images or more.")
        if not model_file.is_file():
            raise CommandError(f"--model-file {model_file} does not exist.")
        # The test database machinery makes, migrates and drops a database of its own, so the
        # development data is never touched (as bench_review does).
        if connection.vendor == "sqlite":
            test_settings = settings.DATABASES["default"].setdefault("TEST", {})
            test_settings["NAME"] = str(settings.VAR_DIR / "bench_health.sqlite3")
        setup_test_environment()
        old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        try:
            return bench_project(count, model_file, options["seed"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            synthetic_cleanup()
            connection.creation.destroy_test_db(old_name, verbosity=0)
            teardown_test_environment()
