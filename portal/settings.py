"""Tweezer settings: one file, read from the environment, working defaults.

With nothing set, Tweezer runs on SQLite and kombu's file-system broker under
`var/`. Production sets DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis).
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from portal.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TWEEZER_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", default=True)
SECRET_KEY = env_str("SECRET_KEY", "dev-only-secret-key-change-me-in-production-0123456789abcdef")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The absolute base of links handed to SDK clients (results files); empty = taken from the request.
SITE_URL = env_str("SITE_URL", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "django_prometheus",
    "health_check",
    "portal",
    "backends",
    "batches",
    "jobs",
    "ops",
]

MIDDLEWARE = [
    "ops.middleware.OpsEndpointsMiddleware",  # /healthz, /readyz, /metrics: before host checks
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "portal.middleware.StaticFilesMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    "portal.middleware.GzipRequestMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "portal.context.current_project",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
# A persistent connection (DB_CONN_MAX_AGE > 0) is checked before each request or task reuses it,
# so a database restart costs a reconnection, not a failed request or job.
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0), conn_health_checks=True)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock when a transaction starts, so two writers wait for
    # each other (busy timeout) instead of failing with "database is locked" mid-way.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
    }
    # A file, not memory: worker processes started by the tests open the same test database.
    DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_SQLITE_NAME", str(VAR_DIR / "test.sqlite3"))}
else:
    DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "") or None}
    # Under ASGI every request's sync code runs in a thread of its own, where a persistent
    # connection would last one request (Django advises a pool there): the ASGI web process
    # (portal/asgi.py sets DB_POOL) borrows its connections from a psycopg pool instead, each
    # checked as it is borrowed (CONN_HEALTH_CHECKS). Workers are sync processes and keep DB_CONN_MAX_AGE.
    if env_bool("DB_POOL", False) and env_int("DB_POOL_MAX_SIZE", 10) > 0:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections
        DATABASES["default"]["OPTIONS"] = {
            "pool": {
                "min_size": 1,
                "max_size": env_int("DB_POOL_MAX_SIZE", 10),
                "timeout": env_int("DB_POOL_TIMEOUT", 10),
            }  # checked as borrowed: CONN_HEALTH_CHECKS
        }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Result files (jobs.storage): "database" (default: compressed rows, readable from every
# machine that reaches the database), "s3" (django-storages, any S3-compatible object store;
# needs `pip install boto3`) or "filesystem" (RESULTS_DIR: one machine, or a shared volume).
RESULTS_STORAGE = env_str("RESULTS_STORAGE", "database")
# Where result files were written before they moved to the results storage (jobs migration 0010).
LEGACY_RESULTS_DIR = Path(env_str("LEGACY_RESULTS_DIR", str(VAR_DIR / "results")))
_RESULTS_BACKENDS: dict[str, dict[str, object]] = {
    "database": {"BACKEND": "jobs.storage.DatabaseStorage"},
    "filesystem": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": env_str("RESULTS_DIR", str(VAR_DIR / "results"))},
    },
    # Only a string until a result is read or written: boto3 is imported then, not here.
    # jobs.storage.s3_storage makes django-storages' S3Storage, with bounded timeouts.
    "s3": {
        "BACKEND": "jobs.storage.s3_storage",
        "OPTIONS": {
            "timeout": env_int("RESULTS_S3_TIMEOUT", 10),
            "attempts": env_int("RESULTS_S3_ATTEMPTS", 3),
            "bucket_name": env_str("RESULTS_S3_BUCKET", ""),
            "endpoint_url": env_str("RESULTS_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("RESULTS_S3_REGION", "") or None,
            "access_key": env_str("RESULTS_S3_ACCESS_KEY_ID", "") or None,
            "secret_key": env_str("RESULTS_S3_SECRET_ACCESS_KEY", "") or None,
            "location": env_str("RESULTS_S3_PREFIX", "tweezer"),
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": True,
        },
    },
}
if RESULTS_STORAGE not in _RESULTS_BACKENDS:
    raise ValueError(f"RESULTS_STORAGE must be database, s3 or filesystem: {RESULTS_STORAGE!r}")
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(VAR_DIR / "files")},
    },
    "results": _RESULTS_BACKENDS[RESULTS_STORAGE],
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "batches:list"
LOGOUT_REDIRECT_URL = "login"

# Request bodies: the SDK gzips batch bodies; the decompressed size is capped too.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 8 * 1024 * 1024)
MAX_SEQUENCE_BYTES = env_int("MAX_SEQUENCE_BYTES", 1024 * 1024)
MAX_JOBS_PER_BATCH = env_int("MAX_JOBS_PER_BATCH", 10_000)
MAX_RUNS_PER_JOB = env_int("MAX_RUNS_PER_JOB", 100_000)
MAX_JSON_DEPTH = env_int("MAX_JSON_DEPTH", 64)

# Scheduling.
OPEN_BATCH_TIMEOUT = env_int("OPEN_BATCH_TIMEOUT", 300)
# An open batch holds its slot while idle: bound how many slots of a device one project's open
# batches hold, and how long one may stay open (then it is closed: its jobs finish, it ends).
OPEN_BATCH_SLOTS_PER_PROJECT = env_int("OPEN_BATCH_SLOTS_PER_PROJECT", 1)
OPEN_BATCH_MAX_SECONDS = env_int("OPEN_BATCH_MAX_SECONDS", 3600)
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 60)
# PostgreSQL's synchronous_commit for the workers' connections (claims, job ends, the tick).
# "off" saves a WAL flush per claim and per job end; a PostgreSQL crash may then
# forget the last fraction of a second of job transitions, which re-runs those jobs (never a
# double charge: charges are committed by the web process, durably, and a refund commits
# with its job's status). "on" makes every transition durable.
WORKER_SYNCHRONOUS_COMMIT = env_str("WORKER_SYNCHRONOUS_COMMIT", "off")
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3)
JOB_REDISPATCH_SECONDS = env_int("JOB_REDISPATCH_SECONDS", 30)
# Each further re-send of a still-unclaimed job waits twice as long, up to this: a job whose
# first message is only queued behind busy workers is not sent again and again.
JOB_REDISPATCH_MAX_SECONDS = env_int("JOB_REDISPATCH_MAX_SECONDS", 600)
DEVICE_DOWN_FAIL_AFTER = env_int("DEVICE_DOWN_FAIL_AFTER", 3600)
TICK_SECONDS = env_int("TICK_SECONDS", 5)
RESULTS_LINK_MAX_AGE = env_int("RESULTS_LINK_MAX_AGE", 3600)

# Webhooks: private and loopback targets are refused unless this is set (tests only).
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", default=False)
WEBHOOK_SECRET = env_str("WEBHOOK_SECRET", SECRET_KEY)
WEBHOOK_TIMEOUT = env_int("WEBHOOK_TIMEOUT", 5)

# The QPU endpoint (FRESNEL); the simulator in backends/qpu_simulator.py speaks its protocol.
QPU_URL = env_str("QPU_URL", "")
QPU_TOKEN = env_str("QPU_TOKEN", "")
QPU_POLL_SECONDS = float(env_str("QPU_POLL_SECONDS", "0.5"))
QPU_CONNECT_TIMEOUT = float(env_str("QPU_CONNECT_TIMEOUT", "3"))
QPU_READ_TIMEOUT = float(env_str("QPU_READ_TIMEOUT", "10"))
QPU_RETRIES = env_int("QPU_RETRIES", 4)  # retries of one request on 5xx / connection errors
QPU_BACKOFF_SECONDS = float(env_str("QPU_BACKOFF_SECONDS", "0.5"))  # doubles at each retry
QPU_MAX_WAIT_SECONDS = float(env_str("QPU_MAX_WAIT_SECONDS", "3600"))  # then ERROR + refund

# Celery: one queue per device (`device.<NAME>`), late acks, one message at a time.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")

# Held status requests and the portal's event stream (issue 19, README "Instant results"): a
# status request on a batch or job that is not over waits up to STATUS_HOLD_SECONDS (0: never;
# keep it under the SDK's 30 s HTTP timeout) for one of its jobs to end. Wake-ups travel by
# Redis pub/sub (EVENTS_URL, the broker's by default when it is Redis), else by a short poll.
STATUS_HOLD_SECONDS = float(env_str("STATUS_HOLD_SECONDS", "20"))
EVENTS_URL = env_str("EVENTS_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "")
EVENTS_CHANNEL = env_str("EVENTS_CHANNEL", "tweezer:batch:")
EVENTS_POLL_SECONDS = float(env_str("EVENTS_POLL_SECONDS", "0.1"))
HOLD_MAX_PER_PROCESS = env_int("HOLD_MAX_PER_PROCESS", 1000)
HOLD_MAX_PER_TOKEN = env_int("HOLD_MAX_PER_TOKEN", 100)
HOLD_RETRY_AFTER_SECONDS = env_int("HOLD_RETRY_AFTER_SECONDS", 2)
SSE_STREAM_SECONDS = env_int("SSE_STREAM_SECONDS", 300)
BROKER_DIR = Path(env_str("CELERY_BROKER_DIR", str(VAR_DIR / "broker")))
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for folder in ("queue", "processed", "control"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Exchange tables (broadcasts, pidbox): kept under var/, not in the working directory.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # How often a worker looks for new messages (kombu's default, 1 s, is a second's wait
        # before every job dispatched on the embedded default; a look is one listdir per queue).
        "polling_interval": float(env_str("CELERY_BROKER_POLL_SECONDS", "0.1")),
    }
else:
    # Redelivery of unacked messages after a crash; the DB lease is what really protects jobs.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}

# Security headers; production sets DEBUG=0 and HTTPS=1.
HTTPS = env_bool("HTTPS", default=False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS: list[str] = []

# Login throttling (django-axes): AXES_FAILURE_LIMIT failures lock a user name + address pair for
# 15 minutes, and as many from one address lock that address, whatever names it tries.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = 0.25
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = env_bool("AXES_ENABLED", default=True)
BATCH_JOBS_INLINE_MAX = env_int("BATCH_JOBS_INLINE_MAX", 1000)
EMULATOR_SLOTS = env_int("EMULATOR_SLOTS", 2)

# Operations (ops/): GET /metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`
# (404 while it is empty); the database part of a scrape is cached this long per process.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_CACHE_SECONDS = float(env_str("METRICS_CACHE_SECONDS", "5"))
# Every worker node writes its heartbeat row this often (tweezer_worker_heartbeat_age_seconds).
WORKER_HEARTBEAT_SECONDS = float(env_str("WORKER_HEARTBEAT_SECONDS", "10"))
