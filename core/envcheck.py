"""Deployment variables: read once at startup, validated, turned into settings values.

Every variable of the README's table is read here and nowhere else. A malformed value raises
EnvError with one line naming the variable and the expected form; manage.py prints that line and
exits 2 instead of a traceback.

The reference project's ACCOUNT_STORAGE family is mapped onto DATABASE_URL / REDIS_URL:
  local      -> SQLite at ACCOUNT_LOCAL_PATH (default DATA_DIR/grok2api.db)
  postgresql -> ACCOUNT_POSTGRESQL_URL (SQLAlchemy driver suffixes such as +asyncpg are dropped)
  mysql      -> ACCOUNT_MYSQL_URL
  redis      -> SQLite stays the store; ACCOUNT_REDIS_URL becomes REDIS_URL
ACCOUNT_SQL_POOL_SIZE / _MAX_OVERFLOW / _TIMEOUT / _RECYCLE configure psycopg's connection pool
on PostgreSQL (min = size, max = size + overflow) and CONN_MAX_AGE elsewhere.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse


class EnvError(Exception):
    """A deployment variable has a value that cannot be used."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
# Host names Django answers to when ALLOWED_HOSTS is not set (serve adds the host of app.app_url).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value is not None else None


def _bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise EnvError(f"{name}: expected true or false, got {value!r}")


