"""The SQLite backend of the local store (the default): queryable tables, WAL, numbered migrations.

`sqlite:///mirror.db` is a path relative to the working directory, `sqlite:////var/lib/mirror.db`
an absolute one (as SQLAlchemy reads them). Query parameters: `synchronous` (`NORMAL`, the
default: durable across a crash of any process; `FULL`: also across a power loss; `OFF`/`EXTRA`)
and `busy_timeout` (seconds a writer waits for another one, default 30).

Per subscription (its name lower-cased, other characters than letters, digits and `_` as `_`):
`concepts_<name>` and `mappings_<name>` hold every item the server sent, one row per `url`, with
key columns to query and the server's payload in `json`; deleted items stay as tombstones
(`deleted = 1`) so that an older copy arriving late cannot bring them back. The table
`subscriptions` holds each subscription's state (JSON). Each thread has its own connection;
every write is one explicit transaction; a first sync loads into `<table>__loading` and renames it
over the live table in one transaction, so readers see the old copy or the new one; a delta
package is written in one transaction held open until it is verified and committed with the state.
"""

from __future__ import annotations

import heapq
import json
import logging
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ..items import ItemRecord, as_bool, content_checksum
from ..state import SyncState
from . import Changeset, LocalStore, Staging, StoredItem, StoreError

logger = logging.getLogger(__name__)

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
DEFAULT_BUSY_TIMEOUT = 30.0
JOURNAL_SIZE_LIMIT = 64 << 20  # bytes the WAL file is truncated to after a checkpoint
# pages written to the WAL before it is copied into the database: fewer, larger checkpoints (and
# their fsyncs) make a first sync's bulk load ~25% faster; the WAL stays near 64 MiB
WAL_AUTOCHECKPOINT_PAGES = 16384
_COMMON_HEAD = ("url",)
_COMMON_TAIL = ("retired", "deleted", "version", "updated_on", "json")


