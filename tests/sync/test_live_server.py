"""End to end against the real termsync server (app.create_app) served on loopback."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app import create_app
from tests.conftest import ADMIN, ADMIN_TOKEN, app_config, concept, mapping

from .ocl_stub import Fault, FaultInjector, LiveServer

BASE = "/orgs/DemoOrg/sources/DemoSource/"


@dataclass
class Live:
    """The real server, its fault injector and an in-process curator client."""

    app: Any
    url: str
    faults: FaultInjector
    curator: Any

    def checksum(self, version: str | None = None) -> str:
        answer = self.curator.get(BASE if version is None else f"{BASE}{version}/", headers=ADMIN)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["checksums"]["content"]

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        answer = self.curator.open(path, method=method, headers=ADMIN, **kwargs)
        assert answer.status_code == expect, (method, path, answer.get_json())
        return answer.get_json()


class BuildWhileWaiting:
    """The subscriber's sleep: records each wait and lets the server's export workers run."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.app.extensions["termsync.jobs"].run_until_idle()


@pytest.fixture
def live(tmp_path: Any) -> Iterator[Live]:
    application = create_app(app_config(LOAD_DEMO=True, EXPORT_DIR=str(tmp_path / "exports")))
    injector = FaultInjector(application)
    with LiveServer(injector) as server:
        yield Live(application, server.url, injector, application.test_client())


@pytest.fixture
def subscribe(live: Live, make_subscriber: Any) -> Any:
    def build(mode: str = "release", **overrides: Any) -> Any:
        overrides.setdefault("sleep", BuildWhileWaiting(live.app))
        overrides.setdefault("token", ADMIN_TOKEN)
        return make_subscriber(live.url, mode=mode, path=BASE, **overrides)
    return build


def local(subscriber: Any) -> dict[str, str]:
    return dict(subscriber.store.url_versions(subscriber.name))


def curate(live: Live) -> None:
    """A curator changes, retires, un-retires, hard-deletes and adds items in HEAD."""
    live.call("PATCH", f"{BASE}concepts/Cucumber/", 200,
              json={"names": [{"name": "Cucumis sativus", "locale": "en",
                               "locale_preferred": True, "name_type": "Fully Specified"}]})
    live.call("DELETE", f"{BASE}concepts/Corn/", 204)  # retire
    live.call("DELETE", f"{BASE}concepts/Mango/", 204)
    live.call("PATCH", f"{BASE}concepts/Mango/", 200, json={"retired": False})  # un-retire
    live.call("DELETE", f"{BASE}mappings/22/?hard=true", 204)
    live.call("DELETE", f"{BASE}concepts/Potato/?hard=true", 204)
    live.call("POST", f"{BASE}concepts/", 201, json=concept("Kale"))
    live.call("POST", f"{BASE}mappings/", 201,
              json=mapping(f"{BASE}concepts/Kale/", f"{BASE}concepts/Cucumber/"))


@pytest.mark.parametrize("move", ["delta", "diff"])
def test_release_mode_first_sync_then_next_release(live: Live, subscribe: Any, move: str) -> None:
    subscriber = subscribe("release")
    first = subscriber.sync()
    assert first.ok, first.error
    assert first.action == "export" and first.version == "v1.0"
    assert first.counts == {"concepts": 23, "mappings": 22}
    assert first.checksum == live.checksum("v1.0")
    assert subscriber.store.load_state("demo").export_verified is True

    curate(live)
    assert subscriber.sync().action == "up to date"  # HEAD changed, nothing newer released
    assert subscriber.store.checksum("demo") == live.checksum("v1.0")
    live.call("POST", f"{BASE}versions/", 201, json={"id": "v2", "released": True})
    live.call("PATCH", f"{BASE}concepts/Corn/", 200, json={"retired": False})  # after v2
    if move == "diff":  # v1.0 is no release any more: no delta starts there (400), diffs do
        live.call("PUT", f"{BASE}v1.0/", 200, json={"released": False})

    second = subscriber.sync()
    assert second.ok, second.error
    assert second.action == move and second.version == "v2"
    assert second.checksum == live.checksum("v2") != live.checksum("v1.0")
    store = subscriber.store
    assert store.get_item("demo", f"{BASE}concepts/Corn/").payload["retired"] is True
    assert store.get_item("demo", f"{BASE}concepts/Mango/").payload["retired"] is False
    assert store.get_item("demo", f"{BASE}concepts/Potato/").deleted is True
    assert store.get_item("demo", f"{BASE}concepts/Cucumber/").payload["names"][0]["name"] == \
        "Cucumis sativus"
    assert second.counts == {"concepts": 23, "mappings": 22}  # -Potato +Kale, -22 +1


