"""Delta packages through HTTP (`{repo}/{to}/export/?since={from}`): exactly the changes between
two releases, the export's status table, headers, caching and invalidation, for a source and a
collection, on both storage backends (a local directory on SQLite, GridFS on MongoDB)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.jobs import CANCELLED, FINISHED, JobLost
from app.model import checksum_of
from tests.app.test_exports import Env, claim, make_app
from tests.conftest import ADMIN, concept, mapping

ORG, SOURCE = "DeltaOrg", "Terms"
BASE = f"/orgs/{ORG}/sources/{SOURCE}/"
DELTA = f"{BASE}v2/export/?since=v1"


@pytest.fixture(params=["local", "gridfs"])
def backend(request: Any) -> str:
    return str(request.param)


def call(client: Any, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    answer = client.open(path, method=method, headers=ADMIN, **kwargs)
    assert answer.status_code == expect, (method, path, answer.status_code, answer.get_data())
    return answer.get_json(silent=True)


def concept_url(concept_id: str, base: str = BASE) -> str:
    return f"{base}concepts/{concept_id}/"


def fill(client: Any) -> None:
    """Ten concepts, three mappings between them, released as v1."""
    call(client, "POST", "/orgs/", 201, json={"id": ORG})
    call(client, "POST", f"/orgs/{ORG}/sources/", 201, json={"id": SOURCE})
    for number in range(10):
        call(client, "POST", f"{BASE}concepts/", 201, json=concept(f"C{number}"))
    for number in range(3):
        call(client, "POST", f"{BASE}mappings/", 201, json=mapping(
            concept_url(f"C{number}"), concept_url(f"C{number + 1}"), id=f"M{number}"))
    call(client, "POST", f"{BASE}versions/", 201, json={"id": "v1", "released": True})


def curate(client: Any, base: str = BASE) -> None:
    """Edits, a retirement, an un-retirement, hard deletes, additions, and an item created and
    deleted between the two releases (which a delta leaves out)."""
    call(client, "PATCH", f"{base}concepts/C1/", 200, json={"datatype": "Text"})
    call(client, "DELETE", f"{base}concepts/C2/", 204)  # retired
    call(client, "DELETE", f"{base}concepts/C3/?hard=true", 204)
    call(client, "DELETE", f"{base}mappings/M0/?hard=true", 204)
    call(client, "PATCH", f"{base}mappings/M1/", 200, json={"map_type": "NARROWER-THAN"})
    call(client, "POST", f"{base}concepts/", 201, json=concept("NEW"))
    call(client, "POST", f"{base}mappings/", 201, json=mapping(
        concept_url("NEW", base), concept_url("C4", base), id="M9"))
    call(client, "POST", f"{base}concepts/", 201, json=concept("GONE"))
    call(client, "DELETE", f"{base}concepts/GONE/?hard=true", 204)


@pytest.fixture
def env(backend: str, tmp_path: Any) -> Iterator[Env]:
    """v1, curated changes, and v2, both released; builds not run yet."""
    application = make_app(backend, tmp_path)
    client = application.test_client()
    fill(client)
    curate(client)
    call(client, "POST", f"{BASE}versions/", 201, json={"id": "v2", "released": True})
    yield Env(application, client)


@pytest.fixture
def quiet_env(backend: str, tmp_path: Any) -> Iterator[Env]:
    """As `env`, with nothing queued on release: every row of the status table is reachable."""
    application = make_app(backend, tmp_path, EXPORT_ON_RELEASE=False)
    client = application.test_client()
    fill(client)
    curate(client)
    call(client, "POST", f"{BASE}versions/", 201, json={"id": "v2", "released": True})
    yield Env(application, client)


def entries(data: bytes) -> dict[str, Any]:
    """The zip's entries (in order), each decoded from JSON."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: json.loads(archive.read(name)) for name in archive.namelist()}


def export_items(client: Any, url: str) -> dict[str, str]:
    """{url: version} of the items of an export."""
    answer = client.get(url)
    assert answer.status_code == 200, answer.status_code
    export = entries(answer.data)["export.json"]
    return {item["url"]: item["version"] for item in export["concepts"] + export["mappings"]}


def applied(base: dict[str, str], delta: dict[str, Any]) -> dict[str, str]:
    """{url: version} of `base` with a delta's export.json applied."""
    result = dict(base)
    for item in delta["concepts"] + delta["mappings"]:
        result[item["url"]] = item["version"]
    for tombstone in delta["deleted"]:
        result.pop(tombstone["url"])
    return result


