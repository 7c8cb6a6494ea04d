"""The MongoDB backend of the local store: `mongodb://...` (pymongo); `mongomock://` for its tests.

Per subscription the collection `items_<name>` holds each item as the server sent it, `_id` = its
url, plus `_sync: {type, version, updated_on, deleted}`; `sync_state` holds one document per
subscription (`_id` = name, the fields of `SyncState`).

A delta package is applied all or nothing without multi-document transactions: before a batch
is written, the documents it replaces (or the fact that there were none) go into an undo journal,
`items_<name>__undo`, whose control document names the changeset. The state (one document, so
one atomic write) records the changeset when it commits; then the journal is dropped. A failure
rolls the journal back; a crash leaves it, and the next `begin_changes`, `recover` or pass finds
it: rolled back unless the state says that changeset committed.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

import pymongo
from pymongo import ReplaceOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from ..items import ItemRecord, content_checksum
from ..state import SyncState
from . import Changeset, LocalStore, Staging, StoredItem, StoreError, utcnow

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "termsync_sync"
STATE_COLLECTION = "sync_state"
NOT_IMPLEMENTED = 238  # MongoDB's error code, as FerretDB answers what it lacks
_LIVE_INDEX = [("_sync.type", pymongo.ASCENDING), ("_sync.deleted", pymongo.ASCENDING)]
UNDO_CONTROL = "\x00changeset"  # the undo journal's control document (no url starts with NUL)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def connect(uri: str) -> Any:
    """The database at `mongodb://...` (path = database name), or a fresh in-memory mongomock one."""
    if uri.startswith("mongomock://"):
        import mongomock

        return mongomock.MongoClient()[DEFAULT_DATABASE]
    client: Any = pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10000)
    return client.get_default_database(DEFAULT_DATABASE)


def _wrapped(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn a PyMongoError raised by a store method into a StoreError naming the database."""
    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        """The method, its driver errors turned into StoreError."""
        try:
            return method(*args, **kwargs)
        except PyMongoError as exc:
            store = args[0]
            raise StoreError(f"local database ({getattr(store, 'uri', '?')}): {exc}") from exc
    return wrapper


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


