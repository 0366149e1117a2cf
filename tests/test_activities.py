"""Emotions in Action: the dialogue trees, the ink-blot summary, dance scoring, the recognise
endpoint and the pages."""

import json
import os
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from activities import dance
from activities.characters import CHARACTERS
from activities.dance import BEATS, dance_score
from activities.dialogues import DIALOGUES, Choice, Dialogue, Node, dialogue_as_json, dialogue_problems
from activities.models import DanceScore
from activities.rorschach import answer_categories, rorschach_summary
from inference.models import ModelVersion
from projects.models import EMOTIONS
from tests.conftest import client_for
from tests.factories import face_jpeg

RECOGNISE = "/play/recognise/"


# Inside one rate-limit window whatever the wall clock says: a minute's edge between two requests
# of a test would start a new count (it did once, in CI).
PINNED_TIME = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _fresh_rate_limits(monkeypatch):
    from activities import services

    monkeypatch.setattr(services, "clock", lambda: PINNED_TIME)
    cache.clear()
    yield
    cache.clear()


# ---- dialogue trees --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DIALOGUES))
def test_every_dialogue_node_is_reachable_and_every_path_can_end(name):
    assert dialogue_problems(DIALOGUES[name]) == []


@pytest.mark.parametrize("name", sorted(DIALOGUES))
def test_walking_every_choice_visits_every_node_and_reaches_an_ending(name):
    dialogue = DIALOGUES[name]
    seen, endings, stack = set(), set(), [dialogue.start]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = dialogue.nodes[node_id]  # KeyError here would be a dangling link
        if node.is_ending:
            endings.add(node_id)
        stack += [choice.next for choice in node.choices]
    assert seen == set(dialogue.nodes)
    assert endings
    # Always taking the first choice must finish too, not circle for ever.
    node_id, steps = dialogue.start, 0
    while not dialogue.nodes[node_id].is_ending:
        choices = dialogue.nodes[node_id].choices
        # Prefer a choice that has not been taken yet, so a loop back to a menu moves on.
        node_id = choices[min(steps, len(choices) - 1)].next
        steps += 1
        assert steps < 50


def test_the_sadness_chat_ends_with_i_feel_better_and_the_mentor_with_control():
    sad_endings = {k for k, n in DIALOGUES["sadness"].nodes.items() if n.is_ending}
    fear_endings = {k for k, n in DIALOGUES["fear"].nodes.items() if n.is_ending}
    assert "better" in sad_endings
    assert fear_endings == {"in_control"}
    labels = [
        str(c.label) for n in DIALOGUES["sadness"].nodes.values() for c in n.choices if c.next == "better"
    ]
    assert "I feel better" in labels


def test_dialogue_problems_finds_dangling_links_unreachable_nodes_and_traps():
    line = ("hello",)
    broken = Dialogue(
        "broken",
        "a",
        {
            "a": Node(line, (Choice("go", "b"), Choice("loop", "c"))),
            "b": Node(line),
            "c": Node(line, (Choice("round", "d"),)),
            "d": Node(line, (Choice("again", "c"),)),
            "lonely": Node(line),
        },
    )
    assert dialogue_problems(broken) == [
        "lonely: unreachable",
        "c: no way to an ending",
        "d: no way to an ending",
    ]
    dangling = Dialogue("x", "a", {"a": Node(line, (Choice("go", "nowhere"),))})
    assert dialogue_problems(dangling) == ["a: choice leads to missing 'nowhere'"]
    assert dialogue_problems(Dialogue("x", "missing", {})) == ["start node 'missing' does not exist"]
    assert dialogue_problems(Dialogue("x", "a", {"a": Node((), exercise="dance")})) == [
        "a: says nothing",
        "a: unknown exercise 'dance'",
    ]


def test_the_dialogue_json_is_in_the_active_language():
    with translation.override("pl"):
        data = dialogue_as_json(DIALOGUES["sadness"])
    assert data["start"] == "start"
    assert data["nodes"]["better"]["choices"] == []
    labels = [c["label"] for n in data["nodes"].values() for c in n["choices"]]
    assert "Czuję się lepiej" in labels
    json.dumps(data)  # plain data, ready for json_script


# ---- Rorschach -------------------------------------------------------------------------------


