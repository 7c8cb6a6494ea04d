"""SIGKILL mid-import, mid-export-build, mid-cut and mid-sync, then a restart on the same
embedded SQLite database: no acknowledged write is lost and no seq is reused.

The kills land at deterministic points: tests/launcher.py runs the real `termsync` and
`termsync-sync` entry points with one method patched to SIGKILL the process on its N-th call
(production code has no crash points). After the restart every job finishes or is reported
FAILED, no half-written export file is ever served (the sha256 of what is served equals its
ETag), every version keeps its content, and the subscriber converges on the server's content.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import selectors
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ADMIN, ADMIN_TOKEN, concept
from tests.stack import wait_for

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0  # seconds any awaited condition may take
URL = "/orgs/O/sources/S/"
KILLED = -signal.SIGKILL


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any TERMSYNC_* setting of the developer's shell, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERMSYNC_")}
    env.update(extra)
    return env


class Server:
    """`termsync serve` in a subprocess on a persisted embedded database."""

    def __init__(self, root: Path, kill_at: str | None = None, workers: int = 2) -> None:
        self.root = root
        env = clean_env(
            TERMSYNC_DATABASE_URI=f"sqlite:///{root / 'server.db'}",
            TERMSYNC_ADMIN_TOKEN=ADMIN_TOKEN, TERMSYNC_EXPORT_DIR=str(root / "exports"),
            TERMSYNC_IMPORT_DIR=str(root / "imports"), TERMSYNC_BACKGROUND_WORKERS=str(workers),
            TERMSYNC_JOB_POLL_SECONDS="0.05", TERMSYNC_JOB_LEASE_SECONDS="1.0",
            TERMSYNC_IMPORT_BATCH_SIZE="20", TERMSYNC_EXPORT_HEARTBEAT_ITEMS="20",
            TERMSYNC_LOG_LEVEL="WARNING", TERMSYNC_ACCESS_LOG="false")
        self.log = (root / "server.log").open("ab")
        kill = ["--kill-at", kill_at] if kill_at else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.launcher", *kill, "termsync", "serve", "--port", "0"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log)
        self.url = ""
        self.http = requests.Session()
        self.http.headers.update(ADMIN)

    def wait_ready(self) -> None:
        """Read the URL the server announces once it listens."""
        self.url = self._announced_url()

    def _announced_url(self) -> str:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(DEADLINE):
                self.process.kill()
                raise AssertionError("the server did not start")
        line = self.process.stdout.readline().decode()
        assert "serving on http://" in line, (line, self.logs())
        return line.split("serving on ")[1].split()[0].rstrip("/")

    def logs(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")[-3000:]

    def call(self, method: str, path: str, expect: int | None = None, **kwargs: Any) -> Any:
        answer = self.http.request(method, self.url + path, timeout=30, **kwargs)
        if expect is not None:
            assert answer.status_code == expect, (method, path, answer.status_code, answer.text)
        return answer

    def killed(self) -> int:
        """Wait for the fault hook's SIGKILL; return the exit status."""
        return self.process.wait(timeout=DEADLINE)

    def stop(self) -> None:
        """Clean shutdown (SIGTERM)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=DEADLINE) == 0, self.logs()
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.http.close()
        self.log.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers on one database directory; every one is stopped at the end."""
    started: list[Server] = []

    def start(**kwargs: Any) -> Server:
        server = Server(tmp_path, **kwargs)
        started.append(server)
        if not kwargs.get("kill_at"):  # a doomed server may die before it listens
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.close()


def jsonl(concepts: range, name: str = "Concept") -> bytes:
    return b"".join(json.dumps(dict(concept(str(n), f"{name} {n}"), type="Concept", owner="O",
                                    owner_type="Organization", source="S")).encode() + b"\n"
                    for n in concepts)


def setup_source(server: Server) -> None:
    server.call("POST", "/orgs/", 201, json={"id": "O"})
    server.call("POST", "/orgs/O/sources/", 201, json={"id": "S"})


def num_found(server: Server, path: str) -> int:
    return int(server.call("GET", path, 200).headers["num_found"])


