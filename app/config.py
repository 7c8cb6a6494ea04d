"""Server configuration: code defaults, then a TOML file, then TERMSYNC_* environment, then
overrides; validated in one place, before anything connects, and read as typed settings."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

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
    # The most items one content listing or diff answers (the OpenMRS module asks for 100000).
    "CONTENT_MAX_LIMIT": 100_000,
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
    "IMPORT_MAX_EXPANDED_BYTES": 1024 * 1024 * 1024,
    "IMPORT_MAX_EXPANSION_RATIO": 100,
    "IMPORT_MAX_ACTIVE_JOBS": 3,
    "IMPORT_BATCH_SIZE": 500,
    "IMPORT_UPLOAD_LEASE_SECONDS": 60.0,
    "BACKGROUND_WORKERS": 2,
    "JOB_LEASE_SECONDS": 60.0,
    "JOB_POLL_SECONDS": 1.0,
    "LOG_LEVEL": "INFO",
    # Operations (app/ops; docs/deployment.md explains each).
    "LOG_FORMAT": "text",
    "ACCESS_LOG": True,
    "TRUSTED_PROXIES": 0,
    # The origin clients reach termsync at (https://terms.example.org): every absolute URL names
    # it, whatever Host a request carries. Empty: the request's (docs/deployment.md).
    "PUBLIC_URL": "",
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
    # Webhooks (app/webhooks; docs/security.md, Webhooks).
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": False,
    "WEBHOOK_TIMEOUT_SECONDS": 10.0,
    "WEBHOOK_MAX_ATTEMPTS": 8,
    "WEBHOOK_RETRY_BASE_SECONDS": 10.0,
    "WEBHOOK_RETRY_MAX_SECONDS": 3600.0,
    "WEBHOOK_DISABLE_AFTER": 20,
}

TYPES: dict[str, type] = {key: type(value) for key, value in DEFAULTS.items()}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
    """Reject values that cannot work, with a message that says which key.

    Every check of every feature is here, so that a bad value stops startup before anything
    connects to a database or starts a thread.
    """
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
    if not 0 <= config["PORT"] <= 65535:
        raise ConfigError("PORT must be 0 (any free port) to 65535")
    if config["MAX_CONTENT_LENGTH"] < 1:
        raise ConfigError("MAX_CONTENT_LENGTH must be 1 or more (bytes)")
    if config["CONTENT_MAX_LIMIT"] < 1:
        raise ConfigError("CONTENT_MAX_LIMIT must be 1 or more (items)")
    if config["BACKGROUND_WORKERS"] < 0:
        raise ConfigError("BACKGROUND_WORKERS must be 0 or more")
    token = config["ADMIN_TOKEN"]
    if token and (not 32 <= len(token) <= 256 or not all("!" <= char <= "~" for char in token)):
        raise ConfigError("ADMIN_TOKEN must have 32 to 256 visible ASCII characters, as any "
                          "token someone chooses (docs/security.md); draw one with: python3 -c "
                          "'import secrets; print(secrets.token_urlsafe(32))'")
    if config["JOB_LEASE_SECONDS"] <= 0 or config["JOB_POLL_SECONDS"] <= 0:
        raise ConfigError("JOB_LEASE_SECONDS and JOB_POLL_SECONDS must be positive (seconds)")
    # exports
    if config["EXPORT_STORAGE"] not in ("local", "gridfs"):
        raise ConfigError("EXPORT_STORAGE must be 'local' or 'gridfs'")
    if config["EXPORT_STORAGE"] == "gridfs" and not on_mongo:
        raise ConfigError("EXPORT_STORAGE = 'gridfs' needs a MongoDB DATABASE_URI")
    if not 0 <= config["EXPORT_COMPRESSLEVEL"] <= 9:
        raise ConfigError("EXPORT_COMPRESSLEVEL must be 0 (store) to 9 (smallest)")
    for key in ("EXPORT_HEARTBEAT_ITEMS", "EXPORT_RETRY_AFTER"):
        if config[key] < 1:
            raise ConfigError(f"{key} must be 1 or more")
    for key in ("EXPORT_FAILED_RETRY_SECONDS", "EXPORT_GC_INTERVAL", "EXPORT_GC_GRACE_SECONDS"):
        if config[key] < 0:
            raise ConfigError(f"{key} must be 0 or more (seconds)")
    # bulk imports
    if config["IMPORT_STORAGE"] not in ("local", "mongo"):
        raise ConfigError("IMPORT_STORAGE must be 'local' or 'mongo'")
    if config["IMPORT_STORAGE"] == "mongo" and not on_mongo:
        raise ConfigError("IMPORT_STORAGE = 'mongo' needs a MongoDB DATABASE_URI")
    for key in ("IMPORT_MAX_BYTES", "IMPORT_MAX_LINES", "IMPORT_MAX_LINE_BYTES",
                "IMPORT_MAX_EXPANDED_BYTES", "IMPORT_MAX_EXPANSION_RATIO", "IMPORT_MAX_ACTIVE_JOBS",
                "IMPORT_BATCH_SIZE"):
        if config[key] < 1:
            raise ConfigError(f"{key} must be 1 or more")
    if config["IMPORT_UPLOAD_LEASE_SECONDS"] <= 0:
        raise ConfigError("IMPORT_UPLOAD_LEASE_SECONDS must be positive (seconds)")
    # operations
    if config["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError("LOG_FORMAT must be 'text' or 'json'")
    if str(config["LOG_LEVEL"]).upper() not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    for key in ("RATE_LIMIT_EXPORTS", "RATE_LIMIT_IMPORTS", "RATE_LIMIT_DIFFS", "TRUSTED_PROXIES",
                "READY_MIN_WORKERS", "MAINTENANCE_INTERVAL"):
        if config[key] < 0:
            raise ConfigError(f"{key} must be 0 or more")
    config["PUBLIC_URL"] = public_origin(config["PUBLIC_URL"])
    if config["RATE_LIMIT_WINDOW_SECONDS"] < 1 or config["WORKER_HEARTBEAT_SECONDS"] <= 0:
        raise ConfigError("RATE_LIMIT_WINDOW_SECONDS must be >= 1, WORKER_HEARTBEAT_SECONDS > 0")
    if config["JOB_MAX_ATTEMPTS"] < 1:
        raise ConfigError("JOB_MAX_ATTEMPTS must be 1 or more")
    # webhooks
    if not 0 < config["WEBHOOK_TIMEOUT_SECONDS"] <= 60:
        raise ConfigError("WEBHOOK_TIMEOUT_SECONDS must be more than 0 and at most 60")
    if config["WEBHOOK_MAX_ATTEMPTS"] < 1 or config["WEBHOOK_DISABLE_AFTER"] < 1:
        raise ConfigError("WEBHOOK_MAX_ATTEMPTS and WEBHOOK_DISABLE_AFTER must be 1 or more")
    if not 0 < config["WEBHOOK_RETRY_BASE_SECONDS"] <= config["WEBHOOK_RETRY_MAX_SECONDS"]:
        raise ConfigError("WEBHOOK_RETRY_BASE_SECONDS must be positive and at most "
                          "WEBHOOK_RETRY_MAX_SECONDS")


def public_origin(text: str) -> str:
    """PUBLIC_URL as `scheme://host[:port]` ("" when unset); ConfigError for anything else."""
    value = text.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 \
            or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"PUBLIC_URL={text!r}: expected the origin clients reach termsync at, "
                          "http(s)://host[:port] and nothing after it (the API sits at the root "
                          "of its host: the OpenMRS module counts the slashes of its URLs)")
    return f"{parts.scheme}://{parts.netloc.lower()}"


# --- typed settings: what each part of the app reads, built once from a validated config ---

@dataclass(frozen=True)
class DatabaseSettings:
    """Which database, and how SQLite commits (app/store)."""

    uri: str
    mongo_db: str
    sqlite_synchronous: str
    sqlite_busy_timeout: float


@dataclass(frozen=True)
class JobSettings:
    """The job queue and the worker threads of the web process (app/jobs.py)."""

    background_workers: int
    lease_seconds: float
    poll_seconds: float
    max_attempts: int


@dataclass(frozen=True)
class ExportSettings:
    """Export builds, their storage and their garbage collection (app/exports)."""

    storage: str
    directory: str
    gridfs_bucket: str
    compresslevel: int
    heartbeat_items: int
    retry_after: int
    failed_retry_seconds: float
    on_release: bool
    gc_interval: float
    gc_grace_seconds: float


@dataclass(frozen=True)
class ImportSettings:
    """Bulk-import uploads and the limits of one job and one caller (app/imports)."""

    storage: str
    directory: str
    max_bytes: int
    max_lines: int
    max_line_bytes: int  # also the largest record: a CSV row, an item of an export zip
    max_expanded_bytes: int  # an export zip's export.json, decompressed
    max_expansion_ratio: int  # and past its first 64 MiB, at most this many times its zipped size
    max_active_jobs: int
    batch_size: int
    # An upload's Idempotency-Key claim lasts this long unless the upload renews it (it does
    # while bytes arrive); part files idle for twice this long are collected.
    upload_lease_seconds: float


@dataclass(frozen=True)
class OpsSettings:
    """Logs, proxies, rate limits, probes, heartbeats and maintenance (app/ops)."""

    log_format: str
    log_level: str
    access_log: bool
    trusted_proxies: int
    public_url: str  # the origin of every absolute URL ("": the request's)
    rate_limit_window_seconds: int
    rate_limits: Mapping[str, int]  # bucket ("exports", "imports", "diffs") -> requests a window
    ready_min_workers: int
    worker_heartbeat_seconds: float
    maintenance_interval: float


@dataclass(frozen=True)
class WebhookSettings:
    """Webhook deliveries: SSRF rule, timeout, retries and when a failing hook is switched off
    (app/webhooks)."""

    allow_private_targets: bool
    timeout_seconds: float
    max_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float
    disable_after: int


@dataclass(frozen=True)
class Settings:
    """Every setting of one app, by the part of it that reads them."""

    database: DatabaseSettings
    jobs: JobSettings
    exports: ExportSettings
    imports: ImportSettings
    ops: OpsSettings
    webhooks: WebhookSettings
    admin_user: str
    admin_token: str
    load_demo: bool
    host: str
    port: int
    testing: bool
    content_max_limit: int = 100_000

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """The typed settings of a configuration `load_config` has built and validated."""
        return cls(
            database=DatabaseSettings(config["DATABASE_URI"], config["MONGO_DB"],
                                      config["SQLITE_SYNCHRONOUS"].upper(),
                                      float(config["SQLITE_BUSY_TIMEOUT"])),
            jobs=JobSettings(int(config["BACKGROUND_WORKERS"]), float(config["JOB_LEASE_SECONDS"]),
                             float(config["JOB_POLL_SECONDS"]), int(config["JOB_MAX_ATTEMPTS"])),
            exports=ExportSettings(
                storage=config["EXPORT_STORAGE"], directory=config["EXPORT_DIR"],
                gridfs_bucket=config["EXPORT_GRIDFS_BUCKET"],
                compresslevel=int(config["EXPORT_COMPRESSLEVEL"]),
                heartbeat_items=int(config["EXPORT_HEARTBEAT_ITEMS"]),
                retry_after=int(config["EXPORT_RETRY_AFTER"]),
                failed_retry_seconds=float(config["EXPORT_FAILED_RETRY_SECONDS"]),
                on_release=bool(config["EXPORT_ON_RELEASE"]),
                gc_interval=float(config["EXPORT_GC_INTERVAL"]),
                gc_grace_seconds=float(config["EXPORT_GC_GRACE_SECONDS"])),
            imports=ImportSettings(
                storage=config["IMPORT_STORAGE"], directory=config["IMPORT_DIR"],
                max_bytes=int(config["IMPORT_MAX_BYTES"]), max_lines=int(config["IMPORT_MAX_LINES"]),
                max_line_bytes=int(config["IMPORT_MAX_LINE_BYTES"]),
                max_expanded_bytes=int(config["IMPORT_MAX_EXPANDED_BYTES"]),
                max_expansion_ratio=int(config["IMPORT_MAX_EXPANSION_RATIO"]),
                max_active_jobs=int(config["IMPORT_MAX_ACTIVE_JOBS"]),
                batch_size=int(config["IMPORT_BATCH_SIZE"]),
                upload_lease_seconds=float(config["IMPORT_UPLOAD_LEASE_SECONDS"])),
            ops=OpsSettings(
                log_format=config["LOG_FORMAT"], log_level=str(config["LOG_LEVEL"]).upper(),
                access_log=bool(config["ACCESS_LOG"]),
                trusted_proxies=int(config["TRUSTED_PROXIES"]),
                public_url=str(config["PUBLIC_URL"]),
                rate_limit_window_seconds=int(config["RATE_LIMIT_WINDOW_SECONDS"]),
                rate_limits=MappingProxyType({
                    "exports": int(config["RATE_LIMIT_EXPORTS"]),
                    "imports": int(config["RATE_LIMIT_IMPORTS"]),
                    "diffs": int(config["RATE_LIMIT_DIFFS"])}),
                ready_min_workers=int(config["READY_MIN_WORKERS"]),
                worker_heartbeat_seconds=float(config["WORKER_HEARTBEAT_SECONDS"]),
                maintenance_interval=float(config["MAINTENANCE_INTERVAL"])),
            webhooks=WebhookSettings(
                allow_private_targets=bool(config["WEBHOOK_ALLOW_PRIVATE_TARGETS"]),
                timeout_seconds=float(config["WEBHOOK_TIMEOUT_SECONDS"]),
                max_attempts=int(config["WEBHOOK_MAX_ATTEMPTS"]),
                retry_base_seconds=float(config["WEBHOOK_RETRY_BASE_SECONDS"]),
                retry_max_seconds=float(config["WEBHOOK_RETRY_MAX_SECONDS"]),
                disable_after=int(config["WEBHOOK_DISABLE_AFTER"])),
            admin_user=config["ADMIN_USER"], admin_token=config["ADMIN_TOKEN"],
            load_demo=bool(config["LOAD_DEMO"]), host=config["HOST"], port=int(config["PORT"]),
            testing=bool(config.get("TESTING")),
            content_max_limit=int(config["CONTENT_MAX_LIMIT"]))


SETTINGS = "termsync.settings"


def settings_of(app: Any) -> Settings:
    """The typed settings of an app (`create_app` builds them once, before it connects)."""
    settings: Settings = app.extensions[SETTINGS]
    return settings
