"""Files a store keeps beside its records, and the interfaces their backends implement.

- Export files, content-addressed by sha256 (`ExportStorage`): a local directory
  (`app/exports/storage.py`) or GridFS in the MongoDB database (`mongo/files.py`).
- Bulk-import uploads until their job ends (`UploadStore`): a local directory
  (`app/imports/store.py`) or chunks in the MongoDB database (`mongo/files.py`).

The database-backed ones come from the store (`Store.export_files()`, `Store.import_uploads()`),
so no module above `app/store/` touches a driver or the store's database handle.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO, Protocol

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class StoredFile:
    """One stored export file: its sha256, size and when it was stored (UTC)."""

    sha256: str
    size: int
    stored_on: datetime


def checked_sha256(sha256: str) -> str:
    """`sha256` if it is a sha256 hex digest (it names a file); ValueError otherwise."""
    if not SHA256_HEX.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


class ExportStorage:
    """The interface every export file backend implements; files are named by their sha256 hex.

    A file is committed whole or not at all: readers see no file or all of it.
    """

    name = "abstract"

    def temp_dir(self) -> str:
        """Where builds write their temp files (the same filesystem as the store if local)."""
        raise NotImplementedError

    def put(self, path: str, sha256: str) -> None:
        """Commit the finished file at `path` (consumed) as `sha256`; idempotent."""
        raise NotImplementedError

    def exists(self, sha256: str) -> bool:
        raise NotImplementedError

    def stat(self, sha256: str) -> StoredFile | None:
        """The stored file's size and time, or None if it is absent: the cheapest look (one
        stat, one files lookup), for probes that must not answer 200 for a file that is gone."""
        raise NotImplementedError

    def open(self, sha256: str) -> BinaryIO:
        """A seekable binary reader of a stored file; FileNotFoundError if absent."""
        raise NotImplementedError

    def delete(self, sha256: str) -> None:
        """Remove a stored file (no error if it is absent)."""
        raise NotImplementedError

    def list(self) -> Iterator[StoredFile]:
        """Every stored file."""
        raise NotImplementedError

    def stale_temp_files(self, older_than: datetime) -> Iterator[str]:
        """Temp files of builds that died before committing (for the garbage collector)."""
        directory = self.temp_dir()
        if not os.path.isdir(directory):
            return
        for entry in os.scandir(directory):
            if entry.name.startswith(".export-") and entry.is_file():
                modified = datetime.fromtimestamp(entry.stat().st_mtime, UTC)
                if modified < older_than:
                    yield entry.path


class UploadStore(Protocol):
    """Where uploaded import files live until their job ends."""

    def save(self, upload_id: str, chunks: Iterable[bytes]) -> int:
        """Store the stream under `upload_id`; return its size. Nothing is kept if it raises."""

    def read_lines(self, upload_id: str, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        """Yield (line, byte offset just after it) from `offset` on."""

    def delete(self, upload_id: str) -> None:
        """Forget an upload (no error if it is gone)."""
