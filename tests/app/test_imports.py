"""Bulk import jobs through HTTP: formats, results, limits, idempotency, cancel and resume."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.jobs import utcnow
from app.timeutil import format_time
from tests.conftest import ADMIN, FIXTURES, app_config, concept

IMPORTS = "/importers/bulk-import/"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    """The app with its uploads in a temp directory (overrides the conftest fixture)."""
    application = create_app(app_config(IMPORT_DIR=str(tmp_path / "imports")))
    yield application
    application.extensions["termsync.store"].drop()


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


# --- OCL's sample files ---------------------------------------------------------------------
def test_sample_ocldev_imports_and_equals_ocl_demo_export(app: Any, client: Any) -> None:
    job_id = upload_file(client, FIXTURES / "sample_ocldev.jsonl")
    assert job_of(client, job_id)["state"] == "SUBMITTED"
    run_jobs(app)
    job = job_of(client, job_id)
    assert job["state"] == "FINISHED", job
    assert job["summary"]["failed"] == 0, all_results(client, job_id, "failed")
    assert job["summary"]["processed"] == job["summary"]["total"] == 64
    assert job["started_on"] and job["finished_on"]

    with zipfile.ZipFile(FIXTURES / "DemoSource_v1.0.zip") as archive:
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
    concepts_job = upload_file(client, FIXTURES / "ciel_2019_c2k.jsonl", target, multipart=False)
    mappings_job = upload_file(client, FIXTURES / "ciel_2019_m2k.jsonl", target, multipart=False)
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

    again = [upload_file(client, FIXTURES / name, target, multipart=False)
             for name in ("ciel_2019_c2k.jsonl", "ciel_2019_m2k.jsonl")]
    run_jobs(app)
    first, second = (job_of(client, job_id)["summary"] for job_id in again)
    assert first["unchanged"] == first["total"] == 1946
    assert second["unchanged"] == mapping_summary["created"]
    assert second["failed"] == mapping_summary["failed"]
    assert client.get("/orgs/CIEL/sources/CIEL/", headers=ADMIN).get_json()["checksums"] == checksum


@pytest.mark.parametrize("name", ["invalid_import_json.jsonl", "invalid_import_without_type.jsonl"])
def test_invalid_files_report_lines_and_import_the_rest(app: Any, client: Any, name: str) -> None:
    job_id = upload_file(client, FIXTURES / name)
    run_jobs(app)
    job = job_of(client, job_id)
    assert job["state"] == "FINISHED"
    failed = all_results(client, job_id, "failed")
    assert [result["line"] for result in failed] == [2]
    message = failed[0]["errors"][0]
    expected = "not valid JSON" if name.startswith("invalid_import_json") else "Missing 'type'"
    assert expected in message
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
    job_id = upload_file(client, FIXTURES / "msfocp_concepts.csv", "?update_if_exists=true")
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


# --- dry run, idempotency, rights, limits ---------------------------------------------------
def test_dry_run_reports_the_real_summary_and_writes_nothing(app: Any, client: Any) -> None:
    sample = (FIXTURES / "sample_ocldev.jsonl").read_bytes()
    dry = submit(client, sample, query="?dryRun=true")["id"]
    run_jobs(app)
    assert client.get("/orgs/DemoOrg/", headers=ADMIN).status_code == 404  # nothing written
    real = submit(client, sample)["id"]
    run_jobs(app)
    dry_job, real_job = job_of(client, dry), job_of(client, real)
    assert dry_job["dry_run"] and dry_job["summary"] == real_job["summary"]
    strip = [{key: r[key] for key in ("line", "type", "url", "action", "errors")}
             for r in all_results(client, real)]
    assert [{key: r[key] for key in ("line", "type", "url", "action", "errors")}
            for r in all_results(client, dry)] == strip

    source = "/orgs/DemoOrg/sources/DemoSource/"
    head = client.get(source, headers=ADMIN).get_json()["checksums"]["content"]
    changed = sample.replace(b'"datatype": "N/A"', b'"datatype": "Text"', 1)
    again = submit(client, changed, query="?dryRun=true&update_if_exists=true")["id"]
    run_jobs(app)
    assert job_of(client, again)["summary"]["updated"] == 1
    assert client.get(source, headers=ADMIN).get_json()["checksums"]["content"] == head


def test_same_idempotency_key_gives_one_job(app: Any, client: Any, make_user: Any) -> None:
    body = lines(*org_and_source())
    first = submit(client, body, headers=dict(ADMIN, **{"Idempotency-Key": "k1"}))
    second = submit(client, body, headers=dict(ADMIN, **{"Idempotency-Key": "k1"}))
    assert first["id"] == second["id"]
    run_jobs(app)
    third = client.post(IMPORTS, data=body, content_type="application/x-ndjson",
                        headers=dict(ADMIN, **{"Idempotency-Key": "k1"}))
    assert third.status_code == 202 and third.get_json() == {
        "task": first["id"], "id": first["id"], "state": "FINISHED", "queue": "default"}
    other = make_user("other")  # the key is per caller
    assert submit(client, body, headers=dict(other, **{"Idempotency-Key": "k1"}))["id"] != first["id"]
    listed = client.get(IMPORTS, headers=ADMIN)
    assert [job["id"] for job in listed.get_json()] == [first["id"]]
    assert listed.headers["num_found"] == "1"
    # A key whose first request is still being received: 409, retry when its lease may end.
    service = app.extensions["termsync.imports"]
    now = service.queue.clock()
    service.keys.claim("admin\nk2", "a request being received", format_time(now),
                       format_time(now + timedelta(seconds=30)))
    busy = client.post(IMPORTS, data=body, content_type="application/x-ndjson",
                       headers=dict(ADMIN, **{"Idempotency-Key": "k2"}))
    assert busy.status_code == 409 and 1 <= int(busy.headers["Retry-After"]) <= 31


def test_a_refused_submission_frees_its_idempotency_key(tmp_path: Path) -> None:
    application = create_app(app_config(IMPORT_DIR=str(tmp_path), IMPORT_MAX_LINES=2))
    client = application.test_client()
    headers = dict(ADMIN, **{"Idempotency-Key": "retry-me"})
    too_long = client.post(IMPORTS, data=lines(*org_and_source(), concept_line("1")),
                           content_type="application/x-ndjson", headers=headers)
    assert too_long.status_code == 413
    assert submit(client, lines(*org_and_source()), headers=headers)["state"] == "SUBMITTED"


def test_jobs_are_private_to_their_submitter(app: Any, client: Any, make_user: Any) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    job_id = submit(client, lines(*org_and_source()), headers=alice)["id"]
    for path in ("", "results/", "report.csv"):
        assert client.get(f"{IMPORTS}{job_id}/{path}", headers=alice).status_code == 200
        assert client.get(f"{IMPORTS}{job_id}/{path}", headers=ADMIN).status_code == 200
        if path:
            assert client.get(f"{IMPORTS}{job_id}/{path}", headers=bob).status_code == 404
    # to bob, alice's job id is a queue name like any other: an empty one
    assert client.get(f"{IMPORTS}{job_id}/", headers=bob).get_json() == []
    assert client.get(f"{IMPORTS}?task={job_id}", headers=bob).status_code == 404
    assert client.get(f"/tasks/{job_id}/", headers=bob).status_code == 404
    assert client.get("/tasks/", headers=bob).get_json() == []
    assert [task["id"] for task in client.get("/tasks/", headers=ADMIN).get_json()] == [job_id]
    assert client.delete(f"{IMPORTS}{job_id}/", headers=bob).status_code == 404
    assert client.get(IMPORTS, headers=bob).get_json() == []
    assert client.post(IMPORTS, data="{}", content_type="application/x-ndjson").status_code == 401


def test_lines_for_a_source_the_caller_may_not_edit_fail_as_forbidden(
        app: Any, client: Any, source: Callable[..., str], make_user: Any) -> None:
    source("O", "S")
    outsider = make_user("outsider")
    body = lines(concept_line("1"), concept_line("2"), {"type": "Source Version", "id": "v1",
                                                        "owner": "O", "source": "S"})
    job_id = submit(client, body, headers=outsider)["id"]
    run_jobs(app)
    job = job_of(client, job_id, outsider)
    assert job["summary"]["failed"] == 3 and job["summary"]["created"] == 0
    for result in all_results(client, job_id, "failed", outsider):
        assert result["errors"][0].startswith("Forbidden:"), result
    assert client.get("/orgs/O/sources/S/concepts/1/", headers=ADMIN).status_code == 404


def test_type_less_lines_need_a_target_the_caller_can_see(app: Any, client: Any,
                                                          source: Callable[..., str]) -> None:
    answer = client.post(f"{IMPORTS}?owner=Nobody&source=S", data=lines(concept("1")),
                         content_type="application/x-ndjson", headers=ADMIN)
    assert answer.status_code == 404
    source("O", "S")
    job_id = submit(client, lines(concept("1"), {"from_concept_url": "/orgs/O/sources/S/concepts/1/",
                                                 "to_concept_url": "/orgs/O/sources/S/concepts/9/",
                                                 "map_type": "SAME-AS"}),
                    query="?owner=O&source=S")["id"]
    run_jobs(app)
    results = all_results(client, job_id)
    assert [r["action"] for r in results] == ["created", "failed"]
    assert results[1]["errors"] == [
        "to_concept_url: concept '9' does not exist in /orgs/O/sources/S/."]


def test_upload_size_and_line_limits_answer_413(tmp_path: Path) -> None:
    application = create_app(app_config(IMPORT_DIR=str(tmp_path), IMPORT_MAX_BYTES=1000,
                                        IMPORT_MAX_LINES=5))
    client = application.test_client()
    big = lines(*[concept_line(str(n)) for n in range(20)])
    answer = client.post(IMPORTS, data=big, content_type="application/x-ndjson", headers=ADMIN)
    assert answer.status_code == 413 and answer.get_json()["code"] == 413
    with io.BytesIO(big.encode()) as handle:  # multipart, checked while streaming
        answer = client.post(IMPORTS, data={"file": (handle, "big.jsonl")},
                             content_type="multipart/form-data", headers=ADMIN)
    assert answer.status_code == 413
    many = "{}\n" * 6
    answer = client.post(IMPORTS, data=many, content_type="application/x-ndjson", headers=ADMIN)
    assert answer.status_code == 413 and "lines" in answer.get_json()["message"]
    assert client.get(IMPORTS, headers=ADMIN).get_json() == []
    assert os.listdir(tmp_path) == []  # nothing of the refused uploads is kept


def test_concurrent_jobs_per_caller_answer_429_with_retry_after(tmp_path: Path) -> None:
    application = create_app(app_config(IMPORT_DIR=str(tmp_path), IMPORT_MAX_ACTIVE_JOBS=2))
    client = application.test_client()
    for _ in range(2):
        submit(client, lines(*org_and_source()))
    answer = client.post(IMPORTS, data=lines(*org_and_source()),
                         content_type="application/x-ndjson", headers=ADMIN)
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) > 0
    application.extensions["termsync.jobs"].run_until_idle()
    submit(client, lines(*org_and_source()))


def test_bad_requests(app: Any, client: Any) -> None:
    assert client.post(IMPORTS, data=b"", content_type="application/x-ndjson",
                       headers=ADMIN).status_code == 400
    assert client.post(IMPORTS, data={"other": (io.BytesIO(b"{}"), "x.jsonl")},
                       content_type="multipart/form-data", headers=ADMIN).status_code == 400
    assert client.post(f"{IMPORTS}?owner=O", data=b"{}\n", content_type="application/x-ndjson",
                       headers=ADMIN).status_code == 400
    job_id = submit(client, lines(*org_and_source()))["id"]
    assert client.get(f"{IMPORTS}{job_id}/results/?status=exploded",
                      headers=ADMIN).status_code == 400
    # a segment that names no job (the caller may see) is a queue: here an empty one
    nope = client.get(f"{IMPORTS}nope/", headers=ADMIN)
    assert nope.status_code == 200 and nope.get_json() == []
    assert client.delete(f"{IMPORTS}nope/", headers=ADMIN).status_code == 404
    assert client.post(f"{IMPORTS}{job_id}/", data=b"{}\n", content_type="application/x-ndjson",
                       headers=ADMIN).status_code == 405


def test_results_page_with_next_links_and_filters(app: Any, client: Any) -> None:
    body = lines(*org_and_source(), *[concept_line(str(n)) for n in range(7)], {"type": "Bogus"})
    job_id = submit(client, body)["id"]
    run_jobs(app)
    first = client.get(f"{IMPORTS}{job_id}/results/?limit=4", headers=ADMIN)
    assert first.headers["num_found"] == "10" and first.headers["num_returned"] == "4"
    assert [r["line"] for r in first.get_json()] == [1, 2, 3, 4]
    assert first.headers["Link"] == f'<{first.headers["next"]}>; rel="next"'
    second = client.get(first.headers["next"], headers=ADMIN)
    assert [r["line"] for r in second.get_json()] == [5, 6, 7, 8]
    third = client.get(second.headers["next"], headers=ADMIN)
    assert [r["line"] for r in third.get_json()] == [9, 10] and "next" not in third.headers
    failed = client.get(f"{IMPORTS}{job_id}/results/?status=failed", headers=ADMIN)
    assert failed.headers["num_found"] == "1"
    assert failed.get_json()[0]["errors"][0].startswith("Unknown type 'Bogus'")


def test_csv_templates(client: Any) -> None:
    for kind in ("concept", "mapping"):
        answer = client.get(f"{IMPORTS}template/?type={kind}")
        assert answer.status_code == 200 and answer.mimetype == "text/csv"
        rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
        assert len(rows) == 2 and rows[0][0] == "resource_type" and len(rows[0]) == len(rows[1])
        assert rows[1][0] == kind.capitalize()
    assert client.get(f"{IMPORTS}template/?type=source").status_code == 400


def test_csv_template_rows_import(app: Any, client: Any, source: Callable[..., str]) -> None:
    source("MyOrg", "MySource")
    concept_csv = client.get(f"{IMPORTS}template/?type=concept").get_data(as_text=True)
    # The template's inline mapping points at 5678: create it first, in the same file.
    rows = list(csv.reader(io.StringIO(concept_csv)))
    target = list(rows[1])
    target[rows[0].index("id")] = "5678"
    buffer = io.StringIO()
    csv.writer(buffer).writerows([rows[0], target, rows[1]])
    job_id = submit(client, buffer.getvalue(), content_type="text/csv")["id"]
    mapping_csv = client.get(f"{IMPORTS}template/?type=mapping").get_data(as_text=True)
    mapping_job = submit(client, mapping_csv, content_type="text/csv")["id"]
    run_jobs(app)
    results = all_results(client, job_id)
    assert [(r["line"], r["part"], r["type"], r["action"]) for r in results] == [
        (2, 0, "Concept", "created"), (2, 1, "Mapping", "created"),
        (3, 0, "Concept", "created"), (3, 1, "Mapping", "created")], results
    concept_doc = client.get("/orgs/MyOrg/sources/MySource/concepts/1234/", headers=ADMIN).get_json()
    assert sorted(name["locale"] for name in concept_doc["names"]) == ["en", "fr"]
    assert concept_doc["descriptions"][0]["description"] == "A mosquito-borne infectious disease"
    mapping_results = all_results(client, mapping_job)
    assert [r["action"] for r in mapping_results] == ["created"], mapping_results


# --- cancel, worker death, restart --------------------------------------------------------
class WorkerDied(BaseException):
    """Stands for the process dying: nothing in the worker catches it."""


def crash_after(app: Any, stored_results: int) -> None:
    """Make the worker die right after applying a line, before its result is stored."""
    results = app.extensions["termsync.imports"].results
    original = results.add
    calls = {"count": 0}

    def add(job_id: str, part: int, result: dict[str, Any]) -> None:
        calls["count"] += 1
        if calls["count"] > stored_results:
            results.add = original  # one death is enough
            raise WorkerDied()
        original(job_id, part, result)
    results.add = add


def take_over(app: Any) -> None:
    """Let the dead worker's lease expire and run what is left."""
    workers = app.extensions["termsync.jobs"]
    workers.queue.clock = lambda: utcnow() + timedelta(minutes=10)
    workers.run_until_idle()


