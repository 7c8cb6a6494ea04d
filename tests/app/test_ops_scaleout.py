"""Scale-out: two app instances and two workers on one database and one export storage.

Each instance has its own connections to the same database: one SQLite file (local export files),
or one MongoDB (GridFS; mongomock unless TEST_DATABASE_URI names a server).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.exports import export_service
from app.jobs import FINISHED, JobLost
from app.model import Job
from tests.app.test_ops import dispose, metric_value, shared_apps
from tests.conftest import ADMIN, concept, mongo_database_uri

BASE = "/orgs/TestOrg/sources/TestSource/"
V1 = f"{BASE}v1/export/"


@pytest.fixture(params=["local", "gridfs"])
def pair(request: Any, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Instances A and B with one export storage (a shared directory, or GridFS), a source with
    seven concepts and an unreleased version v1; heartbeats every two items, short leases."""
    database = {"DATABASE_URI": mongo_database_uri()} if request.param == "gridfs" else {}
    apps = shared_apps(tmp_path, EXPORT_STORAGE=request.param, **database,
                       EXPORT_DIR=str(tmp_path / "exports"), EXPORT_HEARTBEAT_ITEMS=2,
                       JOB_LEASE_SECONDS=1.0)
    client = apps[0].test_client()
    assert client.post("/orgs/", json={"id": "TestOrg"}, headers=ADMIN).status_code == 201
    assert client.post("/orgs/TestOrg/sources/", json={"id": "TestSource"},
                       headers=ADMIN).status_code == 201
    for number in range(7):
        assert client.post(f"{BASE}concepts/", json=concept(f"C{number}"),
                           headers=ADMIN).status_code == 201
    assert client.post(f"{BASE}versions/", json={"id": "v1"}, headers=ADMIN).status_code == 201
    yield apps[0], apps[1]
    dispose(apps)


def workers(app: Any) -> Any:
    return app.extensions["termsync.jobs"]


def advance_clock(app: Any, seconds: float) -> None:
    """Let time pass for the queue of `app` (leases expire) without waiting."""
    workers(app).queue.clock = lambda: datetime.now(UTC) + timedelta(seconds=seconds)


def stored_files(app: Any) -> list[Any]:
    return list(export_service(app).storage.list())


class StalledWorker:
    """Runs one job on `app` in a thread and stalls it mid-build (at its second heartbeat), as a
    worker does whose process froze or died: it stops heartbeating while holding the lease."""

    def __init__(self, app: Any, name: str) -> None:
        self.queue = workers(app).queue
        self.stalled = threading.Event()
        self.resume = threading.Event()
        self.result: Job | None = None
        self.beats = 0
        original = self.queue.heartbeat

        def heartbeat(job_id: str, worker_id: str, lease: float, progress: Any = None) -> None:
            self.beats += 1
            if self.beats == 2:
                self.stalled.set()
                self.resume.wait(30)
            original(job_id, worker_id, lease, progress)

        self.queue.heartbeat = heartbeat
        self.thread = threading.Thread(target=self._run, args=(app, name), daemon=True)

    def _run(self, app: Any, name: str) -> None:
        self.result = workers(app).run_once(name)

    def start(self) -> None:
        self.thread.start()
        assert self.stalled.wait(10), "the worker never reached its second heartbeat"

    def finish(self) -> Job | None:
        self.resume.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.result


def test_build_requested_on_a_is_served_by_b(pair: tuple[Any, Any]) -> None:
    a, b = pair
    client_a, client_b = a.test_client(), b.test_client()
    assert client_a.post(V1, headers=ADMIN).status_code == 202
    probe = client_b.head(V1)
    assert probe.status_code == 208 and "Retry-After" in probe.headers  # B sees A's queued build
    assert client_b.get(V1).status_code == 208
    assert workers(b).run_until_idle() == 1  # B's worker builds what A was asked for
    ready_a, ready_b = client_a.head(V1), client_b.head(V1)
    assert ready_a.status_code == ready_b.status_code == 200
    assert ready_a.headers["ETag"] == ready_b.headers["ETag"]
    download = client_a.get(V1, buffered=True)
    assert download.status_code == 200
    assert f'"{download.headers["ETag"].strip(chr(34))}"' == ready_b.headers["ETag"]
    assert len(download.get_data()) == int(ready_b.headers["Content-Length"])


def test_two_workers_racing_for_one_build_produce_one_file(pair: tuple[Any, Any]) -> None:
    a, b = pair
    assert a.test_client().post(V1, headers=ADMIN).status_code == 202
    assert b.test_client().post(V1, headers=ADMIN).status_code == 409  # being built on A's word
    jobs = workers(a).queue.list(kind="export")[0]
    assert len(jobs) == 1  # the second request joined the first build

    slow = StalledWorker(a, "worker-a")
    slow.start()  # A holds the lease, half way through the build...
    assert workers(b).run_until_idle() == 0  # ...and B cannot take it while the lease holds
    advance_clock(b, seconds=2)  # A is too slow: its one-second lease runs out
    assert workers(b).run_until_idle() == 1  # B takes over and finishes the build
    assert workers(b).queue.get(jobs[0].id).state == FINISHED
    served = b.test_client().head(V1)
    assert served.status_code == 200

    slow.finish()  # A wakes up: its next heartbeat says the job is no longer its own
    job = workers(a).queue.get(jobs[0].id)
    assert job.state == FINISHED and job.attempts == 2 and job.worker != "worker-a"
    files = stored_files(a)
    assert len(files) == 1, files  # A's half-built zip never reached the storage
    assert a.test_client().head(V1).headers["ETag"] == served.headers["ETag"]
    assert not list(export_service(a).storage.stale_temp_files(datetime.now(UTC) + timedelta(1)))
    text_a = a.test_client().get("/metrics").get_data(as_text=True)
    text_b = b.test_client().get("/metrics").get_data(as_text=True)
    assert metric_value(text_a, "termsync_export_builds_total", outcome="lost") == 1
    assert metric_value(text_b, "termsync_export_builds_total", outcome="finished") == 1


def test_worker_that_disappears_mid_build_is_replaced(pair: tuple[Any, Any]) -> None:
    a, b = pair
    assert a.test_client().post(V1, headers=ADMIN).status_code == 202
    gone = StalledWorker(a, "worker-that-dies")
    gone.start()
    queue = workers(b).queue
    job = queue.list(kind="export")[0][0]
    assert job.worker == "worker-that-dies"
    assert workers(b).run_until_idle() == 0  # the lease still holds
    advance_clock(b, seconds=2)  # the dead worker's lease ends
    assert workers(b).run_until_idle() == 1
    taken = queue.get(job.id)
    assert taken.state == FINISHED and taken.attempts == 2
    assert a.test_client().head(V1).status_code == 200
    assert b.test_client().get(V1, buffered=True).status_code == 200
    with pytest.raises(JobLost):  # were the dead worker to come back, it could write nothing
        queue.heartbeat(job.id, "worker-that-dies", 60)
    gone.finish()
    assert len(stored_files(b)) == 1
