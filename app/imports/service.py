"""Bulk import jobs: submission with limits and Idempotency-Key, reading, cancelling, results.

The package's other modules: `upload.py` reads an upload as it arrives (format, zip, limits),
`store.py` keeps it until its job ends, `decode.py` turns it into units of work, `run.py` is the
resumable job handler, `render.py` shows jobs as termsync and as OCL's clients see them, and
`routes.py` + `schemas.py` are the HTTP layer.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..config import ImportSettings
from ..domain import Domain
from ..domain.accounts import Caller, require_login
from ..domain.errors import Conflict, DomainError, Invalid, NotFound
from ..domain.loader import ACTIONS, Target
from ..domain.values import line_problem
from ..jobs import ACTIVE, PENDING, JobQueue
from ..model import Job
from ..store import Store
from ..store.interfaces import IdempotencyKeys
from ..timeutil import format_time, to_datetime
from .render import DEFAULT_QUEUE, OCL_STATES, TASK_NAME, empty_summary, ocl_json_result, summary_of
from .run import ImportRun
from .store import UploadStore
from .upload import LineCounter, prepare

logger = logging.getLogger(__name__)

KIND = "bulk_import"
MAX_QUEUE_NAME = 128


class TooManyJobs(DomainError):
    """The caller has as many import jobs running as allowed; retry later."""

    status = 429


@dataclass(frozen=True)
class ImportOptions:
    """How a job applies its lines."""

    format: str | None = "jsonl"  # jsonl, csv, zip (an OCL export), or None: sniffed
    update_if_exists: bool = False
    dry_run: bool = False
    target: Target | None = None
    filename: str | None = None
    queue: str | None = None  # a named queue runs its jobs one at a time, in order


class ImportJobs:
    """Bulk import jobs of one app: submit, read, cancel, and the job handler `run`."""

    def __init__(self, domain: Domain, queue: JobQueue, uploads: UploadStore,
                 limits: ImportSettings, store: Store) -> None:
        self.domain = domain
        self.queue = queue
        self.uploads = uploads
        self.results = store.import_results
        self.limits = limits
        self.keys = store.import_keys
        self.run = ImportRun(domain, queue, uploads, store, limits.batch_size,
                             limits.max_line_bytes).run

    # --- submission -----------------------------------------------------------------------
    def resolve_target(self, caller: Caller, owner_kind: str, owner_id: str,
                       source_id: str) -> Target:
        """The source that type-less lines go into (404 if the caller cannot see it)."""
        owner = self.domain.accounts.resolve_owner(caller, owner_kind, owner_id)
        self.domain.content.get_source(caller, owner, source_id)
        return Target(owner_kind, owner.id, source_id)

    def earlier_job(self, caller: Caller, idempotency_key: str | None) -> Job | None:
        """The job this caller submitted earlier with the same Idempotency-Key, if any."""
        if not idempotency_key:
            return None
        job_id = self.keys.job_for(_job_key(caller, idempotency_key))
        return self.queue.get(job_id) if job_id else None

    def check_capacity(self, caller: Caller) -> None:
        """429 with Retry-After when the caller already runs as many jobs as allowed."""
        _, active = self.queue.list(kind=KIND, owner=caller.username, states=ACTIVE, limit=1)
        if active >= self.limits.max_active_jobs:
            raise TooManyJobs(
                f"You have {active} import jobs waiting or running (the limit is "
                f"{self.limits.max_active_jobs}); retry when one has finished.",
                headers={"Retry-After": "30"})

    def submit(self, caller: Caller, chunks: Iterable[bytes], options: ImportOptions,
               idempotency_key: str | None = None) -> Job:
        """Store the streamed upload and queue its job; a repeated Idempotency-Key returns the
        earlier job.

        The key is claimed before the body is read, by this request (its `owner`) under a lease
        that the upload renews while bytes arrive. If the process receiving it dies (a killed
        worker), nothing releases the claim: its lease ends, and a retry takes it over.
        """
        key = _job_key(caller, idempotency_key) if idempotency_key else None
        if key is None:
            return self._submit(caller, chunks, options, None)
        claim = UploadClaim(self.keys, key, self.queue.clock, self.limits.upload_lease_seconds)
        earlier = claim.take()
        if earlier is not None:
            job = self.queue.get(earlier["job"]) if earlier.get("job") else None
            if job is None:  # the first request with this key is still being received
                raise Conflict("A submission with this Idempotency-Key is still being "
                               "received; retry shortly.",
                               headers={"Retry-After": str(claim.retry_after(earlier))})
            return job
        try:
            job = self._submit(caller, claim.renewing(chunks), options, key)
        except BaseException:
            claim.release()
            raise
        if not claim.bind(job.id):
            # the claim lapsed while this upload stalled and a retry took it over: that
            # retry's job is the key's; this one is not wanted
            self.queue.cancel(job.id)
            self.uploads.delete(job.payload["upload"])
            raise Conflict("This upload stalled for longer than its Idempotency-Key's lease "
                           "and another submission took the key; GET that one.",
                           headers={"Retry-After": "1"})
        return job

    def _submit(self, caller: Caller, chunks: Iterable[bytes], options: ImportOptions,
                key: str | None) -> Job:
        check_queue_name(options.queue)
        self.check_capacity(caller)
        upload_id = uuid.uuid4().hex
        counter = LineCounter(self.limits)
        lines_in, fmt, received = prepare(chunks, options.format, self.limits,
                                          self.domain.accounts.has_org)
        size = self.uploads.save(upload_id, counter.count(lines_in))
        if size == 0:
            self.uploads.delete(upload_id)
            raise Invalid("The upload is empty: send OCL JSON lines, OCL CSV or an OCL export zip.",
                          errors={"file": ["Empty."]})
        lines = counter.lines - (1 if fmt == "csv" and counter.lines else 0)
        target = options.target
        payload = {"upload": upload_id, "size": size, "lines": lines, "format": fmt,
                   "received_as": received,
                   "filename": options.filename, "update_if_exists": options.update_if_exists,
                   "dry_run": options.dry_run, "username": caller.username,
                   "target": None if target is None else
                   {"owner_kind": target.owner_kind, "owner_id": target.owner_id,
                    "source_id": target.source_id}}
        job = self.queue.submit(KIND, payload, key=key, owner=caller.username, dedupe=False,
                                queue=options.queue)
        self.queue.update(job.id, {"progress": {"summary": empty_summary(lines)}})
        return self.queue.get(job.id) or job

    # --- maintenance ----------------------------------------------------------------------
    def collect_garbage(self) -> dict[str, int]:
        """Collect what dead uploads left: part files (and chunks) idle for two upload leases,
        uploads no waiting or running job holds (a job failed for good keeps its own), and
        Idempotency-Key claims whose upload died (lapsed, naming no job)."""
        now = self.queue.clock()
        active, _ = self.queue.list(kind=KIND, states=ACTIVE)
        keep = {job.payload["upload"] for job in active}
        idle = now - 2 * timedelta(seconds=self.limits.upload_lease_seconds)
        report = {"uploads": self.uploads.collect(idle, keep),
                  "keys": self.keys.purge(format_time(now))}
        if any(report.values()):
            logger.info("imports GC: %d dead upload(s), %d lapsed Idempotency-Key claim(s)",
                        report["uploads"], report["keys"])
        return report

    # --- reading --------------------------------------------------------------------------
    def job_or_none(self, caller: Caller, job_id: str) -> Job | None:
        """The import job `job_id` if there is one the caller may see (401 without a token)."""
        require_login(caller)
        job = self.queue.get(job_id)
        if job is None or job.kind != KIND or not (
                caller.is_admin or (caller.username and job.owner == caller.username)):
            return None
        return job

    def list_tasks(self, caller: Caller, *, queue: str | None = None,
                   ocl_states: list[str] | None = None, everyone: bool = False,
                   name: str | None = None, started_since: str | None = None, skip: int = 0,
                   limit: int = 100) -> tuple[list[Job], int]:
        """Import jobs newest first: the caller's (with `everyone`, an admin sees all), of one
        queue (OCL's "default" is the jobs submitted without one), in some OCL states, whose
        name holds `name` (all are `bulk_import`), started at or after a time."""
        require_login(caller)
        if name and name.strip().lower() not in TASK_NAME:
            return [], 0
        states = None
        if ocl_states is not None:
            wanted = {name.strip().upper() for name in ocl_states}
            states = [state for state, name in OCL_STATES.items() if name in wanted]
        queues: list[str | None] | None = None
        if queue is not None:
            queues = [None, DEFAULT_QUEUE] if queue == DEFAULT_QUEUE else [queue]
        return self.queue.list(kind=KIND,
                               owner=None if everyone and caller.is_admin else caller.username,
                               queues=queues, states=states, started_since=started_since,
                               skip=skip, limit=limit)

    def ocl_json_result(self, job: Job) -> dict[str, Any]:
        """OCL's `json` result of a finished import (see `render.ocl_json_result`)."""
        return ocl_json_result(job, self.results.iter_all(job.id))

    def get(self, caller: Caller, job_id: str) -> Job:
        """A job its submitter (or an admin) may see; 401 without a token, 404 for anyone else."""
        job = self.job_or_none(caller, job_id)
        if job is None:
            raise NotFound(f"Import job '{job_id}' not found.")
        return job

    def list_jobs(self, caller: Caller, skip: int, limit: int) -> tuple[list[Job], int]:
        """The caller's jobs, newest first."""
        return self.queue.list(kind=KIND, owner=caller.username, skip=skip, limit=limit)

    def cancel(self, caller: Caller, job_id: str) -> Job:
        """Cancel a waiting or running job; it stops before its next batch."""
        job = self.get(caller, job_id)
        if self.queue.cancel(job_id) and job.state == PENDING:
            self.uploads.delete(job.payload["upload"])
        return self.get(caller, job_id)

    def result_page(self, caller: Caller, job_id: str, actions: list[str] | None,
                    after: tuple[int, int] | None, limit: int) -> tuple[list[dict[str, Any]], int]:
        """A page of per-line results in line order, and how many match in all."""
        job = self.get(caller, job_id)
        summary = summary_of(job)
        num_found = sum(summary[action] for action in actions) if actions else summary["processed"]
        return self.results.page(job_id, after, actions, limit), num_found

    def report_rows(self, job: Job) -> Iterator[list[Any]]:
        """The rows of report.csv (header first): line, type, status, url, error."""
        yield ["line", "type", "status", "url", "error"]
        for result in self.results.iter_all(job.id):
            yield [result["line"], result.get("type") or "", result["action"],
                   result.get("url") or "", "; ".join(result.get("errors") or [])]


class UploadClaim:
    """One request's claim of an Idempotency-Key: taken before the upload is read, renewed
    while its bytes arrive (every third of the lease), bound to the job at the end."""

    def __init__(self, keys: IdempotencyKeys, key: str, clock: Callable[[], datetime],
                 lease_seconds: float) -> None:
        self.keys = keys
        self.key = key
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._renewed = clock()

    def _until(self) -> str:
        return format_time(self.clock() + self.lease)

    def take(self) -> dict[str, Any] | None:
        """None if this request holds the key now, else the claim that holds it."""
        self._renewed = self.clock()
        return self.keys.claim(self.key, self.owner, format_time(self._renewed), self._until())

    def retry_after(self, claim: dict[str, Any]) -> int:
        """Seconds until a claim still being received may lapse (at least 1)."""
        until = claim.get("lease_until")
        if not until:
            return 1
        left = (to_datetime(str(until)) - self.clock()).total_seconds()
        return max(1, min(int(left) + 1, int(self.lease.total_seconds()) + 1))

    def renewing(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The chunks, renewing the lease as they arrive; Conflict if the claim was lost."""
        for chunk in chunks:
            if self.clock() - self._renewed >= self.lease / 3:
                self._renewed = self.clock()
                if not self.keys.renew(self.key, self.owner, self._until()):
                    raise Conflict("This upload stalled for longer than its Idempotency-Key's "
                                   "lease and another submission took the key; GET that one.",
                                   headers={"Retry-After": "1"})
            yield chunk

    def bind(self, job_id: str) -> bool:
        return self.keys.bind(self.key, self.owner, job_id)

    def release(self) -> None:
        self.keys.release(self.key, self.owner)


def check_queue_name(queue: str | None) -> None:
    """A queue is named in URLs and job listings: at most 128 characters, none a control
    character (400 naming it otherwise)."""
    if queue is None:
        return
    problem = line_problem(queue) or (f"Longer than {MAX_QUEUE_NAME} characters."
                                      if len(queue) > MAX_QUEUE_NAME else None)
    if problem is not None:
        raise Invalid(f"Queue name {queue!r}: {problem}", errors={"queue": [problem]})


def _job_key(caller: Caller, idempotency_key: str) -> str:
    return f"{caller.username}\n{idempotency_key}"


def parse_actions(status: str | None) -> list[str] | None:
    """`?status=failed,skipped` as a list of actions (400 for an unknown one)."""
    if not status:
        return None
    actions = [part.strip() for part in status.split(",") if part.strip()]
    unknown = [action for action in actions if action not in ACTIONS]
    if unknown:
        raise Invalid(f"Unknown status {', '.join(unknown)}: expected {', '.join(ACTIONS)}.",
                      errors={"status": [f"One of {', '.join(ACTIONS)}."]})
    return actions or None