def test_answers_are_sorted_into_categories_in_english_and_in_polish():
    assert answer_categories("Two spiders fighting") == ["insects"]
    assert answer_categories("dwa pająki i motyl") == ["insects", "nature"]
    assert answer_categories("Widzę pustkę") == ["emptiness"]
    assert answer_categories("a bat") == ["animals"]
    assert answer_categories("a batter") == []  # "bat" is a whole word, not a stem
    assert answer_categories("nice") == []  # nor is "nic"
    assert answer_categories("TWARZ kobiety") == ["people"]


def test_the_summary_reads_the_most_used_category_first():
    summary = rorschach_summary(["a spider", "beetles everywhere", "a rose", "", "a toaster"])
    assert [a["categories"] for a in summary.answers] == [
        ["insects"],
        ["insects"],
        ["nature"],
        ["emptiness"],
        [],
    ]
    assert summary.lines[0].startswith("Insects and crawling things")
    assert summary.lines[1].startswith("Flowers, plants")
    assert summary.lines[2] == "You see emptiness? That's the mind's natural defence!"
    assert "fits no box" in summary.lines[3]
    assert summary.lines[-1].startswith("Every answer is a good answer")


def test_the_summary_is_in_polish_for_polish_visitors():
    with translation.override("pl"):
        summary = rorschach_summary(["nic", "nic", "kwiaty"])
    assert summary.lines[0] == "Widzisz pustkę? To naturalna obrona umysłu!"
    assert len(summary.lines) == 3


def test_the_summary_endpoint_answers_anonymous_visitors(client):
    response = client.post(
        reverse("activities:rorschach_summary"),
        {"answers": ["a bat", "nothing"]},
        content_type="application/json",
    )
    assert response.status_code == 200
    body = response.json()
    assert [a["categories"] for a in body["answers"]] == [["animals"], ["emptiness"]]
    assert body["lines"][0].startswith("Animals")


