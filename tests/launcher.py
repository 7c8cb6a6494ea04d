"""Runs a real entry point (`termsync` or `termsync-sync`) with a test-only crash point: the
process SIGKILLs itself right after the N-th call of the method behind the point returns.

    python -m tests.launcher --kill-at import-batch:4 termsync serve --port 0
    python -m tests.launcher --kill-at sync-page:2 termsync-sync once --config sync.toml --json

`--kill-at POINT:N` may also come from the environment variable TERMSYNC_TEST_KILL_AT.
TERMSYNC_TEST_HOLD_AT="POINT:N[,POINT:N]" with TERMSYNC_TEST_HOLD_DIR instead holds the calling
thread after the N-th call: it creates `held-POINT` in that directory and waits until the test
creates `release-POINT` (the multi-host test cuts a host's link while it is mid-work).
Production code has no crash points and reads no switch for them: the launcher patches the
method (on every backend that has it) before handing over to the real entry point.

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
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ENV = "TERMSYNC_TEST_KILL_AT"
HOLD_ENV, HOLD_DIR_ENV = "TERMSYNC_TEST_HOLD_AT", "TERMSYNC_TEST_HOLD_DIR"
PROGRAMS = {"termsync": "app.cli", "termsync-sync": "sync.cli"}
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


def main(argv: Sequence[str] | None = None) -> int:
    """Install the crash point, then run the named program with the remaining arguments."""
    parser = argparse.ArgumentParser(prog="python -m tests.launcher")
    parser.add_argument("--kill-at", default=os.environ.get(ENV))
    parser.add_argument("program", choices=sorted(PROGRAMS))
    args, rest = parser.parse_known_args(argv)
    if args.kill_at:
        install(args.kill_at)
    entry = importlib.import_module(PROGRAMS[args.program]).main
    return int(entry(rest))


if __name__ == "__main__":
    sys.exit(main())
