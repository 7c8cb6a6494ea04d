"""Worker heartbeats: each process that runs jobs says so every few seconds in the database."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..store.interfaces import Heartbeats


def utcnow() -> datetime:
    return datetime.now(UTC)


class WorkerHeartbeats:
    """One heartbeat per job-running process (store.heartbeats), with a replaceable clock."""

    def __init__(self, beats: Heartbeats, clock: Callable[[], datetime] = utcnow) -> None:
        self.beats = beats
        self.clock = clock

    def beat(self, name: str, threads: int, timeout: float) -> None:
        """Record that process `name` runs `threads` job threads and is alive now."""
        now = self.clock()
        self.beats.beat(name, {"host": socket.gethostname(), "pid": os.getpid(), "threads": threads},
                        now, now + timedelta(seconds=max(timeout * 10, 3600)))

    def forget(self, name: str) -> None:
        """A clean shutdown removes its heartbeat at once."""
        self.beats.forget(name)

    def alive(self, timeout: float) -> list[dict[str, Any]]:
        """Processes seen within the last `timeout` seconds."""
        return self.beats.alive(self.clock() - timedelta(seconds=timeout))
