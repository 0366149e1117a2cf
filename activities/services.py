"""Writes and the work behind the activity endpoints: recognising a face, keeping dance scores,
and counting requests per visitor."""

import time

from django.core.cache import cache
from django.utils.translation import gettext as _

from inference.services import image_predict
from projects.models import Image

from .characters import CHARACTERS
from .dance import DanceResult, dance_score
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


def dance_round_record(*, user, events_ms: list[float]) -> tuple[DanceResult, DanceScore | None]:
    """Score a finished round; keep it when the visitor is logged in."""
    result = dance_score(events_ms)
    if not user.is_authenticated:
        return result, None
    saved = DanceScore.objects.create(
        user=user, score=result.score, perfect=result.perfect, good=result.good, best_combo=result.best_combo
    )
    return result, saved


def rate_limit_allow(key: str, limit: int, window_s: int = 60) -> bool:
    """Count one request for `key` in the current fixed window; False once over `limit`.

    A fixed window lets a client send up to twice the limit across a window edge, which is fine
    for keeping one visitor from monopolising the model, and costs one cache round trip.
    """
    bucket = f"activities:rate:{key}:{int(time.time() // window_s)}"
    cache.add(bucket, 0, timeout=window_s)
    try:
        count = cache.incr(bucket)
    except ValueError:  # the window expired between add() and incr()
        cache.set(bucket, 1, timeout=window_s)
        count = 1
    return count <= limit
