"""Bulk import as OCL's clients use it: OCL's task view and states, results, queues, alias paths,
bodies without a Content-Type, and an OCL export zip as the upload."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

from app.imports.formats import CSV, JSONL, ZIP, format_of, sniff
from tests.conftest import ADMIN, FIXTURES

IMPORTS = "/importers/bulk-import/"
DEMO = "/orgs/DemoOrg/sources/DemoSource/"


def run_jobs(app: Any) -> int:
    return int(app.extensions["termsync.jobs"].run_until_idle())


def org_lines(*org_ids: str) -> bytes:
    return b"".join(json.dumps({"type": "Organization", "id": org, "name": org}).encode() + b"\n"
                    for org in org_ids)


def post(client: Any, body: bytes | dict[str, str], path: str = IMPORTS,
         **kwargs: Any) -> dict[str, Any]:
    answer = client.post(path, data=body, headers=ADMIN, **kwargs)
    assert answer.status_code == 202, answer.get_json()
    return dict(answer.get_json())


def test_sniffing_and_declared_formats() -> None:
    assert sniff(b"\xef\xbb\xbf  {\"type\": \"Concept\"}") == JSONL
    assert sniff(b"PK\x03\x04rest") == ZIP
    assert sniff(b"resource_type,id\nConcept,1\n") == CSV
    assert format_of("text/csv", None) == CSV and format_of("", "x.ZIP") == ZIP
    assert format_of("application/json", None) == JSONL and format_of("", "lines.jsonl") == JSONL
    assert format_of("application/octet-stream", None) is None and format_of("", None) is None


def test_ocl_task_view_states_and_results(app: Any, client: Any) -> None:
    submitted = post(client, org_lines("A", "B") + b"not json\n",
                     content_type="application/x-ndjson")
    task_id = submitted["task"]
    assert submitted == {"task": task_id, "id": task_id, "state": "SUBMITTED", "queue": "default"}
    pending = client.get(f"{IMPORTS}?task={task_id}", headers=ADMIN)
    assert pending.status_code == 200 and pending.get_json()["state"] == "PENDING"
    assert client.get(f"/tasks/{task_id}/", headers=ADMIN).get_json()["state"] == "PENDING"
    run_jobs(app)

    task = client.get(f"{IMPORTS}?task={task_id}", headers=ADMIN).get_json()
    assert task["state"] == "SUCCESS" and task["id"] == task["task"] == task_id
    assert task["queue"] == "default" and task["username"] == "admin"
    assert task["summary"] == {"total": 3, "processed": 3, "created": 2, "updated": 0,
                               "unchanged": 0, "exists": 0, "failed": 1}
    assert task["report"]["created"] == 2 and task["report"]["failed"] == 1
    assert task["message"].startswith("Processed: 3/3 | Created: 2 |")
    assert "result" not in task
    with_json = client.get(f"{IMPORTS}?task={task_id}&result=json", headers=ADMIN).get_json()
    result = with_json["result"]
    assert [entry["url"] for entry in result["created"]] == ["/orgs/A/", "/orgs/B/"]
    assert result["failed"][0]["line"] == 3 and "not valid JSON" in result["failed"][0]["errors"][0]
    assert result["total"] == 3 and result["exists"] == [] and "elapsed_seconds" in result
    report = client.get(f"{IMPORTS}?task={task_id}&result=report", headers=ADMIN).get_json()
    assert report["report"] == task["report"]
    as_csv = client.get(f"{IMPORTS}?task={task_id}&result=csv", headers=ADMIN)
    assert as_csv.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(as_csv.get_data(as_text=True))))
    assert rows[0] == ["line", "type", "status", "url", "error"] and len(rows) == 4
    assert client.get(f"/tasks/{task_id}/?result=json", headers=ADMIN).get_json()["result"] == result
    assert client.get(f"{IMPORTS}?task=unknown", headers=ADMIN).status_code == 404


def test_task_lists_states_and_revoke(app: Any, client: Any) -> None:
    done = post(client, org_lines("A"), content_type="application/x-ndjson")["task"]
    run_jobs(app)
    waiting = post(client, org_lines("B"), content_type="application/x-ndjson")["task"]
    listed = client.get("/tasks/", headers=ADMIN)
    assert [task["id"] for task in listed.get_json()] == [waiting, done]  # newest first
    assert listed.headers["num_found"] == "2"
    assert [t["id"] for t in client.get("/tasks/?state=SUCCESS", headers=ADMIN).get_json()] == [done]
    assert [t["id"] for t in client.get("/tasks/?state=PENDING,STARTED",
                                        headers=ADMIN).get_json()] == [waiting]
    assert client.get("/tasks/?state=RECEIVED", headers=ADMIN).get_json() == []  # never a 400
    assert len(client.get("/tasks/?q=import", headers=ADMIN).get_json()) == 2
    assert client.get("/tasks/?q=export", headers=ADMIN).get_json() == []
    assert [t["id"] for t in client.get("/tasks/?start_date=2000-01-01",
                                        headers=ADMIN).get_json()] == [done]  # `waiting` never started
    assert [t["id"] for t in client.get(IMPORTS, headers=ADMIN).get_json()] == [waiting, done]
    assert client.delete(f"/tasks/{done}/", headers=ADMIN).status_code == 400  # finished
    assert client.delete(f"/tasks/{waiting}/", headers=ADMIN).status_code == 204
    assert client.get(f"/tasks/{waiting}/", headers=ADMIN).get_json()["state"] == "REVOKED"
    assert client.get("/tasks/").status_code == 401


def test_a_named_queue_runs_its_jobs_in_order(app: Any, client: Any) -> None:
    first = post(client, org_lines("Q1"), path=f"{IMPORTS}nightly/",
                 content_type="application/x-ndjson")
    second = post(client, org_lines("Q2"), path=f"{IMPORTS}nightly/",
                  content_type="application/x-ndjson")
    loose = post(client, org_lines("L"), content_type="application/x-ndjson")
    assert first["queue"] == second["queue"] == "nightly" and loose["queue"] == "default"
    queue = app.extensions["termsync.jobs"].queue
    taken = queue.claim(["bulk_import"], "worker-1", 60)
    assert taken.id == first["id"]
    # the queue is busy with its first job: another worker takes the job of no queue instead
    assert queue.claim(["bulk_import"], "worker-2", 60).id == loose["id"]
    assert queue.claim(["bulk_import"], "worker-2", 60) is None
    queue.finish(first["id"], "worker-1")
    assert queue.claim(["bulk_import"], "worker-1", 60).id == second["id"]
    listed = client.get(f"{IMPORTS}nightly/", headers=ADMIN).get_json()
    assert [task["id"] for task in listed] == [second["id"], first["id"]]
    assert [t["id"] for t in client.get(f"{IMPORTS}default/", headers=ADMIN).get_json()] == [
        loose["id"]]
    # a segment naming a job is that job (termsync's view)
    job = client.get(f"{IMPORTS}{first['id']}/", headers=ADMIN).get_json()
    assert job["id"] == first["id"] and job["state"] == "FINISHED" and job["queue"] == "nightly"


def test_ocl_alias_paths_and_bodies(app: Any, client: Any) -> None:
    # the `ocl` CLI's bulk_import: JSON lines to /manage/bulkimport/ as application/json
    manage = post(client, org_lines("M"), path="/manage/bulkimport/",
                  content_type="application/json", query_string={"update_if_exists": "true"})
    # ocldev's parallel importer: the lines in the form field `data`
    parallel = post(client, {"data": org_lines("P").decode()},
                    path="/importers/bulk-import-parallel-inline/")
    # ocldev's OclBulkImporter.post: a raw body without any Content-Type
    raw = client.post(IMPORTS, data=org_lines("R"), headers=ADMIN)
    assert "Content-Type" not in raw.request.headers
    assert raw.status_code == 202, raw.get_json()
    run_jobs(app)  # at most three active jobs a caller
    csv_body = b"resource_type,id,name\nOrganization,C,C\n"
    sniffed_csv = client.post(IMPORTS, data=csv_body, headers=ADMIN)
    assert sniffed_csv.status_code == 202, sniffed_csv.get_json()
    run_jobs(app)
    for submitted in (manage, parallel, raw.get_json(), sniffed_csv.get_json()):
        job = client.get(f"{IMPORTS}{submitted['id']}/", headers=ADMIN).get_json()
        assert job["state"] == "FINISHED" and job["summary"]["created"] == 1, job
    assert client.get(f"{IMPORTS}{sniffed_csv.get_json()['id']}/",
                      headers=ADMIN).get_json()["format"] == "csv"
    for org in ("M", "P", "R", "C"):
        assert client.get(f"/orgs/{org}/", headers=ADMIN).status_code == 200
    # OCL's lists answer there too
    assert client.get("/manage/bulkimport/", headers=ADMIN).status_code == 200
    assert client.get(f"/importers/bulk-import-parallel-inline/?task={manage['id']}",
                      headers=ADMIN).get_json()["state"] == "SUCCESS"


def test_an_ocl_export_zip_imports_as_that_versions_content(app: Any, client: Any) -> None:
    body = (FIXTURES / "DemoSource_v1.0.zip").read_bytes()
    submitted = client.post(IMPORTS, headers=ADMIN, content_type="multipart/form-data",
                            data={"file": (io.BytesIO(body), "DemoSource_v1.0.zip",
                                           "application/zip")})
    assert submitted.status_code == 202, submitted.get_json()
    run_jobs(app)
    job = client.get(f"{IMPORTS}{submitted.get_json()['id']}/", headers=ADMIN).get_json()
    assert job["format"] == "zip" and job["filename"] == "DemoSource_v1.0.zip"
    # the org (it did not exist), the source, 23 concepts, 22 mappings, the version
    assert job["summary"]["created"] == 1 + 1 + 23 + 22 + 1, job
    assert job["summary"]["failed"] == 0
    with zipfile.ZipFile(FIXTURES / "DemoSource_v1.0.zip") as archive:
        expected = json.loads(archive.read("export.json"))
    version = client.get(f"{DEMO}v1.0/?includeConcepts=true&includeMappings=true",
                         headers=ADMIN).get_json()
    assert version["released"] is True and version["description"] == expected["description"]
    assert sorted(c["id"] for c in version["concepts"]) == sorted(c["id"] for c in expected["concepts"])
    assert sorted(m["id"] for m in version["mappings"]) == sorted(m["id"] for m in expected["mappings"])
    source = client.get(DEMO, headers=ADMIN).get_json()
    assert source["name"] == "OCL Demo Source" and source["description"] == "Source used for demo purposes"
    # again, raw and without a Content-Type: sniffed, and everything is there already
    again = client.post(f"{IMPORTS}?update_if_exists=false", data=body, headers=ADMIN)
    assert again.status_code == 202
    run_jobs(app)
    job = client.get(f"{IMPORTS}{again.get_json()['id']}/", headers=ADMIN).get_json()
    assert job["summary"]["created"] == 0 and job["summary"]["failed"] == 0


def test_a_zip_that_is_not_an_export_is_a_400(client: Any) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("other.json", "{}")
    answer = client.post(IMPORTS, data=buffer.getvalue(), headers=ADMIN,
                         content_type="application/zip")
    assert answer.status_code == 400 and "export.json" in answer.get_json()["message"]
    broken = client.post(IMPORTS, data=b"PK\x03\x04 not really", headers=ADMIN)
    assert broken.status_code == 400 and "zip" in broken.get_json()["message"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("export.json", json.dumps({"type": "Organization", "id": "X"}))
    answer = client.post(IMPORTS, data=buffer.getvalue(), headers=ADMIN,
                         content_type="application/zip")
    assert answer.status_code == 400 and "source" in answer.get_json()["message"]
