"""Background jobs queued in the database, claimed atomically with a lease, run by worker threads.

Export builds and bulk imports both run here. A worker claims a PENDING job (or a RUNNING one
whose lease expired: its worker died) with one atomic update, so any number of threads or
processes can share the queue. While it works it heartbeats; a heartbeat that finds the job
cancelled or taken over raises JobLost and the worker stops without writing a result.

A job that hits a storage fault (a full or read-only disk, app/faults.py) is not failed at once:
its worker keeps the claim but lets the lease run out later than usual (the lease times its
attempt number), then any worker takes it over as after a crash, resuming where it stopped; at
JOB_MAX_ATTEMPTS it fails, marked as a fault so that what serves it answers 503, not 500.

A job may name a `queue` (bulk imports: OCL's named queues): the jobs of one queue run in the
order they were submitted, one at a time. A job is claimable only while no older job of its
queue is still active, which a claimer checks before its atomic claim; a job whose queue is
busy waits, and the oldest claimable job of any other queue or none is taken instead.

A job may also name a `not_before` time (webhook retries back off this way): it is not claimed
before then, and since it waits in the database, a restart loses none.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .faults import StorageFault, fault_of
from .model import Job
from .store.base import DuplicateKey
from .store.interfaces import Jobs
from .timeutil import format_time

logger = logging.getLogger(__name__)

PENDING, RUNNING, FINISHED, FAILED, CANCELLED = "PENDING", "RUNNING", "FINISHED", "FAILED", "CANCELLED"
ACTIVE = (PENDING, RUNNING)


class JobLost(Exception):
    """The job was cancelled or another worker took it over: stop, write nothing more."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobQueue:
    """Jobs over the store's `jobs` repository: submit (deduplicated by key), claim with a
    lease, heartbeat, finish, fail, cancel. `clock` is replaceable so tests can expire leases."""

    def __init__(self, jobs: Jobs, clock: Callable[[], datetime] = utcnow) -> None:
        self.jobs = jobs
        self.clock = clock

    def _now(self) -> str:
        return format_time(self.clock())

    def submit(self, kind: str, payload: dict[str, Any], *, key: str | None = None,
               owner: str | None = None, dedupe: bool = True,
               queue: str | None = None,
               not_before: datetime | None = None) -> Job:
        """Queue a job; with dedupe, an active job of the same kind and key is returned instead.

        Jobs naming the same `queue` run one at a time, in the order they were submitted; a job
        with `not_before` is not claimed before that time.

        Deduplicated jobs of one key are numbered (generation 1, 2, ...) and the number is part
        of their id, so two submitters racing for the same key insert the same id: one
        wins, the other gets a duplicate key and joins the winner's job.
        """
        now = self._now()
        job = Job(id=uuid.uuid4().hex, kind=kind, key=key, state=PENDING, payload=payload,
                  owner=owner, queue=queue, created_on=now, updated_on=now,
                  not_before=format_time(not_before) if not_before is not None else None)
        if not dedupe or key is None:
            self.jobs.insert(job)
            return job
        key_hash = hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:24]
        for _ in range(20):
            latest = self.jobs.latest(kind, key)
            if latest is not None and latest.state in ACTIVE:
                return latest
            generation = ((latest.generation or 0) if latest is not None else 0) + 1
            numbered = replace(job, id=f"{key_hash}-{generation}", generation=generation)
            try:
                self.jobs.insert(numbered)
            except DuplicateKey:
                continue  # a concurrent submitter took this generation: join it
            return numbered
        raise RuntimeError(f"could not queue a {kind} job for {key}: too much contention")

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def latest(self, kind: str, key: str) -> Job | None:
        """The newest deduplicated job of this kind and key, whatever its state."""
        return self.jobs.latest(kind, key)

    def claim(self, kinds: list[str], worker_id: str, lease_seconds: float) -> Job | None:
        """Atomically take the oldest PENDING job, or a RUNNING one whose lease has expired,
        whose queue (if it names one) has no older active job and whose `not_before` is past."""
        now = self.clock()
        return self.jobs.claim(kinds, worker_id, format_time(now),
                               format_time(now + timedelta(seconds=lease_seconds)))

    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float,
                  progress: dict[str, Any] | None = None) -> None:
        """Extend the lease (and record progress); JobLost if the job is no longer ours."""
        now = self.clock()
        if not self.jobs.heartbeat(job_id, worker_id, format_time(now),
                                   format_time(now + timedelta(seconds=lease_seconds)), progress):
            raise JobLost(job_id)

    def save_progress(self, job_id: str, worker_id: str, progress: dict[str, Any]) -> None:
        """Record the progress of work done (kept if the job was cancelled meanwhile); JobLost
        if another worker has taken the job over."""
        if not self.jobs.save_progress(job_id, worker_id, self._now(), progress):
            raise JobLost(job_id)

    def mark_started(self, job_id: str, worker_id: str) -> None:
        self.jobs.mark_started(job_id, worker_id, self._now())

    def finish(self, job_id: str, worker_id: str, result: dict[str, Any] | None = None) -> bool:
        """Mark our job FINISHED; False if it was cancelled or taken over meanwhile."""
        return self.jobs.end(job_id, worker_id, FINISHED, self._now(), {"result": result})

    def fail(self, job_id: str, worker_id: str, error: str, fault: str | None = None) -> bool:
        """Mark our job FAILED with a message (`fault`: the storage that failed it, if one did;
        kept in its result as {"fault": ...})."""
        changes: dict[str, Any] = {"error": error}
        if fault is not None:
            changes["result"] = {"fault": fault}
        return self.jobs.end(job_id, worker_id, FAILED, self._now(), changes)

    def retry_later(self, job_id: str, worker_id: str, seconds: float) -> None:
        """Keep our claim for `seconds` more, then let any worker take the job over (as after a
        crash, so it resumes where it stopped); JobLost if it is no longer ours."""
        self.heartbeat(job_id, worker_id, seconds)

    def cancel(self, job_id: str) -> bool:
        """Cancel a PENDING or RUNNING job (its worker stops at its next heartbeat)."""
        return self.jobs.cancel(job_id, self._now())

    def update(self, job_id: str, changes: dict[str, Any]) -> None:
        self.jobs.update(job_id, changes)

    def list(self, *, kind: str | None = None, owner: str | None = None,
             states: list[str] | tuple[str, ...] | None = None,
             queues: list[str | None] | None = None, started_since: str | None = None,
             skip: int = 0, limit: int = 0) -> tuple[list[Job], int]:
        """Jobs newest first, narrowed by kind, owner, states, queues (None in `queues` is a job
        that names none) and a start at or after a time; and how many match."""
        return self.jobs.list(kind, owner, states, skip, limit, queues=queues,
                              started_since=started_since)

    def depth(self) -> int:
        """How many jobs wait or run."""
        return sum(self.active_counts().values())

    def active_counts(self) -> dict[tuple[str, str], int]:
        """How many jobs wait or run, by (kind, state)."""
        return self.jobs.active_counts()

    def oldest_pending(self) -> str | None:
        """When the job waiting longest was queued (None: none waits)."""
        return self.jobs.oldest_pending()


