"""Storage of bulk imports: uploaded files (local directory or MongoDB chunks) and per-line results.

An upload is written once, streamed, and read back from any byte offset, so a job that a dead
worker left behind resumes at its last committed line without reading the file from the start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

logger = logging.getLogger(__name__)

CHUNK_SIZE = 255 * 1024  # GridFS's default chunk size: one document per chunk, well under 16 MB


class ResultExists(Exception):
    """A result for this line is stored already: another worker has taken the job over."""


class UploadStore(Protocol):
    """Where uploaded import files live until their job ends."""

    def save(self, upload_id: str, chunks: Iterable[bytes]) -> int:
        """Store the stream under `upload_id`; return its size. Nothing is kept if it raises."""

    def read_lines(self, upload_id: str, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        """Yield (line, byte offset just after it) from `offset` on."""

    def delete(self, upload_id: str) -> None:
        """Forget an upload (no error if it is gone)."""


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


def upload_store(kind: str, db: Any, directory: str) -> UploadStore:
    """The upload store a config string names: 'local' (a directory) or 'mongo'."""
    if kind == "mongo":
        return MongoUploads(db)
    return LocalUploads(directory)


def result_id(job_id: str, line: int, part: int = 0) -> str:
    """Results are addressed by job and line, so a page is an `_id` range in line order."""
    return f"{job_id}:{line:09d}:{part:02d}"


class ImportResults:
    """Per-line results of import jobs (the `import_results` collection)."""

    def __init__(self, db: Any) -> None:
        self.results = db["import_results"]

    def ensure_indexes(self) -> None:
        self.results.create_index([("job", ASCENDING), ("action", ASCENDING), ("_id", ASCENDING)])

    def add(self, job_id: str, part: int, result: dict[str, Any]) -> None:
        """Store one line's result; ResultExists if it is there already."""
        try:
            self.results.insert_one(dict(result, _id=result_id(job_id, result["line"], part),
                                         job=job_id, part=part))
        except DuplicateKeyError:
            raise ResultExists(result_id(job_id, result["line"], part)) from None

    def get(self, job_id: str, line: int, part: int = 0) -> dict[str, Any] | None:
        return self.results.find_one({"_id": result_id(job_id, line, part)})

    def page(self, job_id: str, after: tuple[int, int] | None, actions: list[str] | None,
             limit: int) -> list[dict[str, Any]]:
        """Results in line order after (line, part), optionally only some actions."""
        low = result_id(job_id, *after) if after else f"{job_id}:"
        query: dict[str, Any] = {"job": job_id, "_id": {"$gt": low, "$lt": f"{job_id};"}}
        if actions:
            query["action"] = actions[0] if len(actions) == 1 else {"$in": actions}
        cursor = self.results.find(query, {"job": 0}).sort("_id", ASCENDING)
        return list(cursor.limit(limit)) if limit else list(cursor)

    def iter_all(self, job_id: str, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Every result of a job in line order, read a page at a time."""
        after: tuple[int, int] | None = None
        while True:
            page = self.page(job_id, after, None, batch_size)
            yield from page
            if len(page) < batch_size:
                return
            after = (page[-1]["line"], page[-1]["part"])

    def delete_for_job(self, job_id: str) -> None:
        self.results.delete_many({"job": job_id})


class IdempotencyKeys:
    """Idempotency-Key of each submission, claimed atomically by `_id` before the upload is read."""

    def __init__(self, db: Any) -> None:
        self.keys = db["import_keys"]

    def claim(self, key: str) -> dict[str, Any] | None:
        """Claim a key for a new job; None if claimed, else the earlier claim ({job: id or None})."""
        try:
            self.keys.insert_one({"_id": key, "job": None})
        except DuplicateKeyError:
            return self.keys.find_one({"_id": key}) or {"_id": key, "job": None}
        return None

    def bind(self, key: str, job_id: str) -> None:
        self.keys.update_one({"_id": key}, {"$set": {"job": job_id}})

    def job_for(self, key: str) -> str | None:
        found = self.keys.find_one({"_id": key})
        return found["job"] if found else None

    def release(self, key: str) -> None:
        """Free a key whose submission failed, so that the client can retry with it."""
        self.keys.delete_one({"_id": key, "job": None})
