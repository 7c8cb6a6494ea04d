"""Both upload stores pass the same tests: streamed save, reads from any offset, delete."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.imports.store import LocalUploads, UploadStore
from app.store import open_store


@pytest.fixture(params=["local", "mongo", "mongo-ferretdb"])
def uploads(request: Any, tmp_path: Path) -> Iterator[UploadStore]:
    """Each backend; MongoDB's on mongomock and over the wire on FerretDB, as the store gives it."""
    if request.param == "local":
        yield LocalUploads(str(tmp_path / "uploads"))
        return
    server = request.getfixturevalue("ferretdb_uri") if request.param == "mongo-ferretdb" \
        else f"mongomock://{uuid.uuid4().hex}"
    store = open_store(server, mongo_db=f"uploads_{uuid.uuid4().hex[:10]}")
    yield store.import_uploads(chunk_size=7)  # lines straddle chunk boundaries
    store.drop()
    store.close()


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


DATA = b'{"a": 1}\n\n{"b": "two"}\nlast line without newline'


def test_save_and_read_back_from_every_line_start(uploads: UploadStore) -> None:
    assert uploads.save("u1", pieces(DATA, 5)) == len(DATA)
    lines = list(uploads.read_lines("u1"))
    assert b"".join(line for line, _ in lines) == DATA
    assert [line for line, _ in lines] == DATA.splitlines(keepends=True)
    assert lines[-1][1] == len(DATA)
    for index, (_, end) in enumerate(lines[:-1]):  # resume after any line
        assert [line for line, _ in uploads.read_lines("u1", end)] == [
            line for line, _ in lines[index + 1:]]
    assert list(uploads.read_lines("u1", len(DATA))) == []


def test_a_failed_save_keeps_nothing(uploads: UploadStore) -> None:
    def broken() -> Iterator[bytes]:
        yield DATA
        raise RuntimeError("client went away")
    with pytest.raises(RuntimeError):
        uploads.save("u2", broken())
    with pytest.raises(FileNotFoundError):
        list(uploads.read_lines("u2"))


def test_delete(uploads: UploadStore) -> None:
    uploads.save("u3", [DATA])
    uploads.delete("u3")
    uploads.delete("u3")  # twice is fine
    with pytest.raises(FileNotFoundError):
        list(uploads.read_lines("u3"))
