"""Bulk import jobs through HTTP: formats, results, limits, idempotency, cancel and resume."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from app import create_app
from app.jobs import utcnow
from tests.conftest import ADMIN, SHARED, app_config, concept

IMPORTS = "/importers/bulk-import/"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    """The app with its uploads in a temp directory (overrides the conftest fixture)."""
    application = create_app(app_config(IMPORT_DIR=str(tmp_path / "imports")))
    yield application
    if os.environ.get("TEST_MONGO_URI"):
        application.extensions["termsync.mongo_client"].drop_database(application.config["MONGO_DB"])


def run_jobs(app: Any) -> None:
    app.extensions["termsync.jobs"].run_until_idle()


def submit(client: Any, body: bytes | str, headers: dict[str, str] | None = None,
           content_type: str = "application/x-ndjson", query: str = "",
           expect: int = 202) -> dict[str, Any]:
    """POST a raw upload; return the answer's JSON (with the job id)."""
    data = body.encode() if isinstance(body, str) else body
    answer = client.post(f"{IMPORTS}{query}", data=data, content_type=content_type,
                         headers=headers or ADMIN)
    assert answer.status_code == expect, answer.get_json()
    if expect == 202:
        assert answer.headers["Location"] == f"{IMPORTS}{answer.get_json()['id']}/"
    return answer.get_json()


def upload_file(client: Any, path: Path, query: str = "",
                headers: dict[str, str] | None = None, multipart: bool = True) -> str:
    """POST a file as multipart `file` (or as the raw body); return the job id."""
    with open(path, "rb") as handle:
        if multipart:  # werkzeug's test client leaks its temp file above 500 KB: small files only
            answer = client.post(f"{IMPORTS}{query}", data={"file": (handle, path.name)},
                                 content_type="multipart/form-data", headers=headers or ADMIN)
        else:
            answer = client.post(f"{IMPORTS}{query}", data=handle,
                                 content_type="application/x-ndjson", headers=headers or ADMIN)
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["state"] == "SUBMITTED"
    return str(answer.get_json()["id"])


