"""Every page of the app (outside the Django admin and Swagger) in a real browser: it fits a 390 px
phone without sideways scrolling, axe-core finds no accessibility violation in English or Polish,
and a desktop and a phone screenshot of each is kept.

Screenshots go to $TEST_ARTIFACTS/pages/ (default test-artifacts/pages/, like the other browser
tests' artifacts), named <page>-<language>-<desktop|phone>.png."""

import os
import shutil
from pathlib import Path

import pytest

from projects.models import EMOTIONS
from tests.conftest import zip_bytes
from tests.factories import face_jpeg
from tests.integration.stack import HTTP_TIMEOUT, ROOT, Stack, need
from tests.integration.test_pipeline import create_project, upload

pytestmark = [pytest.mark.integration, pytest.mark.browser]
SHOTS = Path(os.getenv("TEST_ARTIFACTS", "test-artifacts")) / "pages"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
LANGUAGES = ("en", "pl")
AXE_RUN = """async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(
    v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`)"""
# The innermost elements reaching past the phone's right edge, to say what to fix.
WIDEST = """() => [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > 391 && ![...e.children].some(
        c => c.getBoundingClientRect().right > 391))
    .slice(0, 4).map(e => `${e.tagName.toLowerCase()}#${e.id}.${[...e.classList].join('.')}`
        + ` (${Math.round(e.getBoundingClientRect().right)} px)`)"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model_file):
    """A labeled, audited and exported project that Alice owns and Bob reviews, and the paths of
    every page a person reaches in it."""
    need(Path(CHROMIUM).exists(), "Chromium (Debian package `chromium`)")
    stack = Stack(tmp_path_factory.mktemp("pages"), "embedded", tiny_model_file)
    try:
        stack.create_user("alice", "alice-password")
        stack.create_user("bob", "bob-password")
        stack.start_web()
        stack.start_worker()
        stack.start_beat()
        alice = stack.login("alice", "alice-password")
        project = create_project(stack, alice, "Phone faces")
        members = {f"{EMOTIONS[i % 7]}/face-{i}.jpg": face_jpeg(i) for i in range(28)}
        batch = upload(stack, alice, project, {"set.zip": zip_bytes(members)})["batch"]
        stack.wait_for(lambda: stack.progress(alice, project, batch)["status"] == "done", 180, "labeling")
        audited = "SELECT 1 FROM audit_auditrun WHERE status = 'done'"
        stack.wait_for(lambda: stack.sql(audited), 120, "the automatic audit")
        as_bob = {"username": "bob", "role": "reviewer"}
        alice.post(f"{stack.url}/projects/{project}/members/", data=as_bob, timeout=HTTP_TIMEOUT)
        export = alice.post(f"{stack.url}/projects/{project}/exports/", timeout=HTTP_TIMEOUT).url
        image = stack.sql("SELECT MIN(id) FROM projects_image")[0][0]
        # Dataset health as its check leaves it: a map, a conflicting group that leaks across
        # batches, an unusable image excluded.
        stack.sql_write("UPDATE projects_image SET map_x = (id % 7) * 0.3, map_y = (id % 5) * 0.2 + (id % 3)")
        stack.sql_write(
            "UPDATE projects_image SET duplicate_group = ?, duplicate_kind = 'exact', "
            "duplicate_conflicting = 1, duplicate_cross_batch = 1 WHERE id < ?",
            (image, image + 3),
        )
        stack.sql_write(
            "UPDATE projects_image SET unusable_reason = 'blank', excluded_reason = 'unusable' WHERE id = ?",
            (image + 5,),
        )
        base = f"/projects/{project}"
        alices = {
            "projects": "/",
            "summary": f"{base}/",
            "upload": f"{base}/upload/",
            "batch": f"{base}/batches/{batch}/",
            "review": f"{base}/review/",
            "review-mislabeled": f"{base}/review/?likely_mislabeled=1&reviewed=no&order=label_quality",
            "review-unsure": f"{base}/review/?final=unsure&order=confidence",
            "image": f"{base}/images/{image}/",
            "health": f"{base}/health/",
            "duplicates": f"{base}/duplicates/",
            "map": f"{base}/map/",
            "map-selected": f"{base}/map/?x0=0&x1=1&y0=0&y1=1.5",
            "image-duplicate": f"{base}/images/{image + 1}/",
            "members": f"{base}/members/",
            "settings": f"{base}/settings/",
            "export": export.removeprefix(stack.url),
            "profile": "/account/",
            "password": "/account/password/",
            "not-found": "/projects/999999/",
            "play": "/play/",
            **{f"play-{emotion}": f"/play/{emotion}/" for emotion in EMOTIONS},
        }
        pages = {
            "alice": alices,
            "bob": {
                "forbidden": f"{base}/settings/",
                "review-as-reviewer": f"{base}/review/",
                "duplicates-as-reviewer": f"{base}/duplicates/",
            },
            "": {"login": "/login/"},
        }
        sessions = {"alice": alice, "bob": stack.login("bob", "bob-password"), "": None}
        yield stack, sessions, pages
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def chromium():
    need(Path(CHROMIUM).exists(), "Chromium (Debian package `chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def open_context(chromium, stack, language: str, session=None, **options):
    context = chromium.new_context(**options)
    cookies = [{"name": "django_language", "value": language, "url": stack.url}]
    if session is not None:
        cookies += [{"name": c.name, "value": c.value, "url": stack.url} for c in session.cookies]
    context.add_cookies(cookies)
    context.set_default_timeout(60_000)
    return context


def visit(context, stack, path: str):
    page = context.new_page()
    blocked = []
    page.on("console", lambda m: blocked.append(m.text) if "Security Policy" in m.text else None)
    page.goto(stack.url + path, wait_until="load")
    return page, blocked


def every_page(chromium, site, language: str, **options):
    """(name, path, page, CSP complaints) for each page, each user's in a browser context of theirs."""
    stack, sessions, pages = site
    for who, named in pages.items():
        context = open_context(chromium, stack, language, sessions[who], **options)
        for name, path in named.items():
            page, blocked = visit(context, stack, path)
            yield name, path, page, blocked
            page.close()
        context.close()


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_page_fits_a_phone_and_is_photographed(chromium, site, language):
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        phone = size == "phone"
        options = {"viewport": viewport, "is_mobile": phone, "has_touch": phone}
        for name, path, page, blocked in every_page(chromium, site, language, **options):
            assert page.get_attribute("html", "lang") == language, path
            page.screenshot(path=str(SHOTS / f"{name}-{language}-{size}.png"), full_page=True)
            width = page.evaluate("document.documentElement.scrollWidth")
            if phone and width > PHONE["width"]:
                problems.append(f"{path} is {width} px wide at 390 px: {page.evaluate(WIDEST)}")
            problems += [f"{path}: {text}" for text in blocked]
    assert not problems, "\n".join(problems)


