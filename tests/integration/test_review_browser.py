"""The review workspace in a real browser (Playwright + Debian's Chromium): mouse actions on
flagged cards, the keyboard (queued presses, rows, help), undo of single and bulk actions, and the
image detail page's history."""

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.integration.test_browser import ARTIFACTS, browser_page  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# Forty flagged cards (the audit suggests fear for the original sad; the model said happy) under
# "keep original labels", so every card shows sad, Keep original and set…, in every column.
SEED_FLAGGED = """
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from projects.models import Batch, Image, Membership, Project, Role
from tests.factories import face_jpeg

bob = get_user_model().objects.create_user("bob", password="bob-password")
project = Project.objects.create(name="Flagged", created_by=bob, label_policy="original")
Membership.objects.create(project=project, user=bob, role=Role.OWNER)
batch = Batch.objects.create(project=project, status="done", image_count=40)
for i in range(40):
    image = Image(project=project, batch=batch, original_name=f"sad/{i}.jpg", original_label="sad",
                  predicted_label="happy", confidence=0.9, status="labeled", width=48, height=48,
                  probabilities={"happy": 0.9, "sad": 0.1}, face_box=[4, 4, 40, 40],
                  likely_mislabeled=True, suggested_label="fear", suggestion_confident=True,
                  label_quality=0.05)
    image.file.save(f"{i}.jpg", ContentFile(face_jpeg(i)), save=False)
    image.save()
print(project.id)
"""

REVIEWED = "SELECT reviewed_label FROM projects_image WHERE project_id = ? ORDER BY id"
REVIEWED_CLASS = re.compile(r"\breviewed\b")


def columns(page) -> int:
    tops = [page.locator(".thumb").nth(i).bounding_box()["y"] for i in range(12)]
    return tops.count(tops[0])


