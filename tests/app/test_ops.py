"""Operations: probes, metrics, request ids and JSON logs, rate limits across instances, leases."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.config import ConfigError
from app.jobs import FAILED, PENDING, RUNNING
from app.ops import MaintenanceLease, run_exclusively
from app.ops.heartbeat import WorkerHeartbeats
from app.ops.logs import JsonFormatter, RequestIdFilter
from app.ops.maintenance import recover_leases
from app.ops.metrics import IMPORT_LINES
from app.store import open_store
from tests.conftest import ADMIN, app_config

ROOT = Path(__file__).resolve().parents[2]
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def shared_apps(tmp_path: Path, count: int = 2, **extra: Any) -> list[Any]:
    """`count` app instances on one database (as processes share one SQLite file or MongoDB),
    each with its own connections."""
    config = app_config(**extra)
    return [create_app(dict(config)) for _ in range(count)]


def dispose(apps: list[Any]) -> None:
    for app in apps[1:]:
        app.extensions["termsync.store"].close()
    apps[0].extensions["termsync.store"].drop()


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    apps = shared_apps(tmp_path, RATE_LIMIT_DIFFS=3, RATE_LIMIT_IMPORTS=2, RATE_LIMIT_EXPORTS=1)
    yield apps[0], apps[1]
    dispose(apps)


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition, or None."""
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        sample, _, value = line.rpartition(" ")
        metric, _, label_text = sample.partition("{")
        if metric != name:
            continue
        found = dict(LABEL.findall(label_text))
        if all(found.get(key) == wanted for key, wanted in labels.items()):
            return float(value)
    return None


# Probes -------------------------------------------------------------------------------------------

def test_healthz_answers_without_the_database(client: Any) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.get_json() == {"status": "ok"}
    assert len(answer.headers["X-Request-ID"]) == 32


def test_readyz_reports_database_workers_and_queue(app: Any, client: Any) -> None:
    app.extensions["termsync.jobs"].queue.submit("nothing-handles-this", {})
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "ok" and body["checks"]["database"]["ok"] is True
    assert body["checks"]["queue"]["depth"] == 1
    assert body["checks"]["queue"]["oldest_pending_seconds"] >= 0
    assert body["checks"]["workers"] == {"ok": True, "alive": 0, "expected": 0}


def test_readyz_is_503_when_the_database_does_not_answer(app: Any, client: Any,
                                                        tmp_path: Path) -> None:
    # A database file that cannot be opened: a directory stands where the file should be.
    (tmp_path / "gone.db").mkdir()
    dead = open_store(f"sqlite:///{tmp_path / 'gone.db'}")
    app.extensions["termsync.readiness"].store = dead
    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["code"] == 503 and "database" in body["message"]
    assert body["checks"]["database"]["ok"] is False
    assert answer.headers["Retry-After"] == "5"
    assert client.get("/healthz").status_code == 200  # liveness does not depend on the database


def test_readyz_degrades_without_the_expected_workers(tmp_path: Path) -> None:
    (app,) = shared_apps(tmp_path, count=1, READY_MIN_WORKERS=1)
    try:
        client = app.test_client()
        body = client.get("/readyz").get_json()
        assert body["status"] == "degraded" and body["checks"]["workers"]["ok"] is False
        WorkerHeartbeats(app.extensions["termsync.store"].heartbeats).beat("worker-1", 4, 30)
        body = client.get("/readyz").get_json()
        assert body["status"] == "ok" and body["checks"]["workers"]["alive"] == 1
    finally:
        dispose([app])


def test_probes_are_in_the_openapi_document(client: Any) -> None:
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)
    assert "503" in paths["/readyz"]["get"]["responses"]


# Metrics ------------------------------------------------------------------------------------------

