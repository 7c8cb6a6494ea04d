"""The repositories of work in the background and its bookkeeping: jobs, export records, import
results, idempotency keys, leases, heartbeats, rate counters."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from ...model import Document
from ...model.records import ExportFile, ExportRecord, Job
from .documents import Copied


class Jobs(Copied):
    """The job queue: submit, claim with a lease, heartbeat, finish, fail, cancel.

    States: PENDING, RUNNING, FINISHED, FAILED, CANCELLED. A claim takes the oldest PENDING job
    of the given kinds, or a RUNNING one whose lease expired (its worker died), atomically. Jobs
    naming the same `queue` run in order: a job waits while an older one of its queue is active.
    """

    def insert(self, job: Job) -> None:
        """Insert a job; DuplicateKey if its id exists."""
        raise NotImplementedError

    def get(self, job_id: str) -> Job | None:
        raise NotImplementedError

    def latest(self, kind: str, key: str) -> Job | None:
        """The newest numbered (deduplicated) job of this kind and key, whatever its state."""
        raise NotImplementedError

    def claim(self, kinds: list[str], worker: str, now: str, lease_until: str) -> Job | None:
        raise NotImplementedError

    def heartbeat(self, job_id: str, worker: str, now: str, lease_until: str,
                  progress: Document | None) -> bool:
        """Extend our lease; False if the job is no longer ours (cancelled or taken over)."""
        raise NotImplementedError

    def save_progress(self, job_id: str, worker: str, now: str, progress: Document) -> bool:
        """Record progress of our job, even if it was cancelled meanwhile (the work it counts
        is done); False if another worker has taken it over."""
        raise NotImplementedError

    def mark_started(self, job_id: str, worker: str, now: str) -> None:
        raise NotImplementedError

    def end(self, job_id: str, worker: str, state: str, now: str, changes: Document) -> bool:
        """Finish our RUNNING job in `state` with `changes` (result/error); False if not ours."""
        raise NotImplementedError

    def cancel(self, job_id: str, now: str) -> bool:
        """Cancel a PENDING or RUNNING job; False if it had ended."""
        raise NotImplementedError

    def update(self, job_id: str, changes: Document) -> None:
        raise NotImplementedError

    def list(self, kind: str | None, owner: str | None, states: Iterable[str] | None, skip: int,
             limit: int, *, queues: list[str | None] | None = None,
             started_since: str | None = None) -> tuple[list[Job], int]:
        """Jobs newest first, narrowed by kind, owner, states, queues (None: a job naming no
        queue) and a start at or after `started_since`."""
        raise NotImplementedError

    def active_counts(self) -> dict[tuple[str, str], int]:
        """How many jobs wait or run, per (kind, state)."""
        raise NotImplementedError

    def oldest_pending(self) -> str | None:
        """`created_on` of the oldest PENDING job."""
        raise NotImplementedError

    def fail_abandoned(self, now: str, max_attempts: int, error: str) -> int:
        """FAIL running jobs whose lease expired after `max_attempts` attempts; how many."""
        raise NotImplementedError

    def count_expired(self, now: str) -> int:
        """RUNNING jobs whose lease expired (waiting to be taken over)."""
        raise NotImplementedError


class ExportRecords:
    """One record per export (its key): the committed file and the latest build job."""

    def get(self, key: str) -> ExportRecord | None:
        raise NotImplementedError

    def set_job(self, key: str, job_id: str, *, source: str, version_id: str,
                since_id: str | None = None) -> None:
        """Create or update the record of the export of this version (`since_id`: the delta
        package from that base) with its current build job."""
        raise NotImplementedError

    def commit_file(self, key: str, job_id: str, file: ExportFile) -> bool:
        """Record a built file, only if this job is still the export's job (not cancelled)."""
        raise NotImplementedError

    def drop_file_if(self, key: str, sha256: str) -> bool:
        """Forget the record's file if it is still this one."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def by_file(self, source_url: str, sha256: str) -> ExportRecord | None:
        raise NotImplementedError

    def referenced(self, sha256: str) -> bool:
        raise NotImplementedError

    def for_source(self, source_url: str) -> list[ExportRecord]:
        raise NotImplementedError

    def all(self) -> Iterator[ExportRecord]:
        """Every record, by key."""
        raise NotImplementedError

    def shas(self) -> set[str]:
        """The sha256 of every file a record holds."""
        raise NotImplementedError


class ImportResults(Copied):
    """Per-line results of import jobs, addressed by (job, line, part)."""

    def add(self, job_id: str, part: int, result: Document) -> None:
        """Store one line's result; DuplicateKey if it is there already."""
        raise NotImplementedError

    def get(self, job_id: str, line: int, part: int = 0) -> Document | None:
        raise NotImplementedError

    def page(self, job_id: str, after: tuple[int, int] | None, actions: list[str] | None,
             limit: int) -> list[Document]:
        """Results in line order after (line, part), optionally only some actions."""
        raise NotImplementedError

    def iter_all(self, job_id: str, batch_size: int = 1000) -> Iterator[Document]:
        """Every result of a job in line order, read a page at a time."""
        after: tuple[int, int] | None = None
        while True:
            page = self.page(job_id, after, None, batch_size)
            yield from page
            if len(page) < batch_size:
                return
            after = (page[-1]["line"], page[-1]["part"])

    def delete_for_job(self, job_id: str) -> None:
        raise NotImplementedError


