"""Real OCL clients against a collection on a live termsync: ocldev's OclExportFactory reads a
collection version's export, the OpenMRS module's protocol subscribes to the collection URL in
release and snapshot mode, and the `ocl` CLI adds, lists and removes references."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from ocldev.oclexport import OclExportFactory

from tests.conftest import ADMIN_TOKEN, concept

from .conftest import DEMO, Live, StepClock, _live
from .openmrs import OpenMrsClient

OTHER = "/orgs/DemoOrg/sources/Other/"
DICT = "/orgs/DemoOrg/collections/Dict/"
APPLES = {f"{DEMO}concepts/Apple/", f"{OTHER}concepts/Apple/"}
VEGETABLE_MAPPINGS = {str(n) for n in range(13, 23)}


def build_collection(live: Live) -> None:
    """A second source with its own Apple, and a collection of both Apples (plain), the demo's
    Mango pinned to v1.0 and Vegetable with its mappings (cascaded), released as v1."""
    live.call("POST", "/orgs/DemoOrg/sources/", 201, json={"id": "Other"})
    live.call("POST", f"{OTHER}concepts/", 201, json=concept("Apple", "Other apple"))
    live.call("POST", f"{OTHER}concepts/", 201, json=concept("Banana"))
    live.call("POST", "/orgs/DemoOrg/collections/", 201, json={"id": "Dict"})
    live.call("PUT", f"{DICT}references/", 200, json={"data": {"expressions": [
        *sorted(APPLES), f"{DEMO}v1.0/concepts/Mango/"]}})
    live.call("PUT", f"{DICT}references/?cascade=sourcemappings", 200,
              json={"data": {"expressions": [f"{DEMO}concepts/Vegetable/"]}})
    live.call("POST", f"{DICT}versions/", 201, json={"id": "v1", "released": True})
    live.run_jobs()


@pytest.fixture
def collection(demo: Live) -> Live:
    build_collection(demo)
    return demo


@pytest.fixture
def stepped_collection(step_clock: StepClock, tmp_path: Path) -> Iterator[Live]:
    """The collection on a server whose clock moves ten seconds at every reading."""
    for live in _live(tmp_path, LOAD_DEMO=True):
        live.run_jobs()
        build_collection(live)
        yield live


def urls(items: list[dict[str, Any]]) -> set[str]:
    return {item["url"] for item in items}


@pytest.mark.slow
def test_ocldev_reads_exactly_the_referenced_items(collection: Live) -> None:
    export = OclExportFactory.load_export(repo_version_url=f"{collection.url}{DICT}v1/",
                                          oclapitoken=ADMIN_TOKEN)
    full = export.get_full_export()
    assert full["type"] == "Collection Version" and full["collection"]["id"] == "Dict"
    assert len(export) == 4 + 10
    assert urls(export.get_concepts()) == APPLES | {f"{DEMO}concepts/Mango/",
                                                    f"{DEMO}concepts/Vegetable/"}
    assert {m["id"] for m in export.get_mappings()} == VEGETABLE_MAPPINGS
    vegetable = export.get_concept_by_uri(f"{DEMO}concepts/Vegetable/", include_mappings=True)
    assert {m["to_concept_code"] for m in vegetable["mappings"]} >= {"Carrot", "Potato"}
    other = export.get_concept_by_uri(f"{OTHER}concepts/Apple/")
    assert other["names"][0]["name"] == "Other apple" and other["source"] == "Other"
    references = [r for r in export.to_resource_list(do_include_references=True)
                  if r.get("type") == "Reference"]
    assert set(references[0]["data"]["expressions"]) >= APPLES
    latest = OclExportFactory.load_latest_export(f"{collection.url}{DICT}",
                                                 oclapitoken=ADMIN_TOKEN)
    assert latest.get_full_export()["id"] == "v1"


def test_openmrs_module_release_mode_on_the_collection_url(collection: Live) -> None:
    client = OpenMrsClient(f"{collection.url}{DICT}", token=ADMIN_TOKEN)
    version, answer = client.fetch_release()
    assert version == "v1"
    assert urls(answer.concepts) == APPLES | {f"{DEMO}concepts/Mango/",
                                              f"{DEMO}concepts/Vegetable/"}
    assert {m["id"] for m in answer.mappings} == VEGETABLE_MAPPINGS
    assert [urlsplit(url).path for url, _ in client.sent] == [
        DICT.rstrip("/") + "/versions", f"{DICT}v1/export", f"{DICT}v1/export"]


def test_openmrs_module_snapshot_mode_on_the_collection_url(stepped_collection: Live) -> None:
    live = stepped_collection
    client = OpenMrsClient(f"{live.url}{DICT}", token=ADMIN_TOKEN)
    _, release = client.fetch_release()
    everything = client.fetch_snapshot(None)
    assert urls(everything.concepts) == urls(release.concepts)
    since = client.fetch_snapshot(release.updated_to).updated_to

    live.call("PATCH", f"{DEMO}concepts/Apple/", 200, json={"datatype": "Text"})  # followed
    live.call("PATCH", f"{DEMO}concepts/Pear/", 200, json={"datatype": "Text"})  # not in it
    live.call("PATCH", f"{DEMO}concepts/Mango/", 200, json={"datatype": "Text"})  # pinned
    live.call("PUT", f"{DICT}references/", 200, json={"data": {"expressions": [
        f"{OTHER}concepts/Banana/"]}})  # enters
    changes = client.fetch_snapshot(since)
    assert urls(changes.concepts) == {f"{DEMO}concepts/Apple/", f"{OTHER}concepts/Banana/"}
    assert next(c for c in changes.concepts if c["source"] == "DemoSource")["datatype"] == "Text"
    assert changes.mappings == []
    assert client.fetch_snapshot(changes.updated_to).concepts == []


@pytest.mark.slow
def test_ocl_cli_adds_lists_and_removes_references(collection: Live,
                                                   ocl: Callable[[str], Any]) -> None:
    run = ocl(collection.url)

    def listed(*extra: str) -> set[str]:
        answer = json.loads(run("ref", "list", "DemoOrg", "Dict", "--limit", "100", *extra).stdout)
        return {reference["expression"] for reference in answer["results"]}

    assert len(listed()) == 14
    added = json.loads(run("ref", "add", "DemoOrg", "Dict", f"{DEMO}concepts/Fruit/",
                           f"{DEMO}concepts/Nothing/", "--cascade", "sourcemappings").stdout)
    by_expression = {result["expression"]: result for result in added}
    assert by_expression[f"{DEMO}concepts/Fruit/"]["added"] is True
    assert by_expression[f"{DEMO}concepts/Nothing/"]["added"] is False
    assert by_expression[f"{DEMO}mappings/3/"]["cascaded_from"] == f"{DEMO}concepts/Fruit/"
    head = listed()
    assert f"{DEMO}concepts/Fruit/" in head and f"{DEMO}mappings/3/" in head
    assert len(head) == 14 + 1 + 10  # Fruit and its ten mappings

    removed = run("ref", "remove", "DemoOrg", "Dict", f"{DEMO}concepts/Fruit/",
                  f"{OTHER}concepts/Apple/")
    assert "Removed 2 reference(s)" in removed.stdout
    after = listed()
    assert f"{DEMO}concepts/Fruit/" not in after and f"{OTHER}concepts/Apple/" not in after
    assert f"{DEMO}mappings/3/" in after  # removed without cascade: its mappings stay
    assert len(listed("--collection-version", "v1")) == 14  # the version keeps its references
    items = collection.call("GET", f"{DICT}?includeConcepts=true&limit=100", 200)["concepts"]
    assert urls(items) == {f"{DEMO}concepts/Apple/", f"{DEMO}concepts/Mango/",
                           f"{DEMO}concepts/Vegetable/"}
