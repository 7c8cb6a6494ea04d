"""Under gunicorn (as production runs it), clients get the application's `Date` and only that one:
an export download's is its version's `lastUpdated` (the OpenMRS module stores it)."""

from __future__ import annotations

import os
import re
import selectors
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
