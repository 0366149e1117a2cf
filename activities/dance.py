"""Joy's dance challenge: the choreography and the scoring rules. The page scores each tap or
camera-detected movement live with a copy of `dance_score` (static/activities/dance.js) and then
asks the server, whose result is the one shown on the score card and kept."""

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from django.utils.translation import gettext_lazy as _

BEAT_MS = 500  # 120 beats per minute: the music and the moves follow this
ROUND_MS = 30_000
BEATS = tuple(range(BEAT_MS, ROUND_MS, BEAT_MS))  # 59 beats; none at 0, which nobody can hit
PERFECT_MS = 120
GOOD_MS = 240  # under half a beat, so a movement can only ever count for the nearest beat
PERFECT_POINTS = 100
GOOD_POINTS = 50
MAX_COMBO_BONUS = 10  # a combo adds 10% a step, up to double points
STRAY_PENALTY = 40  # moving between beats costs, so flailing non-stop scores less than dancing
MAX_EVENTS = 400
# Plausibility: people and cameras are off the beat by tens of milliseconds, varying from move to
# move; a script that writes the beat times is not. Judged only on rounds with many hits, where
# a forged score matters and chance precision is out of the question.
PLAUSIBLE_MIN_HITS = 16
PLAUSIBLE_MIN_SPREAD_MS = 3.0
MOVE_BEATS = 4  # a new move every four beats

MOVES = (
    ("jump", _("Jump!")),
    ("wave_left", _("Wave your left arm")),
    ("wave_right", _("Wave your right arm")),
    ("clap", _("Clap above your head")),
    ("arms_up", _("Both arms up!")),
    ("sway", _("Sway side to side")),
)


@dataclass(frozen=True)
class DanceResult:
    score: int
    perfect: int
    good: int
    missed: int
    strays: int
    best_combo: int

    def as_dict(self) -> dict:
        return asdict(self)


def choreography() -> list[dict]:
    """Which move is shown from which time on, in the active language."""
    steps = []
    for i, start in enumerate(range(0, ROUND_MS, BEAT_MS * MOVE_BEATS)):
        key, label = MOVES[i % len(MOVES)]
        steps.append({"at_ms": start, "move": key, "label": str(label)})
    return steps


def dance_score(events_ms: Sequence[float]) -> DanceResult:
    """Score a round from the times (ms since the round started) at which the visitor moved.

    Each movement counts for its nearest beat: within PERFECT_MS it is perfect, within GOOD_MS good,
    otherwise a stray. A beat keeps only its closest movement; the others are strays too. Hits in a
    row build a combo that multiplies the points; a missed beat resets it.
    """
    best_offset: dict[int, float] = {}
    strays = 0
    for event in sorted(float(e) for e in events_ms):
        if not 0 <= event <= ROUND_MS:
            continue
        beat = round(event / BEAT_MS) * BEAT_MS
        offset = abs(event - beat)
        if beat not in BEATS or offset > GOOD_MS:
            strays += 1
        elif beat in best_offset:
            strays += 1
            best_offset[beat] = min(best_offset[beat], offset)
        else:
            best_offset[beat] = offset
    score = perfect = good = combo = best_combo = 0
    for beat in BEATS:
        offset = best_offset.get(beat)
        if offset is None:
            combo = 0
            continue
        combo += 1
        best_combo = max(best_combo, combo)
        base = PERFECT_POINTS if offset <= PERFECT_MS else GOOD_POINTS
        perfect += base == PERFECT_POINTS
        good += base == GOOD_POINTS
        score += base + base * min(combo - 1, MAX_COMBO_BONUS) // 10
    missed = len(BEATS) - perfect - good
    return DanceResult(max(0, score - STRAY_PENALTY * strays), perfect, good, missed, strays, best_combo)


def dance_plausible(events_ms: Sequence[float]) -> bool:
    """False when the movements hit the beats with a precision no person or camera has: many hits
    whose offsets from the beat barely vary (exactly on the beat, or all shifted alike)."""
    offsets = []
    for event in (float(e) for e in events_ms):
        if 0 <= event <= ROUND_MS:
            beat = round(event / BEAT_MS) * BEAT_MS
            if beat in BEATS and abs(event - beat) <= GOOD_MS:
                offsets.append(event - beat)
    if len(offsets) < PLAUSIBLE_MIN_HITS:
        return True
    return statistics.pstdev(offsets) >= PLAUSIBLE_MIN_SPREAD_MS


def scoring_rules() -> dict:
    """The constants the page's live copy of `dance_score` needs."""
    return {
        "beat_ms": BEAT_MS,
        "round_ms": ROUND_MS,
        "perfect_ms": PERFECT_MS,
        "good_ms": GOOD_MS,
        "perfect_points": PERFECT_POINTS,
        "good_points": GOOD_POINTS,
        "max_combo_bonus": MAX_COMBO_BONUS,
        "stray_penalty": STRAY_PENALTY,
    }