def outcome(client: Any, job_id: str) -> tuple[dict[str, Any], list[tuple[Any, ...]], Any]:
    """What a job did: its summary, its results and the content it left."""
    job = job_of(client, job_id)
    results = [(r["line"], r["part"], r["type"], r["url"], r["action"], tuple(r["errors"]))
               for r in all_results(client, job_id)]
    content = []
    for path in ("/orgs/DemoOrg/sources/DemoSource/concepts/?includeRetired=true&limit=500",
                 "/orgs/DemoOrg/sources/DemoSource/mappings/?includeRetired=true&limit=500",
                 "/orgs/DemoOrg/sources/DemoSource/versions/"):
        answer = client.get(path, headers=ADMIN)
        content.append(sorted((item["id"], item.get("names") and item["names"][0]["name"],
                               item.get("map_type"), item.get("to_concept_url"),
                               item.get("released"))
                              for item in answer.get_json())
                       if answer.status_code == 200 else answer.status_code)
    return job["summary"], results, content


@pytest.fixture
def small_batches(tmp_path: Path) -> Callable[[], Any]:
    def make() -> Any:
        return create_app(app_config(IMPORT_DIR=str(tmp_path / "imports"), IMPORT_BATCH_SIZE=10))
    return make


def run_sample(client: Any, app: Any, query: str = "", crash: int | None = None) -> str:
    job_id = submit(client, (FIXTURES / "sample_ocldev.jsonl").read_bytes(), query=query)["id"]
    if crash is not None:
        crash_after(app, crash)
        with pytest.raises(WorkerDied):
            app.extensions["termsync.jobs"].run_until_idle()
        assert job_of(client, job_id)["state"] == "RUNNING"
        take_over(app)
    else:
        run_jobs(app)
    return str(job_id)


