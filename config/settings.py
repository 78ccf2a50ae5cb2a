"""One settings module; every knob comes from the environment (django-environ).

The embedded default (no variable set) is SQLite, a local-memory cache and eager
Celery, so `make run` needs no service. Production sets DATABASE_URL, REDIS_URL,
SECRET_KEY, ALLOWED_HOSTS and keeps DEBUG off.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from sync.api.openapi import SCHEMA_SETTINGS

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A `.env` file is optional; real deployments use the process environment.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _secret(name: str, default: str | None = None) -> str | None:
    """Read NAME, or the contents of the file named by NAME_FILE (for mounted secrets)."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        return Path(path).read_text().strip()
    return env.str(name, default=default)


DEBUG = env.bool("DEBUG", default=False)
# The default only suits `make run` and tests; `check --deploy` flags it (django-insecure-).
SECRET_KEY = _secret(
    "SECRET_KEY", default="django-insecure-dev-only-0d9f8e7c6b5a4f3e2d1c0b9a8f7e6d5c"
)
# Earlier keys, still accepted when checking signatures (pull cursors, sessions)
# but never used to sign: rotating SECRET_KEY with the old one here keeps every
# device's cursor valid (docs/security.md, "Rotating secrets"). Comma-separated.
SECRET_KEY_FALLBACKS = [
    key.strip()
    for key in (_secret("SECRET_KEY_FALLBACKS", default="") or "").split(",")
    if key.strip()
]
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "simple_history",
    "axes",
    "django_prometheus",
    "sync",
    "devices",
    "fieldwork",
]

MIDDLEWARE = [
    # Outermost: one log line per request with its final status and whole duration.
    "syncbase.request_log.RequestLogMiddleware",
    # Frees each response once it is back from the view (DRF's cycles).
    "syncbase.middleware.ReleaseResponseMiddleware",
    # Outside everything that writes a body: compresses what the client gets.
    "syncbase.compression.ResponseCompressionMiddleware",
    # django-prometheus: request counts and latencies (its "after" half is last).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Before Django's own, so that even SecurityMiddleware's errors (a bad Host
    # header) reach API clients as JSON.
    "syncbase.middleware.APIErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads a request body.
    "syncbase.compression.RequestDecompressionMiddleware",
    # WhiteNoise, made async-capable: under ASGI a live pull must not hold a thread here.
    "syncbase.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Turns a locked-out login into its 429 response.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses logins of an account locked out after repeated failures.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The project's own: its admin index shows the open conflicts.
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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets pulls read while a push writes; the busy timeout waits for the
    # single writer instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that does not answer must fail a request (and /readyz) in
    # seconds, not after the operating system's TCP timeout.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    )
    # Parameters bound by the server, and statements a connection runs often
    # prepared once (psycopg: after DATABASE_PREPARE_THRESHOLD runs): no
    # quoting of every value in Python, no planning of the same pull
    # statements on every request. A pull page of 100 took 4.4 ms in process
    # instead of 5.2. Behind PgBouncer in transaction mode (before 1.21's
    # max_prepared_statements), set DATABASE_PREPARE_THRESHOLD= (empty: never).
    if env.bool("DATABASE_SERVER_SIDE_BINDING", default=True):
        threshold = env.str("DATABASE_PREPARE_THRESHOLD", default="5")
        DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = int(threshold) if threshold else None
    # A kept connection is checked (SELECT 1) before a request uses it, at most
    # once per this many seconds (syncbase/postgresql/base.py); 0 = every request.
    DATABASES["default"]["CONN_HEALTH_CHECK_SECONDS"] = env.float(
        "DATABASE_HEALTH_CHECK_SECONDS", default=1.0
    )
    # django-prometheus' wrapper of Django's backend, with the health checks above.
    DATABASES["default"]["ENGINE"] = "syncbase.postgresql"
# django-prometheus' wrapper of the same backend counts queries, their
# durations and errors, and connections (see /metrics); it behaves as Django's
# own otherwise (`connection.vendor` is unchanged).
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends.", 1
)
# A streaming replica for pull pages, `?since=` and the data API's lists
# (READ_DATABASE; a pull whose cursor the replica has not replayed as far as
# is read on the primary). Everything else, writes included, stays on the
# primary. In tests it is the test database itself.
if env.str("READ_DATABASE_URL", default=""):
    _replica = env.db("READ_DATABASE_URL")
    DATABASES["replica"] = {
        **DATABASES["default"],
        **{k: _replica[k] for k in ("NAME", "USER", "PASSWORD", "HOST", "PORT") if k in _replica},
        "TEST": {"MIRROR": "default"},
    }
    READ_DATABASE = "replica"
