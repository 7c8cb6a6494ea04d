"""The embedded database serves one process: refuse a second process on the same file."""

from __future__ import annotations

import fcntl
import logging
import os
from typing import IO

from ..config import ConfigError

logger = logging.getLogger(__name__)

_HELD: dict[str, IO[str]] = {}


def guard_single_process(uri: str) -> None:
    """For `mongomock:///path`, hold an exclusive lock on `path.lock`; ConfigError if taken.

    mongomock keeps the database in this process's memory and saves it to the file now and then:
    a second process (e.g. a second gunicorn worker) would load its own copy and the two would
    overwrite each other's changes. Several app instances inside one process share the database
    and are fine, so the lock is taken once per process.
    """
    if not uri.startswith("mongomock://"):
        return
    path = uri[len("mongomock://"):]
    if not path:
        return
    lock_path = os.path.abspath(path) + ".lock"
    if lock_path in _HELD:
        return
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"MONGO_URI={uri}: the embedded database file is in use by {holder}. The embedded "
            "database (mongomock) lives in one process's memory, so it serves ONE process only: "
            "run gunicorn with workers = 1 (and threads for concurrency), or set "
            "MONGO_URI=mongodb://... to share a real MongoDB between processes.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    _HELD[lock_path] = handle
