"""The subscriber installs and runs without the server: nothing under sync/ imports app/, and no
test-only switch (crash points) is read by production code."""

from __future__ import annotations

import ast
from pathlib import Path

SYNC = Path(__file__).resolve().parents[2] / "sync"


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_sync_never_imports_the_server():
    files = sorted(SYNC.rglob("*.py"))
    assert len(files) > 10
    offenders = {str(f.relative_to(SYNC)): sorted(m for m in imported_modules(f)
                                                  if m == "app" or m.startswith("app."))
                 for f in files}
    assert {f: m for f, m in offenders.items() if m} == {}


def test_no_crash_point_switch_in_production_code():
    for path in SYNC.rglob("*.py"):
        text = path.read_text()
        for switch in ("FAULT_KILL", "KILL_AT", "kill_point", "SIGKILL"):
            assert switch not in text, (path, switch)