class IdempotencyKeys:
    """Idempotency-Key of each import submission, claimed atomically before the upload is read.

    A claim has an `owner` (the request receiving the upload) and a lease (`lease_until`, a
    time as format_time writes it) that the owner renews while bytes arrive. A claim that names
    no job yet and whose lease has ended (its upload died with its process) may be taken over;
    one that names a job is the key's for good.
    """

    def claim(self, key: str, owner: str, now: str, lease_until: str) -> Document | None:
        """Claim a key (or take over a lapsed unbound claim); None if `owner` holds it now,
        else the claim that holds it ({job: id or None, owner, lease_until})."""
        raise NotImplementedError

    def renew(self, key: str, owner: str, lease_until: str) -> bool:
        """Extend `owner`'s claim; False if the claim is no longer `owner`'s."""
        raise NotImplementedError

    def bind(self, key: str, owner: str, job_id: str) -> bool:
        """Name the job of `owner`'s claim; False if the claim is no longer `owner`'s."""
        raise NotImplementedError

    def job_for(self, key: str) -> str | None:
        raise NotImplementedError

    def release(self, key: str, owner: str) -> None:
        """Free `owner`'s claim of a key whose submission failed (only while it names no job)."""
        raise NotImplementedError

    def purge(self, now: str) -> int:
        """Delete the claims that name no job and whose lease ended before `now`; how many."""
        raise NotImplementedError


class Leases:
    """Named leases: one holder at a time until the lease runs out."""

    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take the lease if it is free or expired; True if `holder` has it now."""
        raise NotImplementedError

    def release(self, name: str, holder: str, now: datetime) -> None:
        raise NotImplementedError

    def record(self, name: str, holder: str, fields: Document) -> None:
        """Note facts of the last run (finished_on, error) on the lease."""
        raise NotImplementedError

    def get(self, name: str) -> Document | None:
        raise NotImplementedError


class Heartbeats:
    """One heartbeat per job-running process."""

    def beat(self, name: str, fields: Document, now: datetime, expires_at: datetime) -> None:
        raise NotImplementedError

    def forget(self, name: str) -> None:
        raise NotImplementedError

    def alive(self, since: datetime) -> list[Document]:
        """Processes seen since `since`."""
        raise NotImplementedError

    def purge(self, now: datetime) -> int:
        """Delete the heartbeats that expired before `now`; how many."""
        raise NotImplementedError


class RateCounters:
    """Fixed-window request counters shared by every web process."""

    def hit(self, key: str, expires_at: datetime) -> int:
        """Count one hit on `key`; return the count (the counter expires at `expires_at`)."""
        raise NotImplementedError

    def purge(self, now: datetime) -> int:
        """Delete the counters of windows that ended before `now`; how many."""
        raise NotImplementedError