def test_snapshot_mode_converges_to_head(live: Live, subscribe: Any) -> None:
    subscriber = subscribe("snapshot")
    assert subscriber.sync().ok
    curate(live)
    result = subscriber.sync()
    assert result.ok, result.error
    assert result.checksum == result.server_checksum == live.checksum()
    live.call("PATCH", f"{BASE}concepts/Corn/", 200, json={"retired": False})
    live.call("DELETE", f"{BASE}concepts/Kale/?hard=true", 204)
    result = subscriber.sync()
    assert result.ok and result.checksum == live.checksum()
    assert subscriber.store.get_item("demo", f"{BASE}concepts/Corn/").payload["retired"] is False


def test_killed_after_page_k_resumes_and_converges(live: Live, subscribe: Any) -> None:
    stop = threading.Event()
    subscriber = subscribe("snapshot", stop_event=stop)
    assert subscriber.sync().ok
    for n in range(27):
        live.call("POST", f"{BASE}concepts/", 201, json=concept(f"N{n:02d}"))
    pages: list[int] = []

    def stop_after_two(phase: str, done: int, total: int | None) -> None:
        pages.append(done)
        if len(pages) == 2:
            stop.set()

    subscriber.progress = stop_after_two
    stopped = subscriber.sync()
    assert not stopped.ok and subscriber.store.load_state("demo").cursor.pages == 2
    assert local(subscriber) != {}
    stop.clear()
    subscriber.progress = None
    resumed = subscriber.sync()
    assert resumed.ok and resumed.action.startswith("resumed")
    assert resumed.checksum == live.checksum()
    assert resumed.counts == {"concepts": 50, "mappings": 22}


def test_cut_and_corrupted_downloads_recover(live: Live, subscribe: Any) -> None:
    live.faults.cut_downloads += [1500, 1000]
    live.faults.corrupt_downloads = 1
    subscriber = subscribe("release")
    result = subscriber.sync()
    assert result.ok, result.error
    assert result.checksum == live.checksum("v1.0")
    assert subscriber.store.load_state("demo").export_verified is True
    assert live.faults.cut_downloads == [] and live.faults.corrupt_downloads == 0


def test_retry_after_honoured_and_a_server_that_stays_down(live: Live, subscribe: Any) -> None:
    live.faults.faults += [Fault(path="versions/", status=429, retry_after="3"),
                           Fault(path="versions/", status=503, retry_after="11")]
    sleep = BuildWhileWaiting(live.app)
    subscriber = subscribe("release", sleep=sleep)
    assert subscriber.sync().ok
    assert sleep.waits[:2] == [3.0, 11.0]
    before = subscriber.store.checksum("demo")
    curate(live)
    live.call("POST", f"{BASE}versions/", 201, json={"id": "v2", "released": True})
    live.faults.faults.append(Fault(path="/", status=503, times=10_000, retry_after="1"))
    down = subscriber.sync()
    assert not down.ok and "503" in down.error
    assert subscriber.store.checksum("demo") == before
    assert subscriber.store.load_state("demo").version == "v1.0"


# Concept ids OCL's scheme %-quotes in URLs (docs/security.md, Input) and a namespace version id.
ODD_IDS = ["a b", "a%b", "%41", "a#b", "a?b=c", "é", "日本", "a+b", "+", " lead", "~x", "🩺"]


def test_odd_ids_sync_in_release_and_snapshot_mode(live: Live, subscribe: Any) -> None:
    """Concepts whose ids need %-quoting, and mappings between them, reach a release-mode and
    a snapshot-mode subscriber with the same ids, urls and checksums as the server's."""
    urls = []
    for concept_id in ODD_IDS:
        urls.append(live.call("POST", f"{BASE}concepts/", 201, json=concept(concept_id))["url"])
    for number, (source, target) in enumerate(itertools.pairwise(urls)):
        live.call("POST", f"{BASE}mappings/", 201, json=dict(mapping(source, target), id=f"odd{number}"))
    live.call("POST", f"{BASE}versions/", 201, json={"id": "v2.0-rc_1@x", "released": True})

    release = subscribe("release")
    result = release.sync()
    assert result.ok, result.error
    assert result.version == "v2.0-rc_1@x" and result.checksum == live.checksum("v2.0-rc_1@x")
    for concept_id, url in zip(ODD_IDS, urls, strict=True):
        stored = release.store.get_item("demo", url)
        assert stored is not None and stored.payload["id"] == concept_id, (url, stored)

    snapshot = subscribe("snapshot", name="snap")
    assert snapshot.sync().ok
    live.call("PATCH", f"{urls[0]}", 200, json={"external_id": "changed"})
    later = live.call("POST", f"{BASE}concepts/", 201, json=concept("later ?#%"))["url"]
    result = snapshot.sync()
    assert result.ok, result.error
    assert result.checksum == result.server_checksum == live.checksum()
    assert snapshot.store.get_item("snap", later).payload["id"] == "later ?#%"
    assert snapshot.store.get_item("snap", urls[0]).payload["external_id"] == "changed"
