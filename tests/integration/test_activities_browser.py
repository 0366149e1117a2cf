"""Emotions in Action in a real browser: Debian's headless Chromium driven by Playwright, with a
fake camera that plays a generated face video. The server is pytest-django's live server (the
activities need no Celery), with the tiny real Keras model active. Timers run on Playwright's
clock, so the 30-second dance and the 3-minute breathing session take no real time."""

import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activities.dance import BEAT_MS, dance_score
from tests.factories import face_jpeg
from tests.integration.stack import need

pytestmark = [pytest.mark.integration, pytest.mark.browser]
ARTIFACTS = Path(os.getenv("TEST_ARTIFACTS", "test-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CLOCK_START = datetime(2026, 1, 1, tzinfo=UTC)
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def write_y4m(path: Path, frames: int = 10, width: int = 320, height: int = 240) -> Path:
    """A short 4:2:0 Y4M video of one generated face, the format Chromium's fake camera reads."""
    import io

    face = Image.open(io.BytesIO(face_jpeg(3, size=height, mode="RGB")))
    frame = Image.new("RGB", (width, height), (90, 90, 100))
    frame.paste(face, ((width - height) // 2, 0))
    ycbcr = np.asarray(frame.convert("YCbCr"))
    y = ycbcr[:, :, 0]
    # 4:2:0: one chroma sample for each 2x2 block of pixels.
    u = ycbcr[:, :, 1].reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)).astype(np.uint8)
    v = ycbcr[:, :, 2].reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)).astype(np.uint8)
    body = b"FRAME\n" + y.tobytes() + u.tobytes() + v.tobytes()
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode() + body * frames)
    return path


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    need(Path(CHROMIUM).exists(), "Chromium (Debian package `chromium`)")
    from playwright.sync_api import sync_playwright

    video = write_y4m(tmp_path_factory.mktemp("camera") / "face.y4m")
    # Sync Playwright keeps an asyncio loop in this thread; the database fixtures that run after it
    # starts are plain synchronous code, which Django would otherwise refuse (Playwright's advice).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    camera = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as playwright:
        with_camera = playwright.chromium.launch(executable_path=CHROMIUM, args=[*BASE_ARGS, *camera])
        # No fake UI: the permission prompt cannot be answered, so the camera is refused.
        refusing = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*BASE_ARGS, "--use-fake-device-for-media-stream"]
        )
        yield {"camera": with_camera, "refused": refusing}
        with_camera.close()
        refusing.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def open_page(chromium, live_server, active_model):
    contexts = []
    blocked = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def open_page(path: str, camera: str = "camera", clock: bool = False, **context_options):
        context_options.setdefault("locale", "en-GB")
        context = chromium[camera].new_context(accept_downloads=True, **context_options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        # The pages run under their Content-Security-Policy: anything it blocks is a bug.
        page.on(
            "console",
            lambda message: blocked.append(message.text) if "Security Policy" in message.text else None,
        )
        if clock:
            page.clock.install(time=CLOCK_START)
        page.goto(f"{live_server.url}{path}")
        if clock:
            # Paused: only run_for/fast_forward move time, so every tap lands exactly where we say.
            page.clock.pause_at(CLOCK_START + timedelta(minutes=10))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert blocked == []


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"activities-{name}.png"), full_page=True)


def test_the_camera_recognises_an_emotion_and_opens_its_experience(open_page):
    page = open_page("/play/")
    page.wait_for_selector("#recognise:enabled")
    assert page.get_attribute("#recognise-panel", "data-camera") == "on"
    page.click("#recognise")
    page.wait_for_selector("#result:not([hidden])")
    emotion = page.get_attribute("#result", "data-emotion")
    assert emotion in {"happy", "sad", "angry", "fear", "disgust", "surprise", "neutral"}
    assert page.locator("#result-bars .bar").count() == 7
    assert page.locator("#result-bars .bar.top").count() == 1
    assert page.text_content("#result-greeting").strip("“”")
    assert page.locator("#result-character svg").count() == 1
    shot(page, "start-result")
    page.click("#open-experience")
    page.wait_for_url(f"**/play/{emotion}/")
    assert page.get_attribute(".play", "data-emotion") == emotion


