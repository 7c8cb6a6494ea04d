"""The embedded database serves one process: refuse a second process on the same file."""

from __future__ import annotations

import fcntl
import logging
import os

from ..config import ConfigError

logger = logging.getLogger(__name__)

# Raw descriptors, deliberately never closed: the lock lasts as long as the process.
_HELD: dict[str, int] = {}


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
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ConfigError(
            f"MONGO_URI={uri}: the embedded database file is in use by {holder}. The embedded "
            "database (mongomock) lives in one process's memory, so it serves ONE process only: "
            "run gunicorn with workers = 1 (and threads for concurrency), or set "
            "MONGO_URI=mongodb://... to share a real MongoDB between processes.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
    _HELD[lock_path] = fd