@dataclass(frozen=True)
class ItemTable:
    """The schema of one item table: its key columns and indexes (live index aside)."""

    kind: str  # "concepts" or "mappings"
    type: str  # the OCL type its rows have
    keys: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column in insert order."""
        return (*_COMMON_HEAD, *self.keys, *_COMMON_TAIL)

    def create_sql(self, table: str) -> str:
        """CREATE TABLE for this schema under the name `table`."""
        keys = "".join(f"    {key} TEXT,\n" for key in self.keys)
        return (f'CREATE TABLE "{table}" (\n'
                "    url TEXT NOT NULL UNIQUE,\n"
                f"{keys}"
                "    retired INTEGER NOT NULL DEFAULT 0,\n"
                "    deleted INTEGER NOT NULL DEFAULT 0,\n"
                "    version TEXT NOT NULL,\n"
                "    updated_on TEXT NOT NULL,\n"
                "    json TEXT NOT NULL\n"
                ")")

    def index_sql(self, table: str) -> list[str]:
        """CREATE INDEX statements of the live table `table`."""
        statements = [f'CREATE INDEX "{table}_by_{"_".join(cols)}" ON "{table}" ({", ".join(cols)})'
                      for cols in self.indexes]
        # checksums.content and counts read live items from this index alone (`deleted` is in
        # it only so that the planner sees the index covers the query's WHERE)
        statements.append(f'CREATE INDEX "{table}_live" ON "{table}" (url, version, deleted) '
                          "WHERE deleted = 0")
        return statements

    def upsert_sql(self, table: str, newest_wins: bool = True) -> str:
        """Insert a row, or replace it unless the stored copy is newer (newest wins); without
        `newest_wins`, replace it whatever it is (a verified delta)."""
        columns = self.columns
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "url")
        return (f'INSERT INTO "{table}" ({", ".join(columns)}) '
                f"VALUES ({', '.join('?' for _ in columns)}) "
                f"ON CONFLICT (url) DO UPDATE SET {updates}"
                + (f' WHERE excluded.updated_on >= "{table}".updated_on' if newest_wins else ""))

    def row(self, record: ItemRecord) -> list[Any]:
        """The column values of a record, in `columns` order (the hot path of a first sync)."""
        payload = record.payload
        get = payload.get
        row: list[Any] = [record.url]
        for key in self.keys:
            value = get(key)
            row.append(value if value is None or type(value) is str else str(value))
        retired = get("retired", False)
        row += (int(retired if type(retired) is bool else as_bool(retired)), int(record.deleted),
                record.version, record.updated_on, _json(payload))
        return row


CONCEPTS = ItemTable("concepts", "Concept",
                     keys=("id", "source", "owner", "concept_class", "datatype", "external_id"),
                     indexes=(("id",), ("concept_class",)))
MAPPINGS = ItemTable("mappings", "Mapping",
                     keys=("id", "source", "owner", "map_type", "from_concept_url",
                           "to_concept_url", "to_source_url", "to_concept_code", "external_id"),
                     indexes=(("from_concept_url",), ("to_concept_url",)))
ITEM_TABLES = (CONCEPTS, MAPPINGS)
_BY_TYPE = {table.type: table for table in ITEM_TABLES}


def _json(payload: dict[str, Any]) -> str:
    """The payload as JSON text (orjson; the standard library for integers beyond 64 bits)."""
    try:
        return orjson.dumps(payload).decode()
    except TypeError:
        return json.dumps(payload, separators=(",", ":"))


# --- schema versions -------------------------------------------------------------------------
def _v1(db: sqlite3.Connection) -> None:
    """Subscriptions and their state; item tables are created per subscription."""
    db.execute("CREATE TABLE subscriptions (\n"
               "    name TEXT PRIMARY KEY,\n"
               "    table_key TEXT NOT NULL UNIQUE,\n"
               "    state TEXT NOT NULL DEFAULT '{}'\n"
               ")")


# MIGRATIONS[n] upgrades a database at schema version n to n + 1 (PRAGMA user_version). A step
# that changes item tables must change those of every row in `subscriptions`.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1,)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class SQLiteSettings:
    """What a `sqlite:///` URI says."""

    path: Path
    synchronous: str = "NORMAL"
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT


def parse_sqlite_uri(uri: str) -> SQLiteSettings:
    """Settings from `sqlite:///relative.db` or `sqlite:////absolute.db` (+ `?synchronous=FULL`)."""
    if not uri.startswith("sqlite:///"):
        raise ValueError(f"{uri!r}: a SQLite URI is sqlite:///relative/path.db or "
                         "sqlite:////absolute/path.db")
    path, _, query = uri[len("sqlite:///"):].partition("?")
    if not path or path == ":memory:":
        raise ValueError(f"{uri!r} needs a file path (the mirror must outlive the process)")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - {"synchronous", "busy_timeout"})
    if unknown:
        raise ValueError(f"{uri!r}: unknown option(s) {', '.join(unknown)}; known: synchronous, "
                         "busy_timeout")
    synchronous = options.get("synchronous", "NORMAL").upper()
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"{uri!r}: synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}")
    try:
        busy_timeout = float(options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT))
    except ValueError:
        raise ValueError(f"{uri!r}: busy_timeout must be a number of seconds") from None
    if busy_timeout < 0:
        raise ValueError(f"{uri!r}: busy_timeout must not be negative")
    return SQLiteSettings(Path(path), synchronous, busy_timeout)


def table_key(name: str) -> str:
    """The suffix of a subscription's table names."""
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