def test_metrics_count_requests_by_route_not_path(app: Any, client: Any, source: Any) -> None:
    url = source()
    client.get(url)
    client.get(f"{url}?includeConcepts=true")
    client.get(f"{url}?includeConcepts=true&updatedSince=2020-01-01")
    client.get("/no/such/thing/")
    app.extensions["termsync.jobs"].queue.submit("nothing-handles-this", {})
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    text = answer.get_data(as_text=True)
    route = "/<any(orgs,users):owner_kind>/<owner_id>/sources/<source_id>/"
    assert metric_value(text, "termsync_http_requests_total", method="GET", route=route,
                        status="200") == 3
    assert metric_value(text, "termsync_http_requests_total", route="<unmatched>",
                        status="404") == 1
    assert "TestSource" not in text  # raw paths never become labels
    assert metric_value(text, "termsync_http_request_duration_seconds_count", method="GET",
                        route=route) == 3
    assert metric_value(text, "termsync_diff_requests_total", target="source",
                        incremental="true") == 1
    assert metric_value(text, "termsync_diff_requests_total", target="source",
                        incremental="false") == 1
    assert metric_value(text, "termsync_queue_depth", kind="nothing-handles-this",
                        state=PENDING) == 1
    assert metric_value(text, "termsync_database_up") == 1


def test_metrics_are_per_app_and_handles_resolve_to_the_current_app(app: Any) -> None:
    other = create_app(app_config())
    with app.app_context():
        IMPORT_LINES.labels(action="created").inc(5)
    IMPORT_LINES.labels(action="created").inc(1)  # outside any app: ignored, no error
    mine = app.test_client().get("/metrics").get_data(as_text=True)
    theirs = other.test_client().get("/metrics").get_data(as_text=True)
    dispose([other])
    assert metric_value(mine, "termsync_import_lines_total", action="created") == 5
    assert metric_value(theirs, "termsync_import_lines_total", action="created") is None


def test_job_runs_are_counted_and_timed_by_outcome(app: Any) -> None:
    workers = app.extensions["termsync.jobs"]

    def succeed(context: Any) -> dict[str, Any]:
        return {"ok": True}

    def explode(context: Any) -> None:
        raise RuntimeError("boom")

    # registered after init_ops: its middleware times every handler, whenever registered
    workers.register("ops-ok", succeed)
    workers.register("ops-bad", explode)
    workers.queue.submit("ops-ok", {})
    workers.queue.submit("ops-bad", {})
    assert workers.run_until_idle() == 2
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert metric_value(text, "termsync_job_runs_total", kind="ops-ok", outcome="finished") == 1
    assert metric_value(text, "termsync_job_runs_total", kind="ops-bad", outcome="failed") == 1
    assert metric_value(text, "termsync_job_duration_seconds_count", kind="ops-ok",
                        outcome="finished") == 1


# Request ids and logs -----------------------------------------------------------------------------

def test_request_id_is_echoed_when_sane_and_replaced_when_not(client: Any) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "lb-1234.abc"}).headers[
        "X-Request-ID"] == "lb-1234.abc"
    for bad in ("has space", "x" * 200, "new\u00e9line"):
        echoed = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert echoed != bad and len(echoed) == 32


def test_json_log_lines_carry_the_request_id(app: Any, client: Any) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        answer = client.get("/orgs/Nope/", headers={"X-Request-ID": "trace-42"})
        client.get("/healthz", headers={"X-Request-ID": "other"})
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert answer.status_code == 404 and answer.headers["X-Request-ID"] == "trace-42"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == "trace-42"]
    assert mine, lines
    access = [line for line in mine if line["logger"] == "termsync.access"]
    assert access and access[0]["status"] == 404 and access[0]["path"] == "/orgs/Nope/"
    assert access[0]["route"] == "/orgs/<org_id>/" or access[0]["route"].startswith("/orgs/")
    assert {"time", "level", "message", "duration_ms"} <= set(access[0])


def test_bad_ops_config_stops_startup() -> None:
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        create_app(app_config(LOG_FORMAT="xml"))
    with pytest.raises(ConfigError, match="RATE_LIMIT_DIFFS"):
        create_app(app_config(RATE_LIMIT_DIFFS=-1))


