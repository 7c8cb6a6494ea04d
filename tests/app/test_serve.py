"""`termsync serve --demo` as a newcomer runs it: a quiet start (at most five lines at INFO), one
access log line per request (werkzeug's own line per request is left out), and termsync's `Date`
(not werkzeug's) on its answers."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow

DEADLINE = 60.0
DEMO_EXPORT = "/orgs/DemoOrg/sources/DemoSource/v1.0/export/"
SERVING = re.compile(r"termsync serving on (http://\S+?)/? ")
# A log record as the text format writes it: time, level, logger ...
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<logger>\S+?)[ :]")


class Output:
    """The lines a process writes (stdout and stderr together), read by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        """Collect lines until one matches `pattern`."""
        until = time.monotonic() + DEADLINE
        while time.monotonic() < until:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self.lines.append(line)
            match = pattern.search(line)
            if match:
                return match
        raise AssertionError("no line matched:\n" + "\n".join(self.lines))

    def rest(self) -> list[str]:
        """Every line so far, once the process has ended."""
        self._thread.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return self.lines


def test_serve_demo_starts_quietly_and_logs_each_request_once(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
    env.update(TERMSYNC_ADMIN_TOKEN="change-me-to-a-long-random-token-0123", TERMSYNC_JOB_POLL_SECONDS="0.05",
               TERMSYNC_DATABASE_URI=f"sqlite:///{tmp_path / 'termsync.db'}",
               TERMSYNC_EXPORT_DIR=str(tmp_path / "exports"),
               TERMSYNC_IMPORT_DIR=str(tmp_path / "imports"), PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--demo", "--port", "0"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output = Output(process)
    requests_sent = 0
    try:
        url = output.wait_for(SERVING).group(1)
        until = time.monotonic() + DEADLINE
        while True:  # the release's export builds in the server's worker threads
            answer = requests.head(f"{url}{DEMO_EXPORT}", timeout=30)
            requests_sent += 1
            if answer.status_code == 200 or time.monotonic() > until:
                break
            time.sleep(0.1)
        assert answer.status_code == 200
        # werkzeug's server sends termsync's Date, once: the release's lastUpdated
        assert answer.headers["Date"].count(",") == 1, answer.headers["Date"]
        released = datetime.strptime(answer.headers["lastUpdated"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert parsedate_to_datetime(answer.headers["Date"]) == released.replace(
            microsecond=0, tzinfo=UTC)
        assert requests.get(f"{url}/orgs/", timeout=30).status_code == 200
        requests_sent += 1
        time.sleep(1.0)  # the first maintenance runs, and anything else the start sets off
    finally:
        process.terminate()
        process.wait(30)
    lines = output.rest()
    assert process.returncode == 0, "\n".join(lines)

    records = [(match.group("level"), match.group("logger"), line)
               for line in lines if (match := RECORD.match(line))]
    access = [line for _, logger, line in records if logger == "termsync.access"]
    assert len(access) == requests_sent, "\n".join(lines)
    assert not [line for line in lines if "werkzeug" in line or '" 200 -' in line], lines
    startup = [line for line in lines if line not in access]
    assert len(startup) <= 5, "\n".join(startup)
    assert {level for level, _, line in records if line not in access} <= {"INFO"}, startup
    assert any("demo content loaded" in line for line in startup)
    print("\n".join(lines))