class SQLiteStore(LocalStore):
    """The local store in one SQLite file, shared by any number of subscriptions and processes."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.settings = parse_sqlite_uri(uri)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._keys: dict[str, str] = {}
        with self._errors():
            self.settings.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # --- connections and transactions ------------------------------------------------------
    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn a database error into a StoreError that names the database."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"local database ({self.uri}): {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            with self._errors():
                db = sqlite3.connect(self.settings.path, timeout=self.settings.busy_timeout,
                                     isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode = WAL")
                db.execute(f"PRAGMA synchronous = {self.settings.synchronous}")
                db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
                db.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock is taken up front)."""
        db = self._connection()
        with self._errors():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        db = self._connection()
        with self._errors():
            db.execute("BEGIN")
            try:
                yield db
            finally:
                if db.in_transaction:
                    db.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            try:
                db.close()
            except sqlite3.Error as exc:  # closing is best effort
                logger.warning("closing %s: %s", self.uri, exc)
        self._local = threading.local()

    def _migrate(self) -> None:
        """Bring the schema up to SCHEMA_VERSION, one numbered step at a time."""
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"local database ({self.uri}) has schema version {version}, newer "
                                 f"than this termsync-sync knows ({SCHEMA_VERSION}); upgrade it")
            for step in range(version, SCHEMA_VERSION):
                logger.info("%s: schema upgrade %d -> %d", self.uri, step, step + 1)
                MIGRATIONS[step](db)
                db.execute(f"PRAGMA user_version = {step + 1}")

    # --- subscriptions and their tables ----------------------------------------------------
    def _key(self, name: str, create: bool) -> str | None:
        """The table key of a subscription; registered (tables created) when `create`."""
        if name in self._keys:
            return self._keys[name]
        with self._snapshot() as db:
            row = db.execute("SELECT table_key FROM subscriptions WHERE name = ?", (name,)).fetchone()
        if row is None and not create:
            return None
        if row is None:
            key = table_key(name)
            with self._transaction() as db:
                taken = db.execute("SELECT name FROM subscriptions WHERE table_key = ? "
                                   "AND name != ?", (key, name)).fetchone()
                if taken:
                    raise StoreError(f"local database ({self.uri}): subscriptions {taken[0]!r} "
                                     f"and {name!r} would share the tables *_{key}; rename one")
                db.execute("INSERT OR IGNORE INTO subscriptions (name, table_key) VALUES (?, ?)",
                           (name, key))
                for schema in ITEM_TABLES:
                    table = f"{schema.kind}_{key}"
                    if not _table_exists(db, table):
                        db.execute(schema.create_sql(table))
                        for statement in schema.index_sql(table):
                            db.execute(statement)
            row = (key,)
        found: str = row[0]
        self._keys[name] = found
        return found

    def tables(self, name: str) -> dict[str, str]:
        """The item table names of a subscription ({"concepts": ..., "mappings": ...})."""
        key = self._key(name, create=True)
        return {schema.kind: f"{schema.kind}_{key}" for schema in ITEM_TABLES}

    # --- state -----------------------------------------------------------------------------
    def load_state(self, name: str) -> SyncState:
        """The saved state of a subscription (empty before its first sync)."""
        with self._snapshot() as db:
            row = db.execute("SELECT state FROM subscriptions WHERE name = ?", (name,)).fetchone()
        return SyncState.from_dict(orjson.loads(row[0]) if row else None)

    def save_state(self, name: str, state: SyncState) -> None:
        """Save the whole state in one transaction."""
        self._key(name, create=True)
        with self._transaction() as db:
            db.execute("UPDATE subscriptions SET state = ? WHERE name = ?",
                       (orjson.dumps(state.to_dict()).decode(), name))

    # --- full load -------------------------------------------------------------------------
    def begin_load(self, name: str) -> Staging:
        """Fresh `<table>__loading` tables (url index only: the others are built at the swap)."""
        tables = self.tables(name)
        with self._transaction() as db:
            for schema in ITEM_TABLES:
                loading = f"{tables[schema.kind]}__loading"
                db.execute(f'DROP TABLE IF EXISTS "{loading}"')
                db.execute(schema.create_sql(loading))
        return Staging(name, {kind: f"{table}__loading" for kind, table in tables.items()})

    def load_batch(self, staging: Staging, records: Iterable[ItemRecord]) -> int:
        """Write a batch into the loading tables in one transaction."""
        written = self._upsert(staging.handle, records)
        staging.loaded += written
        return written

    def finish_load(self, staging: Staging) -> None:
        """Drop the live tables, rename the loading ones over them, index them: one transaction."""
        tables = self.tables(staging.name)
        with self._transaction() as db:
            for schema in ITEM_TABLES:
                live = tables[schema.kind]
                db.execute(f'DROP TABLE IF EXISTS "{live}"')
                db.execute(f'ALTER TABLE "{staging.handle[schema.kind]}" RENAME TO "{live}"')
                for statement in schema.index_sql(live):
                    db.execute(statement)

    def abandon_load(self, staging: Staging) -> None:
        """Drop the loading tables."""
        with self._transaction() as db:
            for table in staging.handle.values():
                db.execute(f'DROP TABLE IF EXISTS "{table}"')

    def staged_checksum(self, staging: Staging) -> str:
        """checksums.content of the loading tables (their url index gives the order)."""
        with self._snapshot() as db:
            return content_checksum(_live_pairs(db, staging.handle.values()))

    # --- incremental changes ---------------------------------------------------------------
    def apply_changes(self, name: str, records: Iterable[ItemRecord]) -> int:
        """Upsert unless the stored copy is newer: the condition is part of the statement."""
        return self._upsert(self.tables(name), records)

    def _upsert(self, tables: dict[str, str], records: Iterable[ItemRecord]) -> int:
        """executemany per table inside one transaction; the number of rows written."""
        rows = _rows_by_kind(records)
        if not any(rows.values()):
            return 0
        with self._transaction() as db:
            return _write_rows(db, tables, rows, newest_wins=True)

    # --- all or nothing --------------------------------------------------------------------
    def begin_changes(self, name: str) -> Changeset:
        """Open the write transaction the changes stay in until commit (BEGIN IMMEDIATE: no
        other writer comes between)."""
        tables = self.tables(name)
        db = self._connection()
        with self._errors():
            db.execute("BEGIN IMMEDIATE")
        return Changeset(name, uuid.uuid4().hex, (db, tables))

    def write_changes(self, changeset: Changeset, records: Iterable[ItemRecord]) -> int:
        """Replace by url inside the open transaction."""
        db, tables = changeset.handle
        with self._errors():
            written = _write_rows(db, tables, _rows_by_kind(records), newest_wins=False)
        changeset.written += written
        return written

    def changed_versions(self, changeset: Changeset, urls: list[str]) -> dict[str, str]:
        """Read inside the transaction: the copy with the changes."""
        db, tables = changeset.handle
        with self._errors():
            return _versions_of(db, tables.values(), urls)

    def commit_changes(self, changeset: Changeset, state: SyncState) -> None:
        """The state in the same transaction, then COMMIT."""
        db, _ = changeset.handle
        state.last_changeset = changeset.id
        with self._errors():
            db.execute("UPDATE subscriptions SET state = ? WHERE name = ?",
                       (orjson.dumps(state.to_dict()).decode(), changeset.name))
            db.execute("COMMIT")

    def abandon_changes(self, changeset: Changeset) -> None:
        """ROLLBACK: nothing of the changes was ever visible."""
        db, _ = changeset.handle
        with self._errors():
            if db.in_transaction:
                db.execute("ROLLBACK")

    def clear(self, name: str) -> None:
        """Delete every item row of a subscription."""
        tables = self.tables(name)
        with self._transaction() as db:
            for table in tables.values():
                db.execute(f'DELETE FROM "{table}"')

    # --- reading ---------------------------------------------------------------------------
    def _existing_tables(self, name: str) -> dict[str, str] | None:
        """The item tables of a registered subscription; None for an unknown one (no writes)."""
        key = self._key(name, create=False)
        if key is None:
            return None
        return {schema.kind: f"{schema.kind}_{key}" for schema in ITEM_TABLES}

    def counts(self, name: str) -> dict[str, int]:
        """Live concepts and mappings, counted on the live index."""
        tables = self._existing_tables(name)
        if tables is None:
            return {"concepts": 0, "mappings": 0}
        with self._snapshot() as db:
            return {kind: db.execute(f'SELECT count(*) FROM "{table}" WHERE deleted = 0')
                    .fetchone()[0] for kind, table in tables.items()}

    def url_versions(self, name: str) -> Iterator[tuple[str, str]]:
        """(url, version) of live items in url order: both live indexes merged, in one snapshot."""
        tables = self._existing_tables(name)
        if tables is None:
            return
        with self._snapshot() as db:
            yield from _live_pairs(db, tables.values())

    def live_versions(self, name: str, urls: list[str]) -> dict[str, str]:
        """The live rows among `urls`, by the url index, in one snapshot."""
        tables = self._existing_tables(name)
        if tables is None or not urls:
            return {}
        with self._snapshot() as db:
            return _versions_of(db, tables.values(), urls)

    def get_item(self, name: str, url: str) -> StoredItem | None:
        """One stored item or tombstone by url."""
        tables = self._existing_tables(name)
        if tables is None:
            return None
        with self._snapshot() as db:
            for schema in ITEM_TABLES:
                row = db.execute(f'SELECT version, updated_on, deleted, json FROM '
                                 f'"{tables[schema.kind]}" WHERE url = ?', (url,)).fetchone()
                if row:
                    return StoredItem(url=url, type=schema.type, version=row[0],
                                      updated_on=row[1], deleted=bool(row[2]),
                                      payload=orjson.loads(row[3]))
        return None

    def query_plan(self, sql: str, *params: Any) -> list[str]:
        """EXPLAIN QUERY PLAN of a query (the details column), for tests and operators."""
        with self._snapshot() as db:
            return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


