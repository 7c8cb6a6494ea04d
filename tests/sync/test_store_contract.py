"""The local store's contract, run against every backend (SQLite, mongomock, MongoDB if configured),
plus what only the SQLite backend promises (its tables, indexes, migrations, connections)."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from typing import Any

import pytest

from sync.items import ItemRecord, content_checksum, item_record
from sync.state import DiffCursor, SyncState
from sync.store import StoreError, open_store
from sync.store.sqlite import SCHEMA_VERSION, SQLiteStore, parse_sqlite_uri

from .conftest import sqlite_uri

SOURCE = "/orgs/O/sources/S/"


def concept(code: str, updated: int, version: str | None = None, **fields: Any) -> ItemRecord:
    """Data factory: a concept record updated at second `updated`."""
    return item_record({"type": "Concept", "id": code, "url": f"{SOURCE}concepts/{code}/",
                        "concept_class": "Diagnosis", "datatype": "N/A", "retired": False,
                        "version": version or f"{code}.{updated}",
                        "updated_on": f"2026-01-01T00:00:{updated:02d}.000000Z", **fields})


def mapping(code: str, updated: int, source: str = "A", target: str = "B") -> ItemRecord:
    """Data factory: a mapping record between two concepts of SOURCE."""
    return item_record({"type": "Mapping", "id": code, "url": f"{SOURCE}mappings/{code}/",
                        "map_type": "SAME-AS", "retired": False, "version": f"m{code}.{updated}",
                        "from_concept_url": f"{SOURCE}concepts/{source}/",
                        "to_concept_url": f"{SOURCE}concepts/{target}/",
                        "updated_on": f"2026-01-01T00:00:{updated:02d}.000000Z"})


def tombstone(kind: str, code: str, updated: int) -> ItemRecord:
    """Data factory: a hard delete as termsync lists it."""
    return item_record({"type": kind, "url": f"{SOURCE}{kind.lower()}s/{code}/", "deleted": True,
                        "updated_on": f"2026-01-01T00:00:{updated:02d}.000000Z"})


def live(store: Any, name: str = "s") -> dict[str, str]:
    return dict(store.url_versions(name))


def test_state_round_trip(store):
    assert store.load_state("s") == SyncState()
    state = SyncState(source_url="http://h/orgs/O/sources/S/", mode="snapshot", version="HEAD",
                      last_updated="2026-01-01T00:00:00.000000Z", counts={"concepts": 2},
                      cursor=DiffCursor(next_url="http://h/x?page=2", target=SOURCE, pages=1))
    store.save_state("s", state)
    assert store.load_state("s") == state
    state.cursor = None
    state.last_error = "boom"
    store.save_state("s", state)
    assert store.load_state("s") == state
    assert store.load_state("other") == SyncState()


def test_legacy_state_keys_are_read():
    old = {"_id": "s", "lastUpdated": "2026-01-01T00:00:00.000000Z", "version": "v1",
           "cursor": {"next": "http://h/x", "target": SOURCE, "pages": 2, "applied": 9},
           "something_else": 1}
    state = SyncState.from_dict(old)
    assert state.last_updated == "2026-01-01T00:00:00.000000Z" and state.version == "v1"
    assert state.cursor == DiffCursor(next_url="http://h/x", target=SOURCE, pages=2, applied=9)


def test_newest_wins_and_tombstones_hold(store):
    assert store.apply_changes("s", [concept("A", 10), concept("B", 10), mapping("1", 10)]) == 3
    # an older copy (a replayed page, the overlap) changes nothing
    store.apply_changes("s", [concept("A", 5, version="old")])
    assert store.get_item("s", f"{SOURCE}concepts/A/").version == "A.10"
    # the same url twice in one page: the newer one wins, whatever the order
    store.apply_changes("s", [concept("B", 30), concept("B", 20)])
    assert store.get_item("s", f"{SOURCE}concepts/B/").version == "B.30"
    # a hard delete is kept as a tombstone that an older copy cannot undo
    store.apply_changes("s", [tombstone("Concept", "A", 40)])
    store.apply_changes("s", [concept("A", 15)])
    item = store.get_item("s", f"{SOURCE}concepts/A/")
    assert item.deleted and item.type == "Concept"
    assert store.counts("s") == {"concepts": 1, "mappings": 1}
    # ... but a newer one (the id created again) can
    store.apply_changes("s", [concept("A", 50)])
    assert not store.get_item("s", f"{SOURCE}concepts/A/").deleted
    # retired items are ordinary items
    store.apply_changes("s", [concept("C", 10, retired=True)])
    assert store.get_item("s", f"{SOURCE}concepts/C/").payload["retired"] is True
    assert store.counts("s") == {"concepts": 3, "mappings": 1}
    assert store.get_item("s", f"{SOURCE}concepts/nope/") is None


def test_checksum_over_both_kinds_in_url_order(store):
    records = [concept("Zeta", 1), mapping("10", 2), concept("Alpha", 3), mapping("2", 4),
               concept("Émile", 5), tombstone("Concept", "Gone", 6)]
    store.apply_changes("s", records)
    expected = sorted((r.url, r.version) for r in records if not r.deleted)
    assert list(store.url_versions("s")) == expected
    total = sum(int.from_bytes(hashlib.sha256(f"{u}\t{v}\n".encode()).digest(), "big")
                for u, v in expected)
    assert store.checksum("s") == format(total % 2**256, "064x") == content_checksum(expected)
    assert store.checksum("empty") == "0" * 64
    assert store.counts("empty") == {"concepts": 0, "mappings": 0}


def test_staging_is_invisible_until_swapped_in(store):
    store.apply_changes("s", [concept("Old", 1)])
    staging = store.begin_load("s")
    store.load_batch(staging, [concept("A", 1), concept("A", 2), mapping("1", 1)])
    store.load_batch(staging, [concept("B", 1)])
    assert staging.loaded >= 3
    assert set(live(store)) == {f"{SOURCE}concepts/Old/"}  # readers still see the old copy
    store.finish_load(staging)
    assert live(store) == {f"{SOURCE}concepts/A/": "A.2", f"{SOURCE}concepts/B/": "B.1",
                           f"{SOURCE}mappings/1/": "m1.1"}
    # a load abandoned half way leaves the live copy untouched; the next one starts clean
    before = live(store)
    staging = store.begin_load("s")
    store.load_batch(staging, [concept("X", 1)])
    store.abandon_load(staging)
    assert live(store) == before
    staging = store.begin_load("s")
    store.load_batch(staging, [concept("Y", 1)])
    store.finish_load(staging)
    assert set(live(store)) == {f"{SOURCE}concepts/Y/"}
    # incremental changes go on in the swapped-in copy
    store.apply_changes("s", [concept("Y", 9), tombstone("Concept", "Y", 10)])
    assert live(store) == {}


def test_subscriptions_are_kept_apart_and_clear(store):
    store.apply_changes("a", [concept("A", 1)])
    store.apply_changes("b", [concept("B", 1), mapping("1", 1)])
    assert store.counts("a") == {"concepts": 1, "mappings": 0}
    store.clear("b")
    assert store.counts("b") == {"concepts": 0, "mappings": 0}
    assert store.counts("a") == {"concepts": 1, "mappings": 0}


# --- SQLite only ------------------------------------------------------------------------------
@pytest.fixture
def sqlite_store(tmp_path):
    store = SQLiteStore(sqlite_uri(tmp_path))
    yield store
    store.close()


def test_sqlite_tables_are_queryable_by_consumers(sqlite_store):
    sqlite_store.apply_changes("ciel-mirror", [concept("A", 1), concept("B", 2, retired=True),
                                               mapping("1", 3, "A", "B"),
                                               tombstone("Concept", "C", 4)])
    assert sqlite_store.tables("ciel-mirror") == {"concepts": "concepts_ciel_mirror",
                                                  "mappings": "mappings_ciel_mirror"}
    with sqlite3.connect(sqlite_store.settings.path) as db:
        rows = db.execute("SELECT id, concept_class, datatype, retired, json_extract(json, "
                          "'$.names') FROM concepts_ciel_mirror WHERE deleted = 0 ORDER BY id"
                          ).fetchall()
        assert rows == [("A", "Diagnosis", "N/A", 0, None), ("B", "Diagnosis", "N/A", 1, None)]
        assert db.execute("SELECT from_concept_url, to_concept_url, map_type FROM "
                          "mappings_ciel_mirror").fetchall() == [
            (f"{SOURCE}concepts/A/", f"{SOURCE}concepts/B/", "SAME-AS")]
        assert db.execute("SELECT journal_mode FROM pragma_journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()


def test_sqlite_hot_queries_use_indexes(sqlite_store):
    sqlite_store.apply_changes("s", [concept("A", 1), mapping("1", 2)])
    staging = sqlite_store.begin_load("s")
    sqlite_store.load_batch(staging, [concept("A", 1), mapping("1", 2)])
    sqlite_store.finish_load(staging)  # indexes are rebuilt on the swapped-in tables
    plans = {
        "checksum": sqlite_store.query_plan(
            "SELECT url, version FROM concepts_s WHERE deleted = 0 ORDER BY url"),
        "count": sqlite_store.query_plan("SELECT count(*) FROM mappings_s WHERE deleted = 0"),
        "by url": sqlite_store.query_plan("SELECT json FROM concepts_s WHERE url = ?", "x"),
        "from": sqlite_store.query_plan(
            "SELECT json FROM mappings_s WHERE from_concept_url = ?", "x"),
        "to": sqlite_store.query_plan("SELECT json FROM mappings_s WHERE to_concept_url = ?", "x"),
        "class": sqlite_store.query_plan(
            "SELECT json FROM concepts_s WHERE concept_class = ?", "x"),
    }
    assert "COVERING INDEX concepts_s_live" in plans["checksum"][0]
    assert "TEMP B-TREE" not in " ".join(plans["checksum"])  # streamed in index order
    assert "COVERING INDEX mappings_s_live" in plans["count"][0]
    assert "sqlite_autoindex_concepts_s_1" in plans["by url"][0]
    assert "mappings_s_by_from_concept_url" in plans["from"][0]
    assert "mappings_s_by_to_concept_url" in plans["to"][0]
    assert "concepts_s_by_concept_class" in plans["class"][0]


def test_sqlite_readers_see_the_old_copy_or_the_new_one(sqlite_store):
    sqlite_store.apply_changes("s", [concept("Old", 1)])
    staging = sqlite_store.begin_load("s")
    sqlite_store.load_batch(staging, [concept("A", 1), concept("B", 1)])
    reader = sqlite3.connect(sqlite_store.settings.path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM concepts_s").fetchone() == (1,)
    sqlite_store.finish_load(staging)
    assert reader.execute("SELECT count(*) FROM concepts_s").fetchone() == (1,)  # its snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM concepts_s").fetchone() == (2,)
    reader.close()


def test_sqlite_connection_per_thread_and_shared_by_processes(sqlite_store, tmp_path):
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for n in range(20):
                sqlite_store.apply_changes(name, [concept(f"C{n}", n)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"t{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(sqlite_store._connections) == 5  # the 4 threads' and the main thread's
    other = open_store(sqlite_store.uri)  # another process would open it the same way
    assert [other.counts(f"t{k}")["concepts"] for k in range(4)] == [20, 20, 20, 20]
    other.close()


def test_sqlite_migrations_and_guards(tmp_path):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this termsync-sync knows"):
        SQLiteStore(f"sqlite:///{path}")
    store = SQLiteStore(sqlite_uri(tmp_path, "fresh.db"))
    store.apply_changes("a.b", [concept("A", 1)])
    with pytest.raises(StoreError, match="would share the tables"):
        store.apply_changes("a-b", [concept("A", 1)])
    store.close()
    reopened = SQLiteStore(sqlite_uri(tmp_path, "fresh.db"))  # an up-to-date schema: no step runs
    assert reopened.counts("a.b") == {"concepts": 1, "mappings": 0}
    reopened.close()


def test_sqlite_uri_settings():
    relative = parse_sqlite_uri("sqlite:///var/mirror.db")
    assert (str(relative.path), relative.synchronous, relative.busy_timeout) == (
        "var/mirror.db", "NORMAL", 30.0)
    absolute = parse_sqlite_uri("sqlite:////srv/m.db?synchronous=full&busy_timeout=5")
    assert (str(absolute.path), absolute.synchronous, absolute.busy_timeout) == (
        "/srv/m.db", "FULL", 5.0)
    for bad in ("sqlite://m.db", "sqlite:///", "sqlite:///:memory:", "sqlite:///m.db?x=1",
                "sqlite:///m.db?busy_timeout=soon"):
        with pytest.raises(ValueError):
            parse_sqlite_uri(bad)


def test_sqlite_synchronous_setting_is_applied(tmp_path):
    store = SQLiteStore(sqlite_uri(tmp_path) + "?synchronous=FULL")
    assert store._connection().execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    store.close()
    store = SQLiteStore(sqlite_uri(tmp_path))
    assert store._connection().execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    store.close()


def test_sqlite_errors_name_the_database(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match=r"local database \(sqlite:///.*file/m.db\)"):
        SQLiteStore(f"sqlite:///{blocker}/m.db")


def test_changes_are_all_or_nothing(store_factory):
    store = store_factory()
    store.apply_changes("s", [concept("A", 10), concept("B", 10), mapping("1", 10)])
    before = {url: store.get_item("s", url) for url in live(store)}
    changes = [concept("A", 5, version="older"),  # replaced whatever it is: a verified delta
               tombstone("Concept", "B", 11), concept("C", 11), mapping("2", 11)]
    # abandoned: as it was
    changeset = store.begin_changes("s")
    assert store.write_changes(changeset, changes[:2]) == 2
    store.write_changes(changeset, changes[2:])
    assert store.changes_checksum(changeset) == content_checksum(
        [(f"{SOURCE}concepts/A/", "older"), (f"{SOURCE}concepts/C/", "C.11"),
         (f"{SOURCE}mappings/1/", "m1.10"), (f"{SOURCE}mappings/2/", "m2.11")])
    store.abandon_changes(changeset)
    assert {url: store.get_item("s", url) for url in live(store)} == before
    assert store.get_item("s", f"{SOURCE}concepts/C/") is None
    # committed: the changes and the state that records them, together
    changeset = store.begin_changes("s")
    store.write_changes(changeset, changes)
    store.commit_changes(changeset, SyncState(version="v2", last_updated="x"))
    assert store.get_item("s", f"{SOURCE}concepts/A/").version == "older"
    assert store.get_item("s", f"{SOURCE}concepts/B/").deleted
    state = store.load_state("s")
    assert state.version == "v2" and state.last_changeset == changeset.id
    assert store.recover("s") is False  # nothing left to roll back


def test_changes_a_crash_interrupted_are_rolled_back(store_factory, backend):
    store = store_factory()
    store.apply_changes("s", [concept("A", 10), concept("B", 10)])
    store.save_state("s", SyncState(version="v1"))
    before = live(store)
    changeset = store.begin_changes("s")
    store.write_changes(changeset, [concept("A", 11), tombstone("Concept", "B", 11),
                                    concept("C", 11)])
    # the process dies here: no commit, no abandon; another process opens the database
    if backend == "sqlite":
        store.close()  # what a dead process's connection amounts to: its transaction is gone
    reopened = store_factory()
    reopened.recover("s")
    assert live(reopened) == before and reopened.load_state("s").version == "v1"
    assert reopened.get_item("s", f"{SOURCE}concepts/C/") is None
    # a crash after the state was committed (only the journal's removal was lost) keeps it
    changeset = reopened.begin_changes("s")
    reopened.write_changes(changeset, [concept("C", 12)])
    state = SyncState(version="v2", last_changeset=changeset.id)
    if backend == "sqlite":
        reopened.commit_changes(changeset, state)
    else:
        reopened.save_state("s", state)  # the commit point, and then the crash
    again = store_factory()
    again.recover("s")
    assert again.get_item("s", f"{SOURCE}concepts/C/").version == "C.12"
    assert again.load_state("s").version == "v2"
