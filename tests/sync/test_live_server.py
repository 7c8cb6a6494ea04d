"""End to end against the deployed stack (tests/stack.py: nginx, gunicorn with gunicorn.conf.py,
`termsync worker`): a subscriber in release and snapshot mode, a sync stopped half way, downloads
cut or corrupted and a server that answers 429 or 503 (scripted by a fault injector between the
subscriber and the stack)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, concept, mapping
from tests.stack import Stack

from .ocl_stub import Fault, FaultInjector, ForwardTo, LiveServer

pytestmark = pytest.mark.slow


@dataclass
class Live:
    """A source on the stack (the demo, in an organization of the test's own), reached through a
    fault injector."""

    stack: Stack
    path: str  # the source
    url: str  # the fault injector's address, in front of the stack
    faults: FaultInjector

    def checksum(self, version: str | None = None) -> str:
        path = self.path if version is None else f"{self.path}{version}/"
        return str(self.call("GET", path, 200)["checksums"]["content"])

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        answer = self.stack.call(method, path, expect, **kwargs)
        return answer.json() if answer.content else None


class WaitForJobs:
    """The subscriber's sleep: records each wait, then waits (polling) until the stack's worker
    has run every queued job (the export the subscriber waits for), not the seconds asked."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.stack.run_jobs()


def faulty_front(stack: Stack, path: str) -> Iterator[Live]:
    """A source on the stack and a fault injector in front of the stack, on loopback."""
    injector = FaultInjector(ForwardTo(stack.url))
    with LiveServer(injector) as server:
        yield Live(stack, path, server.url, injector)


@pytest.fixture
def live(stack: Stack) -> Iterator[Live]:
    """The demo source on the stack, behind a fault injector."""
    yield from faulty_front(stack, stack.demo())


@pytest.fixture
def subscribe(live: Live, make_subscriber: Any) -> Any:
    def build(mode: str = "release", **overrides: Any) -> Any:
        overrides.setdefault("sleep", WaitForJobs(live.stack))
        overrides.setdefault("token", ADMIN_TOKEN)
        return make_subscriber(live.url, mode=mode, path=live.path, **overrides)
    return build


def local(subscriber: Any) -> dict[str, str]:
    return dict(subscriber.store.url_versions(subscriber.name))


def curate(live: Live) -> None:
    """A curator changes, retires, un-retires, hard-deletes and adds items in HEAD."""
    source = live.path
    live.call("PATCH", f"{source}concepts/Cucumber/", 200,
              json={"names": [{"name": "Cucumis sativus", "locale": "en",
                               "locale_preferred": True, "name_type": "Fully Specified"}]})
    live.call("DELETE", f"{source}concepts/Corn/", 204)  # retire
    live.call("DELETE", f"{source}concepts/Mango/", 204)
    live.call("PATCH", f"{source}concepts/Mango/", 200, json={"retired": False})  # un-retire
    live.call("DELETE", f"{source}mappings/22/?hard=true", 204)
    live.call("DELETE", f"{source}concepts/Potato/?hard=true", 204)
    live.call("POST", f"{source}concepts/", 201, json=concept("Kale"))
    live.call("POST", f"{source}mappings/", 201,
              json=mapping(f"{source}concepts/Kale/", f"{source}concepts/Cucumber/"))


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
    live.call("POST", f"{live.path}versions/", 201, json={"id": "v2", "released": True})
    live.call("PATCH", f"{live.path}concepts/Corn/", 200, json={"retired": False})  # after v2
    if move == "diff":  # v1.0 is no release any more: no delta starts there (400), diffs do
        live.call("PUT", f"{live.path}v1.0/", 200, json={"released": False})

    second = subscriber.sync()
    assert second.ok, second.error
    assert second.action == move and second.version == "v2"
    assert second.checksum == live.checksum("v2") != live.checksum("v1.0")
    store = subscriber.store
    assert store.get_item("demo", f"{live.path}concepts/Corn/").payload["retired"] is True
    assert store.get_item("demo", f"{live.path}concepts/Mango/").payload["retired"] is False
    assert store.get_item("demo", f"{live.path}concepts/Potato/").deleted is True
    assert store.get_item("demo", f"{live.path}concepts/Cucumber/").payload["names"][0]["name"] == \
        "Cucumis sativus"
    assert second.counts == {"concepts": 23, "mappings": 22}  # -Potato +Kale, -22 +1


def test_snapshot_mode_converges_to_head(live: Live, subscribe: Any) -> None:
    subscriber = subscribe("snapshot")
    assert subscriber.sync().ok
    curate(live)
    result = subscriber.sync()
    assert result.ok, result.error
    assert result.checksum == result.server_checksum == live.checksum()
    live.call("PATCH", f"{live.path}concepts/Corn/", 200, json={"retired": False})
    live.call("DELETE", f"{live.path}concepts/Kale/?hard=true", 204)
    result = subscriber.sync()
    assert result.ok and result.checksum == live.checksum()
    assert subscriber.store.get_item("demo", f"{live.path}concepts/Corn/").payload["retired"] is False


def test_killed_after_page_k_resumes_and_converges(live: Live, subscribe: Any) -> None:
    stop = threading.Event()
    subscriber = subscribe("snapshot", stop_event=stop)
    assert subscriber.sync().ok
    for n in range(27):
        live.stack.clock.advance(1)  # each in a second of its own: pages of five
        live.call("POST", f"{live.path}concepts/", 201, json=concept(f"N{n:02d}"))
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
    sleep = WaitForJobs(live.stack)
    subscriber = subscribe("release", sleep=sleep)
    assert subscriber.sync().ok
    assert sleep.waits[:2] == [3.0, 11.0]
    before = subscriber.store.checksum("demo")
    curate(live)
    live.call("POST", f"{live.path}versions/", 201, json={"id": "v2", "released": True})
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
        urls.append(live.call("POST", f"{live.path}concepts/", 201, json=concept(concept_id))["url"])
    for number, (source, target) in enumerate(itertools.pairwise(urls)):
        live.call("POST", f"{live.path}mappings/", 201, json=dict(mapping(source, target), id=f"odd{number}"))
    live.call("POST", f"{live.path}versions/", 201, json={"id": "v2.0-rc_1@x", "released": True})

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
    later = live.call("POST", f"{live.path}concepts/", 201, json=concept("later ?#%"))["url"]
    result = snapshot.sync()
    assert result.ok, result.error
    assert result.checksum == result.server_checksum == live.checksum()
    assert snapshot.store.get_item("snap", later).payload["id"] == "later ?#%"
    assert snapshot.store.get_item("snap", urls[0]).payload["external_id"] == "changed"
