"""Server configuration: code defaults, then a TOML file, then TERMSYNC_* environment, then overrides."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)


class ConfigError(Exception):
    """A configuration value is missing or wrong; startup stops with this message."""


# Every key, its default and its type. config.example.toml documents each one.
DEFAULTS: dict[str, Any] = {
    "DATABASE_URI": "sqlite:///var/termsync.db",
    "MONGO_URI": "",  # the old name of DATABASE_URI, still read when DATABASE_URI is not set
    "MONGO_DB": "termsync",
    "SQLITE_SYNCHRONOUS": "NORMAL",
    "SQLITE_BUSY_TIMEOUT": 30.0,
    "ADMIN_USER": "admin",
    "ADMIN_TOKEN": "",
    "LOAD_DEMO": False,
    "HOST": "127.0.0.1",
    "PORT": 8000,
    # Flask refuses larger request bodies with 413; bulk-import uploads have their own limit.
    "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    "EXPORT_DIR": "var/exports",
    "EXPORT_STORAGE": "local",
    "EXPORT_GRIDFS_BUCKET": "exports_fs",
    "EXPORT_COMPRESSLEVEL": 6,
    "EXPORT_HEARTBEAT_ITEMS": 1000,
    "EXPORT_RETRY_AFTER": 5,
    "EXPORT_FAILED_RETRY_SECONDS": 300.0,
    "EXPORT_ON_RELEASE": True,
    "EXPORT_GC_INTERVAL": 3600.0,
    "EXPORT_GC_GRACE_SECONDS": 3600.0,
    "IMPORT_STORAGE": "local",
    "IMPORT_DIR": "var/imports",
    "IMPORT_MAX_BYTES": 512 * 1024 * 1024,
    "IMPORT_MAX_LINES": 2_000_000,
    "IMPORT_MAX_LINE_BYTES": 4 * 1024 * 1024,
    "IMPORT_MAX_ACTIVE_JOBS": 3,
    "IMPORT_BATCH_SIZE": 500,
    "BACKGROUND_WORKERS": 2,
    "JOB_LEASE_SECONDS": 60.0,
    "JOB_POLL_SECONDS": 1.0,
    "LOG_LEVEL": "INFO",
    # Operations (app/ops; docs/deployment.md explains each).
    "LOG_FORMAT": "text",
    "ACCESS_LOG": True,
    "TRUSTED_PROXIES": 0,
    "RATE_LIMIT_WINDOW_SECONDS": 60,
    "RATE_LIMIT_EXPORTS": 0,
    "RATE_LIMIT_IMPORTS": 0,
    "RATE_LIMIT_DIFFS": 0,
    "READY_MIN_WORKERS": 0,
    "WORKER_HEARTBEAT_SECONDS": 10.0,
    "MAINTENANCE_INTERVAL": 300.0,
    "JOB_MAX_ATTEMPTS": 5,
    # The web console (app/console; docs/console.md).
    "CONSOLE_ENABLED": True,
    "CONSOLE_SESSION_HOURS": 12.0,
    "CONSOLE_PAGE_SIZE": 50,
    "CONSOLE_POLL_SECONDS": 1.0,
    "CONSOLE_SEARCH_COUNT_LIMIT": 1000,
}

TYPES: dict[str, type] = {key: type(value) for key, value in DEFAULTS.items()}


def _coerce(key: str, value: Any) -> Any:
    """Turn a TOML or environment value into the type the default has."""
    wanted = TYPES.get(key)
    if wanted is None or (isinstance(value, wanted) and not (wanted is int and isinstance(value, bool))):
        return value
    text = str(value).strip()
    try:
        if wanted is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if wanted is int:
            return int(text)
        if wanted is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"config {key}: expected {wanted.__name__}, got {value!r}") from None
    return text


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the configuration from all layers; raise ConfigError on a bad file or value."""
    config = dict(DEFAULTS)
    explicit: set[str] = set()
    path = os.environ.get("TERMSYNC_CONFIG")
    if path:
        try:
            with open(path, "rb") as handle:
                document = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError(f"TERMSYNC_CONFIG={path}: cannot read ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"TERMSYNC_CONFIG={path}: invalid TOML ({exc})") from None
        server = document.get("server", {})
        if not isinstance(server, dict):
            raise ConfigError(f"TERMSYNC_CONFIG={path}: [server] must be a table")
        for key, value in server.items():
            name = key.upper()
            if name not in DEFAULTS:
                raise ConfigError(f"TERMSYNC_CONFIG={path}: unknown key [server] {key}")
            config[name] = _coerce(name, value)
            explicit.add(name)
    for name in DEFAULTS:
        env_value = os.environ.get(f"TERMSYNC_{name}")
        if env_value is not None:
            config[name] = _coerce(name, env_value)
            explicit.add(name)
    for key, value in (overrides or {}).items():
        config[key] = _coerce(key, value)
        explicit.add(key)
    if config["MONGO_URI"] and "DATABASE_URI" not in explicit:
        config["DATABASE_URI"] = config["MONGO_URI"]
    _validate(config)
    return config


def _validate(config: dict[str, Any]) -> None:
    """Reject values that cannot work, with a message that says which key."""
    uri = config["DATABASE_URI"]
    if uri.startswith("sqlite://"):
        if not uri.startswith("sqlite:///") or len(uri) == len("sqlite:///"):
            raise ConfigError(f"DATABASE_URI={uri!r}: expected sqlite:///relative/path.db or "
                              "sqlite:////absolute/path.db")
    elif not uri.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
        raise ConfigError(f"DATABASE_URI={uri!r}: expected sqlite:///path/termsync.db, "
                          "mongodb://... (or mongomock:// in tests)")
    on_mongo = not uri.startswith("sqlite://")
    if config["SQLITE_SYNCHRONOUS"].upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError("SQLITE_SYNCHRONOUS must be NORMAL (a committed write survives a crash "
                          "of any process) or FULL (also a power loss); OFF and EXTRA exist too")
    if config["SQLITE_BUSY_TIMEOUT"] <= 0:
        raise ConfigError("SQLITE_BUSY_TIMEOUT must be positive (seconds)")
    if config["EXPORT_STORAGE"] not in ("local", "gridfs"):
        raise ConfigError("EXPORT_STORAGE must be 'local' or 'gridfs'")
    if config["EXPORT_STORAGE"] == "gridfs" and not on_mongo:
        raise ConfigError("EXPORT_STORAGE = 'gridfs' needs a MongoDB DATABASE_URI")
    if config["IMPORT_STORAGE"] not in ("local", "mongo"):
        raise ConfigError("IMPORT_STORAGE must be 'local' or 'mongo'")
    if config["IMPORT_STORAGE"] == "mongo" and not on_mongo:
        raise ConfigError("IMPORT_STORAGE = 'mongo' needs a MongoDB DATABASE_URI")
    if config["MAX_CONTENT_LENGTH"] < 1:
        raise ConfigError("MAX_CONTENT_LENGTH must be 1 or more (bytes)")
    if config["BACKGROUND_WORKERS"] < 0:
        raise ConfigError("BACKGROUND_WORKERS must be 0 or more")