def test_a_reviewer_works_the_grid_by_mouse_and_keyboard_and_undoes(make_stack, browser_page):  # noqa: F811
    stack = make_stack("embedded")
    project_id = int(stack.manage("shell", "-c", SEED_FLAGGED).split()[-1])
    stack.start_web()
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    review = f"/projects/{project_id}/review/"
    page.goto(f"{stack.url}{review}")
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", "bob-password")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: urlsplit(url).path == review)
    cards = page.locator(".thumb")
    labels = lambda: [row[0] for row in stack.sql(REVIEWED, (project_id,))]  # noqa: E731
    cols = columns(page)
    assert cols >= 3

    # Mouse on flagged cards of the first and second columns: nothing of the next card covers
    # Keep original or set… (Playwright refuses to click an element another one covers).
    cards.nth(0).locator(".keep-original").click(timeout=10_000)
    expect(cards.nth(0)).to_have_class(REVIEWED_CLASS)
    cards.nth(1).locator(".override").select_option("angry", timeout=10_000)
    expect(cards.nth(1).locator(".final-label")).to_have_text("angry")
    assert labels()[:2] == ["sad", "angry"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-flagged.png"))

    # Ten fast presses of 4 (happy) label ten cards, each its own, while the saves queue up.
    cards.nth(2).focus()
    for _ in range(10):
        page.keyboard.press("4")
    expect(cards.nth(11).locator(".final-label")).to_have_text("happy", timeout=60_000)
    stack.wait_for(lambda: labels()[2:12] == ["happy"] * 10, 30, "ten cards labeled")
    assert labels()[12] == ""
    expect(cards.nth(12)).to_be_focused()

    # ↓ and ↑ move by a row of the grid.
    cards.nth(20).focus()
    page.keyboard.press("ArrowDown")
    expect(cards.nth(20 + cols)).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(cards.nth(20)).to_be_focused()
    # One Tab stop for the whole grid: Tab leaves it rather than walking through a card's controls.
    assert page.locator("#grid [tabindex='0']").count() == 1

    # ? opens the list of keys; Escape closes it and focus is back on the card.
    page.keyboard.press("?")
    expect(page.locator("#keys-help")).to_be_visible()
    expect(page.locator("#keys-help")).to_contain_text("Ctrl")
    page.screenshot(path=str(ARTIFACTS / "review-keys.png"))
    page.keyboard.press("Escape")
    expect(page.locator("#keys-help")).to_be_hidden()
    expect(cards.nth(20)).to_be_focused()

    # Undo a single action: the tenth press, back to no reviewed label.
    page.keyboard.press("Control+z")
    expect(page.locator(".thumb").nth(11)).not_to_have_class(REVIEWED_CLASS, timeout=60_000)
    assert labels()[2:12] == ["happy"] * 9 + [""]

    # Undo a bulk action as one step, then redo it.
    for i in range(30, 34):
        page.locator(".thumb").nth(i).locator(".pick").check()
    page.select_option("#bulk-label", "neutral")
    page.click("#bulk-set")
    expect(page.locator(".thumb").nth(33).locator(".final-label")).to_have_text("neutral", timeout=60_000)
    assert labels()[30:34] == ["neutral"] * 4
    page.click("#undo")
    expect(page.locator(".thumb").nth(33).locator(".final-label")).to_have_text("sad", timeout=60_000)
    assert labels()[30:34] == [""] * 4
    assert labels()[2:11] == ["happy"] * 9  # the single actions before it stay
    page.locator(".thumb").nth(0).focus()
    page.keyboard.press("Control+Shift+z")
    expect(page.locator(".thumb").nth(33).locator(".final-label")).to_have_text("neutral", timeout=60_000)
    assert labels()[30:34] == ["neutral"] * 4

    # → on the last card of a page goes on to the next page.
    page.goto(f"{stack.url}{review}?per_page=24")
    page.locator(".thumb").nth(23).focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_url(re.compile(r"[?&]page=2"))
    expect(page.locator(".thumb").first).to_be_focused()

    # The detail page of the card undone lists each change with its author.
    page.goto(f"{stack.url}{review}")
    page.locator(".thumb").nth(11).locator(".detail-link").click()
    page.wait_for_url(re.compile(rf"/projects/{project_id}/images/\d+/"))
    history = page.locator("#history tbody tr")
    expect(history).to_have_count(2)
    expect(history.locator(".who")).to_have_text(["bob", "bob"])
    expect(history.nth(0)).to_contain_text("undo")
    expect(history.nth(1)).to_contain_text("keyboard")
    expect(page.locator(".probabilities .bar")).to_have_count(7)
    expect(page.locator(".face-box")).to_have_count(1)
    page.click("[data-zoom=in]")
    page.screenshot(path=str(ARTIFACTS / "image-detail.png"), full_page=True)

    # On a phone (390 px) neither page scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    for name, path in (("detail", page.url), ("grid", f"{stack.url}{review}")):
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(ARTIFACTS / f"review-phone-{name}.png"))
        assert width <= 390, f"{path} is {width} px wide"


# Sixty cards over three pages of 24: fifty originally sad, ten happy (under "keep original
# labels", so each card shows its original label as the final one).
SEED_PAGES = """
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from projects.models import Batch, Image, Membership, Project, Role
from tests.factories import face_jpeg

ann = get_user_model().objects.create_user("ann", password="ann-password")
project = Project.objects.create(name="Pages", created_by=ann, label_policy="original")
Membership.objects.create(project=project, user=ann, role=Role.OWNER)
batch = Batch.objects.create(project=project, status="done", image_count=60)
face = Image(project=project, batch=batch)
face.file.save("face.jpg", ContentFile(face_jpeg(0)), save=False)
Image.objects.bulk_create(
    Image(project=project, batch=batch, file=face.file.name, original_name=f"{i}.jpg",
          original_label="happy" if i % 6 == 0 else "sad", predicted_label="happy",
          confidence=0.5 + i / 200, status="labeled", width=48, height=48)
    for i in range(60)
)
print(project.id)
"""


