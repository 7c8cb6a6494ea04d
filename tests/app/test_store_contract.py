"""One contract for every storage backend: the same tests on SQLite, on MongoDB (mongomock, or
the server of TEST_DATABASE_URI / TEST_MONGO_URI) and on FerretDB over the wire (tests/ferretdb;
skipped, saying why, where it cannot be built)."""

from __future__ import annotations

import io
import itertools
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.domain.browse import ItemMatch
from app.model import (
    EMPTY_CHECKSUM,
    HEAD_SEQ,
    LIVE,
    ContentQuery,
    DiffKey,
    ExportFile,
    ExportRecord,
    ItemFilters,
    Job,
    RepoFilters,
    Visibility,
    checksum_of,
)
from app.model.records import (
    DeliveryAttempt,
    LastDelivery,
    Source,
    Version,
    Webhook,
    WebhookDelivery,
)
from app.store import Store, open_store
from app.store.base import DuplicateKey, StaleHead
from app.store.copy import Progress, copy_store
from tests.conftest import FILES_ROOT, mongo_database_uri

SOURCE = "/orgs/O/sources/S/"
OTHER = "/orgs/O/sources/T/"


def new_store(kind: str, server: str | None = None) -> Store:
    if kind == "sqlite":
        store = open_store(f"sqlite:///{tempfile.mkdtemp(dir=FILES_ROOT)}/contract.db")
    else:
        store = open_store(server or mongo_database_uri(),
                           mongo_db=f"contract_{uuid.uuid4().hex[:10]}")
    store.ensure_schema()
    return store


@pytest.fixture(params=["sqlite", "mongodb", "ferretdb"])
def store(request: Any) -> Iterator[Store]:
    server = request.getfixturevalue("ferretdb_uri") if request.param == "ferretdb" else None
    store = new_store(request.param, server)
    yield store
    store.drop()
    store.close()


def source_doc(url: str = SOURCE, owner: str = "O", public_access: str = "View") -> Source:
    return Source(url=url, id=url.split("/")[-2], repo_type="Source", owner=owner,
                  owner_type="Organization", owner_url=f"/orgs/{owner}/",
                  public_access=public_access, created_on="2026-01-01T00:00:00.000000Z",
                  updated_on="2026-01-01T00:00:00.000000Z")


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

def token_record(token_hash: str, username: str, token_id: str, created_on: str,
                 **fields: Any) -> dict[str, Any]:
    record = {"_id": token_hash, "username": username, "id": token_id, "prefix": "abc",
              "label": None, "created_on": created_on, "created_by": None, "expires_on": None,
              "last_used_on": None, "revoked_on": None, "bootstrap": False}
    record.update(fields)
    return record


def test_tokens_are_records_under_their_hash(store: Store) -> None:
    store.users.insert({"_id": "ann"})
    store.users.add_token(token_record("h1", "ann", "a1", t(1), label="first"))
    store.users.add_token(token_record("h2", "ann", "a2", t(2), bootstrap=True))
    store.users.add_token(token_record("h3", "bob", "b1", t(3)))
    with pytest.raises(DuplicateKey):  # a token value is never taken over by another user
        store.users.add_token(token_record("h1", "bob", "b2", t(4)))
    assert store.users.token("h1") == token_record("h1", "ann", "a1", t(1), label="first")
    assert store.users.token("nope") is None
    assert store.users.token_of("ann", "a2")["_id"] == "h2"
    assert store.users.token_of("bob", "a2") is None
    assert [token["id"] for token in store.users.tokens_of("ann", False)] == ["a2", "a1"]
    assert [token["_id"] for token in store.users.bootstrap_tokens()] == ["h2"]
    store.users.update_token("h2", {"revoked_on": t(5)})
    assert [token["id"] for token in store.users.tokens_of("ann", False)] == ["a1"]
    assert [token["id"] for token in store.users.tokens_of("ann", True)] == ["a2", "a1"]
    assert store.users.bootstrap_tokens() == []
    # a use is recorded unless one was at or after `before`
    store.users.touch_token("h1", t(10), t(9))
    store.users.touch_token("h1", t(11), t(9))
    assert store.users.token("h1")["last_used_on"] == t(10)
    store.users.touch_token("h1", t(20), t(19))
    assert store.users.token("h1")["last_used_on"] == t(20)


def test_documents_insert_get_update_delete(store: Store) -> None:
    store.users.insert({"_id": "ann", "username": "ann", "is_admin": False, "extras": {"a": [1]}})
    with pytest.raises(DuplicateKey):
        store.users.insert({"_id": "ann"})
    assert store.users.get("ann") == {"_id": "ann", "username": "ann", "is_admin": False,
                                      "extras": {"a": [1]}}
    assert store.users.update("ann", {"is_admin": True})["is_admin"] is True
    assert store.users.update("nobody", {"x": 1}) is None
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
    store.orgs.insert({"_id": "O", "public_access": "View", "members": []})
    store.orgs.insert({"_id": "P", "public_access": "View", "members": []})
    store.orgs.insert({"_id": "Q", "public_access": "None", "members": []})
    store.sources.insert(source_doc(SOURCE))
    store.sources.insert(source_doc("/orgs/P/sources/Hidden/", owner="P", public_access="None"))
    # public itself, but its org is private: hidden from everyone but the org's members
    store.sources.insert(source_doc("/orgs/Q/sources/InPrivateOrg/", owner="Q"))
    store.sources.insert(replace(source_doc("/users/ann/sources/Mine/", public_access="None"),
                              owner="ann", owner_type="User", owner_url="/users/ann/"))
    everyone = Visibility(None, frozenset())
    none = RepoFilters()
    assert [s.url for s in store.sources.search(None, everyone, none, 0, 10)[0]] == [SOURCE]
    ann = Visibility("ann", frozenset({"P"}))
    assert store.sources.search(None, ann, none, 0, 10)[1] == 3
    member_of_q = Visibility("bob", frozenset({"Q"}))
    assert [s.url for s in store.sources.search(None, member_of_q, none, 0, 10)[0]] == \
        ["/orgs/O/sources/S/", "/orgs/Q/sources/InPrivateOrg/"]
    assert store.sources.search(None, None, none, 0, 10)[1] == 4
    assert store.sources.count_public("/orgs/Q/") == 0 and store.sources.count_public("/orgs/O/") == 1
    assert store.orgs.is_public("O") and not store.orgs.is_public("Q")
    assert not store.orgs.is_public("Nobody")
    assert [s.url for s in store.sources.search("/orgs/P/", ann, none, 0, 10)[0]] == \
        ["/orgs/P/sources/Hidden/"]
    assert store.sources.search("/orgs/P/", everyone, none, 0, 10) == ([], 0)
    assert [s.url for s in store.sources.search(None, None, RepoFilters(q="mIn"), 0, 10)[0]] \
        == ["/users/ann/sources/Mine/"]
    assert store.sources.search(None, None, RepoFilters(owner_type="User"), 0, 10)[1] == 1
    assert store.sources.count_public("/orgs/P/") == 0
    assert store.sources.count_public("/orgs/O/") == 1
    assert store.sources.next_mapping_number(SOURCE) == 1
    assert store.sources.next_mapping_number(SOURCE) == 2
    assert store.sources.get(SOURCE).seq == 0
    state = store.sources.cut_state(SOURCE)
    assert (state.seq, state.last_updated) == (0, None)


def version_cut(repository: str, number: int, seq: int, created_on: str,
                released: bool = True) -> Version:
    """Version v{number} of a repository, cut at `seq`."""
    return Version(url=f"{repository}v{number}/", id=f"v{number}", source=repository, seq=seq,
                   created_on=created_on, updated_on=created_on, released=released)