@dataclass
class JobContext:
    """What a job handler gets: its job, and a heartbeat that keeps the lease (or stops it)."""

    queue: JobQueue
    job: Job
    worker_id: str
    lease_seconds: float

    def heartbeat(self, progress: dict[str, Any] | None = None) -> None:
        """Call often (e.g. every batch); raises JobLost when the job must stop."""
        self.queue.heartbeat(self.job.id, self.worker_id, self.lease_seconds, progress)

    def save_progress(self, progress: dict[str, Any]) -> None:
        """Record the progress of work just done (see JobQueue.save_progress)."""
        self.queue.save_progress(self.job.id, self.worker_id, progress)


Handler = Callable[[JobContext], "dict[str, Any] | None"]
# Wraps the handler of a kind of job (timing, metrics); applied to every handler at run time.
Middleware = Callable[[str, Handler], Handler]


class Workers:
    """Runs queued jobs with registered handlers, in threads of this process or by hand."""

    def __init__(self, app: Any, queue: JobQueue, lease_seconds: float = 60.0,
                 poll_seconds: float = 1.0, max_attempts: int = 5) -> None:
        self.app = app
        self.queue = queue
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.max_attempts = max_attempts
        self.handlers: dict[str, Handler] = {}
        self._middleware: list[Middleware] = []
        self._started: list[Callable[[int], object]] = []
        self._stopped: list[Callable[[], object]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def register(self, kind: str, handler: Handler) -> None:
        """Run jobs of `kind` with `handler(context) -> result dict`."""
        self.handlers[kind] = handler

    def use(self, middleware: Middleware) -> None:
        """Wrap every handler, registered before or after this call, in `middleware(kind, handler)`."""
        self._middleware.append(middleware)

    def on_start(self, callback: Callable[[int], object]) -> None:
        """Call `callback(threads)` whenever this process starts job threads (`start`)."""
        self._started.append(callback)

    def on_stop(self, callback: Callable[[], object]) -> None:
        """Call `callback()` after the job threads have stopped (`stop`)."""
        self._stopped.append(callback)

    def handler(self, kind: str) -> Handler:
        """The handler of `kind` inside every middleware (the first one added outermost)."""
        handler = self.handlers[kind]
        for middleware in reversed(self._middleware):
            handler = middleware(kind, handler)
        return handler

    def wake(self) -> None:
        """Tell idle worker threads that a job was queued."""
        self._wake.set()

    def run_once(self, worker_id: str | None = None) -> Job | None:
        """Claim one job and run it to its end in this thread; return the job or None."""
        worker_id = worker_id or f"{self.name}:{threading.get_ident()}"
        job = self.queue.claim(sorted(self.handlers), worker_id, self.lease_seconds)
        if job is None:
            return None
        context = JobContext(self.queue, job, worker_id, self.lease_seconds)
        self.queue.mark_started(job.id, worker_id)
        with self.app.app_context():
            try:
                result = self.handler(job.kind)(context)
            except JobLost:
                logger.info("job %s (%s) stopped: cancelled or taken over", job.id, job.kind)
                return self.queue.get(job.id)
            except Exception as exc:  # the job fails (or waits something out); the worker goes on
                fault = fault_of(exc, self.app.extensions.get("termsync.store"))
                if fault is not None:
                    self._wait_out(job, worker_id, fault)
                    return self.queue.get(job.id)
                if self._database_unavailable(exc):
                    # not the job's fault (a database or network outage): it keeps its lease,
                    # and when that expires any worker, this one included, takes it over and
                    # resumes; failing it here could land once the link is back
                    logger.warning("job %s (%s) interrupted, the database is unavailable: %s",
                                   job.id, job.kind, exc)
                    return None
                logger.exception("job %s (%s) failed", job.id, job.kind)
                self.queue.fail(job.id, worker_id, f"{exc.__class__.__name__}: {exc}")
                return self.queue.get(job.id)
        self.queue.finish(job.id, worker_id, result)
        return self.queue.get(job.id)

    def _wait_out(self, job: Job, worker_id: str, fault: StorageFault) -> None:
        """A storage fault stopped the job: retry it later (the claim's lease is stretched to
        attempts x JOB_LEASE_SECONDS), or fail it, as a fault, after JOB_MAX_ATTEMPTS."""
        attempts = job.attempts or 1
        if attempts >= self.max_attempts:
            logger.error("job %s (%s) failed: %s, %d attempts", job.id, job.kind, fault,
                         attempts)
            self.queue.fail(job.id, worker_id,
                            f"{fault.message.removesuffix(' Try again later.')} "
                            f"({attempts} attempts)", fault=fault.where or "storage")
            return
        delay = self.lease_seconds * attempts
        logger.warning("job %s (%s) stopped by a storage fault: %s; retried in %.0f s",
                       job.id, job.kind, fault, delay)
        try:
            self.queue.retry_later(job.id, worker_id, delay)
        except Exception:  # the database itself cannot be written: its lease runs out as is
            logger.warning("job %s: could not stretch its lease", job.id, exc_info=True)

    def _database_unavailable(self, error: BaseException) -> bool:
        """Whether `error` says the database is down or unreachable (the store knows)."""
        store = getattr(self.app, "extensions", {}).get("termsync.store")
        return store is not None and bool(store.is_unavailable(error))

    def run_until_idle(self, limit: int = 1000) -> int:
        """Run jobs until none is left (tests and the CLI use this); return how many ran."""
        count = 0
        while count < limit and self.run_once() is not None:
            count += 1
        return count

    def start(self, threads: int) -> None:
        """Start worker threads that poll the queue until stop(), then the `on_start` hooks.

        Both ways a process runs jobs come through here: create_app (BACKGROUND_WORKERS > 0) and
        `termsync worker` (--threads), so what hooks start (heartbeat, maintenance) never lags.
        """
        for number in range(threads):
            worker_id = f"{self.name}:{number}:{uuid.uuid4().hex[:6]}"
            thread = threading.Thread(target=self._loop, args=(worker_id,), daemon=True,
                                      name=f"termsync-worker-{number}")
            thread.start()
            self._threads.append(thread)
        if threads > 0:
            for callback in self._started:
                callback(threads)

    def _loop(self, worker_id: str) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once(worker_id)
            except Exception:  # the database hiccupped: wait and poll again
                logger.exception("worker %s could not poll the queue", worker_id)
                ran = None
            if ran is None:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask worker threads to stop after their current job, wait for them, run `on_stop` hooks."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        for callback in self._stopped:
            callback()