# --- what a delta holds -----------------------------------------------------------------------
def test_a_delta_holds_exactly_the_changes_and_applied_to_from_gives_to(env: Env) -> None:
    env.build()  # releasing v2 queued its export and its delta from v1
    answer = env.client.get(DELTA)
    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        # export.json first: Java's ZipInputStream (the OpenMRS module) stops at it
        assert archive.namelist() == ["export.json", "manifest.json"]
    found = entries(answer.data)
    export, manifest = found["export.json"], found["manifest.json"]
    keys = list(export)
    assert keys[-3:] == ["concepts", "mappings", "deleted"]
    assert export["type"] == "Source Version" and export["id"] == "v2"
    assert {item["id"]: item["retired"] for item in export["concepts"]} == {
        "C1": False, "C2": True, "NEW": False}
    assert {item["id"] for item in export["mappings"]} == {"M1", "M9"}
    assert all(item["datatype"] and item["concept_class"] for item in export["concepts"])
    assert {(item["type"], item["id"]) for item in export["deleted"]} == {
        ("Concept", "C3"), ("Mapping", "M0")}
    assert all(item["deleted"] is True for item in export["deleted"])

    v1 = call(env.client, "GET", f"{BASE}v1/", 200)
    v2 = call(env.client, "GET", f"{BASE}v2/", 200)
    assert manifest["from"]["id"] == "v1" and manifest["to"]["id"] == "v2"
    assert manifest["from"]["url"] == f"{BASE}v1/" and manifest["to"]["url"] == f"{BASE}v2/"
    assert manifest["from"]["checksums"]["content"] == v1["checksums"]["content"]
    assert manifest["to"]["checksums"]["content"] == v2["checksums"]["content"]
    assert manifest["counts"] == {
        "concepts": {"created": 1, "updated": 1, "retired": 1, "deleted": 1},
        "mappings": {"created": 1, "updated": 1, "retired": 0, "deleted": 1}}
    assert manifest["items"] == 7 and manifest["repository"]["url"] == BASE

    # applying the delta to v1 gives v2, item for item and by checksum
    before = export_items(env.client, f"{BASE}v1/export/")
    after = applied(before, export)
    assert after == export_items(env.client, f"{BASE}v2/export/")
    assert checksum_of((url, int(version)) for url, version in after.items()) \
        == v2["checksums"]["content"]


def test_an_empty_delta_and_one_across_several_releases(env: Env) -> None:
    call(env.client, "POST", f"{BASE}versions/", 201, json={"id": "v3", "released": True})
    call(env.client, "PATCH", f"{BASE}concepts/C5/", 200, json={"datatype": "Coded"})
    call(env.client, "POST", f"{BASE}versions/", 201, json={"id": "v4", "released": True})
    env.build()  # v3's delta from v2 (nothing changed) and v4's from v3 were queued on release
    empty = entries(env.client.get(f"{BASE}v3/export/?since=v2").data)
    assert empty["export.json"]["concepts"] == empty["export.json"]["deleted"] == []
    assert empty["manifest.json"]["items"] == 0
    assert env.client.head(f"{BASE}v4/export/?since=v1").status_code == 204  # never asked for
    assert env.client.post(f"{BASE}v4/export/?since=v1", headers=ADMIN).status_code == 202
    env.build()
    across = entries(env.client.get(f"{BASE}v4/export/?since=v1").data)["export.json"]
    assert {item["id"] for item in across["concepts"]} == {"C1", "C2", "C5", "NEW"}
    before = export_items(env.client, f"{BASE}v1/export/")
    assert applied(before, across) == export_items(env.client, f"{BASE}v4/export/")


