"""The export reader: zip, tar.gz and plain JSON, OCL's variations, bad files, chunk boundaries."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest

from sync import reader as reader_module
from sync.errors import InvalidExport
from sync.reader import ExportReader

from .conftest import DEMO_EXPORT


def read_all(path):
    with ExportReader(path) as reader:
        items = list(reader.items())
    return reader.header, items


def export_json(**extra):
    return json.dumps({"type": "Source", "id": "HEAD", **extra,
                       "concepts": [{"id": "A", "url": "/orgs/O/sources/S/concepts/A/",
                                     "updated_at": "2019-05-01T10:00:00"}],
                       "mappings": [{"id": "1", "url": "/orgs/O/sources/S/mappings/1/"}],
                       "lastUpdated": "2019-05-01T10:00:00"}).encode()


def test_legacy_tar_gz_export_with_top_level_fields_after_the_items(tmp_path):
    path = tmp_path / "export.tgz"
    data = export_json()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("export.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    header, items = read_all(path)
    assert header == {"type": "Source", "id": "HEAD", "lastUpdated": "2019-05-01T10:00:00"}
    assert [kind for kind, _ in items] == ["concepts", "mappings"]


def test_tar_with_path_traversal_member_is_rejected(tmp_path):
    path = tmp_path / "evil.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for name in ("export.json", "../../etc/cron.d/evil"):
            info = tarfile.TarInfo(name)
            info.size = 2
            archive.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(InvalidExport, match="unsafe path"):
        read_all(path)


def test_not_an_export(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 this is no zip")
    with pytest.raises(InvalidExport):
        read_all(broken)
    bad_json = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad_json, "w") as archive:
        archive.writestr("export.json", b'{"id": "v1", "concepts": [{"id": ')
    with pytest.raises(InvalidExport, match="not valid JSON"):
        read_all(bad_json)
    no_member = tmp_path / "other.zip"
    with zipfile.ZipFile(no_member, "w") as archive:
        archive.writestr("a.txt", b"x")
        archive.writestr("b.txt", b"x")
    with pytest.raises(InvalidExport, match=r"no export\.json"):
        read_all(no_member)


def test_real_ocl_export_parses_in_one_pass():
    header, items = read_all(DEMO_EXPORT)
    assert header["type"] == "Source Version" and header["id"] == "v1.0"
    assert "concepts" not in header and header["concepts_url"].endswith("/concepts/")
    assert sum(kind == "concepts" for kind, _ in items) == 23
    assert sum(kind == "mappings" for kind, _ in items) == 22


TRICKY = {
    "type": "Source Version", "id": "v1", "n": 12345678901234567890123, "f": -1.5e-7,
    "t": True, "z": None, "empty": {}, "list": [],
    "concepts": [{"id": "A", "names": [{"name": "Café \\\"quoted\\\" \u00e9\u4e2d\U0001f600"}],
                  "extras": {"x": [1, 2.5, {"y": None}], "brace": "}]{["}},
                 None, {"id": "B", "n": 7}],
    "mappings": [],
    "after": "the end",
}


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 13, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_values_cut_at_any_chunk_boundary(tmp_path, monkeypatch, chunk, indent):
    monkeypatch.setattr(reader_module, "TEXT_CHUNK", chunk)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(TRICKY, indent=indent, ensure_ascii=chunk % 2 == 0))
    header, items = read_all(path)
    expected = {k: v for k, v in TRICKY.items() if k not in ("concepts", "mappings")}
    assert header == expected
    assert items == [("concepts", TRICKY["concepts"][0]), ("concepts", TRICKY["concepts"][2])]


@pytest.mark.parametrize("text, message", [
    ('{"concepts": [1]}', "concepts.item holds a int, not an object"),
    ('{"concepts": "x"}', "concepts is a str, not an array"),
    ('{"id": "v1",}', "not valid JSON"),
    ('{"id": NaN}', "NaN is not JSON"),
    ('{"id": "v1"} {}', "data after its object"),
    ('{"id": "v1", "concepts": [{"id": "A"}]]}', "not valid JSON"),
    ('[1, 2]', "expected '{'"),
    ('{"id": "unterminated', "not valid JSON"),
    ('{"id": tru', "not valid JSON"),
])
def test_bad_json_is_refused_clearly(tmp_path, monkeypatch, text, message):
    monkeypatch.setattr(reader_module, "TEXT_CHUNK", 4)
    path = tmp_path / "export.json"
    path.write_text(text)
    with pytest.raises(InvalidExport, match=message):
        read_all(path)


def test_a_value_too_long_to_buffer_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_module, "MAX_VALUE_CHARS", 1000)
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"concepts": [{"id": "A", "blob": "x" * 5000}]}))
    with pytest.raises(InvalidExport, match="longer than 1000 characters"):
        read_all(path)
