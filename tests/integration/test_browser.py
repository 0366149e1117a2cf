"""A person in a real browser (Debian's headless Chromium driven by Playwright): log in, create a
project, drop images on the upload page, watch them get labeled, download the export."""

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.factories import face_jpeg
from tests.integration.stack import need

pytestmark = [pytest.mark.integration, pytest.mark.browser]
ARTIFACTS = Path(os.getenv("TEST_ARTIFACTS", "test-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser_page():
    need(Path(CHROMIUM).exists(), "Chromium (Debian package `chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        context = browser.new_context(accept_downloads=True)
        yield context.new_page()
        browser.close()


def test_a_person_uploads_reviews_and_downloads(make_stack, browser_page, tmp_path):
    stack = make_stack("embedded")
    stack.create_user("alice", "alice-password")
    stack.start_web()
    stack.start_worker()
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)

    page.goto(f"{stack.url}/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-password")
    page.click("button[type=submit]")
    page.fill("#new-project input[name=name]", "Browser faces")
    page.click("#new-project button[type=submit]")
    page.wait_for_url("**/projects/*/")

    page.click("text=Upload")
    files = []
    for i in range(6):
        path = tmp_path / f"face-{i}.jpg"
        path.write_bytes(face_jpeg(i))
        files.append(str(path))
    page.set_input_files("#files", files)
    page.click("#upload-button")
    page.wait_for_selector("#batch-link", timeout=90_000)  # the upload, on a loaded 2-core CI box
    page.screenshot(path=str(ARTIFACTS / "upload.png"))
    page.click("#batch-link")
    page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=120_000)
    assert page.text_content("#labeled") == "6"
    page.screenshot(path=str(ARTIFACTS / "batch.png"))

    page.click("text=Review")
    page.wait_for_selector(".thumb")
    assert page.locator(".thumb").count() == 6
    # Keyboard review: the first card has focus; "2" sets it to disgust.
    page.locator(".thumb").first.focus()
    page.keyboard.press("2")
    page.wait_for_function("document.querySelector('.thumb .final-label').textContent === 'disgust'")
    page.screenshot(path=str(ARTIFACTS / "review.png"))

    page.click("text=Summary")
    page.click("#start-export")
    page.wait_for_selector("#download", timeout=120_000)
    with page.expect_download() as download_info:
        page.click("#download")
    archive = zipfile.ZipFile(io.BytesIO(Path(download_info.value.path()).read_bytes()))
    images = [name for name in archive.namelist() if name != "manifest.csv"]
    assert len(images) == 6
    assert any(name.startswith("disgust/") for name in images)
