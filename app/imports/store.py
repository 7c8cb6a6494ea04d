"""Storage of bulk-import uploads: a local directory, or chunks in MongoDB (the store gives those:
app/store/mongo/files.py; the interface, `UploadStore`, is app/store/files.py).

An upload is written once, streamed, and read back from any byte offset, so a job that a dead
worker left behind resumes at its last committed line without reading the file from the start.
An upload whose process died while receiving it leaves a part (a `.upload.part` file, or chunks
without their meta document); maintenance collects those once idle, and uploads no waiting or
running job holds (`collect`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable, Iterator
from datetime import datetime

from ..domain.errors import DomainError
from ..faults import IMPORTS, faults_in
from ..store import Store
from ..store.files import UploadStore

__all__ = ["LocalUploads", "UploadCollected", "UploadStore", "upload_store"]

logger = logging.getLogger(__name__)

PART = ".upload.part"
DONE = ".upload"


class UploadCollected(DomainError):
    """The upload stalled for so long that maintenance collected its part file: send it again."""

    status = 408


class LocalUploads:
    """Uploads as files in a directory: the default, for one host (and the embedded database).
    A full or read-only disk raises StorageFault (app/faults.py), and the part file is gone."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, upload_id: str) -> str:
        return os.path.join(self.directory, f"{upload_id}{DONE}")

    @faults_in(IMPORTS)
    def save(self, upload_id: str, chunks: Iterable[bytes]) -> int:
        os.makedirs(self.directory, exist_ok=True)
        final = self._path(upload_id)
        partial = os.path.join(self.directory, f"{upload_id}{PART}")
        size = 0
        try:
            with open(partial, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.replace(partial, final)
            except FileNotFoundError:
                raise UploadCollected("The upload stalled for so long that it was collected; "
                                      "send it again.") from None
        except BaseException:
            if os.path.exists(partial):
                os.unlink(partial)
            raise
        return size

    @faults_in(IMPORTS)
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

    def collect(self, older_than: datetime, keep: Collection[str]) -> int:
        if not os.path.isdir(self.directory):
            return 0
        cutoff = older_than.timestamp()
        removed = 0
        for entry in os.scandir(self.directory):
            if entry.name.endswith(PART):
                upload_id = entry.name[:-len(PART)]
            elif entry.name.endswith(DONE):
                upload_id = entry.name[:-len(DONE)]
                if upload_id in keep:
                    continue
            else:
                continue
            try:
                # a live upload's part file is written to as its bytes arrive
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


def upload_store(kind: str, store: Store, directory: str) -> UploadStore:
    """The upload store a config string names: 'local' (a directory) or 'mongo' (on MongoDB)."""
    if kind == "mongo":
        return store.import_uploads()
    return LocalUploads(directory)
