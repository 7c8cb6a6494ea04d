"""Scheduled maintenance in job-running processes: heartbeats, and tasks run once across all.

Every process that runs jobs (web processes with BACKGROUND_WORKERS > 0, `termsync worker`
processes) starts a MaintenanceScheduler. It writes this process's heartbeat and, for each
registered task, tries the task's lease every interval: whichever process wins runs it, the others
skip that period. Feature modules register their periodic work with `add_maintenance_task`.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask

from ..config import settings_of
from ..jobs import JobQueue, utcnow
from ..timeutil import format_time
from .heartbeat import WorkerHeartbeats
from .lease import run_exclusively

logger = logging.getLogger(__name__)

TASKS = "termsync.maintenance.tasks"
SCHEDULER = "termsync.maintenance.scheduler"
HEARTBEAT_JOB_ID = "termsync-worker-heartbeat"


@dataclass(frozen=True)
class MaintenanceTask:
    """Periodic work that must run once per interval across every worker process."""

    name: str
    interval: float
    run: Callable[[], Any]


def add_maintenance_task(app: Flask, name: str, interval: float, run: Callable[[], Any]) -> None:
    """Register `run()` to be run every `interval` seconds by one worker process of all.

    `run` is called inside an app context. Call this from a feature's init (before the scheduler
    starts at the end of create_app, or before `start_worker_services` in `termsync worker`).
    """
    tasks: dict[str, MaintenanceTask] = app.extensions.setdefault(TASKS, {})
    tasks[name] = MaintenanceTask(name, float(interval), run)


def recover_leases(queue: JobQueue, max_attempts: int) -> dict[str, int]:
    """Give up on jobs whose workers keep dying: expired leases after `max_attempts` runs fail.

    Jobs with an expired lease and fewer attempts need nothing: the next `claim()` takes them
    over. A job that kills its worker every time (out of memory on a huge source) would otherwise
    be retried for ever, taking a worker down each time.
    """
    now = format_time(queue.clock())
    abandoned = queue.jobs.fail_abandoned(
        now, max_attempts, f"Its worker was lost {max_attempts} times (lease expired); "
                           "giving up. Request it again to retry.")
    waiting = queue.jobs.count_expired(now)
    if abandoned:
        logger.warning("maintenance: %d job(s) failed after %d lost workers", abandoned,
                       max_attempts)
    if waiting:
        logger.info("maintenance: %d job(s) with an expired lease wait for takeover", waiting)
    return {"failed": abandoned, "expired": waiting}


def purge_expired(store: Any, now: datetime) -> dict[str, int]:
    """Delete heartbeats and rate counters past their expiry: a TTL index does it on a real
    MongoDB, nothing does on SQLite between writes or on servers without TTL indexes (FerretDB).
    Nothing reads them as live anyway (`alive` and the counters' windows look at times)."""
    return {"heartbeats": store.heartbeats.purge(now), "rate_counters": store.rate_counters.purge(now)}


class MaintenanceScheduler:
    """APScheduler jobs of one process: its heartbeat, and each task under its lease."""

    def __init__(self, app: Flask, name: str, threads: int) -> None:
        self.app = app
        self.name = name
        self.threads = threads
        self.store = app.extensions["termsync.store"]
        self.heartbeats = WorkerHeartbeats(self.store.heartbeats)
        self.heartbeat_seconds = settings_of(app).ops.worker_heartbeat_seconds
        self.scheduler: Any = None

    def beat(self) -> None:
        try:
            self.heartbeats.beat(self.name, self.threads, self.heartbeat_seconds * 3)
        except Exception:  # the database hiccupped; the next beat tries again
            logger.warning("worker heartbeat failed", exc_info=True)

    def run_task(self, task: MaintenanceTask) -> None:
        """One tick of a task: run it if this process wins its lease for this interval."""
        with self.app.app_context():
            try:
                ran, result = run_exclusively(self.store.leases, task.name, task.interval * 0.9,
                                              task.run)
            except Exception:  # the scheduler keeps running; the next tick (anywhere) retries
                logger.exception("maintenance task %s failed", task.name)
                return
        if ran:  # every interval: what a task changed it logs itself
            logger.debug("maintenance task %s ran: %s", task.name, result)

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone="UTC")
        self.beat()
        scheduler.add_job(self.beat, "interval", seconds=self.heartbeat_seconds,
                          id=HEARTBEAT_JOB_ID, coalesce=True, max_instances=1)
        for task in self.app.extensions.get(TASKS, {}).values():
            if task.interval > 0:
                scheduler.add_job(self.run_task, "interval", seconds=task.interval, args=[task],
                                  id=f"termsync-maintenance-{task.name}", coalesce=True,
                                  max_instances=1, next_run_time=utcnow())
        scheduler.start()
        self.scheduler = scheduler

    def stop(self) -> None:
        """Stop scheduling, and wait for a task or heartbeat that is running: the process
        closes its store next, and a task still using a database connection that is closed
        under it can crash the process (SQLite)."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        try:
            self.heartbeats.forget(self.name)
        except Exception:
            logger.warning("could not remove the worker heartbeat", exc_info=True)


def start_worker_services(app: Flask, threads: int) -> MaintenanceScheduler:
    """Heartbeat and scheduled maintenance for a process that runs `threads` job threads.

    An `on_start` hook of the app's Workers (init_ops adds it), so create_app with
    BACKGROUND_WORKERS > 0 and `termsync worker` both get it. Idempotent per app.
    """
    existing = app.extensions.get(SCHEDULER)
    if existing is not None:
        return existing
    workers = app.extensions["termsync.jobs"]
    scheduler = MaintenanceScheduler(app, workers.name, threads)
    scheduler.start()
    app.extensions[SCHEDULER] = scheduler
    atexit.register(scheduler.stop)
    logger.info("worker %s: %d job thread(s), heartbeat every %ss, maintenance: %s", workers.name,
                threads, scheduler.heartbeat_seconds,
                ", ".join(sorted(app.extensions.get(TASKS, {}))) or "none")
    return scheduler


def stop_worker_services(app: Flask) -> None:
    """Stop this app's heartbeat and maintenance scheduler (and remove its heartbeat)."""
    scheduler = app.extensions.pop(SCHEDULER, None)
    if scheduler is not None:
        atexit.unregister(scheduler.stop)  # stopped now; at exit its database may be gone
        scheduler.stop()
