"""The embedded SQLite database: every hot query answered from an index (EXPLAIN QUERY PLAN),
migrations, durability settings, several connections on one file."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.domain.browse import ItemMatch
from app.model import ContentQuery, DiffKey, RepoFilters, Source, Visibility
from app.store.sqlite import SqliteStore
from app.store.sqlite.db import migrate
from app.store.sqlite.schema import STEPS

SOURCE = "/orgs/O/sources/S/"
COLLECTION = "/orgs/O/collections/K/"


class PlanRecorder:
    """Wraps a sqlite3 connection: records the plan of every SELECT / UPDATE it runs."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.plans: list[tuple[str, list[str]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            rows = self.connection.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            self.plans.append((sql, [row[3] for row in rows]))
        return self.connection.execute(sql, params)


def repository(url: str, owner: str, repo_type: str = "Source",
               public_access: str = "View") -> Source:
    """A source (or collection) of an org, as the domain creates one."""
    return Source(url=url, id=url.split("/")[-2], repo_type=repo_type, owner=owner,
                  owner_type="Organization", owner_url=f"/orgs/{owner}/",
                  public_access=public_access, created_on="2026-01-01T00:00:00.000000Z",
                  updated_on="2026-01-01T00:00:00.000000Z")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(str(tmp_path / "plans.db"))
    store.ensure_schema()
    store.sources.insert(repository(SOURCE, "O"))
    for number in range(50):
        for kind in ("Concept", "Mapping"):
            url = f"{SOURCE}{kind.lower()}s/{number}/"
            store.items.write({"source": SOURCE, "type": kind, "id": str(number), "url": url,
                               "deleted": False, "retired": number % 7 == 0,
                               "updated_on": f"2026-01-01T00:00:{number:02d}.000000Z",
                               "data": {}}, None)
    store.sources.insert(repository(COLLECTION, "O", "Collection"))
    for number in range(50):
        for kind in ("Concept", "Mapping"):
            url = f"{SOURCE}{kind.lower()}s/{number}/"
            store.references.add(COLLECTION, [{"expression": url, "url": url, "type": kind,
                                               "id": str(number), "source": SOURCE,
                                               "item_seq": None}])
            store.collection_entries.write(COLLECTION, [(
                {"url": url, "type": kind, "id": str(number), "source": SOURCE,
                 "item_seq": store.items.head(url)["seq"], "deleted": False,
                 "retired": number % 7 == 0, "follow": True,
                 "updated_on": f"2026-01-02T00:00:{number:02d}.000000Z"}, None)])
    # other owners' repositories, some in private orgs: the planner's statistics then are those
    # of a server with many repositories, whose global lists must not read every one of them
    for number in range(200):
        org = f"Org{number % 20}"
        if number < 20:
            store.orgs.insert({"_id": org, "public_access": "None" if number % 5 == 0 else "View",
                               "members": []})
        kind = "collections" if number % 3 == 0 else "sources"
        url = f"/orgs/{org}/{kind}/R{number}/"
        store.sources.insert(repository(url, org, kind[:-1].capitalize(),
                                        "None" if number % 4 == 0 else "View"))
    store.database.connection().execute("ANALYZE")
    yield store
    store.drop()


def plans_of(store: SqliteStore, action: Any) -> list[tuple[str, list[str]]]:
    """Run `action` with every statement's query plan recorded."""
    database = store.database
    recorder = PlanRecorder(database.connection())
    database.connection = lambda: recorder  # type: ignore[assignment,method-assign,return-value]
    try:
        action()
    finally:
        del database.connection
    return recorder.plans


def assert_indexed(plans: list[tuple[str, list[str]]]) -> None:
    """No statement scans a table, and none sorts what an index could have ordered. (Reading the
    names of one item with json_each is a scan of that row's array, not of a table.)"""
    assert plans
    for sql, details in plans:
        for detail in details:
            assert not (detail.startswith("SCAN ") and "USING" not in detail
                        and "VIRTUAL TABLE" not in detail), (sql, details)
            assert not ("TEMP B-TREE" in detail and "ORDER BY" in detail), (sql, details)


def matching(query: ContentQuery, **match: str) -> ContentQuery:
    """`query` narrowed as the console's concept search narrows it."""
    return replace(query, filters=ItemMatch(**match).filters())


