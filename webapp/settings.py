"""DUDA Studio settings: one module, configured from the environment.

``DATABASE_URL`` (postgres://...) and ``REDIS_URL`` (redis://...) switch on the production stack.
With neither set the app runs on embedded defaults: SQLite in the data folder, Celery over kombu's
filesystem transport (a real broker-backed queue that needs no server) and Channels' in-memory
layer, with the Celery worker running inside the web process so that live updates reach the
browser (see ``webapp/core/management/commands/demo.py``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF

from webapp.startup import StartupError, parse_database_url, parse_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DUDA_DATA_DIR", BASE_DIR / "var")).resolve()
RUNS_DIR = DATA_DIR / "runs"
DATASETS_ROOT = Path(os.environ["DUDA_DATASETS_ROOT"]).resolve() if os.environ.get("DUDA_DATASETS_ROOT") else None
TOY_CACHE_DIR = Path(os.environ.get("DUDA_TOY_CACHE", BASE_DIR / "data" / "toy")).resolve()
WEIGHTS_DIR = Path(os.environ.get("DUDA_WEIGHTS_DIR", DATA_DIR / "weights")).resolve()  # weights files a launch may name
# Verdicts of the dataset check (outside the datasets); the engine in the workers reads the same variable.
DATASET_CHECKS_DIR = Path(os.environ.get("DUDA_CHECK_CACHE_DIR", DATA_DIR / "dataset-checks")).resolve()
os.environ["DUDA_CHECK_CACHE_DIR"] = str(DATASET_CHECKS_DIR)

DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
EMBEDDED = not DATABASE_URL and not REDIS_URL
DATABASE = parse_database_url(DATABASE_URL) if DATABASE_URL else None
if REDIS_URL:
    parse_redis_url(REDIS_URL)


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value not in ("0", "1"):
        raise StartupError(name, f"must be 0 or 1, not {value[:20]!r}")
    return value == "1"


def env_int(name: str, default: int, minimum: int = 0) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit()) or int(value) < minimum:
        raise StartupError(name, f"must be a whole number of at least {minimum}, not {value[:20]!r}")
    return int(value)


DEBUG = env_flag("DJANGO_DEBUG", EMBEDDED)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not EMBEDDED and not DEBUG:
        raise StartupError("DJANGO_SECRET_KEY", "must be set when DATABASE_URL or REDIS_URL is set (production)")
    SECRET_KEY = "embedded-insecure-key-only-for-local-use"
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

# --- HTTPS ----------------------------------------------------------------------------------
# Production (DEBUG off) is served over HTTPS: redirect plain HTTP, HSTS, cookies only over HTTPS.
# DUDA_INSECURE_HTTP=1 turns all of that off for plain HTTP (a trial on localhost; the test suite).
HTTPS = not DEBUG and not env_flag("DUDA_INSECURE_HTTP", False)
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^health/$"]  # probes from inside the network speak plain HTTP
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("DUDA_HSTS_SECONDS", 365 * 24 * 3600) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
if env_flag("DUDA_BEHIND_HTTPS_PROXY", False):  # the proxy in front ends TLS and sets X-Forwarded-Proto
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "axes",
    "webapp.core",
    "webapp.runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "webapp.core.compression.JsonGZipMiddleware",  # JSON answers only: pages carry the CSRF token (BREACH)
    "webapp.runs.middleware.ApiErrorMiddleware",  # every error under /api/ in the API's JSON shape
    "webapp.core.middleware.RefuseNulMiddleware",  # a NUL in an admin query string: 400
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into a 429
]

ROOT_URLCONF = "webapp.urls"
ASGI_APPLICATION = "webapp.asgi.application"
WSGI_APPLICATION = "webapp.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------
if DATABASE:
    DATABASES = {"default": DATABASE}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Queue and live updates -----------------------------------------------------------------
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # An unreachable broker fails a launch's send within seconds (the run stays queued, is sent again).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600, "socket_connect_timeout": 3}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 defaults to a 5 s socket timeout that closes idle websockets; never time out.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                # Messages waiting in a server process's inbox (one Redis key for all its sockets) before
                # Redis drops more. Publishing coalesces each run's points into at most 10 messages a
                # second (live.COALESCE_S): 6,000 holds the expiry's 30 s of 20 watched runs. The browser
                # fills any hole by sequence number anyway.
                "capacity": env_int("DUDA_LIVE_CAPACITY", 6000, minimum=1),
                "expiry": 30,  # seconds an undelivered message waits: older than that is stale for a live curve
            },
        }
    }
else:
    BROKER_DIR = DATA_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),  # kombu's default is ./control in the working directory
        "store_processed": False,
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Runs: worker heartbeat and the reaper of runs whose worker died -------------------------
RUN_HEARTBEAT_INTERVAL_S = float(os.environ.get("DUDA_HEARTBEAT_INTERVAL_S", "10"))
RUN_STALE_AFTER_S = float(os.environ.get("DUDA_STALE_AFTER_S", "120"))  # no heartbeat for this long: worker lost
RUN_MAX_ATTEMPTS = int(os.environ.get("DUDA_MAX_ATTEMPTS", "3"))  # claims before a run with lost workers fails
RUN_REAP_INTERVAL_S = float(os.environ.get("DUDA_REAP_INTERVAL_S", "60"))
RUN_REQUEUE_AFTER_S = float(os.environ.get("DUDA_REQUEUE_AFTER_S", "120"))  # queued this long: sent again

# --- Auth, static, API ----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]
AUTHENTICATION_BACKENDS = [
    "webapp.core.auth.LoginThrottleBackend",  # refuses a locked-out username + address first
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("DUDA_LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("DUDA_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # a lockout ends AXES_COOLOFF_TIME after it began
AXES_LOCKOUT_CALLABLE = "webapp.core.auth.locked_out"
AXES_USERNAME_CALLABLE = "webapp.core.auth.attempt_username"
AXES_VERBOSE = False

# Content-Security-Policy: scripts and styles only from our own static files (nothing inline).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "connect-src": [SELF],  # REST and the run's websocket
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise expects it; the data folder is ours anyway
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media/"

REST_FRAMEWORK = {
    # Token first: a request without credentials gets 401 with "WWW-Authenticate: Token" (DRF asks the
    # first class for that header); the pages' fetch calls still sign in with the session (and CSRF).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # orjson: a long run's curves or a compare (~650 KB) encode in a tenth of the standard library's time,
    # time in which the server process holds the GIL for everyone else.
    "DEFAULT_RENDERER_CLASSES": [
        "drf_orjson_renderer.renderers.ORJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "webapp.runs.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "webapp.runs.api.schema.ApiSchema",
    "EXCEPTION_HANDLER": "webapp.runs.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "DUDA Studio API",
    "DESCRIPTION": "Launch and watch domain-adaptation runs; download adapted students.",
    "VERSION": "0.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"RunStatusEnum": "webapp.runs.models.RunStatus",
                            "ExportStatusEnum": "webapp.runs.models.ExportStatus"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DUDA_LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}, "axes": {"level": "WARNING"}},  # axes: lockouts only
}

# Exports (a run's student as float and int8 ONNX, measured by a worker): timed runs per file and
# size for the speed figures, and target training images for int8 calibration.
EXPORT_SPEED_RUNS = env_int("DUDA_EXPORT_SPEED_RUNS", 20, minimum=1)
EXPORT_CALIBRATION_IMAGES = env_int("DUDA_EXPORT_CALIBRATION_IMAGES", 32, minimum=1)
# An export still queued or running this long after it was asked for is failed when it is asked for again.
EXPORT_TIMEOUT_S = env_int("DUDA_EXPORT_TIMEOUT_S", 2 * 3600, minimum=60)

# Caches, per server process: "curves" keeps finished runs' curves as drawn (the run page and compare
# ask for the same ones again; a finished run's points no longer change).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "curves": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "curves",
               "TIMEOUT": 3600, "OPTIONS": {"MAX_ENTRIES": 200}},
}
