"""SQLite repositories of background work and operations: jobs, export records, import results
and keys, leases, heartbeats and rate counters.

Claims, leases and counters are single UPDATE/INSERT statements inside `BEGIN IMMEDIATE`, so any
number of threads and processes on the machine can race for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from ...model import Document
from ...model.records import ExportFile, ExportRecord, Job
from ...timeutil import format_time
from .. import interfaces
from ..records import export_file_document, export_record, export_target_document, job, job_document
from .db import DocTable, SqliteDatabase, dumps, loads

ACTIVE_SQL = "state IN ('PENDING', 'RUNNING')"


class Jobs(interfaces.Jobs):
    """`jobs`: the fields claims and lists use in columns, the payload in `doc`."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "jobs", (
            "kind", "key", "generation", "owner", "queue", "state", "worker", "lease_until",
            "attempts",
            "created_on", "updated_on", "started_on", "finished_on", "error"),
            json_columns=("progress", "result"))

    def insert(self, job: Job) -> None:
        self.table.insert(job_document(job))

    def get(self, job_id: str) -> Job | None:
        document = self.table.get(job_id)
        return None if document is None else job(document)

    def latest(self, kind: str, key: str) -> Job | None:
        found = self.table.where("kind = ? AND key = ? AND generation IS NOT NULL", (kind, key),
                                 "generation DESC", 0, 1)
        return job(found[0]) if found else None

    def claim(self, kinds: list[str], worker: str, now: str, lease_until: str) -> Job | None:
        marks = ", ".join("?" * len(kinds))
        # The oldest claimable job whose queue (if it names one) has no older active job.
        with self.database.transaction() as connection:
            row = connection.execute(
                "UPDATE jobs SET state = 'RUNNING', worker = ?, updated_on = ?, lease_until = ?, "
                "attempts = attempts + 1 WHERE _id = (SELECT j._id FROM jobs AS j INDEXED BY "
                f"jobs_active WHERE j.{ACTIVE_SQL} AND j.kind IN ({marks}) AND "
                "(j.state = 'PENDING' OR j.lease_until < ?) AND "
                "coalesce(json_extract(j.doc, '$.not_before'), '') <= ? AND "
                "(j.queue IS NULL OR NOT EXISTS "
                "(SELECT 1 FROM jobs AS o INDEXED BY jobs_queue WHERE o.queue = j.queue AND "
                f"o.{ACTIVE_SQL} AND (o.created_on, o._id) < (j.created_on, j._id))) "
                "ORDER BY j.created_on LIMIT 1) RETURNING _id",
                (worker, now, lease_until, *kinds, now, now)).fetchone()
        return None if row is None else self.get(row[0])

    def heartbeat(self, job_id: str, worker: str, now: str, lease_until: str,
                  progress: Document | None) -> bool:
        sets, params = "lease_until = ?, updated_on = ?", [lease_until, now]
        if progress is not None:
            sets += ", progress = ?"
            params.append(dumps(progress))
        with self.database.transaction() as connection:
            done = connection.execute(f"UPDATE jobs SET {sets} WHERE _id = ? AND worker = ? AND "
                                      "state = 'RUNNING'", (*params, job_id, worker))
        return done.rowcount == 1

    def save_progress(self, job_id: str, worker: str, now: str, progress: Document) -> bool:
        with self.database.transaction() as connection:
            done = connection.execute(
                "UPDATE jobs SET progress = ?, updated_on = ? WHERE _id = ? AND worker = ? AND "
                "state IN ('RUNNING', 'CANCELLED')", (dumps(progress), now, job_id, worker))
        return done.rowcount == 1

    def mark_started(self, job_id: str, worker: str, now: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("UPDATE jobs SET started_on = ? WHERE _id = ? AND worker = ? AND "
                               "started_on IS NULL", (now, job_id, worker))

    def end(self, job_id: str, worker: str, state: str, now: str, changes: Document) -> bool:
        with self.database.transaction():
            ours = self.get(job_id)
            if ours is None or ours.worker != worker or ours.state != "RUNNING":
                return False
            self.table.update(job_id, dict(changes, state=state, finished_on=now, updated_on=now,
                                           lease_until=None))
        return True

    def cancel(self, job_id: str, now: str) -> bool:
        with self.database.transaction() as connection:
            done = connection.execute(
                "UPDATE jobs SET state = 'CANCELLED', finished_on = ?, updated_on = ?, "
                f"lease_until = NULL WHERE _id = ? AND {ACTIVE_SQL}", (now, now, job_id))
        return done.rowcount == 1

    def update(self, job_id: str, changes: Document) -> None:
        self.table.update(job_id, changes)

    def list(self, kind: str | None, owner: str | None, states: Iterable[str] | None, skip: int,
             limit: int, *, queues: list[str | None] | None = None,
             started_since: str | None = None) -> tuple[list[Job], int]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("kind", kind), ("owner", owner)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if states is not None:
            states = list(states)
            clauses.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(states)
        if queues is not None:
            named = [queue for queue in queues if queue is not None]
            parts = [f"queue IN ({', '.join('?' * len(named))})"] if named else []
            if None in queues:
                parts.append("queue IS NULL")
            clauses.append("(" + " OR ".join(parts or ["0"]) + ")")
            params.extend(named)
        if started_since is not None:
            clauses.append("started_on >= ?")
            params.append(started_since)
        found, total = self.table.page(" AND ".join(clauses), params, "created_on DESC, _id DESC",
                                       skip, limit)
        return [job(document) for document in found], total

    def active_counts(self) -> dict[tuple[str, str], int]:
        rows = self.database.all(f"SELECT kind, state, count(*) FROM jobs INDEXED BY jobs_active "
                                 f"WHERE {ACTIVE_SQL} GROUP BY kind, state")
        return {(kind, state): int(count) for kind, state, count in rows}

    def oldest_pending(self) -> str | None:
        row = self.database.one(f"SELECT created_on FROM jobs INDEXED BY jobs_active WHERE "
                                f"{ACTIVE_SQL} AND state = 'PENDING' ORDER BY created_on LIMIT 1")
        return row[0] if row else None

    def fail_abandoned(self, now: str, max_attempts: int, error: str) -> int:
        with self.database.transaction() as connection:
            done = connection.execute(
                "UPDATE jobs SET state = 'FAILED', finished_on = ?, updated_on = ?, "
                f"lease_until = NULL, error = ? WHERE {ACTIVE_SQL} AND state = 'RUNNING' "
                "AND lease_until < ? AND attempts >= ?", (now, now, error, now, max_attempts))
        return done.rowcount

    def count_expired(self, now: str) -> int:
        row = self.database.one(f"SELECT count(*) FROM jobs INDEXED BY jobs_active WHERE "
                                f"{ACTIVE_SQL} AND state = 'RUNNING' AND lease_until < ?", (now,))
        return int(row[0]) if row else 0

    def dump(self) -> Iterator[Document]:
        return self.table.dump()

    def load(self, documents: Iterable[Document]) -> int:
        return self.table.load(documents)


class ExportRecords(interfaces.ExportRecords):
    """`exports`: one row per export; `sha256` is a generated, indexed column of `file`."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "exports", ("source", "job_id"), json_columns=("file",))

    def get(self, key: str) -> ExportRecord | None:
        document = self.table.get(key)
        return None if document is None else export_record(document)

    def set_job(self, key: str, job_id: str, *, source: str, version_id: str,
                since_id: str | None = None) -> None:
        fields = dict(export_target_document(source, version_id, since_id), job_id=job_id)
        with self.database.transaction():
            if self.table.update(key, fields) is None:
                self.table.insert(dict(fields, _id=key))

    def commit_file(self, key: str, job_id: str, file: ExportFile) -> bool:
        with self.database.transaction() as connection:
            done = connection.execute("UPDATE exports SET file = ? WHERE _id = ? AND job_id = ?",
                                      (dumps(export_file_document(file)), key, job_id))
        return done.rowcount == 1

    def drop_file_if(self, key: str, sha256: str) -> bool:
        with self.database.transaction() as connection:
            done = connection.execute("UPDATE exports SET file = NULL WHERE _id = ? AND "
                                      "sha256 = ?", (key, sha256))
        return done.rowcount == 1

    def delete(self, key: str) -> None:
        self.table.delete(key)

    def by_file(self, source_url: str, sha256: str) -> ExportRecord | None:
        found = self.table.where("sha256 = ? AND source = ?", (sha256, source_url), "_id", 0, 1)
        return export_record(found[0]) if found else None

    def referenced(self, sha256: str) -> bool:
        return self.database.one("SELECT 1 FROM exports WHERE sha256 = ? LIMIT 1",
                                 (sha256,)) is not None

    def for_source(self, source_url: str) -> list[ExportRecord]:
        return [export_record(document)
                for document in self.table.where("source = ?", (source_url,))]

    def all(self) -> Iterator[ExportRecord]:
        return (export_record(document) for document in self.table.dump())

    def shas(self) -> set[str]:
        return {row[0] for row in self.database.all("SELECT DISTINCT sha256 FROM exports "
                                                    "WHERE sha256 IS NOT NULL")}


def result_id(job_id: str, line: int, part: int = 0) -> str:
    """Results are addressed by job and line, so a page is an `_id` range in line order."""
    return f"{job_id}:{line:09d}:{part:02d}"


class ImportResults(interfaces.ImportResults):
    """`import_results`: one row per line (and part) of each job."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "import_results", ("job", "action", "line", "part"))

    def add(self, job_id: str, part: int, result: Document) -> None:
        self.table.insert(dict(result, _id=result_id(job_id, result["line"], part), job=job_id,
                               part=part))

    def get(self, job_id: str, line: int, part: int = 0) -> Document | None:
        return self.table.get(result_id(job_id, line, part))

    def page(self, job_id: str, after: tuple[int, int] | None, actions: list[str] | None,
             limit: int) -> list[Document]:
        low = result_id(job_id, *after) if after else f"{job_id}:"
        clause, params = "job = ? AND _id > ? AND _id < ?", [job_id, low, f"{job_id};"]
        if actions:
            clause += f" AND action IN ({', '.join('?' * len(actions))})"
            params.extend(actions)
        results = self.table.where(clause, params, "_id", 0, limit)
        for result in results:
            del result["job"]
        return results

    def delete_for_job(self, job_id: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM import_results WHERE job = ?", (job_id,))

    def dump(self) -> Iterator[Document]:
        return self.table.dump()

    def load(self, documents: Iterable[Document]) -> int:
        return self.table.load(documents)


class IdempotencyKeys(interfaces.IdempotencyKeys):
    """`import_keys`: claimed by one upsert that only overwrites a lapsed claim naming no job,
    bound to its job once it exists."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database

    def claim(self, key: str, owner: str, now: str, lease_until: str) -> Document | None:
        with self.database.transaction() as connection:
            taken = connection.execute(
                "INSERT INTO import_keys (_id, job, owner, lease_until) VALUES (?, NULL, ?, ?) "
                "ON CONFLICT (_id) DO UPDATE SET owner = excluded.owner, "
                "lease_until = excluded.lease_until WHERE import_keys.job IS NULL AND "
                "(import_keys.lease_until IS NULL OR import_keys.lease_until <= ?) "
                "RETURNING owner", (key, owner, lease_until, now)).fetchone()
            if taken is not None and taken[0] == owner:
                return None
            row = connection.execute("SELECT job, owner, lease_until FROM import_keys "
                                     "WHERE _id = ?", (key,)).fetchone()
        return {"_id": key, "job": row[0], "owner": row[1], "lease_until": row[2]}

    def renew(self, key: str, owner: str, lease_until: str) -> bool:
        with self.database.transaction() as connection:
            done = connection.execute("UPDATE import_keys SET lease_until = ? WHERE _id = ? AND "
                                      "owner = ? AND job IS NULL", (lease_until, key, owner))
        return done.rowcount == 1

    def bind(self, key: str, owner: str, job_id: str) -> bool:
        with self.database.transaction() as connection:
            done = connection.execute("UPDATE import_keys SET job = ?, lease_until = NULL "
                                      "WHERE _id = ? AND owner = ? AND job IS NULL",
                                      (job_id, key, owner))
        return done.rowcount == 1

    def job_for(self, key: str) -> str | None:
        row = self.database.one("SELECT job FROM import_keys WHERE _id = ?", (key,))
        return row[0] if row else None

    def release(self, key: str, owner: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM import_keys WHERE _id = ? AND owner = ? AND "
                               "job IS NULL", (key, owner))

    def purge(self, now: str) -> int:
        with self.database.transaction() as connection:
            done = connection.execute("DELETE FROM import_keys WHERE job IS NULL AND "
                                      "(lease_until IS NULL OR lease_until < ?)", (now,))
        return done.rowcount


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


class Leases(interfaces.Leases):
    """`leases`: acquiring is one upsert that only overwrites an expired lease."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database

    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        now_text = format_time(now)
        with self.database.transaction() as connection:
            row = connection.execute(
                "INSERT INTO leases (name, holder, until, acquired_on, runs) VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until, "
                "acquired_on = excluded.acquired_on, runs = runs + 1 WHERE leases.until <= ? "
                "RETURNING holder", (name, holder, format_time(until), now_text, now_text)).fetchone()
        return row is not None and row[0] == holder

    def release(self, name: str, holder: str, now: datetime) -> None:
        with self.database.transaction() as connection:
            connection.execute("UPDATE leases SET until = ? WHERE name = ? AND holder = ?",
                               (format_time(now), name, holder))

    def record(self, name: str, holder: str, fields: Document) -> None:
        values = {key: format_time(value) if isinstance(value, datetime) else value
                  for key, value in fields.items() if key in ("error", "finished_on")}
        if not values:
            return
        sets = ", ".join(f"{key} = ?" for key in values)
        with self.database.transaction() as connection:
            connection.execute(f"UPDATE leases SET {sets} WHERE name = ? AND holder = ?",
                               (*values.values(), name, holder))

    def get(self, name: str) -> Document | None:
        row = self.database.one("SELECT holder, until, acquired_on, runs, error, finished_on "
                                "FROM leases WHERE name = ?", (name,))
        if row is None:
            return None
        return {"_id": name, "holder": row[0], "until": _time(row[1]),
                "acquired_on": _time(row[2]), "runs": row[3], "error": row[4],
                "finished_on": _time(row[5])}


class Heartbeats(interfaces.Heartbeats):
    """`heartbeats`: one row per job-running process; long-gone ones are removed on each beat."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database

    def beat(self, name: str, fields: Document, now: datetime, expires_at: datetime) -> None:
        now_text = format_time(now)
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM heartbeats WHERE expires_at < ?", (now_text,))
            connection.execute(
                "INSERT INTO heartbeats (_id, doc, seen_on, started_on, expires_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (_id) DO UPDATE SET doc = excluded.doc, "
                "seen_on = excluded.seen_on, expires_at = excluded.expires_at",
                (name, dumps(fields), now_text, now_text, format_time(expires_at)))

    def forget(self, name: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM heartbeats WHERE _id = ?", (name,))

    def alive(self, since: datetime) -> list[Document]:
        rows = self.database.all("SELECT _id, doc FROM heartbeats WHERE seen_on >= ? ORDER BY _id",
                                 (format_time(since),))
        return [dict(loads(doc), _id=name) for name, doc in rows]

    def purge(self, now: datetime) -> int:
        with self.database.transaction() as connection:
            return int(connection.execute("DELETE FROM heartbeats WHERE expires_at < ?",
                                          (format_time(now),)).rowcount)


class RateCounters(interfaces.RateCounters):
    """`rate_counters`: an upsert per hit; expired windows are deleted as time moves on."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self._purged_before = ""

    def hit(self, key: str, expires_at: datetime) -> int:
        expiry = format_time(expires_at)
        with self.database.transaction() as connection:
            if expiry > self._purged_before:  # once per window and process: drop past windows
                connection.execute("DELETE FROM rate_counters WHERE expires_at < ?", (expiry,))
                self._purged_before = expiry
            row = connection.execute(
                "INSERT INTO rate_counters (key, count, expires_at) VALUES (?, 1, ?) "
                "ON CONFLICT (key) DO UPDATE SET count = count + 1 RETURNING count",
                (key, expiry)).fetchone()
        return int(row[0])

    def purge(self, now: datetime) -> int:
        with self.database.transaction() as connection:
            return int(connection.execute("DELETE FROM rate_counters WHERE expires_at < ?",
                                          (format_time(now),)).rowcount)

