"""Crowd votes: the definitions, training on vote distributions, and the two measuring commands
(`evaluate_model --votes`, `bench_audit --votes`) against hand-made vote files."""

import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from inference.crowd import COLUMNS, CrowdScore, Votes, crowd_evaluate, votes_key, votes_read
from projects.models import EMOTIONS
from tests.factories import TINY_TRIAL, face_jpeg
from training import data, runner, services
from training.config import config_validate
from training.models import Trial

HEADER = ["file", *COLUMNS]


def votes_row(file: str, **counts: float) -> list:
    return [file, *(counts.get(column, 0) for column in COLUMNS)]


def write_votes(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def votes(**counts: float) -> Votes:
    return Votes(np.array([counts.get(column, 0) for column in COLUMNS], float))


def write_faces(root: Path, layout: dict[str, int], prefix: str = "") -> None:
    for emotion, count in layout.items():
        (root / emotion).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            (root / emotion / f"{prefix}{emotion}-{n}.jpg").write_bytes(
                face_jpeg(EMOTIONS.index(emotion) * 10 + n)
            )


# The definitions ---------------------------------------------------------------------------------


def test_an_image_counts_when_an_emotion_has_the_most_votes_even_tied_with_a_non_emotion():
    assert votes(happiness=5, NF=5).counts_as_emotion
    assert votes(sadness=4, unknown=3, contempt=3).counts_as_emotion
    assert not votes(contempt=6, anger=4).counts_as_emotion
    assert not votes(NF=10).counts_as_emotion
    assert not votes().counts_as_emotion


def test_either_side_of_a_tie_agrees_and_the_share_is_of_all_ten_votes():
    tied = votes(anger=4, disgust=4, unknown=2)
    assert tied.agrees("angry") and tied.agrees("disgust") and not tied.agrees("fear")
    assert tied.share("angry") == pytest.approx(0.4)
    assert not tied.agrees("")  # no label never agrees
    assert tied.distribution() == pytest.approx([0.5, 0.5, 0, 0, 0, 0, 0])  # in EMOTIONS order


def test_crowd_score_counts_only_emotion_majorities_and_says_what_it_left_out():
    score = CrowdScore()
    score.add(votes(happiness=7, neutral=3), "happy")  # agrees, share 0.7
    score.add(votes(happiness=7, neutral=3), "neutral")  # disagrees, share 0.3
    score.add(votes(contempt=8, happiness=2), "happy")  # not an emotion majority
    score.add(None, "happy")  # no votes
    assert (score.counted, score.non_emotion, score.unmatched) == (2, 1, 1)
    assert score.agreement == 0.5 and score.annotator_share == pytest.approx(0.5)


def test_files_and_vote_rows_meet_on_the_emotion_folder_and_the_file_name():
    assert votes_key("/data/fer/validation/Angry/PublicTest_1.jpg") == "angry/PublicTest_1.jpg"
    assert votes_key("train/angry/PublicTest_1.jpg") == votes_key("angry/PublicTest_1.jpg")


def test_a_bad_votes_file_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        votes_read(tmp_path / "none.csv")
    (tmp_path / "short.csv").write_text("file,neutral\na/b.jpg,1\n")
    with pytest.raises(ValueError, match="missing column"):
        votes_read(tmp_path / "short.csv")
    bad = write_votes(tmp_path / "bad.csv", [votes_row("a/b.jpg", neutral="lots")])
    with pytest.raises(ValueError, match="line 2: vote counts must be numbers"):
        votes_read(bad)
    twice = write_votes(tmp_path / "twice.csv", [votes_row("t/a/b.jpg", NF=1), votes_row("v/a/b.jpg", NF=2)])
    with pytest.raises(ValueError, match="named twice"):
        votes_read(twice)


def test_the_confusion_and_recall_are_against_the_crowds_majority():
    crowd = {
        "a/1.jpg": votes(anger=9, sadness=1),
        "a/2.jpg": votes(anger=6, fear=4),
        "a/3.jpg": votes(fear=10),
    }
    result = crowd_evaluate(["a/1.jpg", "a/2.jpg", "a/3.jpg"], ["angry", "fear", "fear"], crowd, np.ones(3))
    assert result.recall["angry"] == 0.5 and result.recall["fear"] == 1.0
    assert result.confusion[EMOTIONS.index("angry")][EMOTIONS.index("fear")] == 1
    # Confidence 1.0 everywhere, right two times in three: a calibration gap of a third.
    assert result.ece == pytest.approx(1 / 3)


# Training on vote distributions ------------------------------------------------------------------


@pytest.fixture
def voted_faces(db, tmp_path):
    """3 faces per emotion in train/ and 2 in validation/. The crowd says every face shows 60%
    happiness and 40% surprise, whatever its folder; one training face is 'not a face' for the
    crowd and one has no row."""
    root = tmp_path / "faces"
    write_faces(root / "train", dict.fromkeys(EMOTIONS, 3))
    # Files are matched on folder and name, so the splits' names differ (as FER2013's do).
    write_faces(root / "validation", dict.fromkeys(EMOTIONS, 2), prefix="v-")
    rows = []
    for path in sorted(root.rglob("*.jpg")):
        key = votes_key(path)
        if key == "angry/angry-0.jpg":
            rows.append(votes_row(f"train/{key}", NF=9, happiness=1))
        elif key not in ("angry/angry-1.jpg", "angry/v-angry-1.jpg"):
            rows.append(votes_row(f"{path.parent.parent.name}/{key}", happiness=6, surprise=4))
    return root, write_votes(tmp_path / "votes.csv", rows)


def test_a_voted_split_holds_the_vote_distributions_and_leaves_out_non_faces_and_unvoted(voted_faces):
    root, votes_file = voted_faces
    train, validation = data.folder_splits(root, str(votes_file))
    assert len(train) == 21 - 2 and train.left_out == {"no_votes": 1, "not_an_emotion": 1}
    assert len(validation) == 13 and validation.left_out == {"no_votes": 1, "not_an_emotion": 0}
    expected = np.zeros(len(EMOTIONS), np.float32)
    expected[EMOTIONS.index("happy")], expected[EMOTIONS.index("surprise")] = 0.6, 0.4
    assert np.allclose(train.targets, expected) and (train.labels == EMOTIONS.index("happy")).all()
    # What the loss sees is the distribution, not a one-hot label.
    config = config_validate({"batch_size": 32})
    _, targets = next(iter(data.dataset(train, config, training=False)))
    assert np.allclose(targets.numpy(), expected)


def test_a_trial_trained_on_votes_learns_the_crowds_distribution(voted_faces):
    root, votes_file = voted_faces
    config = TINY_TRIAL | {
        "epochs": 40,
        "batch_size": 4,
        "conv_filters": [4],
        "conv_dropout": [0.0],
        "dense_units": 0,
        "dropout": 0.0,
        "l2": 0.0,
        "learning_rate": 0.01,
        "class_weights": False,
        "votes": str(votes_file),
        "backup_dir": str(root.parent / "backup"),
    }
    trial = services.trial_create(
        name="votes", preset="trial_1", config=config, data_dir=str(root), start=False
    )
    services.trial_claim(trial.pk)
    trial = runner.run(trial.pk)
    assert trial.status == Trial.Status.SUCCEEDED, trial.error
    assert trial.metrics["left_out"]["train"] == {"no_votes": 1, "not_an_emotion": 1}
    assert trial.metrics["crowd_agreement"] == 1.0 and trial.metrics["validation_count"] == 13
    # Against 60/40 targets the cross-entropy cannot fall below their entropy (0.673), where
    # one-hot majorities would let it fall towards 0; training gets close to that floor. (At 15
    # epochs a run now and then stopped 0.2 above it; at 40 the last loss is within 0.02.)
    entropy = -(0.6 * np.log(0.6) + 0.4 * np.log(0.4))
    losses = [row.loss for row in trial.epochs.order_by("epoch")]
    assert min(losses) > entropy - 1e-3, losses
    assert losses[-1] < entropy + 0.15, losses

    # Its card reports the crowd figures that evaluate_model --votes reproduces.
    call_command(
        "model_card", trial.pk, "--name", "voted", "--dir", root.parent / "shipped", stdout=io.StringIO()
    )
    card = (root.parent / "shipped" / "voted.md").read_text()
    assert f"--votes {votes_file}" in card and "**crowd agreement 1.0000**" in card
    # The command is the one to type: a resumable run's folder is an option, not a setting.
    assert f"--backup-dir {root.parent / 'backup'}" in card and "backup_dir=" not in card
    assert '"no_votes": 1, "not_an_emotion": 1' in card


# Measuring against the crowd ---------------------------------------------------------------------


@pytest.fixture
def always_happy(db, tmp_path):
    """An active model that says happy (p = 0.7) and sad (p = 0.3 - a little) for every face."""
    import keras

    inputs = keras.Input((48, 48, 1))
    dense = keras.layers.Dense(len(EMOTIONS), activation="softmax", kernel_initializer="zeros")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    logits = np.full(len(EMOTIONS), -20.0)
    logits[EMOTIONS.index("happy")], logits[EMOTIONS.index("sad")] = np.log(0.7), np.log(0.3)
    dense.set_weights([np.zeros((48 * 48, len(EMOTIONS))), logits])
    path = tmp_path / "always-happy.keras"
    model.save(path)
    args = ["--name", "always-happy", "--file", str(path), "--input-size", "48", "--grayscale"]
    call_command("register_model", *args, "--preprocessing", "zero_one", "--activate", stdout=io.StringIO())


@pytest.fixture
def happy_and_sad(tmp_path):
    """Three faces in happy/ and three in sad/, and the crowd's view of each: two of the happy
    faces and one sad face are as labeled, the others the crowd calls the other emotion; one more
    face is 'not a face' for the crowd and one has no votes."""
    root = tmp_path / "data"
    write_faces(root, {"happy": 4, "sad": 4})
    rows = [
        votes_row("validation/happy/happy-0.jpg", happiness=8, neutral=2),
        votes_row("validation/happy/happy-1.jpg", happiness=5, sadness=5),  # a tie: both agree
        votes_row("validation/happy/happy-2.jpg", sadness=6, happiness=4),
        votes_row("validation/happy/happy-3.jpg", NF=7, happiness=3),
        votes_row("validation/sad/sad-0.jpg", sadness=9, unknown=1),
        votes_row("validation/sad/sad-1.jpg", happiness=7, sadness=3),
        votes_row("validation/sad/sad-2.jpg", happiness=6, contempt=4),
    ]  # sad-3 has no row
    return root, write_votes(tmp_path / "votes.csv", rows)


def test_evaluate_model_scores_the_model_against_the_crowd(always_happy, happy_and_sad, tmp_path):
    root, votes_file = happy_and_sad
    out = io.StringIO()
    predictions = tmp_path / "predictions.csv"
    call_command(
        "evaluate_model",
        "--data",
        str(root),
        "--votes",
        str(votes_file),
        "--predictions",
        str(predictions),
        stdout=out,
    )
    text = out.getvalue()
    assert "accuracy: 0.5000" in text  # the folder-label lines stay: 4 of 8 faces are in happy/
    # Counted: happy-0..2, sad-0..2. "happy" agrees with happy-0, happy-1 (tie), sad-1, sad-2.
    assert "crowd_images: 6 (left out: 1 mostly contempt/unknown/not-a-face, 1 without votes)" in text
    assert "crowd_agreement: 0.6667" in text
    assert f"annotator_share: {(0.8 + 0.5 + 0.4 + 0 + 0.7 + 0.6) / 6:.4f}" in text
    assert "crowd_ece: 0.0333" in text  # confidence 0.7 everywhere, right 4 times in 6
    assert re.search(r"^sad +0\.0000 +2$", text, re.M)  # the crowd's sad faces: sad-0, happy-2
    assert re.search(r"^happy +1\.0000 +4$", text, re.M)
    rows = list(csv.DictReader(predictions.open()))
    assert len(rows) == 8 and list(rows[0]) == ["file", "predicted", "confidence", *EMOTIONS]
    assert rows[0]["file"] == "happy/happy-0.jpg" and rows[0]["predicted"] == "happy"
    assert float(rows[0]["confidence"]) == pytest.approx(0.7, abs=1e-3)
    assert float(rows[0]["sad"]) == pytest.approx(0.3, abs=1e-3)


def test_evaluate_model_refuses_a_bad_votes_file(always_happy, happy_and_sad, tmp_path):
    root, _ = happy_and_sad
    (tmp_path / "bad.csv").write_text("file,happiness\nhappy/happy-0.jpg,3\n")
    with pytest.raises(CommandError, match="missing column"):
        call_command("evaluate_model", "--data", str(root), "--votes", str(tmp_path / "bad.csv"))


def bench_audit_votes(root: Path, votes_file: Path, report: Path) -> tuple[dict[str, str], list[dict]]:
    """`bench_audit --votes --report`: its printed figures and its report's rows."""
    out = io.StringIO()
    call_command(
        "bench_audit", "--data", str(root), "--votes", str(votes_file), "--report", str(report), stdout=out
    )
    figures = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    return figures, list(csv.DictReader(report.open()))


def test_bench_audit_measures_the_audit_and_every_policy_against_real_noise(
    always_happy, happy_and_sad, tmp_path
):
    root, votes_file = happy_and_sad
    figures, rows = bench_audit_votes(root, votes_file, tmp_path / "report.csv")
    assert figures["images"] == "8" and figures["crowd_images"] == "6"
    # The folder labels the crowd disputes: happy-2, sad-1, sad-2 (happy-1 is a tie, so agrees).
    assert figures["real_noise"] == "0.5000"
    # Label quality is p(given) = 0.7 in happy/ and 0.3 in sad/: of the 9 disputed/undisputed
    # pairs, sad-1 and sad-2 rank above happy-0, happy-1 (4) and tie with sad-0 (1); happy-2
    # ties with happy-0 and happy-1 (1) and ranks below sad-0 (0): 6 of 9.
    assert figures["real_noise_auroc"] == "0.6667"
    assert figures["export_crowd_agreement_model"] == "0.6667"  # "happy" for every face
    assert figures["export_crowd_agreement_original"] == "0.5000"  # happy-0, happy-1, sad-0
    assert figures["export_unsure_model"] == "0.0000" and figures["unsure"] == "0"
    assert figures["default_policy"] == "model"
    assert [row["file"] for row in rows[:2]] == ["happy/happy-0.jpg", "happy/happy-1.jpg"]
    assert set(rows[0]) >= {"original", "predicted", "label_quality", "likely_mislabeled", "suggested_label"}
    assert {"confident", "final_model", "final_original", "final_original_suggested"} <= set(rows[0])
    assert (
        rows[4]["original"] == "sad"
        and rows[4]["final_model"] == "happy"
        and rows[4]["final_original"] == "sad"
    )
    assert float(rows[4]["label_quality"]) == pytest.approx(0.3, abs=1e-3)
    # The suggestions policy's figure is its report column scored the same way.
    crowd = votes_read(votes_file)
    score = CrowdScore()
    for row in rows:
        score.add(crowd.get(row["file"]), row["final_original_suggested"])
    assert figures["export_crowd_agreement_original_suggested"] == f"{score.agreement:.4f}"


def test_bench_audit_report_needs_votes(always_happy, happy_and_sad, tmp_path):
    root, _ = happy_and_sad
    with pytest.raises(CommandError, match="--report needs --votes"):
        call_command("bench_audit", "--data", str(root), "--report", str(tmp_path / "r.csv"))


def test_votes_and_a_starting_model_must_exist_on_the_server(tmp_path):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as raised:
        config_validate({"votes": str(tmp_path / "none.csv"), "init_from": str(tmp_path / "none.keras")})
    assert set(raised.value.message_dict) == {"votes", "init_from"}


def test_a_trial_can_start_from_a_saved_flip_averaged_model(voted_faces, tmp_path):
    import keras

    from training.architectures import build_model, with_flip_averaging

    root, votes_file = voted_faces
    tiny = TINY_TRIAL | {"conv_filters": [4], "conv_dropout": [0.0], "dense_units": 0, "epochs": 1}
    start = with_flip_averaging(build_model(config_validate(tiny)))
    start.save(tmp_path / "start.keras")
    config = tiny | {
        "init_from": str(tmp_path / "start.keras"),
        "votes": str(votes_file),
        "flip_averaging": True,
    }
    trial = services.trial_create(
        name="fine-tune", preset="trial_1", config=config, data_dir=str(root), start=False
    )
    services.trial_claim(trial.pk)
    trial = runner.run(trial.pk)
    assert trial.status == Trial.Status.SUCCEEDED, trial.error
    # The network inside was trained on; flip averaging wraps it once, not twice.
    shipped = keras.models.load_model(trial.model_file.path, compile=False)
    inner = [layer for layer in shipped.layers if isinstance(layer, keras.Model)]
    assert len(inner) == 1 and not any(isinstance(layer, keras.Model) for layer in inner[0].layers)

    other = build_model(config_validate(tiny | {"input_size": 64}))
    other.save(tmp_path / "other.keras")
    config["init_from"] = str(tmp_path / "other.keras")
    trial = services.trial_create(
        name="mismatch", preset="trial_1", config=config, data_dir=str(root), start=False
    )
    services.trial_claim(trial.pk)
    trial = runner.run(trial.pk)
    assert trial.status == Trial.Status.FAILED and "this trial needs (48, 48, 1)" in trial.error


def test_bench_audit_counts_faces_sent_to_unsure_apart(always_happy, happy_and_sad, tmp_path, settings):
    settings.UNSURE_MIN_CONFIDENCE = 0.75  # above the model's 0.7: every face is unsure
    root, votes_file = happy_and_sad
    figures, rows = bench_audit_votes(root, votes_file, tmp_path / "report.csv")
    assert figures["unsure"] == "8"
    # Under the model's policy nothing lands in an emotion folder; originals still do.
    assert figures["export_unsure_model"] == "1.0000" and figures["export_crowd_agreement_model"] == "0.0000"
    assert (
        figures["export_unsure_original"] == "0.0000"
        and figures["export_crowd_agreement_original"] == "0.5000"
    )
    assert {row["unsure_reason"] for row in rows} == {"low_confidence"}
    assert {row["final_model"] for row in rows} == {"unsure"}
