"""No test-only switch (crash points) is read by the subscriber's code: tests/launcher.py patches
the methods instead. (That sync/ imports nothing from app/ is held by tests/test_layering.py.)"""

from __future__ import annotations

from pathlib import Path

SYNC = Path(__file__).resolve().parents[2] / "sync"


def test_no_crash_point_switch_in_production_code():
    for path in SYNC.rglob("*.py"):
        text = path.read_text()
        for switch in ("FAULT_KILL", "KILL_AT", "kill_point", "SIGKILL"):
            assert switch not in text, (path, switch)
