"""Runtime configuration: config.defaults.toml < RuntimeConfig row (admin) < GROK_* environment.

Keys are dotted paths of the defaults file ("chat.timeout", "proxy.egress.mode"). The
environment name of a key is GROK_ + the path upper-cased with dots and dashes as underscores
(GROK_PROXY_EGRESS_MODE). Values are typed by their default: bool, int, float, str, list.

Request paths call `config_get(key)` / `config()`: a memory read of the current snapshot, which
reloads when the "config" version stamp moves (grok2api/snapshots.py).
"""
from __future__ import annotations

import copy
import os
import tomllib
from functools import lru_cache
from typing import Any

from django.conf import settings

from grok2api.snapshots import Snapshot, stamp_bump


class ConfigError(ValueError):
    """A config value is invalid. `key` is the dotted key; str(exc) is one actionable line."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


# Keys the reference had that this project drops by policy (spec §13): accepted, ignored, warned.
DROPPED_KEYS = frozenset(
    {
        "features.dynamic_statsig",
        "features.enable_nsfw",
        "proxy.clearance.flaresolverr_url",
        "proxy.clearance.browser",
        "proxy.browser",
        "nsfw.timeout",
        "batch.nsfw_concurrency",
    }
)

CHOICES: dict[str, tuple[str, ...]] = {
    "features.image_format": ("grok_url", "local_url", "grok_md", "local_md", "base64"),
    "features.video_format": ("grok_url", "local_url", "grok_html", "local_html"),
    "proxy.egress.mode": ("direct", "single_proxy", "proxy_pool"),
    "proxy.clearance.mode": ("none", "manual"),
    "logging.file_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
}

SECRET_KEYS = frozenset({"app.api_key", "app.app_key", "app.webui_key", "proxy.clearance.cf_cookies", "proxy.clearance.cf_clearance", "upstream.static_statsig_id", "proxy.egress.proxy_url", "proxy.egress.proxy_pool"})


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


@lru_cache(maxsize=1)
def defaults() -> dict[str, Any]:
    """Flat {dotted key: default value} from config.defaults.toml."""
    with open(settings.CONFIG_DEFAULTS_PATH, "rb") as fh:
        return flatten(tomllib.load(fh))


def env_name(key: str) -> str:
    return "GROK_" + key.upper().replace(".", "_").replace("-", "_")


def coerce(key: str, value: Any) -> Any:
    """Convert `value` (from TOML, JSON, admin form or env text) to the type of the key's default."""
    base = defaults().get(key)
    if key not in defaults():
        raise ConfigError(key, "unknown key")
    try:
        if isinstance(base, bool):
            if isinstance(value, bool):
                out: Any = value
            elif isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
                out = True
            elif isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
                out = False
            else:
                raise ConfigError(key, f"expected true or false, got {value!r}")
        elif isinstance(base, int):
            if isinstance(value, bool):
                raise ConfigError(key, f"expected an integer, got {value!r}")
            out = int(value) if not isinstance(value, float) or value.is_integer() else None
            if out is None:
                raise ConfigError(key, f"expected an integer, got {value!r}")
            if out < 0:
                raise ConfigError(key, f"expected a non-negative integer, got {out}")
        elif isinstance(base, float):
            out = float(value)
        elif isinstance(base, list):
            if isinstance(value, str):
                text = value.strip()
                if text.startswith("["):
                    import json

                    out = json.loads(text)
                else:
                    out = [part.strip() for part in text.split(",") if part.strip()]
            elif isinstance(value, (list, tuple)):
                out = list(value)
            else:
                raise ConfigError(key, f"expected a list, got {value!r}")
            if base and isinstance(base[0], int):
                out = [int(v) for v in out]
        else:
            if isinstance(value, (list, tuple)) and key == "app.api_key":
                out = ",".join(str(v) for v in value)
            elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ConfigError(key, f"expected text, got {value!r}")
            else:
                out = str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        kind = type(base).__name__
        raise ConfigError(key, f"expected {'an integer' if kind == 'int' else 'a ' + kind}, got {value!r}") from None
    choices = CHOICES.get(key)
    if choices and out not in choices:
        raise ConfigError(key, f"expected one of {', '.join(choices)}, got {out!r}")
    if key.startswith("upstream.") and key.endswith("_url") and out:
        allowed = ("ws://", "wss://") if key in ("upstream.ws_base_url", "upstream.livekit_url") else ("http://", "https://")
        if not str(out).startswith(allowed):
            raise ConfigError(key, f"expected a URL starting with {' or '.join(allowed)}, got {out!r}")
    return out


def env_overrides() -> dict[str, Any]:
    """GROK_* variables that name a known key, coerced. A malformed value raises ConfigError."""
    out: dict[str, Any] = {}
    for key in defaults():
        raw = os.environ.get(env_name(key))
        if raw is not None:
            out[key] = coerce(key, raw)
    return out


class ConfigView:
    """An immutable view of the effective config (flat dict) with attribute-free access."""

    __slots__ = ("values", "sources")

    def __init__(self, values: dict[str, Any], sources: dict[str, str]) -> None:
        self.values = values
        self.sources = sources

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def group(self, prefix: str) -> dict[str, Any]:
        prefix = prefix.rstrip(".") + "."
        return {k[len(prefix):]: v for k, v in self.values.items() if k.startswith(prefix)}


def build_view(saved: dict[str, Any]) -> ConfigView:
    values = dict(defaults())
    sources = {key: "default" for key in values}
    for key, value in flatten(saved).items():
        if key in values:
            try:
                values[key] = coerce(key, value)
                sources[key] = "database"
            except ConfigError:
                pass  # a bad saved value (edited by hand in the DB) never breaks serving; admin shows it
    for key, value in env_overrides().items():
        values[key] = value
        sources[key] = "environment"
    return ConfigView(values, sources)


def _load() -> ConfigView:
    from accounts.models import RuntimeConfig

    row = RuntimeConfig.objects.filter(pk=1).first()
    return build_view(row.data if row else {})


_snapshot: Snapshot[ConfigView] = Snapshot("config", _load)


def config() -> ConfigView:
    return _snapshot.get()


def config_get(key: str) -> Any:
    return _snapshot.get().values[key]


def config_snapshot() -> Snapshot[ConfigView]:
    return _snapshot


def config_validate(flat: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Coerce every key; return (clean values, {key: error}). Dropped keys are skipped silently."""
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in flat.items():
        if key in DROPPED_KEYS or any(key.startswith(d + ".") for d in DROPPED_KEYS):
            continue
        try:
            clean[key] = coerce(key, value)
        except ConfigError as exc:
            errors[key] = exc.message
    return clean, errors


def config_save(*, values: dict[str, Any]) -> None:
    """Persist a flat dict of overrides (already validated) and bump the stamp, atomically."""
    from django.db import transaction

    from accounts.models import RuntimeConfig

    with transaction.atomic():
        row, _ = RuntimeConfig.objects.select_for_update().get_or_create(pk=1)
        merged = flatten(copy.deepcopy(row.data))
        merged.update(values)
        row.data = unflatten(merged)
        row.save()
        stamp_bump("config")
