"""gunicorn with gunicorn.conf.py as production runs it: a socket per process on a fixed port, and
the warning when it listens where clients can reach it without the proxy. What clients get through
the whole stack (nginx in front) is tests/clients/test_stack.py's."""

from __future__ import annotations

import logging
import os
import runpy
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from gunicorn.config import Config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0


def listening_sockets(port: int) -> int:
    """How many sockets listen on a local TCP port (Linux's /proc/net/tcp: state 0A)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


def test_each_process_listens_on_a_socket_of_its_own(tmp_path: Path) -> None:
    """On a fixed port every gunicorn process has its own socket (SO_REUSEPORT), so the kernel
    spreads new connections over them; a burst of keep-alive connections cannot all end on
    one process. On an ephemeral port (the other tests here) they share one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
    env.update(TERMSYNC_DATABASE_URI=f"sqlite:///{tmp_path / 'termsync.db'}",
               TERMSYNC_EXPORT_DIR=str(tmp_path / "exports"), TERMSYNC_ACCESS_LOG="false",
               GUNICORN_WORKERS="2")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                "-b", f"127.0.0.1:{port}", "wsgi:app"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stderr, selectors.EVENT_READ)
        booted, until = 0, time.monotonic() + DEADLINE
        while booted < 2 and time.monotonic() < until:
            if selector.select(timeout=1.0):
                booted += "Booting worker" in process.stderr.readline()
        assert booted == 2
        while listening_sockets(port) < 2 and time.monotonic() < until:
            time.sleep(0.1)  # a process binds its socket as it boots
        assert listening_sockets(port) == 2
        with requests.Session() as session:
            for _ in range(20):
                assert session.get(f"http://127.0.0.1:{port}/healthz", timeout=30).ok
    finally:
        process.terminate()
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()


@pytest.mark.parametrize(("bind", "warned"), [
    (["127.0.0.1:8000"], False), (["localhost:8000"], False), (["[::1]:8000"], False),
    (["unix:/run/termsync.sock"], False), (["0.0.0.0:8000"], True),
    (["127.0.0.1:8000", "[::]:8000"], True), (["terms.example.org:8000"], True)])
def test_gunicorn_warns_when_it_listens_beyond_loopback(bind: list[str], warned: bool,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """gunicorn served bare gives clients its own clock as `Date`: gunicorn.conf.py says so at
    startup wherever it listens but on loopback (or a unix socket) for the proxy."""
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings["bind"] == "127.0.0.1:8000" or os.environ.get("TERMSYNC_BIND")
    config = Config()
    config.set("bind", bind)
    server = SimpleNamespace(cfg=config, log=logging.getLogger("gunicorn.error"))
    with caplog.at_level(logging.WARNING, logger="gunicorn.error"):
        settings["when_ready"](server)
    assert bool(caplog.records) is warned
    if warned:
        assert "deploy/nginx/termsync.conf" in caplog.text and "Date" in caplog.text
