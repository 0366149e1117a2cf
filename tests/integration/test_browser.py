"""A person in a real browser (Debian's headless Chromium driven by Playwright): log in, create a
project, drop images on the upload page, watch them get labeled, download the export."""

import io
import os
import re
import shutil
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

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
        page = context.new_page()
        page.set_default_timeout(60_000)  # one page load on a loaded 2-core CI box
        # The pages run under their Content-Security-Policy: anything it blocks is a bug.
        blocked = []
        page.on(
            "console",
            lambda message: blocked.append(message.text) if "Security Policy" in message.text else None,
        )
        yield page
        browser.close()
        assert blocked == []


def test_a_person_uploads_reviews_and_downloads(make_stack, browser_page, tmp_path):
    stack = make_stack("embedded")
    stack.create_user("alice", "alice-password")
    stack.start_web()
    stack.start_worker()
    # As `make run` has it: if the worker's task looks while the upload is still being stored and
    # sees it quiet, it leaves, and only the schedule's sweep labels the batch then.
    stack.start_beat()
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
    # The page's load event, not only its form: upload.js comes last, and a file chosen or a
    # button clicked before it runs is lost (or the form posts natively and no link appears).
    page.wait_for_url("**/projects/*/upload/")
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
    page.wait_for_url("**/projects/*/batches/*/")
    # Locators, not wait_for_function: that evaluates a string, which the page's CSP forbids.
    expect(page.locator("#status")).to_have_text("done", timeout=120_000)
    assert page.text_content("#labeled") == "6"
    # notify.js, watching the batch since the upload, says so on whatever page is open.
    expect(page.locator("#notifications li.success")).to_contain_text("is labeled", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "batch.png"))

    page.click("text=Review")
    page.wait_for_url("**/projects/*/review/")  # every card parsed and review.js listening
    assert page.locator(".thumb").count() == 6
    # Keyboard review: the first card has focus; "2" sets it to disgust. The card is marked
    # reviewed only once the server has saved it, which the export below depends on.
    page.locator(".thumb").first.focus()
    page.keyboard.press("2")
    first_card = page.locator(".thumb").first
    expect(first_card).to_have_class(re.compile(r"\breviewed\b"), timeout=60_000)
    expect(first_card.locator(".final-label")).to_have_text("disgust")
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


# A project whose cards show the original label ("sad") while the model said "happy".
SEED_REVIEW = """
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from projects.models import Batch, Image, Membership, Project, Role
from tests.factories import face_jpeg

bob = get_user_model().objects.create_user("bob", password="bob-password")
project = Project.objects.create(name="Folders", created_by=bob, label_policy="original")
Membership.objects.create(project=project, user=bob, role=Role.OWNER)
batch = Batch.objects.create(project=project, status="done", image_count=2)
for i in range(2):
    image = Image(project=project, batch=batch, original_name=f"sad/{i}.jpg", original_label="sad",
                  predicted_label="happy", confidence=0.9, status="labeled")
    image.file.save(f"{i}.jpg", ContentFile(face_jpeg(i)), save=False)
    image.save()
print(project.id)
"""


def test_enter_accepts_the_label_the_card_shows_and_refuses_a_stale_one(make_stack, browser_page):
    stack = make_stack("embedded")
    project_id = int(stack.manage("shell", "-c", SEED_REVIEW).split()[-1])
    stack.start_web()
    page = browser_page
    page.goto(f"{stack.url}/projects/{project_id}/review/")
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", "bob-password")
    page.click("button[type=submit]")
    # The review page loaded (review.js listening), not the login page whose ?next= names it.
    page.wait_for_url(lambda url: urlsplit(url).path == f"/projects/{project_id}/review/")
    reviewed = "SELECT reviewed_label FROM projects_image WHERE project_id = ? ORDER BY id"

    # Under "keep original labels" the card shows sad; Enter confirms sad, not the model's happy.
    page.locator(".thumb").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(".thumb.reviewed")
    assert stack.sql(reviewed, (project_id,)) == [("sad",), ("",)]

    # The owner switches to the model's labels while the page is open: the second card still
    # shows sad, so Enter is refused and the card shows the final label now.
    stack.sql_write("UPDATE projects_project SET label_policy = 'model' WHERE id = ?", (project_id,))
    second = page.locator(".thumb").nth(1)
    second.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(".thumb .review-error:not([hidden])")
    assert "changed since this page was loaded" in second.locator(".review-error").text_content()
    assert second.locator(".final-label").text_content() == "happy"
    assert stack.sql(reviewed, (project_id,)) == [("sad",), ("",)]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "accept-stale.png"))
    # What the card shows now is what Enter confirms.
    page.keyboard.press("Enter")
    expect(page.locator(".thumb.reviewed")).to_have_count(2, timeout=60_000)
    assert stack.sql(reviewed, (project_id,)) == [("sad",), ("happy",)]
