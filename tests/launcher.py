"""Runs a real entry point (`termsync`, `termsync-sync` or `gunicorn`) with test-only hooks: a
crash point (the process SIGKILLs itself right after the N-th call of the method behind the point
returns) and a clock that tests move forward.

    python -m tests.launcher --kill-at import-batch:4 termsync serve --port 0
    python -m tests.launcher --kill-at sync-page:2 termsync-sync once --config sync.toml --json
    python -m tests.launcher --clock /tmp/x/clock gunicorn -c gunicorn.conf.py wsgi:app

`--kill-at POINT:N` may also come from the environment variable TERMSYNC_TEST_KILL_AT,
`--clock FILE` from TERMSYNC_TEST_CLOCK and `--hold-jobs FILE` from TERMSYNC_TEST_HOLD_JOBS.
Production code has no crash points, no clock to move and no hold on jobs, and reads no switch
for them: the launcher patches the method (on every backend that has it), `app.timeutil.now` or
`app.jobs.JobQueue.claim` before handing over to the real entry point. gunicorn's worker
processes are forked from the process the launcher patched, and inherit the patches.

The hold: while FILE exists, the process claims no job (queued jobs wait, as they would for a
busy worker), so that a test sees a build or an import queued before it runs
(`tests.stack.Stack.jobs_held`).

The clock: `app.timeutil.now`, which stamps every item, version and `Date`, reads the real time
plus the number of seconds written in FILE (none while FILE is missing or empty). Every process
started with the same FILE reads the same clock, and a test moves all of them forward at once by
writing a larger number (`tests.stack.StackClock`), so that writes fall in different seconds, or
reads come long enough after writes, without waiting.

TERMSYNC_TEST_HOLD_AT="POINT:N[,POINT:N]" with TERMSYNC_TEST_HOLD_DIR instead holds the calling
thread after the N-th call of a point: it creates `held-POINT` in that directory and waits until
the test creates `release-POINT` (the multi-host test cuts a host's link while it is mid-work;
tests/wsgi_killable.py installs it in gunicorn workers).

Points:
- `import-batch`: a bulk-import batch applied and its progress written, not yet committed;
- `export-build`: an export build's heartbeat, the zip half written to its temp file;
- `version-cut`: a version cut recorded, not yet committed;
- `sync-page`: a subscriber diff page applied (`apply_changes`), its cursor not yet saved;
- `sync-export-batch`: a batch of an export written into the subscriber's staging area;
- `sync-delta-batch`: a batch of a delta package written into its open changeset, not committed.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ENV = "TERMSYNC_TEST_KILL_AT"
HOLD_AT_ENV, HOLD_DIR_ENV = "TERMSYNC_TEST_HOLD_AT", "TERMSYNC_TEST_HOLD_DIR"
CLOCK_ENV = "TERMSYNC_TEST_CLOCK"
HOLD_JOBS_ENV = "TERMSYNC_TEST_HOLD_JOBS"
PROGRAMS = {"termsync": "app.cli", "termsync-sync": "sync.cli", "gunicorn": "gunicorn.app.wsgiapp"}
POINTS: dict[str, tuple[str, list[str]]] = {
    "import-batch": ("save_progress", ["app.jobs:JobContext"]),
    "export-build": ("heartbeat", ["app.jobs:JobContext"]),
    "version-cut": ("insert", ["app.store.sqlite.content:Versions",
                               "app.store.mongo.content:Versions"]),
    "sync-page": ("apply_changes", ["sync.store.sqlite:SQLiteStore",
                                    "sync.store.mongo:MongoStore"]),
    "sync-export-batch": ("load_batch", ["sync.store.sqlite:SQLiteStore",
                                         "sync.store.mongo:MongoStore"]),
    "sync-delta-batch": ("write_changes", ["sync.store.sqlite:SQLiteStore",
                                           "sync.store.mongo:MongoStore"]),
}


def kill_after(method: Callable[..., Any], count: int, point: str) -> Callable[..., Any]:
    """`method`, which SIGKILLs the process once its `count`-th call has returned."""
    calls = 0

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        """The method; then SIGKILL if this was the N-th call."""
        nonlocal calls
        result = method(*args, **kwargs)
        calls += 1
        if calls == count:
            logger.warning("crash point %s reached (call %d): killing process %d", point, calls,
                           os.getpid())
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return wrapper


def hold_after(method: Callable[..., Any], count: int, point: str,
               directory: str) -> Callable[..., Any]:
    """`method`, which holds the calling thread after its `count`-th call has returned until
    the test creates `release-POINT` in `directory` (it announces `held-POINT` there)."""
    calls = 0
    guard = threading.Lock()

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        """The method; then hold if this was the N-th call."""
        nonlocal calls
        result = method(*args, **kwargs)
        with guard:
            calls += 1
            reached = calls == count
        if reached:
            logger.warning("hold point %s reached (call %d) in process %d", point, count,
                           os.getpid())
            Path(directory, f"held-{point}").touch()
            released = Path(directory, f"release-{point}")
            while not released.exists():
                time.sleep(0.05)  # waits for the test, not for our own code
        return result

    return wrapper


def install(spec: str, hold_directory: str | None = None) -> None:
    """Patch the method named by each `POINT:N` of `spec` on every class that has it: a crash
    point, or a hold point when `hold_directory` is given."""
    for one in spec.split(","):
        point, _, count = one.partition(":")
        if point not in POINTS:
            raise SystemExit(f"unknown crash point {point!r}; known: {', '.join(POINTS)}")
        name, targets = POINTS[point]
        for target in targets:
            module_name, _, class_name = target.partition(":")
            owner = getattr(importlib.import_module(module_name), class_name)
            method = getattr(owner, name)
            setattr(owner, name, kill_after(method, int(count or 1), point)
                    if hold_directory is None
                    else hold_after(method, int(count or 1), point, hold_directory))


def clock_offset(path: str) -> timedelta:
    """The seconds written in the clock file (0 while it is missing or empty)."""
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return timedelta(0)
    return timedelta(seconds=float(text)) if text else timedelta(0)


def install_clock(path: str) -> None:
    """Make `app.timeutil.now` the real time plus the clock file's offset."""
    from app import timeutil

    def now() -> datetime:
        """The real time, moved forward as the test says."""
        return datetime.now(UTC) + clock_offset(path)

    timeutil.now = now


