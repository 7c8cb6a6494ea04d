"""Delta packages on the subscriber's side, on both local stores (SQLite and mongomock): a release
mode pass moves with one delta download, `apply FILE` brings an export or a delta in from disk,
and neither changes anything when the package does not fit or was tampered with."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from app import create_app
from sync.cli import main
from sync.store import LocalStore
from tests.conftest import ADMIN, ADMIN_TOKEN, app_config, concept

from .conftest import sqlite_uri, tamper
from .ocl_stub import FaultInjector, LiveServer
from .test_live_server import curate, local

BASE = "/orgs/DemoOrg/sources/DemoSource/"


@dataclass
class Live:
    """The real server in this process, served on loopback, and a curator's test client."""

    app: Any
    url: str
    faults: FaultInjector
    curator: Any
    path: str = BASE

    def checksum(self, version: str | None = None) -> str:
        return str(self.call("GET", BASE if version is None else f"{BASE}{version}/",
                             200)["checksums"]["content"])

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        answer = self.curator.open(path, method=method, headers=ADMIN, **kwargs)
        assert answer.status_code == expect, (method, path, answer.get_json())
        return answer.get_json()


class BuildWhileWaiting:
    """The subscriber's sleep: lets the server's export workers run."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, seconds: float) -> None:
        self.app.extensions["termsync.jobs"].run_until_idle()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """The real server with OCL's demo released as v1.0."""
    application = create_app(app_config(LOAD_DEMO=True, EXPORT_DIR=str(tmp_path / "exports")))
    injector = FaultInjector(application)
    with LiveServer(injector) as server:
        yield Live(application, server.url, injector, application.test_client())


@pytest.fixture
def subscribe(live: Live, make_subscriber: Any) -> Any:
    def build(**overrides: Any) -> Any:
        overrides.setdefault("sleep", BuildWhileWaiting(live.app))
        return make_subscriber(live.url, mode=overrides.pop("mode", "release"), path=BASE,
                               token=ADMIN_TOKEN, **overrides)
    return build


def release(live: Live, version_id: str) -> None:
    """Release HEAD; its export and its delta from the release before are built."""
    live.call("POST", f"{BASE}versions/", 201, json={"id": version_id, "released": True})
    live.app.extensions["termsync.jobs"].run_until_idle()


def download(live: Live, path: str, target: Path) -> Path:
    live.app.extensions["termsync.jobs"].run_until_idle()  # the demo's v1.0 export too
    answer = requests.get(f"{live.url}{path}", timeout=30)
    assert answer.status_code == 200, answer.status_code
    target.write_bytes(answer.content)
    return target


def content_of(live: Live, version_id: str) -> dict[str, str]:
    """{url: version} of a released version, from its export."""
    answer = requests.get(f"{live.url}{BASE}{version_id}/export/", timeout=30)
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        export = json.loads(archive.read("export.json"))
    return {item["url"]: item["version"] for item in export["concepts"] + export["mappings"]}


def snapshot(store: LocalStore) -> tuple[Any, ...]:
    """Everything a subscriber keeps of the subscription: items, payloads, state."""
    items = {url: store.get_item("demo", url) for url, _ in list(store.url_versions("demo"))}
    state = store.load_state("demo")
    return items, state.version, state.last_updated, state.server_checksum, store.checksum("demo")


# --- online: release mode moves with a delta ---------------------------------------------------
def test_release_mode_moves_with_one_delta_download(live: Live, subscribe: Any) -> None:
    subscriber = subscribe()
    assert subscriber.sync().version == "v1.0"
    curate(live)
    release(live, "v2")
    result = subscriber.sync()
    assert result.ok, result.error
    assert result.action == "delta" and result.version == "v2" and result.pages == 0
    assert result.applied == 7  # the curated changes, tombstones included
    assert result.checksum == result.server_checksum == live.checksum("v2")
    assert local(subscriber) == content_of(live, "v2")
    assert subscriber.store.get_item("demo", f"{BASE}concepts/Potato/").deleted is True
    state = subscriber.store.load_state("demo")
    assert state.version_url == f"{BASE}v2/" and state.export_verified is True
    assert subscriber.sync().action == "up to date"
    # a delta that was not built (deleted): 204, POSTed, waited for (the server builds meanwhile)
    live.call("PATCH", f"{BASE}concepts/Kale/", 200, json={"datatype": "Coded"})
    release(live, "v3")
    live.call("DELETE", f"{BASE}v3/export/?since=v2", 204)
    third = subscriber.sync()
    assert third.ok and third.action == "delta" and third.applied == 1
    assert third.checksum == live.checksum("v3")


