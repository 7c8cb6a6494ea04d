"""Several hosts on one MongoDB-wire server, built from network namespaces (root, iproute2):

    db       FerretDB on PostgreSQL (FerretDB's SQLite backend where no PostgreSQL is installed)
    web1     gunicorn, 2 processes, each with a job thread      (takes the import, writes)
    web2     gunicorn, 2 processes, no job threads              (releases, writes; subscribers read)
    worker   `termsync worker`
    sub      `termsync-sync` (release and snapshot subscriptions against web2)

Every host hangs off one bridge in a namespace of its own; the test process joins it too, as the
curators' host. Nothing has a route off the machine. Exports live in GridFS and uploads in the
database, so either web host serves what the other took.

web1's link is cut (its switch port set down) while it holds an import job mid-run and, later, an
export build mid-run (hold points of tests/launcher.py stop its job thread at that moment), then
restored: the worker host takes each job over once its lease expires, nothing acknowledged is
lost, no job is left pending or running, both hosts serve the same export, and every subscriber
ends with the server's checksums.content.

Where namespaces cannot be made (not root, no `ip`, a container without CAP_NET_ADMIN) the test
skips with what `ip netns add` answered.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from app.model import Job
from app.store import open_store
from tests import ferretdb
from tests.conftest import ADMIN, ADMIN_TOKEN, concept
from tests.security.test_kill import jsonl, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SUBNET = "10.213.0"  # the hosts' addresses, on a bridge no route leads out of
ADDRESSES = {"curator": 1, "db": 10, "web1": 21, "web2": 22, "worker": 30, "sub": 40}
URL = "/orgs/O/sources/S/"
DEADLINE = 120.0
LEASE_SECONDS = 3.0


def address(host: str) -> str:
    return f"{SUBNET}.{ADDRESSES[host]}"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be made here (None: they can), found by trying."""
    if shutil.which("ip") is None:
        return "no `ip` command (Debian's iproute2)"
    probe = f"tsprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    try:
        ran = subprocess.run(["ip", "netns", "exec", probe, "ip", "link", "set", "lo", "up"],
                             capture_output=True, text=True, check=False)
        return None if ran.returncode == 0 else f"`ip netns exec` failed: {ran.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)


