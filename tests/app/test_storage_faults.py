"""Full disks, read-only databases and directories the server may not write: every request that
would write answers 503 with Retry-After and the JSON error body (never a 500), reads go on,
`/readyz` says `degraded` and which storage, jobs wait the fault out, and a database that cannot
be opened or written stops startup with its path and the cause.

Each fault is made for real where the machine allows it: a small tmpfs filled to the last byte,
or remounted read-only (the tests run as root; a container that refuses `mount` skips these
variants, saying so). The `errno` variants always run: the same OSError (or SQLite error) is
raised at the filesystem boundary where the OS raises it, through the public interface.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.ops.health import READINESS
from app.store.base import DatabaseUnusable
from tests.conftest import ADMIN, app_config, concept

URL = "/orgs/O/sources/S/"
LINES = b"".join(json.dumps(dict(concept(f"L{number}"), type="Concept", owner="O",
                                 owner_type="Organization", source="S")).encode() + b"\n"
                 for number in range(30))


def mounting_refused() -> str | None:
    """Why this machine cannot mount a tmpfs for a test (None: it can)."""
    if os.geteuid() != 0:
        return "mount needs root"
    probe = Path(f"/tmp/termsync-mount-probe-{uuid.uuid4().hex[:8]}")
    probe.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            return f"mount refused here: {done.stderr.strip()}"
        subprocess.run(["umount", str(probe)], check=True)
        return None
    except FileNotFoundError:
        return "no mount command"
    finally:
        probe.rmdir()


MOUNT_REFUSED = mounting_refused()
needs_mount = pytest.mark.skipif(MOUNT_REFUSED is not None, reason=f"real fault variant: "
                                 f"{MOUNT_REFUSED} (the errno variant runs instead)")


@contextmanager
def tmpfs(path: Path, size: str = "16m") -> Iterator[Path]:
    """A small filesystem of its own at `path`, unmounted (lazily, if busy) afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(directory: Path, leave: int = 0) -> Path:
    """Write a file until its filesystem has no byte left (but `leave`); return it (delete it
    to free the space)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for block in (65536, 4096, 1):  # then the last partial blocks
            try:
                while True:
                    handle.write(b"\0" * block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    if leave:
        os.truncate(filler, filler.stat().st_size - leave)
    return filler


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` bound read-only over itself (as a remount read-only leaves it) until the end."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def make_app(root: Path, **extra: Any) -> Any:
    config = {"DATABASE_URI": f"sqlite:///{root / 'db' / 'termsync.db'}",
              "EXPORT_DIR": str(root / "exports"), "IMPORT_DIR": str(root / "imports")}
    application = create_app(app_config(**dict(config, **extra)))
    application.extensions[READINESS].storage.ttl = 0  # look at the disk on every /readyz
    return application


def setup_source(client: Any) -> None:
    assert client.post("/orgs/", json={"id": "O"}, headers=ADMIN).status_code == 201
    assert client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN).status_code == 201
    assert client.post(f"{URL}concepts/", json=concept("A"), headers=ADMIN).status_code == 201


def assert_fault(answer: Any, *words: str) -> None:
    """503, Retry-After, the JSON error body naming the storage and the cause."""
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert int(answer.headers["Retry-After"]) > 0
    body = answer.get_json()
    assert body["code"] == 503 and body["status"] == "Service Unavailable"
    for word in words:
        assert word in body["message"], body["message"]


def storage_report(client: Any) -> tuple[str, dict[str, Any]]:
    answer = client.get("/readyz")
    assert answer.status_code == 200  # reads are still served: stay in the load balancer
    body = answer.get_json()
    return body["status"], body["checks"]["storage"]


def import_upload(client: Any) -> Any:
    return client.post("/importers/bulk-import/", data=LINES, headers=ADMIN,
                       content_type="application/x-ndjson")


# --- a full disk ----------------------------------------------------------------------------

@needs_mount
def test_full_disk_is_503_for_writes_reads_go_on_and_readyz_is_degraded(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk") as disk:
        application = make_app(disk)
        client = application.test_client()
        setup_source(client)
        assert storage_report(client) == ("ok", {name: {"ok": True} for name in
                                                 ("database", "exports", "imports")})
        filler = fill(disk)

        assert_fault(client.post(f"{URL}concepts/", json=concept("B"), headers=ADMIN),
                     "The database", "no space left on device (ENOSPC)")
        assert_fault(import_upload(client), "no space left on device")
        assert not list((disk / "imports").glob("*.upload*"))  # no half file left behind
        assert client.get(f"{URL}concepts/A/").status_code == 200
        status, storage = storage_report(client)
        assert status == "degraded"
        for name in ("database", "exports", "imports"):
            assert storage[name] == {"ok": False, "error": "ENOSPC: no space left on device"}

        filler.unlink()
        assert storage_report(client)[0] == "ok"
        assert client.post(f"{URL}concepts/", json=concept("B"), headers=ADMIN).status_code == 201
        assert import_upload(client).status_code == 202
        application.extensions["termsync.store"].close()


def test_full_upload_disk_is_503_errno(tmp_path: Path, monkeypatch: Any) -> None:
    """The errno variant: the upload's write fails as a full disk fails it."""
    application = make_app(tmp_path)
    client = application.test_client()
    setup_source(client)
    real_open = open

    class FullFile:
        """A file on a full disk: it opens, and its first write fails with ENOSPC."""

        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> FullFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_disk_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(path, mode, *args, **kwargs)
        return FullFile(handle) if "w" in mode and str(path).endswith(".upload.part") else handle

    monkeypatch.setattr("app.imports.store.open", full_disk_open, raising=False)
    assert_fault(import_upload(client), "The upload storage", "(ENOSPC)")
    assert not list((tmp_path / "imports").glob("*.upload*"))
    monkeypatch.undo()
    assert import_upload(client).status_code == 202