ANYONE = Visibility(None, frozenset())
HEAD_QUERY = ContentQuery(SOURCE, types=("Concept",), include_retired=False)
VERSION_QUERY = ContentQuery(SOURCE, seq=60, types=("Concept",))


@pytest.mark.parametrize("name, action", [
    ("diff page", lambda s: s.items.diff(ContentQuery(SOURCE, include_deleted=True,
                                                      updated_since="2026-01-01T00:00:10Z"),
                                         None, None, 500)),
    ("next diff page", lambda s: s.items.diff(ContentQuery(SOURCE, include_deleted=True),
                                              DiffKey("2026-01-01T00:00:20.000000Z", "Concept",
                                                      "20"), None, 500)),
    ("one type of a diff page", lambda s: s.items.diff(
        ContentQuery(SOURCE, types=("Mapping",)),
        DiffKey("2026-01-01T00:00:20.000000Z", "Concept", "20"),
        DiffKey("2026-01-01T00:00:30.000000Z", "Concept", "30"), 500)),
    ("diff of a version", lambda s: s.items.diff(ContentQuery(SOURCE, seq=60), None, None,
                                                 500)),
    ("diff of one type", lambda s: s.items.diff(ContentQuery(SOURCE, types=("Mapping",)),
                                                DiffKey("2026-01-01T00:00:20.000000Z", "Mapping",
                                                        "20"), None, 500)),
    ("end of a diff page", lambda s: s.items.diff_end(ContentQuery(SOURCE, types=("Concept",)),
                                                      None, 10)),
    ("diff count", lambda s: s.items.count(ContentQuery(SOURCE, updated_since="2026-01-01"))),
    ("head list", lambda s: s.items.page(HEAD_QUERY, 0, 50)),
    ("head count", lambda s: s.items.count(HEAD_QUERY)),
    ("version list", lambda s: s.items.page(VERSION_QUERY, 10, 50)),
    ("version content by id (exports)", lambda s: list(s.items.iter_content(VERSION_QUERY, 20))),
    ("newest item", lambda s: s.items.newest(ContentQuery(SOURCE, include_deleted=True))),
    ("item head", lambda s: s.items.head(f"{SOURCE}concepts/3/")),
    ("item at a version", lambda s: s.items.current(f"{SOURCE}concepts/3/", 10)),
    ("item history", lambda s: s.items.history(SOURCE, f"{SOURCE}concepts/3/", 0, 10)),
    ("mappings of a concept", lambda s: s.items.mappings_for_concept(
        SOURCE, 2**62 - 1, f"{SOURCE}concepts/3/", inverse=True)),
    ("jobs of a queue", lambda s: s.jobs.list("bulk_import", None, None, 0, 10, queues=["q"])),
    ("hooks of a repository", lambda s: s.webhooks.for_repository(SOURCE)),
    ("hooks switched off", lambda s: s.webhooks.disabled()),
    ("a hook's attempt", lambda s: s.webhooks.record_attempt("h", False, "2026-01-01", 3, "")),
    ("a hook's delivery log", lambda s: s.webhook_deliveries.page("h", 0, 10)),
    ("a hook's log pruned", lambda s: s.webhook_deliveries.prune("h", 100)),
    ("newest releases (server feed)", lambda s: s.versions.newest_released(0, 50)),
    ("item write", lambda s: s.items.write({
        "source": SOURCE, "type": "Concept", "id": "3", "url": f"{SOURCE}concepts/3/",
        "deleted": False, "retired": False, "updated_on": "2026-02-01T00:00:00.000000Z",
        "data": {"x": 1}}, s.items.head(f"{SOURCE}concepts/3/")["seq"])),
    ("head checksum", lambda s: s.items.head_checksum(SOURCE)),
    ("versions of a source", lambda s: s.versions.list(SOURCE, True, 0, 10)),
    ("sources of an owner", lambda s: s.sources.search("/orgs/O/", None, RepoFilters(), 0, 10)),
    # a private org hides its repositories: a lookup of the owner by key, in the list's query
    ("sources anyone may see", lambda s: s.sources.search(None, ANYONE, RepoFilters(), 0, 10)),
    ("collections a member may see", lambda s: s.sources.search(
        None, Visibility("ann", frozenset({"O"})), RepoFilters(repo_type="Collection"), 0, 10)),
    ("sources of an owner anyone may see", lambda s: s.sources.search(
        "/orgs/O/", ANYONE, RepoFilters(repo_type="Source"), 0, 10)),
    ("public sources of an owner", lambda s: s.sources.count_public("/orgs/O/")),
    ("org is public", lambda s: s.orgs.is_public("O")),
    ("job claim", lambda s: s.jobs.claim(["export"], "w", "2026-01-01T00:00:00.000000Z",
                                         "2026-01-01T00:01:00.000000Z")),
    ("job by key", lambda s: s.jobs.latest("export", "k")),
    ("jobs of an owner", lambda s: s.jobs.list("bulk_import", "ann", ["PENDING"], 0, 10)),
    ("queue depth", lambda s: s.jobs.active_counts()),
    ("export record by file", lambda s: s.exports.by_file(SOURCE, "a" * 64)),
    ("export records of a source", lambda s: s.exports.for_source(SOURCE)),
    ("import results page", lambda s: s.import_results.page("j", (3, 0), ["failed"], 100)),
    ("rate counter", lambda s: s.rate_counters.hit("k", __import__("datetime").datetime.now())),
    ("token", lambda s: s.users.token("h")),
    ("token of a user", lambda s: s.users.token_of("ann", "a1")),
    ("tokens of a user", lambda s: s.users.tokens_of("ann", False)),
    ("token use", lambda s: s.users.touch_token("h", "2026-01-01T00:01:00.000000Z",
                                                 "2026-01-01T00:00:00.000000Z")),
    ("admin tokens", lambda s: s.users.bootstrap_tokens()),
    ("orgs of a member", lambda s: s.orgs.for_member("ann")),
    # the console's reads
    ("concept list", lambda s: s.items.search(HEAD_QUERY, 50, 50, 1000)),
    ("concept list with retired", lambda s: s.items.search(
        ContentQuery(SOURCE, types=("Concept",)), 0, 50, 1000)),
    ("concept search", lambda s: s.items.search(matching(HEAD_QUERY, text="1"), 0, 50, 1000)),
    ("concept search, quoted", lambda s: s.items.search(matching(HEAD_QUERY, text='"'), 0, 50,
                                                        1000)),
    ("concepts of a class", lambda s: s.items.search(matching(HEAD_QUERY, concept_class="D"),
                                                     0, 50, 1000)),
    ("concepts of a datatype", lambda s: s.items.search(matching(VERSION_QUERY, datatype="N"),
                                                        0, 50, 1000)),
    ("concept search at a version", lambda s: s.items.search(matching(
        VERSION_QUERY, text="1", concept_class="D", datatype="N"), 0, 50, 1000)),
    ("changes since a release", lambda s: s.items.changes(SOURCE, 30)),
    ("changes between versions", lambda s: s.items.changes(SOURCE, 30, 60)),
    ("changed items of a delta", lambda s: list(s.items.iter_changed(SOURCE, 30, 60, "Concept",
                                                                     False, 10))),
    ("tombstones of a delta", lambda s: list(s.items.iter_changed(SOURCE, 30, 60, "Mapping",
                                                                  True, 10))),
    ("size of a delta", lambda s: s.items.count_changed(SOURCE, 30, 60)),
    ("mappings from a concept", lambda s: s.items.linked_mappings(f"{SOURCE}concepts/3/",
                                                                  "from")),
    ("mappings to a concept", lambda s: s.items.linked_mappings(f"{SOURCE}concepts/3/", "to",
                                                                SOURCE)),
    ("mappings to a concept at a version", lambda s: s.items.linked_mappings(
        f"{SOURCE}concepts/3/", "to", SOURCE, 60)),
    # collections
    ("collection diff page", lambda s: s.collection_entries.diff(ContentQuery(
        COLLECTION, include_deleted=True, updated_since="2026-01-02T00:00:10Z"), None, None,
        500)),
    ("next collection diff page", lambda s: s.collection_entries.diff(
        ContentQuery(COLLECTION, include_deleted=True),
        DiffKey("2026-01-02T00:00:20.000000Z", "Concept", f"{SOURCE}concepts/20/"), None, 500)),
    ("one type of a collection diff page", lambda s: s.collection_entries.diff(
        ContentQuery(COLLECTION, types=("Mapping",)),
        DiffKey("2026-01-02T00:00:20.000000Z", "Concept", f"{SOURCE}concepts/20/"),
        DiffKey("2026-01-02T00:00:30.000000Z", "Concept", f"{SOURCE}concepts/30/"), 500)),
    ("collection diff end", lambda s: s.collection_entries.diff_end(
        ContentQuery(COLLECTION, updated_since="2026-01-02T00:00:10Z"), None, 500)),
    ("collection diff of a version", lambda s: s.collection_entries.diff(
        ContentQuery(COLLECTION, seq=150), None, None, 500)),
    ("collection search", lambda s: s.collection_entries.search(matching(ContentQuery(
        COLLECTION, types=("Concept",), include_retired=False), text="1"), 0, 50, 1000)),
    ("collection search at a version", lambda s: s.collection_entries.search(matching(
        ContentQuery(COLLECTION, seq=150, types=("Concept",)), datatype="N"), 0, 50, 1000)),
    ("collection head list", lambda s: s.collection_entries.page(
        ContentQuery(COLLECTION, types=("Concept",), include_retired=False), 0, 50)),
    ("collection version list", lambda s: s.collection_entries.page(
        ContentQuery(COLLECTION, seq=150, types=("Concept",)), 10, 50)),
    ("collection content by url (exports)", lambda s: list(s.collection_entries.iter_content(
        ContentQuery(COLLECTION, seq=150, types=("Mapping",)), 20))),
    ("collection count at a version", lambda s: s.collection_entries.count(
        ContentQuery(COLLECTION, seq=150, updated_since="2026-01-02"))),
    ("collection newest entry", lambda s: s.collection_entries.newest(
        ContentQuery(COLLECTION, include_deleted=True))),
    ("collection item by id", lambda s: s.collection_entries.find(COLLECTION, 150, "Concept",
                                                                  "3")),
    ("collection mappings of a concept", lambda s: s.collection_entries.mappings_for_concept(
        COLLECTION, 2**62 - 1, f"{SOURCE}concepts/3/", inverse=True)),
    ("changed entries of a collection's delta", lambda s: list(
        s.collection_entries.iter_changed(COLLECTION, 100, 150, "Concept", False, 10))),
    ("size of a collection's delta", lambda s: s.collection_entries.count_changed(
        COLLECTION, 100, 150)),
    ("entry head", lambda s: s.collection_entries.head(COLLECTION, f"{SOURCE}concepts/3/")),
    ("entry write", lambda s: s.collection_entries.write(COLLECTION, [(
        {"url": f"{SOURCE}concepts/3/", "type": "Concept", "id": "3", "source": SOURCE,
         "item_seq": 7, "deleted": False, "retired": False, "follow": True,
         "updated_on": "2026-02-01T00:00:00.000000Z"},
        s.collection_entries.head(COLLECTION, f"{SOURCE}concepts/3/")["seq"])])),
    ("followers of an item", lambda s: s.collection_entries.followers(f"{SOURCE}concepts/3/")),
    ("collections holding a source", lambda s: s.collection_entries.holding(SOURCE)),
    ("collection head checksum", lambda s: s.collection_entries.head_checksum(COLLECTION)),
    ("references naming an item", lambda s: s.references.bringing(COLLECTION,
                                                                  f"{SOURCE}concepts/3/")),
    ("references by expression", lambda s: s.references.live(COLLECTION, [
        f"{SOURCE}concepts/3/", f"{SOURCE}concepts/4/"])),
    ("references of HEAD", lambda s: s.references.page(COLLECTION, 2**62 - 1, None, 10, 20)),
    ("references of a version", lambda s: s.references.page(COLLECTION, 150, "concepts", 0,
                                                            20)),
    ("references of a version (exports)", lambda s: list(s.references.iter_at(COLLECTION, 150,
                                                                               30))),
    ("collections of an owner", lambda s: s.sources.search(
        "/orgs/O/", None, RepoFilters(repo_type="Collection"), 0, 10)),
    ("console session", lambda s: s.console_sessions.get("k")),
    ("console sessions purge", lambda s: s.console_sessions.purge("2026-01-01")),
])
def test_hot_queries_use_an_index(store: SqliteStore, name: str, action: Any) -> None:
    assert_indexed(plans_of(store, lambda: action(store)))


