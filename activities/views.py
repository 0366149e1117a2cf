"""The activity pages and the small JSON endpoints they call. Anyone may play, logged in or not;
the JSON endpoints are plain Django views so CSRF protection applies to anonymous visitors too."""

import json

from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from inference.services import NoActiveModel

from . import selectors, services
from .characters import CHARACTERS, PICKER_ORDER
from .dance import MAX_EVENTS, choreography, scoring_rules
from .dialogues import FEAR_MENTOR, SADNESS_CHAT, dialogue_as_json
from .rorschach import MAX_ANSWER_CHARS, MAX_PLATES, rorschach_summary

RORSCHACH_PLATES = 5
TEMPLATES = {
    "happy": "activities/dance.html",
    "sad": "activities/chat.html",
    "angry": "activities/breathing.html",
    "fear": "activities/chat.html",
    "disgust": "activities/rorschach.html",
    "surprise": "activities/calm.html",
    "neutral": "activities/calm.html",
}
DIALOGUE_OF = {"sad": SADNESS_CHAT, "fear": FEAR_MENTOR}


def _page_context(emotion: str) -> dict:
    return {
        "character": CHARACTERS[emotion],
        "picker": [CHARACTERS[e] for e in PICKER_ORDER],
        "js_strings": _js_strings(),
    }


@require_GET
def start(request):
    context = _page_context("neutral") | {"recognise_url": reverse("activities:recognise")}
    return render(request, "activities/start.html", context)


@require_GET
def experience(request, emotion: str):
    if emotion not in TEMPLATES:
        raise Http404("No such emotion.")
    context = _page_context(emotion)
    if emotion in DIALOGUE_OF:
        context["dialogue"] = dialogue_as_json(DIALOGUE_OF[emotion])
    if emotion == "happy":
        context["dance"] = scoring_rules() | {
            "steps": choreography(),
            "score_url": reverse("activities:dance_score"),
        }
        context["best_scores"] = selectors.dance_best_scores(request.user)
    if emotion == "disgust":
        context["rorschach"] = {
            "plates": RORSCHACH_PLATES,
            "max_chars": MAX_ANSWER_CHARS,
            "summary_url": reverse("activities:rorschach_summary"),
        }
    return render(request, TEMPLATES[emotion], context)


def _client_key(request) -> str:
    # REMOTE_ADDR, not X-Forwarded-For: a header the client writes itself would let it pick a new
    # identity per request. Behind a proxy, the proxy must set REMOTE_ADDR (gunicorn does with
    # --forwarded-allow-ips).
    if request.user.is_authenticated:
        return f"user:{request.user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR', '')}"


def _error(message: str, status: int, headers: dict | None = None) -> JsonResponse:
    return JsonResponse({"detail": message}, status=status, headers=headers)


@require_POST
def recognise(request):
    """One photo (multipart field `image`) in; the emotion, its probabilities and the greeting out,
    or `face_found: false` with what to try."""
    per_minute = settings.ACTIVITIES_RECOGNISE_PER_MINUTE
    if not services.rate_limit_allow(f"recognise:{_client_key(request)}", per_minute):
        return _error(
            _("Too many tries in a row. Wait a minute, then try again."), 429, {"Retry-After": "60"}
        )
    max_bytes = settings.ACTIVITIES_PHOTO_MAX_BYTES
    # Refused before Django parses the body, so an oversized upload is never written to disk.
    if int(request.META.get("CONTENT_LENGTH") or 0) > max_bytes + 64 * 1024:
        return _error(_("This photo is too large. Use one under %(mb)d MB.") % {"mb": max_bytes >> 20}, 413)
    upload = request.FILES.get("image")
    if upload is None:
        return _error(_("Send a photo in the “image” field."), 400)
    if upload.size > max_bytes:
        return _error(_("This photo is too large. Use one under %(mb)d MB.") % {"mb": max_bytes >> 20}, 413)
    try:
        result = services.emotion_recognise(upload.name or "photo.jpg", upload.read())
    except ValueError as exc:
        return _error(_("This photo cannot be used: %(reason)s") % {"reason": exc}, 400)
    except NoActiveModel:
        return _error(_("Emotion recognition is not available right now. Pick an emotion yourself."), 503)
    if result["face_found"]:
        result["url"] = reverse("activities:experience", args=[result["emotion"]])
    return JsonResponse(result)