@pytest.mark.slow
def test_import_killed_mid_batch_finishes_after_restart(servers: Callable[..., Server]) -> None:
    first = servers(workers=0)  # set up and submit, no job runs yet; clean shutdown saves it
    setup_source(first)
    answer = first.call("POST", "/importers/bulk-import/", 202, data=jsonl(range(200)),
                        headers={"Content-Type": "application/x-ndjson"})
    job_url = answer.headers["Location"]
    first.stop()

    doomed = servers(kill_at="import-batch:4")  # dies after applying batch 4 of 10
    assert doomed.killed() == KILLED

    survivor = servers()
    job = wait_for(lambda: (lambda j: j if j["state"] in ("FINISHED", "FAILED") else None)(
        survivor.call("GET", job_url, 200).json()), "the import job to end")
    assert job["state"] == "FINISHED", job
    summary = job["summary"]
    assert summary["processed"] == summary["total"] == 200
    assert summary["failed"] == 0 and summary["created"] == 200, summary
    assert num_found(survivor, f"{URL}concepts/?limit=1") == 200
    results = survivor.call("GET", f"{job_url}results/?limit=500", 200).json()
    assert [r["line"] for r in results] == list(range(1, 201))
    survivor.stop()


@pytest.mark.slow
def test_cut_killed_before_its_commit_loses_nothing_acknowledged(
        servers: Callable[..., Server]) -> None:
    first = servers(workers=0)
    setup_source(first)
    for n in range(20):
        first.call("POST", f"{URL}concepts/", 201, json=concept(str(n)))
    first.call("POST", f"{URL}versions/", 201, json={"id": "v1"})
    before = first.call("GET", f"{URL}v1/?includeConcepts=true&limit=100", 200).json()
    versions = [c["version"] for c in before["concepts"]]
    first.stop()

    doomed = servers(workers=0, kill_at="version-cut:1")  # the cut of v2 is never committed
    doomed.wait_ready()
    with pytest.raises(requests.ConnectionError):
        doomed.call("POST", f"{URL}versions/", json={"id": "v2"})
    assert doomed.killed() == KILLED

    survivor = servers(workers=0)
    survivor.call("GET", f"{URL}v2/", 404)  # never acknowledged, never there
    after = survivor.call("GET", f"{URL}v1/?includeConcepts=true&limit=100", 200).json()
    assert after["checksums"] == before["checksums"] and after["concepts"] == before["concepts"]
    written = survivor.call("PATCH", f"{URL}concepts/3/", 200, json={"datatype": "Coded"}).json()
    assert int(written["version"]) > max(int(v) for v in versions)  # no seq is reused
    survivor.call("POST", f"{URL}versions/", 201, json={"id": "v2"})
    v2 = survivor.call("GET", f"{URL}v2/", 200).json()
    assert v2["checksums"]["content"] == survivor.call("GET", URL, 200).json()["checksums"][
        "content"] != before["checksums"]["content"]
    survivor.stop()


def served(server: Server, path: str) -> tuple[bytes, str]:
    answer = server.call("GET", path, 200)
    return answer.content, answer.headers["ETag"].strip('"')


@pytest.mark.slow
def test_export_build_killed_never_serves_a_half_written_file(
        servers: Callable[..., Server]) -> None:
    first = servers(workers=0)
    setup_source(first)
    with requests.Session() as http:
        http.headers.update(ADMIN)
        for n in range(150):
            assert http.post(f"{first.url}{URL}concepts/", json=concept(str(n)),
                             timeout=30).status_code == 201
    first.call("POST", f"{URL}versions/", 201, json={"id": "v1", "released": True})
    first.call("POST", f"{URL}v1/export/", 409)  # released: its build is queued already
    first.stop()

    doomed = servers(kill_at="export-build:3")  # 60 of 150 items written to the temp file
    assert doomed.killed() == KILLED
    partial = list((doomed.root / "exports").rglob("*.part"))

    survivor = servers()
    body, etag = wait_for(
        lambda: survivor.call("GET", f"{URL}v1/export/").status_code == 200
        and served(survivor, f"{URL}v1/export/"), "the export to be rebuilt")
    assert hashlib.sha256(body).hexdigest() == etag
    file_url = survivor.call("HEAD", f"{URL}v1/export/", 200).headers["exportURL"]
    file_body, file_etag = served(survivor, file_url.replace(survivor.url, ""))
    assert file_body == body and file_etag == etag
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        export = json.loads(archive.read("export.json"))
    assert len(export["concepts"]) == 150
    # every file under a final name holds exactly the bytes its name (sha256) promises
    finals = [p for p in (survivor.root / "exports").rglob("*.zip") if p.is_file()]
    assert finals and all(hashlib.sha256(p.read_bytes()).hexdigest() == p.stem for p in finals)
    assert partial, "the kill was expected to leave the build's temp file behind"
    survivor.stop()


