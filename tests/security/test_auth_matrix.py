"""The auth matrix: every content and export route x {anonymous, wrong token, outsider, member,
admin} x {View, Edit, None} sources, asserting the 200/401/403/404 rules of docs/api.md. A private
source's existence never leaks: outsiders get exactly the answer a missing source gives. Bulk-import jobs
are visible to their submitter and admins only."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest

from app import create_app
from tests.conftest import ADMIN, app_config, concept

CALLERS = ("anonymous", "wrong", "outsider", "member", "admin")
ACCESS = {"View": "Public", "Edit": "Wiki", "None": "Private"}
_counter = itertools.count()


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    app = create_app(app_config())
    client = app.test_client()
    headers: dict[str, dict[str, str]] = {"anonymous": {}, "admin": ADMIN,
                                          "wrong": {"Authorization": "Token not-a-real-token"}}
    for name in ("outsider", "member"):
        client.post("/users/", json={"username": name}, headers=ADMIN)
        token = client.post(f"/users/{name}/tokens/", json={}, headers=ADMIN).get_json()["token"]
        headers[name] = {"Authorization": f"Token {token}"}
    client.post("/orgs/", json={"id": "Org"}, headers=ADMIN)
    client.put("/orgs/Org/members/member/", headers=ADMIN)
    for access, source_id in ACCESS.items():
        url = f"/orgs/Org/sources/{source_id}/"
        client.post("/orgs/Org/sources/", json={"id": source_id, "public_access": access},
                    headers=ADMIN)
        client.post(f"{url}concepts/", json=concept("A"), headers=ADMIN)
        client.post(f"{url}concepts/", json=concept("B"), headers=ADMIN)
        client.post(f"{url}mappings/", headers=ADMIN, json={
            "map_type": "SAME-AS", "from_concept_url": f"{url}concepts/A/",
            "to_concept_url": f"{url}concepts/B/"})
        client.post(f"{url}versions/", json={"id": "v1", "released": True}, headers=ADMIN)
        # exports: "vx" is built and never edited; POSTs go to a fresh unreleased version
        client.post(f"{url}versions/", json={"id": "vx", "released": True}, headers=ADMIN)
    return {"client": client, "headers": headers, "app": app}


def ready_export(world: dict[str, Any], url: str) -> str:
    """The sha256 of vx's export, (re)built first: editing the source makes exports stale."""
    client = world["client"]
    answer = client.get(f"{url}vx/export/", headers=ADMIN)
    answer.close()
    if answer.status_code in (204, 208):  # released: rebuilt on its own after a source edit
        world["app"].extensions["termsync.jobs"].run_until_idle()
        answer = client.get(f"{url}vx/export/", headers=ADMIN)
        answer.close()
    assert answer.status_code == 200
    return str(answer.headers["ETag"].strip('"'))


def _fresh() -> str:
    return f"x{next(_counter)}"


# (name, method, path under the source url, json body factory or None, kind)
ROUTES: list[tuple[str, str, str, Any, str]] = [
    ("source", "GET", "", None, "read"),
    ("diff", "GET", "?includeConcepts=true&includeMappings=true&includeRetired=true", None, "read"),
    ("versions", "GET", "versions/", None, "read"),
    ("version", "GET", "v1/", None, "read"),
    ("latest", "GET", "latest/", None, "read"),
    ("concepts", "GET", "concepts/", None, "read"),
    ("concept", "GET", "concepts/A/", None, "read"),
    ("version concept", "GET", "v1/concepts/A/", None, "read"),
    ("mappings", "GET", "mappings/", None, "read"),
    ("version mappings", "GET", "v1/mappings/", None, "read"),
    ("create concept", "POST", "concepts/", lambda: concept(_fresh()), "write"),
    ("update concept", "PATCH", "concepts/B/", lambda: {"extras": {"n": _fresh()}}, "write"),
    ("retire concept", "DELETE", "concepts/{new}/", None, "write"),
    ("create mapping", "POST", "mappings/", None, "write"),
    ("cut version", "POST", "versions/", lambda: {"id": _fresh()}, "write"),
    ("edit version", "PATCH", "v1/", lambda: {"description": _fresh()}, "write"),
    ("edit source", "PATCH", "", lambda: {"description": _fresh()}, "write"),
    ("get export", "GET", "vx/export/", None, "read"),
    ("head export", "HEAD", "vx/export/", None, "read"),
    ("export file", "GET", "exports/{sha}.zip", None, "read"),
    ("head export file", "HEAD", "exports/{sha}.zip", None, "read"),
    ("queue export", "POST", "{unexported}/export/", None, "write"),
    ("delete export", "DELETE", "{exported}/export/", None, "write"),
]


def expected(kind: str, access: str, caller: str) -> int | str:
    """The contract's rules (docs/api.md, Auth): 401 for a bad token; private sources are 404 to
    those who cannot see them; writes need edit rights (any user on an Edit source) else 401
    anonymous / 403."""
    if caller == "wrong":
        return 401
    can_see = access != "None" or caller in ("member", "admin")
    if not can_see:
        return 404
    if kind == "read":
        return 200
    if caller in ("member", "admin") or (access == "Edit" and caller == "outsider"):
        return "2xx"
    return 401 if caller == "anonymous" else 403


