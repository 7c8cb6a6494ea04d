"""The real `ocl` command (PyPI `openconceptlab`), each call its own process, against the deployed
stack: exports through every state, imports of .jsonl, .csv and an OCL export .zip with
`--wait`, import status, task list, org repos and members, repo list, concepts with their
mappings, item versions, and concept and mapping search with filters."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, concept, mapping
from tests.stack import Stack, renamed_copy

from .conftest import Demo

pytestmark = pytest.mark.slow

Ocl = Callable[..., Any]


def output(done: Any) -> Any:
    """The JSON the command printed (`--json`)."""
    return json.loads(done.stdout)


def test_repo_export_through_every_state(demo: Demo, ocl: Callable[[str], Ocl], tmp_path: Path) -> None:
    run = ocl(demo.url)
    demo.call("POST", f"{demo.path}versions/", 201, json={"id": "v2"})  # unreleased: no export
    args = (demo.org, "DemoSource", "v2", "--type", "source")

    assert output(run("repo", "export", "status", *args)) == {"status": "not_found",
                                                               "status_code": 204}
    failed = run("repo", "export", "download", *args, check=False)
    assert failed.returncode != 0 and "Export does not exist" in failed.stderr
    with demo.stack.jobs_held():  # the build waits in the queue while the CLI looks
        created = output(run("repo", "export", "create", *args))
        assert created["status"] == "accepted" and created["status_code"] == 202
        assert output(run("repo", "export", "status", *args)) == {"status": "processing",
                                                                   "status_code": 208}
        conflict = output(run("repo", "export", "create", *args))
        assert conflict["status"] == "conflict" and conflict["status_code"] == 409
        building = run("repo", "export", "download", *args, check=False)
        assert building.returncode != 0 and "still being processed" in building.stderr

    demo.stack.run_jobs()
    ready = output(run("repo", "export", "status", *args))
    assert ready["status"] == "ready" and ready["status_code"] == 200
    assert ready["filename"].startswith(f"{demo.org}_DemoSource_v2.")
    assert ready["filename"].endswith(".zip")
    exists = output(run("repo", "export", "create", *args))
    assert exists["status"] == "already_exists" and exists["status_code"] == 303

    run("repo", "export", "download", *args, cwd=tmp_path)  # named as the API names it
    downloaded = tmp_path / ready["filename"]
    with zipfile.ZipFile(downloaded) as archive:
        export = json.loads(archive.read("export.json"))
    assert export["id"] == "v2" and len(export["concepts"]) == 23 and len(export["mappings"]) == 22

    run("repo", "export", "delete", *args)
    assert output(run("repo", "export", "status", *args))["status"] == "not_found"
    missing = run("repo", "export", "status", demo.org, "DemoSource", "v9", "--type", "source",
                  check=False)
    assert missing.returncode == 1


def test_import_files_with_wait_status_and_tasks(stack: Stack, ocl: Callable[..., Ocl],
                                                 tmp_path: Path) -> None:
    # a user of its own (the tasks listed are the caller's), its own names for the fixtures' orgs
    _, token = stack.new_user("importer")
    run = ocl(stack.url, token)
    msfocp, demo_org = stack.unused_name("MSFOCP"), stack.unused_name("DemoOrg")
    jsonl = tmp_path / "lines.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in (
        {"type": "Organization", "id": msfocp, "name": "MSF OCP"},
        {"type": "Source", "id": "Implementationtest", "owner": msfocp,
         "owner_type": "Organization"},
        {**concept("Existing"), "type": "Concept", "owner": msfocp,
         "source": "Implementationtest"})) + "\n")
    submitted = run("import", "file", str(jsonl), "--wait")
    task = json.loads(submitted.stdout.split("\n}\n", 1)[0] + "\n}")  # the submission, then the task
    assert "Import completed successfully." in submitted.stderr
    final = output(run("import", "status", task["task"]))
    assert final["state"] == "SUCCESS" and final["summary"]["created"] == 3

    csv_file = renamed_copy(FIXTURES / "msfocp_concepts.csv", tmp_path, {"MSFOCP": msfocp})
    submitted = run("import", "file", str(csv_file), "--wait", "--queue", "msf")
    assert "Import completed successfully." in submitted.stderr
    csv_task = json.loads(submitted.stdout.split("\n}\n", 1)[0] + "\n}")
    assert csv_task["queue"] == "msf"
    csv_final = output(run("import", "status", csv_task["task"]))
    assert csv_final["state"] == "SUCCESS" and csv_final["queue"] == "msf"
    assert csv_final["summary"]["failed"] == 0 and csv_final["summary"]["total"] == 31

    zipped = renamed_copy(FIXTURES / "DemoSource_v1.0.zip", tmp_path, {"DemoOrg": demo_org})
    submitted = run("import", "file", str(zipped), "--wait")
    assert "Import completed successfully." in submitted.stderr
    version = stack.call("GET", f"/orgs/{demo_org}/sources/DemoSource/v1.0/?includeConcepts=true"
                                "&includeMappings=true", 200).json()
    assert len(version["concepts"]) == 23 and len(version["mappings"]) == 22
    assert version["released"] is True

    tasks = output(run("task", "list"))
    assert tasks["count"] == 3 and {t["state"] for t in tasks["results"]} == {"SUCCESS"}
    assert output(run("task", "list", "--state", "FAILURE"))["results"] == []
    assert output(run("task", "get", task["task"]))["state"] == "SUCCESS"
    listed = output(run("import", "list", "--queue", "msf"))
    assert [t["task"] for t in listed] == [csv_task["task"]]


def test_orgs_repos_concepts_and_versions(demo: Demo, ocl: Callable[[str], Ocl]) -> None:
    run, org, path = ocl(demo.url), demo.org, demo.path
    repos = output(run("org", "repos", org))
    assert repos["count"] == 1 and repos["results"][0]["id"] == "DemoSource"
    members = output(run("org", "members", org))
    assert [member["username"] for member in members["results"]] == ["admin"]  # its creator
    assert output(run("org", "get", org))["public_sources"] == 1
    run("org", "remove-member", org, "admin", "--yes")
    assert output(run("org", "members", org))["results"] == []
    added = run("org", "add-member", org, "admin")  # 200 with a body: OCL's 204 breaks it
    assert f"Added 'admin' to organization '{org}'." in added.stdout
    assert [m["username"] for m in output(run("org", "members", org))["results"]] == ["admin"]

    listed = output(run("repo", "list", "--owner", org))
    assert [repo["id"] for repo in listed["results"]] == ["DemoSource"]
    assert output(run("repo", "list", "demo", "--owner", org))["count"] == 1  # q: id or names
    assert output(run("repo", "list", "nothing-like-it"))["count"] == 0
    assert output(run("repo", "list", "--type", "collection", "--owner", org))["count"] == 0
    summary = output(run("repo", "get", org, "DemoSource"))["summary"]
    assert summary["active_concepts"] == 23 and summary["active_mappings"] == 22

    fruit = output(run("concept", "get", org, "DemoSource", "Fruit", "--include-mappings"))
    assert {m["to_concept_code"] for m in fruit["mappings"]} >= {"Apple", "Mango", "Papaya"}
    assert all(m["from_concept_code"] == "Fruit" for m in fruit["mappings"])
    apple = output(run("concept", "get", org, "DemoSource", "Apple",
                       "--include-inverse-mappings"))
    assert [m["from_concept_code"] for m in apple["mappings"]] == ["Fruit"]
    names = output(run("concept", "names", org, "DemoSource", "Apple"))
    assert names["results"][0]["name"] == "Apple" and names["results"][0]["uuid"]

    demo.call("PATCH", f"{path}concepts/Apple/", 200, json={"datatype": "Text"})
    history = output(run("concept", "versions", org, "DemoSource", "Apple"))
    assert history["count"] == 2
    assert [v["datatype"] for v in history["results"]] == ["Text", "None"]  # newest first
    created = demo.call("POST", f"{path}mappings/", 201, json=mapping(
        f"{path}concepts/Apple/", f"{path}concepts/Mango/", "Related"))
    demo.call("PATCH", f"{path}mappings/{created['id']}/", 200, json={"map_type": "SAME-AS"})
    mapping_history = output(run("mapping", "versions", org, "DemoSource", created["id"]))
    assert [v["map_type"] for v in mapping_history["results"]] == ["SAME-AS", "Related"]


def test_concept_and_mapping_search_with_filters(demo: Demo, ocl: Callable[[str], Ocl]) -> None:
    run = ocl(demo.url)

    def ids(*args: str) -> list[str]:
        return [item["id"] for item in output(run(*args))["results"]]

    in_demo = ("--owner", demo.org, "--repo", "DemoSource")
    assert ids("concept", "search", "apple", *in_demo) == ["Apple"]
    assert ids("concept", "search", "--concept-class", "Category", *in_demo) == ["Fruit",
                                                                                 "Vegetable"]
    # global: every visible source (other tests' copies of the demo too)
    roots = ids("concept", "search", "--concept-class", "Root", "--limit", "5")
    assert set(roots) == {"Food"} and 1 <= len(roots) <= 5
    found = output(run("concept", "search", "pomelo", "--limit", "100"))["results"]
    assert {item["id"] for item in found} == {"Pomelo"}
    assert f"{demo.path}concepts/Pomelo/" in {item["url"] for item in found}
    assert ids("concept", "list", "--datatype", "Text", *in_demo) == []
    assert len(ids("concept", "list", "--locale", "en", "--limit", "50", *in_demo)) == 23
    fruit = ids("mapping", "search", "--from-concept", "Fruit", *in_demo)
    assert len(fruit) == 10  # Fruit has ten children
    to_apple = ids("mapping", "search", "--to-concept", "Apple", *in_demo)
    assert len(to_apple) == 1 and to_apple == ids(
        "mapping", "search", "--to-concept", "Apple", "--map-type", "Has Child", *in_demo)
    everywhere = output(run("mapping", "search", "--to-concept", "Apple", "--map-type",
                            "Has Child", "--limit", "100"))["results"]  # global
    assert {m["map_type"] for m in everywhere} == {"Has Child"}
    assert f"{demo.path}mappings/{to_apple[0]}/" in {m["url"] for m in everywhere}
    assert ids("mapping", "search", "--map-type", "SAME-AS", *in_demo) == []
