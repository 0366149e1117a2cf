"""`manage.py bench_review`: how fast the pages a team lives in answer on a 100,000-image project.

It builds the project in a throwaway database beside the configured one (the test database's
name, a file under var/ on the embedded defaults) with bulk inserts, times each page with the
test client as the project's owner and prints `name: p95_ms` lines. The database is dropped
afterwards, so the development data is never touched.
"""

import random
import statistics
import time
import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand
from django.db import connection
from django.http import QueryDict
from django.test import Client
from django.test.utils import setup_test_environment, teardown_test_environment
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditRun
from projects import selectors
from projects.models import EMOTIONS, Batch, Export, Image, LabelChange, Membership, Project, Role

PER_PAGE = 48
BENCH_PROJECT = "bench review"
BENCH_FILE = "bench/face.jpg"
# Every filter the grid's form offers, one typical value each ("" is the unfiltered grid).
FILTERS = {
    "all": "",
    "predicted": "predicted=happy",
    "original": "original=sad",
    "final": "final=angry",
    "final_unsure": "final=unsure",
    "disagrees": "disagrees=1",
    "flagged": "likely_mislabeled=1",
    "reviewed": "reviewed=yes",
    "not_reviewed": "reviewed=no",
    "unsure": "unsure=yes",
    "status": "status=labeled",
    "confidence": "min_confidence=0.3&max_confidence=0.7",
    "batch": "batch={batch}",
}
ORDERS = ("id", "confidence", "-confidence", "label_quality", "-label_quality")
# A JPEG of one grey pixel: every row points at it, the pages never open it.
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c19"
    "12130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b08"
    "0001000101011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b51000"
    "02010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
    "2433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768"
    "696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
    "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00fb"
    "d3ffd9"
)


class Command(BaseCommand):
    help = "Time the review grid, summary, health page, project list and API lists at 100,000 images."

    def add_arguments(self, parser):
        parser.add_argument("--images", type=int, default=100_000)
        parser.add_argument("--repeat", type=int, default=5, help="requests per page; p95 of them")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--keepdb", action="store_true", help="keep the database and reuse its project next time"
        )
        parser.add_argument(
            "--only", default="", help="time only pages whose name contains one of these (comma-separated)"
        )

    def handle(self, *args, **options):
        # The test database machinery makes, migrates and drops a database of its own.
        test_settings = settings.DATABASES["default"].setdefault("TEST", {})
        if connection.vendor == "sqlite":
            kept = "_kept" if options["keepdb"] else ""
            test_settings["NAME"] = str(settings.VAR_DIR / f"bench_review{kept}.sqlite3")
        elif options["keepdb"]:
            test_settings["NAME"] = f"{connection.settings_dict['NAME']}_bench_review"
        setup_test_environment()
        keep = options["keepdb"]
        old_name = connection.creation.create_test_db(
            verbosity=0, autoclobber=True, serialize=False, keepdb=keep
        )
        try:
            project = Project.objects.filter(name=BENCH_PROJECT).first() if keep else None
            if project is None:
                started = time.monotonic()
                project = build_project(options["images"], random.Random(options["seed"]))
                self.stdout.write(f"build_s: {time.monotonic() - started:.1f}")
            for name, p95 in time_pages(project, options["repeat"], options["only"]):
                self.stdout.write(f"{name}: {p95:.1f}")
                self.stdout.flush()
        finally:
            if not keep:
                # The name the storage chose: it adds a suffix when the name is taken.
                for name in Image.objects.order_by().values_list("file", flat=True).distinct():
                    default_storage.delete(name)
                connection.creation.destroy_test_db(old_name, verbosity=0)
            teardown_test_environment()