def _json_body(request) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(_("The request is not valid JSON.")) from None
    if not isinstance(body, dict):
        raise ValueError(_("The request is not valid JSON."))
    return body


@require_POST
def dance_round(request):
    """A finished round (`events_ms`: when the visitor moved) in; its score, kept when logged in."""
    try:
        events = _json_body(request).get("events_ms")
        if not isinstance(events, list) or len(events) > MAX_EVENTS:
            raise ValueError(_("Send at most %(n)d movement times.") % {"n": MAX_EVENTS})
        if not all(isinstance(e, int | float) and not isinstance(e, bool) for e in events):
            raise ValueError(_("Movement times must be numbers."))
    except ValueError as exc:
        return _error(str(exc), 400)
    try:
        result, saved = services.dance_round_record(user=request.user, events_ms=events)
    except services.ImplausibleRound as exc:
        return _error(str(exc), 400)
    except services.RoundTooSoon as exc:
        return _error(str(exc), 429, {"Retry-After": "30"})
    best = [s.score for s in selectors.dance_best_scores(request.user)]
    return JsonResponse(result.as_dict() | {"saved": saved is not None, "best": best})


@require_POST
def rorschach_summary_view(request):
    """The visitor's answers for each plate in; the readings for them out."""
    try:
        answers = _json_body(request).get("answers")
        if not isinstance(answers, list) or not 1 <= len(answers) <= MAX_PLATES:
            raise ValueError(_("Send between 1 and %(n)d answers.") % {"n": MAX_PLATES})
        if not all(isinstance(a, str) and len(a) <= MAX_ANSWER_CHARS for a in answers):
            raise ValueError(
                _("Each answer must be text of at most %(n)d characters.") % {"n": MAX_ANSWER_CHARS}
            )
    except ValueError as exc:
        return _error(str(exc), 400)
    summary = rorschach_summary(answers)
    return JsonResponse({"answers": summary.answers, "lines": summary.lines})


def _js_strings() -> dict[str, str]:
    """Everything the scripts say, in the active language (one catalogue for templates, Python
    and scripts, so translators have one file)."""
    return {
        "cameraStarting": _("Starting the camera…"),
        "cameraReady": _("Camera ready. Find good light and press the button."),
        "cameraRefused": _("The camera is blocked. Upload a photo instead, or pick an emotion yourself."),
        "noCamera": _("No camera found. Upload a photo instead, or pick an emotion yourself."),
        "recognising": _("Looking at your face…"),
        "failed": _("Something went wrong. Try again, or pick an emotion yourself."),
        "tooLarge": _("This photo is too large."),
        "csrf": _("Your session expired. Reload the page and try again."),
        "openActivity": _("Open: %(activity)s"),
        "pickAnother": _("Pick another emotion"),
        "soundOn": _("Sound: on"),
        "soundOff": _("Sound: off"),
        "perfect": _("Perfect!"),
        "good": _("Good!"),
        "offBeat": _("Off the beat"),
        "getReady": _("Get ready…"),
        "secondsLeft": _("%(s)s s left"),
        "scoreTitle": _("Joy's dance challenge"),
        "scoreLine": _("Perfect: %(perfect)s · Good: %(good)s · Best combo: %(combo)s"),
        "scoreShare": _("I scored %(score)s points in Joy's dance challenge!"),
        "saved": _("Saved to your best scores."),
        "notSaved": _("Log in to keep your best scores."),
        "inhale": _("Breathe in"),
        "hold": _("Hold"),
        "exhale": _("Breathe out"),
        "pause": _("Pause"),
        "resume": _("Resume"),
        "plateOf": _("Plate %(n)s of %(total)s"),
        "nextPlate": _("Next plate"),
        "seeSummary": _("See my summary"),
        "you": _("You"),
        "typing": _("typing…"),
    }
