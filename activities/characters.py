"""The seven emotions as the activities present them: who hosts each one, what they say, and
which experience opens. Strings are lazy so they follow the visitor's language."""

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from projects.models import EMOTIONS


@dataclass(frozen=True)
class Character:
    emotion: str
    label: Promise  # the emotion's name, which is also its host's name in the film
    greeting: Promise
    activity: Promise  # what the experience is called; empty where there is none
    colour: str  # the character's main colour, also used for the emotion's bar

    @property
    def has_activity(self) -> bool:
        return bool(str(self.activity))


CHARACTERS: dict[str, Character] = {
    "happy": Character(
        "happy",
        _("Joy"),
        _("Feel that burst of energy? Time to dance!"),
        _("Dance challenge"),
        "#f7c531",
    ),
    "sad": Character("sad", _("Sadness"), _("Need support? I'm here for you."), _("Support chat"), "#4f7fd9"),
    "angry": Character(
        "angry",
        _("Anger"),
        _("Feel like you're about to explode? Breathe!"),
        _("Breathing session"),
        "#d8412f",
    ),
    "fear": Character(
        "fear",
        _("Fear"),
        _("Feeling anxious? Let's find safety together."),
        _("Talk with the mentor"),
        "#9466c9",
    ),
    "disgust": Character(
        "disgust",
        _("Disgust"),
        _("Something disgusted you? Explore your reaction!"),
        _("Ink blot test"),
        "#4caf50",
    ),
    "surprise": Character(
        "surprise", _("Surprise"), _("Enjoy a moment of calm, or pick another emotion."), "", "#f08c3a"
    ),
    "neutral": Character(
        "neutral", _("Neutral"), _("Enjoy a moment of calm, or pick another emotion."), "", "#8a94a6"
    ),
}
assert set(CHARACTERS) == set(EMOTIONS), "every emotion the model knows needs a character"

# The order the emotion picker shows them in: the film's five first.
PICKER_ORDER = ("happy", "sad", "angry", "fear", "disgust", "surprise", "neutral")
