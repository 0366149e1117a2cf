from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Write a model version's int8 LiteRT file, calibrated on faces of a folder-per-emotion tree; "
        "with --attach, the version uses it from now on. Measure what it costs with evaluate_model "
        "--votes before and after."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", help="model version name (default: the active one)")
        parser.add_argument("--data", required=True, type=Path, help="faces to calibrate on (train/)")
        parser.add_argument("--out", required=True, type=Path, help="the .tflite file to write")
        parser.add_argument("--images", type=int, default=None, help="how many faces to calibrate on")
        parser.add_argument("--attach", action="store_true", help="store it as the version's int8 file")

    def handle(
        self, *args, model: str | None, data: Path, out: Path, images: int | None, attach: bool, **options
    ):
        # Imported here so that `manage.py help` does not load TensorFlow.
        from django.core.files import File

        from inference.engine import EmotionModel, _local_file
        from inference.models import ModelVersion
        from inference.quantize import CALIBRATION_IMAGES, calibration_inputs, quantize

        versions = ModelVersion.objects.all()
        version = versions.filter(name=model).first() if model else versions.filter(is_active=True).first()
        if version is None:
            raise CommandError(f"No model version named {model!r}." if model else "No active model version.")
        if not data.is_dir():
            raise CommandError(f"--data {data} is not a folder (expected one sub-folder per emotion).")
        float_model = EmotionModel(
            _local_file(version, version.file),
            version.input_size,
            version.grayscale,
            version.preprocessing,
            version.class_order,
        )
        try:
            samples = calibration_inputs(float_model, data, images or CALIBRATION_IMAGES)
            content = quantize(float_model, samples)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(content)
        self.stdout.write(f"wrote {out} ({len(content)} bytes, calibrated on {len(samples)} faces)")
        if attach:
            with out.open("rb") as handle:
                version.int8_file.save(out.name, File(handle), save=True)
            self.stdout.write(f"model version {version.name} now labels with {version.int8_file.name}")
