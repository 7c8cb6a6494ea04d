"""Hostile files: broken and bomb archives, huge and deeply nested lines, invalid UTF-8, odd CSV,
path traversal in tarballs, bad Range headers. Each gets a clear error or is handled, memory stays
bounded, and nothing is written outside the working directory."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mongomock
import pytest

from app import create_app
from sync.client import TermsyncClient
from sync.config import Subscription
from sync.errors import InvalidExport
from sync.reader import ExportReader
from sync.store.mongo import MongoStore
from sync.subscriber import Subscriber
from tests.conftest import ADMIN, FIXTURES, app_config, concept
from tests.sync.ocl_stub import LiveServer, StubSource, StubVersion, create_stub_app

IMPORTS = "/importers/bulk-import/"
URL = "/orgs/O/sources/S/"
DEMO_EXPORT = FIXTURES / "DemoSource_v1.0.zip"
MB = 1 << 20


def peak_bytes(call: Callable[[], Any]) -> tuple[Any, int]:
    """Run `call`; return its result and the peak of Python allocations made meanwhile."""
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    application = create_app(app_config(IMPORT_DIR=str(tmp_path / "imports"),
                                        EXPORT_DIR=str(tmp_path / "exports")))
    client = application.test_client()
    client.post("/orgs/", json={"id": "O"}, headers=ADMIN)
    client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN)
    yield application


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def import_job(app: Any, client: Any, body: bytes, content_type: str = "application/x-ndjson"
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Submit an upload, run it, return the job and its per-line results."""
    answer = client.post(f"{IMPORTS}?update_if_exists=true", data=body, content_type=content_type,
                         headers=ADMIN)
    assert answer.status_code == 202, answer.get_json()
    job_id = answer.get_json()["id"]
    app.extensions["termsync.jobs"].run_until_idle()
    job = client.get(f"{IMPORTS}{job_id}/", headers=ADMIN).get_json()
    results = client.get(f"{IMPORTS}{job_id}/results/?limit=500", headers=ADMIN).get_json()
    return job, results


def line(payload: dict[str, Any]) -> bytes:
    return json.dumps(dict(payload, type="Concept", owner="O", owner_type="Organization",
                           source="S")).encode() + b"\n"


# --- bulk import: lines -------------------------------------------------------------------------
def test_json_line_of_50_mb_is_refused_with_413_in_bounded_memory(client: Any,
                                                                   tmp_path: Path) -> None:
    upload = tmp_path / "huge.jsonl"
    with upload.open("wb") as handle:
        handle.write(line(concept("1")))
        handle.write(b'{"type": "Concept", "id": "2", "extras": {"blob": "')
        for _ in range(50):
            handle.write(b"x" * MB)
        handle.write(b'"}}\n')

    def post() -> Any:
        with upload.open("rb") as body:  # streamed: `data=` would read it all into memory
            return client.post(IMPORTS, input_stream=body, content_type="application/x-ndjson",
                               content_length=upload.stat().st_size, headers=ADMIN)

    answer, peak = peak_bytes(post)
    assert answer.status_code == 413
    error = answer.get_json()
    assert {"code", "status", "message"} <= set(error)
    assert "Line 2 is longer than 4194304 bytes" in error["message"]
    assert peak < 16 * MB, f"peak {peak / MB:.1f} MB while refusing a 50 MB line"
    assert list((tmp_path / "imports").glob("*")) == []  # the partial upload is gone
    assert client.get(IMPORTS, headers=ADMIN).get_json() == []


def test_line_limit_is_configurable(tmp_path: Path) -> None:
    application = create_app(app_config(IMPORT_DIR=str(tmp_path), IMPORT_MAX_LINE_BYTES=100))
    answer = application.test_client().post(IMPORTS, data=b"{}\n" + b" " * 101 + b"\n",
                                            content_type="application/x-ndjson", headers=ADMIN)
    assert answer.status_code == 413 and "Line 2" in answer.get_json()["message"]


def test_deeply_nested_json_is_a_per_line_error(app: Any, client: Any) -> None:
    nested: dict[str, Any] = {}
    cursor = nested
    for _ in range(60):
        cursor["a"] = {}
        cursor = cursor["a"]
    body = (b"[" * 100_000 + b"]" * 100_000 + b"\n"
            + line(concept("1", extras=nested))
            + line(concept("2")))
    job, results = import_job(app, client, body)
    assert job["state"] == "FINISHED"
    assert job["summary"]["failed"] == 2
    assert [r["action"] for r in results] == ["failed", "failed", "created"]
    assert "not valid JSON" in results[0]["errors"][0]
    assert "nested deeper than 32 levels" in results[1]["errors"][0]


def test_deeply_nested_request_body_is_a_400(client: Any) -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        answer = client.post(f"{URL}concepts/", data=body, content_type="application/json",
                             headers=ADMIN)
        assert answer.status_code == 400
        assert answer.get_json()["message"] == "The request body is nested too deeply to read."
    nested: dict[str, Any] = {}
    cursor = nested
    for _ in range(200):
        cursor["a"] = {}
        cursor = cursor["a"]
    answer = client.post(f"{URL}concepts/", json=concept("1", extras=nested), headers=ADMIN)
    assert answer.status_code == 422 and "nested deeper" in json.dumps(answer.get_json())