@pytest.mark.parametrize(("said", "answered"), [
    ("database or disk is full", "no space left on device (ENOSPC)"),
    ("attempt to write a readonly database", "the database is read-only (EROFS)")])
def test_database_fault_is_503_errno(tmp_path: Path, monkeypatch: Any, said: str,
                                     answered: str) -> None:
    """The errno variant: SQLite's own words for a full disk or a read-only file, raised where
    SQLite raises them (the filesystem itself is fine here, so the words alone tell)."""
    application = make_app(tmp_path)
    client = application.test_client()
    setup_source(client)
    database = application.extensions["termsync.store"].database

    class FullDisk:
        def __init__(self, connection: Any) -> None:
            self.connection = connection

        def __getattr__(self, name: str) -> Any:
            return getattr(self.connection, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                raise sqlite3.OperationalError(said)
            return self.connection.execute(sql, *args)

    original = database.transaction

    @contextmanager
    def transaction(savepoint: bool = False) -> Iterator[Any]:
        with original(savepoint) as connection:
            yield FullDisk(connection)

    monkeypatch.setattr(database, "transaction", transaction)
    assert_fault(client.post(f"{URL}concepts/", json=concept("B"), headers=ADMIN),
                 f"The database cannot be written: {answered}")
    assert client.get(f"{URL}concepts/A/").status_code == 200


@needs_mount
def test_export_build_on_a_full_disk_waits_it_out_then_fails_as_a_fault(tmp_path: Path) -> None:
    """The build leaves no half file, is retried after its stretched lease, and when it has
    used its attempts answers 503 (a storage fault), not 500; freed space and a POST build it."""
    with tmpfs(tmp_path / "exports", "4m") as exports:
        application = create_app(app_config(EXPORT_DIR=str(exports), JOB_MAX_ATTEMPTS=2))
        client = application.test_client()
        setup_source(client)
        assert client.post(f"{URL}versions/", json={"id": "v1"}, headers=ADMIN).status_code == 201
        filler = fill(exports)
        workers = application.extensions["termsync.jobs"]
        export = f"{URL}v1/export/"
        assert client.post(export, headers=ADMIN).status_code == 202
        assert workers.run_until_idle() == 1
        job = workers.queue.list(kind="export")[0][0]
        assert job.state == "RUNNING" and job.attempts == 1  # waiting out the fault
        assert not list((exports / "tmp").glob(".export-*"))  # no half file
        assert client.head(export).status_code == 208
        assert workers.run_until_idle() == 0  # its lease, stretched, still holds
        later = datetime.now(UTC) + timedelta(seconds=workers.lease_seconds + 1)
        workers.queue.clock = lambda: later
        assert workers.run_until_idle() == 1  # the second and last attempt
        failed = client.get(export)
        assert_fault(failed)
        assert failed.get_json()["state"] == "FAILED"
        assert "no space left on device" in failed.get_json()["error"]
        assert client.head(export).status_code == 503

        filler.unlink()
        assert client.post(export, headers=ADMIN).status_code == 202
        workers.run_until_idle()
        assert client.get(export, buffered=True).status_code == 200
        application.extensions["termsync.store"].close()


def test_export_build_fault_errno_is_retried_and_builds(tmp_path: Path, monkeypatch: Any) -> None:
    """The errno variant: the temp file's write fails with EDQUOT once, the retry builds it."""
    application = create_app(app_config(EXPORT_DIR=str(tmp_path / "exports")))
    client = application.test_client()
    setup_source(client)
    client.post(f"{URL}versions/", json={"id": "v1"}, headers=ADMIN)
    real_open = open
    fired: list[str] = []

    def quota_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode and not fired:
            fired.append(str(path))
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("app.exports.builder.open", quota_open, raising=False)
    export = f"{URL}v1/export/"
    client.post(export, headers=ADMIN)
    workers = application.extensions["termsync.jobs"]
    workers.run_until_idle()
    assert fired and client.head(export).status_code == 208
    later = datetime.now(UTC) + timedelta(seconds=workers.lease_seconds + 1)
    workers.queue.clock = lambda: later
    workers.run_until_idle()
    assert client.get(export, buffered=True).status_code == 200


@needs_mount
def test_import_job_that_fills_the_database_disk_resumes_when_space_is_back(
        tmp_path: Path) -> None:
    """The disk fills part way through an import: the job keeps its upload and its progress,
    waits, and finishes exactly once space is back (its lease run out, as after a crash)."""
    lines = b"".join(json.dumps(dict(concept(f"L{number}"), type="Concept", owner="O",
                                     owner_type="Organization", source="S",
                                     descriptions=[{"description": "x" * 4000, "locale": "en"}])
                                ).encode() + b"\n" for number in range(400))
    with tmpfs(tmp_path / "disk", "8m") as disk:
        application = make_app(disk, IMPORT_DIR=str(tmp_path / "imports"), IMPORT_BATCH_SIZE=20)
        client = application.test_client()
        setup_source(client)
        submitted = client.post("/importers/bulk-import/", data=lines, headers=ADMIN,
                                content_type="application/x-ndjson")
        assert submitted.status_code == 202
        filler = fill(disk, leave=512 * 1024)  # room for a claim and a few batches, not all
        workers = application.extensions["termsync.jobs"]
        assert workers.run_until_idle() == 1
        job_url = f"/importers/bulk-import/{submitted.get_json()['id']}/"
        stopped = client.get(job_url, headers=ADMIN).get_json()
        assert stopped["state"] == "RUNNING", stopped
        assert 0 < stopped["summary"]["processed"] < 400
        assert list((tmp_path / "imports").glob("*.upload"))  # kept for the retry
        assert_fault(client.post(f"{URL}concepts/", json=concept("B"), headers=ADMIN))
        filler.unlink()
        later = datetime.now(UTC) + timedelta(seconds=2 * workers.lease_seconds + 1)
        workers.queue.clock = lambda: later
        assert workers.run_until_idle() == 1
        job = client.get(job_url, headers=ADMIN).get_json()
        assert job["state"] == "FINISHED", job
        assert job["summary"]["created"] == 400 and job["summary"]["failed"] == 0, job
        assert int(client.get(f"{URL}concepts/?limit=1").headers["num_found"]) == 401
        application.extensions["termsync.store"].close()


# --- a read-only database -------------------------------------------------------------------

@needs_mount
def test_read_only_database_is_503_and_stops_startup(tmp_path: Path) -> None:
    root = tmp_path / "server"
    application = make_app(root)
    client = application.test_client()
    setup_source(client)
    store = application.extensions["termsync.store"]
    with read_only(root / "db"):
        # connections opened from now on (a new thread, a new worker) meet a read-only mount;
        # the -wal and -shm files stay (nobody may remove them), so SQLite can still read
        store.close()
        assert_fault(client.post(f"{URL}concepts/", json=concept("B"), headers=ADMIN),
                     "The database cannot be written", "read-only file system (EROFS)")
        assert client.get(f"{URL}concepts/A/").status_code == 200
        status, storage = storage_report(client)
        assert status == "degraded"
        assert storage == {"database": {"ok": False, "error": "EROFS: read-only file system"},
                           "exports": {"ok": True}, "imports": {"ok": True}}
        store.close()

        with pytest.raises(DatabaseUnusable) as stopped:
            make_app(root)
        message = str(stopped.value)
        assert f"cannot use the SQLite database {root / 'db' / 'termsync.db'}" in message
        assert "read-only file system" in message and "(EROFS)" in message
    assert client.post(f"{URL}concepts/", json=concept("B"), headers=ADMIN).status_code == 201
    store.close()


def test_unopenable_database_stops_startup_naming_path_and_cause(tmp_path: Path) -> None:
    (tmp_path / "db" / "termsync.db").mkdir(parents=True)  # a directory where the file goes
    with pytest.raises(DatabaseUnusable) as stopped:
        make_app(tmp_path)
    assert f"{tmp_path / 'db' / 'termsync.db'}: it is a directory (EISDIR)" in str(stopped.value)
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(DatabaseUnusable) as stopped:
        create_app(app_config(DATABASE_URI=f"sqlite:///{blocker / 'termsync.db'}"))
    assert f"{blocker}/termsync.db" in str(stopped.value)
    assert "does not exist and cannot be created (ENOENT)" in str(stopped.value)


def test_readyz_names_the_directory_that_cannot_be_written(tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    """The errno variant of a read-only mount: the probe's create fails as EROFS fails it."""
    application = make_app(tmp_path)
    client = application.test_client()
    real_open = open
    exports = str(tmp_path / "exports")

    def read_only_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode and str(path).startswith(exports):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("app.faults.open", read_only_open, raising=False)
    status, storage = storage_report(client)
    assert status == "degraded"
    assert storage == {"database": {"ok": True}, "imports": {"ok": True},
                       "exports": {"ok": False, "error": "EROFS: read-only file system"}}


# --- every entry point stops at startup -----------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {
    "termsync serve": ["-m", "app.cli", "serve", "--port", "0"],
    "termsync worker": ["-m", "app.cli", "worker", "--threads", "1"],
    "termsync exports list": ["-m", "app.cli", "exports", "list"],
    "gunicorn": ["-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "1", "-b", "127.0.0.1:0",
                 "wsgi:app"],
}


def started(database: Path, tmp_path: Path) -> dict[str, tuple[int, str]]:
    """Each entry point started on `database`: its exit status and what it wrote."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
    env.update(TERMSYNC_DATABASE_URI=f"sqlite:///{database}",
               TERMSYNC_EXPORT_DIR=str(tmp_path / "exports"),
               TERMSYNC_IMPORT_DIR=str(tmp_path / "imports"))
    outcomes = {}
    for name, arguments in ENTRY_POINTS.items():
        done = subprocess.run([sys.executable, *arguments], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        outcomes[name] = (done.returncode, done.stdout + done.stderr)
    return outcomes


def assert_stopped_clearly(outcomes: dict[str, tuple[int, str]], *words: str) -> None:
    for name, (status, output) in outcomes.items():
        assert status != 0, (name, output)
        for word in words:
            assert word in output, (name, output)
        if name != "gunicorn":  # gunicorn adds its own lines; the app adds no traceback
            assert "Traceback" not in output, (name, output)
    assert "Traceback" not in outcomes["gunicorn"][1], outcomes["gunicorn"][1]


@pytest.mark.slow
@needs_mount
def test_read_only_database_stops_every_entry_point(tmp_path: Path) -> None:
    root = tmp_path / "server"
    application = make_app(root)
    setup_source(application.test_client())
    application.extensions["termsync.store"].close()
    with read_only(root / "db"):
        outcomes = started(root / "db" / "termsync.db", tmp_path)
    database = root / "db" / "termsync.db"
    assert_stopped_clearly(outcomes, f"cannot use the SQLite database {database}",
                           "read-only file system", "(EROFS)")


@pytest.mark.slow
def test_unopenable_database_stops_every_entry_point(tmp_path: Path) -> None:
    database = tmp_path / "termsync.db"
    database.mkdir()  # always possible, mount or not
    assert_stopped_clearly(started(database, tmp_path),
                           f"cannot use the SQLite database {database}: it is a directory (EISDIR)")
