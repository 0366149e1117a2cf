"""The same product on S3-compatible object storage (django-storages) with no code change: a
real S3 API server (moto's, on loopback) holds the images, the model file and the exports."""

import io
import zipfile

import boto3
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from projects import services
from projects.models import Export, Image
from tests.conftest import client_for, zip_bytes
from tests.factories import face_jpeg
from tests.integration.stack import free_port

BUCKET = "facelabel-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3_storage(settings, s3_endpoint):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_endpoint,
                "access_key": "test",
                "secret_key": "test",
                "region_name": "us-east-1",
                "location": "run",
                "file_overwrite": False,
            },
        },
    }
    return boto3.resource(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ).Bucket(BUCKET)


def test_upload_label_and_export_through_object_storage(
    client, s3_storage, project, users, django_capture_on_commit_callbacks
):
    from tests.conftest import register_tiny_model

    register_tiny_model()
    assert type(default_storage._wrapped).__name__ == "S3Storage"
    archive = zip_bytes({f"happy/f{i}.jpg": face_jpeg(i) for i in range(5)})
    with django_capture_on_commit_callbacks(execute=True):
        batch = services.batch_create(
            project=project, user=users["bob"], files=[SimpleUploadedFile("set.zip", archive)]
        )
    with django_capture_on_commit_callbacks(execute=True):
        export = services.export_start(project=project, user=users["bob"])

    keys = {obj.key for obj in s3_storage.objects.filter(Prefix="run/")}
    images = list(Image.objects.filter(batch=batch))
    assert {image.status for image in images} == {Image.Status.LABELED}
    assert all(f"run/{image.file.name}" in keys for image in images)
    export.refresh_from_db()
    assert export.status == Export.Status.READY and f"run/{export.file.name}" in keys

    bob = client_for(client, users["bob"])
    thumb = bob.get(reverse("projects:image_file", args=[project.id, images[0].id, "thumb"]))
    assert b"".join(thumb.streaming_content) == face_jpeg(0)
    download = bob.get(reverse("projects:export_download", args=[project.id, export.id]))
    names = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).namelist()
    assert len(names) == 6
