"""facelabel settings: everything comes from the environment, with embedded defaults that let a
fresh checkout run on SQLite, local files and a broker that needs no server (README lists every
variable)."""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.getenv("FACELABEL_VAR_DIR", BASE_DIR / "var"))


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default).lower()
    if value not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
        raise ImproperlyConfigured(f"{name} must be a boolean, got {value!r}")
    return value in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    value = os.getenv(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def envfloat(name: str, default: float) -> float:
    value = os.getenv(name, str(default))
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def secret_key_from_file(path: Path) -> str:
    """The key kept in `path`, made on first use: random, readable by this user only (0600).
    Written under a temporary name and linked into place, so the web and worker processes that
    start together agree on one key and none reads a half-written file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(50))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            temporary.unlink()
    return path.read_text().strip()


DEBUG = envbool("DEBUG", "false")
# No key in the environment: a random one generated into var/ on first start (never a key that
# is written in the code, which anyone could use to forge sessions). `check --deploy` still
# insists on one from the environment (accounts/checks.py).
SECRET_KEY_IS_GENERATED = not os.getenv("SECRET_KEY")
SECRET_KEY = os.getenv("SECRET_KEY") or secret_key_from_file(VAR_DIR / "secret_key")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = os.getenv("SITE_URL", "http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "accounts",
    "projects",
    "inference",
    "training",
    "activities",
    "webhooks",
    "audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "facelabel.urls"
WSGI_APPLICATION = "facelabel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if os.getenv("DATABASE_URL") is None:
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite will not create the folder of its file
DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=60,
        # A kept connection that the server dropped (a restart, pg_terminate_backend) is noticed
        # and replaced before a request uses it, instead of answering a 500.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; IMMEDIATE transactions take the
    # write lock up front so two writers queue on `timeout` instead of failing with
    # "database is locked" when a read lock would have to be upgraded.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one username, or
# from one address, both /login/ and /admin/login/ refuse that username or address (429), right
# password or not, for LOGIN_LOCKOUT_MINUTES. The address is REMOTE_ADDR (see _client_key in
# activities/views.py for why not X-Forwarded-For).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # failures are kept; a row per successful login would grow forever
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "projects:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
# The activities speak English and Polish; the browser's Accept-Language picks one until the
# visitor chooses with the language switch (a cookie).
LANGUAGES = [("en", "English"), ("pl", "Polski")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(os.getenv("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "media/"  # never served directly: files go through views that check membership

# S3-compatible object storage when a bucket is named; local files otherwise.
AWS_STORAGE_BUCKET_NAME = os.getenv("AWS_STORAGE_BUCKET_NAME", "")
if AWS_STORAGE_BUCKET_NAME:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": os.getenv("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.getenv("AWS_S3_REGION_NAME") or None,
            "access_key": os.getenv("AWS_ACCESS_KEY_ID") or None,
            "secret_key": os.getenv("AWS_SECRET_ACCESS_KEY") or None,
            "location": os.getenv("AWS_LOCATION", ""),
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Uploads. Django itself refuses more than DATA_UPLOAD_MAX_NUMBER_FILES files in one request.
UPLOAD_MAX_FILES = envint("UPLOAD_MAX_FILES", 1000)
UPLOAD_MAX_BYTES = envint("UPLOAD_MAX_BYTES", 1024 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = os.getenv("FILE_UPLOAD_TEMP_DIR") or None
IMAGE_MAX_PIXELS = envint("IMAGE_MAX_PIXELS", 40_000_000)
IMAGE_MAX_BYTES = envint("IMAGE_MAX_BYTES", 30 * 1024 * 1024)
ZIP_MAX_MEMBERS = envint("ZIP_MAX_MEMBERS", 60_000)
ZIP_MAX_TOTAL_BYTES = envint("ZIP_MAX_TOTAL_BYTES", 4 * 1024 * 1024 * 1024)
# Bytes a member may inflate to per compressed byte actually read (images barely compress), and
# seconds one request may spend inflating archive members: a ZIP bomb costs at most these.
ZIP_MAX_MEMBER_RATIO = envint("ZIP_MAX_MEMBER_RATIO", 50)
ZIP_MAX_INFLATE_SECONDS = envfloat("ZIP_MAX_INFLATE_SECONDS", 30)
# A batch keeps this many rejected files (and counts the rest); pages and answers show a page.
UPLOAD_REJECTIONS_KEPT = envint("UPLOAD_REJECTIONS_KEPT", 1000)
UPLOAD_REJECTIONS_PAGE = envint("UPLOAD_REJECTIONS_PAGE", 50)
# An upload beats every third of this; one silent this long died with its request.
UPLOAD_HEARTBEAT_TIMEOUT = envint("UPLOAD_HEARTBEAT_TIMEOUT", 30)
# Stored files without a row, and Django's upload temp files, older than this are swept away.
ORPHAN_FILE_GRACE = envint("ORPHAN_FILE_GRACE", 3600)
ORPHAN_SWEEP_INTERVAL = envint("ORPHAN_SWEEP_INTERVAL", 3600)
THUMBNAIL_SIZE = envint("THUMBNAIL_SIZE", 160)

# Labeling
LABEL_CHUNK_SIZE = envint("LABEL_CHUNK_SIZE", 256)
LABEL_MAX_ATTEMPTS = envint("LABEL_MAX_ATTEMPTS", 3)
# Held claims beat every third of their timeout (facelabel/claims.py), so a claim silent for a
# whole timeout lost its worker; with the sweep below, work resumes within a minute of a fault.
LABEL_CLAIM_TIMEOUT = envint("LABEL_CLAIM_TIMEOUT", 30)
LABEL_TASK_TIME_BUDGET = envint("LABEL_TASK_TIME_BUDGET", 240)
LABEL_TASKS_PER_BATCH = envint("LABEL_TASKS_PER_BATCH", 1)
# Below this confidence the model's label is not used: the image is "unsure" (exported to unsure/
# unless reviewed). 0.36 sends 4.7% of FER2013's validation/ faces there and lifts the active
# model's accuracy on the rest from 0.662 to 0.680; `manage.py measure_unsure` re-measures it.
UNSURE_MIN_CONFIDENCE = envfloat("UNSURE_MIN_CONFIDENCE", 0.36)
EXPORT_CLAIM_TIMEOUT = envint("EXPORT_CLAIM_TIMEOUT", 30)
EXPORT_MAX_ATTEMPTS = envint("EXPORT_MAX_ATTEMPTS", 3)
AUDIT_CLAIM_TIMEOUT = envint("AUDIT_CLAIM_TIMEOUT", 30)
AUDIT_MAX_ATTEMPTS = envint("AUDIT_MAX_ATTEMPTS", 3)
RECOVERY_INTERVAL = envint("RECOVERY_INTERVAL", 10)
RELABEL_INTERVAL = envint("RELABEL_INTERVAL", 300)
MODEL_CACHE_DIR = Path(os.getenv("MODEL_CACHE_DIR", VAR_DIR / "model-cache"))
INFERENCE_THREADS = envint("INFERENCE_THREADS", 2)
# Label with a model version's int8 LiteRT file where it has one (see inference/quantize.py).
INFERENCE_INT8 = envbool("INFERENCE_INT8", "true")
TRAINING_THREADS = envint("TRAINING_THREADS", 2)
TRAINING_HEARTBEAT_TIMEOUT = envint("TRAINING_HEARTBEAT_TIMEOUT", 45)  # trials beat every 15 s
IMAGENET_WEIGHTS_DIR = os.getenv("IMAGENET_WEIGHTS_DIR", "")

# Celery. The default broker keeps messages as files under var/broker, so `make run` needs no
# server; the database stays the source of truth and a periodic sweep re-queues stalled work,
# which covers brokers that lose a message when a worker dies.
CELERY_BROKER_URL = os.getenv("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    # kombu's filesystem transport does not create its folders; the embedded default must just work.
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        # Without this kombu writes its exchange tables to ./control, in whatever folder we run.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "inference.tasks.label_batch": {"queue": "inference"},
    "projects.tasks.export_project_zip": {"queue": "exports"},
    "audit.tasks.audit_project": {"queue": "inference"},
    "training.tasks.run_trial": {"queue": "training"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Each app sweeps its own stalled rows (lost messages, dead workers) on its own entry.
CELERY_BEAT_SCHEDULE = {
    "label-waiting-images": {
        "task": "inference.tasks.recover_stalled_labeling",
        "schedule": float(RECOVERY_INTERVAL),
    },
    "recover-uploads-and-exports": {
        "task": "projects.tasks.recover_stalled_work",
        "schedule": float(RECOVERY_INTERVAL),
    },
    "recover-audits": {
        "task": "audit.tasks.recover_stalled_audits",
        "schedule": float(RECOVERY_INTERVAL),
    },
    "recover-webhook-deliveries": {
        "task": "webhooks.tasks.recover_stalled_deliveries",
        "schedule": float(RECOVERY_INTERVAL),
    },
    "relabel-outdated-images": {
        "task": "inference.tasks.relabel_outdated_images",
        "schedule": float(RELABEL_INTERVAL),
    },
    "fail-lost-trials": {
        "task": "training.tasks.fail_lost_trials",
        "schedule": float(RECOVERY_INTERVAL),
    },
    "sweep-orphan-files": {
        "task": "projects.tasks.sweep_orphan_files",
        "schedule": float(ORPHAN_SWEEP_INTERVAL),
    },
}
# The schedule lives in the database (editable in the admin); the entries above are its defaults.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# REST API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Services refuse with Django's ValidationError or a ServiceError; this answers both.
    "EXCEPTION_HANDLER": "facelabel.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Throttles count REMOTE_ADDR: an X-Forwarded-For header that the client writes itself
    # would give it a fresh budget per request.
    "NUM_PROXIES": 0,
    "DEFAULT_THROTTLE_CLASSES": [
        "facelabel.throttling.RouteUserThrottle",
        "facelabel.throttling.RouteAddressThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        # A 40-Mpx image costs about a second of CPU to predict.
        "predict": os.getenv("API_PREDICT_RATE", "30/min"),
        "schema": os.getenv("API_SCHEMA_RATE", "30/min"),
        "token_failures": os.getenv("API_TOKEN_FAILURE_RATE", "20/hour"),
    },
}
# Route name -> throttle scope of the expensive endpoints (facelabel/throttling.py).
API_THROTTLED_ROUTES = {"api-predict": "predict", "api-schema": "schema"}
# API tokens stop working this many days after they were made; 0 keeps them until revoked.
# Changing a password revokes all of the user's tokens either way.
API_TOKEN_MAX_AGE_DAYS = envint("API_TOKEN_MAX_AGE_DAYS", 0)
SPECTACULAR_SETTINGS = {
    "TITLE": "facelabel API",
    "DESCRIPTION": "Projects, batches, images, reviews, exports and predictions of facelabel.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "EmotionEnum": "projects.models.Emotion",
        "ImageStatusEnum": "projects.models.Image.Status",
        "UnsureReasonEnum": "projects.models.Image.UnsureReason",
        "DuplicateKindEnum": "projects.models.Image.DuplicateKind",
        "UnusableReasonEnum": "projects.models.Image.UnusableReason",
        "ExcludedReasonEnum": "projects.models.Image.ExcludedReason",
        "ExcludedExportEnum": "projects.models.ExcludedExport",
        "BatchStatusEnum": "projects.models.Batch.Status",
        "ExportStatusEnum": "projects.models.Export.Status",
        "RoleEnum": "projects.models.Role",
        "WebhookDeliveryStatusEnum": "webhooks.models.WebhookDelivery.Status",
        "WebhookEventEnum": "webhooks.models.Event",
    },
}

# The cache holds the activities' rate limits. Files under var/ are shared by every web process
# on this machine without a server; CACHE_URL=redis://... shares it across machines.
CACHE_URL = os.getenv("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    )
}

# Counts of a project's images (grid, summary, health page) are cached until the images change;
# this bounds how long one can lag should a writer not say so (projects.events.images_changed).
GRID_COUNT_CACHE_SECONDS = envint("GRID_COUNT_CACHE_SECONDS", 60)

# Activities ("Emotions in Action"): anyone may recognise a photo, so each client gets a budget.
ACTIVITIES_RECOGNISE_PER_MINUTE = envint("ACTIVITIES_RECOGNISE_PER_MINUTE", 20)
ACTIVITIES_PHOTO_MAX_BYTES = envint("ACTIVITIES_PHOTO_MAX_BYTES", 8 * 1024 * 1024)
ACTIVITIES_DANCE_SCORES_KEPT = envint("ACTIVITIES_DANCE_SCORES_KEPT", 10)  # per user, the best ones

# Webhooks
WEBHOOK_ALLOW_PRIVATE_TARGETS = envbool("WEBHOOK_ALLOW_PRIVATE_TARGETS", "false")
WEBHOOK_TIMEOUT = envint("WEBHOOK_TIMEOUT", 10)
WEBHOOK_MAX_ATTEMPTS = envint("WEBHOOK_MAX_ATTEMPTS", 6)

# Production hardening; `manage.py check --deploy` is clean when DEBUG is off and HTTPS is on.
SECURE_HTTPS = envbool("SECURE_HTTPS", "false")
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
SECURE_SSL_REDIRECT = SECURE_HTTPS
SECURE_HSTS_SECONDS = 31536000 if SECURE_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HTTPS
SECURE_HSTS_PRELOAD = SECURE_HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE_HTTPS else None
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp) on every response: scripts only from this site, none
# inline, so an injected <script> or onclick= does nothing. The activities draw the camera and
# score cards into blob: and data: images; styles may be inline (style="--c: ..." attributes).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "media-src": ["'self'", "blob:", "mediastream:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
}
