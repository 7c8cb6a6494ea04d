"""The SQLite database: a connection per thread, WAL, explicit transactions, numbered migrations.

Several processes on one machine share the file (gunicorn workers, `termsync worker`): SQLite's
own locking orders their writes, `busy_timeout` makes a writer wait for another instead of failing,
and every write runs in `BEGIN IMMEDIATE` so that a read-then-write never deadlocks on upgrade.
With WAL and `synchronous=NORMAL` a committed write survives a crash of any process; FULL also
survives a power loss (docs/performance.md has the cost).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from ...faults import FAULT_ERRNOS
from ...model import Document
from ..base import DuplicateKey, keyset_batches, offset

logger = logging.getLogger(__name__)

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


WAL_AUTOCHECKPOINT_PAGES = 16384  # pages (64 MiB) written to the WAL before a checkpoint
JOURNAL_SIZE_LIMIT = 64 << 20  # bytes the WAL is truncated to after one


class SqliteDatabase:
    """One database file; each thread gets its own connection (sqlite3 objects are not shared)."""

    def __init__(self, path: str, synchronous: str = "NORMAL", busy_timeout: float = 30.0) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = int(busy_timeout * 1000)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                         timeout=self.busy_timeout_ms / 1000)
            connection.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {self.synchronous}")
            connection.execute("PRAGMA cache_size = -32000")  # 32 MB of pages per connection
            connection.execute("PRAGMA temp_store = MEMORY")
            # Fewer, larger checkpoints: a page that bulk writes change again and again is
            # copied into the database once per 64 MiB of WAL, not once per 4 MiB.
            connection.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            connection.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            self._local.connection = connection
            self._local.depth = 0
            with self._guard:
                self._connections.append(connection)
        return connection

    @contextmanager
    def transaction(self, savepoint: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE). Inside another one it joins it, or with
        `savepoint` becomes a savepoint that an exception rolls back alone. Inside a savepoint
        it joins that one: an exception that leaves the inner unit leaves the outer one too
        (nobody catches it in between), so one savepoint rolls back both, at half the cost."""
        connection = self.connection()
        depth = self._local.depth
        if depth and (not savepoint or depth > 1):
            yield connection
            return
        if depth == 0:
            connection.execute("BEGIN IMMEDIATE")
        else:
            connection.execute(f"SAVEPOINT s{depth}")
        self._local.depth = depth + 1
        try:
            yield connection
        except BaseException:
            self._local.depth = depth
            if depth == 0:
                connection.execute("ROLLBACK")
            else:
                connection.execute(f"ROLLBACK TO s{depth}")
                connection.execute(f"RELEASE s{depth}")
            raise
        self._local.depth = depth
        if depth == 0:
            connection.execute("COMMIT")
        else:
            connection.execute(f"RELEASE s{depth}")

    def depth(self) -> int:
        """How many transactions and savepoints this thread has open."""
        return int(getattr(self._local, "depth", 0))

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        return self.connection().execute(sql, tuple(params))

    def one(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.connection().execute(sql, tuple(params)).fetchone()
        return row

    def all(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection().execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        """Close every connection this object opened (in any thread)."""
        with self._guard:
            connections, self._connections = self._connections, []
        for connection in connections:
            try:
                connection.close()
            except sqlite3.ProgrammingError:
                pass
        self._local = threading.local()


def diagnose(path: str) -> tuple[str, str, str] | None:
    """Why the database file at `path` cannot be opened or written, read from the filesystem:
    (errno name, the reason in a client's words, the reason with paths and user for the
    operator); None if nothing there explains it."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        return ("ENOENT", "its directory does not exist",
                f"its directory {directory} does not exist and cannot be created")
    if os.path.isdir(path):
        return "EISDIR", "it is a directory", "it is a directory"
    user = _user()
    try:
        filesystem = os.statvfs(directory)
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, "OSError")
        return code, str(exc.strerror).lower(), f"{directory}: {exc.strerror}"
    if filesystem.f_flag & os.ST_RDONLY:
        return ("EROFS", FAULT_ERRNOS[errno.EROFS],
                f"it is on a read-only file system ({directory})")
    for name in (path, path + "-wal", path + "-shm"):
        if os.path.exists(name) and not os.access(name, os.R_OK | os.W_OK):
            return ("EACCES", FAULT_ERRNOS[errno.EACCES],
                    f"{name} may not be read and written by user {user}")
    if not os.access(directory, os.W_OK | os.X_OK):
        return ("EACCES", FAULT_ERRNOS[errno.EACCES],
                f"user {user} may not create files in {directory} (SQLite keeps its -wal and "
                "-shm files beside the database)")
    if filesystem.f_bavail == 0:
        return ("ENOSPC", FAULT_ERRNOS[errno.ENOSPC],
                f"its file system is full ({directory})")
    return None


def _user() -> str:
    """The name of the user this process runs as (its uid if it has none)."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


# --- schema ---------------------------------------------------------------------------------
Migration = Callable[[sqlite3.Connection], None]


def migrate(database: SqliteDatabase, steps: list[Migration]) -> int:
    """Apply the numbered steps the file has not had yet (PRAGMA user_version); return the version.

    Each step runs in the same transaction as the version bump, so a crash leaves a file at one
    version or the next, never half way. Several processes starting together serialise on the
    write lock; the later ones find nothing left to do.
    """
    with database.transaction() as connection:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > len(steps):
            raise RuntimeError(f"{database.path} has schema version {version}, newer than this "
                               f"termsync ({len(steps)}): upgrade termsync")
        for number in range(version, len(steps)):
            steps[number](connection)
            connection.execute(f"PRAGMA user_version = {number + 1}")
        # Written even when nothing changed: a file that cannot be written stops startup here,
        # not at the first request that writes.
        connection.execute(f"PRAGMA user_version = {len(steps)}")
        if version < len(steps):
            logger.info("database %s: schema %s", database.path,
                        f"steps {version + 1} to {len(steps)}" if version + 1 < len(steps)
                        else f"step {len(steps)}")
    return len(steps)


# --- documents as JSON beside indexed key columns ---------------------------------------------
def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


loads = orjson.loads


class DocTable:
    """A table of documents: `_id` primary key, the document as JSON in `doc`, and key columns.

    Key columns hold copies of top-level fields (for indexes and WHERE clauses); they are written
    from the document on insert and update and, being authoritative, are merged back on read.
    `flags` are key columns stored as 0/1 and read back as booleans; `json_columns` hold JSON.
    A table whose `_id` follows from its columns (`derive_id`) stores none: its rows are
    addressed by rowid and the unique indexes of those columns, one index fewer to write.
    """

    def __init__(self, database: SqliteDatabase, table: str, columns: tuple[str, ...] = (),
                 flags: tuple[str, ...] = (), json_columns: tuple[str, ...] = (),
                 derive_id: Callable[[Document], str] | None = None) -> None:
        self.database = database
        self.table = table
        self.columns = columns + flags + json_columns
        self.flags = frozenset(flags)
        self.json_columns = frozenset(json_columns)
        self.derive_id = derive_id
        self.key = "_id" if derive_id is None else "rowid"
        self.select = ", ".join(("doc", *self.columns))
        stored = ("doc", *self.columns) if derive_id else ("_id", "doc", *self.columns)
        names = ", ".join(stored)
        marks = ", ".join("?" * len(stored))
        self.insert_sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        self.replace_sql = f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})"
        sets = ", ".join(f"{name} = ?" for name in ("doc", *self.columns))
        self.update_sql = f"UPDATE {table} SET {sets} WHERE _id = ?"

    def column_value(self, name: str, document: Document) -> Any:
        value = document.get(name)
        if name in self.flags:
            return 1 if value else 0
        if name in self.json_columns:
            return None if value is None else dumps(value)
        return value

    def row(self, document: Document) -> tuple[Any, ...]:
        body = {key: value for key, value in document.items()
                if key != "_id" and key not in self.columns}
        values = (dumps(body), *(self.column_value(name, document) for name in self.columns))
        return values if self.derive_id else (document["_id"], *values)

    def document(self, key: Any, row: tuple[Any, ...]) -> Document:
        """A stored row (doc, *columns) back into its document."""
        document: Document = {"_id": key}
        document.update(loads(row[0]))
        for name, value in zip(self.columns, row[1:], strict=True):
            if name in self.flags:
                value = bool(value)
            elif name in self.json_columns and value is not None:
                value = loads(value)
            document[name] = value
        if self.derive_id is not None:
            document["_id"] = self.derive_id(document)
        return document

    def get(self, key: str) -> Document | None:
        row = self.database.one(f"SELECT {self.select} FROM {self.table} WHERE _id = ?", (key,))
        return None if row is None else self.document(key, row)

    def insert(self, document: Document) -> None:
        try:
            with self.database.transaction() as connection:
                connection.execute(self.insert_sql, self.row(document))
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey(str(document["_id"])) from exc

    def update(self, key: str, changes: Document) -> Document | None:
        with self.database.transaction() as connection:
            row = connection.execute(f"SELECT {self.select} FROM {self.table} WHERE _id = ?",
                                     (key,)).fetchone()
            if row is None:
                return None
            document = self.document(key, row)
            document.update(changes)
            connection.execute(self.update_sql, (*self.row(document)[1:], key))
        return document

    def delete(self, key: str) -> None:
        with self.database.transaction() as connection:
            connection.execute(f"DELETE FROM {self.table} WHERE _id = ?", (key,))

    def where(self, clause: str = "", params: Iterable[Any] = (), order: str = "_id",
              skip: int = 0, limit: int = 0) -> list[Document]:
        sql = f"SELECT {self.key}, {self.select} FROM {self.table}"
        if clause:
            sql += f" WHERE {clause}"
        sql += f" ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)} OFFSET {offset(skip)}"
        return [self.document(row[0], row[1:]) for row in self.database.all(sql, params)]

    def count(self, clause: str = "", params: Iterable[Any] = ()) -> int:
        sql = f"SELECT count(*) FROM {self.table}" + (f" WHERE {clause}" if clause else "")
        row = self.database.one(sql, params)
        return int(row[0]) if row else 0

    def page(self, clause: str, params: Iterable[Any], order: str, skip: int,
             limit: int) -> tuple[list[Document], int]:
        params = tuple(params)
        return self.where(clause, params, order, skip, limit), self.count(clause, params)

    def dump(self, batch_size: int = 1000) -> Iterator[Document]:
        """Every document by key, a batch at a time (no long-lived read transaction)."""
        key = self.key
        rows = keyset_batches(lambda after: self.database.all(
            f"SELECT {key}, {self.select} FROM {self.table} WHERE {key} > ? ORDER BY {key} "
            f"LIMIT {int(batch_size)}", (after,)), lambda row: row[0],
            "" if self.derive_id is None else 0, batch_size)
        return (self.document(row[0], row[1:]) for row in rows)

    def load(self, documents: Iterable[Document], batch_size: int = 1000) -> int:
        count = 0
        batch: list[tuple[Any, ...]] = []
        for document in documents:
            batch.append(self.row(document))
            if len(batch) >= batch_size:
                count += self._load(batch)
                batch = []
        return count + self._load(batch)

    def _load(self, rows: list[tuple[Any, ...]]) -> int:
        if rows:
            with self.database.transaction() as connection:
                connection.executemany(self.replace_sql, rows)
        return len(rows)
