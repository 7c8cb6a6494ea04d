"""An upload that dies (its process killed while receiving it) leaves nothing stuck: its
Idempotency-Key claim is taken over by a retry once its lease ends (not before, and never while
the upload is still arriving: it renews the lease), and maintenance collects its part file, the
uploads no job holds and the lapsed claims. On SQLite and on the MongoDB backend (mongomock).

The real thing, a gunicorn worker SIGKILLed mid-upload, is in tests/security/test_processes.py.
"""

from __future__ import annotations

import io
import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.imports import GC_TASK
from app.ops.maintenance import TASKS
from app.timeutil import format_time
from tests.conftest import ADMIN, app_config, concept, mongo_database_uri

IMPORTS = "/importers/bulk-import/"
LEASE = 30.0
BODY = b"".join(json.dumps(line).encode() + b"\n" for line in (
    {"type": "Organization", "id": "O"}, {"type": "Source", "id": "S", "owner": "O"},
    *(dict(concept(f"C{number}"), type="Concept", owner="O", source="S") for number in range(5))))


@pytest.fixture(params=["sqlite", "mongodb"])
def app(request: Any, tmp_path: Path) -> Any:
    extra: dict[str, Any] = {"IMPORT_DIR": str(tmp_path / "imports"),
                             "IMPORT_UPLOAD_LEASE_SECONDS": LEASE}
    if request.param == "mongodb":
        extra.update(DATABASE_URI=mongo_database_uri(), IMPORT_STORAGE="mongo")
    return create_app(app_config(**extra))


class Clock:
    """The time the app's job queue (and so the upload claims) reads; moved by hand."""

    def __init__(self, app: Any) -> None:
        self.queue = app.extensions["termsync.jobs"].queue
        self.now = self.queue.clock()
        self.queue.clock = lambda: self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def post(client: Any, body: Any, key: str = "k") -> Any:
    stream = io.BytesIO(body) if isinstance(body, bytes) else body
    return client.post(IMPORTS, input_stream=stream, content_type="application/x-ndjson",
                       headers=dict(ADMIN, **{"Idempotency-Key": key}))


class Body:
    """A request body that arrives in pieces; `between(n)` runs before the n-th piece (n >= 1),
    as time passes between a slow client's packets."""

    def __init__(self, data: bytes, pieces: int, between: Any) -> None:
        size = len(data) // pieces + 1
        self.pieces = [data[start:start + size] for start in range(0, len(data), size)]
        self.between = between
        self.size = len(data)
        self.position = 0
        self.read_count = 0

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = self.size if whence == io.SEEK_END else offset  # werkzeug measures
        return self.position

    def read(self, size: int = -1) -> bytes:
        if not self.pieces:
            return b""
        if self.read_count:
            self.between(self.read_count)
        self.read_count += 1
        piece = self.pieces.pop(0)
        self.position += len(piece)
        return piece


def test_the_claim_of_a_dead_upload_is_taken_over_after_its_lease(app: Any) -> None:
    client = app.test_client()
    clock = Clock(app)
    keys = app.extensions["termsync.imports"].keys
    # what a request killed mid-upload leaves: its claim, with the lease it last renewed
    keys.claim("admin\nk", "host:4242:dead", format_time(clock.now),
               format_time(clock.now + timedelta(seconds=LEASE)))
    clock.advance(LEASE - 1)
    busy = post(client, BODY)
    assert busy.status_code == 409 and busy.headers["Retry-After"] == "2"
    clock.advance(1)
    taken = post(client, BODY)
    assert taken.status_code == 202, taken.get_json()
    job_id = taken.get_json()["id"]
    again = post(client, BODY)  # the key is the new job's now, for good
    assert again.status_code == 202 and again.get_json()["id"] == job_id
    assert again.headers["Idempotent-Replayed"] == "true"
    app.extensions["termsync.jobs"].run_until_idle()
    job = client.get(f"{IMPORTS}{job_id}/", headers=ADMIN).get_json()
    assert job["state"] == "FINISHED" and job["summary"]["created"] == 7


