"""Storage of bulk-import uploads: a local directory or MongoDB chunks.

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
from datetime import UTC, datetime
from typing import Any, Protocol

from ..domain.errors import DomainError
from ..faults import IMPORTS, faults_in
from ..timeutil import format_time

logger = logging.getLogger(__name__)

CHUNK_SIZE = 255 * 1024  # GridFS's default chunk size: one document per chunk, well under 16 MB
PART = ".upload.part"
DONE = ".upload"


class UploadCollected(DomainError):
    """The upload stalled for so long that maintenance collected its part file: send it again."""

    status = 408


class UploadStore(Protocol):
    """Where uploaded import files live until their job ends."""

    def save(self, upload_id: str, chunks: Iterable[bytes]) -> int:
        """Store the stream under `upload_id`; return its size. Nothing is kept if it raises."""

    def read_lines(self, upload_id: str, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        """Yield (line, byte offset just after it) from `offset` on."""

    def delete(self, upload_id: str) -> None:
        """Forget an upload (no error if it is gone)."""

    def collect(self, older_than: datetime, keep: Collection[str]) -> int:
        """Remove parts of dead uploads, and uploads not in `keep`, untouched since
        `older_than`; how many uploads."""


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


class MongoUploads:
    """Uploads as fixed-size chunks in MongoDB, addressed by `_id`: shared by every worker host.
    Each chunk and the meta document (written last) carry `upload` and `written_on`."""

    def __init__(self, db: Any) -> None:
        self.chunks = db["import_uploads"]

    @staticmethod
    def _chunk_id(upload_id: str, index: int) -> str:
        return f"{upload_id}:{index:07d}"

    def save(self, upload_id: str, chunks: Iterable[bytes]) -> int:
        buffer = bytearray()
        index = size = 0
        try:
            for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                while len(buffer) >= CHUNK_SIZE:
                    self.chunks.insert_one({"_id": self._chunk_id(upload_id, index),
                                            "upload": upload_id, "written_on": _now(),
                                            "data": bytes(buffer[:CHUNK_SIZE])})
                    del buffer[:CHUNK_SIZE]
                    index += 1
            if buffer:
                self.chunks.insert_one({"_id": self._chunk_id(upload_id, index),
                                        "upload": upload_id, "written_on": _now(),
                                        "data": bytes(buffer)})
                index += 1
        except BaseException:
            self._delete_chunks(upload_id, index + 1)
            raise
        self.chunks.insert_one({"_id": f"{upload_id}:meta", "size": size, "chunks": index,
                                "upload": upload_id, "written_on": _now()})
        return size

    def read_lines(self, upload_id: str, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        meta = self.chunks.find_one({"_id": f"{upload_id}:meta"})
        if meta is None:
            raise FileNotFoundError(upload_id)
        index, skip = divmod(offset, CHUNK_SIZE)
        pending = b""
        position = offset
        while index < meta["chunks"]:
            document = self.chunks.find_one({"_id": self._chunk_id(upload_id, index)})
            if document is None:
                raise FileNotFoundError(f"{upload_id} chunk {index}")
            data = pending + bytes(document["data"])[skip:]
            skip = 0
            index += 1
            start = 0
            while True:
                end = data.find(b"\n", start)
                if end < 0:
                    break
                line = data[start:end + 1]
                position += len(line)
                yield line, position
                start = end + 1
            pending = data[start:]
        if pending:
            yield pending, position + len(pending)

    def _delete_chunks(self, upload_id: str, count: int) -> None:
        for index in range(count):
            self.chunks.delete_one({"_id": self._chunk_id(upload_id, index)})

    def delete(self, upload_id: str) -> None:
        meta = self.chunks.find_one({"_id": f"{upload_id}:meta"})
        if meta is not None:
            self._delete_chunks(upload_id, meta["chunks"])
            self.chunks.delete_one({"_id": f"{upload_id}:meta"})


    def collect(self, older_than: datetime, keep: Collection[str]) -> int:
        cutoff = format_time(older_than)
        idle = {document["upload"] for document in
                self.chunks.find({"written_on": {"$lt": cutoff}}, {"upload": 1})}
        removed = 0
        for upload_id in idle - set(keep):
            if self.chunks.find_one({"upload": upload_id, "written_on": {"$gte": cutoff}},
                                    {"_id": 1}) is not None:
                continue  # still being written
            self.chunks.delete_many({"upload": upload_id})
            removed += 1
        return removed


def _now() -> str:
    return format_time(datetime.now(UTC))


def upload_store(kind: str, store: Any, directory: str) -> UploadStore:
    """The upload store a config string names: 'local' (a directory) or 'mongo' (on MongoDB)."""
    if kind == "mongo":
        return MongoUploads(store.db)
    return LocalUploads(directory)
