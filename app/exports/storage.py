"""Export file storage: content-addressed (sha256) blobs in a local directory or in GridFS.

Both backends implement one small interface, `ExportStorage`. A file is committed whole or not
at all: the local backend renames a finished temp file into place, the GridFS backend writes
every chunk before the files document that makes the file visible.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from bson.binary import Binary
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from ..config import ExportSettings

logger = logging.getLogger(__name__)

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
COPY_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class StoredFile:
    """One stored export file: its sha256, size and when it was stored (UTC)."""

    sha256: str
    size: int
    stored_on: datetime


class ExportStorage:
    """The interface every backend implements; files are named by their sha256 hex."""

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


def _check(sha256: str) -> str:
    if not SHA256_HEX.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


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
        _check(sha256)
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
        except (FileNotFoundError, NotADirectoryError):
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


class GridFSStorage(ExportStorage):
    """Files in MongoDB, in GridFS's layout (`<bucket>.files` + `<bucket>.chunks`).

    pymongo's `gridfs` module refuses mongomock databases, so the layout is written with plain
    collection calls that a real MongoDB accepts too: a files document `{_id: sha256, length,
    chunkSize, uploadDate, filename}` and chunks `{_id: "<sha256>:<n>", files_id, n, data}`, so
    `mongofiles` and any GridFS reader can read them. Chunks are addressed by `_id`, which both
    MongoDB and the embedded database answer from their primary index.
    """

    name = "gridfs"

    def __init__(self, db: Any, bucket: str = "exports_fs", chunk_size: int = 255 * 1024,
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
        _check(sha256)
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
        return self.files.find_one({"_id": _check(sha256)}, {"_id": 1}) is not None

    def stat(self, sha256: str) -> StoredFile | None:
        document = self.files.find_one({"_id": _check(sha256)}, {"length": 1, "uploadDate": 1})
        return None if document is None else _stored(document)

    def open(self, sha256: str) -> BinaryIO:
        document = self.files.find_one({"_id": _check(sha256)})
        if document is None:
            raise FileNotFoundError(sha256)
        return io.BufferedReader(_GridFSReader(self.chunks, sha256, int(document["length"]),
                                               int(document["chunkSize"])), COPY_BLOCK)

    def delete(self, sha256: str) -> None:
        self.files.delete_one({"_id": _check(sha256)})
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


def make_storage(settings: ExportSettings, store: Any) -> ExportStorage:
    """The backend EXPORT_STORAGE names ('local' under EXPORT_DIR, or 'gridfs' on MongoDB)."""
    if settings.storage == "gridfs":
        storage = GridFSStorage(store.db, settings.gridfs_bucket,
                                temp_directory=os.path.join(settings.directory, "tmp"))
        storage.ensure_indexes()
        return storage
    return LocalStorage(settings.directory)
