"""Test-only crash points: `TERMSYNC_FAULT_KILL_AT="name:N"` SIGKILLs the process the N-th time
`kill_point(name)` is reached. Inert (one environment lookup) when the variable is unset.

Named points: `import-batch` (a bulk-import batch applied, its progress not yet committed),
`export-build` (an export build's heartbeat, the zip half written), `sync-page` (a subscriber diff
page applied, its cursor not yet saved), `sync-export-batch` (a batch of an export loaded into the
subscriber's staging collection). tests/security/test_kill.py uses them.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import Counter

logger = logging.getLogger(__name__)

ENV = "TERMSYNC_FAULT_KILL_AT"
_reached: Counter[str] = Counter()
_lock = threading.Lock()


def kill_point(name: str) -> None:
    """SIGKILL this process here if TERMSYNC_FAULT_KILL_AT names this point and this count."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    with _lock:
        _reached[name] += 1
        reached = _reached[name]
    if reached == int(count or 1):
        logger.warning("%s=%s: killing process %d", ENV, spec, os.getpid())
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
