"""Subscriber configuration: TOML `[[subscriptions]]` plus `TERMSYNC_SYNC_*` environment overrides."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .store import check_database_uri

logger = logging.getLogger(__name__)

ENV_PREFIX = "TERMSYNC_SYNC_"
MODES = ("release", "snapshot")
SERVER_KINDS = ("auto", "termsync", "ocl")
DEFAULT_DATABASE_URI = "sqlite:///var/termsync-sync.db"
# old key names that keep working: old name -> key
ALIASES = {"mongo_uri": "database_uri"}
_INTERVAL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_INTERVAL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Subscription:
    """One followed source: where it lives, how to follow it, where to keep it."""

    name: str
    server: str
    url: str
    token: str | None = None
    mode: str = "release"
    interval: float | None = 3600.0
    cron: str | None = None
    database_uri: str = DEFAULT_DATABASE_URI
    server_kind: str = "auto"
    page_size: int = 500
    overlap_seconds: float = 60.0
    timeout: float = 60.0
    connect_timeout: float = 10.0
    max_retries: int = 6
    backoff_max: float = 300.0
    export_wait: float = 3600.0
    misfire_grace_time: int = 3600
    batch_size: int = 1000
    work_dir: str | None = None
    hook_secret: str | None = None  # the webhook secret `listen` checks deliveries with

    @property
    def source_url(self) -> str:
        """Absolute URL of the followed source (its HEAD)."""
        return self.server.rstrip("/") + self.url


@dataclass(frozen=True)
class ListenSettings:
    """The `[listen]` table of `termsync-sync listen`: where its webhook endpoint listens, and
    how far a delivery's timestamp may be from this clock (seconds)."""

    host: str = "127.0.0.1"
    port: int = 8765
    replay_window: float = 300.0


@dataclass(frozen=True)
class SyncConfig:
    """All subscriptions of one subscriber instance (and its webhook endpoint, if any)."""

    subscriptions: list[Subscription] = field(default_factory=list)
    listen: ListenSettings | None = None

    def select(self, names: list[str] | None) -> list[Subscription]:
        """The subscriptions named (all when `names` is empty); unknown names are an error."""
        if not names:
            return list(self.subscriptions)
        known = {s.name: s for s in self.subscriptions}
        missing = [n for n in names if n not in known]
        if missing:
            raise ConfigError(f"unknown subscription(s): {', '.join(missing)}; "
                              f"configured: {', '.join(known) or 'none'}")
        return [known[n] for n in names]


_FIELD_TYPES = {f.name: f.type for f in fields(Subscription)}


def parse_interval(value: Any) -> float:
    """Seconds from `3600`, `"90s"`, `"30m"`, `"1h"` or `"1d"`."""
    if isinstance(value, bool):
        raise ConfigError(f"interval {value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _INTERVAL_RE.match(str(value))
        if not match:
            raise ConfigError(f"interval {value!r} is not a duration like '90s', '30m', '1h', '1d'")
        seconds = float(match.group(1)) * _INTERVAL_UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ConfigError(f"interval {value!r} must be positive")
    return seconds


def _coerce(name: str, key: str, value: Any) -> Any:
    """Convert one raw TOML/env value to the field's type, or raise ConfigError."""
    kind = _FIELD_TYPES[key]
    where = f"subscription {name!r}: {key}"
    if key == "interval":
        try:
            return None if value in (None, "") else parse_interval(value)
        except ConfigError as exc:
            raise ConfigError(f"subscription {name!r}: {exc}") from None
    try:
        if "int" in kind:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if "float" in kind:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} = {value!r} is not a number") from None
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} = {value!r} must be a string")
    return value