def test_invalid_utf8_is_a_per_line_error(app: Any, client: Any) -> None:
    bad = line(concept("2", "Cafe")).replace(b"Cafe", b"Caf\xe9")  # Latin-1, not UTF-8
    body = line(concept("1")) + bad + line(concept("3")) + b"\xff\xfe\x00garbage\n"
    job, results = import_job(app, client, body)
    assert job["state"] == "FINISHED"
    assert [(r["line"], r["action"]) for r in results] == [
        (1, "created"), (2, "failed"), (3, "created"), (4, "failed")]
    position = bad.index(b"\xe9") + 1
    assert results[1]["errors"] == [f"Line is not valid UTF-8 (byte {position}); "
                                    "save the file as UTF-8."]
    assert "not valid UTF-8" in results[3]["errors"][0]
    # nothing was stored with replacement characters
    assert client.get(f"{URL}concepts/2/").status_code == 404


def test_csv_with_a_bom_imports(app: Any, client: Any) -> None:
    body = ("\ufeffresource_type,owner_id,owner_type,source,id,concept_class,datatype,name,"
            "name_locale,name_type\r\n"
            "Concept,O,Organization,S,1,Diagnosis,N/A,Malaria,en,FULLY_SPECIFIED\r\n")
    job, results = import_job(app, client, body.encode("utf-8"), "text/csv")
    assert job["state"] == "FINISHED", job
    assert [(r["line"], r["action"]) for r in results] == [(2, "created")], results
    assert client.get(f"{URL}concepts/1/").get_json()["names"][0]["name"] == "Malaria"


def test_csv_with_mismatched_columns(app: Any, client: Any) -> None:
    header = "resource_type,owner_id,owner_type,source,id,concept_class,datatype,name,name_locale"
    body = "\r\n".join([
        header,
        "Concept,O,Organization,S,1,Diagnosis,N/A,Fever,en",
        "Concept,O,Organization,S,2,Diagnosis,N/A,Cough, dry,en",  # unquoted comma: a cell too many
        "Concept,O,Organization,S,3,Diagnosis",  # cells missing: no name, no datatype
        "Concept,O,Organization,S,4,Diagnosis,N/A,Rash,en,,,",  # empty trailing cells are fine
        "Concept,O,Organization,S,5,Diagnosis,N/A,Caf\udce9,en",
    ]) + "\r\n"
    job, results = import_job(app, client, body.encode("utf-8", "surrogateescape"), "text/csv")
    assert job["state"] == "FINISHED"
    actions = {r["line"]: r["action"] for r in results}
    assert actions == {2: "created", 3: "failed", 4: "failed", 5: "created", 6: "failed"}, results
    errors = {r["line"]: r["errors"] for r in results}
    assert errors[3] == ["Row has 10 cells but the header names 9 columns; quote cells that hold "
                         "commas."]
    assert errors[4] and "not valid UTF-8" in errors[6][0]
    assert client.get(f"{URL}concepts/2/").status_code == 404


# --- export downloads: Range --------------------------------------------------------------------
def fetch(client: Any, url: str, **headers: str) -> tuple[int, Any, bytes]:
    """GET a file: status, headers and body, with the response closed (it holds the file open)."""
    answer = client.get(url, headers=headers)
    try:
        return answer.status_code, answer.headers, answer.get_data()
    finally:
        answer.close()


