"""How many cases the API fuzzing ran, as a line of pytest's own terminal summary."""

from __future__ import annotations

import sys
from typing import Any

FUZZ_MODULE = "tests.security.test_fuzz_api"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line with the number of schemathesis cases, when the fuzz tests ran."""
    module = sys.modules.get(FUZZ_MODULE)
    cases = getattr(module, "CASES_RUN", None)
    if cases:
        terminalreporter.write_line(f"schemathesis: {len(cases)} cases run")