def test_an_items_history_reads_only_its_own_versions(store: SqliteStore) -> None:
    """By url (items_url), never by the source's other items, whatever the planner estimates."""
    plans = plans_of(store, lambda: store.items.history(SOURCE, f"{SOURCE}concepts/3/", 0, 10))
    assert len(plans) == 2
    for _, details in plans:
        assert any("items_url (url=?)" in detail for detail in details), details


def test_one_type_of_a_diff_page_scans_only_the_page(store: SqliteStore) -> None:
    """A page's items of one type are read between the page's two ends, both in the index
    search: the scan stops where the page does, however many items of the other type follow."""
    after = DiffKey("2026-01-01T00:00:20.000000Z", "Concept", "20")
    until = DiffKey("2026-01-01T00:00:30.000000Z", "Concept", "30")
    plans = plans_of(store, lambda: store.items.diff(ContentQuery(SOURCE, types=("Mapping",)),
                                                     after, until, 500))
    [(_, [detail])] = plans
    assert "(updated_on,type,id)>(?,?,?) AND (updated_on,type,id)<(?,?,?)" in detail, detail
    entries_after = DiffKey(after.updated_on.replace("01T", "02T"), "Concept",
                            f"{SOURCE}concepts/20/")
    entries_until = DiffKey(until.updated_on.replace("01T", "02T"), "Concept",
                            f"{SOURCE}concepts/30/")
    plans = plans_of(store, lambda: store.collection_entries.diff(
        ContentQuery(COLLECTION, types=("Mapping",)), entries_after, entries_until, 500))
    assert "(updated_on,type,url)>(?,?,?) AND (updated_on,type,url)<(?,?,?)" in plans[0][1][0]
    ids = [item["id"] for item in store.items.diff(ContentQuery(SOURCE, types=("Mapping",)),
                                                   after, until, 500)]
    assert ids == [str(number) for number in range(20, 30)]