# LISTEN (live pulls, workers) needs a session of its own on PostgreSQL
# itself: behind PgBouncer in transaction mode, give it a direct connection.
if env.str("LISTEN_DATABASE_URL", default=""):
    _direct = env.db("LISTEN_DATABASE_URL")
    DATABASES["listen"] = {
        **DATABASES["default"],
        **{k: _direct[k] for k in ("NAME", "USER", "PASSWORD", "HOST", "PORT") if k in _direct},
        "TEST": {"MIRROR": "default"},
    }
    LISTEN_DATABASE = "listen"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# Seconds to wait for Redis (the cache) to connect or answer.
CACHE_TIMEOUT = env.float("CACHE_TIMEOUT_SECONDS", default=1.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # Nothing a sync request keeps in the cache is needed for
                # correctness (throttle counters, push counters): with Redis
                # down or hung, reads miss and writes are dropped (logged)
                # instead of failing the request. Throttling is then off
                # until Redis is back. Coalescing, which needs Redis, talks
                # to it directly and fails its task (the outbox row waits).
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": CACHE_TIMEOUT,
                "SOCKET_TIMEOUT": CACHE_TIMEOUT,
            },
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="sync"),
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# WhiteNoise serves the admin's and the API docs' assets from gunicorn after
# `manage.py collectstatic`; no manifest, so nothing breaks before that has run.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    # Files on synced objects (sync.BlobField): the local file system by
    # default, any S3-compatible service (AWS S3, MinIO, R2, ...) with
    # BLOB_S3_BUCKET. Devices upload and download straight to and from it
    # through presigned URLs, so BLOB_S3_ENDPOINT_URL must be one they reach.
    "sync_blobs": (
        {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": env.str("BLOB_S3_BUCKET"),
                "endpoint_url": env.str("BLOB_S3_ENDPOINT_URL", default="") or None,
                "region_name": env.str("BLOB_S3_REGION", default="us-east-1"),
                "access_key": env.str("BLOB_S3_ACCESS_KEY", default="") or None,
                "secret_key": env.str("BLOB_S3_SECRET_KEY", default="") or None,
                "addressing_style": env.str("BLOB_S3_ADDRESSING_STYLE", default="path"),
                "signature_version": "s3v4",
                "default_acl": None,
                "file_overwrite": True,
                "querystring_auth": True,
            },
        }
        if env.str("BLOB_S3_BUCKET", default="")
        else {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": env.str("BLOB_ROOT", default=str(BASE_DIR / "media" / "sync"))},
        }
    ),
}

# --- Security (production values when DEBUG is off; `manage.py check --deploy`) ---
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# On with DEBUG off: plain HTTP answers 301 to https. Keep it on behind a TLS
# proxy, which must set X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER above); served
# without TLS, every API call answers 301 and clients fail (client: Redirected).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers probe health, and Prometheus scrapes, over plain HTTP inside
# the network (see docs/security.md for what that means for METRICS_TOKEN).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Preloading commits every subdomain to HTTPS for months: the operator's call
# (SECURE_HSTS_PRELOAD=1), so its reminder is not a deploy-check failure.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Response compression levels, chosen with bench/compression.py (see
# syncbase/compression.py for the figures).
COMPRESSION_ZSTD_LEVEL = env.int("COMPRESSION_ZSTD_LEVEL", default=1)
COMPRESSION_BROTLI_LEVEL = env.int("COMPRESSION_BROTLI_LEVEL", default=1)
COMPRESSION_GZIP_LEVEL = env.int("COMPRESSION_GZIP_LEVEL", default=3)

# A push of 500 mutations with generous payloads fits; anything bigger is a 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)

# --- Client addresses and login failures ---
# How many proxies in front of the server append to X-Forwarded-For. 0: the
# header is ignored and the connection's address is the client (anything else
# would let a client pick its own address and dodge per-address limits).
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
# django-axes: repeated failed logins lock the account (the API's token login and
# /admin/login/ alike), whatever address they come from.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = "sync.api.lockout.lockout_parameters"
AXES_HANDLER = "sync.api.lockout.LockoutHandler"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "sync.api.lockout.lockout_response"
AXES_IPWARE_PROXY_COUNT = NUM_PROXIES or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if NUM_PROXIES else ("REMOTE_ADDR",)
)