@pytest.mark.parametrize("since, why", [
    ("nope", "has no version"), ("HEAD", "not at HEAD"), ("v2", "not earlier"),
    ("v3", "not earlier"), ("draft", "not released"),
    (f"/orgs/{ORG}/sources/Other/v1/", "another repository"),
])
def test_a_since_that_cannot_start_a_delta_is_a_400(env: Env, since: str, why: str) -> None:
    call(env.client, "POST", f"{BASE}versions/", 201, json={"id": "draft"})
    call(env.client, "POST", f"{BASE}versions/", 201, json={"id": "v3", "released": True})
    for method in ("get", "head", "post", "delete"):
        answer = getattr(env.client, method)(f"{BASE}v2/export/?since={since}", headers=ADMIN)
        assert answer.status_code == 400, (method, since, answer.status_code)
        if method == "get":
            assert why in answer.get_json()["message"], answer.get_json()
    # the target must be released too; a url of this repository's version works as its id
    answer = env.client.get(f"{BASE}draft/export/?since=v1")
    assert answer.status_code == 400 and "not released" in answer.get_json()["message"]
    env.build()
    assert env.client.get(f"{BASE}v2/export/?since={BASE}v1/").status_code == 200
    assert env.client.get(f"{BASE}v2/export/?since=").status_code == 200  # empty: the export
    assert "manifest.json" not in entries(env.client.get(f"{BASE}v2/export/?since=").data)
    assert env.client.get(f"{BASE}HEAD/export/?since=v1").status_code == 405
    assert env.client.get(f"/orgs/{ORG}/sources/Nope/v2/export/?since=v1").status_code == 404


# --- the status table, as for exports ---------------------------------------------------------
def test_status_table_of_a_delta(quiet_env: Env) -> None:
    env = quiet_env
    # none: 204 (GET and HEAD never build), DELETE 404
    assert env.client.get(DELTA).status_code == 204
    assert env.client.head(DELTA).status_code == 204
    assert env.client.delete(DELTA, headers=ADMIN).status_code == 404
    assert env.jobs() == []
    # POST queues it: 202; then GET/HEAD 208, POST 409, one job
    answer = env.client.post(DELTA, headers=ADMIN)
    assert answer.status_code == 202 and answer.get_json()["state"] == "PENDING"
    assert env.client.get(DELTA).status_code == 208
    assert env.client.head(DELTA).headers["X-Export-Progress"] == "0%"
    job = claim(env)
    assert job.payload["since_id"] == "v1"
    env.workers.queue.heartbeat(job.id, "other-worker", 60, {"done": 3, "total": 4})
    building = env.client.get(DELTA)
    assert building.status_code == 208 and building.get_json() == {"state": "BUILDING",
                                                                   "progress": 75}
    assert env.client.post(DELTA, headers=ADMIN).status_code == 409
    assert len(env.jobs()) == 1
    # the plain export of v2 is another export: still none
    assert env.client.head(f"{BASE}v2/export/").status_code == 204
    # DELETE while building: 204, the build is cancelled and its worker stops
    assert env.client.delete(DELTA, headers=ADMIN).status_code == 204
    assert env.workers.queue.get(job.id).state == CANCELLED
    with pytest.raises(JobLost):
        env.workers.queue.heartbeat(job.id, "other-worker", 60)
    # ready: 200; POST 303 to the delta (noRedirect: 204; force: 202 and a rebuild)
    assert env.client.post(DELTA, headers=ADMIN).status_code == 202
    env.build()
    ready = env.client.get(DELTA)
    assert ready.status_code == 200
    see = env.client.post(DELTA, headers=ADMIN)
    assert see.status_code == 303 and see.headers["Location"].endswith(DELTA)
    assert see.headers["URL"] == DELTA
    assert env.client.post(f"{DELTA}&noRedirect=true", headers=ADMIN).status_code == 204
    assert env.client.post(f"{DELTA}&force=true", headers=ADMIN).status_code == 202
    env.build()
    assert env.client.get(DELTA).headers["ETag"] != ready.headers["ETag"]  # a new created_on
    # DELETE when ready: 204, the file is gone, then 204 (none)
    sha = env.client.get(DELTA).headers["ETag"].strip('"')
    assert env.client.delete(DELTA, headers=ADMIN).status_code == 204
    assert not env.service.storage.exists(sha)
    assert env.client.head(DELTA).status_code == 204


