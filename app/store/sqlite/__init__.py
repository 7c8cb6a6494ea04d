"""The embedded default backend: every repository in one SQLite file (`sqlite:///path/file.db`)."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from ...faults import DATABASE, FAULT_ERRNOS, StorageFault
from .. import base, interfaces
from .collections import CollectionEntries, References
from .content import ConsoleSessions, Items, Orgs, Sources, Users, Versions
from .db import SqliteDatabase, diagnose, migrate
from .schema import STEPS
from .webhooks import WebhookDeliveries, Webhooks
from .work import (
    ExportRecords,
    Heartbeats,
    IdempotencyKeys,
    ImportResults,
    Jobs,
    Leases,
    RateCounters,
)

logger = logging.getLogger(__name__)

# Errors that mean "busy or unreachable", not "a bug": the HTTP layer answers 503 + Retry-After.
UNAVAILABLE_MESSAGES = ("database is locked", "database is busy", "disk i/o error",
                        "unable to open database", "database or disk is full")
# SQLite's words for a storage fault (app/faults.py): the disk is full, the file or its
# directory cannot be written. Which one, and why, is read from the filesystem (`diagnose`).
FULL = "database or disk is full"
NOT_WRITABLE = ("attempt to write a readonly database", "unable to open database",
                "disk i/o error")


class SqliteStore(interfaces.Store):
    """Repositories over one SQLite database file."""

    kind = "sqlite"

    def __init__(self, path: str, synchronous: str = "NORMAL", busy_timeout: float = 30.0) -> None:
        self.path = path
        try:
            self.database = SqliteDatabase(path, synchronous, busy_timeout)
        except OSError as exc:  # its directory cannot be created
            raise self._unusable(exc) from exc
        self.users = Users(self.database)
        self.orgs = Orgs(self.database)
        self.sources = Sources(self.database)
        self.versions = Versions(self.database)
        self.items = Items(self.database)
        self.jobs = Jobs(self.database)
        self.exports = ExportRecords(self.database)
        self.import_results = ImportResults(self.database)
        self.import_keys = IdempotencyKeys(self.database)
        self.leases = Leases(self.database)
        self.heartbeats = Heartbeats(self.database)
        self.rate_counters = RateCounters(self.database)
        self.console_sessions = ConsoleSessions(self.database)
        self.references = References(self.database)
        self.collection_entries = CollectionEntries(self.database, self.items)
        self.webhooks = Webhooks(self.database)
        self.webhook_deliveries = WebhookDeliveries(self.database)

    def ensure_schema(self) -> None:
        """Create or upgrade the schema, and write once: a file that cannot be opened or
        written stops startup with its path and the cause (not "unable to open database")."""
        try:
            migrate(self.database, STEPS)
        except sqlite3.DatabaseError as exc:
            self.database.close()
            raise self._unusable(exc) from exc

    def _unusable(self, error: BaseException) -> base.DatabaseUnusable:
        found = diagnose(self.path)
        cause = f"{found[2]} ({found[0]})" if found else "SQLite cannot use it"
        said = f"; SQLite said: {error}" if isinstance(error, sqlite3.Error) else ""
        return base.DatabaseUnusable(
            f"cannot use the SQLite database {os.path.abspath(self.path)}: {cause}{said}")

    def fault_of(self, error: BaseException) -> StorageFault | None:
        if not isinstance(error, sqlite3.OperationalError):
            return None
        text = str(error).lower()
        path = os.path.abspath(self.path)
        if FULL in text:
            return StorageFault(DATABASE, "ENOSPC", FAULT_ERRNOS[errno.ENOSPC], path)
        if not any(words in text for words in NOT_WRITABLE):
            return None
        found = diagnose(self.path)
        if found is not None:
            return StorageFault(DATABASE, found[0], found[1], path)
        if "readonly" in text:
            return StorageFault(DATABASE, "EROFS", "the database is read-only", path)
        return None  # busy or flaky, as far as anyone can tell: 503 as unavailable

    def writable_path(self) -> str | None:
        return os.path.abspath(self.path)

    @contextmanager
    def transaction(self, source_url: str | None = None) -> Iterator[None]:
        with self.database.transaction(savepoint=True):
            yield

    def ping(self) -> None:
        self.database.one("SELECT 1")

    def is_unavailable(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.OperationalError) and any(
            message in str(error).lower() for message in UNAVAILABLE_MESSAGES)

    def close(self) -> None:
        self.database.close()

    def drop(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(self.path + suffix)
            except FileNotFoundError:
                pass