def test_a_delta_that_does_not_fit_the_copy_falls_back_and_converges(live: Live,
                                                                     subscribe: Any) -> None:
    subscriber = subscribe()
    assert subscriber.sync().ok
    tamper(subscriber.store, "demo", f"{BASE}concepts/Apple/", version="999")  # the copy drifted
    curate(live)
    release(live, "v2")
    result = subscriber.sync()  # delta refused (not v1.0 any more): diffs, then a reload
    assert result.ok, result.error
    assert result.checksum == live.checksum("v2") and local(subscriber) == content_of(live, "v2")


# --- offline: apply FILE ----------------------------------------------------------------------
def test_applying_the_delta_to_from_gives_to(live: Live, subscribe: Any, tmp_path: Path) -> None:
    subscriber = subscribe()
    assert subscriber.sync().version == "v1.0"
    curate(live)
    release(live, "v2")
    delta = download(live, f"{BASE}v2/export/?since=v1.0", tmp_path / "delta.zip")
    result = subscriber.apply_file(delta)
    assert result.ok, result.error
    assert result.action == "delta" and result.version == "v2"
    assert result.checksum == result.server_checksum == live.checksum("v2")
    assert subscriber.store.checksum("demo") == live.checksum("v2")
    assert local(subscriber) == content_of(live, "v2")
    assert subscriber.store.get_item("demo", f"{BASE}concepts/Potato/").deleted is True
    cucumber = subscriber.store.get_item("demo", f"{BASE}concepts/Cucumber/")
    assert cucumber.payload["names"][0]["name"] == "Cucumis sativus"
    # back online, the subscription carries on from v2
    assert subscriber.sync().action == "up to date"


def test_apply_a_whole_export_then_a_delta(live: Live, subscribe: Any, tmp_path: Path) -> None:
    subscriber = subscribe()  # never synced: an empty local copy
    export = download(live, f"{BASE}v1.0/export/", tmp_path / "v1.0.zip")
    first = subscriber.apply_file(export)
    assert first.ok, first.error
    assert first.version == "v1.0" and first.counts == {"concepts": 23, "mappings": 22}
    assert first.checksum == first.server_checksum == live.checksum("v1.0")
    curate(live)
    release(live, "v2")
    delta = download(live, f"{BASE}v2/export/?since=v1.0", tmp_path / "delta.zip")
    second = subscriber.apply_file(delta)
    assert second.ok, second.error
    assert second.checksum == live.checksum("v2") and local(subscriber) == content_of(live, "v2")
    # an export of another repository is refused, the copy untouched
    live.call("POST", "/orgs/DemoOrg/sources/", 201, json={"id": "Other"})
    live.call("POST", "/orgs/DemoOrg/sources/Other/concepts/", 201, json=concept("X"))
    live.call("POST", "/orgs/DemoOrg/sources/Other/versions/", 201,
              json={"id": "v1", "released": True})
    live.app.extensions["termsync.jobs"].run_until_idle()
    other = download(live, "/orgs/DemoOrg/sources/Other/v1/export/", tmp_path / "other.zip")
    before = snapshot(subscriber.store)
    refused = subscriber.apply_file(other)
    assert not refused.ok and "not of /orgs/DemoOrg/sources/DemoSource/" in refused.error
    assert snapshot(subscriber.store) == before


def test_apply_refuses_the_wrong_base_without_changing_anything(live: Live, subscribe: Any,
                                                                tmp_path: Path) -> None:
    subscriber = subscribe()
    assert subscriber.sync().version == "v1.0"
    curate(live)
    release(live, "v2")
    live.call("PATCH", f"{BASE}concepts/Kale/", 200, json={"datatype": "Coded"})
    release(live, "v3")
    later = download(live, f"{BASE}v3/export/?since=v2", tmp_path / "v2-v3.zip")
    before = snapshot(subscriber.store)
    result = subscriber.apply_file(later)
    assert not result.ok and "the local copy is at v1.0" in result.error
    assert snapshot(subscriber.store) == before
    # the right version name, but a copy that is not exactly it: refused by its checksum
    fitting = download(live, f"{BASE}v2/export/?since=v1.0", tmp_path / "v1-v2.zip")
    tamper(subscriber.store, "demo", f"{BASE}concepts/Apple/", version="999")
    before = snapshot(subscriber.store)
    result = subscriber.apply_file(fitting)
    assert not result.ok and "it is not exactly v1.0" in result.error
    assert snapshot(subscriber.store) == before


def rewrite(path: Path, change: Any) -> None:
    """Rewrite a zip with `change(name, data) -> data` applied to each entry (a valid zip)."""
    with zipfile.ZipFile(path) as archive:
        entries = [(name, archive.read(name)) for name in archive.namelist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, change(name, data))


