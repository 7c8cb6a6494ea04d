"""The subscriber's local database: one interface, a SQLite and a MongoDB backend chosen by URI.

`sqlite:///path/mirror.db` (the default, `sync/store/sqlite.py`) or `mongodb://...`
(`sync/store/mongo.py`; `mongomock://` is an in-memory MongoDB for that backend's tests). Both keep
each subscription's concepts and mappings exactly as the server sent them, deleted items as
tombstones, and the subscription's `SyncState`; both pass `tests/sync/test_store_contract.py`.

Three ways in: a first sync's load into a staging area swapped in whole (`begin_load`); a diff
page applied idempotently, newest wins (`apply_changes`); and a delta package applied all or
nothing (`begin_changes`): SQLite holds one transaction open until it commits with the state,
MongoDB keeps an undo journal that a failure (or the next open, after a crash) rolls back.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..items import TIMESTAMP_FORMAT, ItemRecord, content_checksum
from ..state import SyncState

logger = logging.getLogger(__name__)

SCHEMES = ("sqlite:///", "mongodb://", "mongodb+srv://", "mongomock://")


class StoreError(Exception):
    """The local database failed; the message names the database and the cause."""


def utcnow() -> str:
    """Now as a canonical timestamp."""
    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


@dataclass(frozen=True)
class StoredItem:
    """One stored concept or mapping (or its tombstone) with the server's payload."""

    url: str
    type: str
    version: str
    updated_on: str
    deleted: bool
    payload: dict[str, Any]


@dataclass
class Changeset:
    """Changes applied all or nothing (a delta package): invisible to readers (SQLite) or
    undone (MongoDB) unless committed, with the state that records them."""

    name: str
    id: str
    handle: Any = None
    written: int = 0


@dataclass
class Staging:
    """A first sync's load in progress: invisible to readers until `finish_load`."""

    name: str
    handle: Any = None
    loaded: int = 0


class LocalStore(ABC):
    """Mirrored items per subscription, their sync state, counts and checksums.content."""

    uri: str

    # --- state -----------------------------------------------------------------------------
    @abstractmethod
    def load_state(self, name: str) -> SyncState:
        """The saved state of a subscription (an empty SyncState before its first sync)."""

    @abstractmethod
    def save_state(self, name: str, state: SyncState) -> None:
        """Save a subscription's whole state in one write."""

    # --- full load (first sync) ------------------------------------------------------------
    @abstractmethod
    def begin_load(self, name: str) -> Staging:
        """An empty staging area; the live copy stays readable and unchanged until finish_load."""

    @abstractmethod
    def load_batch(self, staging: Staging, records: Iterable[ItemRecord]) -> int:
        """Write a batch into the staging area (one transaction); repeated urls keep the newest."""

    @abstractmethod
    def finish_load(self, staging: Staging) -> None:
        """Swap the staging area in as the live copy, atomically for readers."""

    @abstractmethod
    def abandon_load(self, staging: Staging) -> None:
        """Drop a staging area left by a failed or stopped load."""

    @abstractmethod
    def staged_checksum(self, staging: Staging) -> str:
        """`checksums.content` of what a staging area holds (checked before it is swapped in)."""

    # --- all or nothing (a delta package) --------------------------------------------------
    @abstractmethod
    def begin_changes(self, name: str) -> Changeset:
        """Start applying changes all or nothing; nothing else may write this subscription until
        they are committed or abandoned."""

    @abstractmethod
    def write_changes(self, changeset: Changeset, records: Iterable[ItemRecord]) -> int:
        """Replace each item (or tombstone) by url, whatever the stored copy: the changes'
        base was verified, so they are authoritative."""

    @abstractmethod
    def changes_checksum(self, changeset: Changeset) -> str:
        """`checksums.content` of the copy as it stands with the changes."""

    @abstractmethod
    def commit_changes(self, changeset: Changeset, state: SyncState) -> None:
        """Make the changes and the state that records them durable together."""

    @abstractmethod
    def abandon_changes(self, changeset: Changeset) -> None:
        """Leave the copy exactly as it was before `begin_changes`."""

    def recover(self, name: str) -> bool:
        """Roll back changes a crash interrupted (True if there were some); a no-op where a
        crash rolls them back by itself."""
        return False

    # --- incremental changes ---------------------------------------------------------------
    @abstractmethod
    def apply_changes(self, name: str, records: Iterable[ItemRecord]) -> int:
        """Upsert items and tombstones unless the local copy is newer; idempotent; one transaction."""

    @abstractmethod
    def clear(self, name: str) -> None:
        """Remove every item of a subscription (its state stays)."""

    # --- reading ---------------------------------------------------------------------------
    @abstractmethod
    def counts(self, name: str) -> dict[str, int]:
        """Live (not deleted) concepts and mappings, retired ones included."""

    @abstractmethod
    def url_versions(self, name: str) -> Iterator[tuple[str, str]]:
        """(url, version) of live items in ascending url (code point) order, streamed."""

    @abstractmethod
    def get_item(self, name: str, url: str) -> StoredItem | None:
        """One stored item (or tombstone) by url."""

    @abstractmethod
    def live_versions(self, name: str, urls: list[str]) -> dict[str, str]:
        """The stored version of each of these urls that is live (not a tombstone)."""

    def checksum(self, name: str) -> str:
        """The local `checksums.content`, computed as the server computes it, from an index."""
        return content_checksum(self.url_versions(name))

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def check_database_uri(uri: str) -> None:
    """Raise ValueError with a clear message unless `uri` names a usable local database."""
    if not uri.startswith(SCHEMES):
        raise ValueError(f"{uri!r} must start with sqlite:///, mongodb://, mongodb+srv:// or "
                         "mongomock://")
    if uri.startswith("sqlite:"):
        from .sqlite import parse_sqlite_uri

        parse_sqlite_uri(uri)
    if uri.startswith("mongomock://") and uri.rstrip("/") != "mongomock:":
        # the subscriber once kept a mongomock database in a file; that is SQLite's job now
        raise ValueError(f"{uri!r}: mongomock:// is an in-memory database for tests and takes no "
                         "path; keep a mirror in a file with sqlite:///path/mirror.db")


def open_store(uri: str) -> LocalStore:
    """Open the local database named by `uri` (see the module docstring)."""
    check_database_uri(uri)
    if uri.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        return SQLiteStore(uri)
    from .mongo import MongoStore

    return MongoStore.open(uri)


__all__ = ["Changeset", "LocalStore", "Staging", "StoreError", "StoredItem",
           "check_database_uri", "open_store", "utcnow"]
