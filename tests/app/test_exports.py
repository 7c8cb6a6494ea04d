"""Exports through HTTP: the status table of docs/api.md (OCL v2's codes), headers, ranges,
invalidation, takeover, GC.

Every test runs against both storage backends (a local directory and GridFS).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from app import create_app
from app.exports import export_service
from app.exports.service import ExportService
from app.jobs import CANCELLED, FAILED, FINISHED, PENDING, RUNNING, JobContext, JobLost, Workers
from app.model import Job
from tests.conftest import ADMIN, FIXTURES, app_config, concept, mapping, mongo_database_uri

ORG, SOURCE = "TestOrg", "TestSource"
BASE = f"/orgs/{ORG}/sources/{SOURCE}/"
V1 = f"{BASE}v1/export/"


@dataclass
class Env:
    """A test app with one org, one source with content, and an unreleased version v1."""

    app: Any
    client: Any

    @property
    def workers(self) -> Workers:
        return self.app.extensions["termsync.jobs"]

    @property
    def service(self) -> ExportService:
        return export_service(self.app)

    def jobs(self, state: str | None = None) -> list[Job]:
        return self.workers.queue.list(kind="export", states=None if state is None else [state])[0]

    def abandon_jobs(self) -> None:
        for job in self.jobs():
            self.workers.queue.cancel(job.id)

    def build(self) -> int:
        return self.workers.run_until_idle()

    def ready(self, url: str = V1) -> Any:
        """POST (as OCL's clients do after a 204), build, GET; return the 200 answer."""
        if self.client.head(url).status_code != 200:
            self.client.post(url, headers=ADMIN)
        self.build()
        answer = self.client.get(url)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer


@pytest.fixture(params=["local", "gridfs"])
def backend(request: Any) -> str:
    return str(request.param)


class BufferedClient(FlaskClient):
    """A test client that reads and closes every body, as a WSGI server does."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def make_app(backend: str, tmp_path: Any, **extra: Any) -> Any:
    if backend == "gridfs":
        extra.setdefault("DATABASE_URI", mongo_database_uri())
    application = create_app(app_config(EXPORT_STORAGE=backend,
                                        EXPORT_DIR=str(tmp_path / "exports"), **extra))
    application.test_client_class = BufferedClient
    return application


@pytest.fixture
def env(backend: str, tmp_path: Any) -> Iterator[Env]:
    application = make_app(backend, tmp_path)
    client = application.test_client()
    assert client.post("/orgs/", json={"id": ORG}, headers=ADMIN).status_code == 201
    assert client.post(f"/orgs/{ORG}/sources/", json={"id": SOURCE}, headers=ADMIN).status_code == 201
    for code in ("A", "B", "C"):
        assert client.post(f"{BASE}concepts/", json=concept(code), headers=ADMIN).status_code == 201
    answer = client.post(f"{BASE}mappings/", headers=ADMIN,
                         json=mapping(f"{BASE}concepts/A/", f"{BASE}concepts/B/"))
    assert answer.status_code == 201
    assert client.post(f"{BASE}versions/", json={"id": "v1"}, headers=ADMIN).status_code == 201
    yield Env(application, client)


def unzip(data: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["export.json"]
        return json.loads(archive.read("export.json"))


def claim(env: Env, worker: str = "other-worker") -> Job:
    job = env.workers.queue.claim(["export"], worker, env.workers.lease_seconds)
    assert job is not None
    return job


UNKNOWN = [f"/orgs/Nobody/sources/{SOURCE}/v1/export/", f"/orgs/{ORG}/sources/Nope/v1/export/",
           f"{BASE}v9/export/", f"/users/nobody/sources/{SOURCE}/v1/export/"]


# --- the status table, row by row ---------------------------------------------------------
def test_get_row(env: Env) -> None:
    # none: 204, and GET never builds (OCL clients POST after a 204)
    answer = env.client.get(V1)
    assert answer.status_code == 204 and answer.data == b""
    assert env.jobs() == []
    # queued: 208 with when to ask again
    assert env.client.post(V1, headers=ADMIN).status_code == 202
    answer = env.client.get(V1)
    assert answer.status_code == 208
    assert answer.get_json() == {"state": "PENDING", "progress": 0}
    assert answer.headers["Retry-After"] == "5" and answer.headers["X-Export-Progress"] == "0%"
    assert [job.state for job in env.jobs()] == [PENDING]
    # being built: 208 with progress, no second job
    job = claim(env)
    env.workers.queue.heartbeat(job.id, "other-worker", 60, {"done": 2, "total": 5})
    answer = env.client.get(V1)
    assert answer.status_code == 208
    assert answer.get_json() == {"state": "BUILDING", "progress": 40}
    assert answer.headers["X-Export-Progress"] == "40%"
    assert len(env.jobs()) == 1
    env.workers.queue.cancel(job.id)
    # ready: 200, the file
    answer = env.ready()
    assert answer.headers["Content-Type"] == "application/zip"
    assert unzip(answer.data)["id"] == "v1"
    # HEAD version and unknown names
    assert env.client.get(f"{BASE}HEAD/export/").status_code == 405
    for url in UNKNOWN:
        assert env.client.get(url).status_code == 404, url


def test_head_row(env: Env) -> None:
    # none: 204, and no build is queued
    answer = env.client.head(V1)
    assert answer.status_code == 204
    assert env.jobs() == []
    # being built: 208 (queued, then running)
    env.client.post(V1, headers=ADMIN)
    assert env.client.head(V1).status_code == 208
    claim(env)
    answer = env.client.head(V1)
    assert answer.status_code == 208 and answer.headers["X-Export-Progress"] == "0%"
    env.abandon_jobs()
    # ready: 200, headers only, and the file is never opened
    full = env.ready()
    opened: list[str] = []
    storage = env.service.storage
    original = storage.open
    storage.open = lambda sha: opened.append(sha) or original(sha)  # type: ignore[method-assign]
    answer = env.client.head(V1)
    assert answer.status_code == 200 and answer.data == b""
    assert answer.headers["Content-Length"] == str(len(full.data))
    assert answer.headers["ETag"] == full.headers["ETag"]
    assert opened == []
    assert env.client.head(f"{BASE}HEAD/export/").status_code == 405
    for url in UNKNOWN:
        assert env.client.head(url).status_code == 404, url


def test_post_row(env: Env) -> None:
    # none: 202, build queued
    answer = env.client.post(V1, headers=ADMIN)
    assert answer.status_code == 202 and answer.get_json()["state"] == "PENDING"
    assert answer.headers["Retry-After"]
    first = env.jobs()
    assert len(first) == 1
    # queued or being built: 409, the same job
    assert env.client.post(V1, headers=ADMIN).status_code == 409
    claim(env)
    answer = env.client.post(V1, headers=ADMIN)
    assert answer.status_code == 409 and answer.get_json()["state"] == "BUILDING"
    assert [job.id for job in env.jobs()] == [first[0].id]
    env.abandon_jobs()
    # ready: 303 to the export (Location, and OCL's URL header); noRedirect: 204
    before = env.ready()
    answer = env.client.post(V1, headers=ADMIN)
    assert answer.status_code == 303 and answer.headers["Location"].endswith(V1)
    assert answer.headers["URL"] == V1
    assert env.client.post(f"{V1}?noRedirect=true", headers=ADMIN).status_code == 204
    assert env.jobs(state=PENDING) == []
    # ready, force=true: 202, a rebuild is queued; the ready file is served meanwhile
    assert env.client.post(f"{V1}?force=true", headers=ADMIN).status_code == 202
    assert len(env.jobs(state=PENDING)) == 1
    assert env.client.get(V1).headers["ETag"] == before.headers["ETag"]
    env.build()
    assert env.client.get(V1).headers["ETag"] != before.headers["ETag"]  # a new export_time
    assert env.client.post(f"{BASE}HEAD/export/", headers=ADMIN).status_code == 405
    for url in UNKNOWN:
        assert env.client.post(url, headers=ADMIN).status_code == 404, url


def test_delete_row(env: Env) -> None:
    # none: 404
    assert env.client.delete(V1, headers=ADMIN).status_code == 404
    # being built: 204 and the build is cancelled; its worker stops at the next heartbeat
    env.client.post(V1, headers=ADMIN)
    job = claim(env, "busy-worker")
    assert env.client.delete(V1, headers=ADMIN).status_code == 204
    assert env.workers.queue.get(job.id).state == CANCELLED
    with pytest.raises(JobLost):
        env.workers.queue.heartbeat(job.id, "busy-worker", 60)
    assert env.client.head(V1).status_code == 204
    # ready: 204 and the file is gone
    answer = env.ready()
    sha = answer.headers["ETag"].strip('"')
    assert env.service.storage.exists(sha)
    file_url = answer.headers["exportURL"].replace("http://localhost", "")
    assert env.client.delete(V1, headers=ADMIN).status_code == 204
    assert not env.service.storage.exists(sha)
    assert env.client.head(V1).status_code == 204
    assert env.client.get(file_url).status_code == 404
    assert env.client.delete(V1, headers=ADMIN).status_code == 404
    assert env.client.delete(f"{BASE}HEAD/export/", headers=ADMIN).status_code == 405
    for url in UNKNOWN:
        assert env.client.delete(url, headers=ADMIN).status_code == 404, url


def test_delete_during_build_discards_the_file(env: Env) -> None:
    env.client.post(V1, headers=ADMIN)
    job = claim(env, "slow-worker")
    env.client.delete(V1, headers=ADMIN)
    context = JobContext(env.workers.queue, job, "slow-worker", 60)
    with env.app.app_context(), pytest.raises(JobLost):
        env.service.build(context)
    assert list(env.service.storage.list()) == []
    assert env.client.head(V1).status_code == 204


def test_failed_build_answers_500_until_retried(env: Env, monkeypatch: Any) -> None:
    def broken(path: str, sha256: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(env.service.storage, "put", broken)
    env.client.post(V1, headers=ADMIN)
    env.build()
    for answer in (env.client.get(V1), env.client.head(V1)):
        assert answer.status_code == 500
    body = env.client.get(V1).get_json()
    assert body["state"] == "FAILED" and "disk full" in body["error"]
    assert len(env.jobs()) == 1  # GET never builds, so it never hammers the queue
    # a POST queues a new build at once
    monkeypatch.undo()
    assert env.client.post(V1, headers=ADMIN).status_code == 202
    env.build()
    assert env.client.get(V1).status_code == 200


def test_failed_release_build_is_retried_by_garbage_collection(env: Env, monkeypatch: Any) -> None:
    monkeypatch.setattr(env.service.storage, "put", lambda path, sha: 1 / 0)
    assert env.client.put(f"{BASE}v1/", json={"released": True}, headers=ADMIN).status_code == 200
    env.build()
    assert env.client.get(V1).status_code == 500
    monkeypatch.undo()
    env.service.purge()  # right after the failure: not yet
    assert env.client.get(V1).status_code == 500
    queue = env.workers.queue
    later = datetime.now(UTC) + timedelta(seconds=301)
    queue.clock = lambda: later
    env.service.purge()  # EXPORT_FAILED_RETRY_SECONDS later: queued again
    answer = env.client.get(V1)
    assert answer.status_code == 208 and answer.get_json()["state"] == "PENDING"
    env.build()
    assert env.client.get(V1).status_code == 200


def test_rights(env: Env, make_user_in: Any) -> None:
    stranger = make_user_in(env, "stranger")
    env.ready()
    # public source (View): anyone reads, only editors write
    assert env.client.get(V1).status_code == 200
    assert env.client.head(V1, headers=stranger).status_code == 200
    assert env.client.post(V1).status_code == 401
    assert env.client.post(V1, headers=stranger).status_code == 403
    assert env.client.delete(V1).status_code == 401
    assert env.client.delete(V1, headers=stranger).status_code == 403
    # a released version's export is a cache anyone who sees it may fill; force is an editor's
    assert env.client.put(f"{BASE}v1/", json={"released": True}, headers=ADMIN).status_code == 200
    env.build()
    assert env.client.post(V1, headers=stranger).status_code == 303
    assert env.client.post(f"{V1}?force=true", headers=stranger).status_code == 403
    # private source: 404 to those who cannot see it, for the export and its file
    answer = env.client.get(V1)
    file_url = answer.headers["exportURL"].replace("http://localhost", "")
    assert env.client.put(BASE, json={"public_access": "None"}, headers=ADMIN).status_code == 200
    for method in ("get", "head", "post", "delete"):
        assert getattr(env.client, method)(V1, headers=stranger).status_code == 404, method
    assert env.client.get(file_url, headers=stranger).status_code == 404
    # stale: the source changed, and a released version's export is rebuilt at once
    assert env.client.head(V1, headers=ADMIN).status_code == 208


@pytest.fixture
def make_user_in() -> Any:
    def make(env: Env, username: str) -> dict[str, str]:
        assert env.client.post("/users/", json={"username": username}, headers=ADMIN).status_code == 201
        answer = env.client.post(f"/users/{username}/tokens/", json={}, headers=ADMIN)
        return {"Authorization": f"Token {answer.get_json()['token']}"}
    return make


def test_user_owner_routes(env: Env, make_user_in: Any) -> None:
    headers = make_user_in(env, "alice")
    assert env.client.post("/user/sources/", json={"id": "Mine"}, headers=headers).status_code == 201
    env.client.post("/user/sources/Mine/concepts/", json=concept("X"), headers=headers)
    env.client.post("/user/sources/Mine/versions/", json={"id": "v1"}, headers=headers)
    assert env.client.get("/user/sources/Mine/v1/export/", headers=headers).status_code == 204
    assert env.client.post("/user/sources/Mine/v1/export/", headers=headers).status_code == 202
    env.build()
    answer = env.client.get("/users/alice/sources/Mine/v1/export/")
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="alice_Mine_v1.')
    assert env.client.head("/user/sources/Mine/v1/export/", headers=headers).status_code == 200


# --- headers, conditional requests and ranges ----------------------------------------------
def test_ready_headers(env: Env) -> None:
    answer = env.ready()
    sha = hashlib.sha256(answer.data).hexdigest()
    headers = answer.headers
    assert headers["ETag"] == f'"{sha}"'
    import base64
    assert headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(sha)).decode()}:"
    assert headers["Content-Length"] == str(len(answer.data))
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Last-Modified"].endswith("GMT")
    export = unzip(answer.data)
    assert headers["lastUpdated"] == export["lastUpdated"]
    assert headers["X-Export-Created"] == export["export_time"]
    stamp = datetime.strptime(headers["lastUpdated"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert headers["Content-Disposition"] == (
        f'attachment; filename="{ORG}_{SOURCE}_v1.{stamp:%Y%m%d%H%M%S}.zip"')
    assert headers["exportURL"] == f"http://localhost{BASE}exports/{sha}.zip"
    # the version's lastUpdated is the newest item's updated_on
    newest = max(item["updated_on"] for item in export["concepts"] + export["mappings"])
    assert export["lastUpdated"] == newest


def test_conditional_and_file_url(env: Env) -> None:
    answer = env.ready()
    etag = answer.headers["ETag"]
    for method in (env.client.get, env.client.head):
        cached = method(V1, headers={"If-None-Match": etag})
        assert cached.status_code == 304 and cached.data == b""
        assert cached.headers["ETag"] == etag
    assert env.client.get(V1, headers={"If-None-Match": '"other"'}).status_code == 200
    assert env.client.get(V1, headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304
    file_url = answer.headers["exportURL"].replace("http://localhost", "")
    direct = env.client.get(file_url)
    assert direct.status_code == 200 and direct.data == answer.data
    assert direct.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert direct.headers["ETag"] == etag
    assert env.client.get(file_url, headers={"If-None-Match": etag}).status_code == 304
    assert env.client.head(file_url).headers["Content-Length"] == str(len(answer.data))
    assert env.client.get(f"{BASE}exports/{'0' * 64}.zip").status_code == 404
    assert env.client.get(f"{BASE}exports/nothex.zip").status_code == 404


@pytest.mark.parametrize("url_kind", ["export", "file"])
def test_resume_with_range(env: Env, url_kind: str) -> None:
    full = env.ready()
    url = V1 if url_kind == "export" else full.headers["exportURL"].replace("http://localhost", "")
    size = len(full.data)
    half = size // 2
    first = env.client.get(url, headers={"Range": f"bytes=0-{half - 1}"})
    assert first.status_code == 206
    assert first.headers["Content-Range"] == f"bytes 0-{half - 1}/{size}"
    assert first.headers["Content-Length"] == str(half)
    rest = env.client.get(url, headers={"Range": f"bytes={half}-",
                                        "If-Range": full.headers["ETag"]})
    assert rest.status_code == 206
    assert rest.headers["Content-Range"] == f"bytes {half}-{size - 1}/{size}"
    joined = first.data + rest.data
    assert f'"{hashlib.sha256(joined).hexdigest()}"' == full.headers["ETag"]
    tail = env.client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == full.data[-10:]
    bad = env.client.get(url, headers={"Range": f"bytes={size}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{size}"
    # If-Range with another ETag: the whole file
    assert env.client.get(url, headers={"Range": "bytes=0-9",
                                        "If-Range": '"stale"'}).status_code == 200
    # several ranges: the whole file (allowed by RFC 9110)
    assert env.client.get(url, headers={"Range": "bytes=0-1,4-5"}).status_code == 200


# --- the file ------------------------------------------------------------------------------
def test_export_file_structure(env: Env) -> None:
    export = unzip(env.ready().data)
    keys = list(export)
    assert keys[0] == "type" and export["type"] == "Source Version"
    assert keys[-2:] == ["concepts", "mappings"]
    assert keys.index("lastUpdated") < keys.index("concepts")
    assert "export_time" in export
    assert [item["id"] for item in export["concepts"]] == ["A", "B", "C"]
    assert [item["map_type"] for item in export["mappings"]] == ["SAME-AS"]
    assert export["concepts"][0]["url"] == f"{BASE}concepts/A/"


def test_demo_export_matches_ocl(backend: str, tmp_path: Any) -> None:
    application = make_app(backend, tmp_path, LOAD_DEMO=True)
    client = application.test_client()
    url = "/orgs/DemoOrg/sources/DemoSource/v1.0/export/"
    application.extensions["termsync.jobs"].run_until_idle()  # released: queued at load time
    answer = client.get(url)
    assert answer.status_code == 200
    ours = unzip(answer.data)
    with zipfile.ZipFile(FIXTURES / "DemoSource_v1.0.zip") as archive:
        theirs = json.loads(archive.read("export.json"))
    assert set(theirs) <= set(ours), set(theirs) - set(ours)
    assert list(ours)[-2:] == ["concepts", "mappings"]
    for key in ("type", "id", "short_code", "name", "full_name", "description", "source_type",
                "public_access", "default_locale", "owner", "owner_type", "owner_url",
                "version_url", "version", "released", "retired", "concepts_url", "mappings_url"):
        assert ours[key] == theirs[key], key

    def concepts(export: dict[str, Any]) -> dict[str, Any]:
        return {item["id"]: (item["concept_class"], item["datatype"], item["url"],
                             item["retired"],
                             sorted((n["name"], n["locale"], n["name_type"], n["locale_preferred"])
                                    for n in item["names"]))
                for item in export["concepts"]}

    def mappings(export: dict[str, Any]) -> list[Any]:
        # OCL numbered the demo mappings while importing them in parallel: its ids follow no
        # file order, so ids are compared as a set and mappings by what they say
        return sorted((item["map_type"], item["from_concept_url"], item["to_concept_url"],
                       item.get("to_source_url"), item.get("to_concept_code"), item["retired"])
                      for item in export["mappings"])

    assert {item["id"] for item in ours["mappings"]} == {item["id"] for item in theirs["mappings"]}
    assert {item["url"] for item in ours["mappings"]} == {item["url"] for item in theirs["mappings"]}
    assert mappings(ours) == mappings(theirs)


# --- invalidation --------------------------------------------------------------------------
def test_version_description_edit_makes_the_export_stale(env: Env) -> None:
    old = env.ready()
    answer = env.client.put(f"{BASE}v1/", json={"description": "changed"}, headers=ADMIN)
    assert answer.status_code == 200
    assert env.client.head(V1).status_code == 204  # stale is none
    assert env.client.get(V1, headers={"If-None-Match": old.headers["ETag"]}).status_code == 204
    assert env.client.post(V1, headers=ADMIN).status_code == 202
    env.build()
    new = env.client.get(V1)
    assert new.status_code == 200 and new.headers["ETag"] != old.headers["ETag"]
    assert unzip(new.data)["description"] == "changed"
    # the stale file is collected; its immutable URL is gone with it
    report = env.service.purge(grace_seconds=0)
    assert report.files == 1
    old_sha = old.headers["ETag"].strip('"')
    assert not env.service.storage.exists(old_sha)
    assert env.client.get(f"{BASE}exports/{old_sha}.zip").status_code == 404
    assert env.client.get(V1).headers["ETag"] == new.headers["ETag"]


def test_concept_edit_makes_a_head_export_stale(env: Env) -> None:
    with env.app.app_context():
        source = env.app.extensions["termsync"].content.find_repo(BASE)
        head = env.app.extensions["termsync"].content.head_version(source)
        env.service.request(source, head)
    env.build()
    with env.app.app_context():
        source = env.app.extensions["termsync"].content.find_repo(BASE)
        status = env.service.status(source, env.app.extensions["termsync"].content.head_version(source))
        assert status.state == "READY"
    version_etag = env.ready().headers["ETag"]
    answer = env.client.put(f"{BASE}concepts/A/", json={"names": [
        {"name": "Renamed", "locale": "en", "locale_preferred": True}]}, headers=ADMIN)
    assert answer.status_code == 200, answer.get_json()
    with env.app.app_context():
        source = env.app.extensions["termsync"].content.find_repo(BASE)
        status = env.service.status(source, env.app.extensions["termsync"].content.head_version(source))
        assert status.state == "NONE"
    assert env.client.get(f"{BASE}HEAD/export/").status_code == 405
    # a version's content is immutable: its export stays valid after the edit
    assert env.client.get(V1).headers["ETag"] == version_etag
    assert env.service.purge(grace_seconds=0).files == 1  # the HEAD export's file


def test_stale_record_is_never_served_even_without_listeners(env: Env) -> None:
    old = env.ready()
    env.app.extensions["termsync"].content.listeners.clear()
    env.client.put(f"{BASE}v1/", json={"description": "changed"}, headers=ADMIN)
    assert env.client.head(V1).status_code == 204
    assert env.client.get(V1).status_code == 204
    assert env.client.post(V1, headers=ADMIN).status_code == 202
    env.build()
    assert env.client.get(V1).headers["ETag"] != old.headers["ETag"]


def test_release_queues_the_export(env: Env) -> None:
    assert env.client.head(V1).status_code == 204
    assert env.client.put(f"{BASE}v1/", json={"released": True}, headers=ADMIN).status_code == 200
    assert env.client.head(V1).status_code == 208
    env.build()
    assert env.client.head(V1).status_code == 200
    answer = env.client.post(f"{BASE}versions/", json={"id": "v2", "released": True}, headers=ADMIN)
    assert answer.status_code == 201
    assert env.client.head(f"{BASE}v2/export/").status_code == 208
    env.build()
    # a change to the source makes every released export stale: they are rebuilt at once
    assert env.client.put(BASE, json={"name": "Renamed"}, headers=ADMIN).status_code == 200
    assert env.client.head(V1).status_code == 208
    assert env.client.head(f"{BASE}v2/export/").status_code == 208
    env.build()
    assert unzip(env.client.get(V1).data)["name"] == "Renamed"


def test_released_versions_without_an_export_are_queued_at_startup(env: Env) -> None:
    assert env.client.put(f"{BASE}v1/", json={"released": True}, headers=ADMIN).status_code == 200
    env.build()
    assert env.client.delete(V1, headers=ADMIN).status_code == 204  # or lost, or an old format
    assert env.client.head(V1).status_code == 204
    # what startup (and every garbage collection) runs
    assert env.service.ensure_released_exports() == 1
    assert env.client.head(V1).status_code == 208
    assert env.service.ensure_released_exports() == 0  # queued already
    env.build()
    assert env.client.head(V1).status_code == 200
    assert env.service.ensure_released_exports() == 0


def test_export_date_is_its_versions_last_updated(env: Env) -> None:
    answer = env.ready()
    last_updated = datetime.strptime(answer.headers["lastUpdated"], "%Y-%m-%dT%H:%M:%S.%fZ")
    expected = last_updated.replace(microsecond=0, tzinfo=UTC)
    for response in (answer, env.client.head(V1),
                     env.client.get(answer.headers["exportURL"].replace("http://localhost", ""))):
        assert parsedate_to_datetime(response.headers["Date"]) == expected


def test_export_zip_has_no_zip64_records(env: Env) -> None:
    data = env.ready().data
    # Java's ZipInputStream (the OpenMRS module) reads a zip64 data descriptor wrongly
    assert b"PK\x06\x06" not in data and b"PK\x06\x07" not in data  # zip64 end records
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("export.json")
        assert info.flag_bits & 0x08  # streamed: sizes in a data descriptor
        assert b"\x01\x00" not in info.extra[:2]  # no zip64 extra field
    # the data descriptor holds 32-bit sizes: 16 bytes, straight before the central directory
    central = data.index(b"PK\x01\x02")
    descriptor = data[central - 16:central]
    assert descriptor[:4] == b"PK\x07\x08"
    assert int.from_bytes(descriptor[12:16], "little") == info.file_size


def test_deleting_the_version_deletes_its_export(env: Env) -> None:
    sha = env.ready().headers["ETag"].strip('"')
    assert env.client.delete(f"{BASE}v1/", headers=ADMIN).status_code == 204
    assert not env.service.storage.exists(sha)
    assert env.client.get(V1).status_code == 404


# --- the queue -----------------------------------------------------------------------------
def test_second_request_joins_the_running_build(env: Env) -> None:
    assert env.client.post(V1, headers=ADMIN).status_code == 202
    for _ in range(3):
        assert env.client.get(V1).status_code == 208
    assert env.client.post(V1, headers=ADMIN).status_code == 409
    assert env.client.post(f"{V1}?force=true", headers=ADMIN).status_code == 202
    assert len(env.jobs()) == 1
    assert env.build() == 1


def test_dead_worker_is_taken_over(env: Env) -> None:
    env.client.post(V1, headers=ADMIN)
    queue = env.workers.queue
    job = claim(env, "dying-worker")
    assert queue.get(job.id).state == RUNNING
    assert env.build() == 0  # the lease holds: nobody else takes it
    assert env.client.get(V1).status_code == 208
    later = datetime.now(UTC) + timedelta(seconds=env.workers.lease_seconds + 1)
    queue.clock = lambda: later
    assert env.build() == 1
    finished = queue.get(job.id)
    assert finished.state == FINISHED and finished.attempts == 2
    with pytest.raises(JobLost):
        queue.heartbeat(job.id, "dying-worker", 60)
    assert env.client.get(V1).status_code == 200


def test_heartbeats_during_a_build(backend: str, tmp_path: Any) -> None:
    application = make_app(backend, tmp_path, EXPORT_HEARTBEAT_ITEMS=2)
    client = application.test_client()
    client.post("/orgs/", json={"id": ORG}, headers=ADMIN)
    client.post(f"/orgs/{ORG}/sources/", json={"id": SOURCE}, headers=ADMIN)
    for number in range(7):
        client.post(f"{BASE}concepts/", json=concept(f"C{number}"), headers=ADMIN)
    client.post(f"{BASE}versions/", json={"id": "v1"}, headers=ADMIN)
    client.post(V1, headers=ADMIN)
    workers = application.extensions["termsync.jobs"]
    seen: list[dict[str, Any]] = []
    original = workers.queue.heartbeat

    def spy(job_id: str, worker_id: str, lease: float, progress: Any = None) -> None:
        seen.append(progress)
        original(job_id, worker_id, lease, progress)

    workers.queue.heartbeat = spy  # type: ignore[method-assign]
    workers.run_until_idle()
    assert {"done": 4, "total": 7} in seen and seen[-1] == {"done": 7, "total": 7}
    assert client.get(V1).status_code == 200


def test_failed_job_state_is_recorded(env: Env, monkeypatch: Any) -> None:
    monkeypatch.setattr(env.service.storage, "put", lambda path, sha: 1 / 0)
    env.client.post(V1, headers=ADMIN)
    env.build()
    assert [job.state for job in env.jobs()] == [FAILED]
    assert "ZeroDivisionError" in env.jobs()[0].error
    assert list(env.service.storage.stale_temp_files(datetime.now(UTC) + timedelta(1))) == []
    assert env.client.delete(V1, headers=ADMIN).status_code == 204  # clears the failure
    assert env.client.head(V1).status_code == 204


def test_scheduled_garbage_collection(backend: str, tmp_path: Any) -> None:
    from app.exports import GC_TASK, collect_garbage
    from app.ops.maintenance import TASKS

    application = make_app(backend, tmp_path, EXPORT_GC_GRACE_SECONDS=0.0)
    client = application.test_client()
    client.post("/orgs/", json={"id": ORG}, headers=ADMIN)
    client.post(f"/orgs/{ORG}/sources/", json={"id": SOURCE}, headers=ADMIN)
    client.post(f"{BASE}concepts/", json=concept("A"), headers=ADMIN)
    client.post(f"{BASE}versions/", json={"id": "v1"}, headers=ADMIN)
    client.post(V1, headers=ADMIN)
    application.extensions["termsync.jobs"].run_until_idle()
    old = client.get(V1).headers["ETag"].strip('"')
    client.put(f"{BASE}v1/", json={"description": "changed"}, headers=ADMIN)
    collect_garbage(application)  # what the scheduler runs
    assert not export_service(application).storage.exists(old)

    # Registered as maintenance: run once per interval across all worker processes.
    task = application.extensions[TASKS][GC_TASK]
    assert task.interval == 3600.0


def test_lost_file_is_rebuilt(env: Env) -> None:
    answer = env.ready()
    sha = answer.headers["ETag"].strip('"')
    env.service.storage.delete(sha)  # e.g. a disk replaced under the server
    file_url = answer.headers["exportURL"].replace("http://localhost", "")
    assert env.client.get(file_url).status_code == 404
    lost = env.client.get(V1)
    assert lost.status_code == 208 and lost.get_json()["state"] == "PENDING"
    env.build()
    assert env.client.get(V1).status_code == 200
