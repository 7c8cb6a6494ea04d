"""The database behind termsync, chosen by DATABASE_URI: `open_store(uri)` gives a Store.

- `sqlite:///path/termsync.db` (relative) or `sqlite:////abs/path.db`: the embedded default;
- `mongodb://...` / `mongodb+srv://...`: a MongoDB replica set, for scale-out;
- `mongomock://...`: the MongoDB backend on an in-process fake, for its tests only.
"""

from __future__ import annotations

from .interfaces import Store

__all__ = ["Store", "open_store", "sqlite_path"]

SCHEMES = ("sqlite://", "mongodb://", "mongodb+srv://", "mongomock://")


def sqlite_path(uri: str) -> str:
    """The file of a `sqlite:///file` URI (three slashes: relative; four: absolute)."""
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
    if not path:
        raise ValueError(f"{uri!r}: expected sqlite:///relative/path.db or sqlite:////abs/path.db")
    return path


def open_store(uri: str, *, mongo_db: str = "termsync", sqlite_synchronous: str = "NORMAL",
               sqlite_busy_timeout: float = 30.0) -> Store:
    """Open (not yet create) the store a DATABASE_URI names; ValueError for an unknown one."""
    if uri.startswith("sqlite://"):
        from .sqlite import SqliteStore

        return SqliteStore(sqlite_path(uri), sqlite_synchronous, sqlite_busy_timeout)
    if uri.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
        from .mongo import MongoStore

        return MongoStore(uri, mongo_db)
    raise ValueError(f"{uri!r}: expected one of {', '.join(SCHEMES)}")
