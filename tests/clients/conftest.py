"""Fixtures for real OCL clients against the deployed stack (tests/stack.py: nginx with
deploy/nginx/termsync.conf, gunicorn with gunicorn.conf.py, `termsync worker`), which the tests
of a session share, each in organizations of its own.

Jobs (export builds, imports) run in the stack's worker as they come, as in production; a test
that must see one queued holds them (`stack.jobs_held()`), and `stack.run_jobs()` waits until
the queue is empty. A test that needs writes in different seconds, or reads long enough after
writes, moves the stack's clock forward (`stack.clock.advance`) instead of waiting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.stack import Stack


@dataclass
class Demo:
    """OCL's demo source (23 concepts, 22 mappings, v1.0 released and exported) in an
    organization of the test's own, on the shared stack."""

    stack: Stack
    path: str  # /orgs/{org}/sources/DemoSource/

    @property
    def url(self) -> str:
        """The stack's address (nginx)."""
        return self.stack.url

    @property
    def org(self) -> str:
        """The organization holding this demo."""
        return self.path.split("/")[2]

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        """A curator's request (as admin) through the stack, asserting its status; its JSON."""
        answer = self.stack.call(method, path, expect, **kwargs)
        return answer.json() if answer.content else None


@pytest.fixture
def demo(stack: Stack) -> Demo:
    """The demo source in an organization of this test's own."""
    return Demo(stack, stack.demo())


@pytest.fixture
def ocl(tmp_path: Path) -> Callable[..., Callable[..., subprocess.CompletedProcess[str]]]:
    """Run the real `ocl` command (PyPI `openconceptlab`) against a server, as its own process."""
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCL_")}
    env["HOME"] = str(home)  # no ~/.ocl/config.json of the machine running the tests

    def for_server(url: str, token: str = ADMIN_TOKEN
                   ) -> Callable[..., subprocess.CompletedProcess[str]]:
        def run(*args: str, check: bool = True, timeout: float = 120.0,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "ocl_cli", "--json", "--server", url,
                       "--token", token, *args]
            done = subprocess.run(command, capture_output=True, text=True, env=env,
                                  timeout=timeout, cwd=cwd or tmp_path, check=False)
            if check:
                assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
            return done
        return run

    return for_server
