"""Real processes on one database: gunicorn with two worker processes serving the API and a
`termsync worker` process running the jobs; on a SQLite file, and on FerretDB over the wire (the
MongoDB backend, export files in GridFS and uploads in the database).

1. Curators write over HTTP while release and snapshot subscribers sync and exports build in the
   job process: every subscriber ends with the server's checksums.content.
2. Each kind of process is SIGKILLed at a deterministic point (tests/launcher.py patches the real
   code: mid-import, mid-export-build, mid-cut) and replaced: the import finishes exactly, the
   export served is whole, a cut that was never acknowledged is absent, no seq is reused and every
   version keeps its content.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from app.store import Store, open_store
from sync.client import TermsyncClient
from sync.config import Subscription
from sync.store.sqlite import SQLiteStore
from sync.subscriber import Subscriber
from tests.conftest import ADMIN, ADMIN_TOKEN, concept
from tests.security.test_concurrency import Curator
from tests.security.test_kill import jsonl, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
URL = "/orgs/O/sources/S/"
DEADLINE = 60.0
KILLED = -signal.SIGKILL


class Cluster:
    """gunicorn (web) and `termsync worker` (jobs) processes sharing one SQLite file, or one
    MongoDB-wire server (`mongo_uri`) with export files in GridFS."""

    def __init__(self, root: Path, mongo_uri: str | None = None) -> None:
        self.root = root
        self.mongo_uri = mongo_uri
        self.mongo_db = f"processes_{uuid.uuid4().hex[:10]}"
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("TERMSYNC_")}
        if mongo_uri:
            self.env.update(TERMSYNC_DATABASE_URI=mongo_uri, TERMSYNC_MONGO_DB=self.mongo_db,
                            TERMSYNC_EXPORT_STORAGE="gridfs", TERMSYNC_IMPORT_STORAGE="mongo")
        else:
            self.env.update(TERMSYNC_DATABASE_URI=f"sqlite:///{root / 'server.db'}")
        self.env.update(
            TERMSYNC_ADMIN_TOKEN=ADMIN_TOKEN, TERMSYNC_EXPORT_DIR=str(root / "exports"),
            TERMSYNC_IMPORT_DIR=str(root / "imports"), TERMSYNC_BACKGROUND_WORKERS="0",
            TERMSYNC_JOB_POLL_SECONDS="0.05", TERMSYNC_JOB_LEASE_SECONDS="2.0",
            TERMSYNC_IMPORT_BATCH_SIZE="20", TERMSYNC_EXPORT_HEARTBEAT_ITEMS="20",
            TERMSYNC_EXPORT_RETRY_AFTER="1", TERMSYNC_LOG_LEVEL="WARNING",
            TERMSYNC_ACCESS_LOG="false")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.url = ""
        self.web: subprocess.Popen[bytes] | None = None
        self.http = requests.Session()
        self.http.headers.update(ADMIN)

    def _spawn(self, args: list[str], log: str, kill_at: str | None) -> subprocess.Popen[bytes]:
        env = dict(self.env, **({"TERMSYNC_TEST_KILL_AT": kill_at} if kill_at else {}))
        with open(self.root / log, "ab") as handle:
            process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=handle, stderr=handle)
        self.processes.append(process)
        return process

    def start_web(self, kill_at: str | None = None) -> None:
        """gunicorn with two worker processes; wait until both have booted."""
        log = f"web{len(self.processes)}.log"
        self.web = self._spawn([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                "-w", "2", "-b", "127.0.0.1:0", "tests.wsgi_killable:app"],
                               log, kill_at)

        def booted() -> str | None:
            text = (self.root / log).read_text(errors="replace")
            if text.count("Booting worker") < 2 or "Listening at: " not in text:
                return None
            return text.split("Listening at: ")[1].split()[0]

        self.url = wait_for(booted, "gunicorn to boot two workers", DEADLINE)

    def stop_web(self) -> None:
        assert self.web is not None
        self.web.send_signal(signal.SIGTERM)
        self.web.wait(DEADLINE)

    def start_worker(self, kill_at: str | None = None) -> subprocess.Popen[bytes]:
        """`termsync worker` (through the launcher when it is to be killed)."""
        kill = ["--kill-at", kill_at] if kill_at else []
        return self._spawn([sys.executable, "-m", "tests.launcher", *kill, "termsync", "worker",
                            "--threads", "2"], f"worker{len(self.processes)}.log", None)

    def call(self, method: str, path: str, expect: int | None = None, **kwargs: Any) -> Any:
        answer = self.http.request(method, self.url + path, timeout=30, **kwargs)
        if expect is not None:
            assert answer.status_code == expect, (method, path, answer.status_code, answer.text)
        return answer

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-2000:]
                         for path in sorted(self.root.glob("*.log")))

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(DEADLINE)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.http.close()
        if self.mongo_uri:
            store = self.store()
            store.drop()
            store.close()

    def store(self) -> Store:
        """The cluster's store, opened as one more process of it would."""
        return open_store(self.env["TERMSYNC_DATABASE_URI"], mongo_db=self.mongo_db)

    def stored_exports(self) -> dict[str, bytes]:
        """Every export file the cluster committed, by the sha256 it is stored as."""
        if not self.mongo_uri:
            return {path.stem: path.read_bytes()
                    for path in (self.root / "exports").rglob("*.zip") if path.is_file()}
        store = self.store()
        try:
            files = store.export_files("exports_fs", str(self.root / "tmp"))
            found = {}
            for stored in files.list():
                with files.open(stored.sha256) as handle:
                    found[stored.sha256] = handle.read()
            return found
        finally:
            store.close()