def build_project(count: int, rng: random.Random) -> Project:
    owner = get_user_model().objects.create_user(username="bench-owner", password=uuid.uuid4().hex)
    reviewer = get_user_model().objects.create_user(username="bench-reviewer", password=uuid.uuid4().hex)
    # A team works among other projects: the project list counts each one's images.
    for n in range(20):
        other = Project.objects.create(name=f"other {n}", created_by=owner)
        Membership.objects.create(project=other, user=owner, role=Role.OWNER)
    project = Project.objects.create(name=BENCH_PROJECT, created_by=owner)
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
    batches = [
        Batch.objects.create(project=project, uploaded_by=owner, status=Batch.Status.DONE)
        for _ in range(max(1, count // 5000))
    ]
    file = default_storage.save(BENCH_FILE, ContentFile(TINY_JPEG))
    now = timezone.now()
    Image.objects.bulk_create(
        (_image(i, project, batches, file, owner, now, rng) for i in range(count)), batch_size=2000
    )
    for batch in batches:
        Batch.objects.filter(id=batch.id).update(image_count=batch.images.count())
    reviewed = Image.objects.filter(project=project).exclude(reviewed_label="").values_list("id", flat=True)
    LabelChange.objects.bulk_create(
        LabelChange(project=project, image_id=i, user=owner, to_label=rng.choice(EMOTIONS), how="single")
        for i in list(reviewed[:5000])
    )
    AuditRun.objects.create(
        project=project, status=AuditRun.Status.DONE, image_count=count, summary=_audit_summary(count)
    )
    ready = Export.Status.READY
    Export.objects.bulk_create(
        Export(project=project, requested_by=owner, status=ready, image_count=count) for _ in range(5)
    )
    return project


def _image(i, project, batches, file, owner, now, rng) -> Image:
    # Probabilities peaked on one emotion by a random margin, so confidence spans 0.2-1.0.
    weights = [rng.random() for _ in EMOTIONS]
    top = rng.randrange(len(EMOTIONS))
    weights[top] += rng.random() * 6
    total = sum(weights)
    probabilities = {e: round(w / total, 4) for e, w in zip(EMOTIONS, weights, strict=True)}
    predicted = EMOTIONS[top]
    confidence = probabilities[predicted]
    # Original labels agree with the model about 70 % of the time, as on FER2013.
    original = predicted if rng.random() < 0.7 else rng.choice(EMOTIONS)
    audited = rng.random() < 0.9
    quality = round(rng.random() ** 2 if original != predicted else 0.5 + rng.random() / 2, 4)
    flagged = audited and quality < 0.15
    reviewed = rng.random() < 0.03
    return Image(
        project=project,
        batch=batches[i % len(batches)],
        file=file,
        thumbnail=file,
        original_name=f"face-{i:06d}.jpg",
        original_label=original,
        width=48,
        height=48,
        status=Image.Status.FAILED if rng.random() < 0.002 else Image.Status.LABELED,
        predicted_label=predicted,
        confidence=confidence,
        probabilities=probabilities,
        face_path=Image.FacePath.DETECTED,
        unsure_reason=Image.UnsureReason.LOW_CONFIDENCE if confidence < 0.25 else "",
        labeled_at=now,
        times_labeled=1,
        reviewed_label=rng.choice(EMOTIONS) if reviewed else "",
        reviewed_by=owner if reviewed else None,
        reviewed_at=now if reviewed else None,
        label_quality=quality if audited else None,
        likely_mislabeled=flagged,
        suggested_label=predicted if flagged else "",
        suggestion_confident=flagged and confidence > 0.6,
    )


def _audit_summary(count: int) -> dict:
    share = count // len(EMOTIONS)
    return {
        "label_counts": dict.fromkeys(EMOTIONS, share),
        "thresholds": dict.fromkeys(EMOTIONS, 0.4),
        "noise_rates": dict.fromkeys(EMOTIONS, 0.1),
        "calibrated_joint": [[share if r == c else share // 20 for c in range(7)] for r in range(7)],
    }


def time_pages(project: Project, repeat: int, only: str = ""):
    """(name, p95 in ms) of each page, as it is measured."""
    client = Client()
    client.force_login(project.created_by)
    batch = project.batches.order_by("id").first().id
    api_last = _last_page(project, "", 50)
    api_images = reverse("api-images", args=[project.id])
    review = reverse("projects:review", args=[project.id])
    urls = {}
    for name, query in FILTERS.items():
        for order in ORDERS:
            params = "&".join(p for p in (query.format(batch=batch), f"order={order}") if p)
            last = _last_page(project, params)
            # Filtered sets are smaller: their middle and last pages are what a reviewer reaches.
            pages = {"first": 1, "p450": 450, "p900": 900} if name == "all" else {"first": 1}
            pages |= {"middle": max(1, last // 2), "last": last}
            for page_name, page in pages.items():
                url = f"{review}?{params}&per_page={PER_PAGE}&page={page}"
                urls[f"review_{name}_{order}_{page_name}"] = url
    urls |= {
        "summary": reverse("projects:detail", args=[project.id]),
        "health": reverse("audit:health", args=[project.id]),
        "project_list": reverse("projects:list"),
        "api_projects": reverse("api-projects"),
        "api_images": api_images,
        "api_images_p900": f"{api_images}?page={min(900, api_last)}&order=confidence",
        "api_batches": reverse("api-batches", args=[project.id]),
        "api_exports": reverse("api-exports", args=[project.id]),
        "api_audits": reverse("api-audits", args=[project.id]),
        "api_health": reverse("api-health", args=[project.id]),
    }
    for name, url in urls.items():
        if not only or any(part in name for part in only.split(",")):
            yield name, _p95(client, url, repeat)


def _last_page(project: Project, params: str, per_page: int = PER_PAGE) -> int:
    filters = selectors.ImageFilters.from_query(QueryDict(params))
    return max(1, -(-selectors.images_filtered(project, filters).count() // per_page))


def _p95(client: Client, url: str, repeat: int) -> float:
    response = client.get(url)  # warm: the first request compiles templates and fills caches
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.quantiles(times, n=20, method="inclusive")[-1] if len(times) > 1 else times[0]