@pytest.mark.parametrize("crash", [0, 1, 9, 10, 27, 47, 48, 63])
def test_worker_death_resumes_with_the_uninterrupted_result(
        small_batches: Callable[[], Any], crash: int) -> None:
    reference_app = small_batches()
    reference_client = reference_app.test_client()
    expected = outcome(reference_client, run_sample(reference_client, reference_app))
    assert expected[0]["failed"] == 0

    app = small_batches()
    client = app.test_client()
    job_id = run_sample(client, app, crash=crash)
    job = job_of(client, job_id)
    assert job["state"] == "FINISHED"
    assert outcome(client, job_id) == expected
    # No item version was written twice: a re-import finds everything as it was.
    again = run_sample(client, app)
    assert job_of(client, again)["summary"]["created"] == 0
    assert job_of(client, again)["summary"]["updated"] == 0


@pytest.mark.parametrize("crash", [5, 30])
def test_dry_run_taken_over_starts_again_with_the_same_result(
        small_batches: Callable[[], Any], crash: int) -> None:
    reference_app = small_batches()
    reference_client = reference_app.test_client()
    expected = outcome(reference_client, run_sample(reference_client, reference_app, "?dryRun=true"))
    app = small_batches()
    client = app.test_client()
    job_id = run_sample(client, app, "?dryRun=true", crash=crash)
    assert outcome(client, job_id) == expected
    assert client.get("/orgs/DemoOrg/", headers=ADMIN).status_code == 404