def test_versions_newest_first(store: Store) -> None:
    for number, released in ((1, True), (2, False), (3, True)):
        store.versions.insert(version_cut(SOURCE, number, number, t(number), released))
    with pytest.raises(DuplicateKey):
        store.versions.insert(version_cut(SOURCE, 1, 9, t(9)))
    assert [v.id for v in store.versions.list(SOURCE, None, 0, 10)[0]] == ["v3", "v2", "v1"]
    assert [v.id for v in store.versions.list(SOURCE, False, 0, 10)[0]] == ["v2"]
    assert store.versions.latest_released(SOURCE).id == "v3"
    assert [v.id for v in store.versions.all_released()] == ["v1", "v3"]
    assert store.versions.get(f"{SOURCE}v1/").released is True
    store.versions.delete(f"{SOURCE}v2/")
    assert store.versions.get(f"{SOURCE}v2/") is None
    store.versions.delete_for_source(SOURCE)
    assert store.versions.list(SOURCE, None, 0, 10) == ([], 0)


def test_sources_are_records_stored_as_before(store: Store) -> None:
    """A source or collection comes out as the record that went in, with its content's stamps,
    and its stored document keeps the shape creating one has always written (`termsync db copy`
    and existing databases rely on it): a source's `source_type`, a collection's own fields."""
    sources = store.sources
    made = Source(url=SOURCE, id="S", repo_type="Source", owner="O", owner_type="Organization",
                  owner_url="/orgs/O/", public_access="View", created_on=t(1), updated_on=t(1),
                  created_by="ann", updated_by="ann", short_code="S", name="Lab", full_name="Lab",
                  description=None, source_type="Dictionary", default_locale="en",
                  supported_locales=("en", "fr"), website=None, custom_validation_schema=None,
                  external_id="x1", extras={"k": [1]})
    sources.insert(made)
    assert sources.get(SOURCE) == made
    fields = {"_id": SOURCE, "url": SOURCE, "id": "S", "repo_type": "Source", "short_code": "S",
              "name": "Lab", "full_name": "Lab", "owner": "O", "owner_type": "Organization",
              "owner_url": "/orgs/O/", "created_on": t(1), "updated_on": t(1),
              "created_by": "ann", "updated_by": "ann", "description": None,
              "source_type": "Dictionary", "default_locale": "en",
              "supported_locales": ["en", "fr"], "public_access": "View", "website": None,
              "custom_validation_schema": None, "external_id": "x1", "extras": {"k": [1]},
              "seq": 0, "mapping_counter": 0, "last_updated": ""}
    document = stored(sources, SOURCE)
    assert document is not None
    # HEAD's checksum and counts are the backend's own (SQLite keeps them in columns)
    assert {key: value for key, value in document.items()
            if key not in ("content_checksum", "counts")} == fields
    changed = sources.update(SOURCE, name="Laboratory", supported_locales=("de",), extras=None,
                             public_access="None", updated_on=t(2), updated_by="bob")
    assert changed == replace(made, name="Laboratory", supported_locales=("de",), extras=None,
                              public_access="None", updated_on=t(2), updated_by="bob")
    document = stored(sources, SOURCE)
    assert document is not None and document["supported_locales"] == ["de"]
    assert document["extras"] is None and document["updated_by"] == "bob"
    assert sources.update(f"{SOURCE}nope/", name="x") is None
    assert sources.next_mapping_number(SOURCE) == 1 and sources.get(SOURCE).mapping_counter == 1
    write(store, item("C1", t(3)))
    assert (sources.get(SOURCE).seq, sources.get(SOURCE).last_updated) == (1, t(3))
    collection = Source(url=COLLECTION, id="C", repo_type="Collection", owner="O",
                        owner_type="Organization", owner_url="/orgs/O/", public_access="View",
                        created_on=t(4), updated_on=t(4), collection_type="Subset",
                        canonical_url="http://x/", immutable=False)
    sources.insert(collection)
    assert sources.get(COLLECTION) == collection
    document = stored(sources, COLLECTION)
    assert document is not None and "source_type" not in document
    assert {key: document[key] for key in ("collection_type", "canonical_url", "preferred_source",
                                           "custom_resources_linked_source", "immutable",
                                           "locked_date")} == {
        "collection_type": "Subset", "canonical_url": "http://x/", "preferred_source": None,
        "custom_resources_linked_source": None, "immutable": False, "locked_date": None}
    with pytest.raises(DuplicateKey):
        sources.insert(collection)
    sources.delete(COLLECTION)
    assert sources.get(COLLECTION) is None


def test_versions_are_records_stored_as_before(store: Store) -> None:
    """A version comes out as the record that went in, and its stored document keeps the shape
    a cut has always written (`termsync db copy` and existing databases rely on it)."""
    versions = store.versions
    cut = Version(url=f"{SOURCE}v1/", id="v1", source=SOURCE, seq=7, checksum="c" * 32,
                  counts={"Concept": [2, 1, 0], "Mapping": [1, 0, 0]}, last_updated=t(3),
                  description="first", released=False, retired=False, external_id="x1",
                  extras={"k": [1]}, previous_version_url=f"{SOURCE}v0/", created_on=t(4),
                  updated_on=t(4), created_by="ann", updated_by="ann")
    versions.insert(cut)
    assert versions.get(f"{SOURCE}v1/") == cut
    assert stored(versions, f"{SOURCE}v1/") == {
        "_id": f"{SOURCE}v1/", "id": "v1", "source": SOURCE, "seq": 7, "checksum": "c" * 32,
        "counts": {"Concept": [2, 1, 0], "Mapping": [1, 0, 0]}, "last_updated": t(3),
        "description": "first", "released": False, "retired": False, "external_id": "x1",
        "extras": {"k": [1]}, "previous_version_url": f"{SOURCE}v0/", "created_on": t(4),
        "updated_on": t(4), "created_by": "ann", "updated_by": "ann"}
    changed = versions.update(f"{SOURCE}v1/", released=True, extras=None, description=None,
                              updated_on=t(5), updated_by="bob")
    # extras set to null is stored as null (as before) and reads as none
    assert changed == replace(cut, released=True, extras={}, description=None, updated_on=t(5),
                              updated_by="bob")
    document = stored(versions, f"{SOURCE}v1/")
    assert document is not None and document["extras"] is None and document["released"] is True
    assert versions.update(f"{SOURCE}v1/", checksum="d" * 32).checksum == "d" * 32
    assert versions.update(f"{SOURCE}v9/", released=True) is None
    # a cut on MongoDB does not know HEAD's checksum and counts yet: null, worked out later
    versions.insert(replace(cut, url=f"{SOURCE}v2/", id="v2", checksum=None, counts=None))
    assert versions.get(f"{SOURCE}v2/").checksum is None
    assert stored(versions, f"{SOURCE}v2/")["counts"] is None


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
    assert store.sources.get(SOURCE).last_updated == t(4)

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
    page = store.items.diff(since, None, None, 3)
    assert [(i["updated_on"], i["type"], i["id"]) for i in page] == [
        (t(11), "Concept", "C2"), (t(11), "Concept", "C3"), (t(11), "Mapping", "M1")]
    last = page[-1]
    rest = store.items.diff(since, DiffKey(last["updated_on"], last["type"], last["id"]), None,
                            10)
    assert [i["id"] for i in rest] == ["C4", "C5"]
    # bounded on both sides, one type: only what lies between
    concepts_since = ContentQuery(SOURCE, types=("Concept",), updated_since=t(11))
    assert [i["id"] for i in store.items.diff(concepts_since, DiffKey(t(11), "Concept", "C2"),
                                              DiffKey(t(12), "Concept", "C4"), 10)] == ["C3", "C4"]
    assert store.items.diff(ContentQuery(SOURCE, types=("Mapping",)),
                            DiffKey(t(11), "Mapping", "M1"), DiffKey(t(20), "Concept", "C5"),
                            10) == []
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


