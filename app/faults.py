"""Storage faults: a disk that is full, read-only or not ours to write, told apart from bugs.

A fault is the environment's, not the code's. The HTTP layer answers it 503 with `Retry-After`
and the JSON error body (never a 500), `/readyz` reports which storage cannot be written, and a
job that hits one gives its claim back and is retried later instead of failing at once. Each
storage boundary (the database, export files, import uploads) turns the error the OS or SQLite
raises into a `StorageFault` that says where it happened; `fault_of` finds one behind any error.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, Protocol, TypeVar

logger = logging.getLogger(__name__)

# The errors that mean "this storage cannot be written (or read) now", not "a bug": what an
# operator fixes (free space, remount, permissions, a disk) while clients retry.
FAULT_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}
DATABASE, EXPORTS, IMPORTS = "database", "exports", "imports"
# What the answer names, by storage (the operator's log line also names the path).
PLACES = {DATABASE: "The database", EXPORTS: "The export storage", IMPORTS: "The upload storage",
          None: "The server's storage"}
# Seconds a client should wait: someone has to free space or fix a mount first.
RETRY_AFTER = 60
PROBE_BYTES = 4096


class StorageFault(Exception):
    """A storage (`where`: database, exports, imports) cannot be written or read: `code` is the
    errno's name (ENOSPC, EROFS, EACCES, ...), `path` what was being written (logs only)."""

    def __init__(self, where: str | None, code: str, reason: str,
                 path: str | None = None) -> None:
        self.where = where
        self.code = code
        self.reason = reason
        self.path = path
        at = f" ({path})" if path else ""
        super().__init__(f"{where or 'storage'}{at}: {reason} ({code})")

    @property
    def message(self) -> str:
        """What a client is told: which storage and why, never a path."""
        return (f"{PLACES.get(self.where, PLACES[None])} cannot be written: {self.reason} "
                f"({self.code}). Try again later.")


class FaultClassifier(Protocol):
    """What knows its own errors: the store (SQLite's messages) is one."""

    def fault_of(self, error: BaseException) -> StorageFault | None:
        """The storage fault `error` means, or None."""


def from_os_error(error: OSError, where: str | None) -> StorageFault | None:
    """The fault an OSError means (None for the others: a missing file is not a full disk)."""
    if error.errno not in FAULT_ERRNOS:
        return None
    path = error.filename if isinstance(error.filename, str) else None
    return StorageFault(where, errno.errorcode[error.errno], FAULT_ERRNOS[error.errno], path)


def fault_of(error: BaseException, classifier: FaultClassifier | None = None
             ) -> StorageFault | None:
    """The storage fault behind `error` (itself, or what caused it), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageFault):
            return current
        if isinstance(current, OSError):
            fault = from_os_error(current, None)
            if fault is not None:
                return fault
        if classifier is not None:
            fault = classifier.fault_of(current)
            if fault is not None:
                return fault
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def storage_boundary(where: str) -> Iterator[None]:
    """Turn an OSError that is a fault into a StorageFault that names `where`."""
    try:
        yield
    except OSError as exc:
        fault = from_os_error(exc, where)
        if fault is None:
            raise
        raise fault from exc


Function = TypeVar("Function", bound=Callable[..., Any])


def faults_in(where: str) -> Callable[[Function], Function]:
    """Decorate a storage method: its faults name `where` (a generator's too, as it runs)."""
    def decorate(method: Function) -> Function:
        import inspect

        if inspect.isgeneratorfunction(method):
            @wraps(method)
            def generator(*args: Any, **kwargs: Any) -> Any:
                with storage_boundary(where):
                    yield from method(*args, **kwargs)
            return generator  # type: ignore[return-value]

        @wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            with storage_boundary(where):
                return method(*args, **kwargs)
        return call  # type: ignore[return-value]
    return decorate


def probe_directory(directory: str) -> StorageFault | None:
    """Whether a file can be created and written in `directory` now (None) or the fault that
    stops it: a small file is written (no fsync) and removed, so a full disk shows too."""
    name = os.path.join(directory, f".termsync-probe-{os.getpid()}-{threading.get_ident()}")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(name, "wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
    except OSError as exc:
        fault = from_os_error(exc, None)
        if fault is None:
            return StorageFault(None, errno.errorcode.get(exc.errno or 0, "OSError"),
                                exc.strerror or str(exc), directory)
        return fault
    finally:
        try:
            os.unlink(name)
        except OSError:
            pass
    return None