def _env_key(name: str) -> str:
    """The environment-variable infix of a subscription name (`ciel-mirror` -> `CIEL_MIRROR`)."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _env_overrides(name: str, environ: Mapping[str, str]) -> dict[str, str]:
    """`TERMSYNC_SYNC_<KEY>` (every subscription) then `TERMSYNC_SYNC_<NAME>_<KEY>` (one)."""
    found: dict[str, str] = {}
    for prefix in (ENV_PREFIX, f"{ENV_PREFIX}{_env_key(name)}_"):
        for key in (*ALIASES, *_FIELD_TYPES):
            if key == "name":
                continue
            value = environ.get(prefix + key.upper())
            if value is not None:
                found[ALIASES.get(key, key)] = value
    return found


def _validate(sub: Subscription) -> Subscription:
    """Check one subscription; normalise URLs; raise ConfigError with a clear message."""
    where = f"subscription {sub.name!r}"
    if not _NAME_RE.match(sub.name):
        raise ConfigError(f"{where}: name may hold only letters, digits, '.', '_' and '-'")
    parts = urlsplit(sub.server or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where}: server = {sub.server!r} must be an http(s) URL like "
                          "'https://terms.example.org'")
    url = sub.url or ""
    if not url.startswith("/") or "/sources/" not in url:
        raise ConfigError(f"{where}: url = {url!r} must be a source path like "
                          "'/orgs/CIEL/sources/CIEL/'")
    if not url.endswith("/"):
        url += "/"
    if sub.mode not in MODES:
        raise ConfigError(f"{where}: mode = {sub.mode!r} must be one of {', '.join(MODES)}")
    interval, cron = sub.interval, sub.cron
    if cron:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(cron)
        except ValueError as exc:
            raise ConfigError(f"{where}: cron = {cron!r} is not a crontab expression: {exc}") from None
        interval = None
    elif interval is None:
        interval = 3600.0
    if not 1 <= sub.page_size <= 500:
        raise ConfigError(f"{where}: page_size = {sub.page_size} must be between 1 and 500")
    for key in ("overlap_seconds", "timeout", "connect_timeout", "backoff_max", "export_wait"):
        if getattr(sub, key) < 0 or (key.endswith("timeout") and getattr(sub, key) == 0):
            raise ConfigError(f"{where}: {key} = {getattr(sub, key)} must be positive")
    if sub.max_retries < 0 or sub.batch_size < 1 or sub.misfire_grace_time < 1:
        raise ConfigError(f"{where}: max_retries must be >= 0, batch_size and "
                          "misfire_grace_time >= 1")
    if sub.hook_secret is not None and len(sub.hook_secret) < 16:
        raise ConfigError(f"{where}: hook_secret must have 16 characters or more (the webhook's "
                          "secret, as the server showed it)")
    if sub.server_kind not in SERVER_KINDS:
        raise ConfigError(f"{where}: server_kind = {sub.server_kind!r} must be one of "
                          f"{', '.join(SERVER_KINDS)}")
    try:
        check_database_uri(sub.database_uri)
    except ValueError as exc:
        raise ConfigError(f"{where}: database_uri = {exc}") from None
    return replace(sub, server=sub.server.rstrip("/"), url=url, interval=interval, cron=cron or None)


def build_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> SyncConfig:
    """Build and validate a SyncConfig from parsed TOML data and environment overrides."""
    environ = os.environ if environ is None else environ
    raw_subs = data.get("subscriptions", [])
    if not isinstance(raw_subs, list):
        raise ConfigError("'subscriptions' must be an array of tables: [[subscriptions]]")
    subs: list[Subscription] = []
    for index, raw in enumerate(raw_subs):
        if not isinstance(raw, dict):
            raise ConfigError(f"subscriptions[{index}] must be a table")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"subscriptions[{index}] needs a name")
        unknown = sorted(set(raw) - set(_FIELD_TYPES) - set(ALIASES))
        if unknown:
            raise ConfigError(f"subscription {name!r}: unknown key(s) {', '.join(unknown)}")
        both = [old for old, new in ALIASES.items() if old in raw and new in raw]
        if both:
            raise ConfigError(f"subscription {name!r}: {both[0]} is the old name of "
                              f"{ALIASES[both[0]]}; give only one")
        raw = {ALIASES.get(key, key): value for key, value in raw.items()}
        merged: dict[str, Any] = {**raw, **_env_overrides(name, environ)}
        if "cron" in merged and merged["cron"] and "interval" not in raw:
            merged["interval"] = None
        for key in ("server", "url"):
            if not merged.get(key):
                raise ConfigError(f"subscription {name!r} needs '{key}'")
        values = {key: _coerce(name, key, value) for key, value in merged.items() if key != "name"}
        subs.append(_validate(Subscription(name=name, **values)))
    names = [s.name for s in subs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"subscription names must be unique; repeated: {', '.join(duplicates)}")
    return SyncConfig(subscriptions=subs, listen=_listen(data.get("listen")))


def _listen(raw: Any) -> ListenSettings | None:
    """The `[listen]` table: `bind = "host:port"` and `replay_window` (seconds)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("[listen] must be a table")
    unknown = sorted(set(raw) - {"bind", "replay_window"})
    if unknown:
        raise ConfigError(f"[listen]: unknown key(s) {', '.join(unknown)}")
    bind = str(raw.get("bind", "127.0.0.1:8765"))
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"[listen] bind = {bind!r} must be 'host:port', e.g. '0.0.0.0:8765'")
    window = raw.get("replay_window", 300.0)
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window <= 86400:
        raise ConfigError("[listen] replay_window must be seconds, more than 0 and at most 86400")
    return ListenSettings(host.strip("[]"), int(port), float(window))


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> SyncConfig:
    """Read a TOML config file, apply environment overrides and validate it."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    config = build_config(data, environ)
    if not config.subscriptions:
        raise ConfigError(f"config file {file} has no [[subscriptions]]")
    return config
