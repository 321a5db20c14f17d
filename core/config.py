"""Runtime configuration: config.defaults.toml < RuntimeConfig row (admin) < GROK_* environment.

Keys are dotted paths of the defaults file ("chat.timeout", "proxy.egress.mode"). The
environment name of a key is GROK_ + the path upper-cased with dots and dashes as underscores
(GROK_PROXY_EGRESS_MODE). Values are typed by their default: bool, int, float, str, list;
some keys have extra rules (choices, URL schemes, ranges) in `_RULES`.

The RuntimeConfig row (pk=1) holds the saved config as a nested dict. It is created on first
start with a copy of the defaults (`config_seed`); keys missing from it (added by a newer
version) take their default. Secret values (SECRET_KEYS) are stored encrypted ("enc:v1:" +
Fernet, core/crypto.py). The effective source of a key is "environment" when a GROK_*
variable sets it, "database" when the saved value differs from the default, else "default".

Request paths call `config_get(key)` / `config()`: a memory read of the current snapshot, which
reloads when the "config" version stamp moves (core/snapshots.py).

Reference config files (`import_config`): the legacy flat keys `proxy.cf_cookies`,
`proxy.user_agent`, `proxy.cf_clearance` win over their nested `proxy.clearance.*` keys, as in
the reference; `retry.retry_status_codes` is used only when `retry.on_codes` is absent. Keys
dropped by policy (docs/upstream-protocol.md §13) are accepted and ignored with a warning; the `flaresolverr`
clearance mode becomes `none` with a warning.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

from django.conf import settings

from core import crypto
from core.crypto import mask
from core.snapshots import Snapshot, stamp_bump

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value is invalid. `key` is the dotted key; str(exc) is one actionable line."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


# Keys the reference had that this project drops by policy (docs/upstream-protocol.md §13): accepted, ignored, warned.
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

# Reference spellings -> our key. The flat proxy.* aliases win over the nested key (reference
# behaviour); retry.retry_status_codes only fills retry.on_codes when that is absent.
LEGACY_WINNING = {
    "proxy.cf_cookies": "proxy.clearance.cf_cookies",
    "proxy.user_agent": "proxy.clearance.user_agent",
    "proxy.cf_clearance": "proxy.clearance.cf_clearance",
}
LEGACY_FALLBACK = {"retry.retry_status_codes": "retry.on_codes"}

CHOICES: dict[str, tuple[str, ...]] = {
    "features.image_format": ("grok_url", "local_url", "grok_md", "local_md", "base64"),
    "features.video_format": ("grok_url", "local_url", "grok_html", "local_html"),
    "proxy.egress.mode": ("direct", "single_proxy", "proxy_pool"),
    "proxy.clearance.mode": ("none", "manual"),
    "logging.file_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
}

SECRET_KEYS = frozenset(
    {
        "app.api_key",
        "app.app_key",
        "app.webui_key",
        "proxy.clearance.cf_cookies",
        "proxy.clearance.cf_clearance",
        "upstream.static_statsig_id",
        "proxy.egress.proxy_url",
        "proxy.egress.proxy_pool",
        "proxy.egress.resource_proxy_url",
        "proxy.egress.resource_proxy_pool",
    }
)

_HTTP = ("http", "https")
_WS = ("ws", "wss")
_PROXY = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")

# key -> (url schemes) for URL-valued keys (str or list of str); empty values are allowed.
URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "app.app_url": _HTTP,
    "upstream.web_base_url": _HTTP,
    "upstream.assets_base_url": _HTTP,
    "upstream.imagine_public_base_url": _HTTP,
    "upstream.ws_base_url": _WS,
    "upstream.livekit_url": _WS,
    "proxy.egress.proxy_url": _PROXY,
    "proxy.egress.proxy_pool": _PROXY,
    "proxy.egress.resource_proxy_url": _PROXY,
    "proxy.egress.resource_proxy_pool": _PROXY,
}
REQUIRED_URLS = frozenset({"upstream.web_base_url", "upstream.assets_base_url", "upstream.ws_base_url"})

# Lower bounds of integer keys (default bound: 0). Timeouts and concurrencies must be positive.
MIN_INT: dict[str, int] = {"retry.max_retries": 0, "cache.local.image_max_mb": 0, "cache.local.video_max_mb": 0,
                           "account.refresh.on_demand_min_interval_sec": 0, "account.refresh.after_use_min_interval_sec": 0,
                           "responses.retention_days": 1,
                           "usage.raw_retention_days": 0}  # 0 = keep raw usage rows forever (gateway/ledger.py)
MAX_INT: dict[str, int] = {"retry.max_retries": 10, "usage.raw_retention_days": 3650}


def _min_int(key: str) -> int:
    if key in MIN_INT:
        return MIN_INT[key]
    last = key.rsplit(".", 1)[-1]
    if "timeout" in last or "concurrency" in last or last.endswith(("_sec", "max_inflight", "max_files")):
        return 1
    return 0


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


def is_dropped(key: str) -> bool:
    return key in DROPPED_KEYS or any(key.startswith(d + ".") for d in DROPPED_KEYS)


def _check_url(key: str, value: str, schemes: tuple[str, ...]) -> None:
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ConfigError(key, f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}, got {value!r}")


def _check_host_or_cidr(key: str, item: str) -> None:
    try:
        ipaddress.ip_network(item, strict=False)
        return
    except ValueError:
        pass
    if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*(:\d{1,5})?", item):
        raise ConfigError(key, f"expected host names, IP addresses or CIDR ranges, got {item!r}")


def _status_codes(key: str, items: list[Any]) -> list[int]:
    out = []
    for item in items:
        try:
            code = int(str(item).strip())
        except ValueError:
            raise ConfigError(key, f"expected HTTP status codes (100-599), got {item!r}") from None
        if not 100 <= code <= 599:
            raise ConfigError(key, f"expected HTTP status codes (100-599), got {code}")
        out.append(code)
    return out


def coerce(key: str, value: Any) -> Any:
    """Convert `value` (from TOML, JSON, admin form or env text) to the type of the key's default.

    Raises ConfigError with a one-line message naming the expected form.
    """
    if key not in defaults():
        raise ConfigError(key, "unknown key")
    base = defaults()[key]
    out: Any
    if isinstance(base, bool):
        if isinstance(value, bool):
            out = value
        elif isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            out = True
        elif isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
            out = False
        else:
            raise ConfigError(key, f"expected true or false, got {value!r}")
    elif isinstance(base, int):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        try:
            out = int(value.strip()) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected an integer, got {value!r}") from None
        lo, hi = _min_int(key), MAX_INT.get(key)
        if out < lo or (hi is not None and out > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"of at least {lo}"
            raise ConfigError(key, f"expected an integer {bound}, got {out}")
    elif isinstance(base, float):
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected a number, got {value!r}") from None
    elif isinstance(base, list):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    out = json.loads(text)
                except ValueError:
                    raise ConfigError(key, f"expected a JSON list or comma-separated values, got {value!r}") from None
            else:
                out = [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]
        elif isinstance(value, (list, tuple)):
            out = list(value)
        else:
            raise ConfigError(key, f"expected a list, got {value!r}")
        if not isinstance(out, list):
            raise ConfigError(key, f"expected a list, got {value!r}")
        if key == "retry.reset_session_status_codes":
            out = _status_codes(key, out)
        else:
            if any(not isinstance(v, str) for v in out):
                raise ConfigError(key, f"expected a list of strings, got {value!r}")
            out = [v.strip() for v in out if v.strip()]
            if key in URL_SCHEMES:
                for item in out:
                    _check_url(key, item, URL_SCHEMES[key])
            if key == "security.fetch_allowlist":
                for item in out:
                    _check_host_or_cidr(key, item)
    else:
        if isinstance(value, (list, tuple)) and key in ("app.api_key", "retry.on_codes"):
            value = ",".join(str(v) for v in value)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(key, f"expected text, got {value!r}")
        out = str(value).strip()
        if key == "logging.file_level":
            out = out.upper()
        if key == "retry.on_codes":
            codes = _status_codes(key, [p for p in out.split(",") if p.strip()])
            out = ",".join(str(c) for c in codes)
        if key == "app.api_key":
            parts = [p.strip() for p in out.split(",")]
            if out and not all(parts):
                # "," or "a,,b" would silently leave fewer keys than meant, or none: /v1 open.
                raise ConfigError(key, "expected comma-separated keys without empty entries")
            out = ",".join(parts) if out else ""
        if key in URL_SCHEMES and out:
            _check_url(key, out, URL_SCHEMES[key])
        if key in REQUIRED_URLS and not out:
            raise ConfigError(key, f"expected a URL starting with {' or '.join(s + '://' for s in URL_SCHEMES[key])}, got an empty value")
        if key == "proxy.clearance.user_agent" and not out:
            raise ConfigError(key, "expected a User-Agent string, got an empty value")
    choices = CHOICES.get(key)
    if choices and out not in choices:
        raise ConfigError(key, f"expected one of {', '.join(choices)}, got {out!r}")
    return out


ENV_ALIASES = {env_name(old): new for old, new in LEGACY_WINNING.items()}


def env_overrides() -> dict[str, Any]:
    """GROK_* variables that name a known key, coerced. A malformed value raises ConfigError
    whose key is the variable name (so the message names what the operator must fix)."""
    out: dict[str, Any] = {}
    pairs = [(env_name(key), key) for key in defaults()] + list(ENV_ALIASES.items())  # aliases last: they win
    for var, key in pairs:
        raw = os.environ.get(var)
        if raw is None:
            continue
        try:
            out[key] = coerce(key, raw)
        except ConfigError as exc:
            raise ConfigError(var, exc.message) from None
    return out


def env_unknown() -> list[str]:
    """GROK_* variables that name no key (typos); reported as a warning at startup."""
    known = {env_name(key) for key in defaults()} | set(ENV_ALIASES) | {env_name(k) for k in DROPPED_KEYS}
    return sorted(v for v in os.environ if v.startswith("GROK_") and v not in known and not v.startswith("GROK_SIM"))


class ConfigView:
    """An immutable view of the effective config (flat dict) with its sources."""

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


SEALED_PREFIX = "enc:v1:"


def _seal(key: str, value: Any) -> Any:
    """Secret values are stored encrypted in RuntimeConfig.data (core.crypto)."""
    if key not in SECRET_KEYS:
        return value
    if isinstance(value, list):
        return [SEALED_PREFIX + crypto.encrypt(str(v)) for v in value]
    return SEALED_PREFIX + crypto.encrypt(str(value)) if value else value


def _unseal(value: Any) -> Any:
    if isinstance(value, list):
        return [_unseal(v) for v in value]
    if isinstance(value, str) and value.startswith(SEALED_PREFIX):
        return crypto.decrypt(value[len(SEALED_PREFIX):])
    return value  # plain (typed in by hand); sealed on the next save


def saved_values(saved: dict[str, Any]) -> dict[str, Any]:
    """The valid known keys of a saved nested dict, decrypted and coerced. Bad values (edited by
    hand in the database, or sealed with another key) are skipped with a warning: they never
    break serving."""
    out: dict[str, Any] = {}
    for key, value in flatten(saved).items():
        if key in defaults():
            try:
                out[key] = coerce(key, _unseal(value))
            except (ConfigError, ValueError) as exc:
                log.warning("ignoring saved config value %s: %s", key, exc)
    return out


def build_view(saved: dict[str, Any]) -> ConfigView:
    values = dict(defaults())
    sources = {key: "default" for key in values}
    for key, value in saved_values(saved).items():
        values[key] = value
        if value != defaults()[key]:
            sources[key] = "database"
    for key, value in env_overrides().items():
        values[key] = value
        sources[key] = "environment"
    return ConfigView(values, sources)


def _load() -> ConfigView:
    from core.models import RuntimeConfig

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
        if is_dropped(key):
            continue
        try:
            clean[key] = coerce(key, value)
        except ConfigError as exc:
            errors[key] = exc.message
    return clean, errors


def config_saved() -> dict[str, Any]:
    """The saved config (defaults filled in), flat and coerced; read from the database."""
    from core.models import RuntimeConfig

    row = RuntimeConfig.objects.filter(pk=1).first()
    out = dict(defaults())
    out.update(saved_values(row.data if row else {}))
    return out


def config_seed() -> bool:
    """Create the RuntimeConfig row from config.defaults.toml if it does not exist (first start)."""
    from django.db import transaction

    from core.models import RuntimeConfig

    with transaction.atomic():
        _, created = RuntimeConfig.objects.get_or_create(pk=1, defaults={"data": unflatten({k: _seal(k, v) for k, v in defaults().items()})})
        if created:
            stamp_bump("config")
    return created


def config_save(*, values: dict[str, Any]) -> None:
    """Persist a flat dict of values (validated with config_validate), merged into the saved
    config, and bump the stamp, atomically: every process sees it within a poll interval."""
    from django.db import transaction

    from core.models import RuntimeConfig

    clean, errors = config_validate(values)
    if errors:
        key, message = next(iter(errors.items()))
        raise ConfigError(key, message)
    with transaction.atomic():
        row, _ = RuntimeConfig.objects.select_for_update().get_or_create(pk=1, defaults={"data": {}})
        merged = saved_values(row.data)
        merged.update(clean)
        row.data = unflatten({k: _seal(k, v) for k, v in merged.items()})
        row.save()
        stamp_bump("config")


# -- config files (import_config / export_config) --


@dataclass
class ParsedConfig:
    values: dict[str, Any] = field(default_factory=dict)  # flat, coerced, ready for config_save
    unknown: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


MASK_PREFIX = "••••••"


def config_parse_file(tree: dict[str, Any]) -> ParsedConfig:
    """Map a config file (ours or the reference's config.toml) onto our keys, validating all of it."""
    out = ParsedConfig()
    flat = flatten(tree)
    for old, new in LEGACY_FALLBACK.items():
        if old in flat:
            value = flat.pop(old)
            if new in flat:
                out.warnings.append(f"{old}: legacy alias ignored because {new} is also set")
            else:
                flat[new] = value
                out.warnings.append(f"{old}: legacy alias, imported as {new}")
    for old, new in LEGACY_WINNING.items():
        if old in flat:
            flat[new] = flat.pop(old)
            out.warnings.append(f"{old}: legacy flat key, imported as {new} (it wins over {new})")
    if flat.get("proxy.clearance.mode") == "flaresolverr":
        flat["proxy.clearance.mode"] = "none"
        out.warnings.append("proxy.clearance.mode: 'flaresolverr' is not supported by policy (challenges are never solved); imported as 'none'")
    for key in sorted(flat):
        value = flat[key]
        if is_dropped(key):
            out.warnings.append(f"{key}: dropped by policy (no effect), ignored")
            continue
        if key not in defaults():
            out.unknown.append(key)
            continue
        if key in SECRET_KEYS and _is_masked(value):
            out.warnings.append(f"{key}: masked value (from export_config without --include-secrets), current value kept")
            continue
        try:
            out.values[key] = coerce(key, value)
        except ConfigError as exc:
            out.errors[key] = exc.message
    return out


def config_warnings(values: Mapping[str, Any]) -> list[str]:
    """Saved settings that do nothing as they stand (import_config prints them, the admin shows them).

    `values` is an effective config (flat keys; missing keys count as their defaults)."""
    out: list[str] = []
    if values.get("features.stream"):
        out.append("features.stream = true has no effect: a request that omits `stream` always gets JSON, "
                   "the OpenAI and Anthropic default (their SDKs omit it on non-streaming calls); clients ask for "
                   "a stream with stream=true")
    mode = values.get("proxy.clearance.mode") or "none"
    cookies = [k for k in ("proxy.clearance.cf_clearance", "proxy.clearance.cf_cookies") if values.get(k)]
    if cookies and mode != "manual":
        out.append(f"{' and '.join(cookies)} {'is' if len(cookies) == 1 else 'are'} set but proxy.clearance.mode is "
                   f"'{mode}', so {'it is' if len(cookies) == 1 else 'they are'} never sent: set proxy.clearance.mode "
                   "to 'manual' (with proxy.clearance.user_agent, the User-Agent of the browser that got the cookie)")
    return out


def _is_masked(value: Any) -> bool:
    if isinstance(value, str):
        return MASK_PREFIX in value
    if isinstance(value, list):
        return any(isinstance(v, str) and MASK_PREFIX in v for v in value)
    return False


def mask_value(key: str, value: Any) -> Any:
    """A secret key's value as shown in admin and exports: last 4 characters only."""
    if key not in SECRET_KEYS or not value:
        return value
    if isinstance(value, list):
        return [mask(str(v)) for v in value]
    if key == "app.api_key":
        return ",".join(mask(part) for part in str(value).split(","))
    if key.startswith("proxy.egress.") and "://" in str(value):
        return mask_url(str(value))
    return mask(str(value))


def mask_url(url: str) -> str:
    """scheme://host:port with credentials and path hidden (proxy URLs carry passwords)."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return mask(url)
    port = f":{parsed.port}" if parsed.port else ""
    creds = MASK_PREFIX + "@" if parsed.username or parsed.password else ""
    return f"{parsed.scheme}://{creds}{parsed.hostname}{port}"


def config_export(*, include_secrets: bool) -> str:
    """The saved config (defaults + database, not GROK_* overrides) as TOML."""
    import tomli_w

    flat = config_saved()
    if not include_secrets:
        flat = {k: mask_value(k, v) for k, v in flat.items()}
    return tomli_w.dumps(unflatten(flat))
