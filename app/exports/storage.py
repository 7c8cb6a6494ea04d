"""Export file storage: content-addressed (sha256) blobs in a local directory or in GridFS.

Both backends implement one small interface, `ExportStorage` (app/store/files.py). A file is
committed whole or not at all: the local backend renames a finished temp file into place, the
GridFS backend (app/store/mongo/files.py, which the store gives) writes every chunk before the
files document that makes the file visible.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from ..config import ExportSettings
from ..store import Store
from ..store.files import SHA256_HEX, ExportStorage, StoredFile, checked_sha256

__all__ = ["SHA256_HEX", "ExportStorage", "LocalStorage", "StoredFile", "make_storage"]

logger = logging.getLogger(__name__)


class LocalStorage(ExportStorage):
    """Files under a directory, as `<dir>/<sha[:2]>/<sha>.zip`; temp files in `<dir>/tmp/`."""

    name = "local"

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)

    def temp_dir(self) -> str:
        path = os.path.join(self.directory, "tmp")
        os.makedirs(path, exist_ok=True)
        return path

    def path(self, sha256: str) -> str:
        """The filesystem path of a stored file."""
        checked_sha256(sha256)
        return os.path.join(self.directory, sha256[:2], f"{sha256}.zip")

    def put(self, path: str, sha256: str) -> None:
        target = self.path(sha256)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        # rename is atomic within one filesystem: readers see no file or the whole file
        os.replace(path, target)

    def exists(self, sha256: str) -> bool:
        return os.path.isfile(self.path(sha256))

    def stat(self, sha256: str) -> StoredFile | None:
        try:
            found = os.stat(self.path(sha256))
        except FileNotFoundError:
            return None
        return StoredFile(sha256, found.st_size, datetime.fromtimestamp(found.st_mtime, UTC))

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path(sha256), "rb")

    def delete(self, sha256: str) -> None:
        try:
            os.unlink(self.path(sha256))
        except FileNotFoundError:
            pass

    def list(self) -> Iterator[StoredFile]:
        if not os.path.isdir(self.directory):
            return
        for bucket in os.scandir(self.directory):
            if not bucket.is_dir() or len(bucket.name) != 2:
                continue
            for entry in os.scandir(bucket.path):
                sha = entry.name[:-4]
                if entry.name.endswith(".zip") and SHA256_HEX.match(sha):
                    stat = entry.stat()
                    yield StoredFile(sha, stat.st_size,
                                     datetime.fromtimestamp(stat.st_mtime, UTC))


def make_storage(settings: ExportSettings, store: Store) -> ExportStorage:
    """The backend EXPORT_STORAGE names ('local' under EXPORT_DIR, or 'gridfs' on MongoDB)."""
    if settings.storage == "gridfs":
        return store.export_files(settings.gridfs_bucket, os.path.join(settings.directory, "tmp"))
    return LocalStorage(settings.directory)
