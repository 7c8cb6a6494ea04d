"""Database faults: an error injected at every step of a write gives 503 + Retry-After, never a
500, and never half-applied content (the write is either absent or completed).

On SQLite a write is one transaction, so an error at any statement rolls all of it back; on
MongoDB it is four single-document steps with a pending marker, rolled forward or discarded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from app import create_app
from tests.conftest import ADMIN, app_config, concept, mongo_database_uri

URL = "/orgs/O/sources/S/"
BACKENDS = ["sqlite", "mongodb"]


def make_app(backend: str) -> Any:
    return create_app(app_config(**({"DATABASE_URI": mongo_database_uri()}
                                    if backend == "mongodb" else {})))


@dataclass
class Fault:
    """An error injected at the `fail_at`-th write; `fired` says whether that write happened."""

    fail_at: int
    calls: int = 0
    fired: bool = False

    def strikes(self) -> bool:
        """Count one write; True (and fired) when it is the one that fails."""
        self.calls += 1
        if self.calls == self.fail_at:
            self.fired = True
        return self.calls == self.fail_at


class FailingCollection:
    """Delegates to a MongoDB collection, raising ServerSelectionTimeoutError on the n-th write."""

    WRITES = ("insert_one", "update_one", "find_one_and_update", "delete_one", "replace_one")

    def __init__(self, collection: Any, fault: Fault) -> None:
        self._collection, self._fault = collection, fault

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name not in self.WRITES:
            return attribute

        def write(*args: Any, **kwargs: Any) -> Any:
            if self._fault.strikes():
                raise ServerSelectionTimeoutError("injected: no primary available")
            return attribute(*args, **kwargs)
        return write


class FailingConnection:
    """Delegates to a sqlite3 connection, raising 'database is locked' on the n-th statement."""

    def __init__(self, connection: Any, fault: Fault) -> None:
        self._connection, self._fault = connection, fault

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def execute(self, *args: Any) -> Any:
        if self._fault.strikes():
            raise sqlite3.OperationalError("database is locked")
        return self._connection.execute(*args)


@contextmanager
def faults(store: Any, fault: Fault) -> Iterator[None]:
    """Inject the fault into every write the store makes for one item."""
    if store.kind == "sqlite":
        database = store.database
        original = database.transaction

        @contextmanager
        def transaction(savepoint: bool = False) -> Iterator[Any]:
            with original(savepoint) as connection:
                yield FailingConnection(connection, fault)

        database.transaction = transaction
        try:
            yield
        finally:
            del database.transaction
        return
    items = store.items
    originals = (store.sources.collection, items.items, items.heads)
    store.sources.collection, items.items, items.heads = (
        FailingCollection(collection, fault) for collection in originals)
    try:
        yield
    finally:
        store.sources.collection, items.items, items.heads = originals


def live_concepts(client: Any) -> list[dict[str, Any]]:
    return client.get(f"{URL}concepts/?limit=500&includeRetired=true").get_json()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fail_at", [1, 2, 3, 4, 5])
def test_error_at_any_step_of_a_write_is_503_and_never_half_applied(backend: str,
                                                                    fail_at: int) -> None:
    app = make_app(backend)
    client = app.test_client()
    client.post("/orgs/", json={"id": "O"}, headers=ADMIN)
    client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN)
    client.post(f"{URL}concepts/", json=concept("1", "Old name"), headers=ADMIN)
    before = client.get(f"{URL}concepts/1/").get_json()

    store = app.extensions["termsync.store"]
    fault = Fault(fail_at)
    with faults(store, fault):
        answer = client.patch(f"{URL}concepts/1/", headers=ADMIN, json={
            "names": [{"name": "New name", "locale": "en", "locale_preferred": True}]})

    assert fault.fired, f"the write made {fault.calls} calls: the fault never fired"
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert answer.get_json()["code"] == 503
    store.items.finish_pending()
    single = client.get(f"{URL}concepts/1/").get_json()
    listed = [item for item in live_concepts(client) if item["id"] == "1"]
    assert len(listed) == 1 and listed[0] == single
    assert single["names"][0]["name"] in ("Old name", "New name")
    if single["names"][0]["name"] == "Old name":
        assert single["version"] == before["version"]
    if backend == "sqlite":  # one transaction: nothing of it stays
        assert single == before
    checksum = client.get(URL).get_json()["checksums"]["content"]
    assert checksum == store.items.scan_checksum(URL, 2**62 - 1)
    # The source keeps working after the fault.
    assert client.patch(f"{URL}concepts/1/", headers=ADMIN,
                        json={"datatype": "Coded"}).status_code == 200
    store.drop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreachable_database_is_503_with_retry_after(backend: str) -> None:
    app = make_app(backend)
    client = app.test_client()
    client.post("/orgs/", json={"id": "O"}, headers=ADMIN)
    client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN)
    store = app.extensions["termsync.store"]
    error: Exception = sqlite3.OperationalError("unable to open database file") \
        if backend == "sqlite" else ServerSelectionTimeoutError("injected: selection timed out")

    raised: list[str] = []

    class Unreachable:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raised.append(name)
                raise error
            return fail

    original = store.sources
    store.sources = Unreachable()
    try:
        for request in (lambda: client.get(URL),
                        lambda: client.post(f"{URL}concepts/", json=concept("1"), headers=ADMIN)):
            before = len(raised)
            answer = request()
            assert len(raised) > before, "the request never reached the unreachable database"
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "5"
            assert "injected" not in answer.get_json()["message"]
    finally:
        store.sources = original
    assert client.get(URL).status_code == 200
    store.drop()


def test_a_bug_in_sql_is_a_500_not_a_503(client: Any, source: Any) -> None:
    """Only 'busy' or 'unreachable' errors are 503: anything else is a bug, reported as 500."""
    url = source()
    store = client.application.extensions["termsync.store"]
    if store.kind != "sqlite":
        pytest.skip("SQLite's errors")
    original = store.sources
    raised: list[str] = []

    class Broken:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raised.append(name)
                raise sqlite3.OperationalError("no such column: nope")
            return fail

    store.sources = Broken()
    try:
        assert client.get(url).status_code == 500
    finally:
        store.sources = original
    assert raised, "the request never reached the broken query"


def _half_write(app: Any, concept_id: str, claim_head: bool) -> dict[str, Any]:
    """What another process leaves while writing a new concept on MongoDB: steps 1 (and 2)."""
    store = app.extensions["termsync.store"]
    now = "2030-01-01T00:00:00.000000Z"
    url = f"{URL}concepts/{concept_id}/"
    item = {"source": URL, "type": "Concept", "id": concept_id, "url": url, "deleted": False,
            "retired": False, "updated_on": now, "created_on": now, "created_by": "other",
            "updated_by": "other", "data": dict(concept(concept_id), id=None),
            "seq": store.sources.next_seq(URL, now)}
    store.items.items.insert_one(dict(item, _id=f"{url}{item['seq']}/", sup=item["seq"],
                                      pending=True))
    if claim_head:
        store.items.heads.insert_one({"_id": url, "source": URL, "type": "Concept",
                                      "id": concept_id, "seq": item["seq"], "deleted": False,
                                      "retired": False})
    return item


@pytest.mark.parametrize("claimed", [True, False])
def test_a_cut_never_gains_an_item_from_a_write_in_flight_elsewhere(claimed: bool) -> None:
    app = make_app("mongodb")  # SQLite writes are atomic: nothing is ever in flight there
    store = app.extensions["termsync.store"]
    client = app.test_client()
    client.post("/orgs/", json={"id": "O"}, headers=ADMIN)
    client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN)
    client.post(f"{URL}concepts/", json=concept("1"), headers=ADMIN)
    _half_write(app, "2", claim_head=claimed)
    store.items.settle_timeout = 0.0  # the other process is gone: do not wait for it
    assert client.post(f"{URL}versions/", json={"id": "v1"}, headers=ADMIN).status_code == 201
    before = client.get(f"{URL}v1/?includeConcepts=true").get_json()
    store.items.finish_pending()  # whatever the other process left is resolved
    after = client.get(f"{URL}v1/?includeConcepts=true").get_json()
    assert [c["id"] for c in before["concepts"]] == [c["id"] for c in after["concepts"]]
    assert before["checksums"] == after["checksums"]
    # A claimed write is rolled forward into the cut; an unclaimed one is left out.
    assert ("2" in [c["id"] for c in after["concepts"]]) is claimed
    store.drop()