def _sign_in_to_review(stack, page, seed: str, user: str, query: str = "") -> int:
    project_id = int(stack.manage("shell", "-c", seed).split()[-1])
    stack.start_web()
    page.set_viewport_size({"width": 1280, "height": 900})
    review = f"/projects/{project_id}/review/"
    page.goto(f"{stack.url}{review}{query}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", f"{user}-password")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: urlsplit(url).path == review)
    return project_id


def test_the_keyboard_goes_on_to_the_next_page_from_the_last_card(make_stack, browser_page):  # noqa: F811
    stack = make_stack("embedded")
    page = browser_page
    project_id = _sign_in_to_review(stack, page, SEED_PAGES, "ann", "?per_page=24")
    labels = lambda: [row[0] for row in stack.sql(REVIEWED, (project_id,))]  # noqa: E731
    cards = page.locator(".thumb")
    expect(cards).to_have_count(24)

    # End, then → on the last card: page 2, its first card focused.
    cards.first.focus()
    page.keyboard.press("End")
    expect(cards.nth(23)).to_be_focused()
    page.keyboard.press("ArrowRight")
    page.wait_for_url(re.compile(r"[?&]page=2\b"))
    expect(page.locator(".thumb").first).to_be_focused()
    expect(page.locator(".pager")).to_contain_text("page 2 of 3")

    # A label key on the last card saves that card first, then goes on to page 3.
    page.keyboard.press("End")
    page.keyboard.press("4")
    page.wait_for_url(re.compile(r"[?&]page=3\b"))
    assert labels()[47] == "happy" and labels().count("happy") == 1
    expect(page.locator(".thumb")).to_have_count(12)
    expect(page.locator(".thumb").first).to_be_focused()

    # Page Up and Page Down from any card; Page Down on the last page stays there.
    page.keyboard.press("PageUp")
    page.wait_for_url(re.compile(r"[?&]page=2\b"))
    expect(page.locator(".thumb").first).to_be_focused()
    page.keyboard.press("PageDown")
    page.wait_for_url(re.compile(r"[?&]page=3\b"))
    page.keyboard.press("PageDown")
    page.wait_for_timeout(500)
    assert re.search(r"[?&]page=3\b", page.url)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-last-page.png"))


def test_select_all_matching_the_filter_labels_every_page_and_undoes_at_once(make_stack, browser_page):  # noqa: F811
    stack = make_stack("embedded")
    page = browser_page
    project_id = _sign_in_to_review(stack, page, SEED_PAGES, "ann", "?original=sad&per_page=24")
    rows = "SELECT original_label, reviewed_label FROM projects_image WHERE project_id = ? ORDER BY id"
    reviewed = lambda: stack.sql(rows, (project_id,))  # noqa: E731
    expect(page.locator(".thumb")).to_have_count(24)
    # Fifty sad images match over three pages; the ten happy ones do not.
    expect(page.locator("#bulk")).to_contain_text("(50)")

    page.check("#select-matching")
    expect(page.locator(".thumb .pick:checked")).to_have_count(24)
    page.select_option("#bulk-label", "neutral")
    page.click("#bulk-set")
    expect(page.locator(".thumb").first.locator(".final-label")).to_have_text("neutral", timeout=60_000)
    after = reviewed()
    assert [r for o, r in after if o == "sad"] == ["neutral"] * 50
    assert [r for o, r in after if o == "happy"] == [""] * 10
    changes = stack.sql("SELECT COUNT(DISTINCT action), COUNT(*) FROM projects_labelchange")
    assert changes == [(1, 50)]  # one action: one undo step
    page.screenshot(path=str(ARTIFACTS / "review-bulk-matching.png"))

    page.click("#undo")
    expect(page.locator(".thumb").first.locator(".final-label")).to_have_text("sad", timeout=60_000)
    assert [r for _, r in reviewed()] == [""] * 60
    expect(page.locator("ul.messages[role=status]")).to_contain_text("50")
