"""Storage of bulk-import uploads: a local directory or MongoDB chunks.

An upload is written once, streamed, and read back from any byte offset, so a job that a dead
worker left behind resumes at its last committed line without reading the file from the start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from ..faults import IMPORTS, faults_in

logger = logging.getLogger(__name__)

CHUNK_SIZE = 255 * 1024  # GridFS's default chunk size: one document per chunk, well under 16 MB


class UploadStore(Protocol):
    """Where uploaded import files live until their job ends."""

    def save(self, upload_id: str, chunks: Iterable[bytes]) -> int:
        """Store the stream under `upload_id`; return its size. Nothing is kept if it raises."""

    def read_lines(self, upload_id: str, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        """Yield (line, byte offset just after it) from `offset` on."""

    def delete(self, upload_id: str) -> None:
        """Forget an upload (no error if it is gone)."""


class LocalUploads:
    """Uploads as files in a directory: the default, for one host (and the embedded database).
    A full or read-only disk raises StorageFault (app/faults.py), and the part file is gone."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, upload_id: str) -> str:
        return os.path.join(self.directory, f"{upload_id}.upload")

    @faults_in(IMPORTS)
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


class MongoUploads:
    """Uploads as fixed-size chunks in MongoDB, addressed by `_id`: shared by every worker host."""

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
                                            "data": bytes(buffer[:CHUNK_SIZE])})
                    del buffer[:CHUNK_SIZE]
                    index += 1
            if buffer:
                self.chunks.insert_one({"_id": self._chunk_id(upload_id, index),
                                        "data": bytes(buffer)})
                index += 1
        except BaseException:
            self._delete_chunks(upload_id, index + 1)
            raise
        self.chunks.insert_one({"_id": f"{upload_id}:meta", "size": size, "chunks": index})
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


def upload_store(kind: str, store: Any, directory: str) -> UploadStore:
    """The upload store a config string names: 'local' (a directory) or 'mongo' (on MongoDB)."""
    if kind == "mongo":
        return MongoUploads(store.db)
    return LocalUploads(directory)