def test_cancel_mid_job_stops_at_the_next_batch(small_batches: Callable[[], Any]) -> None:
    app = small_batches()
    client = app.test_client()
    job_id = submit(client, lines(*org_and_source(), *[concept_line(str(n)) for n in range(40)]))["id"]
    results = app.extensions["termsync.imports"].results
    original = results.add
    calls = {"count": 0}

    def add(job: str, part: int, result: dict[str, Any]) -> None:
        original(job, part, result)
        calls["count"] += 1
        if calls["count"] == 15:  # in the middle of the second batch
            answer = client.delete(f"{IMPORTS}{job_id}/", headers=ADMIN)
            assert answer.status_code == 200 and answer.get_json()["state"] == "CANCELLED"
    results.add = add
    run_jobs(app)
    job = job_of(client, job_id)
    assert job["state"] == "CANCELLED" and job["finished_on"]
    # The batch under way was finished and counted; nothing after it ran.
    assert job["summary"]["processed"] == job["summary"]["created"] == 20
    assert len(all_results(client, job_id)) == 20
    listed = client.get("/orgs/O/sources/S/concepts/?limit=500", headers=ADMIN)
    assert listed.headers["num_found"] == "18"
    assert os.listdir(app.config["IMPORT_DIR"]) == []  # the upload is gone
    # Cancelling again changes nothing; a waiting job cancels before it starts.
    assert client.delete(f"{IMPORTS}{job_id}/", headers=ADMIN).get_json()["state"] == "CANCELLED"
    waiting = submit(client, lines(concept_line("x")))["id"]
    assert client.delete(f"{IMPORTS}{waiting}/", headers=ADMIN).get_json()["state"] == "CANCELLED"
    run_jobs(app)
    assert job_of(client, waiting)["summary"]["processed"] == 0


