"""Writes and the work behind the activity endpoints: recognising a face, keeping dance scores,
and counting requests per visitor."""

import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from inference.services import image_predict
from projects.models import Image

from .characters import CHARACTERS
from .dance import ROUND_MS, DanceResult, dance_plausible, dance_score
from .models import DanceScore


def emotion_recognise(name: str, data: bytes) -> dict:
    """The emotion in one photo, with what the page shows about it in the active language; or,
    when no face was found (a logo, a test pattern, a face too small or turned away), only
    `face_found: False` and what to try, since the model's guess would be about the background.

    Raises ValueError (why the photo is unusable) and inference.services.NoActiveModel.
    """
    prediction = image_predict(name, data)
    if prediction.unsure_reason == Image.UnsureReason.NO_FACE:
        return {
            "face_found": False,
            "detail": _(
                "We could not find a face in this picture. Look straight at the camera in good light, "
                "come a little closer, or pick an emotion yourself."
            ),
            "face_path": prediction.face_path,
        }
    character = CHARACTERS[prediction.emotion]
    return {
        "face_found": True,
        "emotion": prediction.emotion,
        "label": str(character.label),
        "confidence": prediction.confidence,
        "probabilities": prediction.probabilities,
        "labels": {emotion: str(c.label) for emotion, c in CHARACTERS.items()},
        "colours": {emotion: c.colour for emotion, c in CHARACTERS.items()},
        "greeting": str(character.greeting),
        "activity": str(character.activity),
        "face_path": prediction.face_path,
        "unsure": bool(prediction.unsure_reason),
    }


class ImplausibleRound(ValueError):
    """Movement times no person makes (dance.dance_plausible)."""


class RoundTooSoon(Exception):
    """A second round to keep within one round's length of the last one kept."""


def dance_round_record(*, user, events_ms: list[float]) -> tuple[DanceResult, DanceScore | None]:
    """Score a finished round; keep it when the visitor is logged in. Only the user's
    ACTIVITIES_DANCE_SCORES_KEPT best rounds stay, so the table does not grow a row per call.

    Raises ImplausibleRound, and RoundTooSoon when the user's last kept round is less than a
    round's length ago (nobody plays two 30-second rounds in under 30 seconds).
    """
    if not dance_plausible(events_ms):
        raise ImplausibleRound(_("These movement times do not look like a real round."))
    result = dance_score(events_ms)
    if not user.is_authenticated:
        return result, None
    with transaction.atomic():
        # The user's row lock makes parallel submissions queue, so the pace check holds for them.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        kept = DanceScore.objects.filter(user=user)
        last = kept.order_by("-created_at").values_list("created_at", flat=True).first()
        if last is not None and timezone.now() - last < timedelta(milliseconds=ROUND_MS):
            raise RoundTooSoon(_("A round takes 30 seconds; this one was not kept."))
        saved = DanceScore.objects.create(
            user=user,
            score=result.score,
            perfect=result.perfect,
            good=result.good,
            best_combo=result.best_combo,
        )
        best = kept.order_by("-score", "-created_at").values_list("id", flat=True)
        top = list(best[: settings.ACTIVITIES_DANCE_SCORES_KEPT])
        kept.exclude(id__in=top).delete()
    return result, saved if saved.id in top else None


# The rate limit's clock; tests pin it, since a window edge between two counted requests would
# start a new count.
clock = time.time


def rate_limit_allow(key: str, limit: int, window_s: int = 60) -> bool:
    """Count one request for `key` in the current fixed window; False once over `limit`.

    A fixed window lets a client send up to twice the limit across a window edge, which is fine
    for keeping one visitor from monopolising the model, and costs one cache round trip.
    """
    bucket = f"activities:rate:{key}:{int(clock() // window_s)}"
    cache.add(bucket, 0, timeout=window_s)
    try:
        count = cache.incr(bucket)
    except ValueError:  # the window expired between add() and incr()
        cache.set(bucket, 1, timeout=window_s)
        count = 1
    return count <= limit