def test_a_refused_camera_leaves_photo_upload_which_explains_a_bad_photo(open_page, tmp_path):
    page = open_page("/play/", camera="refused")
    page.wait_for_selector("#recognise-panel[data-camera=off]")
    assert page.is_disabled("#recognise")
    assert "Upload a photo" in page.text_content("#camera-status")
    bad = tmp_path / "notes.jpg"
    bad.write_text("<html>not a photo</html>")
    page.set_input_files("#photo", str(bad))
    page.wait_for_selector("#recognise-error:not([hidden])")
    assert page.text_content("#recognise-error").startswith("This photo cannot be used:")
    photo = tmp_path / "me.jpg"
    photo.write_bytes(face_jpeg(5, size=200, mode="RGB"))
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector("#result:not([hidden])")
    assert page.is_hidden("#recognise-error")
    shot(page, "upload-result")


def test_joys_dance_round_is_scored_drawn_and_downloadable(open_page):
    page = open_page("/play/happy/", clock=True)
    page.click("#dance-start")
    assert page.get_attribute("#dance", "data-state") == "countdown"
    page.clock.run_for(3000)  # the count-in
    taps = []
    for beat in range(1, 11):
        page.clock.run_for(BEAT_MS)
        page.keyboard.press("Space")
        taps.append(beat * BEAT_MS)
        if beat == 3:
            assert page.get_attribute("#dance-stage", "data-move") == "jump"
            assert page.text_content("#feedback") == "Perfect!"
            shot(page, "joy-dance")
    assert page.get_attribute("#dance-stage", "data-move") == "wave_right"  # from 4 s on
    page.clock.fast_forward(30_000)  # jumps past the end; the round's ticker fires once
    page.wait_for_selector("#dance[data-state=done]")
    expected = dance_score(taps)
    assert expected.score == 1450
    assert page.text_content("#final-score") == str(expected.score)
    assert page.evaluate(f"danceScore({taps}).score") == expected.score  # the page's copy agrees
    assert page.text_content("#saved-note") == "Log in to keep your best scores."
    shot(page, "joy-score-card")
    with page.expect_download() as download:
        page.click("#download-card")
    assert download.value.suggested_filename == "joy-dance-score.png"
    assert Path(download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_dance_camera_counts_a_sudden_movement_once_and_ignores_stillness_and_drift(open_page):
    page = open_page("/play/happy/")
    events = page.evaluate(
        """() => {
            const detect = danceMotionDetector();
            const frame = (level) => new Float32Array(64 * 48).fill(level);
            const started = [];
            let now = 0;
            const feed = (level) => { now += 40; if (detect(frame(level), now)) started.push(now); };
            for (let i = 0; i < 20; i++) feed(0.5);                 // standing still
            for (let i = 0; i < 20; i++) feed(0.5 + i * 0.002);     // slow drift of the light
            feed(0.9); feed(0.3); feed(0.9);                         // one burst of movement
            for (let i = 0; i < 20; i++) feed(0.9);                  // still again
            now += 400; feed(0.2);                                   // a second movement, later
            return started;
        }"""
    )
    # One event for the burst (not one per changed frame), one for the later move, none for drift.
    assert len(events) == 2 and events[1] - events[0] > 200


def _follow(page, nodes: list[str]) -> None:
    for node in nodes:
        page.clock.run_for(4000)  # at most three lines, 0.7 s apart
        page.click(f"#chat-choices button[data-next={node}]")
    page.clock.run_for(4000)


def test_sadness_chat_runs_to_i_feel_better(open_page):
    page = open_page("/play/sad/", clock=True)
    _follow(page, ["breathe", "menu", "affirm_1", "affirm_2"])
    assert page.locator(".breath-bubble").count() == 1
    shot(page, "sadness-chat")
    _follow(page, ["better"])
    page.wait_for_selector("#chat[data-state=ended]")
    assert "I'm so glad you feel a little lighter." in page.text_content("#chat-log")
    assert page.is_visible("#chat-ending")
    shot(page, "sadness-chat-end")


def test_fears_mentor_walks_the_forest_to_feeling_in_control(open_page):
    page = open_page("/play/fear/", clock=True)
    _follow(page, ["forest_1", "forest_2", "forest_tree", "forest_3", "check", "in_control"])
    page.wait_for_selector("#chat[data-state=ended]")
    log = page.text_content("#chat-log")
    assert "quiet forest" in log and "still here" in log
    shot(page, "fear-mentor")


def test_angers_breathing_follows_4_2_4_pauses_and_ends_after_three_minutes(open_page):
    page = open_page("/play/angry/", clock=True)
    page.click("#breath-start")
    phases = []
    for ms in (1000, 3500, 2000, 4000):  # 1 s, 4.5 s, 6.5 s, 10.5 s
        page.clock.run_for(ms)
        phases.append(page.text_content("#breath-phase"))
    assert phases == ["Breathe in", "Hold", "Breathe out", "Breathe in"]
    shot(page, "anger-breathing")
    page.click("#breath-pause")
    paused_at = page.evaluate("document.getElementById('breath-progress').value")
    page.clock.run_for(5_000)
    assert page.evaluate("document.getElementById('breath-progress').value") == paused_at
    assert page.get_attribute("#breathing", "data-state") == "paused"
    page.click("#breath-pause")
    page.clock.fast_forward(180_000)
    page.clock.run_for(200)
    page.wait_for_selector("#breathing[data-state=done]")
    assert page.text_content("#breath-time") == "0:00"
    assert page.is_visible("#breath-done") and page.is_hidden("#breath-stopped")
    shot(page, "anger-breathing-end")
    page.click("#breath-again")
    page.clock.run_for(2000)
    page.click("#breath-stop")
    assert page.get_attribute("#breathing", "data-state") == "stopped"
    assert page.is_visible("#breath-stopped")


def test_disgusts_ink_blots_are_new_symmetric_and_summarised(open_page):
    page = open_page("/play/disgust/")
    mirror_check = """() => {
        const c = document.getElementById('blot');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let ink = 0;
        for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width / 2; x++) {
            const a = (y * c.width + x) * 4, b = (y * c.width + c.width - 1 - x) * 4;
            if (d[a] !== d[b] || d[a + 1] !== d[b + 1] || d[a + 2] !== d[b + 2]) return -1;
            if (d[a] < 128) ink++;
        }
        return ink;
    }"""
    seeds = []
    answers = ["two spiders", "a flower", "nothing", "a face", "a toaster"]
    for i, answer in enumerate(answers):
        assert page.text_content("#plate-count") == f"Plate {i + 1} of 5"
        seeds.append(page.get_attribute("#blot", "data-seed"))
        assert page.evaluate(mirror_check) > 200  # symmetric, and there is ink on it
        if i == 0:
            shot(page, "disgust-blot")
        page.fill("#blot-answer", answer)
        page.click("#blot-next")
    assert len(set(seeds)) == 5
    page.wait_for_selector("#rorschach[data-state=summary]")
    lines = page.locator("#summary-lines li").all_text_contents()
    assert lines[0].startswith("Insects")
    assert "You see emptiness? That's the mind's natural defence!" in lines
    assert page.locator("#summary-answers li").all_text_contents() == answers
    shot(page, "disgust-summary")
    page.click("#blot-new")
    assert page.get_attribute("#blot", "data-seed") not in seeds


def test_the_language_switch_and_the_browser_language_give_polish(open_page):
    page = open_page("/play/")
    assert page.get_attribute("html", "lang") == "en"
    page.select_option("#language-select", "pl")
    page.wait_for_selector("text=Rozpoznaj moją emocję")
    assert page.get_attribute("html", "lang") == "pl"
    assert page.url.endswith("/play/")
    shot(page, "start-polish")
    page.click(".pick-sad")
    page.wait_for_selector("text=Potrzebujesz wsparcia? Jestem tu dla ciebie.")
    polish = open_page("/play/neutral/", locale="pl-PL")
    assert "Ciesz się chwilą spokoju" in polish.text_content(".greeting")
    assert polish.text_content("#mute") == "Dźwięk: włączony"


def test_on_a_phone_the_pages_fit_and_the_sound_switch_is_remembered(open_page):
    page = open_page("/play/", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.wait_for_selector("#recognise-panel[data-camera]")
    shot(page, "start-phone")
    for path in ("/play/", "/play/happy/", "/play/angry/", "/play/disgust/", "/play/sad/", "/play/surprise/"):
        page.goto(page.url.split("/play/")[0] + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    page.click("#mute")
    assert page.get_attribute("#mute", "aria-pressed") == "true"
    page.reload()
    assert page.get_attribute("#mute", "aria-pressed") == "true"
    assert page.text_content("#mute") == "Sound: off"
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert re.search(r"\S", focused)
