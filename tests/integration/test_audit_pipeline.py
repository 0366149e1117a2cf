"""The label audit with real processes: a ZIP with emotion folders is uploaded over HTTP, the real
worker labels it and then audits it by itself, the likely mislabeled queue and the health page
show the verdicts, and the export's manifest carries them."""

import csv
import io
import json

import pytest

from projects.models import EMOTIONS
from tests.conftest import zip_bytes
from tests.factories import face_jpeg
from tests.integration.stack import HTTP_TIMEOUT
from tests.integration.test_pipeline import create_project, export_and_download, upload

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["services", "embedded"])
def test_a_labeled_zip_is_audited_queued_for_review_and_exported_with_scores(make_stack, backend):
    stack = make_stack(backend)
    stack.create_user("alice", "alice-password")
    stack.start_web()
    stack.start_worker()
    stack.start_beat()
    alice = stack.login("alice", "alice-password")
    project_id = create_project(stack, alice, "Audit faces")

    members = {f"{EMOTIONS[i % 7]}/face-{i}.jpg": face_jpeg(i) for i in range(42)}
    batch = upload(stack, alice, project_id, {"set.zip": zip_bytes(members)})["batch"]
    stack.wait_for(lambda: stack.progress(alice, project_id, batch)["status"] == "done", 180, "labeling")

    def audited():
        rows = stack.sql("SELECT status, image_count, flagged_count FROM audit_auditrun ORDER BY id")
        assert all(status != "failed" for status, _, _ in rows), rows
        return rows and rows[-1][0] == "done" and rows[-1]

    _, count, flagged = stack.wait_for(audited, 120, "the automatic audit")
    assert count == 42
    scores = stack.sql(
        "SELECT original_label, probabilities, label_quality, likely_mislabeled FROM projects_image"
    )
    for original, probabilities, quality, _ in scores:
        probabilities = json.loads(probabilities) if isinstance(probabilities, str) else probabilities
        assert quality == pytest.approx(probabilities[original], abs=1e-5)
    assert sum(bool(row[3]) for row in scores) == flagged

    # The queue and the health page, as a browser gets them.
    queue = alice.get(
        f"{stack.url}/projects/{project_id}/review/",
        params={"likely_mislabeled": "1", "order": "label_quality", "per_page": "96"},
        timeout=HTTP_TIMEOUT,
    )
    assert queue.status_code == 200
    assert queue.text.count('class="take-suggestion"') == flagged
    health = alice.get(f"{stack.url}/projects/{project_id}/health/", timeout=HTTP_TIMEOUT)
    assert health.status_code == 200 and f"of {flagged} flagged" in health.text

    # A reviewer takes one suggestion; the cross-validated audit runs on demand on the worker.
    if flagged:
        image_id, suggestion = stack.sql(
            "SELECT id, suggested_label FROM projects_image WHERE likely_mislabeled "
            "ORDER BY label_quality LIMIT 1"
        )[0]
        response = alice.post(
            f"{stack.url}/projects/{project_id}/images/{image_id}/label/",
            json={"label": suggestion},
            timeout=HTTP_TIMEOUT,
        )
        assert response.json()["final_label"] == suggestion
    alice.post(
        f"{stack.url}/projects/{project_id}/audits/", data={"kind": "cross_validated"}, timeout=HTTP_TIMEOUT
    )
    stack.wait_for(
        lambda: stack.sql("SELECT status FROM audit_auditrun WHERE kind = 'cross_validated'") == [("done",)],
        180,
        "the cross-validated audit",
    )

    archive = export_and_download(stack, alice, project_id)
    manifest = list(csv.DictReader(io.TextIOWrapper(archive.open("manifest.csv"), encoding="utf-8")))
    assert len(manifest) == 42
    stored = {
        name: (quality, bool(flag), suggestion)
        for name, quality, flag, suggestion in stack.sql(
            "SELECT original_name, label_quality, likely_mislabeled, suggested_label FROM projects_image"
        )
    }
    for row in manifest:
        quality, flag, suggestion = stored[row["original_name"]]
        assert float(row["label_quality"]) == pytest.approx(quality, abs=1e-4)
        assert (row["likely_mislabeled"] == "yes") == flag
        assert row["suggested_label"] == suggestion
