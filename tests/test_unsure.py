"""Unsure and not-a-face: an image with no face found (a large picture the detector found nothing
in, or a blank one) or that the model is too unsure of keeps its prediction but not as its final
label: the export puts it in unsure/ with the reason in the manifest, the grid filters it, and
/play/ says it found no face instead of naming an emotion."""

import csv
import io
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from PIL import Image as PILImage
from rest_framework.test import APIClient

from accounts.services import api_token_create
from inference import blazeface, faces
from inference.faces import find_face
from inference.unsure import threshold_for_share, unsure_reason, unsure_sweep
from projects import services
from projects.models import EMOTIONS, Export, Image, LabelPolicy
from tests.conftest import client_for, zip_bytes
from tests.factories import face_jpeg, pattern_jpeg

RECOGNISE = "/play/recognise/"


def picture(content: bytes) -> PILImage.Image:
    return PILImage.open(io.BytesIO(content))


@pytest.fixture
def mixed_project(project, users, active_model, django_capture_on_commit_callbacks):
    """Four face crops, a colour test pattern and a blank crop in emotion folders, and a logo with
    no original label. The tiny model is 0.45-0.54 sure of the faces, above the default 0.36."""
    project.label_policy = LabelPolicy.MODEL
    project.save(update_fields=["label_policy"])
    members = {f"{EMOTIONS[i]}/face{i}.jpg": face_jpeg(i) for i in range(4)}
    members["happy/bars.jpg"] = pattern_jpeg("bars")
    members["sad/blank.jpg"] = pattern_jpeg("blank", 48, 48)
    members["logo.jpg"] = pattern_jpeg("text")
    with django_capture_on_commit_callbacks(execute=True):
        services.batch_create(
            project=project, user=users["bob"], files=[SimpleUploadedFile("set.zip", zip_bytes(members))]
        )
    return project


def image_named(name: str) -> Image:
    return Image.objects.select_related("project").get(original_name=name)


def export_rows(client, project, user, capture) -> tuple[zipfile.ZipFile, dict[str, dict]]:
    viewer = client_for(client, user)
    with capture(execute=True):
        viewer.post(reverse("projects:export_create", args=[project.id]))
    export = Export.objects.latest("id")
    assert export.status == Export.Status.READY
    download = viewer.get(reverse("projects:export_download", args=[project.id, export.id]))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    rows = csv.DictReader(io.TextIOWrapper(archive.open("manifest.csv"), encoding="utf-8"))
    return archive, {row["original_name"]: row for row in rows}


class TestFaceFinding:
    def test_a_face_crop_stays_a_face_and_a_blank_crop_is_blank(self):
        assert find_face(picture(face_jpeg(0))).path == "small"
        assert find_face(picture(face_jpeg(1, size=96, mode="RGB"))).path == "small"
        assert find_face(picture(pattern_jpeg("blank", 48, 48))).path == "blank"

    @pytest.mark.parametrize("kind", ["bars", "text", "blank"])
    def test_no_face_is_found_in_a_photo_sized_pattern(self, kind):
        assert find_face(picture(pattern_jpeg(kind))).path == "whole"

    def test_a_face_in_a_photo_is_still_found(self):
        assert find_face(picture(face_jpeg(0, size=320, mode="RGB"))).path == "detected"


class TestBlazeFace:
    def test_the_detector_ships_with_the_install(self):
        assert blazeface.available()
        assert blazeface.model_path().name == "face_detection_short_range.tflite"

    def test_it_finds_a_face_and_none_in_test_patterns(self):
        box = blazeface.detect(np.asarray(picture(face_jpeg(0, size=320, mode="RGB"))))
        assert len(box) == 1
        x, y, w, h = box[0]
        # The cartoon face is the oval over 15%-85% of the width and 8%-95% of the height.
        assert 0.05 * 320 < x < 0.3 * 320 and 0.4 * 320 < w < 0.9 * 320
        assert 0 <= y < 0.3 * 320 and 0.4 * 320 < h < 0.95 * 320
        for kind in ("bars", "text", "blank"):
            assert blazeface.detect(np.asarray(picture(pattern_jpeg(kind)))) == []

    def test_its_face_is_used_with_its_own_margin_before_haar(self, monkeypatch):
        monkeypatch.setattr(blazeface, "detect", lambda pixels: [(10, 10, 20, 20), (50, 40, 100, 100)])
        monkeypatch.setattr(
            faces, "_cascade", lambda: pytest.fail("Haar ran although BlazeFace found a face")
        )
        face = find_face(PILImage.new("L", (300, 200)))
        assert (face.path, face.box) == ("detected", (40, 30, 120, 120))

    def test_without_the_detector_haar_still_finds_faces(self, monkeypatch):
        monkeypatch.setattr(blazeface, "model_path", lambda: None)
        blazeface._detector.cache_clear()
        try:
            assert not blazeface.available()
            assert find_face(picture(face_jpeg(0, size=320, mode="RGB"))).path == "detected"
        finally:
            blazeface._detector.cache_clear()