# --- collections ---------------------------------------------------------------------------------

COLLECTION = "/orgs/O/collections/K/"


def collection_doc(url: str = COLLECTION) -> Source:
    return replace(source_doc(url), repo_type="Collection")


def entry(url: str, item_seq: int, updated_on: str, *, deleted: bool = False,
          retired: bool = False, follow: bool = True) -> dict[str, Any]:
    """An entry naming one item version of SOURCE (or OTHER), as the domain writes it."""
    parts = url.split("/")
    return {"url": url, "type": "Concept" if parts[-3] == "concepts" else "Mapping",
            "id": parts[-2], "source": "/".join(parts[:-3]) + "/", "item_seq": item_seq,
            "deleted": deleted, "retired": retired, "follow": follow, "updated_on": updated_on}


def put_entry(store: Store, document: dict[str, Any]) -> int:
    head = store.collection_entries.head(COLLECTION, document["url"])
    return store.collection_entries.write(COLLECTION, [(document, head["seq"] if head else None)])


def reference(expression: str, url: str, item_seq: int | None = None) -> dict[str, Any]:
    return {"expression": expression, "url": url, "type": "Concept", "id": url.split("/")[-2],
            "source": SOURCE, "item_seq": item_seq, "retired": False, "created_on": t(1)}


def test_collections_are_repositories_of_their_own_kind(store: Store) -> None:
    store.orgs.insert({"_id": "O", "public_access": "View", "members": []})
    store.sources.insert(source_doc())
    store.sources.insert(collection_doc())
    store.sources.insert(replace(collection_doc("/orgs/O/collections/P/"), public_access="None"))
    assert store.sources.get(SOURCE).repo_type == "Source"
    assert store.sources.get(COLLECTION).repo_type == "Collection"

    def urls(kind: str | None) -> list[str]:
        found, total = store.sources.search("/orgs/O/", None, RepoFilters(repo_type=kind), 0, 10)
        assert total == len(found)
        return [source.url for source in found]

    assert urls("Source") == [SOURCE]
    assert urls("Collection") == [COLLECTION, "/orgs/O/collections/P/"]
    assert urls(None) == [COLLECTION, "/orgs/O/collections/P/", SOURCE]
    assert store.sources.count_public("/orgs/O/") == 1
    assert store.sources.count_public("/orgs/O/", "Collection") == 1


def test_references_are_versioned_by_the_collection_seq(store: Store) -> None:
    store.sources.insert(collection_doc())
    a, b = f"{SOURCE}concepts/A/", f"{SOURCE}concepts/B/"
    assert store.references.add(COLLECTION, [reference(a, a), reference(f"{SOURCE}v1/concepts/B/",
                                                                          b, 7)]) == 2
    assert store.references.add(COLLECTION, [reference(f"{b}3/", b, 3)]) == 3
    cut = store.sources.cut_state(COLLECTION).seq
    assert sorted(store.references.live(COLLECTION, [a, f"{b}3/", "nothing"])) == [a, f"{b}3/"]
    assert {r["expression"] for r in store.references.bringing(COLLECTION, b)} == {
        f"{SOURCE}v1/concepts/B/", f"{b}3/"}
    ended = store.references.remove(COLLECTION, [f"{b}3/", "nothing"])
    assert [(r["expression"], r["sup"]) for r in ended] == [(f"{b}3/", 4)]
    assert store.references.remove(COLLECTION, [f"{b}3/"]) == []
    assert store.sources.cut_state(COLLECTION).seq == 4

    page, total = store.references.page(COLLECTION, HEAD_SEQ, None, 0, 10)
    assert [r["expression"] for r in page] == [a, f"{SOURCE}v1/concepts/B/"] and total == 2
    page, total = store.references.page(COLLECTION, cut, None, 1, 1)
    assert [r["expression"] for r in page] == [f"{b}3/"] and total == 3
    assert store.references.page(COLLECTION, cut, "V1/CONCEPTS", 0, 10)[1] == 1  # any case
    assert [r["item_seq"] for r in store.references.iter_at(COLLECTION, cut, 2)] == [None, 3, 7]
    assert store.references.page(COLLECTION, 1, None, 0, 10)[1] == 1
    store.references.delete_for_collection(COLLECTION)
    assert store.references.page(COLLECTION, cut, None, 0, 10) == ([], 0)


def test_collection_entries_name_item_versions_and_keep_checksums(store: Store) -> None:
    store.sources.insert(source_doc())
    store.sources.insert(source_doc(OTHER))
    store.sources.insert(collection_doc())
    a1 = write(store, item("A", t(1), datatype="Coded"))
    write(store, item("A", t(2), datatype="Text"))
    m = write(store, item("M", t(3), type_="Mapping", from_concept_url=f"{SOURCE}concepts/A/",
                          to_concept_url=f"{OTHER}concepts/A/"))
    x = write(store, item("A", t(4), source=OTHER))
    a, ma, xa = f"{SOURCE}concepts/A/", f"{SOURCE}mappings/M/", f"{OTHER}concepts/A/"
    entries = store.collection_entries

    assert put_entry(store, entry(a, a1, t(10), follow=False)) == 1
    assert entries.write(COLLECTION, [(entry(ma, m, t(11)), None),
                                      (entry(xa, x, t(11)), None)]) == 3
    cut = store.sources.cut_state(COLLECTION)
    assert (cut.seq, cut.last_updated) == (3, t(11))
    assert put_entry(store, entry(a, 2, t(12))) == 4  # now follows A's newer version
    with pytest.raises(StaleHead):
        entries.write(COLLECTION, [(entry(a, 2, t(13)), 1)])
    put_entry(store, entry(xa, x, t(13), deleted=True, follow=False))  # left the collection

    assert entries.head(COLLECTION, a)["item_seq"] == 2
    assert entries.head(COLLECTION, xa)["deleted"] is True
    head = ContentQuery(COLLECTION)
    assert [(i["url"], i["seq"], i["data"]["datatype"]) for i in entries.page(
        ContentQuery(COLLECTION, types=("Concept",)), 0, 10)] == [(a, 2, "Text")]
    at_cut = ContentQuery(COLLECTION, cut.seq, ("Concept",))
    listed = entries.page(at_cut, 0, 10)
    assert [(i["url"], i["seq"], i["source"]) for i in listed] == [(a, 1, SOURCE), (xa, x, OTHER)]
    assert listed[0]["updated_on"] == t(1) and listed[0]["entry_updated_on"] == t(10)
    assert entries.count(at_cut) == 2 and entries.count(head) == 2
    assert entries.count(ContentQuery(COLLECTION, include_deleted=True)) == 3
    assert [i["id"] for i in entries.find(COLLECTION, cut.seq, "Concept", "A")] == ["A", "A"]
    assert [i["url"] for i in entries.find(COLLECTION, HEAD_SEQ, "Concept", "A")
            if not i["deleted"]] == [a]

    # searched by the fields of the item versions the entries name, in url order
    coded = replace(at_cut, filters=ItemFilters(datatype=("Coded",)))
    assert [(i["url"], i["seq"]) for i in entries.search(coded, 0, 10, 100)[0]] == [(a, 1)]
    assert entries.search(replace(coded, seq=HEAD_SEQ), 0, 10, 100) == ([], 0)
    page, total = entries.search(replace(at_cut, filters=ItemFilters(q="a")), 1, 1, 100)
    assert [i["url"] for i in page] == [xa] and total == 2

    since = ContentQuery(COLLECTION, updated_since=t(11), include_deleted=True)
    diff = entries.diff(since, None, None, 2)
    assert [i["url"] for i in entries.diff(since, DiffKey(t(11), "Mapping", ma),
                                           DiffKey(t(12), "Concept", a), 5)] == [a]
    assert [(i["entry_updated_on"], i["url"]) for i in diff] == [(t(11), ma), (t(12), a)]
    assert entries.diff_end(since, None, 2) == (2, DiffKey(t(12), "Concept", a),
                                                DiffKey(t(13), "Concept", xa))
    # bounded above: a key of an empty type and id sorts before every item of its moment
    assert entries.diff_end(since, None, 5, until=DiffKey(t(12), "", "")) == (
        1, DiffKey(t(11), "Mapping", ma), None)
    rest = list(entries.iter_diff(since, DiffKey(t(12), "Concept", a), None, batch_size=1))
    assert [(i["url"], i["deleted"], i["updated_on"]) for i in rest] == [(xa, True, t(13))]
    assert entries.newest(since)["url"] == xa
    assert [i["url"] for i in entries.iter_content(ContentQuery(COLLECTION, cut.seq), 1)] == \
        [a, xa]
    assert [i["id"] for i in entries.mappings_for_concept(COLLECTION, HEAD_SEQ, a)] == ["M"]
    assert entries.mappings_for_concept(COLLECTION, HEAD_SEQ, xa) == []
    assert [i["id"] for i in entries.mappings_for_concept(COLLECTION, HEAD_SEQ, xa,
                                                          inverse=True)] == ["M"]

    expected = checksum_of([(a, 2), (ma, m)])
    assert entries.head_checksum(COLLECTION) == expected == entries.scan_checksum(
        COLLECTION, HEAD_SEQ)
    assert entries.scan_checksum(COLLECTION, cut.seq) == checksum_of([(a, 1), (ma, m), (xa, x)])
    assert cut.checksum in (None, entries.scan_checksum(COLLECTION, cut.seq))
    assert entries.head_counts(COLLECTION) in (None, {"Concept": [1, 0, 1], "Mapping": [1, 0, 0]})

    assert [e["collection"] for e in entries.followers(ma)] == [COLLECTION]
    assert entries.followers(xa) == []
    entries.set_follow(COLLECTION, ma, False)
    assert entries.followers(ma) == [] and entries.head(COLLECTION, ma)["seq"] == 2
    assert entries.holding(SOURCE) == [COLLECTION]
    assert entries.holding(OTHER) == []  # it left HEAD, and no version holds it
    store.versions.insert(version_cut(COLLECTION, 1, cut.seq, t(20)))
    assert entries.holding(OTHER) == [COLLECTION]
    assert entries.sources_held(COLLECTION) == sorted([SOURCE, OTHER])

    entries.mark_following(a, t(30))
    assert entries.marked_following(t(31)) in ([], [a])  # kept where writes are not atomic
    entries.unmark_following(a)
    assert entries.marked_following() == []
    entries.delete_for_collection(COLLECTION)
    assert entries.head(COLLECTION, a) is None and entries.count(head) == 0


