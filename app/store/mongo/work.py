"""MongoDB repositories of background work and operations: jobs, export records, import results
and keys, leases, heartbeats and rate counters. Claims, leases and counters are single-document
atomic updates (find_one_and_update), so any number of processes on any number of hosts share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...model import Document
from ...model.records import ExportFile, ExportRecord, Job
from .. import interfaces
from ..base import DuplicateKey, offset
from ..records import export_file_document, export_record, export_target_document, job, job_document
from .content import bulk_replace
from .indexes import create_index

ACTIVE = ["PENDING", "RUNNING"]


class Jobs(interfaces.Jobs):
    """The `jobs` collection."""

    def __init__(self, db: Any) -> None:
        self.jobs = db["jobs"]

    def ensure_indexes(self) -> None:
        self.jobs.create_index([("state", ASCENDING), ("kind", ASCENDING),
                                ("created_on", ASCENDING)])
        self.jobs.create_index([("kind", ASCENDING), ("key", ASCENDING), ("generation", DESCENDING)])
        self.jobs.create_index([("kind", ASCENDING), ("owner", ASCENDING),
                                ("created_on", DESCENDING)])
        self.jobs.create_index([("queue", ASCENDING), ("state", ASCENDING),
                                ("created_on", ASCENDING)], sparse=True)

    def insert(self, job: Job) -> None:
        try:
            self.jobs.insert_one(job_document(job))
        except DuplicateKeyError:
            raise DuplicateKey(job.id) from None

    def get(self, job_id: str) -> Job | None:
        document = self.jobs.find_one({"_id": job_id})
        return None if document is None else job(document)

    def latest(self, kind: str, key: str) -> Job | None:
        document = self.jobs.find_one(
            {"kind": kind, "key": key, "generation": {"$exists": True}},
            sort=[("generation", DESCENDING)])
        return None if document is None else job(document)

    def claim(self, kinds: list[str], worker: str, now: str, lease_until: str) -> Job | None:
        claimable = {"kind": {"$in": kinds}, "$and": [
            {"$or": [{"state": "PENDING"}, {"state": "RUNNING", "lease_until": {"$lt": now}}]},
            {"$or": [{"not_before": None}, {"not_before": {"$lte": now}}]}]}
        update = {"$set": {"state": "RUNNING", "worker": worker, "updated_on": now,
                           "lease_until": lease_until},
                  "$inc": {"attempts": 1}}
        waiting: list[str] = []  # jobs whose queue is busy with an older job
        while True:
            query = dict(claimable, _id={"$nin": waiting}) if waiting else claimable
            candidate = self.jobs.find_one(query, {"_id": 1, "queue": 1, "created_on": 1},
                                           sort=[("created_on", ASCENDING)])
            if candidate is None:
                return None
            if candidate.get("queue") is not None and self._queue_busy(candidate):
                waiting.append(candidate["_id"])
                continue
            claimed = self.jobs.find_one_and_update(
                dict(claimable, _id=candidate["_id"]), update,
                return_document=ReturnDocument.AFTER)
            if claimed is not None:
                return job(claimed)
            # another claimer took it between the two calls: look again

    def _queue_busy(self, job: Document) -> bool:
        """Whether an older job of the same queue is still waiting or running."""
        return self.jobs.find_one({
            "queue": job["queue"], "state": {"$in": ACTIVE}, "_id": {"$ne": job["_id"]},
            "$or": [{"created_on": {"$lt": job["created_on"]}},
                    {"created_on": job["created_on"], "_id": {"$lt": job["_id"]}}]},
            {"_id": 1}) is not None

    def heartbeat(self, job_id: str, worker: str, now: str, lease_until: str,
                  progress: Document | None) -> bool:
        changes: Document = {"lease_until": lease_until, "updated_on": now}
        if progress is not None:
            changes["progress"] = progress
        done = self.jobs.update_one({"_id": job_id, "worker": worker, "state": "RUNNING"},
                                    {"$set": changes})
        return bool(done.matched_count == 1)

    def save_progress(self, job_id: str, worker: str, now: str, progress: Document) -> bool:
        done = self.jobs.update_one(
            {"_id": job_id, "worker": worker, "state": {"$in": ["RUNNING", "CANCELLED"]}},
            {"$set": {"progress": progress, "updated_on": now}})
        return bool(done.matched_count == 1)

    def mark_started(self, job_id: str, worker: str, now: str) -> None:
        self.jobs.update_one({"_id": job_id, "worker": worker, "started_on": None},
                             {"$set": {"started_on": now}})

    def end(self, job_id: str, worker: str, state: str, now: str, changes: Document) -> bool:
        done = self.jobs.update_one(
            {"_id": job_id, "worker": worker, "state": "RUNNING"},
            {"$set": dict(changes, state=state, finished_on=now, updated_on=now, lease_until=None)})
        return bool(done.matched_count == 1)

    def cancel(self, job_id: str, now: str) -> bool:
        done = self.jobs.update_one({"_id": job_id, "state": {"$in": ACTIVE}},
                                    {"$set": {"state": "CANCELLED", "finished_on": now,
                                              "updated_on": now, "lease_until": None}})
        return bool(done.matched_count == 1)

    def update(self, job_id: str, changes: Document) -> None:
        self.jobs.update_one({"_id": job_id}, {"$set": changes})

    def list(self, kind: str | None, owner: str | None, states: Iterable[str] | None, skip: int,
             limit: int, *, queues: list[str | None] | None = None,
             started_since: str | None = None) -> tuple[list[Job], int]:
        query: Document = {}
        if queues is not None:
            query["queue"] = {"$in": queues}
        if started_since is not None:
            query["started_on"] = {"$gte": started_since}
        if kind is not None:
            query["kind"] = kind
        if owner is not None:
            query["owner"] = owner
        if states is not None:
            query["state"] = {"$in": list(states)}
        cursor = self.jobs.find(query).sort([("created_on", DESCENDING), ("_id", DESCENDING)])
        return ([job(document) for document in cursor.skip(offset(skip)).limit(limit)],
                int(self.jobs.count_documents(query)))

    def active_counts(self) -> dict[tuple[str, str], int]:
        rows = self.jobs.aggregate([
            {"$match": {"state": {"$in": ACTIVE}}},
            {"$group": {"_id": {"kind": "$kind", "state": "$state"}, "n": {"$sum": 1}}}])
        return {(str(row["_id"]["kind"]), str(row["_id"]["state"])): int(row["n"]) for row in rows}

    def oldest_pending(self) -> str | None:
        job = self.jobs.find_one({"state": "PENDING"}, {"created_on": 1},
                                 sort=[("created_on", ASCENDING)])
        return job.get("created_on") if job else None

    def fail_abandoned(self, now: str, max_attempts: int, error: str) -> int:
        done = self.jobs.update_many(
            {"state": "RUNNING", "lease_until": {"$lt": now}, "attempts": {"$gte": max_attempts}},
            {"$set": {"state": "FAILED", "finished_on": now, "updated_on": now,
                      "lease_until": None, "error": error}})
        return int(done.modified_count)

    def count_expired(self, now: str) -> int:
        return int(self.jobs.count_documents({"state": "RUNNING", "lease_until": {"$lt": now}}))

    def dump(self) -> Iterator[Document]:
        return iter(self.jobs.find({}).sort("_id", ASCENDING))

    def load(self, documents: Iterable[Document]) -> int:
        return bulk_replace(self.jobs, documents)


class ExportRecords(interfaces.ExportRecords):
    """The `exports` collection: one document per export, `_id` = export key."""

    def __init__(self, db: Any) -> None:
        self.exports = db["exports"]

    def ensure_indexes(self) -> None:
        self.exports.create_index([("source", ASCENDING)])
        self.exports.create_index([("file.sha256", ASCENDING)])

    def get(self, key: str) -> ExportRecord | None:
        document = self.exports.find_one({"_id": key})
        return None if document is None else export_record(document)

    def set_job(self, key: str, job_id: str, *, source: str, version_id: str,
                since_id: str | None = None) -> None:
        fields = dict(export_target_document(source, version_id, since_id), job_id=job_id)
        self.exports.update_one({"_id": key}, {"$set": fields}, upsert=True)

    def commit_file(self, key: str, job_id: str, file: ExportFile) -> bool:
        done = self.exports.update_one({"_id": key, "job_id": job_id},
                                       {"$set": {"file": export_file_document(file)}})
        return bool(done.matched_count == 1)

    def drop_file_if(self, key: str, sha256: str) -> bool:
        done = self.exports.update_one({"_id": key, "file.sha256": sha256},
                                       {"$set": {"file": None}})
        return bool(done.matched_count == 1)

    def delete(self, key: str) -> None:
        self.exports.delete_one({"_id": key})

    def by_file(self, source_url: str, sha256: str) -> ExportRecord | None:
        document = self.exports.find_one({"file.sha256": sha256, "source": source_url})
        return None if document is None else export_record(document)

    def referenced(self, sha256: str) -> bool:
        return self.exports.find_one({"file.sha256": sha256}, {"_id": 1}) is not None

    def for_source(self, source_url: str) -> list[ExportRecord]:
        return [export_record(document) for document in self.exports.find({"source": source_url})]

    def all(self) -> Iterator[ExportRecord]:
        return (export_record(document)
                for document in self.exports.find({}).sort("_id", ASCENDING))

    def shas(self) -> set[str]:
        return {record["file"]["sha256"] for record in self.exports.find({"file": {"$ne": None}},
                                                                         {"file.sha256": 1})
                if record.get("file")}


def result_id(job_id: str, line: int, part: int = 0) -> str:
    """Results are addressed by job and line, so a page is an `_id` range in line order."""
    return f"{job_id}:{line:09d}:{part:02d}"


class ImportResults(interfaces.ImportResults):
    """The `import_results` collection."""

    def __init__(self, db: Any) -> None:
        self.results = db["import_results"]

    def ensure_indexes(self) -> None:
        self.results.create_index([("job", ASCENDING), ("action", ASCENDING), ("_id", ASCENDING)])

    def add(self, job_id: str, part: int, result: Document) -> None:
        try:
            self.results.insert_one(dict(result, _id=result_id(job_id, result["line"], part),
                                         job=job_id, part=part))
        except DuplicateKeyError:
            raise DuplicateKey(result_id(job_id, result["line"], part)) from None

    def get(self, job_id: str, line: int, part: int = 0) -> Document | None:
        result: Document | None = self.results.find_one({"_id": result_id(job_id, line, part)})
        return result

    def page(self, job_id: str, after: tuple[int, int] | None, actions: list[str] | None,
             limit: int) -> list[Document]:
        low = result_id(job_id, *after) if after else f"{job_id}:"
        query: Document = {"job": job_id, "_id": {"$gt": low, "$lt": f"{job_id};"}}
        if actions:
            query["action"] = actions[0] if len(actions) == 1 else {"$in": actions}
        cursor = self.results.find(query, {"job": 0}).sort("_id", ASCENDING)
        return list(cursor.limit(limit)) if limit else list(cursor)

    def delete_for_job(self, job_id: str) -> None:
        self.results.delete_many({"job": job_id})

    def dump(self) -> Iterator[Document]:
        return iter(self.results.find({}).sort("_id", ASCENDING))

    def load(self, documents: Iterable[Document]) -> int:
        return bulk_replace(self.results, documents)


class IdempotencyKeys(interfaces.IdempotencyKeys):
    """The `import_keys` collection, claimed atomically by `_id`: an insert, or an update that
    matches only a lapsed claim naming no job (a missing `lease_until`: a claim from before
    leases, lapsed too)."""

    def __init__(self, db: Any) -> None:
        self.keys = db["import_keys"]

    def ensure_indexes(self) -> None:
        self.keys.create_index([("lease_until", ASCENDING)])

    def claim(self, key: str, owner: str, now: str, lease_until: str) -> Document | None:
        try:
            self.keys.insert_one({"_id": key, "job": None, "owner": owner,
                                  "lease_until": lease_until})
            return None
        except DuplicateKeyError:
            pass
        lapsed = {"_id": key, "job": None,
                  "$or": [{"lease_until": None}, {"lease_until": {"$lte": now}}]}
        if self.keys.find_one_and_update(lapsed, {"$set": {"owner": owner,
                                                           "lease_until": lease_until}}):
            return None
        found: Document = self.keys.find_one({"_id": key}) or {"_id": key, "job": None}
        return found

    def renew(self, key: str, owner: str, lease_until: str) -> bool:
        done = self.keys.update_one({"_id": key, "owner": owner, "job": None},
                                    {"$set": {"lease_until": lease_until}})
        return bool(done.matched_count)

    def bind(self, key: str, owner: str, job_id: str) -> bool:
        done = self.keys.update_one({"_id": key, "owner": owner, "job": None},
                                    {"$set": {"job": job_id, "lease_until": None}})
        return bool(done.matched_count)

    def job_for(self, key: str) -> str | None:
        found = self.keys.find_one({"_id": key})
        return found["job"] if found else None

    def release(self, key: str, owner: str) -> None:
        self.keys.delete_one({"_id": key, "owner": owner, "job": None})

    def purge(self, now: str) -> int:
        done = self.keys.delete_many({"job": None, "$or": [{"lease_until": None},
                                                           {"lease_until": {"$lt": now}}]})
        return int(done.deleted_count)


class Leases(interfaces.Leases):
    """`maintenance_leases`: acquiring matches only an expired lease (or upserts a missing one);
    when another holder's lease is live the upsert collides on `_id` and the caller lost."""

    def __init__(self, db: Any) -> None:
        self.leases = db["maintenance_leases"]

    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        try:
            lease = self.leases.find_one_and_update(
                {"_id": name, "until": {"$lte": now}},
                {"$set": {"holder": holder, "until": until, "acquired_on": now},
                 "$inc": {"runs": 1}},
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            return False
        return lease is not None and lease.get("holder") == holder

    def release(self, name: str, holder: str, now: datetime) -> None:
        self.leases.update_one({"_id": name, "holder": holder}, {"$set": {"until": now}})

    def record(self, name: str, holder: str, fields: Document) -> None:
        self.leases.update_one({"_id": name, "holder": holder}, {"$set": fields})

    def get(self, name: str) -> Document | None:
        lease: Document | None = self.leases.find_one({"_id": name})
        return lease


class Heartbeats(interfaces.Heartbeats):
    """`worker_heartbeats`: a TTL index on a real MongoDB removes long-gone processes, and so
    does maintenance (`purge`) where the server has no TTL indexes."""

    def __init__(self, db: Any) -> None:
        self.beats = db["worker_heartbeats"]

    def ensure_indexes(self) -> None:
        create_index(self.beats, [("expires_at", ASCENDING)], expireAfterSeconds=0)
        self.beats.create_index([("seen_on", ASCENDING)])

    def beat(self, name: str, fields: Document, now: datetime, expires_at: datetime) -> None:
        self.beats.update_one({"_id": name},
                              {"$set": dict(fields, seen_on=now, expires_at=expires_at),
                               "$setOnInsert": {"started_on": now}}, upsert=True)

    def forget(self, name: str) -> None:
        self.beats.delete_one({"_id": name})

    def alive(self, since: datetime) -> list[Document]:
        return list(self.beats.find({"seen_on": {"$gte": since}}).sort("_id", ASCENDING))

    def purge(self, now: datetime) -> int:
        # what the TTL index removes on a real MongoDB, for servers without one (FerretDB)
        return int(self.beats.delete_many({"expires_at": {"$lt": now}}).deleted_count)


class RateCounters(interfaces.RateCounters):
    """`rate_limits`: one upsert per hit; a TTL index on `expires_at` removes old windows, and so
    does maintenance (`purge`) where the server has no TTL indexes."""

    def __init__(self, db: Any) -> None:
        self.counters = db["rate_limits"]

    def ensure_indexes(self) -> None:
        create_index(self.counters, [("expires_at", ASCENDING)], expireAfterSeconds=0)

    def hit(self, key: str, expires_at: datetime) -> int:
        update = {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": expires_at}}
        try:
            counter = self.counters.find_one_and_update(
                {"_id": key}, update, upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:  # two first hits raced to insert; the second one now updates
            counter = self.counters.find_one_and_update(
                {"_id": key}, update, upsert=True, return_document=ReturnDocument.AFTER)
        # None: a TTL monitor removed the counter in between; this hit starts a new count.
        return int(counter["count"]) if counter else 1

    def purge(self, now: datetime) -> int:
        return int(self.counters.delete_many({"expires_at": {"$lt": now}}).deleted_count)
