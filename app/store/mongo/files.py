"""Files in the MongoDB database: export files in GridFS's layout, and bulk-import uploads in
chunks; both shared by every host of a deployment (app/store/files.py has their interfaces)."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from bson.binary import Binary
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from ..files import ExportStorage, StoredFile, checked_sha256

COPY_BLOCK = 1024 * 1024  # the buffer of a GridFS file's reader
# GridFS's default chunk size: one document per chunk, well under MongoDB's 16 MB
GRIDFS_CHUNK_SIZE = UPLOAD_CHUNK_SIZE = 255 * 1024


class GridFSStorage(ExportStorage):
    """Files in MongoDB, in GridFS's layout (`<bucket>.files` + `<bucket>.chunks`).

    pymongo's `gridfs` module refuses mongomock databases, so the layout is written with plain
    collection calls that a real MongoDB accepts too: a files document `{_id: sha256, length,
    chunkSize, uploadDate, filename}` and chunks `{_id: "<sha256>:<n>", files_id, n, data}`, so
    `mongofiles` and any GridFS reader can read them. Chunks are addressed by `_id`, which both
    MongoDB and the embedded database answer from their primary index.
    """

    name = "gridfs"

    def __init__(self, db: Any, bucket: str = "exports_fs", chunk_size: int = GRIDFS_CHUNK_SIZE,
                 temp_directory: str | None = None) -> None:
        self.files = db[f"{bucket}.files"]
        self.chunks = db[f"{bucket}.chunks"]
        self.chunk_size = chunk_size
        self._temp = temp_directory or os.path.join(tempfile.gettempdir(), "termsync-exports")

    def ensure_indexes(self) -> None:
        self.chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
        self.files.create_index([("filename", ASCENDING), ("uploadDate", ASCENDING)])

    def temp_dir(self) -> str:
        os.makedirs(self._temp, exist_ok=True)
        return self._temp

    def put(self, path: str, sha256: str) -> None:
        checked_sha256(sha256)
        try:
            if self.exists(sha256):
                return
            self.delete(sha256)  # chunks of an earlier attempt that died before its files doc
            length = 0
            with open(path, "rb") as handle:
                number = 0
                while True:
                    block = handle.read(self.chunk_size)
                    if not block:
                        break
                    self.chunks.insert_one({"_id": f"{sha256}:{number}", "files_id": sha256,
                                            "n": number, "data": Binary(block)})
                    length += len(block)
                    number += 1
            # the files document last: until it exists, the file does not
            try:
                self.files.insert_one({"_id": sha256, "length": length,
                                       "chunkSize": self.chunk_size,
                                       "uploadDate": datetime.now(UTC),
                                       "filename": f"{sha256}.zip",
                                       "metadata": {"contentType": "application/zip"}})
            except DuplicateKeyError:
                pass  # another worker committed the same bytes
        finally:
            if os.path.exists(path):
                os.unlink(path)

    def exists(self, sha256: str) -> bool:
        return self.files.find_one({"_id": checked_sha256(sha256)}, {"_id": 1}) is not None

    def stat(self, sha256: str) -> StoredFile | None:
        document = self.files.find_one({"_id": checked_sha256(sha256)},
                                       {"length": 1, "uploadDate": 1})
        return None if document is None else _stored(document)

    def open(self, sha256: str) -> BinaryIO:
        document = self.files.find_one({"_id": checked_sha256(sha256)})
        if document is None:
            raise FileNotFoundError(sha256)
        return io.BufferedReader(_GridFSReader(self.chunks, sha256, int(document["length"]),
                                               int(document["chunkSize"])), COPY_BLOCK)

    def delete(self, sha256: str) -> None:
        self.files.delete_one({"_id": checked_sha256(sha256)})
        self.chunks.delete_many({"files_id": sha256})

    def list(self) -> Iterator[StoredFile]:
        for document in self.files.find({}, {"length": 1, "uploadDate": 1}):
            yield _stored(document)


def _stored(document: dict[str, Any]) -> StoredFile:
    """A GridFS files document as a StoredFile (MongoDB hands times back without a zone)."""
    uploaded = document["uploadDate"]
    if uploaded.tzinfo is None:
        uploaded = uploaded.replace(tzinfo=UTC)
    return StoredFile(document["_id"], int(document["length"]), uploaded)


class _GridFSReader(io.RawIOBase):
    """A seekable raw reader over the chunks of one GridFS file."""

    def __init__(self, chunks: Any, sha256: str, length: int, chunk_size: int) -> None:
        super().__init__()
        self._chunks = chunks
        self._sha = sha256
        self._length = length
        self._chunk_size = chunk_size
        self._position = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def _chunk(self, number: int) -> bytes:
        if self._cached is not None and self._cached[0] == number:
            return self._cached[1]
        document = self._chunks.find_one({"_id": f"{self._sha}:{number}"})
        if document is None:
            raise OSError(f"GridFS file {self._sha} lacks chunk {number}")
        data = bytes(document["data"])
        self._cached = (number, data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._position < self._length:
            number, offset = divmod(self._position, self._chunk_size)
            data = self._chunk(number)[offset:]
            count = min(len(data), len(view) - written, self._length - self._position)
            view[written:written + count] = data[:count]
            written += count
            self._position += count
        return written


class MongoUploads:
    """Uploads as fixed-size chunks in MongoDB, addressed by `_id`: shared by every worker host."""

    def __init__(self, db: Any, chunk_size: int = UPLOAD_CHUNK_SIZE) -> None:
        self.chunks = db["import_uploads"]
        self.chunk_size = chunk_size

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
                while len(buffer) >= self.chunk_size:
                    self.chunks.insert_one({"_id": self._chunk_id(upload_id, index),
                                            "data": bytes(buffer[:self.chunk_size])})
                    del buffer[:self.chunk_size]
                    index += 1
            if buffer:
                self.chunks.insert_one({"_id": self._chunk_id(upload_id, index),
                                        "data": bytes(buffer)})
                index += 1
        except BaseException:
            self._delete_chunks(upload_id, index + 1)
            raise
        self.chunks.insert_one({"_id": f"{upload_id}:meta", "size": size, "chunks": index,
                                "chunk_size": self.chunk_size})
        return size

    def read_lines(self, upload_id: str, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        meta = self.chunks.find_one({"_id": f"{upload_id}:meta"})
        if meta is None:
            raise FileNotFoundError(upload_id)
        index, skip = divmod(offset, int(meta.get("chunk_size", self.chunk_size)))
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