class TestUnsureReason:
    @pytest.mark.parametrize(
        ("path", "confidence", "reason"),
        [
            ("whole", 0.99, "no_face"),
            ("blank", 0.99, "no_face"),
            ("small", 0.2, "low_confidence"),
            ("detected", 0.359, "low_confidence"),
            ("detected", 0.36, ""),
            ("small", 0.9, ""),
        ],
    )
    def test_it_names_why_the_label_is_not_used(self, settings, path, confidence, reason):
        settings.UNSURE_MIN_CONFIDENCE = 0.36
        assert unsure_reason(path, confidence) == reason


class TestLabeling:
    def test_labeling_records_why_a_label_is_not_used(self, mixed_project):
        assert image_named("happy/bars.jpg").unsure_reason == Image.UnsureReason.NO_FACE
        assert image_named("happy/bars.jpg").face_path == Image.FacePath.WHOLE
        assert image_named("sad/blank.jpg").unsure_reason == Image.UnsureReason.NO_FACE
        assert image_named("sad/blank.jpg").face_path == Image.FacePath.BLANK
        assert image_named("logo.jpg").unsure_reason == Image.UnsureReason.NO_FACE
        faces = Image.objects.filter(original_name__contains="face")
        assert [face.unsure_reason for face in faces] == ["", "", "", ""]
        # The prediction is kept for reviewers; only the final label leaves it out.
        bars = image_named("happy/bars.jpg")
        assert bars.predicted_label in EMOTIONS and bars.final_label == ""

    def test_faces_below_the_threshold_are_low_confidence(
        self, project, users, active_model, settings, django_capture_on_commit_callbacks
    ):
        settings.UNSURE_MIN_CONFIDENCE = 0.99
        with django_capture_on_commit_callbacks(execute=True):
            services.batch_create(
                project=project, user=users["bob"], files=[SimpleUploadedFile("a.jpg", face_jpeg(0))]
            )
        image = Image.objects.get()
        assert (image.status, image.unsure_reason) == (
            Image.Status.LABELED,
            Image.UnsureReason.LOW_CONFIDENCE,
        )


class TestExport:
    def test_unsure_images_go_to_unsure_with_the_reason_in_the_manifest(
        self, client, mixed_project, users, django_capture_on_commit_callbacks
    ):
        archive, rows = export_rows(
            client, mixed_project, users["charlie"], django_capture_on_commit_callbacks
        )
        assert rows["happy/bars.jpg"]["file"] == "unsure/bars.jpg"
        assert rows["sad/blank.jpg"]["file"] == "unsure/blank.jpg"
        assert rows["logo.jpg"]["file"] == "unsure/logo.jpg"
        for name in ("happy/bars.jpg", "sad/blank.jpg", "logo.jpg"):
            assert (rows[name]["final_label"], rows[name]["unsure_reason"]) == ("", "no_face")
            assert rows[name]["predicted_label"] in EMOTIONS  # still there for whoever reviews
        for i in range(4):
            row = rows[f"{EMOTIONS[i]}/face{i}.jpg"]
            assert row["unsure_reason"] == ""
            assert (
                row["file"].split("/")[0]
                == row["final_label"]
                == image_named(row["original_name"]).final_label
            )
        assert archive.read("unsure/bars.jpg") == pattern_jpeg("bars")
        assert sorted(archive.namelist()) == sorted(["manifest.csv", *[r["file"] for r in rows.values()]])

    def test_a_reviewed_label_wins_over_unsure(
        self, client, mixed_project, users, django_capture_on_commit_callbacks
    ):
        services.image_set_label(image=image_named("happy/bars.jpg"), user=users["bob"], label="surprise")
        _, rows = export_rows(client, mixed_project, users["charlie"], django_capture_on_commit_callbacks)
        row = rows["happy/bars.jpg"]
        assert (row["file"], row["final_label"], row["reviewed_by"]) == (
            "surprise/bars.jpg",
            "surprise",
            "bob",
        )
        assert row["unsure_reason"] == "no_face"  # what the model said, kept for the record

    def test_keeping_original_labels_keeps_them_for_unsure_images(
        self, client, mixed_project, users, django_capture_on_commit_callbacks
    ):
        mixed_project.label_policy = LabelPolicy.ORIGINAL
        mixed_project.save(update_fields=["label_policy"])
        _, rows = export_rows(client, mixed_project, users["charlie"], django_capture_on_commit_callbacks)
        assert rows["happy/bars.jpg"]["file"] == "happy/bars.jpg"
        assert rows["logo.jpg"]["file"] == "unsure/logo.jpg"  # no original label to keep