def test_headers_ranges_and_conditional_requests(env: Env) -> None:
    env.build()
    answer = env.client.get(DELTA)
    sha = hashlib.sha256(answer.data).hexdigest()
    headers = answer.headers
    assert headers["ETag"] == f'"{sha}"'
    assert headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(sha)).decode()}:"
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Length"] == str(len(answer.data))
    manifest = entries(answer.data)["manifest.json"]
    assert headers["lastUpdated"] == manifest["to"]["lastUpdated"]
    stamp = datetime.strptime(headers["lastUpdated"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert headers["Content-Disposition"] == (
        f'attachment; filename="{ORG}_{SOURCE}_v1_to_v2.{stamp:%Y%m%d%H%M%S}.zip"')
    assert headers["exportURL"] == f"http://localhost{BASE}exports/{sha}.zip"
    assert headers["Cache-Control"] == "no-cache" and headers["Accept-Ranges"] == "bytes"
    # HEAD: the headers without opening the file
    probe = env.client.head(DELTA)
    assert probe.status_code == 200 and probe.headers["ETag"] == headers["ETag"]
    assert probe.headers["Content-Length"] == str(len(answer.data))
    # conditional requests and ranges
    assert env.client.get(DELTA, headers={"If-None-Match": headers["ETag"]}).status_code == 304
    half = len(answer.data) // 2
    first = env.client.get(DELTA, headers={"Range": f"bytes=0-{half - 1}"})
    rest = env.client.get(DELTA, headers={"Range": f"bytes={half}-",
                                          "If-Range": headers["ETag"]})
    assert first.status_code == rest.status_code == 206
    assert first.data + rest.data == answer.data
    # the immutable file: cacheable for a year, named for both versions too
    direct = env.client.get(f"{BASE}exports/{sha}.zip")
    assert direct.status_code == 200 and direct.data == answer.data
    assert direct.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert direct.headers["Content-Disposition"] == headers["Content-Disposition"]
    # the delta is far smaller than the export of the same version
    assert len(answer.data) < len(env.client.get(f"{BASE}v2/export/").data)


def test_rights_are_the_exports(env: Env) -> None:
    env.build()
    call(env.client, "POST", "/users/", 201, json={"username": "reader"})
    token = call(env.client, "POST", "/users/reader/tokens/", 201, json={})["token"]
    reader = {"Authorization": f"Token {token}"}
    assert env.client.get(DELTA, headers=reader).status_code == 200
    assert env.client.post(DELTA, headers=reader).status_code == 303  # fills a cache: view
    assert env.client.post(f"{DELTA}&force=true", headers=reader).status_code == 403
    assert env.client.delete(DELTA, headers=reader).status_code == 403
    assert env.client.delete(DELTA).status_code == 401
    call(env.client, "PUT", BASE, 200, json={"public_access": "None"})
    for method in ("get", "head", "post", "delete"):
        assert getattr(env.client, method)(DELTA, headers=reader).status_code == 404, method


# --- invalidation -----------------------------------------------------------------------------
def test_unreleasing_or_deleting_a_version_drops_its_deltas(env: Env) -> None:
    env.build()
    sha = env.client.get(DELTA).headers["ETag"].strip('"')
    assert env.service.storage.exists(sha)
    call(env.client, "PUT", f"{BASE}v1/", 200, json={"released": False})
    assert env.client.get(DELTA).status_code == 400  # v1 is no release any more
    assert not env.service.storage.exists(sha)
    assert all(not record.since_id for record in env.service.records.all())
    # released again: a delta is built on request, and deleting its target drops it
    call(env.client, "PUT", f"{BASE}v1/", 200, json={"released": True})
    assert env.client.head(DELTA).status_code == 204
    assert env.client.post(DELTA, headers=ADMIN).status_code == 202
    env.build()
    sha = env.client.get(DELTA).headers["ETag"].strip('"')
    call(env.client, "DELETE", f"{BASE}v2/", 204)
    assert not env.service.storage.exists(sha)
    assert env.client.get(DELTA).status_code == 404


def test_a_delta_goes_stale_with_its_versions_and_gc_collects_it(env: Env) -> None:
    env.build()
    old = env.client.get(DELTA).headers["ETag"]
    env.app.extensions["termsync"].content.listeners.clear()  # the stamp alone decides
    call(env.client, "PUT", f"{BASE}v1/", 200, json={"description": "first"})
    assert env.client.head(DELTA).status_code == 204  # stale is none
    assert env.client.post(DELTA, headers=ADMIN).status_code == 202
    env.build()
    assert env.client.get(DELTA).headers["ETag"] != old
    # a record whose base is no longer released is dropped by garbage collection
    call(env.client, "PUT", f"{BASE}v1/", 200, json={"released": False})
    report = env.service.purge(grace_seconds=0)
    assert report.records == 1 and report.files >= 1
    assert all(not record.since_id for record in env.service.records.all())


def test_a_dead_workers_delta_build_is_taken_over(quiet_env: Env) -> None:
    env = quiet_env
    env.client.post(DELTA, headers=ADMIN)
    queue = env.workers.queue
    job = claim(env, "dying-worker")
    assert env.build() == 0  # the lease holds
    later = datetime.now(UTC) + timedelta(seconds=env.workers.lease_seconds + 1)
    queue.clock = lambda: later
    assert env.build() == 1
    assert queue.get(job.id).state == FINISHED
    assert env.client.get(DELTA).status_code == 200


def test_exports_cli_lists_and_rebuilds_deltas(env: Env) -> None:
    env.build()
    with env.app.app_context():
        rows = {row["export"]: row for row in env.service.listing()}
        key = f"{BASE}v2/since/v1/"
        assert rows[key]["state"] == "READY"
        assert env.service.rebuild(key).state == "PENDING"
    env.build()
    assert env.client.get(DELTA).status_code == 200


# --- a collection -----------------------------------------------------------------------------
COLLECTION = f"/orgs/{ORG}/collections/Picks/"
COLLECTION_DELTA = f"{COLLECTION}v2/export/?since=v1"


def test_a_collections_delta(env: Env) -> None:
    call(env.client, "POST", f"/orgs/{ORG}/collections/", 201,
         json={"id": "Picks", "collection_type": "Subset"})
    follow = [concept_url(f"C{number}") for number in (4, 5, 6)]
    pinned = f"{BASE}v1/concepts/C7/"
    call(env.client, "PUT", f"{COLLECTION}references/", 200,
         json={"data": {"expressions": [*follow, pinned, f"{BASE}mappings/M2/"]}})
    call(env.client, "POST", f"{COLLECTION}versions/", 201, json={"id": "v1", "released": True})
    # a followed concept changes in its source, one reference goes, one comes
    call(env.client, "PATCH", f"{BASE}concepts/C4/", 200, json={"concept_class": "Symptom"})
    call(env.client, "DELETE", f"{COLLECTION}references/", 204,
         json={"expressions": [concept_url("C5")]})
    call(env.client, "PUT", f"{COLLECTION}references/", 200,
         json={"data": {"expressions": [concept_url("C8")]}})
    call(env.client, "DELETE", f"{BASE}concepts/C6/", 204)  # retired in its source
    call(env.client, "POST", f"{COLLECTION}versions/", 201, json={"id": "v2", "released": True})
    env.build()
    answer = env.client.get(COLLECTION_DELTA)
    assert answer.status_code == 200
    found = entries(answer.data)
    export, manifest = found["export.json"], found["manifest.json"]
    assert export["type"] == "Collection Version"
    assert {item["url"]: item["retired"] for item in export["concepts"]} == {
        concept_url("C4"): False, concept_url("C6"): True, concept_url("C8"): False}
    assert export["concepts"][0]["source"] == SOURCE  # items keep their source identity
    assert [item["url"] for item in export["deleted"]] == [concept_url("C5")]
    assert manifest["counts"]["concepts"] == {"created": 1, "updated": 1, "retired": 1,
                                              "deleted": 1}
    assert manifest["repository"] == {"type": "Collection", "id": "Picks", "owner": ORG,
                                      "url": COLLECTION}
    before = export_items(env.client, f"{COLLECTION}v1/export/")
    after = applied(before, export)
    assert after == export_items(env.client, f"{COLLECTION}v2/export/")
    v2 = call(env.client, "GET", f"{COLLECTION}v2/", 200)
    assert manifest["to"]["checksums"]["content"] == v2["checksums"]["content"] == checksum_of(
        (url, int(version)) for url, version in after.items())
    # the status table and headers are the source's
    assert env.client.delete(COLLECTION_DELTA, headers=ADMIN).status_code == 204
    assert env.client.get(COLLECTION_DELTA).status_code == 204
    assert env.client.post(COLLECTION_DELTA, headers=ADMIN).status_code == 202
    assert env.client.head(COLLECTION_DELTA).status_code == 208
    env.build()
    ready = env.client.get(COLLECTION_DELTA)
    assert ready.status_code == 200
    assert ready.headers["Content-Disposition"].startswith(
        f'attachment; filename="{ORG}_Picks_v1_to_v2.')
    assert env.client.get(COLLECTION_DELTA,
                          headers={"If-None-Match": ready.headers["ETag"]}).status_code == 304
    assert env.client.get(f"{COLLECTION}v2/export/?since=nope").status_code == 400
