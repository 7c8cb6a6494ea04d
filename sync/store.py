"""The subscriber's local MongoDB: mirrored items per subscription, sync state, checksums."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pymongo
from pymongo import ReplaceOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from .items import TIMESTAMP_FORMAT, ItemRecord, content_checksum

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "termsync_sync"
STATE_COLLECTION = "sync_state"
_LIVE_INDEX = [("_sync.type", pymongo.ASCENDING), ("_sync.deleted", pymongo.ASCENDING)]


def utcnow() -> str:
    """Now as a canonical timestamp."""
    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


def connect(mongo_uri: str) -> Any:
    """The database at `mongodb://...`, or the embedded `mongomock://` one the server uses too
    (in memory, or persisted in a file with `mongomock:///path/mirror.db`)."""
    if mongo_uri.startswith("mongomock://"):
        from app.db import connect as connect_embedded

        _, database, _ = connect_embedded(mongo_uri, DEFAULT_DATABASE)
        return database
    client: Any = pymongo.MongoClient(mongo_uri, tz_aware=True, serverSelectionTimeoutMS=10000)
    return client.get_default_database(DEFAULT_DATABASE)


def _stored(record: ItemRecord) -> dict[str, Any]:
    """The document kept for an item: its payload keyed by url, plus sync metadata."""
    document = {key: value for key, value in record.payload.items() if key != "_id"}
    document["_id"] = record.url
    document["_sync"] = {"type": record.type, "version": record.version,
                         "updated_on": record.updated_on, "deleted": record.deleted}
    return document


def _newest_per_url(records: Iterable[ItemRecord]) -> dict[str, ItemRecord]:
    """One record per url: the newest; on a tie the later one (page order)."""
    newest: dict[str, ItemRecord] = {}
    for record in records:
        current = newest.get(record.url)
        if current is None or record.updated_on >= current.updated_on:
            newest[record.url] = record
    return newest


class LocalStore:
    """Items of each subscription live in `items_<name>`; state in `sync_state`."""

    def __init__(self, database: Any, *, embedded: bool | None = None,
                 mongo_uri: str | None = None) -> None:
        self.db = database
        self.states = database[STATE_COLLECTION]
        if embedded is None:
            embedded = type(database).__module__.startswith("mongomock")
        # mongomock's bulk_write does not accept what current pymongo operations send
        self.embedded = embedded
        self.mongo_uri = mongo_uri

    @classmethod
    def open(cls, mongo_uri: str) -> LocalStore:
        """Open the store at `mongo_uri`."""
        return cls(connect(mongo_uri), embedded=mongo_uri.startswith("mongomock://"),
                   mongo_uri=mongo_uri)

    def close(self) -> None:
        """Flush a persisted embedded database; a no-op for a real MongoDB."""
        if self.embedded and self.mongo_uri:
            from app.db import close_embedded

            close_embedded(self.mongo_uri)

    def items(self, name: str) -> Any:
        """The live item collection of a subscription."""
        return self.db[f"items_{name}"]

    # --- state -----------------------------------------------------------------------------
    def state(self, name: str) -> dict[str, Any]:
        """The saved sync state of a subscription ({} before its first sync)."""
        return self.states.find_one({"_id": name}) or {}

    def save_state(self, name: str, **fields: Any) -> None:
        """Set some state fields (None values are stored as null)."""
        self.states.update_one({"_id": name}, {"$set": fields}, upsert=True)

    # --- full load (first sync) ------------------------------------------------------------
    def begin_load(self, name: str) -> Any:
        """An empty staging collection; the live copy stays readable until finish_load."""
        staging = self.db[f"items_{name}__loading"]
        staging.drop()
        staging.create_index(_LIVE_INDEX)
        return staging

    def load_batch(self, staging: Any, records: Iterable[ItemRecord]) -> int:
        """Insert a batch into the staging collection; repeated urls keep the newest."""
        newest = _newest_per_url(records)
        if not newest:
            return 0
        try:
            staging.insert_many([_stored(r) for r in newest.values()], ordered=False)
        except (BulkWriteError, DuplicateKeyError):
            # an export listing one url twice: the newest-wins upsert sorts it out
            self._upsert_newest(staging, newest)
        return len(newest)

    def finish_load(self, name: str, staging: Any) -> None:
        """Swap the staging collection in as the live copy, atomically for readers."""
        staging.rename(self.items(name).name, dropTarget=True)

    def abandon_load(self, staging: Any) -> None:
        """Drop a staging collection left by a failed or stopped load."""
        staging.drop()

    # --- incremental changes ---------------------------------------------------------------
    def apply_changes(self, name: str, records: Iterable[ItemRecord]) -> int:
        """Upsert items (and tombstones) unless the local copy is newer; idempotent."""
        collection = self.items(name)
        collection.create_index(_LIVE_INDEX)  # a no-op once it exists
        return self._upsert_newest(collection, _newest_per_url(records))

    def _upsert_newest(self, collection: Any, newest: dict[str, ItemRecord]) -> int:
        """Replace each item unless the local copy has a newer `updated_on`.

        The condition sits in the filter, so a newer local item makes the upsert collide on
        `_id` (duplicate key) and nothing is written: one round trip, no read-modify-write race.
        """
        replacements = [({"_id": url, "_sync.updated_on": {"$lte": record.updated_on}},
                         _stored(record)) for url, record in newest.items()]
        if not replacements:
            return 0
        if self.embedded:
            written = 0
            for query, document in replacements:
                try:
                    collection.replace_one(query, document, upsert=True)
                    written += 1
                except DuplicateKeyError:
                    pass
            return written
        operations = [ReplaceOne(query, document, upsert=True) for query, document in replacements]
        try:
            result = collection.bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if others:
                raise
            details = exc.details
            return int(details.get("nMatched", 0)) + int(details.get("nUpserted", 0))
        return result.matched_count + result.upserted_count

    # --- reading ---------------------------------------------------------------------------
    def counts(self, name: str) -> dict[str, int]:
        """Live (not deleted) concepts and mappings, retired ones included."""
        collection = self.items(name)
        return {kind: collection.count_documents({"_sync.type": type_, "_sync.deleted": False})
                for kind, type_ in (("concepts", "Concept"), ("mappings", "Mapping"))}

    def url_versions(self, name: str) -> Iterator[tuple[str, str]]:
        """(url, version) of live items in ascending url order (binary order, as the server)."""
        cursor = self.items(name).find({"_sync.deleted": False}, {"_sync.version": 1})
        if self.embedded:
            # mongomock's sort is quadratic-ish (minutes at 300k); the embedded database lives
            # in this process anyway, so sorting the pairs here costs no memory it does not use
            yield from sorted((doc["_id"], doc["_sync"]["version"]) for doc in cursor)
            return
        for doc in cursor.sort("_id", pymongo.ASCENDING):  # the _id index: streamed, in order
            yield doc["_id"], doc["_sync"]["version"]

    def checksum(self, name: str) -> str:
        """The local `checksums.content`, computed as the server computes it."""
        return content_checksum(self.url_versions(name))

    def get_item(self, name: str, url: str) -> dict[str, Any] | None:
        """One stored item (or tombstone) by url."""
        return self.items(name).find_one({"_id": url})