# --- API tokens (accounts): django-rest-knox, hashed, several per account ---
KNOX_TOKEN_MODEL = "sync.Token"  # noqa: S105 - a model label, not a secret
REST_KNOX = {"AUTH_HEADER_PREFIX": "Token", "TOKEN_TTL": None}
# knox's own migrations create its default token table even when the model is
# swapped for ours; it has no table to create here.
MIGRATION_MODULES = {"knox": None}
# A login token (a device) expires after this long without use.
AUTH_TOKEN_TTL = timedelta(days=env.int("AUTH_TOKEN_TTL_DAYS", default=90))
# Logins beyond this many per user replace the least recently used token.
AUTH_TOKENS_PER_USER = env.int("AUTH_TOKENS_PER_USER", default=20)

# The API brings its own authentication, renderers, parsers, throttles and
# error handler (sync.api.base); the project sets the rates and proxies, and
# the schema class drf-spectacular's views need (check sync.E003).
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="60/min"),
        "user": env.str("THROTTLE_USER", default="1200/min"),
        "token": env.str("THROTTLE_TOKEN", default="2400/min"),
        "link": env.str("THROTTLE_LINK", default="1200/min"),
    },
    "NUM_PROXIES": NUM_PROXIES,
}

SPECTACULAR_SETTINGS = {
    # The API's own description (sync.api.openapi), with the UI's assets
    # served by us (drf-spectacular-sidecar) rather than a CDN.
    **SCHEMA_SETTINGS,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery: a real broker when REDIS_URL (or CELERY_BROKER_URL) is set, eager otherwise ---
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE = {
    "sync-feed-compact": {
        "task": "sync.tasks.feed_compact",
        "schedule": timedelta(hours=env.int("SYNC_COMPACT_EVERY_HOURS", default=6)),
    },
    "accounts-purge-expired-tokens": {
        "task": "accounts.tasks.purge_expired_tokens",
        "schedule": timedelta(days=1),
    },
    "sync-blobs-collect": {
        "task": "sync.tasks.blobs_collect",
        "schedule": timedelta(hours=env.int("BLOB_COLLECT_EVERY_HOURS", default=1)),
    },
    "push-outbox-sweep": {
        "task": "devices.tasks.push_outbox_sweep",
        "schedule": timedelta(seconds=env.int("PUSH_SWEEP_EVERY_SECONDS", default=30)),
    },
}
# A broker that is down must not hang a sync request: give up enqueueing fast
# (the outbox row waits for the sweep).
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
# Nor a broker that is up but does not answer (hung, or gone without closing
# the connection): without a socket timeout a publish waits forever. Longer
# than the workers' BRPOP poll (1 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
    "socket_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=3.0),
}
CELERY_TASK_PUBLISH_RETRY = False

# --- Push notifications (devices.push, sync.notify) ---
# A service-account JSON file; setting it makes FCM the default backend.
FCM_CREDENTIALS = env.str("FCM_CREDENTIALS", default="")
# Web Push for browsers (devices/webpush.py): the VAPID private key (a PEM
# file, PEM text, or the raw key in URL-safe base64; `vapid --gen` makes one)
# and the contact the push services see (mailto: or https:).
WEBPUSH_VAPID_PRIVATE_KEY = env.str("WEBPUSH_VAPID_PRIVATE_KEY", default="")
WEBPUSH_VAPID_SUBJECT = env.str("WEBPUSH_VAPID_SUBJECT", default="mailto:admin@localhost")
if env.str("WEBPUSH_ENDPOINT_HOSTS", default=""):
    WEBPUSH_ENDPOINT_HOSTS = env.list("WEBPUSH_ENDPOINT_HOSTS")
PUSH_BACKEND = env.str(
    "PUSH_BACKEND",
    default="fcm" if FCM_CREDENTIALS else "webpush" if WEBPUSH_VAPID_PRIVATE_KEY else "console",
)
# Where firebase-admin sends (a local fake for staging and load tests).
FCM_ENDPOINT = env.str("FCM_ENDPOINT", default="https://fcm.googleapis.com")
# A device's first wake-up after a quiet spell goes at once; the changes of the
# next this many seconds share one message at the window's end.
PUSH_COALESCE_SECONDS = env.int("PUSH_COALESCE_SECONDS", default=10)
# Temporary FCM failures are retried this many times in all, with backoff.
PUSH_MAX_ATTEMPTS = env.int("PUSH_MAX_ATTEMPTS", default=5)

