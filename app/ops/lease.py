"""Maintenance leases: a row (or document) in the database that lets one process of any number run a task."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ..store.interfaces import Leases

logger = logging.getLogger(__name__)

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_holder() -> str:
    """host:pid:thread, unique enough to tell lease holders apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:6]}"


class MaintenanceLease:
    """A named lease: `acquire()` succeeds for one holder until `ttl` seconds pass.

    The lease is one record keyed by its name, taken by one atomic update that only overwrites an
    expired lease (store.leases). No clocks are compared across machines except through `until`,
    so keep host clocks in NTP sync (seconds matter, not ms).
    """

    def __init__(self, leases: Leases, name: str, ttl: float, holder: str | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.leases = leases
        self.name = name
        self.ttl = ttl
        self.holder = holder or default_holder()
        self.clock = clock

    def acquire(self) -> bool:
        """Take the lease if it is free or expired; True if this holder has it now."""
        now = self.clock()
        return self.leases.acquire(self.name, self.holder, now, now + timedelta(seconds=self.ttl))

    def release(self) -> None:
        """Give the lease back now (only if still ours), so that another holder may run."""
        self.leases.release(self.name, self.holder, self.clock())

    def record(self, **fields: Any) -> None:
        """Note facts about the last run (finished_on, error) on the lease document."""
        self.leases.record(self.name, self.holder, fields)


def run_exclusively(leases: Leases, name: str, ttl: float, fn: Callable[[], T], *,
                    holder: str | None = None) -> tuple[bool, T | None]:
    """Run `fn` if this process wins the lease `name`; return (ran, fn's result).

    The lease is kept for `ttl` seconds after a successful run, so a periodic task scheduled every
    `ttl` seconds in each of M processes runs once per period across all of them. If `fn` raises,
    the lease is released (another process retries at its next tick) and the error propagates.
    `ttl` must exceed the task's run time; otherwise a second process may start it meanwhile.
    """
    lease = MaintenanceLease(leases, name, ttl, holder)
    if not lease.acquire():
        logger.debug("maintenance %s: another process holds the lease", name)
        return False, None
    try:
        result = fn()
    except BaseException as exc:
        lease.release()
        lease.record(error=f"{exc.__class__.__name__}: {exc}", finished_on=utcnow())
        raise
    lease.record(error=None, finished_on=utcnow())
    return True, result
