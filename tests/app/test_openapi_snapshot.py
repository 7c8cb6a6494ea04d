"""The OpenAPI document served at /api/openapi.json is, byte for byte, the committed copy
(tests/fixtures/openapi.json): a refactor that changes the API's description shows here."""

from __future__ import annotations

import difflib
import itertools
import os
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).resolve().parents[1] / "fixtures" / "openapi.json"
# Set to `update` to write the served document over the committed copy (an intended API change).
UPDATE = "OPENAPI_SNAPSHOT"
REGENERATE = (f"If the change to the API is intended, write the new copy with "
              f"`{UPDATE}=update .venv/bin/pytest -q tests/app/test_openapi_snapshot.py`, "
              f"review `git diff {SNAPSHOT.relative_to(SNAPSHOT.parents[2])}` and commit it.")


def first_differences(committed: bytes, served: bytes, lines: int = 40) -> str:
    """The start of a unified diff between the committed and the served document."""
    diff = difflib.unified_diff(committed.decode().splitlines(), served.decode().splitlines(),
                                "committed", "served", lineterm="", n=2)
    return "\n".join(itertools.islice(diff, lines))


def test_openapi_document_is_the_committed_copy(client: Any) -> None:
    answer = client.get("/api/openapi.json")
    assert answer.status_code == 200
    served = answer.get_data()
    if os.environ.get(UPDATE) == "update":
        SNAPSHOT.write_bytes(served)
    committed = SNAPSHOT.read_bytes()
    assert served == committed, (
        f"The OpenAPI document differs from {SNAPSHOT.name}:\n"
        f"{first_differences(committed, served)}\n{REGENERATE}")
