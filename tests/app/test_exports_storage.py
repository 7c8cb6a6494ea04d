"""The export storage interface: every backend passes the same tests."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock
import pytest

from app.exports.builder import temp_path
from app.exports.storage import ExportStorage, GridFSStorage, LocalStorage


@pytest.fixture(params=["local", "gridfs"])
def storage(request: Any, tmp_path: Any) -> ExportStorage:
    if request.param == "local":
        return LocalStorage(str(tmp_path / "exports"))
    backend = GridFSStorage(mongomock.MongoClient()["storage_test"], chunk_size=10,
                            temp_directory=str(tmp_path / "tmp"))
    backend.ensure_indexes()
    return backend


def store(storage: ExportStorage, data: bytes) -> str:
    path = temp_path(storage.temp_dir())
    with open(path, "wb") as handle:
        handle.write(data)
    sha = hashlib.sha256(data).hexdigest()
    storage.put(path, sha)
    assert not os.path.exists(path)  # the temp file is consumed
    return sha


def test_put_open_seek_list_delete(storage: ExportStorage) -> None:
    data = bytes(range(256)) * 3 + b"tail"
    sha = store(storage, data)
    assert storage.exists(sha)
    with storage.open(sha) as handle:
        assert handle.read() == data
        handle.seek(95)  # crosses GridFS chunks of 10 bytes
        assert handle.read(27) == data[95:122]
        handle.seek(-4, io.SEEK_END)
        assert handle.read() == b"tail"
    [listed] = list(storage.list())
    assert listed.sha256 == sha and listed.size == len(data)
    assert listed.stored_on <= datetime.now(UTC)
    store(storage, data)  # idempotent
    assert len(list(storage.list())) == 1
    storage.delete(sha)
    assert not storage.exists(sha)
    storage.delete(sha)  # absent: no error
    with pytest.raises(FileNotFoundError):
        storage.open(sha)
    assert list(storage.list()) == []


def test_empty_file_and_bad_names(storage: ExportStorage) -> None:
    sha = store(storage, b"")
    with storage.open(sha) as handle:
        assert handle.read() == b""
    with pytest.raises(ValueError):
        storage.exists("../../etc/passwd")


def test_stale_temp_files(storage: ExportStorage) -> None:
    path = temp_path(storage.temp_dir())
    assert list(storage.stale_temp_files(datetime.now(UTC) + timedelta(seconds=5))) == [path]
    assert list(storage.stale_temp_files(datetime.now(UTC) - timedelta(hours=1))) == []


def test_gridfs_file_is_invisible_until_complete(tmp_path: Any) -> None:
    database = mongomock.MongoClient()["storage_test"]
    backend = GridFSStorage(database, chunk_size=4, temp_directory=str(tmp_path))
    data = b"0123456789"
    sha = hashlib.sha256(data).hexdigest()
    # chunks of a writer that died before its files document: not a file yet
    database["exports_fs.chunks"].insert_one({"_id": f"{sha}:0", "files_id": sha, "n": 0,
                                              "data": b"0123"})
    assert not backend.exists(sha)
    assert store(backend, data) == sha
    assert backend.open(sha).read() == data
    document = database["exports_fs.files"].find_one({"_id": sha})
    assert document["length"] == 10 and document["chunkSize"] == 4
    assert database["exports_fs.chunks"].count_documents({"files_id": sha}) == 3