@pytest.mark.parametrize("database, storage", [("sqlite", "local"), ("mongomock", "mongo")])
def test_jobs_survive_a_restart_of_the_database(
        tmp_path: Path, database: str, storage: str, small_batches: Callable[[], Any]) -> None:
    reference_app = small_batches()
    reference_client = reference_app.test_client()
    expected = outcome(reference_client, run_sample(reference_client, reference_app))

    uri = f"sqlite:///{tmp_path / 'termsync.db'}" if database == "sqlite" else \
        f"mongomock://{tmp_path.name}"
    config = app_config(DATABASE_URI=uri, MONGO_DB="restart", IMPORT_STORAGE=storage,
                        IMPORT_DIR=str(tmp_path / "uploads"), IMPORT_BATCH_SIZE=10)

    first = create_app(config)
    client = first.test_client()
    job_id = submit(client, (FIXTURES / "sample_ocldev.jsonl").read_bytes())["id"]
    crash_after(first, 25)
    with pytest.raises(WorkerDied):
        first.extensions["termsync.jobs"].run_until_idle()
    first.extensions["termsync.store"].close()  # the process goes away; the database stays

    second = create_app(config)
    client = second.test_client()
    assert job_of(client, job_id)["state"] == "RUNNING"
    take_over(second)
    assert job_of(client, job_id)["state"] == "FINISHED"
    assert outcome(client, job_id) == expected
    if storage == "local":
        assert os.listdir(tmp_path / "uploads") == []
    second.extensions["termsync.store"].drop()