@pytest.mark.parametrize("route", ROUTES, ids=[route[0] for route in ROUTES])
@pytest.mark.parametrize("access", list(ACCESS))
@pytest.mark.parametrize("caller", CALLERS)
def test_matrix(world: dict[str, Any], route: tuple[str, str, str, Any, str], access: str,
                caller: str) -> None:
    client, headers = world["client"], world["headers"]
    name, method, path, body, kind = route
    url = f"/orgs/Org/sources/{ACCESS[access]}/"
    if "{new}" in path:
        new_id = _fresh()
        client.post(f"{url}concepts/", json=concept(new_id), headers=ADMIN)
        path = path.replace("{new}", new_id)
    if "{unexported}" in path:  # a version without an export (204: a POST builds one)
        version_id = _fresh()
        client.post(f"{url}versions/", json={"id": version_id}, headers=ADMIN)
        path = path.replace("{unexported}", version_id)
    if "{exported}" in path:  # a version whose export build is queued
        version_id = _fresh()
        client.post(f"{url}versions/", json={"id": version_id}, headers=ADMIN)
        assert client.post(f"{url}{version_id}/export/", headers=ADMIN).status_code == 202
        path = path.replace("{exported}", version_id)
    if "vx/export/" in path or "{sha}" in path:
        path = path.replace("{sha}", ready_export(world, url))
    payload = body() if body else None
    if name == "create mapping":
        target = _fresh()
        client.post(f"{url}concepts/", json=concept(target), headers=ADMIN)
        payload = {"map_type": "SAME-AS", "from_concept_url": f"{url}concepts/A/",
                   "to_concept_url": f"{url}concepts/{target}/"}
    answer = client.open(f"{url}{path}", method=method, json=payload, headers=headers[caller])
    answer.close()  # export files are streamed from an open file
    want = expected(kind, access, caller)
    if want == "2xx":
        assert 200 <= answer.status_code < 300, (answer.status_code, answer.get_json())
    else:
        assert answer.status_code == want, (answer.status_code, answer.get_json())
    if method == "HEAD":
        return  # no body to compare
    if answer.status_code >= 400:
        assert {"code", "status", "message"} <= set(answer.get_json())
    if want == 404:
        # Same answer as for a source that does not exist at all.
        missing = client.open(f"/orgs/Org/sources/Absent/{path}", method=method, json=payload,
                              headers=headers[caller])
        assert missing.status_code == 404
        assert missing.get_json()["message"] == answer.get_json()["message"].replace(
            ACCESS[access], "Absent")


def test_tokens_never_reach_logs_or_errors(world: dict[str, Any], caplog: Any) -> None:
    client, headers = world["client"], world["headers"]
    secret = headers["member"]["Authorization"].split()[1]
    with caplog.at_level(logging.DEBUG):
        for request_headers in (headers["member"], {"Authorization": "Token guessed-secret-xyz"}):
            answer = client.post("/orgs/Org/sources/Public/concepts/", json={"id": "bad"},
                                 headers=request_headers)
            assert "guessed-secret-xyz" not in answer.get_data(as_text=True)
            assert secret not in answer.get_data(as_text=True)
    assert secret not in caplog.text and "guessed-secret-xyz" not in caplog.text


IMPORTS = "/importers/bulk-import/"
IMPORT_ROUTES = [("job", "GET", ""), ("results", "GET", "results/"),
                 ("report", "GET", "report.csv"), ("cancel", "DELETE", "")]
JOB_ANSWERS = {"anonymous": 401, "wrong": 401, "outsider": 404, "member": 200, "admin": 200}


@pytest.mark.parametrize("route", IMPORT_ROUTES, ids=[route[0] for route in IMPORT_ROUTES])
@pytest.mark.parametrize("caller", CALLERS)
def test_import_jobs_are_visible_to_their_submitter_and_admins(
        world: dict[str, Any], route: tuple[str, str, str], caller: str) -> None:
    client, headers = world["client"], world["headers"]
    _, method, path = route
    world["app"].extensions["termsync.jobs"].run_until_idle()  # at most 3 active jobs a user
    line = b'{"type": "Organization", "id": "Elsewhere"}\n'
    submitted = client.post(f"{IMPORTS}?dryRun=true", data=line, headers=headers["member"],
                            content_type="application/x-ndjson")
    assert submitted.status_code == 202
    job_id = submitted.get_json()["id"]
    answer = client.open(f"{IMPORTS}{job_id}/{path}", method=method, headers=headers[caller])
    if route[0] == "job" and caller == "outsider":
        # to anyone who may not see the job, its id is a queue name like any other: empty
        assert answer.status_code == 200 and answer.get_json() == []
        missing = client.get(f"{IMPORTS}{'0' * 32}/", headers=headers[caller])
        assert missing.status_code == 200 and missing.get_json() == []
        return
    assert answer.status_code == JOB_ANSWERS[caller], (answer.status_code, answer.get_data())
    if answer.status_code >= 400:
        assert {"code", "status", "message"} <= set(answer.get_json())
        missing = client.open(f"{IMPORTS}{'0' * 32}/{path}", method=method,
                              headers=headers[caller])
        assert missing.status_code == answer.status_code
        assert missing.get_json()["message"] == answer.get_json()["message"].replace(
            job_id, "0" * 32)
        # the job is untouched and absent from the caller's list
        job = client.get(f"{IMPORTS}{job_id}/", headers=headers["member"]).get_json()
        assert job["state"] == "SUBMITTED"
        listed = client.get(IMPORTS, headers=headers[caller])
        assert listed.status_code == 401 or job_id not in [j["id"] for j in listed.get_json()]
    elif caller == "admin" and method == "GET":
        assert job_id not in [j["id"] for j in client.get(IMPORTS, headers=ADMIN).get_json()]
