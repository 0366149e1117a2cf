import json

from django import forms
from django.core.exceptions import ValidationError

from projects.models import Project

from .models import Trial
from .presets import PRESETS


def preset_choices() -> list[tuple[str, str]]:
    return [(name, f"{name} — {description}") for name, (description, _config) in PRESETS.items()]


class TrialStartForm(forms.Form):
    """What an admin chooses before a trial starts; `trial_create` does the real validation."""

    name = forms.CharField(max_length=200)
    preset = forms.ChoiceField()
    config = forms.CharField(
        label="Configuration (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 20, "cols": 80, "spellcheck": "false"}),
        help_text="Filled from the preset; edit any value. Left empty, the preset's defaults are used.",
    )
    data_source = forms.ChoiceField(
        choices=Trial.DataSource.choices, initial=Trial.DataSource.FOLDER, widget=forms.RadioSelect
    )
    data_dir = forms.CharField(
        label="Server folder",
        max_length=500,
        required=False,
        help_text="A folder on the server with train/ and validation/, one subfolder per emotion.",
    )
    votes = forms.CharField(
        label="Crowd votes",
        max_length=500,
        required=False,
        help_text=(
            "For server-folder data: a CSV on the server with votes.csv's columns (file, then the "
            "vote counts). The trial then learns each face's vote distribution instead of its folder."
        ),
    )
    project = forms.ModelChoiceField(
        queryset=Project.objects.order_by("name"),
        required=False,
        help_text="Trains on the project's final labels.",
    )
    validation_fraction = forms.FloatField(
        initial=0.2, min_value=0.05, max_value=0.5, help_text="For project data: share held out."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["preset"].choices = preset_choices()

    def clean_config(self) -> dict | None:
        text = self.cleaned_data["config"].strip()
        if not text:
            return None
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValidationError(f"Not valid JSON: {error}") from None
        if not isinstance(config, dict):
            raise ValidationError("The configuration must be a JSON object.")
        return config

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("data_source") == Trial.DataSource.FOLDER and not cleaned.get("data_dir"):
            self.add_error("data_dir", "Name the server folder to train on.")
        if cleaned.get("data_source") == Trial.DataSource.PROJECT and not cleaned.get("project"):
            self.add_error("project", "Choose the project whose labels to train on.")
        if cleaned.get("data_source") == Trial.DataSource.PROJECT and cleaned.get("votes"):
            self.add_error("votes", "Crowd votes are matched to files of a server folder, not to a project.")
        return cleaned

    def add_service_errors(self, error: ValidationError) -> None:
        """Show `trial_create`'s messages next to the field they are about."""
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for key, messages in error.message_dict.items():
            if key in self.fields:
                self.add_error(key, messages)
            elif key == "__all__":
                self.add_error(None, messages)
            else:  # a configuration key
                self.add_error("config", [f"{key}: {message}" for message in messages])

    def trial_create_kwargs(self) -> dict:
        data = self.cleaned_data
        from_folder = data["data_source"] == Trial.DataSource.FOLDER
        config = data["config"]
        if data.get("votes"):
            config = (config or {}) | {"votes": data["votes"]}
        return {
            "name": data["name"],
            "preset": data["preset"],
            "config": config,
            "data_dir": data["data_dir"] if from_folder else "",
            "project": None if from_folder else data["project"],
            "validation_fraction": data["validation_fraction"],
        }