def test_death_after_the_last_batch_still_finishes(small_batches: Callable[[], Any]) -> None:
    app = small_batches()
    client = app.test_client()
    job_id = submit(client, lines(*org_and_source(), concept_line("1")))["id"]
    service = app.extensions["termsync.imports"]
    original = service.uploads.delete

    def delete_then_die(upload_id: str) -> None:
        original(upload_id)
        service.uploads.delete = original
        raise WorkerDied()
    service.uploads.delete = delete_then_die
    with pytest.raises(WorkerDied):
        app.extensions["termsync.jobs"].run_until_idle()
    take_over(app)
    job = job_of(client, job_id)
    assert job["state"] == "FINISHED" and job["summary"]["created"] == 3


def test_json_lines_body_as_application_json(app: Any, client: Any) -> None:
    job_id = submit(client, lines(*org_and_source(), concept_line("1")),
                    content_type="application/json")["id"]
    run_jobs(app)
    job = job_of(client, job_id)
    assert job["format"] == "jsonl" and job["summary"]["created"] == 3
    assert job["url"] == f"{IMPORTS}{job_id}/" and job["report_url"].endswith("/report.csv")


def test_import_lines_are_counted_in_metrics(app: Any, client: Any) -> None:
    body = (FIXTURES / "sample_ocldev.jsonl").read_bytes()
    answer = client.post("/importers/bulk-import/", data=body, headers=dict(
        ADMIN, **{"Content-Type": "application/x-ndjson"}))
    assert answer.status_code == 202
    app.extensions["termsync.jobs"].run_until_idle()
    metrics = client.get("/metrics").get_data(as_text=True)
    created = [line for line in metrics.splitlines()
               if line.startswith("termsync_import_lines_total") and 'action="created"' in line]
    assert created and float(created[0].split()[-1]) >= 49