def sync_config(tmp_path: Path, server: Server) -> Path:
    path = tmp_path / "sync.toml"
    path.write_text(
        "[[subscriptions]]\n"
        'name = "s"\n'
        f'server = "{server.url}"\n'
        f'url = "{URL}"\n'
        f'token = "{ADMIN_TOKEN}"\n'
        'mode = "release"\n'
        f'database_uri = "sqlite:///{tmp_path / "mirror.db"}"\n'
        "page_size = 10\n"
        "batch_size = 20\n"
        "max_retries = 1\n"
        f'work_dir = "{tmp_path / "work"}"\n')
    return path


def sync(config: Path, command: str = "once", kill_at: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    """The real subscriber CLI, through the test launcher when it is to be killed."""
    kill = ["--kill-at", kill_at] if kill_at else []
    return subprocess.run([sys.executable, "-m", "tests.launcher", *kill, "termsync-sync",
                           command, "--config",
                           str(config), "--json"], env=clean_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=DEADLINE)


@pytest.mark.slow
def test_sync_killed_mid_export_and_mid_delta_converges(servers: Callable[..., Server],
                                                       tmp_path: Path) -> None:
    server = servers()
    setup_source(server)
    answer = server.call("POST", "/importers/bulk-import/", 202, data=jsonl(range(120)),
                         headers={"Content-Type": "application/x-ndjson"})
    wait_for(lambda: server.call("GET", answer.headers["Location"]).json()["state"] == "FINISHED",
             "the import")
    server.call("POST", f"{URL}versions/", 201, json={"id": "v1", "released": True})
    config = sync_config(tmp_path, server)

    killed = sync(config, kill_at="sync-export-batch:3")  # 60 of 120 items staged
    assert killed.returncode == KILLED, killed.stderr

    # the curator moves on: updates, retirements, hard deletes, new items, a new release
    for n in range(0, 30):
        server.call("PATCH", f"{URL}concepts/{n}/", 200, json={"external_id": f"e{n}"})
    for n in range(30, 40):
        server.call("DELETE", f"{URL}concepts/{n}/", 204)
    for n in range(40, 45):
        server.call("DELETE", f"{URL}concepts/{n}/?hard=true", 204)
    for n in range(120, 140):
        server.call("POST", f"{URL}concepts/", 201, json=concept(str(n)))
    server.call("POST", f"{URL}versions/", 201, json={"id": "v2", "released": True})

    first = sync(config)
    assert first.returncode == 0, first.stdout + first.stderr
    server.call("POST", f"{URL}concepts/", 201, json=concept("late"))
    for n in range(50, 80):
        server.call("PATCH", f"{URL}concepts/{n}/", 200, json={"external_id": f"f{n}"})
    server.call("POST", f"{URL}versions/", 201, json={"id": "v3", "released": True})

    # v2 -> v3 comes as one delta package (20 items a batch): killed with its first batch
    # written into the open changeset, nothing committed
    killed = sync(config, kill_at="sync-delta-batch:1")
    assert killed.returncode == KILLED, killed.stdout + killed.stderr
    last = sync(config)
    assert last.returncode == 0, last.stdout + last.stderr

    status = sync(config, "verify")
    assert status.returncode == 0, status.stdout + status.stderr
    record = json.loads(status.stdout)[0]
    server_checksum = server.call("GET", f"{URL}v3/", 200).json()["checksums"]["content"]
    assert record["version"] == "v3"
    assert record["checksum"] == record["server_checksum"] == server_checksum
    assert record["counts"]["concepts"] == 140 - 5 + 1
    server.stop()