def test_the_pages_speak_polish(chromium, site):
    seen = {name: page.text_content("main") for name, _, page, _ in every_page(chromium, site, "pl")}
    assert "Podsumowanie" in seen["summary"] and "Rozkład klas" in seen["summary"]
    assert "Kondycja zbioru" in seen["health"] and "Audyt etykiet" in seen["health"]
    assert "Usuń projekt" in seen["settings"] and "Zmień hasło" in seen["password"]
    assert "Twoje projekty" in seen["projects"] and "Członkowie" in seen["members"]
    assert "Nie możesz tego zrobić" in seen["forbidden"] and "Ta strona nie istnieje" in seen["not-found"]
    assert "Zachowaj ten" in seen["duplicates"] and "Koloruj według" in seen["map"]
    assert "Otwórz w siatce wybrane obrazy" in seen["map-selected"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_axe_finds_no_violations_on_any_page(chromium, site, language):
    need(AXE.exists(), "axe-core (`npm ci` at the repository root; `make install` runs it)")
    axe = AXE.read_text()
    found = []
    # bypass_csp: the page's CSP forbids any script it did not list, axe's included.
    for name, _, page, _ in every_page(chromium, site, language, viewport=DESKTOP, bypass_csp=True):
        page.add_script_tag(content=axe)
        found += [f"{name}: {violation}" for violation in page.evaluate(AXE_RUN)]
    assert not found, "\n".join(found)


def test_a_drop_of_2500_files_goes_in_parts_with_one_report(make_stack, chromium, tmp_path):
    stack = make_stack("embedded")
    stack.create_user("alice", "alice-password")
    stack.start_web()
    alice = stack.login("alice", "alice-password")
    project = create_project(stack, alice, "Big drop")
    folder = tmp_path / "drop"
    folder.mkdir()
    files = []
    for i in range(2500):
        path = folder / f"face-{i:04d}.jpg"
        path.write_bytes(face_jpeg(i % 50))
        files.append(str(path))
    context = open_context(chromium, stack, "en", alice, viewport=DESKTOP)
    page, blocked = visit(context, stack, f"/projects/{project}/upload/")
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.set_input_files("#files", files)
    page.click("#upload-button")
    page.wait_for_selector("#batch-link", timeout=300_000)
    assert len(posts) == 3  # 1,000 + 1,000 + 500 under UPLOAD_MAX_FILES
    assert "2500 image(s) imported in 3 batch(es)." in page.text_content("#upload-result")
    assert page.locator("#upload-result a").count() == 3
    assert stack.sql("SELECT COUNT(*) FROM projects_image")[0][0] == 2500
    assert page.evaluate("document.getElementById('files').files.length") == 2500

    # A page that believes in larger limits than the server's shows the server's reason.
    page.reload()
    page.evaluate("document.getElementById('upload-form').dataset.maxFiles = '5000'")
    page.set_input_files("#files", files[:1001])
    page.click("#upload-button")
    error = page.locator("#upload-result .error").first
    error.wait_for()
    assert "1000" in error.text_content() and "(400)" not in error.text_content()
    assert stack.sql("SELECT COUNT(*) FROM projects_image")[0][0] == 2500
    assert blocked == []
    context.close()