def _rows_by_kind(records: Iterable[ItemRecord]) -> dict[str, list[list[Any]]]:
    """The column values of records, per item table."""
    rows: dict[str, list[list[Any]]] = {schema.kind: [] for schema in ITEM_TABLES}
    for record in records:
        schema = _BY_TYPE[record.type]
        rows[schema.kind].append(schema.row(record))
    return rows


def _write_rows(db: sqlite3.Connection, tables: dict[str, str], rows: dict[str, list[list[Any]]],
                newest_wins: bool) -> int:
    """executemany per table (inside the caller's transaction); the number of rows written."""
    written = 0
    for schema in ITEM_TABLES:
        if rows[schema.kind]:
            cursor = db.executemany(schema.upsert_sql(tables[schema.kind], newest_wins),
                                    rows[schema.kind])
            written += max(cursor.rowcount, 0)
    return written


def _versions_of(db: sqlite3.Connection, tables: Iterable[str], urls: list[str]) -> dict[str, str]:
    """The live rows among `urls` in item tables, by the url index: {url: version}."""
    found: dict[str, str] = {}
    for start in range(0, len(urls), 500):
        chunk = urls[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        for table in tables:
            found.update(db.execute(f'SELECT url, version FROM "{table}" WHERE url IN ({marks}) '
                                    "AND deleted = 0", chunk))
    return found


def _live_pairs(db: sqlite3.Connection, tables: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(url, version) of the live rows of item tables, merged in url order."""
    streams = [db.execute(f'SELECT url, version FROM "{table}" WHERE deleted = 0 ORDER BY url')
               for table in tables]
    # SQLite compares TEXT as UTF-8 bytes, which is code point order, as Python's str
    return heapq.merge(*streams)


def _table_exists(db: sqlite3.Connection, table: str) -> bool:
    """Whether a table of that name exists."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (table,)).fetchone() is not None
