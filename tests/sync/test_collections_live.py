"""The subscriber mirrors a collection on the deployed stack: its release, then the next release
as a diff, and HEAD in snapshot mode, with two sources' concepts of the same id; the mirror's
checksums.content equals the server's every time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.stack import Stack, demo_dictionary

from .test_live_server import Live, WaitForJobs, faulty_front

pytestmark = pytest.mark.slow


@pytest.fixture
def live(stack: Stack) -> Iterator[Live]:
    """The demo with a second source with its own Apple, and a collection of both Apples, a
    pinned Mango and Vegetable with its mappings, released as v1; `path` is the collection."""
    yield from faulty_front(stack, demo_dictionary(stack, stack.demo()))


def apples(demo: str, other: str) -> set[str]:
    """The demo's Apple and the other source's."""
    return {f"{demo}concepts/Apple/", f"{other}concepts/Apple/"}


def sources(live: Live) -> tuple[str, str]:
    """The demo source and the other source of the collection's organization."""
    org = live.path.split("/")[2]
    return f"/orgs/{org}/sources/DemoSource/", f"/orgs/{org}/sources/Other/"


def checksum(live: Live, path: str | None = None) -> str:
    return str(live.call("GET", path or live.path, 200)["checksums"]["content"])


def curate(live: Live) -> None:
    """The demo's Apple changes (followed), the other Apple leaves, Pear enters, Mango (pinned)
    changes in its source only."""
    demo, other = sources(live)
    collection = live.path
    live.call("PATCH", f"{demo}concepts/Apple/", 200, json={"datatype": "Text"})
    live.call("PATCH", f"{demo}concepts/Mango/", 200, json={"datatype": "Text"})
    live.call("DELETE", f"{collection}references/", 204, json={"references": [
        f"{other}concepts/Apple/"]})
    live.call("PUT", f"{collection}references/", 200, json={"data": {"expressions": [
        f"{demo}concepts/Pear/"]}})


@pytest.fixture
def subscribe(live: Live, make_subscriber: Any) -> Any:
    def build(mode: str, name: str) -> Any:
        return make_subscriber(live.url, mode=mode, path=live.path, name=name, token=ADMIN_TOKEN,
                               sleep=WaitForJobs(live.stack))
    return build


@pytest.mark.parametrize("move", ["delta", "diff"])
def test_release_then_next_release(live: Live, subscribe: Any, move: str) -> None:
    demo, other = sources(live)
    collection, both_apples = live.path, apples(*sources(live))
    subscriber = subscribe("release", "dict")
    first = subscriber.sync()
    assert first.ok, first.error
    assert first.action == "export" and first.version == "v1"
    assert first.counts == {"concepts": 4, "mappings": 10}
    assert first.checksum == first.server_checksum == checksum(live, f"{collection}v1/")
    store = subscriber.store
    names = {url: store.get_item("dict", url).payload["names"][0]["name"] for url in both_apples}
    assert names == {f"{demo}concepts/Apple/": "Apple", f"{other}concepts/Apple/": "Other apple"}

    curate(live)
    assert subscriber.sync().action == "up to date"
    live.call("POST", f"{collection}versions/", 201, json={"id": "v2", "released": True})
    if move == "diff":  # v1 is no release any more: no delta starts there (400), diffs do
        live.call("PUT", f"{collection}v1/", 200, json={"released": False})
    second = subscriber.sync()
    assert second.ok, second.error
    assert second.action == move and second.version == "v2"
    assert second.checksum == checksum(live, f"{collection}v2/") != checksum(live, f"{collection}v1/")
    assert store.get_item("dict", f"{demo}concepts/Apple/").payload["datatype"] == "Text"
    assert store.get_item("dict", f"{other}concepts/Apple/").deleted is True
    assert store.get_item("dict", f"{demo}concepts/Mango/").payload["datatype"] == "None"
    assert second.counts == {"concepts": 4, "mappings": 10}  # -Other's Apple +Pear


def test_snapshot_follows_head(live: Live, subscribe: Any) -> None:
    demo = sources(live)[0]
    subscriber = subscribe("snapshot", "dict-head")
    first = subscriber.sync()
    assert first.ok and first.checksum == checksum(live)
    curate(live)
    result = subscriber.sync()
    assert result.ok, result.error
    assert result.checksum == result.server_checksum == checksum(live)
    assert subscriber.store.get_item("dict-head", f"{demo}concepts/Pear/").deleted is False
    live.call("DELETE", f"{demo}concepts/Pear/?hard=true", 204)  # followed: it leaves
    result = subscriber.sync()
    assert result.ok and result.checksum == checksum(live)
    assert subscriber.store.get_item("dict-head", f"{demo}concepts/Pear/").deleted is True
    assert result.counts == {"concepts": 3, "mappings": 10}