@pytest.fixture(params=["sqlite", "ferretdb"])
def cluster(request: Any, tmp_path: Path) -> Iterator[Cluster]:
    mongo_uri = request.getfixturevalue("ferretdb_uri") if request.param == "ferretdb" else None
    cluster = Cluster(tmp_path, mongo_uri)
    yield cluster
    cluster.close()


def setup_source(cluster: Cluster, concepts: int = 20) -> None:
    cluster.call("POST", "/orgs/", 201, json={"id": "O"})
    cluster.call("POST", "/orgs/O/sources/", 201, json={"id": "S"})
    for number in range(concepts):
        cluster.call("POST", f"{URL}concepts/", 201, json=concept(f"base{number}"))


def subscriber(cluster: Cluster, mode: str, number: int, root: Path) -> Subscriber:
    """A subscriber that waits for export builds as a real one does (Retry-After)."""
    work = root / f"{mode}{number}"
    work.mkdir()
    subscription = Subscription(name=f"{mode}{number}", server=cluster.url, url=URL,
                                token=ADMIN_TOKEN, mode=mode, page_size=7, batch_size=9,
                                max_retries=5, export_wait=DEADLINE, work_dir=str(work))
    client = TermsyncClient(cluster.url, ADMIN_TOKEN, timeout=30, connect_timeout=5,
                            max_retries=5)
    return Subscriber(subscription, client, SQLiteStore(f"sqlite:///{work / 'mirror.db'}"))


def test_two_web_processes_and_a_job_process_serve_curators_and_subscribers(
        cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_web()
    cluster.start_worker()
    setup_source(cluster)
    cluster.call("POST", f"{URL}versions/", 201, json={"id": "v0", "released": True})
    curators = [Curator(cluster.url, number) for number in range(3)]
    followers = [subscriber(cluster, mode, number, tmp_path)
                 for mode in ("release", "snapshot") for number in range(2)]
    done = threading.Event()
    failures: list[BaseException] = []

    def follow(follower: Subscriber) -> None:
        try:
            while not done.is_set():
                follower.sync()
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=follow, args=(f,), daemon=True) for f in followers]
    for thread in [*threads, *curators]:
        thread.start()
    for curator in curators:
        curator.join(180)
        assert not curator.is_alive() and curator.error is None, (curator.error, cluster.logs())
    done.set()
    for thread in threads:
        thread.join(180)
        assert not thread.is_alive()
    assert not failures, failures

    cluster.call("POST", f"{URL}versions/", 201, json={"id": "final", "released": True})
    head = cluster.call("GET", URL, 200).json()["checksums"]["content"]
    assert cluster.call("GET", f"{URL}final/", 200).json()["checksums"]["content"] == head
    for follower in followers:
        result = follower.sync()
        assert result.ok, (follower.name, result.error, cluster.logs())
        assert result.checksum == result.server_checksum == head, follower.name
        if follower.sub.mode == "release":
            assert result.version == "final"
    assert sum(curator.operations for curator in curators) > 200