class TestGrid:
    def grid_names(self, client, project, user, **query) -> list[str]:
        response = client_for(client, user).get(reverse("projects:review", args=[project.id]), query)
        assert response.status_code == 200
        return sorted(image.original_name for image in response.context["page"])

    def test_the_grid_filters_by_unsure_reason(self, client, mixed_project, users):
        no_face = ["happy/bars.jpg", "logo.jpg", "sad/blank.jpg"]
        assert self.grid_names(client, mixed_project, users["charlie"], unsure="no_face") == no_face
        assert self.grid_names(client, mixed_project, users["charlie"], unsure="yes") == no_face
        assert self.grid_names(client, mixed_project, users["charlie"], unsure="low_confidence") == []
        assert len(self.grid_names(client, mixed_project, users["charlie"], unsure="no")) == 4
        assert len(self.grid_names(client, mixed_project, users["charlie"], unsure="nonsense")) == 7

    def test_the_unsure_final_label_is_what_the_export_puts_in_unsure(self, client, mixed_project, users):
        services.image_set_label(image=image_named("logo.jpg"), user=users["bob"], label="happy")
        names = self.grid_names(client, mixed_project, users["charlie"], final="unsure")
        assert names == ["happy/bars.jpg", "sad/blank.jpg"]

    def test_the_grid_shows_why_an_image_is_unsure(self, client, mixed_project, users):
        response = client_for(client, users["bob"]).get(
            reverse("projects:review", args=[mixed_project.id]), {"unsure": "no_face"}
        )
        assert response.content.count(b"unsure: no face found") == 3
        assert b'<option value="no_face" selected>' in response.content

    def test_the_summary_counts_unsure_images(self, client, mixed_project, users):
        response = client_for(client, users["charlie"]).get(
            reverse("projects:detail", args=[mixed_project.id])
        )
        summary = response.context["summary"]
        assert summary["unsure_total"] == 3
        assert summary["unsure"] == [("no_face", "no face found", 3)]
        assert sum(n for _, n in summary["final_counts"]) == 4
        assert summary["unlabeled"] == 0
        assert b'id="unsure-count"' in response.content

    def test_the_api_gives_the_reason_and_filters_by_it(self, mixed_project, users):
        _, key = api_token_create(user=users["charlie"], name="tests")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        url = f"/api/v1/projects/{mixed_project.id}/images/"
        body = api.get(url, {"unsure": "no_face"}).json()
        assert body["count"] == 3
        assert {row["unsure_reason"] for row in body["results"]} == {"no_face"}
        assert all(row["final_label"] == "" for row in body["results"])
        assert api.get(url, {"final": "unsure"}).json()["count"] == 3
        assert api.get(url, {"unsure": "no"}).json()["count"] == 4


