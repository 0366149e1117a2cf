"""Benchmark of the real path: ZIP ingest into a project -> a real worker process labels it ->
ZIP export, against whatever database, broker and storage the settings point at."""

import random
import subprocess
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import psutil
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditRun
from facelabel.celery import worker_argv
from inference.selectors import active_model_version
from projects import services
from projects.models import EMOTIONS, Batch, Export, Image, Project

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class Command(BaseCommand):
    help = "Measure end-to-end relabeling throughput, the model's raw throughput and worker memory."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="folder with one sub-folder per emotion")
        parser.add_argument("--limit", type=int, default=0, help="use at most N images (0: all)")
        parser.add_argument("--naive-sample", type=int, default=200)
        parser.add_argument("--keep", action="store_true", help="keep the benchmark project")

    def handle(self, *args, **options):
        paths = dataset_paths(Path(options["data"]), options["limit"])
        version = active_model_version()
        if version is None:
            raise CommandError("No active model version: run `make run` once or register_model --activate.")
        user, _ = get_user_model().objects.get_or_create(username="bench")
        project = Project.objects.create(name=f"bench {time.strftime('%Y-%m-%d %H:%M:%S')}", created_by=user)
        worker = subprocess.Popen(
            worker_argv(name="bench"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        meter = RssMeter(worker.pid)
        try:
            figures = self._run(paths, project, user, meter, options["naive_sample"], version)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
            meter.stop()
            if not options["keep"]:
                services.project_delete(project=project)
        for name, value in figures.items():
            self.stdout.write(f"{name}: {value}")

    def _run(self, paths, project, user, meter, naive_sample, version) -> dict:
        with tempfile.NamedTemporaryFile(suffix=".zip") as archive:
            write_zip(paths, archive)
            archive.seek(0)
            started = time.monotonic()
            batch = services.batch_create(project=project, user=user, files=[archive])
        wait_until(lambda: Batch.objects.get(id=batch.id).status == Batch.Status.DONE, "labeling")
        labeled_seconds = time.monotonic() - started
        count = Image.objects.filter(batch=batch, status=Image.Status.LABELED).count()

        rss_before_export = meter.current_mb()
        meter.reset_peak()
        export_started = time.monotonic()
        export = services.export_start(project=project, user=user)
        wait_until(lambda: Export.objects.get(id=export.id).status == Export.Status.READY, "export")
        export_seconds = time.monotonic() - export_started
        export_peak = meter.peak_mb

        # Measured after the worker went idle (labeling queues an audit, which it runs after the
        # export on a fast broker), so the two do not share the 2 cores.
        busy = [AuditRun.Status.PENDING, AuditRun.Status.RUNNING]
        wait_until(lambda: not AuditRun.objects.filter(project=project, status__in=busy).exists(), "audit")
        model_rate, naive_rate = model_throughput(version, paths, naive_sample)
        end_to_end = count / labeled_seconds
        return {
            "images": count,
            "end_to_end_images_per_s": round(end_to_end, 1),
            "model_only_images_per_s": round(model_rate, 1),
            "ratio": round(end_to_end / model_rate, 3),
            "naive_images_per_s": round(naive_rate, 1),
            "speedup_vs_naive": round(end_to_end / naive_rate, 1),
            "export_images_per_s": round(count / export_seconds, 1),
            "worker_peak_rss_mb": round(meter.overall_peak_mb, 1),
            "export_rss_growth_mb": round(export_peak - rss_before_export, 1),
        }


def dataset_paths(root: Path, limit: int) -> list[tuple[str, Path]]:
    if not root.is_dir():
        raise CommandError(f"--data {root} is not a folder (expected one sub-folder per emotion).")
    paths = [
        (emotion, path)
        for emotion in EMOTIONS
        if (root / emotion).is_dir()
        for path in sorted((root / emotion).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not paths:
        raise CommandError(f"No images under {root}/<emotion>/.")
    random.Random(0).shuffle(paths)  # a --limit sample mixes every class
    return paths[:limit] if limit else paths


def write_zip(paths: list[tuple[str, Path]], archive) -> None:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for emotion, path in paths:
            zf.write(path, f"{emotion}/{path.name}")


def wait_until(condition, what: str, timeout: float = 7200) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise CommandError(f"Timed out waiting for {what}; is another worker competing for the queue?")
        time.sleep(0.2)


def model_throughput(version, paths, naive_sample: int) -> tuple[float, float]:
    """The worker's own engine on preprocessed inputs (batched, as the worker calls it), and the
    original scripts' way: one `model.predict` call per image."""
    from django.conf import settings
    from PIL import Image as PILImage

    # Imported here so that `manage.py help` does not load TensorFlow and OpenCV.
    from inference.engine import load_model_version
    from inference.faces import find_face

    model = load_model_version(version)
    sample = [path for _, path in paths[:2048]]
    faces = [find_face(PILImage.open(path).convert("L")) for path in sample]
    inputs = model.preprocess(faces)
    chunk = settings.LABEL_CHUNK_SIZE
    model.predict(inputs[:chunk])  # warm-up
    started = time.monotonic()
    for start in range(0, len(inputs), chunk):
        model.predict(inputs[start : start + chunk])
    model_rate = len(inputs) / (time.monotonic() - started)
    naive = inputs[:naive_sample]
    model.predict_naive_one(naive[0])
    started = time.monotonic()
    for row in naive:
        model.predict_naive_one(row)
    return model_rate, len(naive) / (time.monotonic() - started)


class RssMeter:
    """Samples the resident memory of a process and its children every 50 ms."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.peak_mb = self.overall_peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def current_mb(self) -> float:
        try:
            processes = [self.process, *self.process.children(recursive=True)]
            return sum(p.memory_info().rss for p in processes) / 2**20
        except psutil.Error:
            return 0.0

    def reset_peak(self) -> None:
        self.peak_mb = 0.0

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            now = self.current_mb()
            self.peak_mb = max(self.peak_mb, now)
            self.overall_peak_mb = max(self.overall_peak_mb, now)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