def test_schema_steps_run_once_and_a_newer_file_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "m.db"))
    store.ensure_schema()
    store.ensure_schema()  # nothing left to do
    assert store.database.one("PRAGMA user_version")[0] == len(STEPS)
    with pytest.raises(RuntimeError, match="newer than this termsync"):
        migrate(store.database, STEPS[:-1] if len(STEPS) > 1 else [])
    store.close()


def test_wal_and_the_configured_synchronous_level(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "d.db"), synchronous="FULL")
    store.ensure_schema()
    assert store.database.one("PRAGMA journal_mode")[0] == "wal"
    assert store.database.one("PRAGMA synchronous")[0] == 2  # FULL
    store.close()


def test_a_failed_transaction_leaves_nothing_and_a_nested_unit_is_a_savepoint(
        store: SqliteStore) -> None:
    database = store.database
    with pytest.raises(RuntimeError), database.transaction():
        store.users.insert({"_id": "ann"})
        raise RuntimeError("interrupted")
    assert store.users.get("ann") is None
    with database.transaction():
        store.users.insert({"_id": "bob"})
        with pytest.raises(RuntimeError), store.transaction():
            store.users.insert({"_id": "eve"})
            raise RuntimeError("inner")
    assert store.users.get("bob") is not None and store.users.get("eve") is None
    with database.transaction():  # a unit in a unit is part of it: one savepoint for both
        with pytest.raises(RuntimeError), store.transaction():
            store.users.insert({"_id": "kim"})
            with store.transaction():
                store.users.insert({"_id": "lee"})
                assert database.depth() == 2
                raise RuntimeError("innermost")
        assert database.depth() == 1
    assert store.users.get("kim") is None and store.users.get("lee") is None


