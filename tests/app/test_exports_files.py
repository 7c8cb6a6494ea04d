"""Export records whose files are gone, truncated or corrupt (a new disk, a restore, someone's
`rm`): GET, HEAD and POST agree, nothing answers 200 (or 303) until a file exists again, and the
export is rebuilt, also when startup or garbage collection is the first to notice.

Every test runs against both storage backends (a local directory and GridFS on mongomock).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from tests.app.test_exports import V1, Env, backend, env, make_app
from tests.conftest import ADMIN

__all__ = ["backend", "env"]  # fixtures used here, defined beside the status table's tests

BASE_URL = V1.rsplit("v1/", 1)[0]


def release(env: Env) -> str:
    """Release v1, build its export; return the file's sha256."""
    assert env.client.put(f"{BASE_URL}v1/", json={"released": True}, headers=ADMIN).status_code == 200
    env.build()
    answer = env.client.head(V1)
    assert answer.status_code == 200
    return str(answer.headers["ETag"].strip('"'))


def remove_file(env: Env, sha: str) -> None:
    """Take the stored file away behind the server's back, as an operator or a disk would."""
    storage = env.service.storage
    if storage.name == "local":
        os.unlink(storage.path(sha))  # type: ignore[attr-defined]
    else:
        storage.files.delete_one({"_id": sha})  # type: ignore[attr-defined]
        storage.chunks.delete_many({"files_id": sha})  # type: ignore[attr-defined]


def damage(env: Env, sha: str, truncate: bool) -> None:
    """Cut the stored file short (`truncate`), or change one byte and keep its size."""
    storage = env.service.storage
    if storage.name == "local":
        path = storage.path(sha)  # type: ignore[attr-defined]
        size = os.path.getsize(path)
        with open(path, "r+b") as handle:
            if truncate:
                handle.truncate(size // 2)
            else:
                handle.seek(size // 2)
                byte = handle.read(1)
                handle.seek(size // 2)
                handle.write(bytes([byte[0] ^ 0xFF]))
        return
    chunks = storage.chunks  # type: ignore[attr-defined]
    if truncate:
        chunks.delete_one({"_id": f"{sha}:0"})
        return
    first = chunks.find_one({"_id": f"{sha}:0"})
    data = bytearray(first["data"])
    data[len(data) // 2] ^= 0xFF
    chunks.update_one({"_id": first["_id"]}, {"$set": {"data": bytes(data)}})


def answers(env: Env) -> dict[str, int]:
    """What HEAD, GET and POST (as OCL's clients send it) answer now, in that order."""
    return {"HEAD": env.client.head(V1).status_code, "GET": env.client.get(V1).status_code,
            "POST": env.client.post(V1, headers=ADMIN).status_code}


@pytest.mark.parametrize("first", ["HEAD", "GET", "POST"])
def test_missing_file_is_never_ready_and_every_method_agrees(env: Env, first: str) -> None:
    sha = release(env)
    remove_file(env, sha)
    noticed = env.client.open(V1, method=first, headers=ADMIN)
    # whichever request notices first queues the rebuild: 208 (202 for the POST that queued it)
    assert noticed.status_code == (202 if first == "POST" else 208)
    if first != "HEAD":
        assert noticed.get_json()["state"] == "PENDING"
    assert answers(env) == {"HEAD": 208, "GET": 208, "POST": 409}
    assert len(env.jobs("PENDING")) == 1  # one rebuild, however many noticed
    env.build()
    rebuilt = env.client.get(V1)
    assert rebuilt.status_code == 200 and rebuilt.headers["ETag"] != f'"{sha}"'
    assert answers(env) == {"HEAD": 200, "GET": 200, "POST": 303}


def test_missing_file_of_an_unreleased_version_is_rebuilt_as_asked(env: Env) -> None:
    """An export someone POSTed for a version not yet released is rebuilt too, not forgotten."""
    env.client.post(V1, headers=ADMIN)
    env.build()
    sha = env.client.head(V1).headers["ETag"].strip('"')
    remove_file(env, sha)
    assert answers(env) == {"HEAD": 208, "GET": 208, "POST": 409}
    env.build()
    assert answers(env) == {"HEAD": 200, "GET": 200, "POST": 303}


def test_truncated_file_is_lost_at_the_first_probe_and_its_url_is_gone(env: Env) -> None:
    sha = release(env)
    file_url = env.client.get(V1).headers["exportURL"].replace("http://localhost", "")
    damage(env, sha, truncate=True)
    if env.service.storage.name == "gridfs":
        # GridFS keeps the length in its files document: a missing chunk shows when read (GC)
        assert env.service.purge().lost_files == 1
    assert answers(env) == {"HEAD": 208, "GET": 208, "POST": 409}
    assert env.client.head(file_url).status_code == 404
    env.build()
    assert answers(env) == {"HEAD": 200, "GET": 200, "POST": 303}


def test_corrupt_file_of_the_same_size_is_caught_by_garbage_collection(env: Env) -> None:
    sha = release(env)
    assert env.service.purge().lost_files == 0  # intact
    damage(env, sha, truncate=False)
    # a probe looks at the size only (one stat); the client checks ETag / Repr-Digest
    assert env.client.head(V1).status_code == 200
    report = env.service.purge()
    assert report.lost_files == 1
    assert answers(env) == {"HEAD": 208, "GET": 208, "POST": 409}
    env.build()
    rebuilt = env.client.get(V1)
    assert rebuilt.status_code == 200 and rebuilt.headers["ETag"] != f'"{sha}"'
    assert env.service.purge().lost_files == 0


def test_startup_requeues_released_versions_whose_files_are_gone(backend: str, tmp_path: Any,
                                                                env: Env) -> None:
    sha = release(env)
    if backend == "local":
        shutil.rmtree(tmp_path / "exports")  # a new, empty disk
    else:
        remove_file(env, sha)  # a restore of the database without its GridFS files
    config = env.app.config
    restarted = make_app(backend, tmp_path, DATABASE_URI=config["DATABASE_URI"],
                         MONGO_DB=config["MONGO_DB"])
    jobs = restarted.extensions["termsync.jobs"]
    # queued by startup itself, before any request
    assert [job.state for job in jobs.queue.list(kind="export", states=["PENDING"])[0]] == \
        ["PENDING"]
    client = restarted.test_client()
    assert client.head(V1).status_code == 208
    jobs.run_until_idle()
    assert client.get(V1).status_code == 200


def test_garbage_collection_requeues_a_released_version_whose_file_is_gone(env: Env) -> None:
    sha = release(env)
    remove_file(env, sha)
    report = env.service.purge()  # before any request noticed
    assert report.lost_files == 1
    assert [job.state for job in env.jobs("PENDING")] == ["PENDING"]
    assert answers(env) == {"HEAD": 208, "GET": 208, "POST": 409}
    env.build()
    assert answers(env) == {"HEAD": 200, "GET": 200, "POST": 303}