class hold_lock:
    """The lock (an exclusive flock on `path`.lock) under which a claim looks for the hold file
    and claims, and under which a test creates the hold file: a claim that looked before the
    file was there has ended before anything the test queues after creating it."""

    def __init__(self, path: str) -> None:
        self.path = f"{path}.lock"

    def __enter__(self) -> None:
        import fcntl

        self.handle = open(self.path, "a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        self.handle.close()  # closing the file releases its lock


def install_hold(path: str) -> None:
    """Make `JobQueue.claim` take nothing while the file at `path` exists."""
    from app.jobs import JobQueue
    from app.model import Job

    claim = JobQueue.claim

    @functools.wraps(claim)
    def held_claim(self: JobQueue, *args: Any, **kwargs: Any) -> Job | None:
        """No job while the test holds them; else the real claim."""
        with hold_lock(path):
            if os.path.exists(path):
                return None
            return claim(self, *args, **kwargs)

    JobQueue.claim = held_claim  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    """Install the crash point, the clock and the hold on jobs, then run the named program with
    the remaining arguments."""
    parser = argparse.ArgumentParser(prog="python -m tests.launcher")
    parser.add_argument("--kill-at", default=os.environ.get(ENV))
    parser.add_argument("--clock", default=os.environ.get(CLOCK_ENV))
    parser.add_argument("--hold-jobs", default=os.environ.get(HOLD_JOBS_ENV))
    parser.add_argument("program", choices=sorted(PROGRAMS))
    args, rest = parser.parse_known_args(argv)
    if args.kill_at:
        install(args.kill_at)
    if args.clock:
        install_clock(args.clock)
    if args.hold_jobs:
        install_hold(args.hold_jobs)
    if args.program == "gunicorn":  # gunicorn reads its arguments from sys.argv
        sys.argv = ["gunicorn", *rest]
        return int(importlib.import_module(PROGRAMS[args.program]).run() or 0)
    entry = importlib.import_module(PROGRAMS[args.program]).main
    return int(entry(rest))


if __name__ == "__main__":
    sys.exit(main())