@pytest.mark.parametrize(
    "body",
    [
        {"answers": []},
        {"answers": ["x"] * 11},
        {"answers": [3]},
        {"answers": ["x" * 201]},
        {"answers": "x"},
        [1],
    ],
)
def test_the_summary_endpoint_rejects_bad_answers(client, body):
    response = client.post(reverse("activities:rorschach_summary"), body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"]


def test_the_summary_endpoint_rejects_a_body_that_is_not_json(client):
    response = client.post(reverse("activities:rorschach_summary"), "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "The request is not valid JSON."}


# ---- dance scoring ---------------------------------------------------------------------------


def test_a_perfect_round_hits_every_beat_with_a_growing_combo():
    result = dance_score(list(BEATS))
    assert len(BEATS) == 59
    # 100 a beat, plus 10% per combo step up to +100%: 5900 + (0+10+...+90) + 49 * 100.
    assert result.as_dict() == {
        "score": 11250, "perfect": 59, "good": 0, "missed": 0, "strays": 0, "best_combo": 59,
    }  # fmt: skip


def test_movements_near_a_beat_are_good_and_far_ones_are_strays():
    result = dance_score([500 + 100, 1000 + 200, 1500 - 239, 2000 + 241, 2250])
    assert (result.perfect, result.good, result.strays) == (1, 2, 2)
    # perfect 100, good 50 + 5 (combo 2), good 50 + 10 (combo 3), minus two strays at 40.
    assert result.score == 100 + 55 + 60 - 80
    assert result.best_combo == 3


def test_a_missed_beat_resets_the_combo():
    result = dance_score([500, 1000, 2000])
    assert result.best_combo == 2
    assert result.score == 100 + 110 + 100
    assert result.missed == len(BEATS) - 3


def test_flailing_non_stop_scores_nothing_and_flailing_less_scores_less_than_dancing():
    every_50_ms = list(range(0, 30_000, 50))[: dance.MAX_EVENTS]
    result = dance_score(every_50_ms)
    assert result.strays > 300
    assert result.score == 0
    every_100_ms = dance_score(list(range(0, 30_000, 100))[: dance.MAX_EVENTS])
    assert 0 < every_100_ms.score < dance_score(list(BEATS)).score / 3


def test_two_movements_for_one_beat_keep_the_closer_one():
    result = dance_score([700, 520])
    assert (result.perfect, result.good, result.strays) == (1, 0, 1)
    assert result.score == 100 - 40


def test_movements_outside_the_round_are_ignored():
    assert dance_score([-500, 30_500, float("nan"), float("inf")]).as_dict() == dance_score([]).as_dict()
    assert dance_score([]).score == 0


def test_the_choreography_changes_move_every_four_beats_in_the_active_language():
    steps = dance.choreography()
    assert [s["at_ms"] for s in steps[:3]] == [0, 2000, 4000]
    assert len(steps) == 15
    with translation.override("pl"):
        assert dance.choreography()[0]["label"] == "Skacz!"


def human_beats() -> list[float]:
    """Every beat hit, each a few (varying) milliseconds off, as a person's taps are."""
    return [beat + (i * 37) % 61 - 30 for i, beat in enumerate(BEATS)]


def a_round_ago():
    DanceScore.objects.update(created_at=timezone.now() - timedelta(seconds=31))


def test_a_logged_in_round_is_saved_and_the_best_scores_come_back(client, users):
    client_for(client, users["alice"])
    url = reverse("activities:dance_score")
    first = client.post(url, {"events_ms": [500, 1000]}, content_type="application/json")
    a_round_ago()
    second = client.post(url, {"events_ms": human_beats()}, content_type="application/json")
    assert first.status_code == second.status_code == 200
    assert second.json()["saved"] is True
    assert second.json()["score"] == 11250
    assert second.json()["best"] == [11250, 210]
    assert list(DanceScore.objects.filter(user=users["alice"]).values_list("score", flat=True)) == [
        11250,
        210,
    ]
    page = client.get("/play/happy/")
    assert [s.score for s in page.context["best_scores"]] == [11250, 210]


def test_an_anonymous_round_is_scored_but_not_saved(client, db):
    response = client.post(
        reverse("activities:dance_score"), {"events_ms": [500]}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json() | {} == {
        "score": 100, "perfect": 1, "good": 0, "missed": 58, "strays": 0, "best_combo": 1,
        "saved": False, "best": [],
    }  # fmt: skip
    assert DanceScore.objects.count() == 0


@pytest.mark.parametrize(
    "events",
    [
        list(BEATS),  # every beat to the millisecond
        [beat + 7 for beat in BEATS],  # all shifted alike: a script with an offset
        [beat + 0.5 * (i % 2) for i, beat in enumerate(BEATS)],
        list(BEATS)[:16],  # enough hits to judge
    ],
)
def test_a_forged_perfect_round_is_refused_and_not_saved(client, users, events):
    client_for(client, users["alice"])

    response = client.post(
        reverse("activities:dance_score"), {"events_ms": events}, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["detail"] == "These movement times do not look like a real round."
    assert DanceScore.objects.count() == 0


def test_human_timing_is_plausible_and_few_hits_are_not_judged():
    assert dance.dance_plausible(human_beats())
    assert dance.dance_plausible(list(BEATS)[:15])  # a short exact burst, as the browser test's fake clock
    assert dance.dance_plausible([])


def test_a_second_round_within_a_rounds_length_is_not_kept(client, users):
    client_for(client, users["alice"])
    url = reverse("activities:dance_score")

    first = client.post(url, {"events_ms": [500]}, content_type="application/json")
    second = client.post(url, {"events_ms": human_beats()}, content_type="application/json")

    assert first.status_code == 200
    assert second.status_code == 429
    assert second["Retry-After"] == "30"
    assert list(DanceScore.objects.values_list("score", flat=True)) == [100]


def test_only_the_best_rounds_of_a_user_are_kept(client, users, settings):
    settings.ACTIVITIES_DANCE_SCORES_KEPT = 3
    client_for(client, users["alice"])
    url = reverse("activities:dance_score")
    answers = []
    for taps in ([500], [500, 1000, 1500], [500, 1000], [500, 1000, 1500, 2000], [700]):
        answers.append(client.post(url, {"events_ms": taps}, content_type="application/json").json())
        a_round_ago()

    assert [answer["saved"] for answer in answers] == [True, True, True, True, False]
    assert answers[-1]["best"] == [460, 330, 210]
    assert list(DanceScore.objects.filter(user=users["alice"]).values_list("score", flat=True)) == [
        460,
        330,
        210,
    ]


@pytest.mark.parametrize(
    "body",
    [{}, {"events_ms": "500"}, {"events_ms": ["500"]}, {"events_ms": [True]}, {"events_ms": [1] * 401}],
)
def test_a_round_with_bad_movement_times_is_refused_and_not_saved(client, users, body):
    client_for(client, users["bob"])
    response = client.post(reverse("activities:dance_score"), body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"]
    assert DanceScore.objects.count() == 0


# ---- recognise -------------------------------------------------------------------------------


def _photo(seed: int = 0, name: str = "me.jpg"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, face_jpeg(seed, size=96), content_type="image/jpeg")


def test_an_anonymous_visitor_gets_the_emotion_probabilities_and_greeting(client, active_model):
    response = client.post(RECOGNISE, {"image": _photo()})
    assert response.status_code == 200
    body = response.json()
    assert body["emotion"] in EMOTIONS
    assert set(body["probabilities"]) == set(EMOTIONS)
    assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    character = CHARACTERS[body["emotion"]]
    assert body["label"] == str(character.label)
    assert body["greeting"] == str(character.greeting)
    assert body["url"] == f"/play/{body['emotion']}/"


def test_the_greeting_follows_the_browsers_language(client, active_model):
    response = client.post(RECOGNISE, {"image": _photo()}, headers={"accept-language": "pl"})
    assert response.status_code == 200
    with translation.override("pl"):
        assert response.json()["greeting"] == str(CHARACTERS[response.json()["emotion"]].greeting)
    assert response.json()["labels"]["happy"] == "Radość"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty"), (b"<html><script>alert(1)</script></html>", "not an image")],
)
def test_a_bad_photo_is_refused_with_its_reason(client, active_model, content, reason):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(RECOGNISE, {"image": SimpleUploadedFile("x.jpg", content, "image/jpeg")})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("This photo cannot be used: ")
    assert reason in response.json()["detail"].lower()


def test_a_request_without_a_photo_is_refused(client, db):
    response = client.post(RECOGNISE, {})
    assert response.status_code == 400
    assert response.json() == {"detail": "Send a photo in the “image” field."}


def test_without_an_active_model_the_visitor_is_told_to_pick_by_hand(client, active_model):
    ModelVersion.objects.update(is_active=False)
    response = client.post(RECOGNISE, {"image": _photo()})
    assert response.status_code == 503
    assert "Pick an emotion yourself" in response.json()["detail"]


def test_a_photo_over_the_size_limit_is_refused_before_it_is_read(client, db, settings):
    settings.ACTIVITIES_PHOTO_MAX_BYTES = 1000
    big = face_jpeg(1, size=400)
    assert len(big) > 1000 + 64 * 1024 or len(big) > 1000
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(RECOGNISE, {"image": SimpleUploadedFile("big.jpg", big, "image/jpeg")})
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]


def test_too_many_tries_from_one_client_are_refused_with_429(client, active_model, settings):
    settings.ACTIVITIES_RECOGNISE_PER_MINUTE = 2
    statuses = [client.post(RECOGNISE, {"image": _photo(i)}).status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    refused = client.post(RECOGNISE, {"image": _photo()})
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    assert "Too many tries" in refused.json()["detail"]
    # Another client has its own budget.
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert other.post(RECOGNISE, {"image": _photo()}).status_code == 200


def test_the_rate_limit_is_shared_by_every_web_process_of_the_machine(settings, tmp_path):
    # The embedded default cache is a folder; a second process (as a second gunicorn worker)
    # sees the first one's count.
    import subprocess
    import sys

    from activities.services import rate_limit_allow

    files = "django.core.cache.backends.filebased.FileBasedCache"
    settings.CACHES = {"default": {"BACKEND": files, "LOCATION": str(tmp_path)}}
    assert [rate_limit_allow("visitor", 3) for _ in range(2)] == [True, True]
    other_process = (
        "import django, sys; django.setup(); from django.conf import settings; "
        f"settings.CACHES['default']['LOCATION'] = {str(tmp_path)!r}; "
        f"from activities import services; services.clock = lambda: {PINNED_TIME!r}; "
        "print([services.rate_limit_allow('visitor', 3) for _ in range(2)])"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "facelabel.settings", "CACHE_URL": ""}
    result = subprocess.run([sys.executable, "-c", other_process], capture_output=True, text=True, env=env)
    assert result.stdout.strip() == "[True, False]", result.stderr


def test_the_rate_limit_counts_in_a_shared_redis_cache(settings):
    from activities.services import rate_limit_allow
    from tests.integration.stack import REDIS_URL, need, redis_available

    need(redis_available(), "Redis")
    # A database of its own: clear() empties it.
    location = REDIS_URL.rsplit("/", 1)[0] + "/15"
    redis_cache = "django.core.cache.backends.redis.RedisCache"
    settings.CACHES = {"default": {"BACKEND": redis_cache, "LOCATION": location}}
    cache.clear()
    assert [rate_limit_allow("visitor", 2) for _ in range(3)] == [True, True, False]
    assert rate_limit_allow("someone-else", 2)


def test_logged_in_visitors_are_counted_per_account(client, users, active_model, settings):
    settings.ACTIVITIES_RECOGNISE_PER_MINUTE = 1
    client_for(client, users["alice"])
    assert client.post(RECOGNISE, {"image": _photo()}).status_code == 200
    assert client.post(RECOGNISE, {"image": _photo()}).status_code == 429
    bob = client_for(Client(), users["bob"])
    assert bob.post(RECOGNISE, {"image": _photo()}).status_code == 200


def test_recognise_enforces_csrf_for_anonymous_visitors(db, active_model):
    browser = Client(enforce_csrf_checks=True)
    assert browser.post(RECOGNISE, {"image": _photo()}).status_code == 403
    page = browser.get("/play/")
    token = page.cookies["csrftoken"].value
    response = browser.post(RECOGNISE, {"image": _photo()}, headers={"x-csrftoken": token})
    assert response.status_code == 200


def test_the_json_endpoints_enforce_csrf_and_refuse_get(db):
    browser = Client(enforce_csrf_checks=True)
    for url in (reverse("activities:dance_score"), reverse("activities:rorschach_summary")):
        assert browser.post(url, {}, content_type="application/json").status_code == 403
        assert browser.get(url).status_code == 405
    assert browser.get(RECOGNISE).status_code == 405


# ---- pages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_every_emotion_has_a_page_with_its_character(client, db, emotion):
    response = client.get(f"/play/{emotion}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert str(CHARACTERS[emotion].greeting).replace("'", "&#x27;") in html
    assert f'data-emotion="{emotion}"' in html
    assert "Every emotion matters." in html


def test_an_unknown_emotion_is_404(client, db):
    assert client.get("/play/boredom/").status_code == 404


def test_the_start_page_has_the_three_steps_the_camera_and_the_upload(client, db):
    html = client.get("/play/").content.decode()
    assert 'id="camera"' in html and 'id="photo"' in html and 'id="recognise"' in html
    assert html.count('class="pick pick-') == 7
    assert "Find good light." in html


def test_the_pages_speak_polish_to_a_polish_browser_and_after_the_switch(client, db):
    html = client.get("/play/sad/", headers={"accept-language": "pl"}).content.decode()
    assert '<html lang="pl">' in html
    assert "Potrzebujesz wsparcia? Jestem tu dla ciebie." in html
    client.post("/i18n/setlang/", {"language": "en", "next": "/play/sad/"}, headers={"accept-language": "pl"})
    html = client.get("/play/sad/", headers={"accept-language": "pl"}).content.decode()
    assert "Need support? I&#x27;m here for you." in html
    client.post("/i18n/setlang/", {"language": "pl", "next": "/play/"})
    html = client.get("/play/").content.decode()
    assert "Rozpoznaj moją emocję" in html


def test_the_dance_page_shows_best_scores_only_to_logged_in_visitors(client, users):
    DanceScore.objects.create(user=users["alice"], score=777, perfect=5, good=1, best_combo=4)
    anonymous = client.get("/play/happy/").content.decode()
    assert "777" not in anonymous
    client_for(client, users["alice"])
    assert "<li>777</li>" in client.get("/play/happy/").content.decode()
    client_for(client, users["bob"])
    assert "777" not in client.get("/play/happy/").content.decode()


def test_the_pages_stay_cheap_in_queries(client, users, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get("/play/happy/").status_code == 200
    client_for(client, users["alice"])
    for i in range(3):
        DanceScore.objects.create(user=users["alice"], score=i, perfect=0, good=0, best_combo=0)
    with django_assert_num_queries(3):  # session, user, best scores
        assert client.get("/play/happy/").status_code == 200