# --- the console's reads -------------------------------------------------------------------------

def test_orgs_and_sources_searched_by_id_and_name(store: Store) -> None:
    store.orgs.insert({"_id": "Alpha", "name": "First org", "public_access": "View", "members": []})
    store.orgs.insert({"_id": "Beta", "name": "Hidden alphabet", "public_access": "None",
                       "members": ["bob"]})
    store.orgs.insert({"_id": "C_1", "name": "100% org", "public_access": "View", "members": []})
    store.orgs.insert({"_id": "O", "public_access": "View", "members": []})
    anonymous = Visibility(None, frozenset())
    assert [o["_id"] for o in store.orgs.search("ALPH", None, anonymous, 0, 10)[0]] == ["Alpha"]
    bob = Visibility("bob", frozenset({"Beta"}))
    assert store.orgs.search("alph", None, bob, 0, 10)[1] == 2
    assert [o["_id"] for o in store.orgs.search("first", None, None, 0, 10)[0]] == ["Alpha"]
    assert [o["_id"] for o in store.orgs.search("%", None, None, 0, 10)[0]] == ["C_1"]  # literal
    assert [o["_id"] for o in store.orgs.search("_", None, None, 0, 10)[0]] == ["C_1"]
    assert store.orgs.search("beta", None, bob, 0, 10)[0][0]["members"] == ["bob"]

    store.sources.insert(replace(source_doc(SOURCE), name="Laboratory terms", full_name="Lab"))
    store.sources.insert(replace(source_doc(OTHER), name="Drugs", full_name="Medicines list"))
    store.sources.insert(replace(source_doc("/orgs/P/sources/Secret/", owner="P",
                                            public_access="None"), name="Lab secrets"))
    def found_ids(owner_url: str | None, visible_to: Visibility, text: str) -> list[str]:
        return [s.id for s in store.sources.search(owner_url, visible_to,
                                                      RepoFilters(q=text), 0, 10)[0]]

    assert found_ids(None, anonymous, "lab") == ["S"]
    member = Visibility("ann", frozenset({"P"}))
    found, total = store.sources.search(None, member, RepoFilters(q="LAB"), 0, 1)
    assert total == 2 and [s.id for s in found] == ["S"]
    assert found_ids(None, anonymous, "medicines") == ["T"]
    assert found_ids("/orgs/O/", anonymous, "drug") == ["T"]
    assert store.sources.search("/orgs/P/", anonymous, RepoFilters(q="lab"), 0, 10) == ([], 0)


def named(item_id: str, stamp: str, *names: str, **fields: Any) -> dict[str, Any]:
    return item(item_id, stamp, names=[{"name": name, "locale": "en"} for name in names],
                **fields)


def test_items_searched_by_text_class_and_datatype(store: Store) -> None:
    store.sources.insert(source_doc())
    write(store, named("A1", t(1), "Malaria", "Paludism", concept_class="Diagnosis",
                       datatype="N/A"))
    write(store, named("B2", t(2), "Fever", concept_class="Symptom", datatype="N/A"))
    write(store, named("C3", t(3), 'Say "aah"', concept_class="Diagnosis", datatype="Coded"))
    write(store, named("MAL-4", t(4), "Other", concept_class="Diagnosis", datatype="N/A"))
    write(store, named("E5", t(5), "Cerebral malaria", concept_class="Diagnosis",
                       datatype="N/A", retired=True))
    cut = store.sources.cut_state(SOURCE).seq
    write(store, named("B2", t(6), "Pyrexia", concept_class="Symptom", datatype="N/A"))
    write(store, named("A1", t(7), "Malaria", deleted=True))
    write(store, item("M1", t(8), type_="Mapping", names=[{"name": "Malaria"}]))

    def ids(query: ContentQuery, match: ItemMatch, skip: int = 0, limit: int = 10,
            count_limit: int = 100) -> tuple[list[str], int]:
        found, total = store.items.search(replace(query, filters=match.filters()), skip, limit,
                                          count_limit)
        return [i["id"] for i in found], total

    live = ContentQuery(SOURCE, types=("Concept",), include_retired=False)
    every = ContentQuery(SOURCE, types=("Concept",))
    assert ids(live, ItemMatch()) == (["B2", "C3", "MAL-4"], 3)
    assert ids(every, ItemMatch(text="MAL")) == (["E5", "MAL-4"], 2)  # a name, an id
    assert ids(live, ItemMatch(text="mal")) == (["MAL-4"], 1)
    assert ids(live, ItemMatch(text="pyrex")) == (["B2"], 1)
    assert ids(live, ItemMatch(text="fever")) == ([], 0)  # no longer its name at HEAD
    assert ids(live, ItemMatch(text='"aah"')) == (["C3"], 1)  # a quote: names matched directly
    assert ids(live, ItemMatch(text="locale")) == ([], 0)  # a field name is no match
    assert ids(every, ItemMatch(concept_class="Diagnosis")) == (["C3", "E5", "MAL-4"], 3)
    assert ids(live, ItemMatch(concept_class="Diagnosis", datatype="N/A")) == (["MAL-4"], 1)
    assert ids(live, ItemMatch(datatype="N/A")) == (["B2", "MAL-4"], 2)
    assert ids(live, ItemMatch(text="a", datatype="N/A")) == (["B2", "MAL-4"], 2)
    assert ids(live, ItemMatch(concept_class="Diag")) == ([], 0)  # classes match exactly

    at_cut = ContentQuery(SOURCE, cut, ("Concept",), include_retired=False)
    assert ids(at_cut, ItemMatch(text="mal")) == (["A1", "MAL-4"], 2)
    assert ids(at_cut, ItemMatch(text="fever", concept_class="Symptom")) == (["B2"], 1)
    assert ids(at_cut, ItemMatch(datatype="N/A"), skip=1, limit=1) == (["B2"], 3)

    # a text search pages, and counts no further than the page and count_limit need
    assert ids(every, ItemMatch(text="e")) == (["B2", "E5", "MAL-4"], 3)
    assert ids(every, ItemMatch(text="e"), skip=1, limit=2, count_limit=1) == (["E5", "MAL-4"], 3)
    assert ids(every, ItemMatch(text="e"), limit=1, count_limit=1) == (["B2"], 2)  # "more than 1"
    assert ids(every, ItemMatch(text="e"), skip=10) == ([], 3)
    assert ids(ContentQuery(SOURCE, types=("Mapping",)), ItemMatch(text="malaria")) == (["M1"], 1)


