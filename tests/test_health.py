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


def shifted(picture: Image.Image, dx: int, dy: int) -> Image.Image:
    """The picture moved by (dx, dy) pixels, its edge repeated into the gap."""
    pixels = np.pad(np.asarray(picture), 2, mode="edge")
    width, height = picture.size
    return Image.fromarray(pixels[2 - dy : 2 - dy + height, 2 - dx : 2 - dx + width], "L")


def bits_apart(first: Image.Image, second: Image.Image) -> int:
    a, b = (np.unpackbits(np.frombuffer(health.fingerprint(p).phash, np.uint8)) for p in (first, second))
    return int((a != b).sum())


def test_copies_shifted_by_a_pixel_or_two_are_near_duplicates_through_their_thumbnails():
    pictures, expected = [], []
    for n, (dx, dy) in enumerate([(1, 0), (0, -1), (2, 1), (-1, -2)]):
        original = texture(61 + n)
        copy = reencoded(shifted(original, dx, dy))
        assert bits_apart(original, copy) > health.NEAR_BITS  # the hash alone misses it
        pictures += [original, copy]
        expected += [n, n]
    pictures += [texture(75), texture(76)]
    expected += [-1, -1]
    prints = [health.fingerprint(picture) for picture in pictures]
    digests, hashes = [p.digest for p in prints], [p.phash for p in prints]
    with_thumbs = health.duplicate_groups(digests, hashes, thumbs=health.thumbnails(prints))
    assert with_thumbs.group.tolist() == expected
    assert not with_thumbs.exact.any()
    assert (health.duplicate_groups(digests, hashes).group == -1).all()


def test_different_pictures_do_not_correlate_at_any_shift():
    thumbs = health.thumbnails([health.fingerprint(texture(seed)) for seed in range(80, 100)])
    pairs = health.shifted_correlation(thumbs[:10], thumbs[10:])
    assert pairs.max() < health.SAME_PICTURE
    assert health.shifted_correlation(thumbs[:3], thumbs[:3]).min() > 0.999
    flat = np.full((1, health.THUMB_SIDE, health.THUMB_SIDE), 90, np.uint8)
    assert health.shifted_correlation(flat, flat)[0] < health.SAME_PICTURE  # blank is no copy


def test_group_numbers_are_each_groups_smallest_id():
    groups = health.Groups(np.array([0, -1, 1, 0, 1]), np.array([True, False]))
    assert health.group_numbers(groups, np.array([40, 41, 12, 7, 50])).tolist() == [7, 0, 12, 7, 12]


def test_the_dataset_map_places_every_image_between_0_and_1_and_keeps_classes_apart():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 40)
    features = rng.normal(0, 8, (3, 20))[labels] + rng.normal(0, 1, (120, 20))
    points = health.dataset_map(features)
    assert points.shape == (120, 2) and points.min() >= 0 and points.max() <= 1
    centres = np.stack([points[labels == c].mean(axis=0) for c in range(3)])
    spread = max(points[labels == c].std() for c in range(3))
    assert min(np.linalg.norm(centres[a] - centres[b]) for a, b in [(0, 1), (0, 2), (1, 2)]) > 2 * spread
    assert health.dataset_map(features[:2]).tolist() == [[0.5, 0.5], [0.5, 0.5]]


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


def test_bench_health_on_a_generated_project_finds_what_was_planted(db, tmp_path):
    from audit.health_bench import bench_project, synthetic_cleanup
    from tests.factories import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny.keras")
    try:
        figures = bench_project(600, model)
    finally:
        synthetic_cleanup()
    assert figures["images"] == 600 and figures["unreadable"] == 0
    assert figures["exact_duplicate_groups"] == figures["planted_exact"] == 6
    assert figures["near_duplicate_groups"] == figures["planted_near"] == 12
    assert figures["cross_batch_groups"] == 6  # every exact copy went to the other batch
    assert figures["conflicting_groups"] == 3  # every other one with another label
    assert figures["unusable_blank"] == 2  # the blank picture and its exact copy
    assert figures["seconds"] > 0 and figures["peak_rss_mb"] > 0
    assert {"seconds_read", "seconds_check", "seconds_map"} <= set(figures)
