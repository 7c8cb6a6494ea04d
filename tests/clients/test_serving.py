"""Under gunicorn (as production runs it), clients get the application's `Date` and only that one:
an export download's is its version's `lastUpdated` (the OpenMRS module stores it)."""

from __future__ import annotations

import os
import re
import selectors
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests

from tests.conftest import ADMIN_TOKEN

from .conftest import DEMO

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0


def listening_url(process: subprocess.Popen[str]) -> str:
    """The address gunicorn logs once it listens."""
    assert process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stderr, selectors.EVENT_READ)
    until = time.monotonic() + DEADLINE
    seen = []
    while time.monotonic() < until:
        if not selector.select(timeout=1.0):
            continue
        line = process.stderr.readline()
        seen.append(line)
        match = re.search(r"Listening at: (http://\S+)", line)
        if match:
            return match.group(1)
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"gunicorn did not start: {''.join(seen)}")


def test_gunicorn_sends_the_apps_date(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
    # its own database: the default (var/termsync.db in the checkout) outlives the test
    env.update(TERMSYNC_LOAD_DEMO="true", TERMSYNC_ADMIN_TOKEN=ADMIN_TOKEN,
               TERMSYNC_DATABASE_URI=f"sqlite:///{tmp_path / 'termsync.db'}",
               TERMSYNC_EXPORT_DIR=str(tmp_path / "exports"),
               TERMSYNC_IMPORT_DIR=str(tmp_path / "imports"), TERMSYNC_JOB_POLL_SECONDS="0.05",
               TERMSYNC_ACCESS_LOG="false", GUNICORN_WORKERS="1")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                "-b", "127.0.0.1:0", "wsgi:app"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = listening_url(process)
        export = f"{url}{DEMO}v1.0/export/"
        until = time.monotonic() + DEADLINE
        while True:  # the release's export builds in the server's own worker threads
            answer = requests.get(export, timeout=30)
            if answer.status_code == 200 or time.monotonic() > until:
                break
            assert answer.status_code == 208, answer.status_code
            time.sleep(0.1)  # the server's build, polled as a client would
        assert answer.status_code == 200
        last_updated = datetime.strptime(answer.headers["lastUpdated"], "%Y-%m-%dT%H:%M:%S.%fZ")
        # one Date (requests would join two with a comma), the application's
        assert "," not in answer.headers["Date"].split(",", 1)[1]
        assert parsedate_to_datetime(answer.headers["Date"]) == last_updated.replace(
            microsecond=0, tzinfo=UTC)
        other = requests.get(f"{url}/orgs/", timeout=30)
        assert abs((parsedate_to_datetime(other.headers["Date"]) - datetime.now(UTC)
                    ).total_seconds()) < 60
        assert "," not in other.headers["Date"].split(",", 1)[1]
    finally:
        process.terminate()
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()


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
