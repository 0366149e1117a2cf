"""Dataset health in a real browser (Playwright + Debian's Chromium): drag a rectangle on the dataset
map and open its points in the review grid, type the box instead of dragging, and keep one copy of
a duplicate group, then undo it."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.integration.test_browser import ARTIFACTS, browser_page  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# Forty images in two clusters of the map, (0..1, 0..1) and (5..6, 5..6); the first three are
# copies of each other whose original labels conflict.
SEED_HEALTH = """
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from projects.models import Batch, Image, Membership, Project, Role
from tests.factories import face_jpeg

bob = get_user_model().objects.create_user("bob", password="bob-password")
project = Project.objects.create(name="Health", created_by=bob, label_policy="original")
Membership.objects.create(project=project, user=bob, role=Role.OWNER)
batch = Batch.objects.create(project=project, status="done", image_count=40)
ids = []
for i in range(40):
    far = 5 * (i >= 20)
    image = Image(project=project, batch=batch, original_name=f"face-{i}.jpg",
                  original_label="angry" if i == 2 else "sad", predicted_label="happy",
                  confidence=0.9, status="labeled", width=48, height=48,
                  map_x=far + (i % 20) / 20, map_y=far + ((i * 7) % 20) / 20)
    image.file.save(f"{i}.jpg", ContentFile(face_jpeg(i % 3 if i < 3 else i)), save=False)
    image.save()
    ids.append(image.id)
Image.objects.filter(id__in=ids[:3]).update(duplicate_group=ids[0], duplicate_kind="exact",
                                            duplicate_conflicting=True)
print(project.id, ids[0])
"""

EXCLUDED = "SELECT excluded_reason FROM projects_image WHERE project_id = ? ORDER BY id LIMIT 3"


def login(page, stack, path: str) -> None:
    page.goto(f"{stack.url}{path}")
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", "bob-password")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: urlsplit(url).path == path)


def test_a_reviewer_selects_on_the_map_and_keeps_one_duplicate(make_stack, browser_page):  # noqa: F811
    stack = make_stack("embedded")
    project_id, group = (int(n) for n in stack.manage("shell", "-c", SEED_HEALTH).split()[-2:])
    stack.start_web()
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    map_path = f"/projects/{project_id}/map/"
    login(page, stack, map_path)
    expect(page.locator("#map")).to_have_attribute("data-ready", "1")
    expect(page.locator("#map-status")).to_have_text("40 images on the map.")

    # Drag over the lower left quarter: the cluster at (0..1, 0..1), none of the other.
    box = page.locator("#map-overlay").bounding_box()
    page.mouse.move(box["x"] + 3, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] - 3, steps=8)
    page.mouse.up()
    link = page.locator("#map-open")
    expect(link).to_have_text("Open 20 images in the grid")
    assert float(page.input_value("#box-x1")) > 1 and float(page.input_value("#box-y1")) > 1
    page.select_option("#map-colour", "flag")
    expect(page.locator("#map-legend")).to_contain_text("likely mislabeled")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "health-map.png"))
    link.click()
    page.wait_for_url(re.compile(r"/review/\?map_box="))
    assert len(parse_qs(urlsplit(page.url).query)["map_box"][0].split(",")) == 4
    expect(page.locator("main")).to_contain_text("Images: 20.")
    expect(page.locator(".thumb")).to_have_count(20)

    # Without a mouse: the box's fields, by keyboard, make the same link.
    page.goto(f"{stack.url}{map_path}")
    expect(page.locator("#map")).to_have_attribute("data-ready", "1")
    for name, value in (("x0", "4.5"), ("x1", "7"), ("y0", "4.5"), ("y1", "7")):
        page.locator(f"#box-{name}").fill(value)
    page.locator("#box-y1").press("Enter")
    expect(page.locator("#map-open")).to_have_text("Open 20 images in the grid")
    expect(page.locator("#map-open")).to_be_focused()

    # Duplicates: the conflicting group, Keep this one on its second copy, then Undo.
    page.goto(f"{stack.url}/projects/{project_id}/duplicates/")
    members = page.locator(f"#group-{group} .dup-member")
    expect(members).to_have_count(3)
    expect(page.locator(f"#group-{group}")).to_contain_text("conflicting labels")
    members.nth(1).locator(".keep-one").click()
    expect(page.locator("ul.messages[role=status]")).to_contain_text("Kept one image; 2 images changed.")
    assert [row[0] for row in stack.sql(EXCLUDED, (project_id,))] == ["duplicate", "", "duplicate"]
    expect(members.nth(0).locator(".exclusion")).to_contain_text("excluded")
    page.screenshot(path=str(ARTIFACTS / "health-duplicates.png"), full_page=True)
    page.click("#undo")
    expect(page.locator("ul.messages[role=status]")).to_contain_text("2 labels changed back.")
    assert [row[0] for row in stack.sql(EXCLUDED, (project_id,))] == ["", "", ""]
    page.select_option(f"#resolve-{group}", "sad")
    page.locator(f"#group-{group} .resolve-button").click()
    expect(page.locator("ul.messages[role=status]")).to_contain_text("Group resolved; 3 labels changed.")
