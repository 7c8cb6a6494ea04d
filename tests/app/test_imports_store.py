"""Both upload stores pass the same tests: streamed save, reads from any offset, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mongomock
import pytest

from app.imports import store as store_module
from app.imports.store import LocalUploads, MongoUploads, UploadStore


@pytest.fixture(params=["local", "mongo"])
def uploads(request: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> UploadStore:
    monkeypatch.setattr(store_module, "CHUNK_SIZE", 7)  # lines straddle chunk boundaries
    if request.param == "local":
        return LocalUploads(str(tmp_path / "uploads"))
    return MongoUploads(mongomock.MongoClient()["t"])


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