@pytest.fixture
def export(app: Any, client: Any) -> dict[str, Any]:
    """A built export: its URLs, bytes and size."""
    for n in range(40):
        client.post(f"{URL}concepts/", json=concept(str(n)), headers=ADMIN)
    client.post(f"{URL}versions/", json={"id": "v1", "released": True}, headers=ADMIN)
    app.extensions["termsync.jobs"].run_until_idle()
    status, headers, body = fetch(client, f"{URL}v1/export/")
    assert status == 200
    assert headers["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    file_url = headers["exportURL"].replace("http://localhost", "")
    return {"urls": (f"{URL}v1/export/", file_url), "body": body, "size": len(body)}


MALFORMED_RANGES = ["bytes=abc", "bytes", "bytes=", "bytes=-", "items=0-5", "bytes=0-1,5-6",
                    "bytes=--1", "bytes=1-2-3", "bytes=" + "9" * 5000 + "-",
                    "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000, " ", "bytes=0x10-"]


@pytest.mark.parametrize("range_header", MALFORMED_RANGES)
def test_malformed_range_gets_the_whole_file(client: Any, export: dict[str, Any],
                                             range_header: str) -> None:
    for url in export["urls"]:
        status, _, body = fetch(client, url, Range=range_header)
        assert status == 200, (url, range_header, status)
        assert body == export["body"]


def test_out_of_bounds_ranges(client: Any, export: dict[str, Any]) -> None:
    size = export["size"]
    for url in export["urls"]:
        for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0",
                       "bytes=5-3", f"bytes={10 ** 17}-"):
            status, headers, _ = fetch(client, url, Range=header)
            assert status == 416, (url, header)
            assert headers["Content-Range"] == f"bytes */{size}"
        # a last position past the end is clipped; a suffix longer than the file is all of it
        for header, start in ((f"bytes=10-{10 ** 17}", 10), (f"bytes=-{size * 5}", 0),
                              (f"bytes={size - 1}-", size - 1)):
            status, headers, body = fetch(client, url, Range=header)
            assert status == 206, (url, header)
            assert headers["Content-Range"] == f"bytes {start}-{size - 1}/{size}"
            assert body == export["body"][start:]


# --- the subscriber's export reader -------------------------------------------------------------
def read_all(path: Path, **limits: Any) -> int:
    with ExportReader(path, **limits) as reader:
        return sum(1 for _ in reader.items())


def test_demo_export_reads(tmp_path: Path) -> None:
    assert read_all(DEMO_EXPORT) == 45


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_zip_is_invalid(tmp_path: Path, keep: float) -> None:
    data = DEMO_EXPORT.read_bytes()
    path = tmp_path / "cut.zip"
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(InvalidExport):
        read_all(path)


@pytest.mark.parametrize("offset", [40, 200, 1000, 3000, -200, -30])
def test_corrupted_zip_is_invalid(tmp_path: Path, offset: int) -> None:
    data = bytearray(DEMO_EXPORT.read_bytes())
    for n in range(8):
        data[offset + n] ^= 0x5A
    path = tmp_path / "bad.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidExport):
        read_all(path)


def test_zip_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("export.json", "w", force_zip64=True) as member:
            member.write(b'{"type": "Source Version", "concepts": [], "x": "')
            block = b" " * MB
            for _ in range(256):
                member.write(block)
            member.write(b'"}')
    assert path.stat().st_size < 2 * MB

    def refuse() -> None:
        with pytest.raises(InvalidExport, match="zip bomb"):
            read_all(path)

    _, peak = peak_bytes(refuse)
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MB while refusing a 256 MB entry"
    # an absolute ceiling applies to well-compressed files too
    with pytest.raises(InvalidExport, match="more than the 1000 bytes"):
        read_all(DEMO_EXPORT, max_bytes=1000)


def test_tar_gz_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"

    class Spaces(io.RawIOBase):
        left = 128 * MB

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            count = min(len(buffer), self.left)
            buffer[:count] = b" " * count
            self.left -= count
            return count

    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("export.json")
        info.size = Spaces.left
        tar.addfile(info, io.BufferedReader(Spaces()))
    with pytest.raises(InvalidExport, match="zip bomb"):
        read_all(path)


def test_tar_gz_export_with_path_traversal_writes_nothing_outside(tmp_path: Path) -> None:
    """A subscriber served a hostile tar.gz fails the pass clearly and writes no member anywhere."""
    work = tmp_path / "work"
    work.mkdir()
    hostile = tmp_path / "hostile.tar.gz"
    export = json.dumps({"type": "Source Version", "id": "v1", "concepts": [], "mappings": []})
    with tarfile.open(hostile, "w:gz") as tar:
        for name in ("export.json", "../../escaped.json", "/tmp/absolute-escape.json",
                     "a/../../../escaped2.json"):
            data = export.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    stub = StubSource(owner="DemoOrg", source="DemoSource")
    stub.put_concept("C1")
    stub.versions.append(StubVersion(id="v1", items=dict(stub.items), created_on=stub.now(),
                                     export_path=hostile))
    before = set(tmp_path.rglob("*"))
    with LiveServer(create_stub_app(stub)) as server:
        subscription = Subscription(name="demo", server=server.url,
                                    url="/orgs/DemoOrg/sources/DemoSource/", work_dir=str(work))
        client = TermsyncClient(server.url, None, timeout=10, max_retries=0,
                                sleep=lambda seconds: None)
        result = Subscriber(subscription, client, MongoStore(mongomock.MongoClient()["m"], "mongomock://")).sync()
    assert not result.ok and "unsafe path" in (result.error or "")
    assert set(tmp_path.rglob("*")) == before  # nothing extracted; the download was removed
    assert not Path("/tmp/absolute-escape.json").exists()


def test_oversized_request_body_is_a_413(client: Any) -> None:
    body = json.dumps(concept("1", extras={"blob": "x" * (17 * MB)})).encode()
    answer = client.post(f"{URL}concepts/", data=body, content_type="application/json",
                         headers=ADMIN)
    assert answer.status_code == 413
    assert {"code", "status", "message"} <= set(answer.get_json())
    assert client.get(f"{URL}concepts/1/").status_code == 404


def test_integers_beyond_64_bits_in_extras_are_a_422(client: Any, source: Any) -> None:
    url = source()
    answer = client.post(f"{url}concepts/", headers=ADMIN,
                         json=concept("big", extras={"n": 2**63, "nested": [{"m": -2**64}]}))
    assert answer.status_code == 422
    assert "64 bits" in str(answer.get_json()["errors"])
    assert client.post(f"{url}concepts/", headers=ADMIN,
                       json=concept("ok", extras={"n": 2**63 - 1})).status_code == 201
