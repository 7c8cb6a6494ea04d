"""MongoDB connection: a real server by URI, or the embedded mongomock database, optionally persisted."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from typing import Any

import bson
import mongomock
import pymongo

logger = logging.getLogger(__name__)

# Collection methods that change data; the persisted embedded database saves after any of them.
_WRITES = frozenset({
    "insert_one", "insert_many", "update_one", "update_many", "replace_one", "delete_one",
    "delete_many", "find_one_and_update", "find_one_and_replace", "find_one_and_delete",
    "bulk_write", "drop",
})


class _DirtyCollection:
    """A collection proxy that marks the embedded database changed on every write."""

    def __init__(self, collection: Any, store: EmbeddedStore) -> None:
        self._collection = collection
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name in _WRITES:
            def write(*args: Any, **kwargs: Any) -> Any:
                try:
                    return attribute(*args, **kwargs)
                finally:
                    self._store.dirty = True
            return write
        return attribute


class _DirtyDatabase:
    """A database proxy whose collections mark the embedded store dirty on write."""

    def __init__(self, database: Any, store: EmbeddedStore) -> None:
        self._database = database
        self._store = store

    def __getitem__(self, name: str) -> _DirtyCollection:
        return _DirtyCollection(self._database[name], self._store)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attribute = getattr(self._database, name)
        return attribute


class EmbeddedStore:
    """Keeps a mongomock database in one file: loaded at start, saved atomically when changed."""

    def __init__(self, client: mongomock.MongoClient, db_name: str, path: str,
                 interval: float) -> None:
        self.client = client
        self.db_name = db_name
        self.path = path
        self.interval = interval
        self.dirty = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> int:
        """Read the file into the database; return the number of documents loaded."""
        if not os.path.exists(self.path):
            return 0
        database = self.client[self.db_name]
        count = 0
        batch: dict[str, list[dict[str, Any]]] = {}
        with open(self.path, "rb") as handle:
            for record in bson.decode_file_iter(handle):
                batch.setdefault(record["c"], []).append(record["d"])
                count += 1
        for name, documents in batch.items():
            database[name].insert_many(documents)
        return count

    def save(self) -> None:
        """Write every collection to a temp file, fsync it and rename it over the old file."""
        with self._lock:
            self.dirty = False
            database = self.client[self.db_name]
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            fd, temp_path = tempfile.mkstemp(prefix=".termsync-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as handle:
                    for name in database.list_collection_names():
                        for document in database[name].find():
                            handle.write(bson.encode({"c": name, "d": document}))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp_path, self.path)
            except BaseException:
                if os.path.exists(temp_path):
                    os.unlink(temp_path)
                raise

    def start(self) -> None:
        """Save in the background at most every `interval` seconds while changed."""
        def loop() -> None:
            while not self._stop.wait(self.interval):
                if self.dirty:
                    try:
                        self.save()
                    except Exception:  # keep saving later; never kill the server for it
                        logger.exception("saving the embedded database to %s failed", self.path)
        self._thread = threading.Thread(target=loop, name="termsync-persist", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the saver and write the last changes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.dirty:
            self.save()


# One in-memory client per URI, so that several app instances in one process share a database
# (as several processes would share a real MongoDB).
_EMBEDDED: dict[str, tuple[mongomock.MongoClient, EmbeddedStore | None]] = {}
_EMBEDDED_LOCK = threading.Lock()


def connect(uri: str, db_name: str, persist_interval: float = 5.0) -> tuple[Any, Any, EmbeddedStore | None]:
    """Return (client, database, embedded store or None) for a MONGO_URI."""
    if uri.startswith("mongomock://"):
        path = uri[len("mongomock://"):]
        with _EMBEDDED_LOCK:
            if uri not in _EMBEDDED or not path:
                client: Any = mongomock.MongoClient(tz_aware=True)
                store = None
                if path:
                    store = EmbeddedStore(client, db_name, path, persist_interval)
                    loaded = store.load()
                    store.start()
                    logger.warning(
                        "EMBEDDED DATABASE (mongomock) persisted in %s (%d documents loaded): "
                        "single process only; use a real MongoDB (MONGO_URI=mongodb://...) in "
                        "production", path, loaded)
                else:
                    logger.warning(
                        "EMBEDDED IN-MEMORY DATABASE (mongomock): everything is lost when the "
                        "process stops; set MONGO_URI=mongodb://... for real use")
                if path:
                    _EMBEDDED[uri] = (client, store)
            else:
                client, store = _EMBEDDED[uri]
        database = client[db_name]
        if store is not None:
            return client, _DirtyDatabase(database, store), store
        return client, database, None
    client = pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    return client, client[db_name], None


def close_embedded(uri: str) -> None:
    """Save and forget a persisted embedded database (clean shutdown)."""
    with _EMBEDDED_LOCK:
        entry = _EMBEDDED.pop(uri, None)
    if entry is not None and entry[1] is not None:
        entry[1].close()



def _install_id_fast_path() -> None:
    """Make mongomock answer equality on `_id` by dictionary lookup instead of a full scan.

    mongomock scans every document for every query; the hot paths of termsync (heads, item
    versions, sources) address documents by `_id`, which a real MongoDB answers from its primary
    index. Without this, loading N items on the embedded database would cost O(N^2).
    """
    from mongomock.collection import Collection
    from mongomock.filtering import filter_applies

    if getattr(Collection, "_termsync_fast_path", False):
        return
    original = Collection._iter_documents

    def _iter_documents(self: Any, filter: Any) -> Any:
        if isinstance(filter, dict) and "_id" in filter:
            key = filter["_id"]
            if isinstance(key, (str, int, bson.ObjectId)) and not isinstance(key, bool):
                if key in self._store:
                    document = self._store[key]
                    return iter([document] if filter_applies(filter, document) else [])
                return iter([])
        return original(self, filter)

    setattr(Collection, "_iter_documents", _iter_documents)  # noqa: B010
    setattr(Collection, "_termsync_fast_path", True)  # noqa: B010


_install_id_fast_path()
