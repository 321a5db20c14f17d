"""Django settings, read from the environment (django-environ) with zero-setup defaults.

Without DATABASE_URL / REDIS_URL: SQLite (WAL) under DATA_DIR, local-memory cache, in-memory
channel layer, Celery on kombu's filesystem:// broker under DATA_DIR. With them: PostgreSQL or
MySQL, and Redis for cache, channel layer and broker. A malformed value stops startup with one
line naming the variable (grok2api.envcheck).
"""
from __future__ import annotations

import os
from pathlib import Path

import environ

from grok2api.envcheck import EnvError, read_env

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
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "accounts",
    "gateway",
    "media",
    "webui",
    "grok2api.apps.Grok2apiConfig",  # startup checks, serve/import_config/export_config/ensure_admin
]

MIDDLEWARE = [
    "gateway.requestid.RequestIdMiddleware",  # x-request-id, key rate-limit headers, end-of-request slot release
    # /v1 and /healthz skip the rest of the stack (architecture §4: each middleware costs).
    "grok2api.middleware.FastPathMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
SERVER_IMPL = E.server_impl
UPSTREAM_HTTP = E.upstream_http  # gateway/upstream/transport.py: client for direct egress
WORKER_MALLOC = E.worker_malloc
ADMIN_USERNAME = E.admin_username
ADMIN_PASSWORD = E.admin_password
ENCRYPTION_KEY = E.encryption_key
CONFIG_DEFAULTS_PATH = BASE_DIR / "config.defaults.toml"

LOGGING = E.logging
