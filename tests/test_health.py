"""Dataset health beyond labels (audit/health.py): duplicates, conflicts, leaks, unusable images,
and `bench_health` on generated trees."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image, ImageEnhance

from audit import health
from projects.models import EMOTIONS


def texture(seed: int, size: int = 48) -> Image.Image:
    """A smooth random grey picture: different seeds give pictures unlike each other."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8), "L")
    return coarse.resize((size, size), Image.Resampling.BICUBIC)


def reencoded(picture: Image.Image, quality: int = 60) -> Image.Image:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def groups_of(pictures: list[Image.Image]) -> health.Groups:
    prints = [health.fingerprint(picture) for picture in pictures]
    return health.duplicate_groups([p.digest for p in prints], [p.phash for p in prints])


def test_exact_copies_form_an_exact_group_and_different_pictures_none():
    a, b, c = texture(1), texture(2), texture(3)
    groups = groups_of([a, b, a.copy(), c])
    assert groups.group.tolist() == [0, -1, 0, -1]
    assert groups.exact.tolist() == [True]


def test_reencoded_and_contrast_changed_copies_are_near_duplicates():
    original = texture(4)
    pictures = [original, reencoded(original), ImageEnhance.Contrast(original).enhance(0.85), texture(5)]
    groups = groups_of(pictures)
    assert groups.group.tolist() == [0, 0, 0, -1]
    assert groups.exact.tolist() == [False]


def test_same_pixels_in_another_size_or_mode_is_not_an_exact_copy():
    # The digest covers mode and size: a 2x1 and a 1x2 picture with the same bytes differ.
    wide, tall = Image.new("L", (2, 1), 7), Image.new("L", (1, 2), 7)
    assert health.fingerprint(wide).digest != health.fingerprint(tall).digest
    assert health.fingerprint(wide).digest == health.fingerprint(wide.copy()).digest


def test_near_copies_chain_into_one_group_and_groups_are_numbered_by_first_member():
    far = [texture(seed) for seed in range(10, 20)]
    first = texture(6)
    pictures = [*far[:3], first, far[3], reencoded(first, 50), first.copy(), texture(7), texture(7)]
    groups = groups_of(pictures)
    assert groups.group.tolist() == [-1, -1, -1, 0, -1, 0, 0, 1, 1]
    assert groups.exact.tolist() == [False, True]


def test_a_group_with_different_labels_conflicts_and_one_across_batches_leaks():
    a, b, c = texture(21), texture(22), texture(23)
    groups = groups_of([a, a.copy(), b, b.copy(), c, c.copy()])
    originals = ["happy", "sad", "fear", "fear", "angry", "angry"]
    finals = ["", "", "fear", "surprise", "angry", ""]  # "" (not labeled yet) never conflicts
    batches = [1, 1, 1, 1, 1, 2]
    conflicting, cross = health.group_flags(groups, [originals, finals], batches)
    assert conflicting.tolist() == [True, True, False]
    assert cross.tolist() == [False, False, True]


def test_outliers_are_the_images_far_from_every_class_centre():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 16))
    labels = np.repeat(np.arange(3), 100)
    features = centres[labels] + rng.normal(0, 1, (300, 16))
    strays = rng.normal(0, 1, (4, 16)) + 40
    flagged = health.outliers(np.vstack([features, strays]), np.concatenate([labels, [0, 1, 2, 0]]))
    assert flagged[-4:].all()
    assert flagged[:-4].mean() < 0.01


def test_unusable_reasons_name_the_plainest_reason_first():
    reasons = health.unusable_reasons(
        spreads=np.array([0.0, 40.0, 40.0, 0.5, 40.0]),
        no_face=np.array([False, True, False, True, False]),
        outlier=np.array([True, True, True, False, False]),
    )
    assert reasons == [health.BLANK, health.NO_FACE, health.OUTLIER, health.BLANK, ""]
    assert health.fingerprint(Image.new("L", (48, 48), 128)).spread < health.BLANK_STD
    assert health.fingerprint(texture(8)).spread > health.BLANK_STD


def write_tree(root: Path, files: dict[str, Image.Image]) -> Path:
    for name, picture in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path, quality=95)
    return root


def test_bench_health_reports_groups_conflicts_leaks_and_unusable_images(active_model, tmp_path):
    shared, leaked = texture(31), texture(32)
    train = write_tree(
        tmp_path / "train",
        {
            **{f"{EMOTIONS[n % 7]}/face{n}.png": texture(100 + n) for n in range(12)},
            "happy/copy1.png": shared,
            "sad/copy2.png": shared,  # the same picture filed under two emotions
            "angry/leak.png": leaked,
            "neutral/blank.png": Image.new("L", (48, 48), 90),
        },
    )
    validation = write_tree(tmp_path / "validation", {"angry/leak.png": leaked, "fear/only.png": texture(40)})
    out, report = io.StringIO(), tmp_path / "report.csv"
    call_command("bench_health", "--data", str(train), str(validation), "--report", str(report), stdout=out)
    figures = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    assert figures["images"] == "18"
    assert figures["exact_duplicate_groups"] == "2" and figures["near_duplicate_groups"] == "0"
    assert figures["conflicting_groups"] == "1" and figures["cross_batch_groups"] == "1"
    assert figures["unusable_blank"] == "1"
    assert float(figures["seconds"]) >= 0 and int(figures["peak_rss_mb"]) > 0
    rows = {row["file"]: row for row in csv.DictReader(report.open())}
    assert rows["train/happy/copy1.png"]["conflicting"] == "1"
    assert (
        rows["train/happy/copy1.png"]["duplicate_group"]
        == rows["train/sad/copy2.png"]["duplicate_group"]
        != ""
    )
    assert (
        rows["train/angry/leak.png"]["duplicate_group"]
        == rows["validation/angry/leak.png"]["duplicate_group"]
    )
    assert rows["train/angry/leak.png"]["conflicting"] == "0"
    assert rows["train/neutral/blank.png"]["unusable_reason"] == health.BLANK
    assert rows["validation/fear/only.png"]["duplicate_group"] == ""


def test_bench_health_refuses_a_folder_without_emotion_folders(active_model, tmp_path):
    from django.core.management.base import CommandError

    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="no images"):
        call_command("bench_health", "--data", str(tmp_path / "empty"))
