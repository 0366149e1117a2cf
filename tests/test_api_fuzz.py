"""Property-based fuzzing of the whole REST API from its own OpenAPI schema (schemathesis): no
generated request, valid or not, may make the server fail with a 5xx.

Each operation gets a fresh database in which the token's user owns a project with a labeled
image, a batch, a ready export and a second member, and the path parameters point at those
rows, so the generated bodies and query strings reach the code behind the permission checks.
"""

import pytest
import schemathesis
from django.core.files.base import ContentFile
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from accounts.services import api_token_create
from inference.models import ModelVersion
from projects.models import EMOTIONS, Batch, Export, Image, Membership, Project, Role
from tests.conftest import register_tiny_model
from tests.factories import face_jpeg

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture
def owned_project(django_user_model):
    alice = django_user_model.objects.create_user(username="alice", password="alice-password")
    bob = django_user_model.objects.create_user(username="bob", password="bob-password")
    project = Project.objects.create(name="Fuzzed", created_by=alice)
    Membership.objects.create(project=project, user=alice, role=Role.OWNER)
    Membership.objects.create(project=project, user=bob, role=Role.REVIEWER)
    batch = Batch.objects.create(project=project, uploaded_by=alice, status=Batch.Status.DONE, image_count=1)
    image = Image(project=project, batch=batch, original_name="a.jpg", status=Image.Status.LABELED)
    image.file.save("a.jpg", ContentFile(face_jpeg(1)), save=False)
    image.predicted_label, image.confidence = "happy", 0.7
    image.probabilities = dict.fromkeys(EMOTIONS, 0.05) | {"happy": 0.7}
    image.save()
    export = Export.objects.create(project=project, requested_by=alice, status=Export.Status.READY)
    export.file.save("export.zip", ContentFile(b"PK\x05\x06" + b"\0" * 18))
    spare_token, _ = api_token_create(user=alice, name="spare")
    _, key = api_token_create(user=alice, name="fuzz")
    ids = {
        "project_id": project.id,
        "image_id": image.id,
        "batch_id": batch.id,
        "export_id": export.id,
        "user_id": bob.id,
        "token_id": spare_token.id,  # not the fuzzer's own token: revoking that would end the run
    }
    return ids, key


@pytest.fixture
def wsgi_requests_keep_the_test_transaction():
    # Django's WSGI handler closes "old" connections after each request; inside the test's
    # transaction that would break it. Django's own test client unhooks the same signal.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_makes_the_api_fail(
    case, owned_project, wsgi_requests_keep_the_test_transaction, tmp_path
):
    ids, key = owned_project
    if case.operation.path == "/api/v1/predict/" and not ModelVersion.objects.filter(is_active=True).exists():
        register_tiny_model(tmp_path)  # only here: building a Keras model takes a second
    for name in case.path_parameters or {}:
        if name in ids:
            case.path_parameters[name] = ids[name]
    response = case.call(headers={"Authorization": f"Token {key}"})
    case.validate_response(response, checks=[not_a_server_error])