def test_threads_have_their_own_connections_and_see_committed_writes(store: SqliteStore) -> None:
    seen: list[Any] = []
    store.users.insert({"_id": "ann"})

    def read() -> None:
        seen.append((store.database.connection(), store.users.get("ann")))

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen[0][0] is not store.database.connection() and seen[0][1]["_id"] == "ann"


def test_step_2_indexes_what_a_step_1_file_holds(tmp_path: Path) -> None:
    """A file written before the console's columns and indexes existed is searchable after the
    upgrade: the generated columns read the documents already there."""
    store = SqliteStore(str(tmp_path / "old.db"))
    migrate(store.database, STEPS[:1])
    with store.database.transaction() as connection:  # as step 1's code wrote it
        connection.execute("INSERT INTO sources (_id, doc, owner_url) VALUES (?, '{}', ?)",
                           (SOURCE, "/orgs/O/"))
    concept_url = f"{SOURCE}concepts/A/"
    for kind, item_id, data in (("Concept", "A", {"concept_class": "Drug", "datatype": "N/A"}),
                                ("Mapping", "1", {"from_concept_url": concept_url,
                                                  "to_concept_url": concept_url})):
        store.items.write({"source": SOURCE, "type": kind, "id": item_id,
                           "url": f"{SOURCE}{kind.lower()}s/{item_id}/", "deleted": False,
                           "retired": False, "updated_on": "2026-01-01T00:00:00.000000Z",
                           "data": data}, None)
    store.ensure_schema()
    assert store.database.one("PRAGMA user_version")[0] == len(STEPS)
    found, total = store.items.search(matching(ContentQuery(SOURCE, types=("Concept",)),
                                               concept_class="Drug", datatype="N/A"), 0, 10, 100)
    assert [item["id"] for item in found] == ["A"] and total == 1
    assert [m["id"] for m in store.items.linked_mappings(concept_url, "to")] == ["1"]
    assert store.items.changes(SOURCE, 0)["created"] == 2
    store.close()


