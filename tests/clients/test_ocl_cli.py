"""The real `ocl` command (PyPI `openconceptlab`), each call its own process, against a live
termsync: exports through every state, imports of .jsonl, .csv and an OCL export .zip with
`--wait`, import status, task list, org repos and members, repo list, concepts with their
mappings, item versions, and concept and mapping search with filters."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, concept, mapping

from .conftest import DEMO, Live

pytestmark = pytest.mark.slow

Ocl = Callable[..., Any]


def output(done: Any) -> Any:
    """The JSON the command printed (`--json`)."""
    return json.loads(done.stdout)


def test_repo_export_through_every_state(demo: Live, ocl: Callable[[str], Ocl], tmp_path: Path) -> None:
    run = ocl(demo.url)
    demo.call("POST", f"{DEMO}versions/", 201, json={"id": "v2"})  # unreleased: no export
    args = ("DemoOrg", "DemoSource", "v2", "--type", "source")

    assert output(run("repo", "export", "status", *args)) == {"status": "not_found",
                                                               "status_code": 204}
    failed = run("repo", "export", "download", *args, check=False)
    assert failed.returncode != 0 and "Export does not exist" in failed.stderr
    created = output(run("repo", "export", "create", *args))
    assert created["status"] == "accepted" and created["status_code"] == 202
    assert output(run("repo", "export", "status", *args)) == {"status": "processing",
                                                               "status_code": 208}
    conflict = output(run("repo", "export", "create", *args))
    assert conflict["status"] == "conflict" and conflict["status_code"] == 409
    building = run("repo", "export", "download", *args, check=False)
    assert building.returncode != 0 and "still being processed" in building.stderr

    demo.run_jobs()
    ready = output(run("repo", "export", "status", *args))
    assert ready["status"] == "ready" and ready["status_code"] == 200
    assert ready["filename"].startswith("DemoOrg_DemoSource_v2.") and ready["filename"].endswith(".zip")
    exists = output(run("repo", "export", "create", *args))
    assert exists["status"] == "already_exists" and exists["status_code"] == 303

    run("repo", "export", "download", *args, cwd=tmp_path)  # named as the API names it
    downloaded = tmp_path / ready["filename"]
    with zipfile.ZipFile(downloaded) as archive:
        export = json.loads(archive.read("export.json"))
    assert export["id"] == "v2" and len(export["concepts"]) == 23 and len(export["mappings"]) == 22

    run("repo", "export", "delete", *args)
    assert output(run("repo", "export", "status", *args))["status"] == "not_found"
    missing = run("repo", "export", "status", "DemoOrg", "DemoSource", "v9", "--type", "source",
                  check=False)
    assert missing.returncode == 1


def test_import_files_with_wait_status_and_tasks(empty: Live, ocl: Callable[[str], Ocl],
                                                 tmp_path: Path) -> None:
    run = ocl(empty.url)
    empty.start_workers()  # `--wait` polls on its own five-second timer
    jsonl = tmp_path / "lines.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in (
        {"type": "Organization", "id": "MSFOCP", "name": "MSF OCP"},
        {"type": "Source", "id": "Implementationtest", "owner": "MSFOCP",
         "owner_type": "Organization"},
        {**concept("Existing"), "type": "Concept", "owner": "MSFOCP",
         "source": "Implementationtest"})) + "\n")
    submitted = run("import", "file", str(jsonl), "--wait")
    task = json.loads(submitted.stdout.split("\n}\n", 1)[0] + "\n}")  # the submission, then the task
    assert "Import completed successfully." in submitted.stderr
    final = output(run("import", "status", task["task"]))
    assert final["state"] == "SUCCESS" and final["summary"]["created"] == 3

    csv_file = tmp_path / "msfocp_concepts.csv"
    shutil.copy(FIXTURES / "msfocp_concepts.csv", csv_file)
    submitted = run("import", "file", str(csv_file), "--wait", "--queue", "msf")
    assert "Import completed successfully." in submitted.stderr
    csv_task = json.loads(submitted.stdout.split("\n}\n", 1)[0] + "\n}")
    assert csv_task["queue"] == "msf"
    csv_final = output(run("import", "status", csv_task["task"]))
    assert csv_final["state"] == "SUCCESS" and csv_final["queue"] == "msf"
    assert csv_final["summary"]["failed"] == 0 and csv_final["summary"]["total"] == 31

    zipped = tmp_path / "DemoSource_v1.0.zip"
    shutil.copy(FIXTURES / "DemoSource_v1.0.zip", zipped)
    submitted = run("import", "file", str(zipped), "--wait")
    assert "Import completed successfully." in submitted.stderr
    version = empty.call("GET", f"{DEMO}v1.0/?includeConcepts=true&includeMappings=true", 200)
    assert len(version["concepts"]) == 23 and len(version["mappings"]) == 22
    assert version["released"] is True

    tasks = output(run("task", "list"))
    assert tasks["count"] == 3 and {t["state"] for t in tasks["results"]} == {"SUCCESS"}
    assert output(run("task", "list", "--state", "FAILURE"))["results"] == []
    assert output(run("task", "get", task["task"]))["state"] == "SUCCESS"
    listed = output(run("import", "list", "--queue", "msf"))
    assert [t["task"] for t in listed] == [csv_task["task"]]


def test_orgs_repos_concepts_and_versions(demo: Live, ocl: Callable[[str], Ocl]) -> None:
    run = ocl(demo.url)
    repos = output(run("org", "repos", "DemoOrg"))
    assert repos["count"] == 1 and repos["results"][0]["id"] == "DemoSource"
    members = output(run("org", "members", "DemoOrg"))
    assert [member["username"] for member in members["results"]] == ["demo"]
    assert output(run("org", "get", "DemoOrg"))["public_sources"] == 1
    run("org", "remove-member", "DemoOrg", "demo", "--yes")
    assert output(run("org", "members", "DemoOrg"))["results"] == []
    added = run("org", "add-member", "DemoOrg", "demo")  # 200 with a body: OCL's 204 breaks it
    assert "Added 'demo' to organization 'DemoOrg'." in added.stdout
    assert [m["username"] for m in output(run("org", "members", "DemoOrg"))["results"]] == ["demo"]

    listed = output(run("repo", "list"))
    assert [repo["id"] for repo in listed["results"]] == ["DemoSource"]
    assert output(run("repo", "list", "demo"))["count"] == 1  # q: in the id or names
    assert output(run("repo", "list", "nothing-like-it"))["count"] == 0
    assert output(run("repo", "list", "--type", "collection"))["count"] == 0
    summary = output(run("repo", "get", "DemoOrg", "DemoSource"))["summary"]
    assert summary["active_concepts"] == 23 and summary["active_mappings"] == 22

    fruit = output(run("concept", "get", "DemoOrg", "DemoSource", "Fruit", "--include-mappings"))
    assert {m["to_concept_code"] for m in fruit["mappings"]} >= {"Apple", "Mango", "Papaya"}
    assert all(m["from_concept_code"] == "Fruit" for m in fruit["mappings"])
    apple = output(run("concept", "get", "DemoOrg", "DemoSource", "Apple",
                       "--include-inverse-mappings"))
    assert [m["from_concept_code"] for m in apple["mappings"]] == ["Fruit"]
    names = output(run("concept", "names", "DemoOrg", "DemoSource", "Apple"))
    assert names["results"][0]["name"] == "Apple" and names["results"][0]["uuid"]

    demo.call("PATCH", f"{DEMO}concepts/Apple/", 200, json={"datatype": "Text"})
    history = output(run("concept", "versions", "DemoOrg", "DemoSource", "Apple"))
    assert history["count"] == 2
    assert [v["datatype"] for v in history["results"]] == ["Text", "None"]  # newest first
    created = demo.call("POST", f"{DEMO}mappings/", 201, json=mapping(
        f"{DEMO}concepts/Apple/", f"{DEMO}concepts/Mango/", "Related"))
    demo.call("PATCH", f"{DEMO}mappings/{created['id']}/", 200, json={"map_type": "SAME-AS"})
    mapping_history = output(run("mapping", "versions", "DemoOrg", "DemoSource", created["id"]))
    assert [v["map_type"] for v in mapping_history["results"]] == ["SAME-AS", "Related"]


def test_concept_and_mapping_search_with_filters(demo: Live, ocl: Callable[[str], Ocl]) -> None:
    run = ocl(demo.url)

    def ids(*args: str) -> list[str]:
        return [item["id"] for item in output(run(*args))["results"]]

    in_demo = ("--owner", "DemoOrg", "--repo", "DemoSource")
    assert ids("concept", "search", "apple", *in_demo) == ["Apple"]
    assert ids("concept", "search", "--concept-class", "Category", *in_demo) == ["Fruit",
                                                                                 "Vegetable"]
    assert ids("concept", "search", "--concept-class", "Root", "--limit", "5") == ["Food"]
    assert ids("concept", "search", "pomelo") == ["Pomelo"]  # global: every visible source
    assert ids("concept", "list", "--datatype", "Text", *in_demo) == []
    assert len(ids("concept", "list", "--locale", "en", "--limit", "50", *in_demo)) == 23
    fruit = ids("mapping", "search", "--from-concept", "Fruit", *in_demo)
    assert len(fruit) == 10  # Fruit has ten children
    assert ids("mapping", "search", "--to-concept", "Apple", *in_demo) == \
        ids("mapping", "search", "--to-concept", "Apple", "--map-type", "Has Child")
    assert len(ids("mapping", "search", "--to-concept", "Apple")) == 1
    assert ids("mapping", "search", "--map-type", "SAME-AS", *in_demo) == []
