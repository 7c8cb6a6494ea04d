"""The subscriber mirrors a collection of the real termsync server: its release, then the next
release as a diff, and HEAD in snapshot mode, with two sources' concepts of the same id; the
mirror's checksums.content equals the server's every time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app import create_app
from tests.conftest import ADMIN_TOKEN, app_config, concept

from .ocl_stub import FaultInjector, LiveServer
from .test_live_server import BuildWhileWaiting, Live

DEMO = "/orgs/DemoOrg/sources/DemoSource/"
OTHER = "/orgs/DemoOrg/sources/Other/"
DICT = "/orgs/DemoOrg/collections/Dict/"
APPLES = {f"{DEMO}concepts/Apple/", f"{OTHER}concepts/Apple/"}


@pytest.fixture
def live(tmp_path: Any) -> Iterator[Live]:
    """The real server with the demo, a second source with its own Apple, and a collection of
    both Apples, a pinned Mango and Vegetable with its mappings, released as v1."""
    application = create_app(app_config(LOAD_DEMO=True, EXPORT_DIR=str(tmp_path / "exports")))
    injector = FaultInjector(application)
    with LiveServer(injector) as server:
        live = Live(application, server.url, injector, application.test_client())
        live.call("POST", "/orgs/DemoOrg/sources/", 201, json={"id": "Other"})
        live.call("POST", f"{OTHER}concepts/", 201, json=concept("Apple", "Other apple"))
        live.call("POST", f"{OTHER}concepts/", 201, json=concept("Banana"))
        live.call("POST", "/orgs/DemoOrg/collections/", 201, json={"id": "Dict"})
        live.call("PUT", f"{DICT}references/", 200, json={"data": {"expressions": [
            *sorted(APPLES), f"{DEMO}v1.0/concepts/Mango/"]}})
        live.call("PUT", f"{DICT}references/?cascade=sourcemappings", 200,
                  json={"data": {"expressions": [f"{DEMO}concepts/Vegetable/"]}})
        live.call("POST", f"{DICT}versions/", 201, json={"id": "v1", "released": True})
        yield live


def checksum(live: Live, path: str = DICT) -> str:
    return str(live.call("GET", path, 200)["checksums"]["content"])


def curate(live: Live) -> None:
    """The demo's Apple changes (followed), the other Apple leaves, Pear enters, Mango (pinned)
    changes in its source only."""
    live.call("PATCH", f"{DEMO}concepts/Apple/", 200, json={"datatype": "Text"})
    live.call("PATCH", f"{DEMO}concepts/Mango/", 200, json={"datatype": "Text"})
    live.call("DELETE", f"{DICT}references/", 204, json={"references": [
        f"{OTHER}concepts/Apple/"]})
    live.call("PUT", f"{DICT}references/", 200, json={"data": {"expressions": [
        f"{DEMO}concepts/Pear/"]}})


@pytest.fixture
def subscribe(live: Live, make_subscriber: Any) -> Any:
    def build(mode: str, name: str) -> Any:
        return make_subscriber(live.url, mode=mode, path=DICT, name=name, token=ADMIN_TOKEN,
                               sleep=BuildWhileWaiting(live.app))
    return build


@pytest.mark.parametrize("move", ["delta", "diff"])
def test_release_then_next_release(live: Live, subscribe: Any, move: str) -> None:
    subscriber = subscribe("release", "dict")
    first = subscriber.sync()
    assert first.ok, first.error
    assert first.action == "export" and first.version == "v1"
    assert first.counts == {"concepts": 4, "mappings": 10}
    assert first.checksum == first.server_checksum == checksum(live, f"{DICT}v1/")
    store = subscriber.store
    names = {url: store.get_item("dict", url).payload["names"][0]["name"] for url in APPLES}
    assert names == {f"{DEMO}concepts/Apple/": "Apple", f"{OTHER}concepts/Apple/": "Other apple"}

    curate(live)
    assert subscriber.sync().action == "up to date"
    live.call("POST", f"{DICT}versions/", 201, json={"id": "v2", "released": True})
    if move == "diff":  # v1 is no release any more: no delta starts there (400), diffs do
        live.call("PUT", f"{DICT}v1/", 200, json={"released": False})
    second = subscriber.sync()
    assert second.ok, second.error
    assert second.action == move and second.version == "v2"
    assert second.checksum == checksum(live, f"{DICT}v2/") != checksum(live, f"{DICT}v1/")
    assert store.get_item("dict", f"{DEMO}concepts/Apple/").payload["datatype"] == "Text"
    assert store.get_item("dict", f"{OTHER}concepts/Apple/").deleted is True
    assert store.get_item("dict", f"{DEMO}concepts/Mango/").payload["datatype"] == "None"
    assert second.counts == {"concepts": 4, "mappings": 10}  # -Other's Apple +Pear


def test_snapshot_follows_head(live: Live, subscribe: Any) -> None:
    subscriber = subscribe("snapshot", "dict-head")
    first = subscriber.sync()
    assert first.ok and first.checksum == checksum(live)
    curate(live)
    result = subscriber.sync()
    assert result.ok, result.error
    assert result.checksum == result.server_checksum == checksum(live)
    assert subscriber.store.get_item("dict-head", f"{DEMO}concepts/Pear/").deleted is False
    live.call("DELETE", f"{DEMO}concepts/Pear/?hard=true", 204)  # followed: it leaves
    result = subscriber.sync()
    assert result.ok and result.checksum == checksum(live)
    assert subscriber.store.get_item("dict-head", f"{DEMO}concepts/Pear/").deleted is True
    assert result.counts == {"concepts": 3, "mappings": 10}