def test_changes_between_two_seqs(store: Store) -> None:
    store.sources.insert(source_doc())
    for name in ("A", "B", "C", "D"):
        write(store, item(name, t(1)))
    write(store, item("Gone", t(1), retired=True))
    released = store.sources.cut_state(SOURCE).seq
    assert store.items.changes(SOURCE, 0, released) == {"created": 5, "updated": 0, "retired": 0,
                                                        "deleted": 0}
    assert store.items.changes(SOURCE, released) == {"created": 0, "updated": 0, "retired": 0,
                                                     "deleted": 0}
    write(store, item("A", t(2), datatype="Coded"))
    write(store, item("A", t(3), datatype="Text"))  # twice is one updated item
    write(store, item("B", t(4), retired=True))
    write(store, item("C", t(5), deleted=True))
    write(store, item("Gone", t(6), retired=False))  # un-retired: updated
    write(store, item("New", t(7)))
    write(store, item("Brief", t(8)))
    write(store, item("Brief", t(9), deleted=True))  # created and deleted since: nothing
    write(store, item("M", t(10), type_="Mapping"))
    middle = store.sources.cut_state(SOURCE).seq
    write(store, item("D", t(11), retired=True))
    assert store.items.changes(SOURCE, released) == {"created": 2, "updated": 2, "retired": 2,
                                                     "deleted": 1}
    assert store.items.changes(SOURCE, released, middle) == {"created": 2, "updated": 2,
                                                             "retired": 1, "deleted": 1}
    assert store.items.changes(SOURCE, middle) == {"created": 0, "updated": 0, "retired": 1,
                                                   "deleted": 0}
    assert store.items.changes(OTHER, 0) == {"created": 0, "updated": 0, "retired": 0,
                                             "deleted": 0}


def test_the_items_a_delta_holds(store: Store) -> None:
    """iter_changed: the item versions live at one seq written after another, by kind and state,
    each with its state before; what test_changes_between_two_seqs counts."""
    store.sources.insert(source_doc())
    for name in ("A", "B", "C", "D", "Gone"):
        write(store, item(name, t(1), retired=name == "Gone"))
    released = store.sources.cut_state(SOURCE).seq
    write(store, item("A", t(2), datatype="Coded"))
    write(store, item("A", t(3), datatype="Text"))
    write(store, item("B", t(4), retired=True))
    write(store, item("C", t(5), deleted=True))
    write(store, item("Gone", t(6), retired=False))
    write(store, item("New", t(7)))
    write(store, item("Brief", t(8)))
    write(store, item("Brief", t(9), deleted=True))
    write(store, item("M", t(10), type_="Mapping"))
    middle = store.sources.cut_state(SOURCE).seq
    write(store, item("D", t(11), retired=True))

    def changed(kind: str, deleted: bool, until: int = middle,
                batch_size: int = 2) -> list[tuple[str, str | None, str]]:
        return [(found["id"], found["before"], found["data"].get("datatype", "-"))
                for found in store.items.iter_changed(SOURCE, released, until, kind, deleted,
                                                      batch_size)]

    assert changed("Concept", False) == [("A", "active", "Text"), ("B", "active", "N/A"),
                                         ("Gone", "retired", "N/A"), ("New", None, "N/A")]
    assert changed("Concept", True) == [("C", "active", "-"), ("Brief", None, "-")]
    assert changed("Mapping", False) == [("M", None, "N/A")]
    assert changed("Mapping", True) == []
    assert [found["id"] for found in store.items.iter_changed(
        SOURCE, middle, HEAD_SEQ, "Concept", False)] == ["D"]
    assert store.items.count_changed(SOURCE, released, middle) == 7
    assert store.items.count_changed(SOURCE, middle, HEAD_SEQ) == 1
    assert list(store.items.iter_changed(OTHER, 0, HEAD_SEQ, "Concept", False)) == []


def test_mappings_linked_to_a_concept_both_ways(store: Store) -> None:
    store.sources.insert(source_doc())
    store.sources.insert(source_doc(OTHER))
    a, b = f"{SOURCE}concepts/A/", f"{SOURCE}concepts/B/"
    write(store, item("A", t(1)))
    write(store, item("B", t(1)))
    write(store, item("2", t(2), type_="Mapping", from_concept_url=a, to_concept_url=b))
    write(store, item("1", t(2), type_="Mapping", from_concept_url=b, to_concept_url=a))
    write(store, item("3", t(2), type_="Mapping", from_concept_url=a, to_source_url="/x/",
                      to_concept_code="9"))
    cut = store.sources.cut_state(SOURCE).seq
    write(store, item("9", t(3), type_="Mapping", source=OTHER, from_concept_url=f"{OTHER}c/X/",
                      to_concept_url=a))
    write(store, item("3", t(4), type_="Mapping", deleted=True))
    write(store, item("1", t(5), type_="Mapping", from_concept_url=b, to_concept_url=a,
                      retired=True))
    write(store, item("4", t(6), type_="Mapping", from_concept_url=a, to_concept_url=a))

    def ids(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(i["source"], i["id"]) for i in found]

    assert ids(store.items.linked_mappings(a, "from")) == [(SOURCE, "2"), (SOURCE, "4")]
    assert ids(store.items.linked_mappings(a, "to")) == [(SOURCE, "1"), (SOURCE, "4"),
                                                         (OTHER, "9")]
    assert store.items.linked_mappings(a, "to")[0]["retired"] is True
    assert ids(store.items.linked_mappings(a, "to", SOURCE)) == [(SOURCE, "1"), (SOURCE, "4")]
    assert ids(store.items.linked_mappings(a, "from", SOURCE, cut)) == [(SOURCE, "2"),
                                                                        (SOURCE, "3")]
    assert store.items.linked_mappings(a, "to", SOURCE, cut)[0]["retired"] is False
    assert ids(store.items.linked_mappings(a, "to", limit=1)) == [(SOURCE, "1")]
    assert store.items.linked_mappings(f"{SOURCE}concepts/Z/", "from") == []