def job_ended(cluster: Cluster, job_url: str) -> Callable[[], Any]:
    def ended() -> Any:
        job = cluster.call("GET", job_url, 200).json()
        return job if job["state"] in ("FINISHED", "FAILED") else None
    return ended


def test_each_process_killed_mid_work_loses_nothing(cluster: Cluster) -> None:
    cluster.start_web()
    setup_source(cluster)
    cluster.call("POST", f"{URL}versions/", 201, json={"id": "v1"})
    v1 = cluster.call("GET", f"{URL}v1/?includeConcepts=true&limit=100", 200).json()

    # the job process dies in the middle of an import batch; its successor finishes the job
    answer = cluster.call("POST", "/importers/bulk-import/", 202, data=jsonl(range(200)),
                          headers={"Content-Type": "application/x-ndjson"})
    job_url = answer.headers["Location"]
    doomed = cluster.start_worker(kill_at="import-batch:3")
    assert doomed.wait(DEADLINE) == KILLED, cluster.logs()
    cluster.start_worker()
    job = wait_for(job_ended(cluster, job_url), "the import to end", DEADLINE)
    assert job["state"] == "FINISHED" and job["summary"]["created"] == 200, job
    results = cluster.call("GET", f"{job_url}results/?limit=500", 200).json()
    assert [result["line"] for result in results] == list(range(1, 201))

    # a web process dies in the middle of a version cut, which was never acknowledged: on
    # SQLite it is not there (its transaction never committed); on MongoDB the cut is one
    # single-document insert, durable before the answer, so it is there, and whole
    head = cluster.call("GET", URL, 200).json()["checksums"]["content"]
    cluster.stop_web()
    cluster.start_web(kill_at="version-cut:1")
    with pytest.raises(requests.ConnectionError):
        cluster.call("POST", f"{URL}versions/", json={"id": "v2"})
    cluster.stop_web()
    cluster.start_web()
    if cluster.mongo_uri:
        assert cluster.call("GET", f"{URL}v2/", 200).json()["checksums"]["content"] == head
        listed = cluster.call("GET", f"{URL}v2/?includeConcepts=true&limit=500", 200).json()
        assert len(listed["concepts"]) == 220
    else:
        cluster.call("GET", f"{URL}v2/", 404)
    again = cluster.call("GET", f"{URL}v1/?includeConcepts=true&limit=100", 200).json()
    assert again["checksums"] == v1["checksums"] and again["concepts"] == v1["concepts"]
    newest = max(int(item["version"]) for item in cluster.call(
        "GET", f"{URL}concepts/?limit=500&includeRetired=true", 200).json())
    edited = cluster.call("PATCH", f"{URL}concepts/base3/", 200, json={"datatype": "Coded"})
    assert int(edited.json()["version"]) > newest  # no seq is reused

    # the job process dies half way through an export build; the next one builds it whole
    for process in cluster.processes:
        if process.args[-3:] == ["worker", "--threads", "2"] and process.poll() is None:
            process.terminate()
            process.wait(DEADLINE)
    cluster.call("POST", f"{URL}versions/", 201, json={"id": "v3", "released": True})
    doomed = cluster.start_worker(kill_at="export-build:3")
    assert doomed.wait(DEADLINE) == KILLED, cluster.logs()
    cluster.start_worker()

    def exported() -> Any:
        answer = cluster.call("GET", f"{URL}v3/export/")
        return answer if answer.status_code == 200 else None

    answer = wait_for(exported, "the export of v3", DEADLINE)
    assert hashlib.sha256(answer.content).hexdigest() == answer.headers["ETag"].strip('"')
    finals = cluster.stored_exports()
    assert finals and all(hashlib.sha256(data).hexdigest() == sha for sha, data in finals.items())
