"""Fixtures for subscriber tests: a stub OCL server on loopback, subscribers on mongomock."""

from __future__ import annotations

import logging
import os
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
from sync.subscriber import Subscriber

from .ocl_stub import FaultInjector, LiveServer, StubSource, create_stub_app

SHARED_OCL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ocl"
DEMO_EXPORT = SHARED_OCL / "DemoSource_v1.0.zip"
TOKEN = "subscriber-token"


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


class SleepRecorder:
    """Stands in for time.sleep: remembers the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def mongo() -> Iterator[Any]:
    """The subscriber's local database: mongomock, or a fresh one on TEST_MONGO_URI."""
    uri = os.environ.get("TEST_MONGO_URI")
    if not uri:
        yield mongomock.MongoClient()["mirror"]
        return
    client: Any = pymongo.MongoClient(uri)
    name = f"termsync_sync_test_{uuid.uuid4().hex[:12]}"
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture
def make_subscriber(mongo: Any, sleeps: SleepRecorder, tmp_path: Path
                    ) -> Callable[..., Subscriber]:
    """Build a Subscriber for `server` (default: the stub) sharing one local database."""

    def build(server_url: str, mode: str = "release", path: str = "/orgs/DemoOrg/sources/DemoSource/",
              stop_event: threading.Event | None = None, store: LocalStore | None = None,
              sleep: Callable[[float], None] | None = None, **overrides: Any) -> Subscriber:
        sub = Subscription(name=overrides.pop("name", "demo"), server=server_url, url=path,
                           token=overrides.pop("token", TOKEN), mode=mode, page_size=5,
                           max_retries=3, work_dir=str(tmp_path))
        sub = replace(sub, **overrides)
        client = TermsyncClient(sub.server, sub.token, timeout=10, connect_timeout=2,
                                max_retries=sub.max_retries, backoff_max=sub.backoff_max,
                                sleep=sleep or sleeps, jitter=lambda: 0.5)
        return Subscriber(sub, client, store or LocalStore(mongo),
                          stop_event=stop_event)

    return build