def test_console_sessions_expire(store: Store) -> None:
    sessions = store.console_sessions
    sessions.insert({"_id": "k1", "username": "ann", "expires_at": t(10)})
    sessions.insert({"_id": "k2", "username": "bob", "expires_at": t(30)})
    with pytest.raises(DuplicateKey):
        sessions.insert({"_id": "k1", "expires_at": t(10)})
    assert sessions.get("k1") == {"_id": "k1", "username": "ann", "expires_at": t(10)}
    assert sessions.purge(t(20)) == 1
    assert sessions.get("k1") is None and sessions.get("k2")["username"] == "bob"
    sessions.delete("k2")
    assert sessions.get("k2") is None


# --- jobs and the rest ---------------------------------------------------------------------------

def job(job_id: str, created_on: str, **fields: Any) -> Job:
    return Job(**dict({"id": job_id, "kind": "export", "state": "PENDING", "payload": {"n": 1},
                       "owner": "ann", "created_on": created_on, "updated_on": created_on},
                      **fields))


def test_job_claims_leases_and_ends(store: Store) -> None:
    jobs = store.jobs
    jobs.insert(job("a", t(1)))
    # what both backends keep: every field JobQueue.submit has always written, by its stored name
    assert [document for document in jobs.dump() if document["_id"] == "a"] == [{
        "_id": "a", "kind": "export", "key": None, "state": "PENDING", "payload": {"n": 1},
        "owner": "ann", "progress": {}, "result": None, "error": None, "attempts": 0,
        "worker": None, "lease_until": None, "generation": None, "queue": None,
        "created_on": t(1), "updated_on": t(1), "started_on": None, "finished_on": None,
        "not_before": None}]
    jobs.insert(job("b", t(2), kind="bulk_import"))
    with pytest.raises(DuplicateKey):
        jobs.insert(job("a", t(3)))
    claimed = jobs.claim(["export", "bulk_import"], "w1", t(10), t(20))
    assert claimed.id == "a" and claimed.state == "RUNNING" and claimed.attempts == 1
    assert jobs.oldest_pending() == t(2)
    assert jobs.active_counts() == {("export", "RUNNING"): 1, ("bulk_import", "PENDING"): 1}
    assert jobs.heartbeat("a", "w1", t(11), t(21), {"done": 1})
    assert not jobs.heartbeat("a", "w2", t(11), t(21), None)
    assert jobs.get("a").progress == {"done": 1}
    jobs.mark_started("a", "w1", t(11))
    assert jobs.get("a").started_on == t(11)
    # the lease runs out: another worker takes the job over, the first one has lost it
    assert jobs.claim(["export"], "w2", t(30), t(40)).id == "a"
    assert not jobs.end("a", "w1", "FINISHED", t(31), {"result": {"x": 1}})
    assert jobs.save_progress("a", "w2", t(31), {"done": 2})
    assert not jobs.save_progress("a", "w1", t(31), {"done": 9})
    assert jobs.end("a", "w2", "FINISHED", t(32), {"result": {"x": 1}})
    assert jobs.get("a").result == {"x": 1} and jobs.get("a").state == "FINISHED"
    assert jobs.cancel("b", t(33)) and not jobs.cancel("b", t(34))
    assert jobs.claim(["export", "bulk_import"], "w1", t(40), t(50)) is None
    assert [j.id for j in jobs.list(None, "ann", None, 0, 10)[0]] == ["b", "a"]
    assert jobs.list("export", None, ["FINISHED"], 0, 10)[1] == 1


def test_jobs_numbered_by_key_and_abandoned(store: Store) -> None:
    jobs = store.jobs
    jobs.insert(job("k-1", t(1), key="k", generation=1, state="FINISHED"))
    jobs.insert(job("k-2", t(2), key="k", generation=2))
    assert jobs.latest("export", "k").id == "k-2"
    assert jobs.latest("export", "other") is None
    jobs.update("k-2", {"state": "RUNNING", "attempts": 5, "lease_until": t(3), "worker": "w"})
    jobs.insert(job("x", t(4), state="RUNNING", attempts=1, lease_until=t(3), worker="w"))
    assert jobs.count_expired(t(10)) == 2
    assert jobs.fail_abandoned(t(10), 5, "lost") == 1
    assert jobs.get("k-2").state == "FAILED" and jobs.get("k-2").error == "lost"
    assert jobs.count_expired(t(10)) == 1
    # a job stored before jobs had a generation, a queue and a not_before reads back without them
    jobs.load([{"_id": "old", "kind": "export", "key": None, "state": "FINISHED",
                "payload": {"n": 1}, "owner": "ann", "progress": {}, "result": None,
                "error": None, "attempts": 1, "worker": "w", "lease_until": None,
                "created_on": t(5), "updated_on": t(6), "started_on": t(5), "finished_on": t(6)}])
    assert jobs.get("old") == job("old", t(5), state="FINISHED", attempts=1, worker="w",
                                  updated_on=t(6), started_on=t(5), finished_on=t(6))


def export_file(sha256: str, size: int = 3) -> ExportFile:
    return ExportFile(sha256=sha256, size=size, created_on="2026-01-01T00:00:00.000000Z",
                      last_updated=None, stamp="version:2:1:x:y", storage="local", concepts=2,
                      mappings=1)


def stored_export(store: Store, key: str) -> dict[str, Any] | None:
    """The document a backend keeps for an export record (its own row or document)."""
    if store.kind == "sqlite":
        document: dict[str, Any] | None = store.exports.table.get(key)  # type: ignore[attr-defined]
    else:
        document = store.exports.exports.find_one({"_id": key})  # type: ignore[attr-defined]
    return document


def test_export_records(store: Store) -> None:
    records = store.exports
    records.set_job("e1", "j1", source=SOURCE, version_id="v1")
    assert records.get("e1") == ExportRecord(key="e1", source=SOURCE, version_id="v1", job_id="j1")
    assert not records.commit_file("e1", "j0", export_file("aa"))
    assert records.commit_file("e1", "j1", export_file("aa"))
    records.set_job("e1", "j2", source=SOURCE, version_id="v1")
    assert records.get("e1") == ExportRecord(key="e1", source=SOURCE, version_id="v1",
                                             job_id="j2", file=export_file("aa"))
    # both backends keep the same document (what `termsync db copy` and older releases read)
    assert stored_export(store, "e1") == {
        "_id": "e1", "source": SOURCE, "version_id": "v1", "job_id": "j2",
        "file": {"sha256": "aa", "size": 3, "created_on": "2026-01-01T00:00:00.000000Z",
                 "last_updated": None, "stamp": "version:2:1:x:y", "storage": "local",
                 "concepts": 2, "mappings": 1}}
    records.set_job("e1/since/v0/", "j3", source=SOURCE, version_id="v1", since_id="v0")
    assert records.get("e1/since/v0/") == ExportRecord(key="e1/since/v0/", source=SOURCE,
                                                       version_id="v1", job_id="j3", since_id="v0")
    assert stored_export(store, "e1/since/v0/") == {
        "_id": "e1/since/v0/", "source": SOURCE, "version_id": "v1", "since_id": "v0",
        "job_id": "j3", **({"file": None} if store.kind == "sqlite" else {})}
    records.delete("e1/since/v0/")
    found = records.by_file(SOURCE, "aa")
    assert found is not None and found.key == "e1" and records.by_file(OTHER, "aa") is None
    assert records.referenced("aa") and records.shas() == {"aa"}
    assert [r.key for r in records.for_source(SOURCE)] == ["e1"]
    assert not records.drop_file_if("e1", "bb")
    assert records.drop_file_if("e1", "aa") and not records.referenced("aa")
    assert records.get("e1") == ExportRecord(key="e1", source=SOURCE, version_id="v1", job_id="j2")
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
    t0, t1, t2, t3 = (f"2026-01-01T00:00:0{second}.000000Z" for second in range(4))
    assert keys.claim("k", "a", t0, t2) is None
    held = keys.claim("k", "b", t1, t3)  # a's lease holds: b is told whose it is
    assert held is not None and (held["job"], held["owner"], held["lease_until"]) == (None, "a", t2)
    assert keys.renew("k", "a", t3) and not keys.renew("k", "b", t3)
    assert keys.claim("k", "b", t2, t3) is not None  # renewed: still a's at t2
    assert not keys.bind("k", "b", "j0")  # only the holder binds
    assert keys.bind("k", "a", "j1")
    assert keys.job_for("k") == "j1" and keys.claim("k", "b", t3, t3)["job"] == "j1"
    keys.release("k", "a")  # bound keys stay
    assert keys.job_for("k") == "j1"
    assert keys.claim("free", "a", t0, t1) is None
    keys.release("free", "b")  # another's claim is not freed
    assert keys.claim("free", "b", t0, t1) is not None
    keys.release("free", "a")
    assert keys.claim("free", "b", t0, t1) is None
    # a claim whose upload died is taken over when its lease ends, not before
    assert keys.claim("dead", "a", t0, t1) is None
    assert keys.claim("dead", "b", t0, t2) is not None
    assert keys.claim("dead", "b", t1, t2) is None and not keys.renew("dead", "a", t3)
    assert keys.purge(t2) == 1  # "free" lapsed at t1; "dead" is b's until t2: not yet
    assert keys.purge(t3) == 1 and keys.job_for("dead") is None
    assert keys.job_for("k") == "j1"  # bound keys are never purged


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


