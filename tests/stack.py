"""The deployed stack, for tests and benches: nginx with the repository's
deploy/nginx/termsync.conf in front of gunicorn with gunicorn.conf.py (`wsgi:app`) and a
`termsync worker` process, on loopback, sharing one SQLite file (docs/deployment.md).

    with Stack(tmp_path) as stack:
        stack.call("GET", "/orgs/", 200)

What differs from production is only what a test needs: free loopback ports (nginx's `listen`
and the upstream's address are the two lines the site file marks "tests:"), a database and
directories of the stack's own, short job polling, and a clock the test can move forward
(`Stack.clock`; tests/launcher.py installs it in every process). `proxy=False` serves gunicorn
bare, the way docs/deployment.md says not to: benches compare against it, and it shows what a
client of a bare gunicorn gets.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from itertools import count
from pathlib import Path
from typing import Any

import requests

from tests.conftest import ADMIN_TOKEN, concept
from tests.launcher import hold_lock

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "deploy" / "nginx" / "termsync.conf"
DEADLINE = 60.0  # seconds any awaited condition may take
TRICKLE_SECONDS = 1.0  # a slow client's pace
# The lines of the site file the tests change, and what they become.
UPSTREAM_LINE = "    server 127.0.0.1:8000;  # tests: gunicorn's address"
LISTEN_LINE = "    listen 80;  # tests: a loopback port"


def wait_for(condition: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll `condition` until it returns something truthy; fail after `deadline` seconds."""
    until = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > until:
            raise AssertionError(f"still waiting after {deadline}s for {what}")
        time.sleep(0.05)  # polling interval, not a wait for an event


def free_port() -> int:
    """A loopback port nothing listens on (for servers that cannot bind port 0 themselves)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def renamed_copy(fixture: Path, directory: Path, names: dict[str, str]) -> Path:
    """A copy of a fixture file (text, or a zip of text files) in `directory`, with names
    replaced (an organization's, so that tests sharing a stack do not meet)."""

    def renamed(text: str) -> str:
        for old, new in names.items():
            text = text.replace(old, new)
        return text

    copy = directory / fixture.name
    if fixture.suffix != ".zip":
        copy.write_text(renamed(fixture.read_text(encoding="utf-8")), encoding="utf-8")
        return copy
    with zipfile.ZipFile(fixture) as source, zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) \
            as target:
        for entry in source.infolist():
            target.writestr(entry.filename, renamed(source.read(entry).decode("utf-8")))
    return copy


class StackClock:
    """The clock of every process of a stack: the real time plus an offset this test writes to
    a file (tests/launcher.py), which only ever grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0
        self.path.write_text("0", encoding="ascii")

    def advance(self, seconds: float) -> None:
        """Move every process's clock `seconds` forward, at once."""
        self.offset += seconds
        staging = self.path.with_suffix(".new")
        staging.write_text(repr(self.offset), encoding="ascii")
        staging.replace(self.path)  # readers see the old number or the new one, never half

    def now(self) -> datetime:
        """What the stack's processes read as the time now."""
        return datetime.now(UTC) + timedelta(seconds=self.offset)


def nginx_site(upstream: str, port: int) -> str:
    """deploy/nginx/termsync.conf with the tests' upstream and listening port."""
    site = SITE.read_text(encoding="utf-8")
    for line, replacement in ((UPSTREAM_LINE, f"    server {upstream};"),
                              (LISTEN_LINE, f"    listen 127.0.0.1:{port};")):
        assert site.count(line + "\n") == 1, f"{SITE} no longer has the line {line.strip()!r}"
        site = site.replace(line + "\n", replacement + "\n")
    return site