def test_an_upload_still_arriving_renews_its_claim(app: Any) -> None:
    client = app.test_client()
    clock = Clock(app)
    keys = app.extensions["termsync.imports"].keys
    held: list[Any] = []

    def slowly(piece: int) -> None:
        clock.advance(LEASE * 0.9)  # longer than the lease in all, but bytes keep arriving
        held.append(keys.claim("admin\nk", "a retry", format_time(clock.now),
                               format_time(clock.now + timedelta(seconds=LEASE))))

    answer = post(client, Body(BODY, 4, slowly))
    assert answer.status_code == 202, answer.get_json()
    assert len(held) == 3 and all(claim is not None for claim in held)  # never taken over
    assert post(client, BODY).get_json()["id"] == answer.get_json()["id"]


def test_an_upload_that_lost_its_claim_makes_no_second_job(app: Any) -> None:
    """Stalled past its lease, taken over by a retry: the stalled upload gives up (409)."""
    client = app.test_client()
    clock = Clock(app)
    retry: list[Any] = []

    def stall(piece: int) -> None:
        if piece == 1:
            clock.advance(LEASE + 1)
            retry.append(post(client, BODY))

    stalled = post(client, Body(BODY, 3, stall))
    assert retry[0].status_code == 202
    assert stalled.status_code == 409, stalled.get_json()
    jobs, total = app.extensions["termsync.jobs"].queue.list(kind="bulk_import")
    assert total == 1 and jobs[0].id == retry[0].get_json()["id"]


def test_maintenance_collects_dead_uploads_orphans_and_lapsed_claims(app: Any,
                                                                     tmp_path: Path) -> None:
    service = app.extensions["termsync.imports"]
    assert app.extensions[TASKS][GC_TASK].run == service.collect_garbage
    client = app.test_client()
    clock = Clock(app)
    waiting = client.post(IMPORTS, data=BODY, headers=ADMIN,
                          content_type="application/x-ndjson").get_json()["id"]
    waiting_upload = service.queue.get(waiting).payload["upload"]
    uploads = service.uploads
    # an upload killed mid-way, one still arriving, one complete whose job was never queued
    died, arriving, orphan = "d" * 32, "a" * 32, "o" * 32
    for upload_id in (died, orphan):
        uploads.save(upload_id, [b'{"type": "Organization", "id": "X"}\n'])
    service.keys.claim("admin\nlapsed", "host:1:dead", format_time(clock.now),
                       format_time(clock.now + timedelta(seconds=LEASE)))
    if uploads.__class__.__name__ == "LocalUploads":
        directory = Path(uploads.directory)
        os.replace(directory / f"{died}.upload", directory / f"{died}.upload.part")
        (directory / f"{arriving}.upload.part").write_bytes(b"first bytes")
        old = time.time() - 3 * LEASE
        for name in (f"{died}.upload.part", f"{orphan}.upload", f"{waiting_upload}.upload"):
            os.utime(directory / name, (old, old))
    else:
        uploads.chunks.delete_one({"_id": f"{died}:meta"})  # died before its meta document
        uploads.chunks.insert_one({"_id": f"{arriving}:0000000", "upload": arriving,
                                   "written_on": format_time(clock.now), "data": b"first"})
        old = format_time(clock.now - timedelta(seconds=3 * LEASE))
        uploads.chunks.update_many({"upload": {"$in": [died, orphan, waiting_upload]}},
                                   {"$set": {"written_on": old}})
    clock.advance(LEASE + 1)
    assert service.collect_garbage() == {"uploads": 2, "keys": 1}
    assert service.collect_garbage() == {"uploads": 0, "keys": 0}
    if uploads.__class__.__name__ == "LocalUploads":
        assert sorted(path.name for path in Path(uploads.directory).iterdir()) == \
            sorted([f"{arriving}.upload.part", f"{waiting_upload}.upload"])
    else:
        assert sorted(uploads.chunks.distinct("upload")) == sorted([arriving, waiting_upload])
    app.extensions["termsync.jobs"].run_until_idle()  # the waiting job still has its upload
    job = client.get(f"{IMPORTS}{waiting}/", headers=ADMIN).get_json()
    assert job["state"] == "FINISHED" and job["summary"]["created"] == 7
