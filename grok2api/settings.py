"""Django settings, read from the environment (django-environ) with zero-setup defaults.

Without DATABASE_URL / REDIS_URL: SQLite (WAL) under DATA_DIR, local-memory cache, in-memory
channel layer, Celery on kombu's filesystem:// broker under DATA_DIR. With them: PostgreSQL or
MySQL, and Redis for cache, channel layer and broker. A malformed value stops startup with one
line naming the variable (core.envcheck).
"""
from __future__ import annotations

import os
from pathlib import Path

import environ

from core.envcheck import EnvError, read_env

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_dotenv = Path(os.environ.get("GROK2API_ENV_FILE", BASE_DIR / ".env"))
if _dotenv.is_file():
    environ.Env.read_env(str(_dotenv), overwrite=False)

E = read_env(env, BASE_DIR)  # every deployment variable, validated once

DATA_DIR: Path = E.data_dir
LOG_DIR: Path = E.log_dir
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = E.secret_key
DEBUG = E.debug
ALLOWED_HOSTS = E.allowed_hosts
CSRF_TRUSTED_ORIGINS = E.csrf_trusted_origins

INSTALLED_APPS = [
    "daphne",  # first: runserver becomes ASGI, so streams are not buffered
    "grok2api.apps.GatewayAdminConfig",  # django.contrib.admin with the AdminSite of grok2api/admin_site.py
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "core.apps.CoreConfig",  # runtime config, snapshots, crypto, proxies, stamps, alerts (label "grok2api")
    "accounts",
    "gateway",
    "media",
    "webui",
    "grok2api.apps.Grok2apiConfig",  # wiring: serve/import_config/export_config/ensure_admin, schedule seeding
]

MIDDLEWARE = [
    "gateway.requestid.RequestIdMiddleware",  # x-request-id, key rate-limit headers, end-of-request slot release
    # Django's page middlewares, each wrapped so that /v1 requests pass straight through
    # (grok2api/pagemiddleware.py says why); the pages get them as usual, in this order. Every entry
    # is sync- and async-capable. WhiteNoise (sync-only) is not here: /static/ is served in front of
    # Django (grok2api/staticfiles.py).
    "grok2api.pagemiddleware.Security",
    "grok2api.pagemiddleware.Sessions",
    "grok2api.pagemiddleware.Common",
    "grok2api.pagemiddleware.Csrf",
    "grok2api.pagemiddleware.Authentication",
    "grok2api.pagemiddleware.Messages",
    "grok2api.pagemiddleware.FrameOptions",
    "grok2api.middleware.ApiEnvelopeMiddleware",  # /v1: Host check, nosniff, sizes, 405 envelope
]

ROOT_URLCONF = "grok2api.urls"
ASGI_APPLICATION = "grok2api.asgi.application"

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

DATABASES = {"default": E.database}

CACHES = E.caches
CHANNEL_LAYERS = E.channel_layers
REDIS_URL = E.redis_url

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = E.tz
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing root; files come from the finders
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATA_UPLOAD_MAX_MEMORY_SIZE = E.max_body_bytes
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
MAX_BODY_BYTES = E.max_body_bytes
MAX_ATTACHMENT_BYTES = E.max_attachment_bytes  # one cap for inline, fetched and uploaded files (media/attachments.py)

# Celery: the broker is Redis when REDIS_URL is set, else kombu's filesystem transport.
CELERY_BROKER_URL = E.celery_broker_url
CELERY_BROKER_TRANSPORT_OPTIONS = E.celery_broker_options
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
# DatabaseScheduler that also keeps the rows the runtime config owns and stamps beat's heartbeat.
CELERY_BEAT_SCHEDULER = "grok2api.schedule:ManagedScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = E.celery_eager
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

SERVER_HOST = E.server_host
SERVER_PORT = E.server_port
SERVER_WORKERS = E.server_workers
SERVER_MAX_CONNECTIONS = E.server_max_connections  # per worker; uvicorn answers 503 beyond it
SERVER_HEAD_TIMEOUT_SECONDS = E.server_head_timeout_seconds  # a request head must arrive within this (grok2api/httpproto.py)
REQUEST_THREADS = E.request_threads  # kept threads per worker for requests' sync parts (grok2api/requestthreads.py)
SHUTDOWN_GRACE_SECONDS = E.shutdown_grace_seconds  # open streams at SIGTERM (gateway/sse.py)
ALLOW_OPEN_API = E.allow_open_api  # serve: may /v1 run without a key on a non-loopback address?
ADMIN_USERNAME = E.admin_username
ADMIN_PASSWORD = E.admin_password
ENCRYPTION_KEY = E.encryption_key
METRICS_TOKEN = E.metrics_token  # core/metrics.py: bearer token of /metrics; empty = 404
CONFIG_DEFAULTS_PATH = BASE_DIR / "config.defaults.toml"

LOGGING = E.logging

# --- Browser side: login lockout (django-axes) and Content-Security-Policy (django-csp) ---
# Kept in one block; docs/webui.md ("Guessing" and "Content-Security-Policy") explains each value.
INSTALLED_APPS += ["axes", "csp"]
MIDDLEWARE += [
    "grok2api.pagemiddleware.ContentSecurityPolicy",  # django-csp's + the voice page's LiveKit origin
    "axes.middleware.AxesMiddleware",  # last, as axes asks: turns a lockout into its 429 page
]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"  # shared by every worker process
AXES_FAILURE_LIMIT = E.login_failure_limit
AXES_COOLOFF_TIME = E.login_cooloff_minutes / 60  # hours, as axes reads a float
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the lock ends one cool-off after the last counted failure
AXES_DISABLE_ACCESS_LOG = True  # no row per successful login
AXES_LOCKOUT_TEMPLATE = "axes/lockout.html"
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "key", "password"]
# The client address is REMOTE_ADDR: uvicorn rewrites it from X-Forwarded-For when the proxy's
# address is in FORWARDED_ALLOW_IPS (README, "Behind a reverse proxy").
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "media-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],  # + the LiveKit origin on the voice page (grok2api/csp.py)
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