class Network:
    """Hosts (namespaces) on one bridge in a namespace of its own; the test process is `curator`."""

    def __init__(self) -> None:
        self.tag = f"ts{os.getpid() % 100000}"
        self.lan = f"{self.tag}-lan"
        self.hosts: list[str] = []
        self.root_port = ""

    def namespace(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def port(self, host: str) -> str:
        """The bridge-side end of a host's cable (at most 15 characters)."""
        return f"{self.tag}p{ADDRESSES[host]}"

    def create(self, hosts: list[str]) -> None:
        ip("netns", "add", self.lan)
        ip("-n", self.lan, "link", "add", "br0", "type", "bridge")
        ip("-n", self.lan, "link", "set", "br0", "up")
        for host in hosts:
            namespace = self.namespace(host)
            ip("netns", "add", namespace)
            self.hosts.append(host)
            self._cable(host, namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
        # the test process's own end (the curators' host), in the root namespace
        self._cable("curator", None)

    def _cable(self, host: str, namespace: str | None) -> None:
        inside, port = f"{self.tag}h{ADDRESSES[host]}", self.port(host)
        ip("link", "add", inside, "type", "veth", "peer", "name", port)
        ip("link", "set", port, "netns", self.lan)
        ip("-n", self.lan, "link", "set", port, "master", "br0")
        ip("-n", self.lan, "link", "set", port, "up")
        where = ["-n", namespace] if namespace else []
        if namespace:
            ip("link", "set", inside, "netns", namespace)
        else:
            self.root_port = inside
        ip(*where, "addr", "add", f"{address(host)}/24", "dev", inside)
        ip(*where, "link", "set", inside, "up")

    def cut(self, host: str) -> None:
        """Pull the host's cable out of the switch."""
        ip("-n", self.lan, "link", "set", self.port(host), "down")

    def restore(self, host: str) -> None:
        ip("-n", self.lan, "link", "set", self.port(host), "up")

    def on(self, host: str) -> list[str]:
        """The command prefix that runs a program on `host`."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def destroy(self) -> None:
        for namespace in [*(self.namespace(host) for host in self.hosts), self.lan]:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        if self.root_port:  # gone with its peer already, normally
            subprocess.run(["ip", "link", "del", self.root_port], capture_output=True, check=False)


def postgresql_binaries() -> Path | None:
    """Debian's PostgreSQL server binaries, when they and the `postgres` user are here."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None
    return found[-1].parent if found else None


class Hosts:
    """The processes of every host; logs under `root`."""

    def __init__(self, network: Network, root: Path) -> None:
        self.network = network
        self.root = root
        self.holds = root / "holds"
        self.holds.mkdir()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.database: ferretdb.FerretDB | None = None
        self.backend = ""
        self.mongo_db = f"hosts_{uuid.uuid4().hex[:8]}"
        self.http = requests.Session()
        self.http.headers.update(ADMIN)
        self.cleanup: list[Path] = []

    # --- db ------------------------------------------------------------------------------
    def start_database(self) -> None:
        binaries = postgresql_binaries()
        if binaries is None:
            self.backend = "sqlite (no PostgreSQL server installed)"
            self.database = ferretdb.FerretDB(sqlite=str(self.root / "ferretdb"),
                                              listen=f"{address('db')}:27017",
                                              command_prefix=tuple(self.network.on("db")))
            return
        # the server runs as `postgres`, which cannot reach pytest's private directories
        data = Path(tempfile.mkdtemp(prefix="termsync-pg-"))
        self.cleanup.append(data)
        shutil.chown(data, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*as_postgres, str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "--no-sync"], check=True, capture_output=True)
        self._spawn("postgresql", [*self.network.on("db"), *as_postgres, str(binaries / "postgres"),
                                   "-D", str(data), "-c", "listen_addresses=127.0.0.1",
                                   "-c", f"unix_socket_directories={data}"], {})

        def ready() -> bool:
            return subprocess.run([*self.network.on("db"), str(binaries / "pg_isready"), "-h",
                                   "127.0.0.1", "-q"], check=False).returncode == 0

        wait_for(ready, "PostgreSQL to accept connections", DEADLINE)
        self.backend = f"postgresql ({binaries.parent.name})"
        self.database = ferretdb.FerretDB(
            postgresql="postgres://postgres@127.0.0.1:5432/postgres",
            listen=f"{address('db')}:27017", command_prefix=tuple(self.network.on("db")))

    # --- termsync --------------------------------------------------------------------------
    def environment(self, host: str, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
        assert self.database is not None
        env.update(TERMSYNC_DATABASE_URI=self.database.uri, TERMSYNC_MONGO_DB=self.mongo_db,
                   TERMSYNC_EXPORT_STORAGE="gridfs", TERMSYNC_IMPORT_STORAGE="mongo",
                   TERMSYNC_EXPORT_DIR=str(self.root / host / "exports"),
                   TERMSYNC_IMPORT_DIR=str(self.root / host / "imports"),
                   TERMSYNC_ADMIN_TOKEN=ADMIN_TOKEN, TERMSYNC_JOB_POLL_SECONDS="0.2",
                   TERMSYNC_JOB_LEASE_SECONDS=str(LEASE_SECONDS),
                   TERMSYNC_IMPORT_BATCH_SIZE="20", TERMSYNC_EXPORT_HEARTBEAT_ITEMS="20",
                   TERMSYNC_EXPORT_RETRY_AFTER="1", TERMSYNC_LOG_LEVEL="WARNING",
                   TERMSYNC_ACCESS_LOG="false", **extra)
        return env

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        with open(self.root / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log,
                                                    env=env or None)

    def start_web(self, host: str, job_threads: int, holds: str = "") -> None:
        extra = {"TERMSYNC_BACKGROUND_WORKERS": str(job_threads)}
        if holds:
            extra.update(TERMSYNC_TEST_HOLD_AT=holds, TERMSYNC_TEST_HOLD_DIR=str(self.holds))
        self._spawn(host, [*self.network.on(host), sys.executable, "-m", "gunicorn", "-c",
                           "gunicorn.conf.py", "-w", "2", "-b", f"{address(host)}:8000",
                           "tests.wsgi_killable:app"], self.environment(host, **extra))
        wait_for(lambda: self._answers(host), f"{host} to serve", DEADLINE)

    def _answers(self, host: str) -> bool:
        try:
            return self.http.get(f"{self.url(host)}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def start_worker(self) -> None:
        self._spawn("worker", [*self.network.on("worker"), sys.executable, "-m", "app.cli",
                               "worker", "--threads", "2"],
                    self.environment("worker", TERMSYNC_BACKGROUND_WORKERS="0"))

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        process.wait(DEADLINE)

    def url(self, host: str) -> str:
        return f"http://{address(host)}:8000"

    def call(self, host: str, method: str, path: str, expect: int | None = None,
             **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", (3, 60))
        answer = self.http.request(method, self.url(host) + path, **kwargs)
        if expect is not None:
            assert answer.status_code == expect, (host, method, path, answer.status_code,
                                                  answer.text[:500])
        return answer

    def held(self, point: str) -> bool:
        return (self.holds / f"held-{point}").exists()

    def release(self, point: str) -> None:
        (self.holds / f"release-{point}").touch()

    # --- sub -------------------------------------------------------------------------------
    def subscribe(self) -> Path:
        config = self.root / "sync.toml"
        database = f"sqlite:///{self.root / 'mirror.db'}"
        config.write_text("".join(
            f'[[subscriptions]]\nname = "{mode}"\nserver = "{self.url("web2")}"\nurl = "{URL}"\n'
            f'token = "{ADMIN_TOKEN}"\nmode = "{mode}"\ninterval = "1h"\n'
            f'database_uri = "{database}"\npage_size = 50\nexport_wait = 120.0\n'
            f'work_dir = "{self.root / "sync-work"}"\n\n' for mode in ("release", "snapshot")))
        return config

    def sync(self, config: Path, command: str = "once") -> Any:
        done = subprocess.run([*self.network.on("sub"), sys.executable, "-m", "sync.cli",
                               command, "--config", str(config), "--json"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600, check=False,
                              env={k: v for k, v in os.environ.items()
                                   if not k.startswith("TERMSYNC_")})
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
        return json.loads(done.stdout)

    def logs(self) -> str:
        return "\n".join(f"== {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.root.glob("*.log")))

    def close(self) -> None:
        # termsync's processes first, then FerretDB, PostgreSQL last (it was started first)
        postgresql = self.processes.pop("postgresql", None)
        for name in list(self.processes):
            process = self.processes.pop(name)
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.database is not None:
            self.database.stop()
        if postgresql is not None:
            postgresql.terminate()
            postgresql.wait(30)
        self.http.close()
        for directory in self.cleanup:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(f"network namespaces cannot be made here: {reason}")
    try:
        ferretdb.build()
    except ferretdb.FerretDBUnavailable as error:
        pytest.skip(f"FerretDB: {error}")
    network = Network()
    try:
        network.create(["db", "web1", "web2", "worker", "sub"])
        cluster = Hosts(network, tmp_path)
        try:
            yield cluster
        finally:
            cluster.close()
    finally:
        network.destroy()


class Curator(threading.Thread):
    """Writes concepts through one web host until stopped; remembers what was acknowledged."""

    def __init__(self, hosts: Hosts, host: str, timeout: tuple[float, float] = (3, 60)) -> None:
        super().__init__(daemon=True)
        self.hosts, self.host, self.timeout = hosts, host, timeout
        self.acknowledged: dict[str, str] = {}  # concept id -> version acknowledged
        self.refused = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stopping.is_set():
            concept_id = f"{self.host}-{number}"
            try:
                answer = self.hosts.call(self.host, "POST", f"{URL}concepts/",
                                         json=concept(concept_id), timeout=self.timeout)
            except requests.RequestException:
                self.refused += 1  # the link is down: not acknowledged
                self.stopping.wait(1)  # a client's own pause before it tries again
            else:
                if answer.status_code == 201:
                    self.acknowledged[concept_id] = answer.json()["version"]
                else:
                    self.refused += 1
            number += 1


def active_jobs(hosts: Hosts) -> list[Job]:
    """Jobs pending or running, read from the database (the test process is on the lan)."""
    assert hosts.database is not None
    store = open_store(hosts.database.uri, mongo_db=hosts.mongo_db)
    try:
        return store.jobs.list(None, None, ["PENDING", "RUNNING"], 0, 100)[0]
    finally:
        store.close()


def test_web_hosts_worker_and_subscriber_survive_a_cut_link(hosts: Hosts) -> None:
    network = hosts.network
    hosts.start_database()
    hosts.start_web("web1", 1, holds="import-batch:2,export-build:3")
    hosts.start_web("web2", 0)
    hosts.call("web1", "POST", "/orgs/", 201, json={"id": "O"})
    hosts.call("web1", "POST", "/orgs/O/sources/", 201, json={"id": "S"})
    for number in range(30):
        hosts.call("web1", "POST", f"{URL}concepts/", 201, json=concept(f"base{number}"))
    config = hosts.subscribe()

    # 1. mid-import: web1 runs the import (no other job runner yet) and is cut off holding it
    answer = hosts.call("web1", "POST", "/importers/bulk-import/", 202, data=jsonl(range(300)),
                        headers={"Content-Type": "application/x-ndjson"})
    job_path = answer.headers["Location"].split(":8000", 1)[-1]
    wait_for(lambda: hosts.held("import-batch"), "web1 to be mid-import", DEADLINE)
    # web1's curator waits 10 s for an answer: a request sent into the cut would otherwise wait
    # it out on its keep-alive connection and be answered once the link is back (never refused);
    # web2's waits as long as the others (a short wait there piles writes up on a loaded host)
    curators = [Curator(hosts, "web1", timeout=(3, 10)), Curator(hosts, "web2")]
    for curator in curators:
        curator.start()
    network.cut("web1")
    hosts.release("import-batch")
    hosts.start_worker()  # takes the import over once web1's lease expires

    def import_ended() -> Any:
        job = hosts.call("web2", "GET", job_path, 200).json()
        return job if job["state"] in ("FINISHED", "FAILED", "CANCELLED") else None

    job = wait_for(import_ended, "the import to end on the worker host", DEADLINE)
    assert job["state"] == "FINISHED" and job["summary"]["created"] == 300, (job, hosts.logs())
    results = hosts.call("web2", "GET", f"{job_path}results/?limit=500", 200).json()
    assert [result["line"] for result in results] == list(range(1, 301))
    first = hosts.sync(config)  # the subscribers read from web2 meanwhile
    assert all(result["ok"] for result in first), first
    network.restore("web1")
    wait_for(lambda: hosts._answers("web1"), "web1 to serve again", DEADLINE)

    # 2. mid-export-build: web1 builds (the worker host is stopped) and is cut off mid-build
    hosts.stop("worker")
    hosts.call("web2", "POST", f"{URL}versions/", 201, json={"id": "v1", "released": True})
    wait_for(lambda: hosts.held("export-build"), "web1 to be mid-build", DEADLINE)
    network.cut("web1")
    hosts.release("export-build")
    hosts.start_worker()

    def exported() -> Any:
        answer = hosts.call("web2", "GET", f"{URL}v1/export/")
        return answer if answer.status_code == 200 else None

    export = wait_for(exported, "the v1 export, built on the worker host", DEADLINE)
    assert hashlib.sha256(export.content).hexdigest() == export.headers["ETag"].strip('"')
    network.restore("web1")
    wait_for(lambda: hosts._answers("web1"), "web1 to serve again", DEADLINE)
    again = hosts.call("web1", "GET", f"{URL}v1/export/", 200)
    assert again.content == export.content  # one file in GridFS, served by either host

    for curator in curators:
        curator.stopping.set()
        curator.join(DEADLINE)
    assert all(curator.acknowledged for curator in curators)
    assert curators[0].refused > 0  # web1's curator did meet the cut

    # nothing acknowledged is lost; no job is stuck; every subscriber has the server's content
    for curator in curators:
        for concept_id, version in curator.acknowledged.items():
            item = hosts.call("web2", "GET", f"{URL}concepts/{concept_id}/", 200).json()
            assert int(item["version"]) >= int(version), (concept_id, item["version"], version)
    wait_for(lambda: active_jobs(hosts) == [], "no job pending or running", DEADLINE)
    hosts.call("web2", "POST", f"{URL}versions/", 201, json={"id": "v2", "released": True})
    wait_for(lambda: hosts.call("web2", "GET", f"{URL}v2/export/").status_code == 200,
             "the v2 export", DEADLINE)
    synced = hosts.sync(config)
    assert all(result["ok"] for result in synced), (synced, hosts.logs())
    verified = hosts.sync(config, "verify")
    head = hosts.call("web2", "GET", URL, 200).json()["checksums"]["content"]
    assert hosts.call("web2", "GET", f"{URL}v2/", 200).json()["checksums"]["content"] == head
    assert [(entry["name"], entry["checksum_matches"]) for entry in verified] == [
        ("release", True), ("snapshot", True)], (verified, hosts.backend)
    assert {entry["server_checksum"] for entry in verified} == {head}