class TestPlay:
    @pytest.mark.parametrize("kind", ["bars", "text"])
    def test_play_says_it_found_no_face_in_a_test_pattern_or_logo(self, client, active_model, kind):
        photo = SimpleUploadedFile("pattern.jpg", pattern_jpeg(kind), content_type="image/jpeg")
        response = client.post(RECOGNISE, {"image": photo})
        body = response.json()
        assert response.status_code == 200
        assert body["face_found"] is False
        assert "could not find a face" in body["detail"]
        assert "emotion" not in body and "url" not in body and "greeting" not in body

    def test_the_no_face_answer_speaks_polish(self, client, active_model):
        photo = SimpleUploadedFile("pattern.jpg", pattern_jpeg("bars"), content_type="image/jpeg")
        response = client.post(RECOGNISE, {"image": photo}, headers={"accept-language": "pl"})
        assert response.json()["detail"].startswith("Nie widzimy twarzy")

    @pytest.mark.parametrize("content", [face_jpeg(2, size=320, mode="RGB"), face_jpeg(2, size=48)])
    def test_a_face_still_gets_its_emotion(self, client, active_model, content):
        response = client.post(RECOGNISE, {"image": SimpleUploadedFile("me.jpg", content, "image/jpeg")})
        body = response.json()
        assert response.status_code == 200
        assert body["face_found"] is True and body["emotion"] in EMOTIONS
        assert body["url"] == f"/play/{body['emotion']}/"

    def test_the_predict_api_says_why_too(self, users, active_model):
        _, key = api_token_create(user=users["alice"], name="tests")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        pattern = api.post("/api/v1/predict/", {"image": SimpleUploadedFile("p.jpg", pattern_jpeg("bars"))})
        face = api.post("/api/v1/predict/", {"image": SimpleUploadedFile("f.jpg", face_jpeg(0))})
        assert (pattern.json()["face_path"], pattern.json()["unsure_reason"]) == ("whole", "no_face")
        assert face.json()["unsure_reason"] == ""


class TestMeasuring:
    def test_the_sweep_gives_the_unsure_share_and_the_accuracy_of_the_rest(self):
        probabilities = np.array(
            [
                [0.9, 0.1, 0, 0, 0, 0, 0],  # sure and right
                [0.1, 0.8, 0.1, 0, 0, 0, 0],  # sure and wrong
                [0.3, 0.25, 0.25, 0.2, 0, 0, 0],  # unsure and right
                [0.2, 0.3, 0.3, 0.2, 0, 0, 0],  # unsure and wrong
            ]
        )
        right = probabilities.argmax(axis=1) == 0
        accuracy, rows = unsure_sweep(probabilities.max(axis=1), right, [0.2, 0.35])
        assert accuracy == 0.5
        assert (rows[0].unsure_share, rows[0].kept_accuracy) == (0.0, 0.5)
        assert (rows[1].unsure_share, rows[1].kept_accuracy, rows[1].unsure_accuracy) == (0.5, 0.5, 0.5)
        assert threshold_for_share(rows, 0.25) == rows[0]
        assert threshold_for_share(rows, 0.5) == rows[1]

    def test_measure_unsure_prints_the_table_and_a_suggestion(self, active_model, tmp_path):
        for i, emotion in enumerate(EMOTIONS):
            (tmp_path / emotion).mkdir()
            for j in range(2):
                (tmp_path / emotion / f"{j}.jpg").write_bytes(face_jpeg(i * 2 + j))
        # Crowd votes for the tree: ten votes for the folder's emotion (FER+ column names).
        columns = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"]
        votes = tmp_path.parent / "votes.csv"
        lines = ["file," + ",".join(columns) + ",contempt,unknown,NF"]
        for emotion in EMOTIONS:
            name = {"happy": "happiness", "sad": "sadness", "angry": "anger"}.get(emotion, emotion)
            counts = ",".join("10" if column == name else "0" for column in columns)
            lines += [f"validation/{emotion}/{j}.jpg,{counts},0,0,0" for j in range(2)]
        votes.write_text("\n".join(lines) + "\n")
        out = io.StringIO()
        call_command(
            "measure_unsure", "--data", str(tmp_path), "--photos", "4", "--votes", str(votes), stdout=out
        )
        text = out.getvalue()
        assert "crowd agreement of the rest" in text
        # Every vote went to the folder's emotion, so agreeing with the crowd is being right.
        accuracy = text.split("accuracy: ")[1].split()[0]
        assert text.split("crowd_agreement: ")[1].split()[0] == accuracy
        assert "model: tiny\nimages: 14" in text
        assert "0.36" in text and "<- UNSURE_MIN_CONFIDENCE" in text
        assert "suggested: UNSURE_MIN_CONFIDENCE=" in text
        assert "photos: 4 faces pasted into 640x480 frames" in text and "face_found: " in text
