"""Disgust's ink-blot test: what the visitor wrote for each plate, sorted into a few playful
categories, and a summary built from the categories they used most. It is a game, not a test of
anything, and the summary says so."""

import re
from collections import Counter
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

MAX_PLATES = 10
MAX_ANSWER_CHARS = 200


@dataclass(frozen=True)
class Category:
    name: str
    # Whole words, or stems ending in "*" that match any word starting with them: Polish words
    # change their endings, and short English words ("bat", "nic") must not match longer ones.
    keywords: tuple[str, ...]
    reading: Promise


CATEGORIES = (
    Category(
        "emptiness",
        ("empty", "nothing", "void", "hole*", "blank", "nic", "pustk*", "pust*", "dziur*", "próżni*"),
        gettext_lazy("You see emptiness? That's the mind's natural defence!"),
    ),
    Category(
        "insects",
        (
            "insect*", "bug*", "spider*", "beetle*", "ant", "ants", "fly", "flies", "moth*", "worm*",
            "owad*", "robak*", "pają*", "pajęcz*", "chrząszcz*", "mrówk*", "much*", "ćm*", "gąsienic*",
        ),
        gettext_lazy("Insects and crawling things: you notice the small details others miss."),
    ),
    Category(
        "nature",
        (
            "flower*", "tree*", "leaf", "leaves", "forest*", "rose*", "plant*", "garden*", "butterfl*",
            "kwiat*", "drzew*", "liś*", "liść*", "las", "lasu", "lesie", "róż*", "rośli*", "motyl*",
        ),
        gettext_lazy("Flowers, plants and butterflies: you look for beauty, even in a blot of ink."),
    ),
    Category(
        "people",
        (
            "face*", "person", "people", "man", "men", "woman", "women", "child*", "dancer*", "twarz*",
            "człowie*", "ludzi*", "osob*", "kobiet*", "mężczyzn*", "dziec*", "tancerk*", "tancerz*",
        ),
        gettext_lazy("Faces and people: you are tuned in to others and how they feel."),
    ),
    Category(
        "animals",
        (
            "dog*", "cat", "cats", "bat", "bats", "bird*", "bear*", "wolf", "wolves", "animal*", "crab*",
            "fox*", "pies", "psa", "psy", "kot*", "nietoperz*", "ptak*", "niedźwiedź*", "niedźwiedz*",
            "wilk*", "zwierz*", "krab*", "lis", "lisa",
        ),
        gettext_lazy("Animals: your imagination is lively, playful and full of movement."),
    ),
    Category(
        "monsters",
        (
            "monster*", "demon*", "ghost*", "skull*", "devil*", "shadow*", "potw*", "duch*", "czaszk*",
            "diab*", "cień", "cienie", "cieni*", "straszn*",
        ),
        gettext_lazy("Monsters and shadows: your imagination keeps watch. Fear would be proud of you."),
    ),
    Category(
        "yuck",
        (
            "slime*", "mould*", "mold*", "vomit*", "goo", "rot*", "dirt*", "gross", "yuck", "ew", "disgust*",
            "śluz*", "pleś*", "wymiocin*", "bło*", "brud*", "obrzydl*", "ohyd*", "fuj", "zgni*",
        ),
        gettext_lazy("Something gross? That's Disgust doing her job: keeping you away from harm."),
    ),
)  # fmt: skip

_WORD = re.compile(r"\w+", re.UNICODE)


def answer_categories(answer: str) -> list[str]:
    """The categories one answer touches, in CATEGORIES order."""
    words = _WORD.findall(answer.lower())
    return [category.name for category in CATEGORIES if any(_matches(k, words) for k in category.keywords)]


def _matches(keyword: str, words: list[str]) -> bool:
    if keyword.endswith("*"):
        return any(word.startswith(keyword[:-1]) for word in words)
    return keyword in words


@dataclass(frozen=True)
class RorschachSummary:
    answers: list[dict]
    lines: list[str]


def rorschach_summary(answers: list[str]) -> RorschachSummary:
    """Readings for the categories the visitor used, most used first; an empty answer counts as
    seeing emptiness, and answers that fit no category earn a reading of their own."""
    by_name = {category.name: category for category in CATEGORIES}
    counts: Counter[str] = Counter()
    tagged, unusual = [], 0
    for answer in answers:
        text = answer.strip()
        names = answer_categories(text) if text else ["emptiness"]
        unusual += not names
        counts.update(names)
        tagged.append({"text": text, "categories": names})
    first_seen = {name: i for i, name in enumerate(n for a in tagged for n in a["categories"])}
    ranked = sorted(counts, key=lambda name: (-counts[name], first_seen[name]))
    lines = [str(by_name[name].reading) for name in ranked[:3]]
    if unusual:
        lines.append(_("Some of what you saw fits no box at all: an original way of seeing is a strength."))
    lines.append(
        _("Every answer is a good answer: ink blots show how rich your imagination is, nothing more.")
    )
    return RorschachSummary(answers=tagged, lines=lines)