def test_expired_heartbeats_and_rate_counters_are_purged(store: Store) -> None:
    """What a TTL index removes on a real MongoDB, maintenance purges on every backend (FerretDB
    has no TTL indexes): nothing but the expired ones."""
    now = datetime.now(UTC).replace(microsecond=0)
    store.heartbeats.beat("here", {"threads": 1}, now, now + timedelta(seconds=30))
    store.heartbeats.beat("gone", {"threads": 1}, now - timedelta(minutes=5),
                          now - timedelta(minutes=4))
    store.rate_counters.hit("this-window", now + timedelta(seconds=59))
    store.rate_counters.hit("past-window", now - timedelta(seconds=1))
    # mongomock applies its TTL indexes as it reads, so there it finds nothing left to purge
    expected = 0 if store.kind == "mongodb" and store.uri.startswith("mongomock") else 1
    assert store.heartbeats.purge(now) == expected
    assert store.rate_counters.purge(now) == expected
    assert [beat["_id"] for beat in store.heartbeats.alive(now - timedelta(hours=1))] == ["here"]
    assert store.rate_counters.hit("this-window", now + timedelta(seconds=59)) == 2
    assert store.rate_counters.hit("past-window", now + timedelta(seconds=59)) == 1  # anew
    assert store.heartbeats.purge(now) == store.rate_counters.purge(now) == 0


# --- copying between backends --------------------------------------------------------------------

def fill(store: Store) -> None:
    store.users.insert({"_id": "ann", "username": "ann"})
    store.users.add_token(token_record("hash", "ann", "t1", t(1), label="sync", bootstrap=True,
                                       expires_on=t(59), last_used_on=t(2)))
    store.orgs.insert({"_id": "O", "public_access": "View", "members": ["ann"]})
    store.sources.insert(source_doc())
    for number in range(30):
        write(store, item(f"C{number}", t(number % 60)))
    store.versions.insert(version_cut(SOURCE, 1, store.sources.cut_state(SOURCE).seq, t(40)))
    write(store, item("C3", t(50), datatype="Coded"))
    write(store, item("C4", t(51), deleted=True))
    store.items.set_mapping_key("k", SOURCE, "1")
    store.sources.insert(collection_doc())
    c3 = f"{SOURCE}concepts/C3/"
    store.references.add(COLLECTION, [reference(c3, c3)])
    put_entry(store, entry(c3, 4, t(52)))
    store.versions.insert(version_cut(COLLECTION, 1, store.sources.cut_state(COLLECTION).seq,
                                      t(53)))
    put_entry(store, entry(c3, store.items.head(c3)["seq"], t(54)))
    store.jobs.insert(job("j", t(1), state="FINISHED"))
    store.import_results.add("j", 0, {"line": 1, "action": "created"})


@pytest.mark.parametrize("route", [("sqlite", "mongodb", "sqlite"), ("mongodb", "sqlite"),
                                   ("sqlite", "ferretdb", "sqlite")])
def test_copy_between_backends_keeps_every_checksum(route: tuple[str, ...], request: Any) -> None:
    server = request.getfixturevalue("ferretdb_uri") if "ferretdb" in route else None
    stores = [new_store(kind, server) for kind in route]
    try:
        fill(stores[0])
        for source, target in itertools.pairwise(stores):
            report = copy_store(source, target, Progress(io.StringIO()))
            assert report["checksums"]["different"] == 0 and report["checksums"]["equal"] == 4
        first, last = stores[0], stores[-1]
        assert last.users.token("hash") == first.users.token("hash") == token_record(
            "hash", "ann", "t1", t(1), label="sync", bootstrap=True, expires_on=t(59),
            last_used_on=t(2))
        assert last.orgs.for_member("ann") == ["O"]
        assert last.items.head_checksum(SOURCE) == first.items.head_checksum(SOURCE)
        assert last.items.head_counts(SOURCE) in (None, {"Concept": [29, 0, 1],
                                                         "Mapping": [0, 0, 0]})
        assert last.items.current(f"{SOURCE}concepts/C3/", 30)["data"] == {"datatype": "N/A"}
        assert last.items.mapping_for_key("k") == "1"
        assert last.jobs.get("j") == first.jobs.get("j") == job("j", t(1), state="FINISHED")
        assert last.collection_entries.head_checksum(COLLECTION) == \
            first.collection_entries.head_checksum(COLLECTION) != EMPTY_CHECKSUM
        assert last.collection_entries.head_counts(COLLECTION) in (
            None, {"Concept": [1, 0, 0], "Mapping": [0, 0, 0]})
        assert [r["expression"] for r in last.references.iter_at(COLLECTION, HEAD_SEQ)] == [
            f"{SOURCE}concepts/C3/"]
        assert last.import_results.get("j", 1)["action"] == "created"
        # writing goes on after the copy: seqs continue, nothing is reused
        assert write(last, item("New", t(59))) == first.sources.get(SOURCE).seq + 1
    finally:
        for store in stores:
            store.drop()
            store.close()


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
    claimed = [jobs.claim(["export"], "w", t(10), t(20)).id for _ in range(3)]
    assert claimed == ["q1", "free", "other"]  # q2 waits for q1
    assert jobs.claim(["export"], "w", t(10), t(20)) is None
    assert jobs.end("q1", "w", "FINISHED", t(11), {})
    assert jobs.claim(["export"], "w", t(12), t(20)).id == "q2"
    assert [j.id for j in jobs.list("export", None, None, 0, 10, queues=["q"])[0]] == ["q2", "q1"]
    assert [j.id for j in jobs.list("export", None, None, 0, 10, queues=[None])[0]] == ["free"]


@pytest.mark.parametrize("kind", ["mongodb", "ferretdb"])
def test_copy_again_into_the_same_target_changes_nothing(kind: str, request: Any) -> None:
    """A copy run twice (say, after an interruption) upserts what is there already."""
    server = request.getfixturevalue("ferretdb_uri") if kind == "ferretdb" else None
    source, target = new_store("sqlite"), new_store(kind, server)
    try:
        fill(source)
        first = copy_store(source, target, Progress(io.StringIO()))
        again = copy_store(source, target, Progress(io.StringIO()))
        assert again["copied"] == first["copied"]
        assert again["checksums"] == first["checksums"] == {"equal": 4, "different": 0}
        assert target.items.count(ContentQuery(SOURCE, include_deleted=True)) == \
            source.items.count(ContentQuery(SOURCE, include_deleted=True))
    finally:
        for store in (source, target):
            store.drop()
            store.close()


