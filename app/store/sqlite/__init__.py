"""The embedded default backend: every repository in one SQLite file (`sqlite:///path/file.db`)."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from .. import base
from .collections import CollectionEntries, References
from .content import ConsoleSessions, Items, Orgs, Sources, Users, Versions
from .db import SqliteDatabase, migrate
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


class SqliteStore(base.Store):
    """Repositories over one SQLite database file."""

    kind = "sqlite"

    def __init__(self, path: str, synchronous: str = "NORMAL", busy_timeout: float = 30.0) -> None:
        self.path = path
        self.database = SqliteDatabase(path, synchronous, busy_timeout)
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
        migrate(self.database, STEPS)

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