# Rate limits --------------------------------------------------------------------------------------

def test_diff_rate_limit_holds_across_instances(twins: tuple[Any, Any]) -> None:
    a, b = twins
    assert a.extensions["termsync.store"] is not b.extensions["termsync.store"]
    client_a, client_b = a.test_client(), b.test_client()
    assert client_a.post("/orgs/", json={"id": "O"}, headers=ADMIN).status_code == 201
    assert client_b.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN).status_code == 201
    diff = "/orgs/O/sources/S/?includeConcepts=true"
    remaining = []
    for client in (client_a, client_b, client_a):
        answer = client.get(diff)
        assert answer.status_code == 200
        assert answer.headers["X-RateLimit-Limit"] == "3"
        remaining.append(answer.headers["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    limited = client_b.get(diff)
    assert limited.status_code == 429
    body = limited.get_json()
    assert body["code"] == 429 and "diffs" in body["message"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert int(limited.headers["X-RateLimit-Reset"]) == int(limited.headers["Retry-After"])
    # Other callers and other requests are not affected: limits are per token and per bucket.
    assert client_a.get(diff, headers=ADMIN).status_code == 200
    assert client_a.get("/orgs/O/sources/S/").status_code == 200
    assert "X-RateLimit-Limit" not in client_a.get("/orgs/O/sources/S/").headers


def test_rate_limit_window_rolls_over(twins: tuple[Any, Any]) -> None:
    a, b = twins
    # 20 s into a window a little in the future (counters expire with their window).
    now = [(int(time.time()) // 60 + 2) * 60 + 20.0]
    for app in twins:
        app.extensions["termsync.ratelimit"].clock = lambda: now[0]
    token = {"Authorization": "Token someone"}
    for client in (a.test_client(), b.test_client()):
        assert client.post("/importers/bulk-import/", headers=token).status_code != 429
    limited = a.test_client().post("/importers/bulk-import/", headers=token)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "40"
    assert b.test_client().post("/importers/bulk-import/", headers=ADMIN).status_code != 429
    now[0] += 40
    assert b.test_client().post("/importers/bulk-import/", headers=token).status_code != 429


def test_export_posts_are_limited_and_counted(twins: tuple[Any, Any]) -> None:
    a, b = twins
    first = a.test_client().post("/orgs/O/sources/S/v1/export/", headers=ADMIN)
    assert first.status_code != 429 and first.headers["X-RateLimit-Remaining"] == "0"
    again = b.test_client().post("/orgs/O/sources/S/v1/export/", headers=ADMIN)
    assert again.status_code == 429 and "exports" in again.get_json()["message"]
    text = b.test_client().get("/metrics").get_data(as_text=True)
    assert metric_value(text, "termsync_rate_limited_total", bucket="exports") == 1


def test_anonymous_callers_are_told_apart_by_forwarded_address(tmp_path: Path) -> None:
    (app,) = shared_apps(tmp_path, count=1, RATE_LIMIT_IMPORTS=1, TRUSTED_PROXIES=1)
    try:
        client = app.test_client()

        def submit(address: str) -> int:
            return int(client.post("/importers/bulk-import/",
                                   headers={"X-Forwarded-For": address}).status_code)

        assert submit("203.0.113.7") != 429
        assert submit("203.0.113.7") == 429
        assert submit("198.51.100.2") != 429  # another client behind the same load balancer
    finally:
        dispose([app])


def test_rate_limit_counters_of_past_windows_are_removed(app: Any) -> None:
    limiter = app.extensions["termsync.ratelimit"]
    now = [1_000_000.0 * 60]
    limiter.clock = lambda: now[0]
    assert limiter.hit("diffs", "ip:1.2.3.4", 10).remaining == 9
    assert limiter.hit("diffs", "ip:1.2.3.4", 10).remaining == 8
    now[0] += 60
    assert limiter.hit("diffs", "ip:1.2.3.4", 10).remaining == 9  # a new window counts afresh
    store = app.extensions["termsync.store"]
    if store.kind == "sqlite":  # MongoDB's TTL monitor removes them there
        rows = store.database.all("SELECT key FROM rate_counters")
        assert len(rows) == 1 and rows[0][0].endswith(f":{int(now[0] // 60)}")


# Maintenance leases -------------------------------------------------------------------------------

def test_run_exclusively_runs_once_per_period_across_holders(app: Any) -> None:
    db = app.extensions["termsync.store"].leases
    runs: list[str] = []
    assert run_exclusively(db, "gc", 60, lambda: runs.append("a") or "done",
                           holder="a") == (True, "done")
    assert run_exclusively(db, "gc", 60, lambda: runs.append("b"), holder="b") == (False, None)
    assert run_exclusively(db, "other-task", 60, lambda: runs.append("c"), holder="b")[0]
    assert runs == ["a", "c"]

    later = [datetime.now(UTC) + timedelta(seconds=61)]
    lease = MaintenanceLease(db, "gc", 60, holder="b", clock=lambda: later[0])
    assert lease.acquire()  # the period is over: the next holder takes it


def test_a_failed_task_releases_its_lease(app: Any) -> None:
    db = app.extensions["termsync.store"].leases

    def broken() -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        run_exclusively(db, "gc", 3600, broken, holder="a")
    assert run_exclusively(db, "gc", 3600, lambda: "retried", holder="b") == (True, "retried")
    assert db.get("gc")["error"] is None


def test_lease_recovery_fails_jobs_whose_workers_keep_dying(app: Any) -> None:
    queue = app.extensions["termsync.jobs"].queue
    past = "2020-01-01T00:00:00.000000Z"
    doomed = queue.submit("export", {}, key="k1")
    retried = queue.submit("export", {}, key="k2")
    queue.update(doomed.id, {"state": RUNNING, "attempts": 5, "lease_until": past})
    queue.update(retried.id, {"state": RUNNING, "attempts": 1, "lease_until": past})
    assert recover_leases(queue, 5) == {"failed": 1, "expired": 1}
    assert queue.get(doomed.id).state == FAILED
    assert "lost 5 times" in queue.get(doomed.id).error
    assert queue.get(retried.id).state == RUNNING  # the next claim takes it over
    assert queue.claim(["export"], "w2", 60).id == retried.id


# Several processes on the embedded database --------------------------------------------------

@pytest.mark.slow
def test_gunicorn_runs_several_processes_on_the_embedded_database(tmp_path: Path) -> None:
    env = dict(os.environ, TERMSYNC_DATABASE_URI=f"sqlite:///{tmp_path / 'termsync.db'}",
               GUNICORN_WORKERS="3", TERMSYNC_BACKGROUND_WORKERS="0")
    env.pop("TERMSYNC_CONFIG", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", "127.0.0.1:0",
         "wsgi:app"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        booted = 0
        for line in server.stderr:
            booted += "Booting worker" in line
            if booted == 3:
                break
        assert booted == 3
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(30)
        if server.stderr is not None:
            server.stderr.close()


def test_starting_job_threads_starts_heartbeat_and_maintenance(app: Any, client: Any) -> None:
    workers = app.extensions["termsync.jobs"]
    leases = app.extensions["termsync.store"].leases
    workers.start(1)  # what create_app (BACKGROUND_WORKERS) and `termsync worker` both call
    try:
        body = client.get("/readyz").get_json()
        assert body["checks"]["workers"]["alive"] == 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (leases.get("jobs-recover-leases") or {}).get(
                "finished_on"):
            time.sleep(0.05)
        assert leases.get("jobs-recover-leases")["runs"] == 1
    finally:
        workers.stop()
    assert "termsync.maintenance.scheduler" not in app.extensions
    assert client.get("/readyz").get_json()["checks"]["workers"]["alive"] == 0