# --- Live pulls (sync.api.live, manage.py serve_live) ---
LIVE_PULL_MAX_WAIT = env.int("LIVE_PULL_MAX_WAIT", default=50)
LIVE_PULLS_PER_USER = env.int("LIVE_PULLS_PER_USER", default=10)
LIVE_PULL_THREADS = env.int("LIVE_PULL_THREADS", default=8)

# --- Sync engine ---
# Tombstones (and the feed rows they live in) older than this are compacted away;
# a cursor older than this gets 410 resync_required.
SYNC_RETENTION = timedelta(days=env.int("SYNC_RETENTION_DAYS", default=30))
# Every synced text field holds at most this many characters, and every JSON
# field this many bytes, unless the model or its registration says otherwise.
SYNC_MAX_TEXT_CHARS = env.int("SYNC_MAX_TEXT_CHARS", default=10_000)
SYNC_MAX_JSON_BYTES = env.int("SYNC_MAX_JSON_BYTES", default=64 * 1024)
# A pull page stops early once its changes reach this many bytes (one object
# larger than that still goes out, alone).
SYNC_PULL_MAX_BYTES = env.int("SYNC_PULL_MAX_BYTES", default=4 * 1024 * 1024)
# Devices one user may register: each is a push fan-out target and a row the
# wake-ups read, so an account (or a stolen token) cannot register without end.
SYNC_MAX_DEVICES_PER_USER = env.int("SYNC_MAX_DEVICES_PER_USER", default=50)
SYNC_PULL_DEFAULT_LIMIT = 500
SYNC_PULL_MAX_LIMIT = 1000
SYNC_PUSH_MAX_MUTATIONS = 500
# The conflicts list answers the newest this many: conflicts are never deleted,
# and a client must not be able to grow one answer without bound.
SYNC_CONFLICTS_LIST_MAX = 1000
# Stored push results (for idempotent replays) are kept this long.
SYNC_MUTATION_LOG_RETENTION = timedelta(days=env.int("SYNC_MUTATION_LOG_DAYS", default=30))

# --- Operations: readiness, metrics, logs (see README "Production") ---
# Each dependency /readyz checks must answer within this many seconds.
READYZ_TIMEOUT_SECONDS = env.float("READYZ_TIMEOUT_SECONDS", default=2.0)
# /metrics answers a request with `Authorization: Bearer <METRICS_TOKEN>`, or
# from an address in METRICS_ALLOWED_IPS (the connection's own address, never
# X-Forwarded-For), or anybody when DEBUG is on; nobody else.
METRICS_TOKEN = _secret("METRICS_TOKEN", default="") or ""
# Parsed here so that a typo fails at start-up rather than locking Prometheus out.
METRICS_ALLOWED_IPS = [
    ipaddress.ip_network(net, strict=False) for net in env.list("METRICS_ALLOWED_IPS", default=[])
]
# With PROMETHEUS_MULTIPROC_DIR set, prometheus_client writes each process's
# metrics in files there as soon as a metric is defined (the apps define theirs
# as they load, after these settings): made here if missing, so that manage.py
# commands and Celery run before gunicorn ever did. gunicorn empties it at
# start-up (config/gunicorn.conf.py).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    try:
        Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR} cannot be created: {exc}"
        ) from exc

# One line per request from syncbase.request_log (JSON in production, plain text
# for `make run`). Django's own per-request lines are switched off below so
# that nothing is logged twice.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "syncbase.request_log.ContextFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "syncbase.request_log.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default config also prints django.* records on a console
        # handler of its own when DEBUG is on: they go to the root only.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # Our request line replaces django.request's "Not Found: /x" and
        # "Forbidden (Permission denied)" warnings (the latter with a
        # traceback, for an expected 403); server errors still log here with
        # their traceback.
        "django.request": {"level": "ERROR"},
        # ... and runserver's access log.
        "django.server": {"handlers": [], "level": "CRITICAL", "propagate": True},
        # A line per failed login is django-axes' own; failures show in the admin.
        "axes": {"level": "WARNING"},
    },
}
