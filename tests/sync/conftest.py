"""Fixtures for subscriber tests: a stub OCL server on loopback, subscribers on every store backend.

The `store` fixture runs each test that uses it on SQLite, on mongomock, on FerretDB over the wire
(tests/ferretdb; skipped, saying why, where it cannot be built) and on a real MongoDB when
TEST_MONGO_URI is set, so the subscriber tests double as the stores' contract tests.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import mongomock
import pymongo
import pytest

from sync.client import TermsyncClient
from sync.config import Subscription
from sync.store import LocalStore
from sync.store.mongo import MongoStore
from sync.store.sqlite import SQLiteStore
from sync.subscriber import Subscriber
from tests.conftest import shared_database_uri

from .ocl_stub import FaultInjector, FileHost, LiveServer, StubSource, create_stub_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEMO_EXPORT = FIXTURES / "DemoSource_v1.0.zip"
TOKEN = "subscriber-token"
BACKENDS = ["sqlite", "mongomock", "ferretdb",
            *(["mongodb"] if os.environ.get("TEST_MONGO_URI") else [])]


@pytest.fixture(autouse=True)
def _quiet_werkzeug() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def populate(stub: StubSource, concepts: int = 30, mappings: int = 20) -> None:
    """Data factory: `concepts` concepts and `mappings` mappings between them."""
    for n in range(concepts):
        stub.put_concept(f"C{n:04d}", name=f"Concept {n}")
    for n in range(mappings):
        stub.put_mapping(str(n + 1), f"C{n % concepts:04d}", f"C{(n + 1) % concepts:04d}")


@pytest.fixture
def stub() -> StubSource:
    source = StubSource()
    populate(source)
    return source


@pytest.fixture
def faults(stub: StubSource) -> FaultInjector:
    """Scripted failures in front of the stub server."""
    return FaultInjector(create_stub_app(stub))


@pytest.fixture
def stub_server(faults: FaultInjector) -> Iterator[LiveServer]:
    with LiveServer(faults) as server:
        yield server


@pytest.fixture
def file_host() -> Iterator[FileHost]:
    """OCL's export bucket: another loopback address (127.0.0.2) that refuses Authorization."""
    host = FileHost()
    with LiveServer(host.app, host="127.0.0.2") as server:
        host.url = server.url
        yield host


class SleepRecorder:
    """Stands in for time.sleep: remembers the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def sqlite_uri(directory: Path, name: str = "mirror.db") -> str:
    """A SQLite database URI for a file in `directory` (absolute: four slashes)."""
    return f"sqlite:///{directory / name}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The local store backend a test runs on."""
    return str(request.param)


@pytest.fixture
def store_factory(backend: str, tmp_path: Path,
                  request: pytest.FixtureRequest) -> Iterator[Callable[..., LocalStore]]:
    """Open (more) stores of the test's backend on the same database; all closed afterwards."""
    opened: list[LocalStore] = []
    mongo_database: Any = None
    client: Any = None
    name = f"termsync_sync_test_{uuid.uuid4().hex[:12]}"
    if backend == "mongomock":
        mongo_database = mongomock.MongoClient()["mirror"]
    elif backend in ("mongodb", "ferretdb"):
        server = request.getfixturevalue("ferretdb_uri") if backend == "ferretdb" \
            else shared_database_uri()
        client = pymongo.MongoClient(server, tz_aware=True)
        mongo_database = client[name]

    def open_one(cls: type[LocalStore] | None = None) -> LocalStore:
        if backend == "sqlite":
            store: LocalStore = (cls or SQLiteStore)(sqlite_uri(tmp_path))
        else:
            store = (cls or MongoStore)(mongo_database, "mongomock://" if backend == "mongomock"
                                        else "mongodb://")
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        if isinstance(store, SQLiteStore):
            store.close()
    if client is not None:
        client.drop_database(name)
        client.close()


@pytest.fixture
def store(store_factory: Callable[..., LocalStore]) -> LocalStore:
    """The subscriber's local database on the test's backend."""
    return store_factory()


def tamper(store: LocalStore, name: str, url: str, *, delete: bool = False,
           version: str | None = None) -> None:
    """Change the mirror behind the subscriber's back, as an operator or a bug might."""
    if isinstance(store, SQLiteStore):
        table = store.tables(name)["concepts" if "/concepts/" in url else "mappings"]
        with sqlite3.connect(store.settings.path) as db:
            if delete:
                db.execute(f'DELETE FROM "{table}" WHERE url = ?', (url,))
            if version is not None:
                db.execute(f'UPDATE "{table}" SET version = ? WHERE url = ?', (version, url))
        db.close()
        return
    assert isinstance(store, MongoStore)
    if delete:
        store.items(name).delete_one({"_id": url})
    if version is not None:
        store.items(name).update_one({"_id": url}, {"$set": {"_sync.version": version}})


@pytest.fixture
def make_subscriber(store: LocalStore, sleeps: SleepRecorder, tmp_path: Path
                    ) -> Callable[..., Subscriber]:
    """Build a Subscriber for `server` (default: the stub) sharing one local database."""

    def build(server_url: str, mode: str = "release", path: str = "/orgs/DemoOrg/sources/DemoSource/",
              stop_event: threading.Event | None = None, store: LocalStore = store,
              sleep: Callable[[float], None] | None = None, **overrides: Any) -> Subscriber:
        sub = Subscription(name=overrides.pop("name", "demo"), server=server_url, url=path,
                           token=overrides.pop("token", TOKEN), mode=mode, page_size=5,
                           max_retries=3, work_dir=str(tmp_path / "work"),
                           database_uri=store.uri)
        sub = replace(sub, **overrides)
        client = TermsyncClient(sub.server, sub.token, timeout=10, connect_timeout=2,
                                max_retries=sub.max_retries, backoff_max=sub.backoff_max,
                                sleep=sleep or sleeps, jitter=lambda: 0.5)
        return Subscriber(sub, client, store, stop_event=stop_event)

    return build