class MongoStore(LocalStore):
    """Items of each subscription in `items_<name>`; state in `sync_state`."""

    def __init__(self, database: Any, uri: str = "mongodb://") -> None:
        self.db = database
        self.uri = uri
        self.states = database[STATE_COLLECTION]
        # mongomock's bulk_write does not accept what current pymongo operations send
        self.embedded = type(database).__module__.startswith("mongomock")

    @classmethod
    def open(cls, uri: str) -> MongoStore:
        """Open the store at `uri`."""
        return cls(connect(uri), uri)

    def close(self) -> None:
        """Close the client."""
        self.db.client.close()

    def items(self, name: str) -> Any:
        """The live item collection of a subscription."""
        return self.db[f"items_{name}"]

    # --- state -----------------------------------------------------------------------------
    @_wrapped
    def load_state(self, name: str) -> SyncState:
        """The saved state of a subscription (an interrupted swap of its items completed)."""
        self._finish_swap(name)
        return SyncState.from_dict(self.states.find_one({"_id": name}))

    @_wrapped
    def save_state(self, name: str, state: SyncState) -> None:
        """Replace the state document in one single-document write."""
        self.states.replace_one({"_id": name}, {"_id": name, **state.to_dict()}, upsert=True)

    # --- full load -------------------------------------------------------------------------
    @_wrapped
    def begin_load(self, name: str) -> Staging:
        """An empty staging collection."""
        staging = self.db[f"items_{name}__loading"]
        staging.drop()
        staging.create_index(_LIVE_INDEX)
        return Staging(name, staging)

    @_wrapped
    def load_batch(self, staging: Staging, records: Iterable[ItemRecord]) -> int:
        """Insert a batch into the staging collection; repeated urls keep the newest."""
        newest = _newest_per_url(records)
        if not newest:
            return 0
        try:
            staging.handle.insert_many([_stored(r) for r in newest.values()], ordered=False)
        except (BulkWriteError, DuplicateKeyError):
            # an export listing one url twice: the newest-wins upsert sorts it out
            self._upsert_newest(staging.handle, newest)
        staging.loaded += len(newest)
        return len(newest)

    @_wrapped
    def finish_load(self, staging: Staging) -> None:
        """Rename the staging collection over the live one (atomic for readers)."""
        try:
            staging.handle.rename(self.items(staging.name).name, dropTarget=True)
        except OperationFailure as exc:
            if exc.code != NOT_IMPLEMENTED:
                raise
            self._swap_in_steps(staging.name)

    def _swap_in_steps(self, name: str) -> None:
        """The swap for servers without renameCollection's dropTarget (FerretDB 1.24): the live
        collection is renamed aside, the staging one into its place, then the old one dropped.
        Readers may find no items between the two renames (milliseconds); a process that dies
        there leaves the collections that `_finish_swap` (run by `load_state`) completes."""
        live, aside = self.items(name).name, f"items_{name}__replaced"
        self.db[aside].drop()
        if live in self.db.list_collection_names():
            self.db[live].rename(aside)
        self.db[f"items_{name}__loading"].rename(live)
        self.db[aside].drop()

    def _finish_swap(self, name: str) -> None:
        """Complete a swap in steps that a dead process left half done (see `_swap_in_steps`)."""
        live, aside, loading = self.items(name).name, f"items_{name}__replaced", \
            f"items_{name}__loading"
        # every name, unfiltered (a few per subscription): mongomock takes no operator in a
        # filter there, and its plain name filter matched a dropped collection
        present = set(self.db.list_collection_names()) & {live, aside, loading}
        if aside not in present:
            return
        if live not in present:
            # the loaded copy was renamed aside, not yet replaced: the staging one is complete
            # (a swap starts only once everything is loaded); without it, the old one goes back
            self.db[loading if loading in present else aside].rename(live)
            logger.warning("[%s] completed an interrupted swap of the local copy", name)
        self.db[aside].drop()

    @_wrapped
    def abandon_load(self, staging: Staging) -> None:
        """Drop the staging collection."""
        staging.handle.drop()

    @_wrapped
    def staged_checksum(self, staging: Staging) -> str:
        """checksums.content of the staging collection (any order: the sum does not care)."""
        return content_checksum((doc["_id"], doc["_sync"]["version"]) for doc in
                                staging.handle.find({"_sync.deleted": False},
                                                    {"_sync.version": 1}))

    # --- all or nothing --------------------------------------------------------------------
    def journal(self, name: str) -> Any:
        """The undo journal of a subscription's changes in progress."""
        return self.db[f"items_{name}__undo"]

    @_wrapped
    def begin_changes(self, name: str) -> Changeset:
        """A fresh journal (after rolling back any a crash left) naming a new changeset."""
        self.recover(name)
        journal = self.journal(name)
        journal.drop()
        changeset = Changeset(name, uuid.uuid4().hex, journal)
        journal.insert_one({"_id": UNDO_CONTROL, "changeset": changeset.id, "started": utcnow()})
        return changeset

    @_wrapped
    def write_changes(self, changeset: Changeset, records: Iterable[ItemRecord]) -> int:
        """Journal what the batch replaces (the first image of a url wins), then replace."""
        newest = _newest_per_url(records)
        if not newest:
            return 0
        live = self.items(changeset.name)
        live.create_index(_LIVE_INDEX)  # a no-op once it exists
        before = {doc["_id"]: doc for doc in live.find({"_id": {"$in": list(newest)}})}
        images = [{"_id": url, "before": before.get(url)} for url in newest]
        try:
            changeset.handle.insert_many(images, ordered=False)
        except (BulkWriteError, DuplicateKeyError) as exc:
            details = getattr(exc, "details", None) or {}
            if any(e.get("code") != 11000 for e in details.get("writeErrors", [])):
                raise
        if self.embedded:
            for url, record in newest.items():
                live.replace_one({"_id": url}, _stored(record), upsert=True)
        else:
            live.bulk_write([ReplaceOne({"_id": url}, _stored(record), upsert=True)
                             for url, record in newest.items()], ordered=False)
        changeset.written += len(newest)
        return len(newest)

    def changed_versions(self, changeset: Changeset, urls: list[str]) -> dict[str, str]:
        """Read from the live collection: the changes are in it."""
        return self.live_versions(changeset.name, urls)

    @_wrapped
    def commit_changes(self, changeset: Changeset, state: SyncState) -> None:
        """The state naming the changeset (the commit point), then the journal goes."""
        state.last_changeset = changeset.id
        self.save_state(changeset.name, state)
        changeset.handle.drop()

    @_wrapped
    def abandon_changes(self, changeset: Changeset) -> None:
        """Put back every journaled document."""
        self._undo(changeset.name)

    @_wrapped
    def recover(self, name: str) -> bool:
        """Roll back a journal a crash left, unless the state says its changeset committed."""
        journal = self.journal(name)
        control = journal.find_one({"_id": UNDO_CONTROL})
        if control is None:
            journal.drop()  # nothing was written under a journal without its control document
            return False
        if self.load_state(name).last_changeset == control["changeset"]:
            journal.drop()  # committed; only the journal's removal was interrupted
            return False
        logger.warning("%s: rolling back changes to %s interrupted on %s", self.uri, name,
                       control.get("started"))
        self._undo(name)
        return True

    def _undo(self, name: str) -> None:
        live = self.items(name)
        journal = self.journal(name)
        for image in journal.find({"_id": {"$ne": UNDO_CONTROL}}):
            if image.get("before") is None:
                live.delete_one({"_id": image["_id"]})
            else:
                live.replace_one({"_id": image["_id"]}, image["before"], upsert=True)
        journal.drop()

    # --- incremental changes ---------------------------------------------------------------
    @_wrapped
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
            return self._replace_one_by_one(collection, replacements)
        operations = [ReplaceOne(query, document, upsert=True) for query, document in replacements]
        try:
            result = collection.bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if others:
                raise
            details = exc.details
            return int(details.get("nMatched", 0)) + int(details.get("nUpserted", 0))
        except KeyError as exc:
            # FerretDB 1.24 answers an update batch whose only errors are duplicate keys without
            # `nModified`, which pymongo's bulk_write needs. The batch is idempotent: the writes
            # it did are redone one by one (each a no-op now) and the others done.
            if exc.args != ("nModified",):
                raise
            return self._replace_one_by_one(collection, replacements)
        return int(result.matched_count + result.upserted_count)

    @staticmethod
    def _replace_one_by_one(collection: Any, replacements: list[tuple[dict[str, Any],
                                                                      dict[str, Any]]]) -> int:
        """The conditional upserts of `_upsert_newest`, one round trip each."""
        written = 0
        for query, document in replacements:
            try:
                collection.replace_one(query, document, upsert=True)
                written += 1
            except DuplicateKeyError:
                pass
        return written

    @_wrapped
    def clear(self, name: str) -> None:
        """Drop the subscription's item collection."""
        self.items(name).drop()

    # --- reading ---------------------------------------------------------------------------
    @_wrapped
    def counts(self, name: str) -> dict[str, int]:
        """Live (not deleted) concepts and mappings, retired ones included."""
        collection = self.items(name)
        return {kind: collection.count_documents({"_sync.type": type_, "_sync.deleted": False})
                for kind, type_ in (("concepts", "Concept"), ("mappings", "Mapping"))}

    def url_versions(self, name: str) -> Iterator[tuple[str, str]]:
        """(url, version) of live items in ascending url order, streamed from the `_id` index."""
        try:
            cursor = self.items(name).find({"_sync.deleted": False}, {"_sync.version": 1})
            if self.embedded:
                # mongomock sorts in Python with a quadratic-ish cost (minutes at 300k); it is
                # in memory anyway, so sorting the pairs here costs no memory it does not use
                yield from sorted((doc["_id"], doc["_sync"]["version"]) for doc in cursor)
                return
            for doc in cursor.sort("_id", pymongo.ASCENDING):
                yield doc["_id"], doc["_sync"]["version"]
        except PyMongoError as exc:
            raise StoreError(f"local database ({self.uri}): {exc}") from exc

    @_wrapped
    def live_versions(self, name: str, urls: list[str]) -> dict[str, str]:
        """The live documents among `urls`, by `_id`."""
        return {doc["_id"]: doc["_sync"]["version"] for doc in self.items(name).find(
            {"_id": {"$in": urls}, "_sync.deleted": False}, {"_sync.version": 1})}

    @_wrapped
    def get_item(self, name: str, url: str) -> StoredItem | None:
        """One stored item (or tombstone) by url."""
        document = self.items(name).find_one({"_id": url})
        if document is None:
            return None
        meta = document.pop("_sync")
        document.pop("_id")
        return StoredItem(url=url, type=meta["type"], version=meta["version"],
                          updated_on=meta["updated_on"], deleted=meta["deleted"],
                          payload=document)
