"""Fixtures for real OCL clients against a live termsync on loopback.

The server is the real app (`create_app`) served by werkzeug in a thread, with the request handler
`termsync serve` uses (the app's `Date` header, not the server's). Build jobs run when a test says
so (`Live.run_jobs`), or in background worker threads for clients that poll on their own timer
(`Live.start_workers`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from app import create_app, timeutil
from app.serving import AppDateRequestHandler
from tests.conftest import ADMIN, ADMIN_TOKEN, app_config

DEMO = "/orgs/DemoOrg/sources/DemoSource/"


class LiveServer:
    """A WSGI app served on 127.0.0.1 (a free port) by werkzeug in a thread."""

    def __init__(self, app: Any) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True,
                                                  request_handler=AppDateRequestHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="termsync-live")

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@dataclass
class Live:
    """The live server, its app and an in-process curator client."""

    app: Any
    url: str
    curator: Any
    workers_started: bool = field(default=False)

    def run_jobs(self) -> int:
        """Run every queued job (export builds, imports) in this thread."""
        return int(self.app.extensions["termsync.jobs"].run_until_idle())

    def start_workers(self, threads: int = 2) -> None:
        """Run jobs in background threads from now on (for clients that poll on a timer)."""
        self.app.extensions["termsync.jobs"].start(threads)
        self.workers_started = True

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        """A curator's request (as admin), asserting its status."""
        answer = self.curator.open(path, method=method, headers=ADMIN, **kwargs)
        assert answer.status_code == expect, (method, path, answer.status_code, answer.get_data())
        return answer.get_json(silent=True)


@pytest.fixture(autouse=True)
def _quiet_werkzeug() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def _live(tmp_path: Path, **config: Any) -> Iterator[Live]:
    app = create_app(app_config(EXPORT_DIR=str(tmp_path / "exports"),
                                IMPORT_DIR=str(tmp_path / "imports"), **config))
    live = None
    try:
        with LiveServer(app) as server:
            live = Live(app, server.url, app.test_client())
            yield live
    finally:
        if live is not None and live.workers_started:
            app.extensions["termsync.jobs"].stop()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Live]:
    """A live termsync with OCL's demo source, released as v1.0 (its export built)."""
    for live in _live(tmp_path, LOAD_DEMO=True):
        live.run_jobs()
        yield live


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[Live]:
    """A live termsync with nothing but the admin account."""
    yield from _live(tmp_path)


class StepClock:
    """Stands in for `app.timeutil.now`: every reading is `step` later than the last, so
    each write and each read of the server falls in its own second (the diff protocol's `Date`
    has second precision) without any waiting."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.moment = start
        self.step = step
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            self.moment += self.step
            return self.moment


@pytest.fixture
def step_clock(monkeypatch: pytest.MonkeyPatch) -> StepClock:
    """Server time that moves ten seconds at every reading (installed before the app starts)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    clock = StepClock(start, timedelta(seconds=10))
    monkeypatch.setattr(timeutil, "now", clock)
    return clock


@pytest.fixture
def ocl(tmp_path: Path) -> Callable[..., Callable[..., subprocess.CompletedProcess[str]]]:
    """Run the real `ocl` command (PyPI `openconceptlab`) against a server, as its own process."""
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCL_")}
    env["HOME"] = str(home)  # no ~/.ocl/config.json of the machine running the tests

    def for_server(url: str) -> Callable[..., subprocess.CompletedProcess[str]]:
        def run(*args: str, check: bool = True, timeout: float = 120.0,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "ocl_cli", "--json", "--server", url,
                       "--token", ADMIN_TOKEN, *args]
            done = subprocess.run(command, capture_output=True, text=True, env=env,
                                  timeout=timeout, cwd=cwd or tmp_path, check=False)
            if check:
                assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
            return done
        return run

    return for_server