def test_jobs_wait_until_their_not_before(store: Store) -> None:
    jobs = store.jobs
    jobs.insert(job("later", t(1), not_before=t(30)))
    jobs.insert(job("now", t(2), not_before=None))
    assert jobs.claim(["export"], "w", t(10), t(20)).id == "now"
    assert jobs.claim(["export"], "w", t(10), t(20)) is None  # `later` is not due
    assert jobs.claim(["export"], "w", t(30), t(40)).id == "later"


def webhook(hook_id: str, repository: str = SOURCE, created_on: str = "") -> Webhook:
    return Webhook(id=hook_id, repository=repository, url="https://example.org/hook",
                   events=("release.created",), secret="s" * 32, created_on=created_on or t(1))


def stored(repository: Any, key: str) -> dict[str, Any] | None:
    """The document a backend keeps for a record (its SQLite row, or its MongoDB document)."""
    if hasattr(repository, "table"):
        row: dict[str, Any] | None = repository.table.get(key)
        return row
    document: dict[str, Any] | None = repository.collection.find_one({"_id": key})
    return document


def test_webhooks_count_failures_and_switch_off(store: Store) -> None:
    hooks = store.webhooks
    hooks.insert(webhook("h2", created_on=t(2)))
    hooks.insert(webhook("h1", created_on=t(1)))
    hooks.insert(webhook("h3", OTHER))
    with pytest.raises(DuplicateKey):
        hooks.insert(webhook("h1"))
    assert [hook.id for hook in hooks.for_repository(SOURCE)] == ["h1", "h2"]
    assert hooks.record_attempt("h1", False, t(3), 3, "down").failures == 1
    assert hooks.record_attempt("h1", True, t(4), 3, "down").failures == 0
    for second in (5, 6):
        hook = hooks.record_attempt("h1", False, t(second), 3, "down")
        assert hook.active is True and hook.disabled_on is None
    hook = hooks.record_attempt("h1", False, t(7), 3, "down")
    assert hook.active is False and hook.disabled_on == t(7)
    assert hook.disabled_reason == "down" and hook.failures == 3
    # a later failure keeps the moment and reason it was switched off
    hook = hooks.record_attempt("h1", False, t(8), 3, "other")
    assert hook.disabled_on == t(7) and hook.disabled_reason == "down"
    hooks.update("h2", active=False)  # switched off by its owner: no alert
    found, total = hooks.disabled()
    assert total == 1 and [hook.id for hook in found] == ["h1"]
    assert hooks.update("h1", active=True, failures=0, disabled_on=None).active
    assert hooks.disabled()[1] == 0
    hooks.delete("h1")
    assert hooks.get("h1") is None and hooks.record_attempt("h1", True, t(9), 3, "") is None


def test_webhooks_are_records_stored_as_before(store: Store) -> None:
    """A hook goes in and comes out as the same record, and its stored document keeps the shape
    it had before hooks were records (`termsync db copy` and existing databases rely on it)."""
    hooks = store.webhooks
    hook = Webhook(id="h1", repository=SOURCE, url="https://example.org/hook",
                   events=("release.created", "ping"), secret="s" * 32, description="ours",
                   origin="http://localhost:5000", created_on=t(1), created_by="ann",
                   updated_on=t(1), updated_by="ann")
    hooks.insert(hook)
    assert hooks.get("h1") == hook
    assert stored(hooks, "h1") == {
        "_id": "h1", "repository": SOURCE, "url": "https://example.org/hook",
        "events": ["release.created", "ping"], "description": "ours", "active": True,
        "secret": "s" * 32, "origin": "http://localhost:5000", "failures": 0,
        "disabled_on": None, "disabled_reason": None, "last_delivery": None,
        "created_on": t(1), "created_by": "ann", "updated_on": t(1), "updated_by": "ann"}
    last = LastDelivery(id="d1", event="ping", state="DELIVERED", at=t(2), status=200,
                        error=None)
    changed = hooks.update("h1", last_delivery=last, events=("ping",), repository_deleted=True)
    assert changed == replace(hook, last_delivery=last, events=("ping",),
                              repository_deleted=True)
    document = stored(hooks, "h1")
    assert document is not None and document["events"] == ["ping"]
    assert document["repository_deleted"] is True and document["last_delivery"] == {
        "id": "d1", "event": "ping", "state": "DELIVERED", "at": t(2), "status": 200,
        "error": None}


def delivery(delivery_id: str, hook: str = "h1", created_on: str = "") -> WebhookDelivery:
    return WebhookDelivery(id=delivery_id, hook=hook, repository=SOURCE, event="ping", body="{}",
                           state="PENDING", created_on=created_on or t(1),
                           next_attempt_on=created_on or t(1))


def test_webhook_deliveries_page_newest_first_and_prune(store: Store) -> None:
    log = store.webhook_deliveries
    for second in range(1, 6):
        log.insert(delivery(f"d{second}", created_on=t(second)))
    log.insert(delivery("x", "h2"))
    with pytest.raises(DuplicateKey):
        log.insert(delivery("x"))
    page, total = log.page("h1", 1, 2)
    assert total == 5 and [found.id for found in page] == ["d4", "d3"]
    attempt = DeliveryAttempt(at=t(6), status=200, duration_ms=1.5, error=None)
    assert log.update("d5", state="DELIVERED", attempts=(attempt,)).state == "DELIVERED"
    assert log.get("d5").attempts == (attempt,)
    assert log.prune("h1", 2) == 3
    assert [found.id for found in log.page("h1", 0, 10)[0]] == ["d5", "d4"]
    log.delete_for_hook("h1")
    assert log.page("h1", 0, 10) == ([], 0) and log.get("x") is not None


def test_webhook_deliveries_are_records_stored_as_before(store: Store) -> None:
    """A delivery comes out as the record that went in, stored in the shape it had before."""
    log = store.webhook_deliveries
    queued = replace(delivery("d1"), body='{"event":"ping"}', redelivery_of="d0")
    log.insert(queued)
    assert log.get("d1") == queued
    assert stored(log, "d1") == {
        "_id": "d1", "hook": "h1", "repository": SOURCE, "event": "ping",
        "body": '{"event":"ping"}', "state": "PENDING", "created_on": t(1), "attempts": [],
        "attempt_count": 0, "next_attempt_on": t(1), "delivered_on": None, "redelivery_of": "d0"}
    attempt = DeliveryAttempt(at=t(2), status=None, duration_ms=3.0, error="refused")
    cancelled = log.update("d1", state="CANCELLED", error="the webhook is switched off",
                           attempts=(attempt,), attempt_count=1, next_attempt_on=None)
    assert cancelled == replace(queued, state="CANCELLED", error="the webhook is switched off",
                                attempts=(attempt,), attempt_count=1, next_attempt_on=None)
    document = stored(log, "d1")
    assert document is not None and document["error"] == "the webhook is switched off"
    assert document["attempts"] == [{"at": t(2), "status": None, "duration_ms": 3.0,
                                     "error": "refused"}]


def test_released_versions_of_every_repository_newest_first(store: Store) -> None:
    for number, (repository, released) in enumerate([(SOURCE, True), (OTHER, True),
                                                     (SOURCE, False), (OTHER, True)]):
        store.versions.insert(version_cut(repository, number, number, t(number), released))
    newest = store.versions.newest_released(0, 2)
    assert [version.url for version in newest] == [f"{OTHER}v3/", f"{OTHER}v1/"]
    assert [version.id for version in store.versions.newest_released(2, 5)] == ["v0"]
