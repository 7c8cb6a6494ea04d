"""The export storage interface: every backend passes the same tests."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import gridfs
import mongomock
import pytest

from app.exports.builder import temp_path
from app.exports.storage import ExportStorage, LocalStorage
from app.store import open_store
from app.store.mongo.files import GridFSStorage


@pytest.fixture(params=["local", "gridfs", "gridfs-ferretdb"])
def storage(request: Any, tmp_path: Any) -> Iterator[ExportStorage]:
    """Each backend; GridFS on mongomock and over the wire on FerretDB, as the store gives it."""
    if request.param == "local":
        yield LocalStorage(str(tmp_path / "exports"))
        return
    server = request.getfixturevalue("ferretdb_uri") if request.param == "gridfs-ferretdb" \
        else f"mongomock://{uuid.uuid4().hex}"
    store = open_store(server, mongo_db=f"storage_{uuid.uuid4().hex[:10]}")
    yield store.export_files("exports_fs", str(tmp_path / "tmp"), chunk_size=10)
    store.drop()
    store.close()


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
    database = mongomock.MongoClient()["storage_test"]  # its collections, read directly
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


def test_gridfs_files_are_read_by_pymongo_gridfs_over_the_wire(ferretdb_uri: str,
                                                               tmp_path: Any) -> None:
    """The layout is GridFS's: pymongo's own GridFS reader (and so mongofiles) reads the files."""
    store_ = open_store(ferretdb_uri, mongo_db=f"storage_{uuid.uuid4().hex[:10]}")
    try:
        data = os.urandom(1000)
        sha = store(store_.export_files("exports_fs", str(tmp_path), chunk_size=300), data)
        bucket = gridfs.GridFSBucket(store_.db, "exports_fs")  # type: ignore[attr-defined]
        assert bucket.open_download_stream(sha).read() == data
        [listed] = list(bucket.find({}))
        assert listed.length == 1000 and listed.chunk_size == 300
    finally:
        store_.drop()
        store_.close()
