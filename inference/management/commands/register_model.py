import argparse
import hashlib
from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from inference.models import EMOTIONS, ModelVersion


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
        wanted = {
            "input_size": options["input_size"],
            "grayscale": options["grayscale"],
            "preprocessing": options["preprocessing"],
            "class_order": options["class_order"],
        }
        version = ModelVersion.objects.filter(name=options["name"]).first()
        if version is None:
            version = register(options["name"], path, wanted)
            self.stdout.write(f"registered model version {version.name}")
        else:
            ensure_same(version, path, wanted)
            self.stdout.write(f"model version {version.name} is already registered")
        if options["activate"] or (
            options["activate_if_none"] and not ModelVersion.objects.filter(is_active=True).exists()
        ):
            activate(version)
            self.stdout.write(f"model version {version.name} is active")


def register(name: str, path: Path, fields: dict) -> ModelVersion:
    from inference.engine import EmotionModel

    try:
        # Loading it once proves the file and its settings fit together, and leaves the converted
        # fast model in MODEL_CACHE_DIR so that workers start without converting.
        EmotionModel(path, **fields)
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path} cannot be used with these settings: {exc}") from exc
    version = ModelVersion(name=name, **fields)
    with path.open("rb") as handle:
        version.file.save(path.name, File(handle), save=False)
    version.save()
    return version


def ensure_same(version: ModelVersion, path: Path, fields: dict) -> None:
    """A version's labels must stay explainable, so a name is never reused for another model."""
    different = [name for name, value in fields.items() if getattr(version, name) != value]
    with version.file.open("rb") as stored, path.open("rb") as given:
        if _digest(stored) != _digest(given):
            different.append("file")
    if different:
        raise CommandError(
            f"A model version named {version.name!r} already exists with a different "
            f"{', '.join(different)}; register this one under a new name."
        )


def activate(version: ModelVersion) -> None:
    # One transaction, deactivating first: the database allows a single active version.
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.is_active = True


def _digest(handle) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()
