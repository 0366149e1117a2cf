import io
import uuid
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile

from facelabel.celery import app as celery_app
from inference.models import ModelVersion
from projects.models import EMOTIONS, Membership, Project, Role


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MODEL_CACHE_DIR = tmp_path / "model-cache"


@pytest.fixture(autouse=True)
def _private_cache(settings):
    # Rate limits and throttles count in the cache: each test starts with none spent, and none
    # touches the development server's cache under var/.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    # Every test has its own database, so two tests can give different model files the same
    # (pk, file name) key in the per-process cache of loaded models.
    from inference import engine

    engine._loaded.clear()
    yield
    engine._loaded.clear()


@pytest.fixture(autouse=True)
def _eager_celery():
    # Unit tests run tasks inline; the real worker processes are exercised in tests/integration.
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def users(db):
    make = get_user_model().objects.create_user
    return {name: make(username=name, password=f"{name}-password") for name in ("alice", "bob", "charlie")}


@pytest.fixture
def project(users):
    """Alice owns it, Bob reviews, Charlie only views. A fourth user, dave, is in another team."""
    project = Project.objects.create(name="Alice's faces", created_by=users["alice"])
    Membership.objects.create(project=project, user=users["alice"], role=Role.OWNER)
    Membership.objects.create(project=project, user=users["bob"], role=Role.REVIEWER)
    Membership.objects.create(project=project, user=users["charlie"], role=Role.VIEWER)
    return project


@pytest.fixture
def outsider(db):
    dave = get_user_model().objects.create_user(username="dave", password="dave-password")
    other = Project.objects.create(name="Dave's team", created_by=dave)
    Membership.objects.create(project=other, user=dave, role=Role.OWNER)
    return dave


def client_for(client, user):
    client.force_login(user)
    return client


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def register_tiny_model(tmp_dir=None) -> ModelVersion:
    """A real Keras model, stored through the default storage like an uploaded model file."""
    import tempfile
    from pathlib import Path

    from tests.factories import make_tiny_model

    path = make_tiny_model(Path(tmp_dir or tempfile.mkdtemp()) / "tiny.keras", input_size=48, grayscale=True)
    version = ModelVersion(
        name="tiny", input_size=48, grayscale=True, class_order=list(EMOTIONS), is_active=True
    )
    version.file.save("tiny.keras", ContentFile(path.read_bytes()), save=False)
    version.save()
    return version


@pytest.fixture
def active_model(db, tmp_path):
    return register_tiny_model(tmp_path)