def edit_json(entry: str, edit: Any) -> Any:
    def change(name: str, data: bytes) -> bytes:
        if name != entry:
            return data
        document = json.loads(data)
        edit(document)
        return json.dumps(document).encode()
    return change


TAMPERING = {
    "an item's version": edit_json("export.json", lambda export: export["concepts"][0].update(
        version="12345")),
    "an item left out": edit_json("export.json", lambda export: export["mappings"].pop()),
    "a deletion left out": edit_json("export.json", lambda export: export["deleted"].pop()),
    "an item slipped in": edit_json("export.json", lambda export: export["concepts"].append(
        dict(export["concepts"][0], url=f"{BASE}concepts/Intruder/", id="Intruder"))),
    "the manifest's target": edit_json("manifest.json", lambda manifest: manifest["to"][
        "checksums"].update(content="0" * 64)),
}


@pytest.mark.parametrize("how", [*TAMPERING, "flipped bytes", "another sha256"])
def test_apply_refuses_a_tampered_file_without_changing_anything(live: Live, subscribe: Any,
                                                                 tmp_path: Path,
                                                                 how: str) -> None:
    subscriber = subscribe()
    assert subscriber.sync().version == "v1.0"
    curate(live)
    release(live, "v2")
    delta = download(live, f"{BASE}v2/export/?since=v1.0", tmp_path / "delta.zip")
    sha256 = None
    if how in TAMPERING:
        rewrite(delta, TAMPERING[how])
    elif how == "flipped bytes":
        data = bytearray(delta.read_bytes())
        data[len(data) // 3] ^= 0xFF  # inside export.json's deflate stream
        delta.write_bytes(bytes(data))
    else:
        sha256 = "ab" * 32
    before = snapshot(subscriber.store)
    result = subscriber.apply_file(delta, sha256=sha256)
    assert not result.ok, how
    assert snapshot(subscriber.store) == before
    assert subscriber.store.load_state("demo").last_error == result.error


def test_a_failure_half_way_leaves_the_copy_as_it_was(live: Live, subscribe: Any,
                                                      tmp_path: Path) -> None:
    subscriber = subscribe(batch_size=2)
    assert subscriber.sync().version == "v1.0"
    curate(live)
    release(live, "v2")
    delta = download(live, f"{BASE}v2/export/?since=v1.0", tmp_path / "delta.zip")
    store = subscriber.store
    real_write = store.write_changes
    calls: list[int] = []

    def failing_write(changeset: Any, records: Any) -> int:
        calls.append(1)
        if len(calls) == 3:  # after two batches are in
            raise OSError("disk full")
        return real_write(changeset, records)

    store.write_changes = failing_write  # type: ignore[method-assign]
    before = snapshot(store)
    result = subscriber.apply_file(delta)
    assert not result.ok and "disk full" in result.error and len(calls) == 3
    assert snapshot(store) == before
    del store.write_changes
    assert subscriber.apply_file(delta).ok  # and the same file applies once the disk is back
    assert store.checksum("demo") == live.checksum("v2")


def test_apply_from_the_command_line(live: Live, subscribe: Any, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    database = sqlite_uri(tmp_path, "offline.db")
    config = tmp_path / "sync.toml"
    config.write_text(f'''
[[subscriptions]]
name = "demo"
server = "http://127.0.0.1:9"
url = "{BASE}"
database_uri = "{database}"

[[subscriptions]]
name = "other"
server = "http://127.0.0.1:9"
url = "/orgs/DemoOrg/sources/Other/"
database_uri = "{database}"
''')  # a server nobody answers at: apply never asks it
    export = download(live, f"{BASE}v1.0/export/", tmp_path / "v1.0.zip")
    curate(live)
    release(live, "v2")
    delta = download(live, f"{BASE}v2/export/?since=v1.0", tmp_path / "delta.zip")
    assert main(["apply", str(export), "--config", str(config)]) == 2  # which subscription?
    assert "exactly one subscription" in capsys.readouterr().err
    assert main(["apply", str(delta), "-s", "demo", "--config", str(config)]) == 1
    assert "REFUSED" in capsys.readouterr().out  # a delta needs v1.0 first
    assert main(["apply", str(export), "-s", "demo", "--config", str(config)]) == 0
    capsys.readouterr()
    digest = hashlib.sha256(delta.read_bytes()).hexdigest()
    assert main(["apply", str(delta), "-s", "demo", "--config", str(config), "--json",
                 "--sha256", digest]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["version"] == "v2" and result["action"] == "delta"
    assert result["checksum"] == live.checksum("v2")
    assert main(["status", "-s", "demo", "--config", str(config), "--json"]) == 0  # offline
    [status] = json.loads(capsys.readouterr().out)
    assert status["version"] == "v2" and status["checksum"] == live.checksum("v2")
