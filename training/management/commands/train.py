import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from training import runner, services
from training.models import Trial
from training.presets import PRESETS


def setting(value: str) -> tuple[str, object]:
    """key=value, the value read as JSON when it is JSON (numbers, true, null, lists), else text."""
    key, sep, raw = value.partition("=")
    if not sep or not key:
        raise ValueError(value)
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


class Command(BaseCommand):
    help = "Run a training trial in this process, recorded like one started from the admin."

    def add_arguments(self, parser):
        parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
        parser.add_argument("--data", required=True, help="folder with train/ and validation/")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--name", default="", help="trial name (default: preset and epochs)")
        parser.add_argument("--votes", help="crowd votes CSV: train on vote distributions (sets votes=)")
        parser.add_argument("--init-from", help="a saved .keras model to start from (sets init_from=)")
        parser.add_argument(
            "--backup-dir", help="keep each epoch here; the same command run again resumes (sets backup_dir=)"
        )
        parser.add_argument(
            "--set", type=setting, action="append", default=[], metavar="KEY=VALUE", help="override a setting"
        )

    def handle(self, *args, **options):
        overrides = dict(options["set"])
        for option in ("epochs", "votes", "init_from", "backup_dir"):
            if options[option] is not None:
                overrides[option] = options[option]
        try:
            trial = services.trial_create(
                name=options["name"] or f"{options['preset']} (shell)",
                preset=options["preset"],
                config=overrides,
                data_dir=options["data"],
                start=False,
            )
        except ValidationError as exc:
            problems = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            raise CommandError(f"invalid trial: {problems}") from exc
        services.trial_claim(trial.pk)
        self.stdout.write(f"trial {trial.pk}: {trial.config['epochs']} epochs of {trial.preset}")
        try:
            trial = runner.run(trial.pk, verbose=1)  # Keras's own per-epoch progress bar
        except KeyboardInterrupt:
            # Ctrl-C: say so now instead of leaving a "running" trial for the lost-trial sweep.
            Trial.objects.filter(pk=trial.pk, status=Trial.Status.RUNNING).update(
                status=Trial.Status.CANCELLED, error="Interrupted in the shell.", finished_at=timezone.now()
            )
            raise CommandError(f"trial {trial.pk} interrupted") from None
        if trial.status != Trial.Status.SUCCEEDED:
            raise CommandError(f"trial {trial.pk} {trial.status}: {trial.error}")
        metrics = trial.metrics
        self.stdout.write(
            f"trial {trial.pk} succeeded in {trial.seconds_total:.0f} s: validation accuracy "
            f"{metrics['accuracy']:.4f} on {metrics['validation_count']} images; "
            f"model {trial.model_file.name}"
        )
