"""`termsync-sync` end to end against the stub server: once, status, verify, run + SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import replace

import pytest

from sync.cli import main
from sync.config import load_config
from sync.scheduler import build_scheduler, job_id, run_until_stopped
from sync.store import open_store
from sync.subscriber import build_subscriber

from .conftest import sqlite_uri, tamper
from .ocl_stub import Fault


@pytest.fixture
def config_file(stub_server, tmp_path):
    path = tmp_path / "sync.toml"
    path.write_text(f'''
[[subscriptions]]
name = "demo"
server = "{stub_server.url}"
url = "/orgs/DemoOrg/sources/DemoSource/"
token = "t"
mode = "release"
interval = "1h"
database_uri = "{sqlite_uri(tmp_path)}"
page_size = 7
max_retries = 1
backoff_max = 0.01
''')
    return path


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_once_status_verify(stub, config_file, capsys):
    stub.release("v1")
    code, out, _ = run_cli(capsys, "once", "--config", str(config_file), "--json")
    assert code == 0
    [result] = json.loads(out)
    assert result["ok"] and result["counts"] == {"concepts": 30, "mappings": 20}
    assert result["checksum"] == stub.checksum("v1")

    code, out, _ = run_cli(capsys, "status", "--config", str(config_file), "--json")
    [status] = json.loads(out)
    assert code == 0
    assert status["version"] == "v1" and status["checksum_matches"] is True
    assert status["counts"] == {"concepts": 30, "mappings": 20}
    assert status["last_success"] and status["last_error"] is None
    assert status["last_updated"] == stub.version_payload(stub.version("v1"))["lastUpdated"]
    assert status["database"].startswith("sqlite:///") and status["resuming"] is False

    code, out, _ = run_cli(capsys, "verify", "--config", str(config_file))
    assert code == 0 and "in sync" in out


def test_server_that_stays_down_fails_once_clearly_and_touches_nothing(faults, stub, config_file,
                                                                      capsys):
    stub.release("v1")
    assert run_cli(capsys, "once", "--config", str(config_file))[0] == 0
    stub.put_concept("C0001", name="changed")
    stub.release("v2")
    faults.faults.append(Fault(path="/", status=503, times=10_000, retry_after="0"))
    code, out, _ = run_cli(capsys, "once", "--config", str(config_file))
    assert code == 1
    assert "FAILED" in out and "503" in out and "stub fault 503" in out
    faults.faults.clear()
    code, out, _ = run_cli(capsys, "status", "--config", str(config_file), "--json")
    [status] = json.loads(out)
    assert code == 1  # the last pass failed
    assert status["version"] == "v1" and status["checksum"] == stub.checksum("v1")
    assert "503" in status["last_error"]
    assert run_cli(capsys, "once", "--config", str(config_file))[0] == 0
    code, out, _ = run_cli(capsys, "verify", "--config", str(config_file), "--json")
    assert code == 0 and json.loads(out)[0]["checksum"] == stub.checksum("v2")


def test_verify_detects_local_tampering(stub, config_file, capsys):
    stub.release("v1")
    assert run_cli(capsys, "once", "--config", str(config_file))[0] == 0
    uri = load_config(config_file, {}).subscriptions[0].database_uri
    store = open_store(uri)
    tamper(store, "demo", f"{stub.path}concepts/C0001/", delete=True)
    store.close()
    code, out, _ = run_cli(capsys, "verify", "--config", str(config_file))
    assert code == 1 and "DIFFERS" in out


def test_config_errors_exit_2_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[subscriptions]]\nname = "x"\nserver = "http://h"\nurl = "/orgs/A/sources/B/"\n'
                   'mode = "sometimes"\n')
    code, _, err = run_cli(capsys, "once", "--config", str(bad))
    assert code == 2 and "mode = 'sometimes' must be one of release, snapshot" in err


def test_scheduler_jobs_and_sigterm_stops_at_a_page_boundary(stub, config_file, store):
    config = load_config(config_file, {})
    stop = threading.Event()
    pages: list[int] = []

    def progress(phase, done, total):
        pages.append(done)
        if len(pages) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            # The handler runs in the main thread; go on only once it has, so that the pass
            # cannot finish its last pages before the stop is requested.
            assert stop.wait(120)

    sub = config.subscriptions[0]
    subscriber = build_subscriber(replace(sub, mode="snapshot"), store,
                                  stop_event=stop, progress=progress)
    outcomes = []

    def job(subscription):
        try:
            outcomes.append(subscriber.sync())
        finally:
            stop.set()  # never leave the test waiting should the pass end (or fail) first

    scheduler = build_scheduler(config, job)
    job = scheduler.get_job(job_id(sub))
    assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 3600)
    run_until_stopped(scheduler, stop)  # returns once SIGTERM arrived and the job finished
    [stopped] = outcomes
    assert not stopped.ok and "stopped" in stopped.error
    # the signal lands in the main thread while the job goes on to the next page boundary
    assert 2 <= store.load_state("demo").cursor.pages < 8
    stop.clear()
    finished = subscriber.sync()
    assert finished.ok and finished.checksum == stub.checksum()
