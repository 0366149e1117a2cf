"""Latency of POST /api/v1/predict/ through the whole Django stack (middleware, token auth,
upload checks, face finding, the model), warm, in this process."""

import io
import random
import statistics
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError
from django.test import Client
from PIL import Image as PILImage

from accounts.models import ApiToken
from accounts.services import api_token_create
from inference.selectors import active_model_version


class Command(BaseCommand):
    help = "Print p50/p95 latency of single-image prediction requests."

    def add_arguments(self, parser):
        parser.add_argument("--data", type=Path, help="folder of images (default: generated faces)")
        parser.add_argument("--requests", type=int, default=300)
        parser.add_argument("--warmup", type=int, default=20)
        parser.add_argument(
            "--photo-size", type=int, default=0, help="paste each image, enlarged, into a photo this wide"
        )

    def handle(self, *args, data: Path | None, requests: int, warmup: int, photo_size: int, **options):
        if active_model_version() is None:
            raise CommandError("No active model version: run `make run` once or register_model --activate.")
        images = sample_images(data, requests + warmup)
        if photo_size:
            images = [(name, as_photo(content, photo_size)) for name, content in images]
        user, _ = get_user_model().objects.get_or_create(username="bench")
        token, key = api_token_create(user=user, name="bench_predict")
        client = Client(HTTP_AUTHORIZATION=f"Token {key}", HTTP_HOST=allowed_host())
        try:
            timings = [post(client, name, content) for name, content in images]
        finally:
            ApiToken.objects.filter(id=token.id).delete()
        measured = sorted(timings[warmup:])
        self.stdout.write(f"requests: {len(measured)}")
        self.stdout.write(f"p50_ms: {percentile(measured, 50):.1f}")
        self.stdout.write(f"p95_ms: {percentile(measured, 95):.1f}")
        self.stdout.write(f"mean_ms: {statistics.fmean(measured):.1f}")


def post(client: Client, name: str, content: bytes) -> float:
    started = time.perf_counter()
    response = client.post("/api/v1/predict/", {"image": SimpleUploadedFile(name, content)})
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise CommandError(f"{name}: HTTP {response.status_code} {response.content[:200]!r}")
    return elapsed


def sample_images(data: Path | None, count: int) -> list[tuple[str, bytes]]:
    if data is None:
        return [(f"noise-{i}.jpg", noise_jpeg(i)) for i in range(count)]
    if not data.is_dir():
        raise CommandError(f"--data {data} is not a folder.")
    paths = sorted(p for p in data.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not paths:
        raise CommandError(f"No images under {data}.")
    chosen = random.Random(0).choices(paths, k=count)
    return [(path.name, path.read_bytes()) for path in chosen]


def noise_jpeg(seed: int, size: int = 480) -> bytes:
    """A photo-sized image with no face in it: the slowest path (detection runs, finds nothing)."""
    random.seed(seed)
    buffer = io.BytesIO()
    PILImage.effect_noise((size, size), 30 + seed % 20).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def as_photo(content: bytes, width: int) -> bytes:
    """A camera-sized frame (4:3) with the face enlarged to half its height, off-centre, so that
    face detection has real work to do."""
    face = PILImage.open(io.BytesIO(content)).convert("RGB")
    height = width * 3 // 4
    face = face.resize((height // 2, height // 2))
    photo = PILImage.new("RGB", (width, height), (90, 100, 110))
    photo.paste(face, (width // 5, height // 4))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def percentile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def allowed_host() -> str:
    hosts = [host for host in settings.ALLOWED_HOSTS if host and "*" not in host and not host.startswith(".")]
    return hosts[0] if hosts else "localhost"