def nginx_main(root: Path, site: Path, temp: Path) -> str:
    """A main nginx.conf as Debian's, for a server of the stack's own (its files under `root`,
    its temporary files under `temp`)."""
    paths = "\n".join(f"    {kind}_temp_path {temp / kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
worker_processes 1;
pid {root / 'nginx.pid'};
error_log {root / 'nginx-error.log'} warn;
include /etc/nginx/modules-enabled/*.conf;
events {{
    worker_connections 1024;
}}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    gzip on;
{paths}
    include {site};
}}
"""


class SlowClients:
    """Connections that send a request body ("senders": a sign-in form of 100,000 bytes, one
    byte a second), or read an answer ("readers": a GET of `path` with a 4 KiB receive buffer,
    1 KiB a second), a little at a time, until closed."""

    def __init__(self, url: str, count: int, kind: str, path: str = "/") -> None:
        host, port = url.removeprefix("http://").split(":")
        self.kind = kind
        self.sockets: list[socket.socket] = []
        self.stopped = threading.Event()
        for _ in range(count):
            connection = socket.socket()
            if kind == "readers":  # a small window: the server's writes block at once
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            connection.connect((host, int(port)))
            if kind == "senders":
                connection.sendall(
                    f"POST /console/sign-in HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n"
                    "Content-Length: 100000\r\n\r\nt".encode())
            else:
                connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
                                   .encode())
            self.sockets.append(connection)
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stopped.wait(TRICKLE_SECONDS):  # the slow client's pace
            for connection in self.sockets:
                try:
                    if self.kind == "senders":
                        connection.send(b"t", socket.MSG_DONTWAIT)
                    else:
                        connection.recv(1024, socket.MSG_DONTWAIT)
                except OSError:
                    pass  # nothing to read yet, or the server gave up on this one

    def close(self) -> None:
        """Stop trickling and close every connection."""
        self.stopped.set()
        self.thread.join(10)
        for connection in self.sockets:
            connection.close()


class Stack:
    """nginx → gunicorn (+ `termsync worker`) on loopback, as docs/deployment.md deploys it."""

    def __init__(self, root: Path, *, proxy: bool = True, web_processes: int = 2,
                 threads: int | None = None, worker: bool = True, fixed_port: bool = False,
                 settings: dict[str, str] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.proxy = proxy
        self.web_processes = web_processes
        self.clock = StackClock(root / "clock")
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("TERMSYNC_", "GUNICORN_"))}
        self.env.update(
            TERMSYNC_TEST_CLOCK=str(self.clock.path),
            TERMSYNC_TEST_HOLD_JOBS=str(root / "hold-jobs"),
            TERMSYNC_DATABASE_URI=f"sqlite:///{root / 'termsync.db'}",
            TERMSYNC_ADMIN_TOKEN=ADMIN_TOKEN, TERMSYNC_EXPORT_DIR=str(root / "exports"),
            TERMSYNC_IMPORT_DIR=str(root / "imports"), TERMSYNC_BACKGROUND_WORKERS="0",
            TERMSYNC_TRUSTED_PROXIES="1" if proxy else "0",
            TERMSYNC_JOB_POLL_SECONDS="0.05", TERMSYNC_EXPORT_RETRY_AFTER="1",
            TERMSYNC_LOG_LEVEL="WARNING", TERMSYNC_ACCESS_LOG="false",
            # port 0 for tests; a fixed (free) one for benches, as production binds: each
            # gunicorn process then has a socket of its own (gunicorn.conf.py, reuse_port)
            TERMSYNC_BIND=f"127.0.0.1:{free_port() if fixed_port else 0}",
            GUNICORN_WORKERS=str(web_processes),
            # gunicorn (25.1+) opens a control socket there: one per stack, not one per user
            XDG_RUNTIME_DIR=str(root))
        if threads is not None:
            self.env["GUNICORN_THREADS"] = str(threads)
        self.env.update(settings or {})
        self.with_worker = worker
        # nginx's workers run as nobody when the tests run as root, and a test's directory is
        # closed to others: request bodies and buffered answers go to a directory of their own
        self.nginx_temp = Path(tempfile.mkdtemp(prefix="termsync-nginx-"))
        self.nginx_temp.chmod(0o777)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.gunicorn: subprocess.Popen[bytes] | None = None
        self.gunicorn_url = ""
        self.url = ""
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.headers["Authorization"] = f"Token {ADMIN_TOKEN}"
        self._names = count(1)

    # --- processes ---------------------------------------------------------------------------
    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.root / log, "ab") as handle:
            process = subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=handle,
                                       stderr=handle)
        self.processes.append(process)
        return process

    def _launch(self, *program: str, log: str) -> subprocess.Popen[bytes]:
        """A real entry point through tests/launcher.py (which installs the stack's clock)."""
        return self._spawn([sys.executable, "-m", "tests.launcher", *program], log)

    def start(self) -> Stack:
        """Start gunicorn, the worker and nginx; return once nginx answers through gunicorn."""
        try:
            self._start_gunicorn()
            self.url = self.gunicorn_url
            # the worker starts once gunicorn's processes have made the database: processes that
            # all make a new SQLite file at once contend for its first locks
            wait_for(self._answers, "gunicorn to answer")
            if self.with_worker:
                self._launch("termsync", "worker", "--threads", "2", log="worker.log")
            if self.proxy:
                self._start_nginx()
            wait_for(self._answers, f"{self.url}/healthz to answer")
        except BaseException:
            self.close()
            raise
        return self

    def _start_gunicorn(self) -> None:
        log = self.root / "gunicorn.log"
        self.gunicorn = self._launch("gunicorn", "-c", "gunicorn.conf.py", "wsgi:app",
                                     log=log.name)

        def listening() -> str | None:
            assert self.gunicorn is not None
            if self.gunicorn.poll() is not None:
                raise AssertionError(f"gunicorn exited: {self.logs()}")
            text = log.read_text(errors="replace")
            if text.count("Booting worker") < self.web_processes or "Listening at: " not in text:
                return None
            bind = self.env["TERMSYNC_BIND"]
            if not bind.endswith(":0"):  # a socket per process: the arbiter names none
                return f"http://{bind}"
            return text.split("Listening at: ")[1].split()[0]

        self.gunicorn_url = wait_for(listening, "gunicorn to boot its workers")

    def _start_nginx(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        upstream = self.gunicorn_url.removeprefix("http://")
        site, main = self.root / "termsync.conf", self.root / "nginx.conf"
        for _ in range(5):  # a port found free may be taken before nginx binds it: another
            port = free_port()
            site.write_text(nginx_site(upstream, port), encoding="utf-8")
            main.write_text(nginx_main(self.root, site, self.nginx_temp), encoding="utf-8")
            process = self._spawn([nginx, "-e", str(self.root / "nginx-error.log"),
                                   "-c", str(main)], "nginx.log")
            self.url = f"http://127.0.0.1:{port}"
            wait_for(self._answers_or_exited(process), "nginx to start")
            if process.poll() is None:
                return
            if "Address already in use" not in self.logs():
                break
        raise AssertionError(f"nginx did not start: {self.logs()}")

    def _answers_or_exited(self, process: subprocess.Popen[bytes]) -> Callable[[], bool]:
        """A condition: the stack answers, or `process` has exited (nginx on a taken port)."""
        return lambda: process.poll() is not None or self._answers()

    def _answers(self) -> bool:
        """Whether the stack answers /healthz (an error if gunicorn has exited meanwhile)."""
        if self.gunicorn is not None and self.gunicorn.poll() is not None:
            raise AssertionError(f"gunicorn exited: {self.logs()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=DEADLINE).status_code == 200
        except requests.ConnectionError:
            return False

    def logs(self) -> str:
        """The end of every log of the stack, for assertion messages."""
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.root.glob("*.log")))

    def close(self) -> None:
        """Stop every process of the stack (SIGTERM, as a service manager does)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.http.close()
        shutil.rmtree(self.nginx_temp, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- as a client ---------------------------------------------------------------------------
    def call(self, method: str, path: str, expect: int | None = None,
             **kwargs: Any) -> requests.Response:
        """A request as admin through the stack, asserting its status when `expect` is given."""
        kwargs.setdefault("timeout", DEADLINE)
        answer = self.http.request(method, self.url + path, **kwargs)
        if expect is not None:
            assert answer.status_code == expect, (method, path, answer.status_code,
                                                  answer.text[:2000])
        return answer

    @contextmanager
    def jobs_held(self) -> Iterator[None]:
        """Jobs queued inside the block wait there (the worker claims none until it ends), so
        that a test sees them queued; they run afterwards."""
        hold = Path(self.env["TERMSYNC_TEST_HOLD_JOBS"])
        with hold_lock(str(hold)):  # a claim under way ends before the hold begins
            hold.touch()
        try:
            yield
        finally:
            hold.unlink(missing_ok=True)

    def run_jobs(self) -> None:
        """Wait until the worker has run every queued job (builds, imports)."""

        def idle() -> bool:
            checks = self.call("GET", "/readyz", 200).json()["checks"]
            return int(checks["queue"]["depth"]) == 0

        wait_for(idle, "the job queue to empty")

    def unused_name(self, prefix: str) -> str:
        """A name (of an organization, a user) that no other test of this stack uses."""
        return f"{prefix}{next(self._names)}x{os.getpid()}"

    def new_org(self, prefix: str = "T") -> str:
        """Create an organization no other test of this stack uses; return its id."""
        org = self.unused_name(prefix)
        self.call("POST", "/orgs/", 201, json={"id": org})
        return org

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        """Create a user no other test of this stack uses; return its name and a token."""
        username = self.unused_name(prefix)
        self.call("POST", "/users/", 201, json={"username": username})
        token = self.call("POST", f"/users/{username}/tokens/", 201, json={}).json()["token"]
        return username, str(token)

    def import_lines(self, text: str, update_if_exists: bool = False,
                     deadline: float = DEADLINE) -> dict[str, Any]:
        """A bulk import (OCL JSON lines) through the stack, run by the worker; its job, ended
        (within `deadline` seconds)."""
        query = "?update_if_exists=true" if update_if_exists else ""
        answer = self.call("POST", f"/importers/bulk-import/{query}", 202,
                           data=text.encode("utf-8"),
                           headers={"Content-Type": "application/x-ndjson"})
        job_url = answer.headers["Location"]

        def ended() -> dict[str, Any] | None:
            job: dict[str, Any] = self.call("GET", job_url, 200).json()
            return job if job["state"] in ("FINISHED", "FAILED", "CANCELLED") else None

        job = wait_for(ended, f"the import {job_url} to end", deadline)
        assert job["state"] == "FINISHED", job
        return job

    def wait_for_export(self, version_path: str) -> requests.Response:
        """The export of a released version once the worker has built it (GET, 200)."""

        def built() -> requests.Response | None:
            answer = self.call("GET", f"{version_path}export/")
            assert answer.status_code in (200, 208), (answer.status_code, answer.text)
            return answer if answer.status_code == 200 else None

        answer: requests.Response = wait_for(built, f"the export of {version_path}")
        return answer

    def demo(self, prefix: str = "Demo") -> str:
        """OCL's demo source (23 concepts, 22 mappings, released as v1.0 with its export built)
        in an organization of its own; return the source's path."""
        org = self.unused_name(prefix)
        lines = resources.files("app").joinpath("data/sample_ocldev.jsonl").read_text("utf-8")
        self.import_lines(lines.replace('"DemoOrg"', f'"{org}"')
                          .replace("/orgs/DemoOrg/", f"/orgs/{org}/"))
        path = f"/orgs/{org}/sources/DemoSource/"
        self.wait_for_export(f"{path}v1.0/")
        return path


def demo_dictionary(stack: Stack, demo: str) -> str:
    """Beside the demo source at `demo`: a second source (Other) with an Apple of its own and a
    Banana, and a collection (Dict) of both Apples, the demo's Mango pinned to v1.0 and its
    Vegetable with Vegetable's mappings (cascaded), released as v1; the collection's path."""
    org = demo.split("/")[2]
    other, collection = f"/orgs/{org}/sources/Other/", f"/orgs/{org}/collections/Dict/"
    stack.call("POST", f"/orgs/{org}/sources/", 201, json={"id": "Other"})
    stack.call("POST", f"{other}concepts/", 201, json=concept("Apple", "Other apple"))
    stack.call("POST", f"{other}concepts/", 201, json=concept("Banana"))
    stack.call("POST", f"/orgs/{org}/collections/", 201, json={"id": "Dict"})
    stack.call("PUT", f"{collection}references/", 200, json={"data": {"expressions": [
        f"{demo}concepts/Apple/", f"{other}concepts/Apple/", f"{demo}v1.0/concepts/Mango/"]}})
    stack.call("PUT", f"{collection}references/?cascade=sourcemappings", 200,
               json={"data": {"expressions": [f"{demo}concepts/Vegetable/"]}})
    stack.call("POST", f"{collection}versions/", 201, json={"id": "v1", "released": True})
    return collection
