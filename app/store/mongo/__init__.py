"""The scale-out backend: every repository in a MongoDB database (`mongodb://...`).

`mongomock://` gives the same repositories over an in-process mongomock database: it exists to run
the contract and HTTP suites against this backend without a server, never for real use.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymongo
from pymongo.errors import ConnectionFailure

from .. import interfaces
from .collections import CollectionEntries, References
from .content import ConsoleSessions, Items, Orgs, Sources, Users, Versions
from .files import GRIDFS_CHUNK_SIZE, UPLOAD_CHUNK_SIZE, GridFSStorage, MongoUploads
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

# One mongomock client per URI, so that several apps in one process (tests of scale-out) share
# a database as processes share a real MongoDB.
_MOCK_CLIENTS: dict[str, Any] = {}
_MOCK_GUARD = threading.Lock()


def connect(uri: str) -> Any:
    """A pymongo client for `mongodb://` / `mongodb+srv://`, or a shared mongomock one."""
    if uri.startswith("mongomock://"):
        try:
            import mongomock
        except ImportError:  # a test dependency only: a server never needs it
            raise ValueError(f"{uri!r}: mongomock:// is an in-process fake for tests; "
                             "install the test extras ('.[test]') to use it") from None

        with _MOCK_GUARD:
            if uri not in _MOCK_CLIENTS:
                _MOCK_CLIENTS[uri] = mongomock.MongoClient(tz_aware=True)
            return _MOCK_CLIENTS[uri]
    return pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)


class MongoStore(interfaces.Store):
    """Repositories over one MongoDB database."""

    kind = "mongodb"

    def __init__(self, uri: str, db_name: str) -> None:
        self.uri = uri
        self.client = connect(uri)
        self.db = self.client[db_name]
        self.db_name = db_name
        self.closed = False
        self.users = Users(self.db)
        self.orgs = Orgs(self.db)
        self.sources = Sources(self.db)
        self.versions = Versions(self.db)
        self.items = Items(self.db, self.sources)
        self.jobs = Jobs(self.db)
        self.exports = ExportRecords(self.db)
        self.import_results = ImportResults(self.db)
        self.import_keys = IdempotencyKeys(self.db)
        self.leases = Leases(self.db)
        self.heartbeats = Heartbeats(self.db)
        self.rate_counters = RateCounters(self.db)
        self.console_sessions = ConsoleSessions(self.db)
        self.references = References(self.db, self.sources)
        self.collection_entries = CollectionEntries(self.db, self.sources, self.items)
        self.webhooks = Webhooks(self.db)
        self.webhook_deliveries = WebhookDeliveries(self.db)
        # Writes to one source are serialised within a process; across processes the heads'
        # compare-and-swap guards items and a cut settles writes in flight.
        self._source_locks: defaultdict[str, threading.RLock] = defaultdict(threading.RLock)
        self._locks_guard = threading.Lock()

    def ensure_schema(self) -> None:
        for repository in (self.users, self.orgs, self.sources, self.versions, self.items,
                           self.jobs, self.exports, self.import_results, self.import_keys,
                           self.heartbeats, self.rate_counters, self.console_sessions,
                           self.references, self.collection_entries, self.webhooks,
                           self.webhook_deliveries):
            ensure = getattr(repository, "ensure_indexes", None)
            if ensure is not None:
                ensure()

    @contextmanager
    def transaction(self, source_url: str | None = None) -> Iterator[None]:
        if source_url is None:
            yield
            return
        with self._locks_guard:
            lock = self._source_locks[source_url]
        with lock:
            yield

    def ping(self) -> None:
        self.db.command("ping")

    def is_unavailable(self, error: BaseException) -> bool:
        return isinstance(error, ConnectionFailure)

    def close(self) -> None:
        self.closed = True
        if not self.uri.startswith("mongomock://"):
            self.client.close()

    def drop(self) -> None:
        self.client.drop_database(self.db_name)

    def export_files(self, bucket: str, temp_directory: str, *,
                     chunk_size: int = GRIDFS_CHUNK_SIZE) -> GridFSStorage:
        storage = GridFSStorage(self.db, bucket, chunk_size, temp_directory)
        storage.ensure_indexes()
        return storage

    def import_uploads(self, *, chunk_size: int = UPLOAD_CHUNK_SIZE) -> MongoUploads:
        return MongoUploads(self.db, chunk_size)
