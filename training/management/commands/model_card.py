import hashlib
import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from projects.models import EMOTIONS
from training.models import Trial
from training.selectors import trial_model_card


class Command(BaseCommand):
    help = (
        "Ship a succeeded trial's model: copy its file to DIR/NAME.keras and write DIR/NAME.md, a "
        "model card with the file's validation scores measured through the inference engine."
    )

    def add_arguments(self, parser):
        parser.add_argument("trial", type=int)
        parser.add_argument("--name", required=True, help="file name without extension")
        parser.add_argument("--dir", type=Path, default=Path("models"))
        parser.add_argument("--validation", type=Path, help="default: the trial's data folder's validation/")

    def handle(self, *args, trial: int, name: str, dir: Path, validation: Path | None, **options):
        # Imported here so that `manage.py help` does not load TensorFlow and OpenCV.
        from inference.crowd import format_crowd_evaluation, votes_read
        from inference.engine import EmotionModel
        from inference.evaluation import (
            format_evaluation,
            predict_folder,
            score_against_crowd,
            score_folder_labels,
        )

        found = Trial.objects.filter(pk=trial, status=Trial.Status.SUCCEEDED).exclude(model_file="").first()
        if found is None:
            raise CommandError(f"Trial {trial} does not exist or has no model (only succeeded trials do).")
        validation = validation or Path(found.data_dir) / "validation"
        if not validation.is_dir():
            raise CommandError(f"{validation} is not a folder of emotion folders.")
        dir.mkdir(parents=True, exist_ok=True)
        target = dir / f"{name}.keras"
        with found.model_file.open("rb") as source, target.open("wb") as copy:
            shutil.copyfileobj(source, copy)
        config = found.config
        model = EmotionModel(target, config["input_size"], config["grayscale"], "zero_one", EMOTIONS)
        predictions = predict_folder(model, validation)
        evaluation = score_folder_labels(predictions)
        crowd = score_against_crowd(predictions, votes_read(config["votes"])) if config.get("votes") else None
        card = trial_model_card(
            found,
            file_name=target.name,
            sha256=hashlib.sha256(target.read_bytes()).hexdigest(),
            evaluation=evaluation,
            validation_dir=str(validation),
            crowd=crowd,
        )
        (dir / f"{name}.md").write_text(card)
        self.stdout.write(format_evaluation(evaluation))
        if crowd is not None:
            self.stdout.write(format_crowd_evaluation(crowd))
        self.stdout.write(f"wrote {target} and {dir / f'{name}.md'}")
