"""Database faults: an error injected at every step of a write gives 503 + Retry-After, never a
500, and never half-applied content (the write is either absent or completed)."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from app import create_app
from tests.conftest import ADMIN, app_config, concept

URL = "/orgs/O/sources/S/"


class FailingCollection:
    """Delegates to a collection, raising ServerSelectionTimeoutError on the n-th write."""

    WRITES = ("insert_one", "update_one", "find_one_and_update", "delete_one", "replace_one")

    def __init__(self, collection: Any, counter: list[int], fail_at: int) -> None:
        self._collection, self._counter, self._fail_at = collection, counter, fail_at

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name not in self.WRITES:
            return attribute

        def write(*args: Any, **kwargs: Any) -> Any:
            self._counter[0] += 1
            if self._counter[0] == self._fail_at:
                raise ServerSelectionTimeoutError("injected: no primary available")
            return attribute(*args, **kwargs)
        return write


def live_concepts(client: Any) -> list[dict[str, Any]]:
    return client.get(f"{URL}concepts/?limit=500&includeRetired=true").get_json()


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4, 5])
def test_error_at_any_step_of_a_write_is_503_and_never_half_applied(fail_at: int) -> None:
    app = create_app(app_config())
    client = app.test_client()
    client.post("/orgs/", json={"id": "O"}, headers=ADMIN)
    client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN)
    client.post(f"{URL}concepts/", json=concept("1", "Old name"), headers=ADMIN)
    before = client.get(f"{URL}concepts/1/").get_json()

    repos = app.extensions["termsync"].repos
    counter = [0]
    originals = (repos.sources.collection, repos.items.items, repos.items.heads)
    repos.sources.collection, repos.items.items, repos.items.heads = (
        FailingCollection(collection, counter, fail_at) for collection in originals)
    answer = client.patch(f"{URL}concepts/1/", headers=ADMIN, json={
        "names": [{"name": "New name", "locale": "en", "locale_preferred": True}]})
    repos.sources.collection, repos.items.items, repos.items.heads = originals

    if counter[0] >= fail_at:
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        assert answer.get_json()["code"] == 503
    repos.items.finish_pending()
    single = client.get(f"{URL}concepts/1/").get_json()
    listed = [item for item in live_concepts(client) if item["id"] == "1"]
    assert len(listed) == 1 and listed[0] == single
    assert single["names"][0]["name"] in ("Old name", "New name")
    if single["names"][0]["name"] == "Old name":
        assert single["version"] == before["version"]
    checksum = client.get(URL).get_json()["checksums"]["content"]
    assert checksum == repos.items.content_checksum(URL, 2**62 - 1)
    # The source keeps working after the fault.
    assert client.patch(f"{URL}concepts/1/", headers=ADMIN,
                        json={"datatype": "Coded"}).status_code == 200


def test_unreachable_database_is_503_with_retry_after(client: Any, source: Any) -> None:
    url = source()
    repos = client.application.extensions["termsync"].repos

    class Unreachable:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise ServerSelectionTimeoutError("injected: server selection timed out")
            return fail

    original = repos.sources.collection
    repos.sources.collection = Unreachable()
    try:
        for answer in (client.get(url), client.post(f"{url}concepts/", json=concept("1"),
                                                    headers=ADMIN)):
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "5"
            assert "injected" not in answer.get_json()["message"]
    finally:
        repos.sources.collection = original
    assert client.get(url).status_code == 200


def _half_write(app: Any, concept_id: str, claim_head: bool) -> dict[str, Any]:
    """What another process leaves while writing a new concept: steps 1 (and 2) of 4."""
    repos = app.extensions["termsync"].repos
    now = "2030-01-01T00:00:00.000000Z"
    url = f"{URL}concepts/{concept_id}/"
    item = {"source": URL, "type": "Concept", "id": concept_id, "url": url, "deleted": False,
            "retired": False, "updated_on": now, "created_on": now, "created_by": "other",
            "updated_by": "other", "data": dict(concept(concept_id), id=None),
            "seq": repos.sources.next_seq(URL, now)}
    repos.items.items.insert_one(dict(item, _id=f"{url}{item['seq']}/", sup=item["seq"],
                                      pending=True))
    if claim_head:
        repos.items.heads.insert_one({"_id": url, "source": URL, "type": "Concept",
                                      "id": concept_id, "seq": item["seq"], "deleted": False,
                                      "retired": False})
    return item


@pytest.mark.parametrize("claimed", [True, False])
def test_a_cut_never_gains_an_item_from_a_write_in_flight_elsewhere(claimed: bool) -> None:
    app = create_app(app_config())
    domain = app.extensions["termsync"]
    domain.content.shared_database = True  # as on a MongoDB shared by several processes
    client = app.test_client()
    client.post("/orgs/", json={"id": "O"}, headers=ADMIN)
    client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN)
    client.post(f"{URL}concepts/", json=concept("1"), headers=ADMIN)
    _half_write(app, "2", claim_head=claimed)
    domain.repos.items.settle_timeout = 0.0  # the other process is gone: do not wait for it
    assert client.post(f"{URL}versions/", json={"id": "v1"}, headers=ADMIN).status_code == 201
    before = client.get(f"{URL}v1/?includeConcepts=true").get_json()
    domain.repos.items.finish_pending()  # whatever the other process left is resolved
    after = client.get(f"{URL}v1/?includeConcepts=true").get_json()
    assert [c["id"] for c in before["concepts"]] == [c["id"] for c in after["concepts"]]
    assert before["checksums"] == after["checksums"]
    # A claimed write is rolled forward into the cut; an unclaimed one is left out.
    assert ("2" in [c["id"] for c in after["concepts"]]) is claimed
