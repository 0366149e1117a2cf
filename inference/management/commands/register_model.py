import argparse
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from inference.models import ModelVersion
from inference.selectors import active_model_version
from inference.services import model_version_activate, model_version_register
from projects.models import EMOTIONS


def class_order(value: str) -> list[str]:
    order = [name.strip() for name in value.split(",") if name.strip()]
    if sorted(order) != sorted(EMOTIONS):
        raise argparse.ArgumentTypeError(f"must list each of {', '.join(EMOTIONS)} once, got {value!r}")
    return order


class Command(BaseCommand):
    help = (
        "Register a trained Keras model file as a model version, copying it into storage. Running it "
        "again with the same name and file changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--file", required=True, type=Path, help="a .keras, .h5 or .hdf5 file")
        parser.add_argument("--input-size", type=int, default=64, help="side of the square input, px")
        parser.add_argument("--int8", type=Path, help="its int8 LiteRT file (quantize_model); used to label")
        color = parser.add_mutually_exclusive_group()
        color.add_argument("--grayscale", dest="grayscale", action="store_true", default=True)
        color.add_argument("--color", dest="grayscale", action="store_false")
        parser.add_argument(
            "--preprocessing",
            choices=ModelVersion.Preprocessing.values,
            default=ModelVersion.Preprocessing.MINUS_ONE_ONE,
        )
        parser.add_argument(
            "--class-order", type=class_order, default=list(EMOTIONS), help="the model's outputs, in order"
        )
        activation = parser.add_mutually_exclusive_group()
        activation.add_argument("--activate", action="store_true", help="make it the active version")
        activation.add_argument(
            "--activate-if-none", action="store_true", help="make it active if no version is active"
        )

    def handle(self, *args, **options):
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"--file {path} does not exist.")
        if options["int8"] is not None and not options["int8"].is_file():
            raise CommandError(f"--int8 {options['int8']} does not exist.")
        wanted = {
            "input_size": options["input_size"],
            "grayscale": options["grayscale"],
            "preprocessing": options["preprocessing"],
            "class_order": options["class_order"],
        }
        try:
            with path.open("rb") as handle:
                file = File(handle, name=path.name)
                version, created = model_version_register(
                    options["name"], file, load_from=path, int8=options["int8"], **wanted
                )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        if created:
            self.stdout.write(f"registered model version {version.name}")
        else:
            self.stdout.write(f"model version {version.name} is already registered")
        if options["activate"] or (options["activate_if_none"] and active_model_version() is None):
            model_version_activate(version)
            self.stdout.write(f"model version {version.name} is active")
