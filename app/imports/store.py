"""Storage of bulk-import uploads: a local directory, or chunks in MongoDB (the store gives those:
app/store/mongo/files.py; the interface, `UploadStore`, is app/store/files.py).

An upload is written once, streamed, and read back from any byte offset, so a job that a dead
worker left behind resumes at its last committed line without reading the file from the start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

from ..store import Store
from ..store.files import UploadStore

__all__ = ["LocalUploads", "UploadStore", "upload_store"]

logger = logging.getLogger(__name__)


class LocalUploads:
    """Uploads as files in a directory: the default, for one host (and the embedded database)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, upload_id: str) -> str:
        return os.path.join(self.directory, f"{upload_id}.upload")

    def save(self, upload_id: str, chunks: Iterable[bytes]) -> int:
        os.makedirs(self.directory, exist_ok=True)
        final = self._path(upload_id)
        partial = final + ".part"
        size = 0
        try:
            with open(partial, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, final)
        except BaseException:
            if os.path.exists(partial):
                os.unlink(partial)
            raise
        return size

    def read_lines(self, upload_id: str, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        with open(self._path(upload_id), "rb") as handle:
            handle.seek(offset)
            for line in handle:
                offset += len(line)
                yield line, offset

    def delete(self, upload_id: str) -> None:
        try:
            os.unlink(self._path(upload_id))
        except FileNotFoundError:
            pass


def upload_store(kind: str, store: Store, directory: str) -> UploadStore:
    """The upload store a config string names: 'local' (a directory) or 'mongo' (on MongoDB)."""
    if kind == "mongo":
        return store.import_uploads()
    return LocalUploads(directory)
