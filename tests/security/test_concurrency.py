"""Curators write over HTTP while subscribers (release and snapshot mode) page diffs and exports
build, all on one live server on loopback. Each curator works on its own items with a fixed
script, so the end state is the same whatever the interleaving: at the end every subscriber's
checksums.content equals the server's."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from app import create_app
from sync.client import TermsyncClient
from sync.config import Subscription
from sync.store.sqlite import SQLiteStore
from sync.subscriber import Subscriber, SyncResult
from tests.conftest import ADMIN, ADMIN_TOKEN, app_config, concept
from tests.sync.ocl_stub import LiveServer

URL = "/orgs/O/sources/S/"
CURATORS = 3
STEPS = 36  # operations per curator: ~3 writes each, a release every 12
SUBSCRIBERS = (("release", 2), ("snapshot", 2))
JOIN_TIMEOUT = 120.0  # a hung thread fails the test instead of hanging the suite


@pytest.fixture(autouse=True)
def _quiet_werkzeug() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    app = create_app(app_config(EXPORT_DIR=str(tmp_path / "exports"), EXPORT_HEARTBEAT_ITEMS=10))
    client = app.test_client()
    assert client.post("/orgs/", json={"id": "O"}, headers=ADMIN).status_code == 201
    assert client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN).status_code == 201
    for n in range(20):
        client.post(f"{URL}concepts/", json=concept(f"base{n}"), headers=ADMIN)
    assert client.post(f"{URL}versions/", json={"id": "v0", "released": True},
                       headers=ADMIN).status_code == 201
    with LiveServer(app) as server:
        yield app, server.url


class Curator(threading.Thread):
    """Creates, updates, retires and hard-deletes its own concepts and mappings; cuts releases."""

    def __init__(self, server: str, number: int) -> None:
        super().__init__(name=f"curator-{number}", daemon=True)
        self.server = server
        self.number = number
        self.operations = 0
        self.error: BaseException | None = None

    def call(self, http: requests.Session, method: str, path: str, expect: int,
             **kwargs: Any) -> None:
        answer = http.request(method, f"{self.server}{URL}{path}", timeout=30, **kwargs)
        assert answer.status_code == expect, (method, path, answer.status_code, answer.text)
        self.operations += 1

    def run(self) -> None:
        try:
            with requests.Session() as http:
                http.headers.update(ADMIN)
                self.script(http)
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def script(self, http: requests.Session) -> None:
        k = self.number
        for step in range(STEPS):
            self.call(http, "POST", "concepts/", 201, json=concept(f"c{k}-{step}"))
            if step % 3 == 1:
                self.call(http, "PATCH", f"concepts/c{k}-{step - 1}/", 200,
                          json={"external_id": f"x{step}", "extras": {"step": step}})
            if step % 4 == 3:
                self.call(http, "POST", "mappings/", 201, json={
                    "id": f"m{k}-{step}", "map_type": "SAME-AS",
                    "from_concept_url": f"{URL}concepts/c{k}-{step}/",
                    "to_concept_url": f"{URL}concepts/c{k}-{step - 1}/"})
            if step % 8 == 7:
                self.call(http, "PATCH", f"mappings/m{k}-{step - 4}/", 200,
                          json={"map_type": "NARROWER-THAN"})
                self.call(http, "DELETE", f"mappings/m{k}-{step}/", 204)
            if step % 5 == 4:
                self.call(http, "DELETE", f"concepts/c{k}-{step - 2}/", 204)  # retire
            if step % 6 == 0:
                self.call(http, "POST", "concepts/", 201, json=concept(f"t{k}-{step}"))
            if step % 6 == 5:
                self.call(http, "DELETE", f"concepts/t{k}-{step - 5}/?hard=true", 204)
            if step % 12 == 11:
                self.call(http, "POST", "versions/", 201,
                          json={"id": f"v{k}.{step}", "released": True})


class Follower(threading.Thread):
    """A subscriber that syncs again and again until the curators are done."""

    def __init__(self, app: Any, server: str, mode: str, number: int, work_dir: Path,
                 curators_done: threading.Event) -> None:
        super().__init__(name=f"{mode}-{number}", daemon=True)
        self.curators_done = curators_done
        jobs = app.extensions["termsync.jobs"]
        subscription = Subscription(name=f"{mode}{number}", server=server, url=URL,
                                    token=ADMIN_TOKEN, mode=mode, page_size=5, batch_size=7,
                                    max_retries=3, work_dir=str(work_dir))
        # waiting for an export build (202) runs the queued builds instead of sleeping
        client = TermsyncClient(server, ADMIN_TOKEN, timeout=30, connect_timeout=5,
                                max_retries=3, sleep=lambda seconds: jobs.run_until_idle(),
                                jitter=lambda: 0.5)
        self.subscriber = Subscriber(subscription, client,
                                     SQLiteStore(f"sqlite:///{work_dir / 'mirror.db'}"))
        self.passes: list[SyncResult] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.curators_done.is_set() and len(self.passes) < 200:
                self.passes.append(self.subscriber.sync())
        except BaseException as exc:
            self.error = exc


def test_subscribers_converge_while_curators_write(live: tuple[Any, str], tmp_path: Path) -> None:
    app, server = live
    curators = [Curator(server, k) for k in range(CURATORS)]
    done = threading.Event()
    followers = [Follower(app, server, mode, n, tmp_path / f"{mode}{n}", done)
                 for mode, count in SUBSCRIBERS for n in range(count)]
    for thread in [*followers, *curators]:
        thread.start()
    for curator in curators:
        curator.join(JOIN_TIMEOUT)
        assert not curator.is_alive() and curator.error is None, curator.error
    done.set()
    for follower in followers:
        follower.join(JOIN_TIMEOUT)
        assert not follower.is_alive() and follower.error is None, follower.error

    client = app.test_client()
    assert client.post(f"{URL}versions/", json={"id": "final", "released": True},
                       headers=ADMIN).status_code == 201
    app.extensions["termsync.jobs"].run_until_idle()
    head = client.get(URL, headers=ADMIN).get_json()["checksums"]["content"]
    final = client.get(f"{URL}final/", headers=ADMIN).get_json()["checksums"]["content"]
    assert head == final
    for follower in followers:
        last = follower.subscriber.sync()
        assert last.ok, (follower.name, last.error)
        assert last.checksum == last.server_checksum == head, follower.name
        assert follower.subscriber.store.checksum(follower.subscriber.name) == head
        if follower.subscriber.sub.mode == "release":
            assert last.version == "final"
    # the race really happened: subscribers passed while curators wrote, and some passes worked
    assert all(follower.passes for follower in followers)
    assert sum(curator.operations for curator in curators) > CURATORS * STEPS * 2
    counts = followers[0].subscriber.store.counts(followers[0].subscriber.name)
    assert counts["concepts"] == 20 + CURATORS * STEPS