def test_step_4_lists_by_one_index_of_ids(tmp_path: Path) -> None:
    """A step-3 file gets `items_id` in place of `items_head` and `items_at`; what it holds is
    listed at HEAD and at a version as before."""
    store = SqliteStore(str(tmp_path / "old.db"))
    migrate(store.database, STEPS[:3])
    store.sources.insert(repository(SOURCE, "O"))
    for number in range(5):
        store.items.write({"source": SOURCE, "type": "Concept", "id": str(number),
                           "url": f"{SOURCE}concepts/{number}/", "deleted": False,
                           "retired": number == 4, "updated_on": f"2026-01-0{number + 1}",
                           "data": {}}, None)
    store.ensure_schema()
    indexes = {row[0] for row in store.database.all(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'items'")}
    assert "items_id" in indexes and not {"items_head", "items_at"} & indexes
    live = ContentQuery(SOURCE, types=("Concept",), include_retired=False)
    assert [item["id"] for item in store.items.page(live, 1, 2)] == ["1", "2"]
    assert [item["id"] for item in store.items.page(ContentQuery(SOURCE, seq=3), 0, 0)] == \
        ["0", "1", "2"]
    store.close()


def test_step_3_makes_every_existing_repository_a_source(tmp_path: Path) -> None:
    """A file from before collections: its sources stay sources, listed and counted as such."""
    store = SqliteStore(str(tmp_path / "old.db"))
    migrate(store.database, STEPS[:2])
    with store.database.transaction() as connection:
        connection.execute("INSERT INTO sources (_id, doc, owner_url, public_access) "
                           "VALUES (?, ?, ?, 'View')", (SOURCE, json.dumps({
                               "url": SOURCE, "id": "S", "owner": "O",
                               "owner_type": "Organization", "created_on": "2026-01-01",
                               "updated_on": "2026-01-01"}), "/orgs/O/"))
    store.ensure_schema()
    assert store.sources.get(SOURCE).repo_type == "Source"
    found, total = store.sources.search("/orgs/O/", None, RepoFilters(repo_type="Source"), 0, 10)
    assert [source.url for source in found] == [SOURCE] and total == 1
    assert store.sources.count_public("/orgs/O/", "Collection") == 0
    store.close()


def test_step_7_gives_tokens_stored_before_an_id_and_a_lifecycle(tmp_path: Path) -> None:
    """Tokens of a step-6 file keep working, each with a random id of its own, nothing revoked,
    nothing expiring; step 6's `sources_visibility` index is there."""
    store = SqliteStore(str(tmp_path / "old.db"))
    migrate(store.database, STEPS[:6])
    with store.database.transaction() as connection:
        for number in range(3):
            connection.execute("INSERT INTO tokens (hash, username, created_on) VALUES (?, ?, ?)",
                               (f"h{number}", "ann", f"2026-01-0{number + 1}"))
    store.ensure_schema()
    tokens = store.users.tokens_of("ann", False)
    assert [token["_id"] for token in tokens] == ["h2", "h1", "h0"]
    assert len({token["id"] for token in tokens}) == 3 and all(len(t["id"]) == 16 for t in tokens)
    assert all(token["revoked_on"] is None and token["expires_on"] is None
               and token["bootstrap"] is False for token in tokens)
    assert store.users.token_of("ann", tokens[0]["id"])["_id"] == "h2"
    indexes = {row[0] for row in store.database.all(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"sources_visibility", "tokens_user", "tokens_bootstrap"} <= indexes
    store.close()
