"""The label audit inside the product: runs started by hand and after labeling, per-image
verdicts, the three final-label policies, the export manifest, the health page, the review queue
and the API, with the access rules of QUALITY.md (viewers read, reviewers act, owners set the
policy, other teams get 404, no token 401)."""

import csv
import io
import json
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_token_create
from audit import services as audit_services
from audit.models import AuditRun
from audit.tasks import audit_project
from projects import services
from projects.exports import export_rows
from projects.models import EMOTIONS, Batch, Image, LabelPolicy
from tests.conftest import client_for, zip_bytes
from tests.factories import face_jpeg

API = "/api/v1"
PER_CLASS = 30
# Image i of each class: its label is flipped when i < FLIPPED.
FLIPPED = 4


def token_client(user) -> APIClient:
    _, key = api_token_create(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def audited(project, users):
    """210 labeled images whose model is right about the true class; 28 original labels are
    wrong (moved to the next class). Truth is kept in `project.truth` by image id."""
    rng = np.random.default_rng(0)
    batch = Batch.objects.create(project=project, uploaded_by=users["bob"], status=Batch.Status.DONE)
    rows, truth = [], []
    for true in range(7):
        for i in range(PER_CLASS):
            probs = rng.uniform(0.002, 0.01, 7)
            probs[true] = 0
            probs[true] = 1 - probs.sum()
            given = (true + 1) % 7 if i < FLIPPED else true
            rows.append(
                Image(
                    project=project,
                    batch=batch,
                    file=f"images/{true}-{i}.jpg",
                    original_name=f"{EMOTIONS[given]}/{true}-{i}.jpg",
                    original_label=EMOTIONS[given],
                    status=Image.Status.LABELED,
                    predicted_label=EMOTIONS[int(probs.argmax())],
                    confidence=float(probs.max()),
                    probabilities={e: round(float(p), 6) for e, p in zip(EMOTIONS, probs, strict=True)},
                )
            )
            truth.append(EMOTIONS[true])
    images = Image.objects.bulk_create(rows)
    project.truth = {image.id: label for image, label in zip(images, truth, strict=True)}
    return project


def run_audit(project, capture, kind=AuditRun.Kind.MODEL, user=None) -> AuditRun:
    with capture(execute=True):
        run = audit_services.audit_start(project=project, user=user, kind=kind)
    run.refresh_from_db()
    return run


class TestAuditRuns:
    def test_an_audit_flags_the_wrong_original_labels_and_suggests_the_true_ones(
        self, audited, django_capture_on_commit_callbacks
    ):
        run = run_audit(audited, django_capture_on_commit_callbacks)
        assert run.status == AuditRun.Status.DONE
        assert (run.image_count, run.flagged_count) == (210, 28)
        flagged = Image.objects.filter(likely_mislabeled=True)
        assert all(audited.truth[i.id] != i.original_label for i in flagged)
        assert all(i.suggested_label == audited.truth[i.id] and i.suggestion_confident for i in flagged)
        assert not Image.objects.filter(likely_mislabeled=False).exclude(suggested_label="").exists()
        assert Image.objects.filter(label_quality=None).count() == 0
        summary = run.summary
        assert summary["images"] == 210 and summary["flagged"] == 28
        assert summary["noise_rates"]["happy"] == pytest.approx(4 / 30, abs=0.01)
        assert summary["label_counts"] == dict.fromkeys(EMOTIONS, 30)
        assert [sum(row) for row in summary["calibrated_joint"]] == [30] * 7
        assert run.seconds is not None

    def test_a_repeated_delivery_of_the_task_changes_nothing(
        self, audited, django_capture_on_commit_callbacks
    ):
        run = run_audit(audited, django_capture_on_commit_callbacks)
        Image.objects.filter(likely_mislabeled=True).update(suggested_label="")
        audit_project.delay(run.id)
        run.refresh_from_db()
        assert run.attempts == 1
        assert not Image.objects.filter(likely_mislabeled=True).exclude(suggested_label="").exists()

    def test_a_second_request_joins_the_waiting_run(self, audited, users):
        first = audit_services.audit_start(project=audited, user=users["bob"])
        second = audit_services.audit_start(project=audited, user=users["alice"])
        assert first.id == second.id
        assert AuditRun.objects.count() == 1

    def test_an_older_run_finishing_after_a_newer_one_writes_nothing(
        self, audited, django_capture_on_commit_callbacks
    ):
        older = audit_services.audit_start(project=audited)
        AuditRun.objects.filter(id=older.id).update(status=AuditRun.Status.RUNNING)  # its worker is slow
        newer = run_audit(audited, django_capture_on_commit_callbacks)
        Image.objects.update(label_quality=0.5)
        AuditRun.objects.filter(id=older.id).update(status=AuditRun.Status.PENDING)
        assert audit_services.audit_execute(older.id) is False
        older.refresh_from_db()
        assert (older.status, newer.status) == (AuditRun.Status.SUPERSEDED, AuditRun.Status.DONE)
        assert set(Image.objects.values_list("label_quality", flat=True)) == {0.5}

    def test_a_project_without_original_labels_cannot_be_audited(self, project, users):
        with pytest.raises(Exception, match="original label"):
            audit_services.audit_start(project=project, user=users["bob"])
        assert not AuditRun.objects.exists()

    def test_a_run_whose_worker_died_is_requeued_and_finishes(
        self, audited, settings, django_capture_on_commit_callbacks
    ):
        settings.AUDIT_CLAIM_TIMEOUT = 0
        run = audit_services.audit_start(project=audited)  # never queued: on_commit not run
        AuditRun.objects.filter(id=run.id).update(
            status=AuditRun.Status.RUNNING, attempts=1, claimed_at=timezone.now() - timedelta(minutes=1)
        )
        from audit.tasks import recover_stalled_audits

        recover_stalled_audits.delay()
        run.refresh_from_db()
        assert (run.status, run.attempts) == (AuditRun.Status.DONE, 2)
        assert Image.objects.filter(likely_mislabeled=True).count() == 28

    def test_a_labeled_zip_with_emotion_folders_is_audited_without_asking(
        self, project, users, active_model, django_capture_on_commit_callbacks
    ):
        archive = zip_bytes({f"{EMOTIONS[i % 7]}/face{i}.jpg": face_jpeg(i) for i in range(21)})
        with django_capture_on_commit_callbacks(execute=True):
            services.batch_create(
                project=project, user=users["bob"], files=[SimpleUploadedFile("s.zip", archive)]
            )
        run = AuditRun.objects.get()
        assert (run.kind, run.status, run.image_count) == (AuditRun.Kind.MODEL, AuditRun.Status.DONE, 21)
        image = Image.objects.first()
        assert image.label_quality == pytest.approx(image.probabilities[image.original_label], abs=1e-6)

    def test_a_zip_without_emotion_folders_is_not_audited(
        self, project, users, active_model, django_capture_on_commit_callbacks
    ):
        archive = zip_bytes({f"face{i}.jpg": face_jpeg(i) for i in range(3)})
        with django_capture_on_commit_callbacks(execute=True):
            services.batch_create(
                project=project, user=users["bob"], files=[SimpleUploadedFile("s.zip", archive)]
            )
        assert Batch.objects.get().status == Batch.Status.DONE
        assert not AuditRun.objects.exists()

    def test_the_cross_validated_audit_uses_the_models_features_on_the_stored_images(
        self, project, users, active_model, django_capture_on_commit_callbacks, monkeypatch
    ):
        # Generated faces: the mouth (smile, frown, flat) follows the seed, and so does the label.
        names = ("happy", "sad", "neutral")
        members = {f"{names[seed % 3]}/face{seed}.jpg": face_jpeg(seed) for seed in range(45)}
        with django_capture_on_commit_callbacks(execute=True):
            services.batch_create(
                project=project, user=users["bob"], files=[SimpleUploadedFile("s.zip", zip_bytes(members))]
            )
        decoded, read = [], audit_services.stored_face
        monkeypatch.setattr(audit_services, "stored_face", lambda name: decoded.append(name) or read(name))
        run = run_audit(
            project, django_capture_on_commit_callbacks, AuditRun.Kind.CROSS_VALIDATED, users["bob"]
        )
        assert run.status == AuditRun.Status.DONE, run.error
        # The folds and the health check share one read: each stored image is decoded once.
        assert len(decoded) == len(set(decoded)) == 45
        assert run.image_count == 45
        assert "pooled" in run.summary["features"] or "global_average" in run.summary["features"]
        assert run.summary["seconds"]["features"] >= 0
        qualities = list(Image.objects.values_list("label_quality", flat=True))
        assert len(qualities) == 45 and all(q is not None and 0 <= q <= 1 for q in qualities)


class TestPolicies:
    def final_labels(self, project) -> dict[int, str]:
        return {image.id: image.final_label for image in Image.objects.select_related("project")}

    @pytest.mark.parametrize(
        ("policy", "accuracy"),
        [(LabelPolicy.MODEL, 1.0), (LabelPolicy.ORIGINAL, 182 / 210), (LabelPolicy.ORIGINAL_SUGGESTED, 1.0)],
    )
    def test_each_policy_picks_the_final_label_of_unreviewed_images(
        self, audited, policy, accuracy, django_capture_on_commit_callbacks
    ):
        run_audit(audited, django_capture_on_commit_callbacks)
        services.project_update(project=audited, label_policy=policy)
        finals = self.final_labels(audited)
        assert np.mean([finals[i] == audited.truth[i] for i in finals]) == pytest.approx(accuracy)
        # The export folders and the SQL filter agree with the model property.
        rows = {row["original_name"]: row for row in export_rows(audited)}
        for image in Image.objects.all():
            assert rows[image.original_name]["final_label"] == finals[image.id]
        from projects.selectors import ImageFilters, images_filtered

        happy = images_filtered(audited, ImageFilters(final="happy"))
        assert {i.id for i in happy} == {i for i, label in finals.items() if label == "happy"}

    def test_a_reviewed_label_wins_under_every_policy(
        self, audited, users, django_capture_on_commit_callbacks
    ):
        run_audit(audited, django_capture_on_commit_callbacks)
        image = Image.objects.filter(likely_mislabeled=True).first()
        services.image_set_label(image=image, user=users["bob"], label=image.original_label)
        for policy in LabelPolicy.values:
            services.project_update(project=audited, label_policy=policy)
            image = Image.objects.select_related("project").get(id=image.id)
            assert image.final_label == image.original_label

    def test_an_unknown_policy_is_refused(self, audited):
        with pytest.raises(Exception, match="policy"):
            services.project_update(project=audited, label_policy="whatever")
        audited.refresh_from_db()
        assert audited.label_policy == LabelPolicy.MODEL

    def test_the_export_manifest_carries_score_flag_and_suggestion(
        self, client, audited, users, django_capture_on_commit_callbacks
    ):
        run_audit(audited, django_capture_on_commit_callbacks)
        services.project_update(project=audited, label_policy=LabelPolicy.ORIGINAL_SUGGESTED)
        Image.objects.update(file="")  # no files are needed for the manifest
        rows = list(export_rows(audited))
        flagged = [r for r in rows if r["likely_mislabeled"] == "yes"]
        assert len(flagged) == 28
        for row in flagged:
            assert row["suggested_label"] == row["final_label"] != row["original_label"]
            assert row["file"].startswith(row["suggested_label"] + "/")
            assert float(row["label_quality"]) < 0.2
        assert all(
            r["suggested_label"] == "" and r["final_label"] == r["original_label"]
            for r in rows
            if r not in flagged
        )

    def test_the_export_zip_has_the_audit_columns(
        self, client, audited, users, django_capture_on_commit_callbacks
    ):
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage

        run_audit(audited, django_capture_on_commit_callbacks)
        for image in Image.objects.all():
            default_storage.save(image.file.name, ContentFile(b"jpeg"))
        viewer = client_for(client, users["charlie"])
        with django_capture_on_commit_callbacks(execute=True):
            viewer.post(reverse("projects:export_create", args=[audited.id]))
        export = audited.exports.get()
        download = viewer.get(reverse("projects:export_download", args=[audited.id, export.id]))
        archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
        reader = csv.DictReader(io.TextIOWrapper(archive.open("manifest.csv"), encoding="utf-8"))
        assert {"label_quality", "likely_mislabeled", "suggested_label"} <= set(reader.fieldnames)
        assert sum(row["likely_mislabeled"] == "yes" for row in reader) == 28


class TestPages:
    def test_the_health_page_shows_noise_rates_the_heat_map_and_the_queue_link(
        self, client, audited, users, django_capture_on_commit_callbacks
    ):
        run_audit(audited, django_capture_on_commit_callbacks)
        response = client_for(client, users["charlie"]).get(reverse("audit:health", args=[audited.id]))
        assert response.status_code == 200
        page = response.content.decode()
        assert "28 likely mislabeled images to review" in page
        assert "rgba(200, 60, 40," in page  # the heat map's shaded cells
        assert 'id="start-audit"' not in page and 'id="set-policy"' not in page  # a viewer only reads

    def test_the_health_page_is_404_for_another_team(self, client, audited, outsider):
        response = client_for(client, outsider).get(reverse("audit:health", args=[audited.id]))
        assert response.status_code == 404

    def test_a_reviewer_starts_an_audit_and_a_viewer_cannot(
        self, client, audited, users, django_capture_on_commit_callbacks
    ):
        url = reverse("audit:audit_create", args=[audited.id])
        assert client_for(client, users["charlie"]).post(url, {"kind": "model"}).status_code == 403
        assert not AuditRun.objects.exists()
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(client, users["bob"]).post(url, {"kind": "model"})
        assert response.status_code == 302
        assert AuditRun.objects.get().status == AuditRun.Status.DONE

    def test_only_the_owner_sets_the_policy(self, client, audited, users):
        url = reverse("audit:policy_set", args=[audited.id])
        response = client_for(client, users["bob"]).post(url, {"label_policy": "original"})
        audited.refresh_from_db()
        assert (response.status_code, audited.label_policy) == (403, LabelPolicy.MODEL)
        response = client_for(client, users["alice"]).post(url, {"label_policy": "original"})
        audited.refresh_from_db()
        assert (response.status_code, audited.label_policy) == (302, LabelPolicy.ORIGINAL)

    def test_the_queue_lists_flagged_images_worst_first_with_one_key_actions(
        self, client, audited, users, django_capture_on_commit_callbacks
    ):
        run_audit(audited, django_capture_on_commit_callbacks)
        url = reverse("projects:review", args=[audited.id])
        response = client_for(client, users["bob"]).get(
            url, {"likely_mislabeled": "1", "reviewed": "no", "order": "label_quality", "per_page": 96}
        )
        images = list(response.context["page"])
        assert len(images) == 28
        qualities = [i.label_quality for i in images]
        assert qualities == sorted(qualities)
        page = response.content.decode()
        assert page.count('class="take-suggestion"') == 28 and page.count('class="keep-original"') == 28
        assert "<kbd>s</kbd></dt><dd>take the audit" in page  # the review page's list of keys

    def test_taking_the_suggestion_reviews_the_image(
        self, client, audited, users, django_capture_on_commit_callbacks
    ):
        run_audit(audited, django_capture_on_commit_callbacks)
        image = Image.objects.filter(likely_mislabeled=True).first()
        url = reverse("projects:image_label", args=[audited.id, image.id])
        body = json.dumps({"label": image.suggested_label})
        response = client_for(client, users["bob"]).post(url, body, content_type="application/json")
        image.refresh_from_db()
        assert response.status_code == 200
        assert (image.reviewed_label, image.reviewed_by) == (image.suggested_label, users["bob"])


class TestApi:
    def test_images_carry_scores_and_filter_by_flag_worst_first(
        self, audited, users, django_capture_on_commit_callbacks
    ):
        run_audit(audited, django_capture_on_commit_callbacks)
        response = token_client(users["charlie"]).get(
            f"{API}/projects/{audited.id}/images/", {"likely_mislabeled": "true", "order": "label_quality"}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 28
        qualities = [row["label_quality"] for row in body["results"]]
        assert qualities == sorted(qualities)
        first = body["results"][0]
        assert first["likely_mislabeled"] is True and first["suggestion_confident"] is True
        assert first["suggested_label"] == audited.truth[first["id"]]
        response = token_client(users["charlie"]).get(
            f"{API}/projects/{audited.id}/images/", {"likely_mislabeled": "false"}
        )
        assert response.json()["count"] == 182

    def test_the_health_summary(self, audited, users, django_capture_on_commit_callbacks):
        run_audit(audited, django_capture_on_commit_callbacks)
        response = token_client(users["charlie"]).get(f"{API}/projects/{audited.id}/health/")
        assert response.status_code == 200
        body = response.json()
        assert body["run"]["flagged_count"] == 28 and body["in_progress"] is None
        assert body["flagged"] == {
            "total": 28,
            "open": 28,
            "took_suggestion": 0,
            "kept_original": 0,
            "confident": 28,
        }
        assert [c["emotion"] for c in body["classes"]] == list(EMOTIONS)
        # Under the default policy the final label is the model's, which differs from the 28 wrong ones.
        assert len(body["estimated_joint"]) == 7 and body["changed"] == 28
        assert body["label_policy"] == "model"

    @pytest.mark.parametrize(
        ("actor", "status"),
        [("alice", 202), ("bob", 202), ("charlie", 403), ("dave", 404), (None, 401)],
    )
    def test_starting_an_audit_needs_the_reviewer_role(
        self, audited, users, outsider, actor, status, django_capture_on_commit_callbacks
    ):
        user = outsider if actor == "dave" else users.get(actor)
        client = token_client(user) if user else APIClient()
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                f"{API}/projects/{audited.id}/audits/", {"kind": "model", "project": 99}, format="json"
            )
        assert response.status_code == status
        assert AuditRun.objects.filter(status=AuditRun.Status.DONE).count() == (1 if status == 202 else 0)

    @pytest.mark.parametrize(("actor", "status"), [("charlie", 200), ("dave", 404), (None, 401)])
    def test_reading_audits_and_health(
        self, audited, users, outsider, actor, status, django_capture_on_commit_callbacks
    ):
        run = run_audit(audited, django_capture_on_commit_callbacks)
        user = outsider if actor == "dave" else users.get(actor)
        client = token_client(user) if user else APIClient()
        for path in ("audits/", f"audits/{run.id}/", "health/"):
            assert client.get(f"{API}/projects/{audited.id}/{path}").status_code == status

    def test_a_bad_kind_is_a_400(self, audited, users):
        response = token_client(users["bob"]).post(f"{API}/projects/{audited.id}/audits/", {"kind": "magic"})
        assert response.status_code == 400
        assert not AuditRun.objects.exists()

    def test_the_owner_sets_the_policy_through_the_api(self, audited, users):
        url = f"{API}/projects/{audited.id}/"
        response = token_client(users["bob"]).patch(url, {"label_policy": "original"}, format="json")
        assert response.status_code == 403
        response = token_client(users["alice"]).patch(url, {"label_policy": "original"}, format="json")
        audited.refresh_from_db()
        assert response.status_code == 200 and response.json()["label_policy"] == "original"
        assert audited.label_policy == LabelPolicy.ORIGINAL
