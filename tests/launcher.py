"""Runs the real `termsync-sync` (sync.cli.main) with a test-only crash point: SIGKILL on the N-th call.

    python -m tests.launcher --kill-at sync-page:2 once --config sync.toml --json

`--kill-at POINT:N` (or the environment variable TERMSYNC_TEST_KILL_AT) makes the process SIGKILL
itself right after the N-th call of the store method behind POINT returns, on every store
backend. Production code has no crash points and reads no switch for them: the launcher patches
the method before handing over to the real entry point.

Points:
- `sync-page`: a diff page applied (`apply_changes`), its cursor not yet saved;
- `sync-export-batch`: a batch of an export written into the staging area (`load_batch`).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sync.cli import main as sync_main
from sync.store.mongo import MongoStore
from sync.store.sqlite import SQLiteStore

logger = logging.getLogger(__name__)

ENV = "TERMSYNC_TEST_KILL_AT"
POINTS = {"sync-page": "apply_changes", "sync-export-batch": "load_batch"}
BACKENDS = (SQLiteStore, MongoStore)


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


def install(spec: str) -> None:
    """Patch the store method named by `POINT:N` on every backend."""
    point, _, count = spec.partition(":")
    if point not in POINTS:
        raise SystemExit(f"unknown crash point {point!r}; known: {', '.join(POINTS)}")
    name = POINTS[point]
    for backend in BACKENDS:
        setattr(backend, name, kill_after(getattr(backend, name), int(count or 1), point))


def main(argv: Sequence[str] | None = None) -> int:
    """Install the crash point, then run `termsync-sync` with the remaining arguments."""
    parser = argparse.ArgumentParser(prog="python -m tests.launcher", add_help=False)
    parser.add_argument("--kill-at", default=os.environ.get(ENV))
    args, rest = parser.parse_known_args(argv)
    if args.kill_at:
        install(args.kill_at)
    return sync_main(rest)


if __name__ == "__main__":
    sys.exit(main())