def job_of(client: Any, job_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer = client.get(f"{IMPORTS}{job_id}/", headers=headers or ADMIN)
    assert answer.status_code == 200, answer.get_json()
    return dict(answer.get_json())


def all_results(client: Any, job_id: str, status: str | None = None,
                headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every result, following `next` links."""
    url: str | None = f"{IMPORTS}{job_id}/results/?limit=500" + (f"&status={status}" if status else "")
    results: list[dict[str, Any]] = []
    while url:
        answer = client.get(url, headers=headers or ADMIN)
        assert answer.status_code == 200, answer.get_json()
        results.extend(answer.get_json())
        url = answer.headers.get("next")
    return results


def lines(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def org_and_source(org: str = "O", source: str = "S") -> list[dict[str, Any]]:
    return [{"type": "Organization", "id": org},
            {"type": "Source", "id": source, "owner": org, "owner_type": "Organization"}]


def concept_line(concept_id: str, name: str | None = None, org: str = "O",
                 source: str = "S") -> dict[str, Any]:
    return dict(concept(concept_id, name), type="Concept", owner=org, source=source)


# --- the shared OCL files ------------------------------------------------------------------
def test_sample_ocldev_imports_and_equals_ocl_demo_export(app: Any, client: Any) -> None:
    job_id = upload_file(client, SHARED / "sample_ocldev.jsonl")
    assert job_of(client, job_id)["state"] == "SUBMITTED"
    run_jobs(app)
    job = job_of(client, job_id)
    assert job["state"] == "FINISHED", job
    assert job["summary"]["failed"] == 0, all_results(client, job_id, "failed")
    assert job["summary"]["processed"] == job["summary"]["total"] == 64
    assert job["started_on"] and job["finished_on"]

    with zipfile.ZipFile(SHARED / "DemoSource_v1.0.zip") as archive:
        expected = json.loads(archive.read(archive.namelist()[0]))
    version = "/orgs/DemoOrg/sources/DemoSource/v1.0/"
    concepts = client.get(f"{version}concepts/?limit=500", headers=ADMIN).get_json()
    mappings = client.get(f"{version}mappings/?limit=500", headers=ADMIN).get_json()
    assert len(concepts) == len(expected["concepts"]) == 23
    assert len(mappings) == len(expected["mappings"]) == 22

    def concept_key(item: dict[str, Any]) -> tuple[Any, ...]:
        return (item["id"], item["concept_class"], item["datatype"],
                tuple(sorted(name["name"] for name in item["names"])))

    def mapping_key(item: dict[str, Any]) -> tuple[Any, ...]:
        return (item["map_type"], item["from_concept_url"], item.get("to_concept_url"),
                item.get("to_source_url"), item.get("to_concept_code"))

    assert sorted(map(concept_key, concepts)) == sorted(map(concept_key, expected["concepts"]))
    assert sorted(map(mapping_key, mappings)) == sorted(map(mapping_key, expected["mappings"]))


def _ciel_source(client: Any) -> None:
    assert client.post("/orgs/", json={"id": "CIEL"}, headers=ADMIN).status_code == 201
    assert client.post("/orgs/CIEL/sources/", json={"id": "CIEL"}, headers=ADMIN).status_code == 201


def test_ciel_concepts_then_mappings_then_rerun_unchanged(app: Any, client: Any) -> None:
    _ciel_source(client)
    target = "?owner=CIEL&source=CIEL"
    concepts_job = upload_file(client, SHARED / "ciel_2019_c2k.jsonl", target, multipart=False)
    mappings_job = upload_file(client, SHARED / "ciel_2019_m2k.jsonl", target, multipart=False)
    run_jobs(app)
    summary = job_of(client, concepts_job)["summary"]
    assert summary["created"] == summary["total"] == summary["processed"]
    count = client.get("/orgs/CIEL/sources/CIEL/concepts/?limit=1&includeRetired=true", headers=ADMIN)
    assert int(count.headers["num_found"]) == summary["created"] == 1946

    mapping_summary = job_of(client, mappings_job)["summary"]
    assert mapping_summary["created"] + mapping_summary["failed"] == mapping_summary["total"] == 5579
    failed = all_results(client, mappings_job, "failed")
    assert len(failed) == mapping_summary["failed"] > 0
    for result in failed:  # every failure names the concept that is missing
        assert result["type"] == "Mapping" and result["line"] >= 1
        assert result["errors"] and "does not exist in /orgs/CIEL/sources/CIEL/" in result["errors"][0]
    mapping_count = client.get("/orgs/CIEL/sources/CIEL/mappings/?limit=1&includeRetired=true", headers=ADMIN)
    assert int(mapping_count.headers["num_found"]) == mapping_summary["created"]
    checksum = client.get("/orgs/CIEL/sources/CIEL/", headers=ADMIN).get_json()["checksums"]

    again = [upload_file(client, SHARED / name, target, multipart=False)
             for name in ("ciel_2019_c2k.jsonl", "ciel_2019_m2k.jsonl")]
    run_jobs(app)
    first, second = (job_of(client, job_id)["summary"] for job_id in again)
    assert first["unchanged"] == first["total"] == 1946
    assert second["unchanged"] == mapping_summary["created"]
    assert second["failed"] == mapping_summary["failed"]
    assert client.get("/orgs/CIEL/sources/CIEL/", headers=ADMIN).get_json()["checksums"] == checksum


@pytest.mark.parametrize("name", ["invalid_import_json.jsonl", "invalid_import_without_type.jsonl"])
def test_invalid_files_report_lines_and_import_the_rest(app: Any, client: Any, name: str) -> None:
    job_id = upload_file(client, SHARED / name)
    run_jobs(app)
    job = job_of(client, job_id)
    assert job["state"] == "FINISHED"
    failed = all_results(client, job_id, "failed")
    assert [result["line"] for result in failed] == [2]
    message = failed[0]["errors"][0]
    assert ("not valid JSON" in message) if name.startswith("invalid_import_json") else ("Missing 'type'" in message)
    assert job["summary"]["created"] == 1
    assert client.get("/orgs/DemoOrg/", headers=ADMIN).status_code == 200

    report = client.get(f"{IMPORTS}{job_id}/report.csv", headers=ADMIN)
    assert report.status_code == 200 and report.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(report.get_data(as_text=True))))
    assert rows[0] == ["line", "type", "status", "url", "error"]
    assert rows[1][:4] == ["1", "Organization", "created", "/orgs/DemoOrg/"]
    assert rows[2][0] == "2" and rows[2][2] == "failed" and rows[2][4] == message


def test_msfocp_csv_imports(app: Any, client: Any) -> None:
    assert client.post("/orgs/", json={"id": "MSFOCP"}, headers=ADMIN).status_code == 201
    assert client.post("/orgs/MSFOCP/sources/", json={"id": "Implementationtest"},
                       headers=ADMIN).status_code == 201
    job_id = upload_file(client, SHARED / "msfocp_concepts.csv", "?update_if_exists=true")
    run_jobs(app)
    job = job_of(client, job_id)
    assert job["state"] == "FINISHED" and job["format"] == "csv"
    assert job["summary"] == {"total": 31, "processed": 31, "created": 29, "updated": 2,
                              "unchanged": 0, "skipped": 0, "failed": 0}
    results = all_results(client, job_id)
    assert [result["line"] for result in results] == list(range(2, 33))
    concept_doc = client.get("/orgs/MSFOCP/sources/Implementationtest/concepts/TEST101/",
                             headers=ADMIN).get_json()
    assert concept_doc["concept_class"] == "Symptom/Finding" and concept_doc["datatype"] == "Text"
    assert concept_doc["external_id"] == "dd44dfe5-33dc-4f47-a3f4-b89fc4fca201"
    assert concept_doc["names"][0]["name"] == "Symptom/Finding concept class"