def _int(name: str, default: int, *, lo: int | None = None, hi: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise EnvError(f"{name}: expected an integer, got {value!r}") from None
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        if hi is None:
            raise EnvError(f"{name}: expected an integer of at least {lo}, got {number}")
        if lo is None:
            raise EnvError(f"{name}: expected an integer of at most {hi}, got {number}")
        raise EnvError(f"{name}: expected an integer between {lo} and {hi}, got {number}")
    return number


def _float(name: str, default: float, *, lo: float = 0.0) -> float:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise EnvError(f"{name}: expected a number, got {value!r}") from None
    if number < lo:
        raise EnvError(f"{name}: expected a number of at least {lo:g}, got {number:g}")
    return number


def _str(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None or value == "" else value


# user:password@ in a URL, also in one too malformed for urlparse to find (`postgresql:/u:pw@db/x`)
_URL_PASSWORD = re.compile(r"([^:/@\s]*):([^/\s]*)@")


def url_mask(value: str) -> str:
    """`value` with the password of any user:password@ part replaced, for messages and logs."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:••••@" if m.group(2) else m.group(0), value)


def _url(name: str, schemes: tuple[str, ...]) -> str | None:
    value = _raw(name)
    if not value:
        return None
    parsed = urlparse(value)
    # `scheme://` itself is required: `postgresql:/user:pw@db/x` parses as a path and would reach the
    # driver as a database name.
    if parsed.scheme.split("+")[0] not in schemes or "://" not in value or not (parsed.netloc or parsed.path):
        raise EnvError(f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}, "
                       f"got {url_mask(value)!r}")
    return value


def _secret_key(data_dir: Path) -> str:
    value = _raw("SECRET_KEY") or _raw("DJANGO_SECRET_KEY")
    if value:
        if len(value) < 16:
            raise EnvError("SECRET_KEY: expected at least 16 characters")
        return value
    # Zero-setup: one random key per data directory, kept beside the database.
    path = data_dir / "secret_key"
    if path.is_file():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    os.chmod(path, 0o600)
    return key


def _sqlite(path: Path) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            # web + worker processes write together: take the write lock up front, wait for it.
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL;",
        },
        "TEST": {"NAME": str(path.with_name("test_" + path.name))},
        # Kept open like the server databases' connections: the background writers (usage, account
        # effects, snapshot poller) otherwise opened and closed a connection on every flush, ~8 % of a
        # loaded worker's CPU samples (docs/benchmarks.md).
        "CONN_MAX_AGE": _int("CONN_MAX_AGE", 60, lo=0),
        "CONN_HEALTH_CHECKS": True,
    }


def _normalise_sqlalchemy(url: str) -> str:
    scheme, _, rest = url.partition("://")
    base = scheme.split("+")[0]
    base = {"postgresql": "postgres", "postgres": "postgres", "mysql": "mysql", "mariadb": "mysql"}.get(base, base)
    return f"{base}://{rest}"


def _database(env, data_dir: Path) -> dict[str, Any]:
    url = _url("DATABASE_URL", ("postgres", "postgresql", "pgsql", "mysql", "mariadb", "sqlite"))
    storage = _str("ACCOUNT_STORAGE", "local").lower()
    if storage not in {"local", "redis", "mysql", "postgresql"}:
        raise EnvError(f"ACCOUNT_STORAGE: expected local, redis, mysql or postgresql, got {storage!r}")
    if url is None and storage == "postgresql":
        url = _url("ACCOUNT_POSTGRESQL_URL", ("postgres", "postgresql"))
        if url is None:
            raise EnvError("ACCOUNT_POSTGRESQL_URL: required when ACCOUNT_STORAGE=postgresql")
    if url is None and storage == "mysql":
        url = _url("ACCOUNT_MYSQL_URL", ("mysql", "mariadb"))
        if url is None:
            raise EnvError("ACCOUNT_MYSQL_URL: required when ACCOUNT_STORAGE=mysql")
    if url is None:
        local = _raw("ACCOUNT_LOCAL_PATH")
        path = Path(local).expanduser() if local else data_dir / "grok2api.db"
        if not path.is_absolute():
            path = Path.cwd() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return _sqlite(path)
    url = _normalise_sqlalchemy(url)
    try:
        config = env.db_url_config(url)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise EnvError(f"DATABASE_URL: cannot parse {url_mask(url)!r} ({url_mask(str(exc))})") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        return _sqlite(Path(config["NAME"]))
    pool_size = _int("ACCOUNT_SQL_POOL_SIZE", 0, lo=0, hi=1000)
    overflow = _int("ACCOUNT_SQL_MAX_OVERFLOW", 10, lo=0, hi=1000)
    timeout = _int("ACCOUNT_SQL_POOL_TIMEOUT", 30, lo=1, hi=3600)
    recycle = _int("ACCOUNT_SQL_POOL_RECYCLE", 1800, lo=0, hi=86400)
    config.setdefault("OPTIONS", {})
    if "postgresql" in config["ENGINE"] and pool_size > 0:
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"]["pool"] = {
            "min_size": pool_size,
            "max_size": pool_size + overflow,
            "timeout": timeout,
            "max_lifetime": max(recycle, 60),
        }
    else:
        config["CONN_MAX_AGE"] = _int("CONN_MAX_AGE", 60, lo=0)
        config["CONN_HEALTH_CHECKS"] = True
    return config


# Libraries that log request and handshake details (headers, cookies, frames) at DEBUG: capped at
# WARNING unless LOG_LIBRARY_DEBUG=true; core/logredact.py masks secrets either way.
LIBRARY_LOGGERS = ("websockets", "httpx", "httpx2", "httpcore", "httpcore2", "h2", "hpack", "h11", "urllib3",
                   "asyncio", "daphne", "twisted", "redis", "kombu", "amqp")


def _logging(level: str, file_enabled: bool, log_dir: Path, log_format: str = "text", *,
             library_debug: bool = False) -> dict[str, Any]:
    # Every handler carries the secret filter (core/logredact.py); the file is created 0600.
    handlers: dict[str, Any] = {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                                            "filters": ["secrets"]}}
    if file_enabled:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers["file"] = {
            "class": "core.logredact.PrivateFileHandler",
            "filename": str(log_dir / "grok2api.log"),
            "when": "midnight",
            "backupCount": 7,
            "formatter": "plain",
            "filters": ["secrets"],
            "delay": True,
        }
    loggers: dict[str, Any] = {
        "django.request": {"level": "ERROR"},
        "axes.apps": {"level": "WARNING"},  # its start-up banner would be the first line of every command
        # uvicorn's own loggers get these handlers (and so the filter) instead of the ones it set up
        **{name: {"handlers": list(handlers), "propagate": False} for name in ("uvicorn", "uvicorn.error")},
        # uvicorn writes its access line only when this logger has a handler (it asks hasHandlers()
        # once per connection): at DEBUG only, since gateway/requestid.py already logs one line per
        # /v1 request with more in it (request id, key label, model, tokens, timings)
        "uvicorn.access": {"handlers": list(handlers) if level == "DEBUG" else [], "propagate": False},
    }
    if not library_debug:
        loggers.update({name: {"level": "WARNING"} for name in LIBRARY_LOGGERS})
    formatters = {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}}
    if log_format == "json":
        # the per-request line (gateway/requestid.py) is a JSON object of its own: no prefix
        formatters["bare"] = {"format": "%(message)s"}
        json_handlers = {f"{name}_json": {**spec, "formatter": "bare"} for name, spec in handlers.items()}
        handlers = {**handlers, **json_handlers}
        loggers["grok2api.requests"] = {"handlers": list(json_handlers), "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"secrets": {"()": "core.logredact.SecretFilter"}},
        "formatters": formatters,
        "handlers": handlers,
        "root": {"handlers": [h for h in handlers if not h.endswith("_json")], "level": level},
        "loggers": loggers,
    }


def _metrics_token() -> str:
    """METRICS_TOKEN (core/metrics.py): empty = /metrics disabled; else a bearer secret, long
    enough not to be guessed since /metrics names accounts' pools, keys' labels and traffic."""
    token = _raw("METRICS_TOKEN") or ""
    if token and len(token) < 16:
        raise EnvError(f"METRICS_TOKEN: expected at least 16 characters (or empty to disable /metrics), got {len(token)}")
    return token


def read_env(env, base_dir: Path) -> SimpleNamespace:
    data_dir = Path(_str("DATA_DIR", "./data")).expanduser()
    if not data_dir.is_absolute():
        data_dir = (Path.cwd() / data_dir).resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvError(f"DATA_DIR: cannot create {str(data_dir)!r} ({exc.strerror})") from None
    log_dir = Path(_str("LOG_DIR", "./logs")).expanduser()
    if not log_dir.is_absolute():
        log_dir = (Path.cwd() / log_dir).resolve()

    level = _str("LOG_LEVEL", "INFO").upper()
    if level not in _LEVELS:
        raise EnvError(f"LOG_LEVEL: expected one of {', '.join(sorted(_LEVELS))}, got {level!r}")
    log_format = _str("LOG_FORMAT", "text").lower()
    if log_format not in ("text", "json"):
        raise EnvError(f"LOG_FORMAT: expected text or json, got {log_format!r}")

    storage = _str("ACCOUNT_STORAGE", "local").lower()
    redis_url = _url("REDIS_URL", ("redis", "rediss", "unix"))
    if redis_url is None and storage == "redis":
        redis_url = _url("ACCOUNT_REDIS_URL", ("redis", "rediss", "unix"))
        if redis_url is None:
            raise EnvError("ACCOUNT_REDIS_URL: required when ACCOUNT_STORAGE=redis")
    _int("ACCOUNT_SYNC_INTERVAL", 30, lo=1)  # validated for compatibility; snapshots poll every 2 s
    _int("ACCOUNT_SYNC_ACTIVE_INTERVAL", 3, lo=1)
    _int("HOST_PORT", 8000, lo=1, hi=65535)
    # Tuning knobs read by the modules that use them; validated here so a typo stops startup.
    _float("SNAPSHOT_POLL_INTERVAL", 2.0, lo=0.05)
    _bool("SNAPSHOT_POLLER", True)
    for knob, default in (("EGRESS_FLUSH_INTERVAL", 5.0), ("USAGE_FLUSH_INTERVAL", 1.0), ("ACCOUNT_FLUSH_INTERVAL", 1.0),
                          ("MEDIA_VIDEO_STALE_SECONDS", 120.0)):
        _float(knob, default, lo=0.05)
    _float("MEMORY_RELEASE_IDLE_SECONDS", 20.0, lo=0.0)  # grok2api/memory.py; 0 = never
    _float("POOL_SLOT_LEASE_SECONDS", 60.0, lo=1.0)  # accounts/inflight.py
    _float("KEY_CONCURRENCY_TTL_SECONDS", 900.0, lo=1.0)  # gateway/limits.py
    _bool("KEY_LIMITS_SHARED", True)
    _int("USAGE_FLUSH_BATCH", 200, lo=1)
    _bool("USAGE_FLUSHER", True)
    _bool("ACCOUNT_FLUSHER", True)

    tz = _str("TZ", "UTC")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(tz)
    except Exception:
        raise EnvError(f"TZ: expected an IANA time zone such as UTC or Asia/Shanghai, got {tz!r}") from None

    if redis_url:
        caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}}
        channel_layers = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [redis_url]}}}
        broker = redis_url
        broker_options: dict[str, Any] = {}
    else:
        caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        channel_layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
        broker_dir = data_dir / "broker"
        for sub in ("out", "processed", "control"):
            (broker_dir / sub).mkdir(parents=True, exist_ok=True)
        broker = "filesystem://"
        broker_options = {
            "data_folder_in": str(broker_dir / "out"),
            "data_folder_out": str(broker_dir / "out"),
            "processed_folder": str(broker_dir / "processed"),
            "control_folder": str(broker_dir / "control"),  # else kombu writes ./control in the cwd
            "store_processed": False,
        }

    hosts = [h.strip() for h in _str("ALLOWED_HOSTS", ",".join(LOOPBACK_HOSTS)).split(",") if h.strip()]
    origins = [o.strip() for o in _str("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
    for origin in origins:
        if not re.match(r"^https?://", origin):
            raise EnvError(f"CSRF_TRUSTED_ORIGINS: expected comma-separated http(s):// origins, got {origin!r}")

    max_body_mb = _int("MAX_BODY_MB", 50, lo=1, hi=2048)
    max_attachment_mb = _int("MAX_ATTACHMENT_MB", 20, lo=1, hi=2048)


    return SimpleNamespace(
        data_dir=data_dir,
        log_dir=log_dir,
        secret_key=_secret_key(data_dir),
        debug=_bool("DEBUG", False),
        allowed_hosts=hosts,
        csrf_trusted_origins=origins,
        database=_database(env, data_dir),
        redis_url=redis_url,
        caches=caches,
        channel_layers=channel_layers,
        celery_broker_url=broker,
        celery_broker_options=broker_options,
        celery_eager=_bool("CELERY_TASK_ALWAYS_EAGER", False),
        tz=tz,
        server_host=_str("SERVER_HOST", "127.0.0.1"),
        server_port=_int("SERVER_PORT", 8000, lo=1, hi=65535),
        server_workers=_int("SERVER_WORKERS", 1, lo=1, hi=64),
        server_max_connections=_int("SERVER_MAX_CONNECTIONS", 2048, lo=1, hi=1_000_000),
        shutdown_grace_seconds=_float("SHUTDOWN_GRACE_SECONDS", 10.0, lo=0.0),
        request_threads=_int("REQUEST_THREADS", 32, lo=0, hi=4096),
        server_head_timeout_seconds=_float("SERVER_HEAD_TIMEOUT_SECONDS", 10.0, lo=0.0),
        allow_open_api=_bool("ALLOW_OPEN_API", False),
        admin_username=_str("ADMIN_USERNAME", "admin"),
        admin_password=_raw("ADMIN_PASSWORD") or "",
        encryption_key=_raw("GROK2API_ENCRYPTION_KEY") or "",
        metrics_token=_metrics_token(),
        max_body_bytes=max_body_mb * 1024 * 1024,
        max_attachment_bytes=max_attachment_mb * 1024 * 1024,
        # django-axes lockout of the admin login and the web page key (settings.py, AXES_*)
        login_failure_limit=_int("LOGIN_FAILURE_LIMIT", 5, lo=1, hi=1000),
        login_cooloff_minutes=_float("LOGIN_COOLOFF_MINUTES", 15.0, lo=0.1),
        logging=_logging(level, _bool("LOG_FILE_ENABLED", True), log_dir, log_format,
                         library_debug=_bool("LOG_LIBRARY_DEBUG", False)),
    )
