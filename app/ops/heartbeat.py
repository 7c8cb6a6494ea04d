"""Worker heartbeats: each process that runs jobs says so every few seconds in MongoDB."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING

COLLECTION = "worker_heartbeats"


def utcnow() -> datetime:
    return datetime.now(UTC)


class WorkerHeartbeats:
    """The `worker_heartbeats` collection: one document per job-running process."""

    def __init__(self, db: Any, clock: Callable[[], datetime] = utcnow) -> None:
        self.beats = db[COLLECTION]
        self.clock = clock

    def ensure_indexes(self) -> None:
        # A real MongoDB deletes heartbeats of processes long gone.
        self.beats.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0)
        self.beats.create_index([("seen_on", ASCENDING)])

    def beat(self, name: str, threads: int, timeout: float) -> None:
        """Record that process `name` runs `threads` job threads and is alive now."""
        now = self.clock()
        self.beats.update_one(
            {"_id": name},
            {"$set": {"host": socket.gethostname(), "pid": os.getpid(), "threads": threads,
                      "seen_on": now, "expires_at": now + timedelta(seconds=max(timeout * 10, 3600))},
             "$setOnInsert": {"started_on": now}},
            upsert=True)

    def forget(self, name: str) -> None:
        """A clean shutdown removes its heartbeat at once."""
        self.beats.delete_one({"_id": name})

    def alive(self, timeout: float) -> list[dict[str, Any]]:
        """Processes seen within the last `timeout` seconds."""
        since = self.clock() - timedelta(seconds=timeout)
        return list(self.beats.find({"seen_on": {"$gte": since}}, {"_id": 1, "threads": 1}))
