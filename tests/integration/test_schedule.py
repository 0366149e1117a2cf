"""Scheduled labeling with the real worker and two Celery beat schedulers at once: an image that
arrives with no task still gets labeled, and a new model relabels what an older one labeled,
each image exactly once, leaving reviewed labels alone."""

import pytest

from tests.factories import face_jpeg, make_tiny_model
from tests.integration.stack import HTTP_TIMEOUT
from tests.integration.test_pipeline import create_project, upload

pytestmark = pytest.mark.integration
# What a beat logs when it sends the relabel task, and what the worker logs when one has run.
SENT_RELABEL = r"Sending due task relabel-outdated-images "
RAN_RELABEL = r"Task inference\.tasks\.relabel_outdated_images\[[^\]]+\] succeeded"


def test_the_schedule_labels_waiting_images_and_relabels_after_a_model_change(make_stack, tmp_path):
    stack = make_stack("services", RELABEL_INTERVAL=2)
    stack.create_user("alice", "alice-password")
    stack.start_web()
    stack.start_worker()
    stack.start_beat()
    stack.start_beat("second-beat")
    alice = stack.login("alice", "alice-password")
    project_id = create_project(stack, alice, "Scheduled")
    batch = upload(stack, alice, project_id, {f"face-{i}.jpg": face_jpeg(i) for i in range(12)})["batch"]
    stack.wait_for(lambda: stack.progress(alice, project_id, batch)["status"] == "done", 120, "labeling")

    reviewed_id, old_label = stack.sql("SELECT id, predicted_label FROM projects_image ORDER BY id LIMIT 1")[
        0
    ]
    other = "fear" if old_label != "fear" else "sad"
    response = alice.post(
        f"{stack.url}/projects/{project_id}/images/{reviewed_id}/label/",
        json={"label": other},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200

    # An image that reaches the database without any task being queued for it.
    stack.manage(
        "shell",
        "-c",
        "from projects.models import Image; first = Image.objects.order_by('id').first(); "
        "Image.objects.create(project_id=first.project_id, batch_id=first.batch_id, file=first.file.name, "
        "original_name='inserted.jpg')",
    )
    stack.wait_for(
        lambda: (
            stack.sql("SELECT status FROM projects_image WHERE original_name = 'inserted.jpg'")
            == [("labeled",)]
        ),
        120,
        "the schedule to label the inserted image",
    )

    # A new model becomes active and the project opts in to relabeling.
    new_model = make_tiny_model(tmp_path / "newer.keras", input_size=48, grayscale=True, seed=7)
    stack.manage(
        "register_model", "--name", "newer", "--file", str(new_model), "--input-size", "48",
        "--grayscale", "--preprocessing", "minus_one_one", "--activate",
    )  # fmt: skip
    stack.sql_write("UPDATE projects_project SET relabel_on_new_model = TRUE WHERE id = ?", (project_id,))
    newer_id = stack.sql("SELECT id FROM inference_modelversion WHERE name = 'newer'")[0][0]

    def relabeled() -> bool:
        rows = stack.sql("SELECT model_version_id, status FROM projects_image WHERE id != ?", (reviewed_id,))
        return all(version == newer_id and status == "labeled" for version, status in rows)

    stack.wait_for(relabeled, 120, "relabeling with the new model")

    # A few more ticks of both schedulers must not relabel anything again: wait until each has
    # sent the relabel task twice more and the worker has run at least that many of them.
    sent = {name: stack.log_count(name, SENT_RELABEL) for name in ("beat", "second-beat")}
    ran = stack.log_count("worker", RAN_RELABEL)
    stack.wait_for(
        lambda: (
            all(stack.log_count(name, SENT_RELABEL) >= count + 2 for name, count in sent.items())
            and stack.log_count("worker", RAN_RELABEL) >= ran + 4
        ),
        120,
        "two more relabel runs from each scheduler",
    )
    counts = stack.sql("SELECT id, status, times_labeled FROM projects_image WHERE id != ?", (reviewed_id,))
    assert {(status, times) for _, status, times in counts} == {("labeled", 2)}, counts
    reviewed = stack.sql(
        "SELECT reviewed_label, model_version_id, times_labeled FROM projects_image WHERE id = ?",
        (reviewed_id,),
    )[0]
    assert reviewed[0] == other and reviewed[1] != newer_id and reviewed[2] == 1
