"""One contract for every storage backend: the same tests on SQLite and on MongoDB (mongomock, or
the server of TEST_DATABASE_URI / TEST_MONGO_URI)."""

from __future__ import annotations

import io
import itertools
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.store import Store, open_store
from app.store.base import (
    EMPTY_CHECKSUM,
    HEAD_SEQ,
    LIVE,
    ContentQuery,
    DiffKey,
    DuplicateKey,
    RepoFilters,
    StaleHead,
    Visibility,
    checksum_of,
)
from app.store.copy import Progress, copy_store
from tests.conftest import FILES_ROOT, mongo_database_uri

SOURCE = "/orgs/O/sources/S/"
OTHER = "/orgs/O/sources/T/"


def new_store(kind: str) -> Store:
    if kind == "sqlite":
        store = open_store(f"sqlite:///{tempfile.mkdtemp(dir=FILES_ROOT)}/contract.db")
    else:
        store = open_store(mongo_database_uri(), mongo_db=f"contract_{uuid.uuid4().hex[:10]}")
    store.ensure_schema()
    return store


@pytest.fixture(params=["sqlite", "mongodb"])
def store(request: Any) -> Iterator[Store]:
    store = new_store(request.param)
    yield store
    store.drop()


def source_doc(url: str = SOURCE, owner: str = "O", public_access: str = "View") -> dict[str, Any]:
    return {"_id": url, "url": url, "id": url.split("/")[-2], "owner": owner,
            "owner_type": "Organization", "owner_url": f"/orgs/{owner}/",
            "public_access": public_access, "updated_on": "2026-01-01T00:00:00.000000Z"}


def item(item_id: str, updated_on: str, *, type_: str = "Concept", source: str = SOURCE,
         deleted: bool = False, retired: bool = False, **data: Any) -> dict[str, Any]:
    kind = "concepts" if type_ == "Concept" else "mappings"
    return {"source": source, "type": type_, "id": item_id, "url": f"{source}{kind}/{item_id}/",
            "deleted": deleted, "retired": retired, "updated_on": updated_on,
            "created_on": updated_on, "created_by": "u", "updated_by": "u",
            "data": {} if deleted else dict(data or {"datatype": "N/A"})}


def write(store: Store, document: dict[str, Any]) -> int:
    head = store.items.head(document["url"])
    return store.items.write(document, head["seq"] if head else None)


