"""Fixed-window rate limits kept in the database, so that they hold across every web instance.

A request is counted by one atomic upsert of the counter `{bucket}:{who}:{window}` (`who` is a
hash of the caller's token, or the client address when anonymous); the counter carries
`expires_at`, after which the store removes it.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..store.interfaces import RateCounters

EXPORTS, IMPORTS, DIFFS = "exports", "imports", "diffs"
DIFF_ENDPOINTS = frozenset({"sources.source", "sources.source_caller",
                            "versions.version", "versions.version_caller"})
EXPORT_PATH = re.compile(r"/export/?$")
IMPORT_PATH = re.compile(r"^/(importers/bulk-import(-parallel-inline)?|manage/bulkimport)(/[^/]+)?/?$")
TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class Allowance:
    """The outcome of counting one request: allowed or not, and the X-RateLimit-* values."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset_seconds)}


class RateLimiter:
    """Counts requests per (bucket, caller, window) in store.rate_counters."""

    def __init__(self, counters: RateCounters, window_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self.window_seconds = max(1, int(window_seconds))
        self.clock = clock

    def hit(self, bucket: str, who: str, limit: int) -> Allowance:
        """Count one request against `limit` per window; the 1st..limit-th are allowed."""
        now = self.clock()
        window = int(now // self.window_seconds)
        ends = (window + 1) * self.window_seconds
        count = self.counters.hit(f"{bucket}:{who}:{window}", datetime.fromtimestamp(ends, UTC))
        reset = max(1, math.ceil(ends - now))
        return Allowance(count <= limit, limit, max(0, limit - count), reset)


def bucket_of(method: str, path: str, endpoint: str | None, args: Any) -> str | None:
    """Which limited bucket a request falls in, if any."""
    if method == "POST" and EXPORT_PATH.search(path):
        return EXPORTS
    if method == "POST" and IMPORT_PATH.match(path):
        return IMPORTS
    if method == "GET" and endpoint in DIFF_ENDPOINTS and is_content_request(args):
        return DIFFS
    return None


def is_content_request(args: Any) -> bool:
    """GET source/version with includeConcepts or includeMappings (a content or diff page)."""
    return any(str(args.get(flag, "")).strip().lower() in TRUE
               for flag in ("includeConcepts", "includeMappings"))


def caller_key(authorization: str, remote_addr: str | None) -> str:
    """Who is counted: a hash of the presented token, or the client address when anonymous."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return "token:" + hashlib.sha256(value.strip().encode()).hexdigest()[:24]
    return f"ip:{remote_addr or 'unknown'}"
