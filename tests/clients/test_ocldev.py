"""ocldev (PyPI) against the deployed stack: `OclExportFactory.load_export(do_wait_for_export=True)`
on a version whose export does not exist yet (204 → POST → 208 → 200), and `OclBulkImporter`
submit, status and results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ocldev.oclexport import OclExportFactory
from ocldev.oclfleximporter import OclBulkImporter, OclImportResults

from tests.conftest import ADMIN_TOKEN, FIXTURES, concept
from tests.stack import Stack, renamed_copy

from .conftest import Demo

# OclBulkImporter.post(file_path=...) opens the file and never closes it (an ocldev bug).
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def test_load_export_waits_for_an_export_that_does_not_exist_yet(demo: Demo) -> None:
    demo.call("POST", f"{demo.path}versions/", 201, json={"id": "v2"})  # unreleased: 204 at first
    assert demo.stack.call("GET", f"{demo.path}v2/export/").status_code == 204
    export = OclExportFactory.load_export(
        repo_version_url=f"{demo.url}{demo.path}v2/", oclapitoken=ADMIN_TOKEN,
        do_wait_for_export=True, delay_seconds=1, max_wait_seconds=60)
    assert len(export) == 23 + 22
    assert export.get_concept_by_id("Apple")["names"][0]["name"] == "Apple"
    fruit = export.get_concept_by_id("Fruit", include_mappings=True)
    assert {m["to_concept_code"] for m in fruit["mappings"]} >= {"Apple", "Mango"}
    latest = OclExportFactory.load_latest_export(f"{demo.url}{demo.path}", oclapitoken=ADMIN_TOKEN)
    assert latest.get_full_export()["id"] == "v1.0"


def test_bulk_importer_submit_status_and_results(stack: Stack, tmp_path: Path) -> None:
    # a user of its own: the imports listed are the caller's
    _, token = stack.new_user("ocldev")
    url, org, queued_org = stack.url, stack.unused_name("Ocldev"), stack.unused_name("Queued")
    lines = [{"type": "Organization", "id": org, "name": "ocldev"},
             {"type": "Source", "id": "Lines", "owner": org, "owner_type": "Organization"},
             *({**concept(f"C{n}"), "type": "Concept", "owner": org, "source": "Lines"}
               for n in range(5)),
             {"type": "Concept", "id": "broken", "owner": org, "source": "Lines"}]
    path = tmp_path / "lines.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    # ocldev posts the bytes with no Content-Type at all: termsync sniffs JSON lines
    response = OclBulkImporter.post(file_path=str(path), api_url_root=url, api_token=token)
    assert response.status_code == 202, response.text
    task_id = response.json()["task"]
    results = OclBulkImporter.get_bulk_import_results(
        task_id=task_id, api_url_root=url, api_token=token, max_wait_seconds=60, delay_seconds=5)
    assert isinstance(results, OclImportResults)
    assert results.count == 8 and results.total_lines == 8
    finished = OclBulkImporter.get_queued_imports(api_url_root=url, api_token=token,
                                                  status_filter="SUCCESS")
    assert [task["task"] for task in finished] == [task_id]
    assert finished[0]["summary"]["created"] == 7 and finished[0]["summary"]["failed"] == 1
    assert OclBulkImporter.get_queued_imports(api_url_root=url, api_token=token,
                                              status_filter=["PENDING", "STARTED"]) == []

    # the parallel importer's path and body (`data` form field), into a named queue
    response = OclBulkImporter.post(
        input_list=[{"type": "Organization", "id": queued_org, "name": "queued"}],
        api_url_root=url, api_token=token, queue="nightly", parallel=True)
    assert response.status_code == 202 and response.json()["queue"] == "nightly"
    results = OclBulkImporter.get_bulk_import_results(
        task_id=response.json()["task"], api_url_root=url, api_token=token,
        max_wait_seconds=60, delay_seconds=5)
    assert results is not None and results.count == 1
    queued = OclBulkImporter.get_queued_imports(api_url_root=url, api_token=token,
                                                queue="nightly")
    assert [task["queue"] for task in queued] == ["nightly"]
    assert stack.call("GET", f"/orgs/{queued_org}/", 200).json()["id"] == queued_org


def test_bulk_importer_reads_an_ocl_export_zip_fixture_as_file(stack: Stack,
                                                               tmp_path: Path) -> None:
    org = stack.unused_name("DemoOrg")
    zipped = renamed_copy(FIXTURES / "DemoSource_v1.0.zip", tmp_path, {"DemoOrg": org})
    response = OclBulkImporter.post(file_path=str(zipped), api_url_root=stack.url,
                                    api_token=ADMIN_TOKEN)
    assert response.status_code == 202, response.text
    results = OclBulkImporter.get_bulk_import_results(
        task_id=response.json()["task"], api_url_root=stack.url, api_token=ADMIN_TOKEN,
        max_wait_seconds=60, delay_seconds=5)
    assert results is not None and results.count == 48  # org, source, 23 + 22, the version
    assert stack.call("GET", f"/orgs/{org}/sources/DemoSource/v1.0/", 200).json()["released"]