def t(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


# --- documents ----------------------------------------------------------------------------------

def test_documents_insert_get_update_delete(store: Store) -> None:
    store.users.insert({"_id": "ann", "username": "ann", "is_admin": False, "extras": {"a": [1]}})
    with pytest.raises(DuplicateKey):
        store.users.insert({"_id": "ann"})
    assert store.users.get("ann") == {"_id": "ann", "username": "ann", "is_admin": False,
                                      "extras": {"a": [1]}}
    assert store.users.update("ann", {"is_admin": True})["is_admin"] is True
    assert store.users.update("nobody", {"x": 1}) is None
    store.users.add_token("ann", "hash1", t(1))
    assert store.users.user_for_token("hash1")["_id"] == "ann"
    assert store.users.user_for_token("nope") is None
    store.users.insert({"_id": "bob"})
    store.users.update("bob", {"name": "Robert Smith"})
    assert [user["_id"] for user in store.users.search(None, 0, 1)[0]] == ["ann"]
    assert store.users.search(None, 1, 10)[1] == 2
    assert [user["_id"] for user in store.users.search("ROBERT", 0, 10)[0]] == ["bob"]
    assert [user["_id"] for user in store.users.search("%", 0, 10)[0]] == []  # taken literally
    assert store.users.page_of(["bob", "nobody"], 0, 10)[1] == 1
    store.users.delete("bob")
    assert store.users.get("bob") is None


def test_orgs_members_and_visibility(store: Store) -> None:
    store.orgs.insert({"_id": "A", "public_access": "View", "members": ["ann"]})
    store.orgs.insert({"_id": "B", "public_access": "None", "members": []})
    store.orgs.add_member("B", "bob")
    store.orgs.add_member("B", "bob")  # twice is once
    store.orgs.add_member("A", "bob")
    assert store.orgs.get("B")["members"] == ["bob"]
    assert store.orgs.for_member("bob") == ["A", "B"]
    store.orgs.remove_member("A", "bob")
    assert store.orgs.for_member("bob") == ["B"]
    assert store.orgs.update("A", {"name": "Org A"})["members"] == ["ann"]
    anonymous = Visibility(None, frozenset())
    assert [org["_id"] for org in store.orgs.search(None, None, anonymous, 0, 10)[0]] == ["A"]
    member = Visibility("bob", frozenset({"B"}))
    assert [org["_id"] for org in store.orgs.search(None, None, member, 0, 10)[0]] == ["A", "B"]
    assert store.orgs.search(None, None, None, 0, 10)[1] == 2
    assert [org["_id"] for org in store.orgs.search("org a", None, None, 0, 10)[0]] == ["A"]
    assert [org["_id"] for org in store.orgs.search(None, "bob", None, 0, 10)[0]] == ["B"]
    assert store.orgs.remove_member("B", "bob") and not store.orgs.remove_member("B", "bob")


def test_sources_list_by_owner_and_visibility(store: Store) -> None:
    store.sources.insert(source_doc(SOURCE))
    store.sources.insert(source_doc("/orgs/P/sources/Hidden/", owner="P", public_access="None"))
    store.sources.insert(dict(source_doc("/users/ann/sources/Mine/", public_access="None"),
                              owner="ann", owner_type="User", owner_url="/users/ann/"))
    everyone = Visibility(None, frozenset())
    none = RepoFilters()
    assert [s["_id"] for s in store.sources.search(None, everyone, none, 0, 10)[0]] == [SOURCE]
    ann = Visibility("ann", frozenset({"P"}))
    assert store.sources.search(None, ann, none, 0, 10)[1] == 3
    assert [s["_id"] for s in store.sources.search("/orgs/P/", ann, none, 0, 10)[0]] == \
        ["/orgs/P/sources/Hidden/"]
    assert store.sources.search("/orgs/P/", everyone, none, 0, 10) == ([], 0)
    assert [s["_id"] for s in store.sources.search(None, None, RepoFilters(q="mIn"), 0, 10)[0]] \
        == ["/users/ann/sources/Mine/"]
    assert store.sources.search(None, None, RepoFilters(owner_type="User"), 0, 10)[1] == 1
    assert store.sources.count_public("/orgs/P/") == 0
    assert store.sources.count_public("/orgs/O/") == 1
    assert store.sources.next_mapping_number(SOURCE) == 1
    assert store.sources.next_mapping_number(SOURCE) == 2
    assert store.sources.get(SOURCE)["seq"] == 0
    state = store.sources.cut_state(SOURCE)
    assert (state.seq, state.last_updated) == (0, None)


def test_versions_newest_first(store: Store) -> None:
    for number, released in ((1, True), (2, False), (3, True)):
        store.versions.insert({"_id": f"{SOURCE}v{number}/", "id": f"v{number}", "source": SOURCE,
                               "seq": number, "released": released, "created_on": t(number)})
    assert [v["id"] for v in store.versions.list(SOURCE, None, 0, 10)[0]] == ["v3", "v2", "v1"]
    assert [v["id"] for v in store.versions.list(SOURCE, False, 0, 10)[0]] == ["v2"]
    assert store.versions.latest_released(SOURCE)["id"] == "v3"
    assert [v["id"] for v in store.versions.all_released()] == ["v1", "v3"]
    assert store.versions.get(f"{SOURCE}v1/")["released"] is True
    store.versions.delete_for_source(SOURCE)
    assert store.versions.list(SOURCE, None, 0, 10) == ([], 0)


# --- items ---------------------------------------------------------------------------------------

def test_item_versions_heads_and_cuts(store: Store) -> None:
    store.sources.insert(source_doc())
    assert write(store, item("A", t(1))) == 1
    assert write(store, item("B", t(2))) == 2
    state = store.sources.cut_state(SOURCE)
    cut = state.seq
    assert (cut, state.last_updated) == (2, t(2))
    assert write(store, item("A", t(3), datatype="Coded")) == 3
    assert write(store, item("B", t(4), deleted=True)) == 4
    assert store.sources.get(SOURCE)["last_updated"] == t(4)

    url_a = f"{SOURCE}concepts/A/"
    assert store.items.head(url_a)["seq"] == 3
    assert store.items.head(f"{SOURCE}concepts/B/")["deleted"] is True
    assert store.items.current(url_a)["data"] == {"datatype": "Coded"}
    assert store.items.current(url_a, cut)["data"] == {"datatype": "N/A"}
    assert store.items.current(url_a, 0) is None
    assert store.items.item_version(url_a, 1)["sup"] == 3
    assert store.items.item_version(url_a, 3)["sup"] == LIVE
    assert [v["seq"] for v in store.items.history(SOURCE, url_a, 0, 10)[0]] == [3, 1]
    assert store.items.history(SOURCE, f"{SOURCE}concepts/B/", 0, 10)[1] == 1  # no tombstone
    with pytest.raises(StaleHead):
        store.items.write(item("A", t(5)), 1)
    with pytest.raises(StaleHead):
        store.items.write(item("A", t(5)), None)

    head = ContentQuery(SOURCE)
    assert [i["id"] for i in store.items.page(head, 0, 10)] == ["A"]
    at_cut = ContentQuery(SOURCE, cut)
    assert [(i["id"], i["seq"]) for i in store.items.page(at_cut, 0, 10)] == [("A", 1), ("B", 2)]
    assert store.items.count(at_cut) == 2
    assert store.items.count(ContentQuery(SOURCE, include_deleted=True)) == 2


def test_lists_diffs_and_streams(store: Store) -> None:
    store.sources.insert(source_doc())
    store.sources.insert(source_doc(OTHER))
    for number in range(6):
        write(store, item(f"C{number}", t(10 + number // 2)))
    write(store, item("M1", t(11), type_="Mapping"))
    write(store, item("C5", t(20), retired=True))
    write(store, item("X", t(12), source=OTHER))

    concepts = ContentQuery(SOURCE, types=("Concept",))
    assert [i["id"] for i in store.items.page(concepts, 2, 2)] == ["C2", "C3"]
    live = ContentQuery(SOURCE, types=("Concept",), include_retired=False)
    assert store.items.count(live) == 5 and store.items.count(concepts) == 6
    both = ContentQuery(SOURCE)
    assert [i["id"] for i in store.items.page(both, 0, 0)][-1] == "M1"

    since = ContentQuery(SOURCE, updated_since=t(11))
    page = store.items.diff(since, None, 3)
    assert [(i["updated_on"], i["type"], i["id"]) for i in page] == [
        (t(11), "Concept", "C2"), (t(11), "Concept", "C3"), (t(11), "Mapping", "M1")]
    last = page[-1]
    rest = store.items.diff(since, DiffKey(last["updated_on"], last["type"], last["id"]), 10)
    assert [i["id"] for i in rest] == ["C4", "C5"]
    assert store.items.count(since) == 5

    assert [i["id"] for i in store.items.iter_content(concepts, batch_size=4)] == \
        [f"C{n}" for n in range(6)]
    assert store.items.newest(both)["id"] == "C5"
    assert store.items.newest(ContentQuery(OTHER))["id"] == "X"


def test_checksums_kept_with_every_write(store: Store) -> None:
    store.sources.insert(source_doc())
    assert store.items.head_checksum(SOURCE) == EMPTY_CHECKSUM
    write(store, item("A", t(1)))
    write(store, item("B", t(2)))
    cut = store.sources.cut_state(SOURCE)
    assert cut.counts in (None, {"Concept": [2, 0, 0], "Mapping": [0, 0, 0]})
    write(store, item("A", t(3), datatype="Coded"))
    write(store, item("B", t(4), deleted=True))
    expected_head = checksum_of([(f"{SOURCE}concepts/A/", 3)])
    assert store.items.head_checksum(SOURCE) == expected_head == store.items.scan_checksum(
        SOURCE, HEAD_SEQ)
    at_cut = checksum_of([(f"{SOURCE}concepts/A/", 1), (f"{SOURCE}concepts/B/", 2)])
    assert store.items.scan_checksum(SOURCE, cut.seq) == at_cut
    assert cut.checksum in (None, at_cut)  # SQLite keeps it with the source; MongoDB computes it
    write(store, item("C", t(5), retired=True))
    write(store, item("M", t(6), type_="Mapping"))
    assert store.items.head_counts(SOURCE) in (None, {"Concept": [1, 1, 1], "Mapping": [1, 0, 0]})


def test_mapping_keys_and_deleting_a_source(store: Store) -> None:
    store.sources.insert(source_doc())
    write(store, item("A", t(1)))
    store.items.set_mapping_key("k", SOURCE, "7")
    assert store.items.mapping_for_key("k") == "7"
    store.items.set_mapping_key("k", SOURCE, None)
    assert store.items.mapping_for_key("k") is None
    store.items.set_mapping_key("k2", SOURCE, "8")
    store.items.delete_for_source(SOURCE)
    assert store.items.head(f"{SOURCE}concepts/A/") is None
    assert store.items.mapping_for_key("k2") is None


# --- jobs and the rest ---------------------------------------------------------------------------

def job(job_id: str, created_on: str, **fields: Any) -> dict[str, Any]:
    return dict({"_id": job_id, "kind": "export", "key": None, "generation": None,
                 "state": "PENDING", "payload": {"n": 1}, "owner": "ann", "progress": {},
                 "result": None, "error": None, "attempts": 0, "worker": None,
                 "lease_until": None, "created_on": created_on, "updated_on": created_on,
                 "started_on": None, "finished_on": None}, **fields)


def test_job_claims_leases_and_ends(store: Store) -> None:
    jobs = store.jobs
    jobs.insert(job("a", t(1)))
    jobs.insert(job("b", t(2), kind="bulk_import"))
    with pytest.raises(DuplicateKey):
        jobs.insert(job("a", t(3)))
    claimed = jobs.claim(["export", "bulk_import"], "w1", t(10), t(20))
    assert claimed["_id"] == "a" and claimed["state"] == "RUNNING" and claimed["attempts"] == 1
    assert jobs.oldest_pending() == t(2)
    assert jobs.active_counts() == {("export", "RUNNING"): 1, ("bulk_import", "PENDING"): 1}
    assert jobs.heartbeat("a", "w1", t(11), t(21), {"done": 1})
    assert not jobs.heartbeat("a", "w2", t(11), t(21), None)
    assert jobs.get("a")["progress"] == {"done": 1}
    jobs.mark_started("a", "w1", t(11))
    assert jobs.get("a")["started_on"] == t(11)
    # the lease runs out: another worker takes the job over, the first one has lost it
    assert jobs.claim(["export"], "w2", t(30), t(40))["_id"] == "a"
    assert not jobs.end("a", "w1", "FINISHED", t(31), {"result": {"x": 1}})
    assert jobs.save_progress("a", "w2", t(31), {"done": 2})
    assert not jobs.save_progress("a", "w1", t(31), {"done": 9})
    assert jobs.end("a", "w2", "FINISHED", t(32), {"result": {"x": 1}})
    assert jobs.get("a")["result"] == {"x": 1} and jobs.get("a")["state"] == "FINISHED"
    assert jobs.cancel("b", t(33)) and not jobs.cancel("b", t(34))
    assert jobs.claim(["export", "bulk_import"], "w1", t(40), t(50)) is None
    assert [j["_id"] for j in jobs.list(None, "ann", None, 0, 10)[0]] == ["b", "a"]
    assert jobs.list("export", None, ["FINISHED"], 0, 10)[1] == 1


def test_jobs_numbered_by_key_and_abandoned(store: Store) -> None:
    jobs = store.jobs
    jobs.insert(job("k-1", t(1), key="k", generation=1, state="FINISHED"))
    jobs.insert(job("k-2", t(2), key="k", generation=2))
    assert jobs.latest("export", "k")["_id"] == "k-2"
    assert jobs.latest("export", "other") is None
    jobs.update("k-2", {"state": "RUNNING", "attempts": 5, "lease_until": t(3), "worker": "w"})
    jobs.insert(job("x", t(4), state="RUNNING", attempts=1, lease_until=t(3), worker="w"))
    assert jobs.count_expired(t(10)) == 2
    assert jobs.fail_abandoned(t(10), 5, "lost") == 1
    assert jobs.get("k-2")["state"] == "FAILED" and jobs.get("k-2")["error"] == "lost"
    assert jobs.count_expired(t(10)) == 1


def test_export_records(store: Store) -> None:
    records = store.exports
    records.set_job("e1", {"source": SOURCE, "version_id": "v1"}, "j1")
    assert records.get("e1")["job_id"] == "j1"
    assert not records.commit_file("e1", "j0", {"sha256": "aa"})
    assert records.commit_file("e1", "j1", {"sha256": "aa", "size": 3})
    records.set_job("e1", {"source": SOURCE, "version_id": "v1"}, "j2")
    assert records.get("e1")["file"] == {"sha256": "aa", "size": 3}
    assert records.by_file(SOURCE, "aa")["_id"] == "e1" and records.by_file(OTHER, "aa") is None
    assert records.referenced("aa") and records.shas() == {"aa"}
    assert [r["_id"] for r in records.for_source(SOURCE)] == ["e1"]
    assert not records.drop_file_if("e1", "bb")
    assert records.drop_file_if("e1", "aa") and not records.referenced("aa")
    records.delete("e1")
    assert list(records.all()) == []


def test_import_results_and_keys(store: Store) -> None:
    results = store.import_results
    for job_id in ("a", "b"):
        for line in (10, 2, 1):
            results.add(job_id, 0, {"line": line, "type": "Concept", "url": None,
                                    "action": "failed" if line == 2 else "created", "errors": []})
    with pytest.raises(DuplicateKey):
        results.add("a", 0, {"line": 1, "action": "created"})
    assert [r["line"] for r in results.page("a", None, None, 0)] == [1, 2, 10]
    assert [r["line"] for r in results.page("a", (1, 0), None, 1)] == [2]
    assert [r["line"] for r in results.page("b", None, ["failed"], 10)] == [2]
    assert [r["line"] for r in results.iter_all("a", batch_size=2)] == [1, 2, 10]
    assert results.get("a", 2)["action"] == "failed"
    results.delete_for_job("a")
    assert results.page("a", None, None, 0) == []

    keys = store.import_keys
    assert keys.claim("k") is None
    assert keys.claim("k") == {"_id": "k", "job": None}
    keys.bind("k", "j1")
    assert keys.job_for("k") == "j1" and keys.claim("k")["job"] == "j1"
    keys.release("k")  # bound keys stay
    assert keys.job_for("k") == "j1"
    assert keys.claim("free") is None
    keys.release("free")
    assert keys.claim("free") is None


def test_leases_heartbeats_and_rate_counters(store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)  # MongoDB's TTL index acts on real time
    later = now + timedelta(seconds=60)
    assert store.leases.acquire("gc", "a", now, later)
    assert not store.leases.acquire("gc", "b", now + timedelta(seconds=1), later)
    store.leases.record("gc", "a", {"error": None, "finished_on": now})
    assert store.leases.get("gc")["runs"] == 1
    assert store.leases.acquire("gc", "b", later, later + timedelta(seconds=60))
    store.leases.release("gc", "a", later)  # not a's any more: no effect
    assert not store.leases.acquire("gc", "c", later + timedelta(seconds=1), later)
    store.leases.release("gc", "b", later)
    assert store.leases.acquire("gc", "c", later + timedelta(seconds=1), later)
    assert store.leases.get("gc")["runs"] == 3 and store.leases.get("gc")["holder"] == "c"

    store.heartbeats.beat("w1", {"threads": 2}, now, later)
    store.heartbeats.beat("w2", {"threads": 4}, now - timedelta(seconds=30), later)
    alive = store.heartbeats.alive(now - timedelta(seconds=10))
    assert [(beat["_id"], beat["threads"]) for beat in alive] == [("w1", 2)]
    store.heartbeats.forget("w1")
    assert store.heartbeats.alive(now - timedelta(seconds=10)) == []

    assert [store.rate_counters.hit("k", later) for _ in range(3)] == [1, 2, 3]
    assert store.rate_counters.hit("other", later) == 1


# --- copying between backends --------------------------------------------------------------------

def fill(store: Store) -> None:
    store.users.insert({"_id": "ann", "username": "ann"})
    store.users.add_token("ann", "hash", t(1))
    store.orgs.insert({"_id": "O", "public_access": "View", "members": ["ann"]})
    store.sources.insert(source_doc())
    for number in range(30):
        write(store, item(f"C{number}", t(number % 60)))
    store.versions.insert({"_id": f"{SOURCE}v1/", "id": "v1", "source": SOURCE, "released": True,
                           "seq": store.sources.cut_state(SOURCE).seq, "created_on": t(40)})
    write(store, item("C3", t(50), datatype="Coded"))
    write(store, item("C4", t(51), deleted=True))
    store.items.set_mapping_key("k", SOURCE, "1")
    store.jobs.insert(job("j", t(1), state="FINISHED"))
    store.import_results.add("j", 0, {"line": 1, "action": "created"})


@pytest.mark.parametrize("route", [("sqlite", "mongodb", "sqlite"), ("mongodb", "sqlite")])
def test_copy_between_backends_keeps_every_checksum(route: tuple[str, ...]) -> None:
    stores = [new_store(kind) for kind in route]
    try:
        fill(stores[0])
        for source, target in itertools.pairwise(stores):
            report = copy_store(source, target, Progress(io.StringIO()))
            assert report["checksums"]["different"] == 0 and report["checksums"]["equal"] == 2
        first, last = stores[0], stores[-1]
        assert last.users.user_for_token("hash")["_id"] == "ann"
        assert last.orgs.for_member("ann") == ["O"]
        assert last.items.head_checksum(SOURCE) == first.items.head_checksum(SOURCE)
        assert last.items.head_counts(SOURCE) in (None, {"Concept": [29, 0, 1],
                                                         "Mapping": [0, 0, 0]})
        assert last.items.current(f"{SOURCE}concepts/C3/", 30)["data"] == {"datatype": "N/A"}
        assert last.items.mapping_for_key("k") == "1"
        assert last.jobs.get("j")["state"] == "FINISHED"
        assert last.import_results.get("j", 1)["action"] == "created"
        # writing goes on after the copy: seqs continue, nothing is reused
        assert write(last, item("New", t(59))) == first.sources.get(SOURCE)["seq"] + 1
    finally:
        for store in stores:
            store.drop()


def test_mappings_of_a_concept_both_ways(store: Store) -> None:
    store.sources.insert(source_doc())
    for concept_id in ("A", "B", "C"):
        write(store, item(concept_id, t(1)))
    a, b = f"{SOURCE}concepts/A/", f"{SOURCE}concepts/B/"
    write(store, item("1", t(2), type_="Mapping", from_concept_url=a, to_concept_url=b))
    write(store, item("2", t(3), type_="Mapping", from_concept_url=b, to_concept_url=a))
    cut = store.sources.cut_state(SOURCE).seq
    write(store, item("3", t(4), type_="Mapping", retired=True, from_concept_url=a,
                      to_concept_url=f"{SOURCE}concepts/C/"))
    found = store.items.mappings_for_concept
    assert [m["id"] for m in found(SOURCE, HEAD_SEQ, a)] == ["1"]
    assert [m["id"] for m in found(SOURCE, HEAD_SEQ, a, include_retired=True)] == ["1", "3"]
    assert [m["id"] for m in found(SOURCE, HEAD_SEQ, a, inverse=True)] == ["1", "2"]
    assert [m["id"] for m in found(SOURCE, cut, a, inverse=True, include_retired=True)] == ["1", "2"]


def test_jobs_of_one_queue_run_in_order(store: Store) -> None:
    jobs = store.jobs
    jobs.insert(job("q1", t(1), queue="q"))
    jobs.insert(job("free", t(2)))
    jobs.insert(job("q2", t(3), queue="q"))
    jobs.insert(job("other", t(4), queue="r"))
    claimed = [jobs.claim(["export"], "w", t(10), t(20))["_id"] for _ in range(3)]
    assert claimed == ["q1", "free", "other"]  # q2 waits for q1
    assert jobs.claim(["export"], "w", t(10), t(20)) is None
    assert jobs.end("q1", "w", "FINISHED", t(11), {})
    assert jobs.claim(["export"], "w", t(12), t(20))["_id"] == "q2"
    assert [j["_id"] for j in jobs.list("export", None, None, 0, 10, queues=["q"])[0]] == ["q2", "q1"]
    assert [j["_id"] for j in jobs.list("export", None, None, 0, 10, queues=[None])[0]] == ["free"]
