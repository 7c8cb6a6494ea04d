"""Real OCL clients against a collection on the deployed stack: ocldev's OclExportFactory reads a
collection version's export, the OpenMRS module's protocol subscribes to the collection URL in
release and snapshot mode, and the `ocl` CLI adds, lists and removes references."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from ocldev.oclexport import OclExportFactory

from tests.conftest import ADMIN_TOKEN
from tests.stack import demo_dictionary

from .conftest import Demo
from .openmrs import OpenMrsClient

pytestmark = pytest.mark.slow

VEGETABLE_MAPPINGS = {str(n) for n in range(13, 23)}


@dataclass
class Dictionary:
    """A collection beside the demo, in the demo's organization."""

    demo: Demo

    @property
    def other(self) -> str:
        """A second source, with an Apple of its own."""
        return f"/orgs/{self.demo.org}/sources/Other/"

    @property
    def path(self) -> str:
        """The collection."""
        return f"/orgs/{self.demo.org}/collections/Dict/"

    @property
    def apples(self) -> set[str]:
        """Both Apples."""
        return {f"{self.demo.path}concepts/Apple/", f"{self.other}concepts/Apple/"}


@pytest.fixture
def collection(demo: Demo) -> Dictionary:
    """A second source with its own Apple, and a collection of both Apples (plain), the demo's
    Mango pinned to v1.0 and Vegetable with its mappings (cascaded), released as v1."""
    built = Dictionary(demo)
    assert demo_dictionary(demo.stack, demo.path) == built.path
    demo.stack.wait_for_export(f"{built.path}v1/")
    return built


def urls(items: list[dict[str, Any]]) -> set[str]:
    return {item["url"] for item in items}


def test_ocldev_reads_exactly_the_referenced_items(collection: Dictionary) -> None:
    url, source, other = collection.demo.url, collection.demo.path, collection.other
    export = OclExportFactory.load_export(repo_version_url=f"{url}{collection.path}v1/",
                                          oclapitoken=ADMIN_TOKEN)
    full = export.get_full_export()
    assert full["type"] == "Collection Version" and full["collection"]["id"] == "Dict"
    assert len(export) == 4 + 10
    assert urls(export.get_concepts()) == collection.apples | {f"{source}concepts/Mango/",
                                                               f"{source}concepts/Vegetable/"}
    assert {m["id"] for m in export.get_mappings()} == VEGETABLE_MAPPINGS
    vegetable = export.get_concept_by_uri(f"{source}concepts/Vegetable/", include_mappings=True)
    assert {m["to_concept_code"] for m in vegetable["mappings"]} >= {"Carrot", "Potato"}
    apple = export.get_concept_by_uri(f"{other}concepts/Apple/")
    assert apple["names"][0]["name"] == "Other apple" and apple["source"] == "Other"
    references = [r for r in export.to_resource_list(do_include_references=True)
                  if r.get("type") == "Reference"]
    assert set(references[0]["data"]["expressions"]) >= collection.apples
    latest = OclExportFactory.load_latest_export(f"{url}{collection.path}",
                                                 oclapitoken=ADMIN_TOKEN)
    assert latest.get_full_export()["id"] == "v1"


def test_openmrs_module_release_mode_on_the_collection_url(collection: Dictionary) -> None:
    source, path = collection.demo.path, collection.path
    client = OpenMrsClient(f"{collection.demo.url}{path}", token=ADMIN_TOKEN)
    version, answer = client.fetch_release()
    assert version == "v1"
    assert urls(answer.concepts) == collection.apples | {f"{source}concepts/Mango/",
                                                         f"{source}concepts/Vegetable/"}
    assert {m["id"] for m in answer.mappings} == VEGETABLE_MAPPINGS
    assert [urlsplit(url).path for url, _ in client.sent] == [
        path.rstrip("/") + "/versions", f"{path}v1/export", f"{path}v1/export"]


def test_openmrs_module_snapshot_mode_on_the_collection_url(collection: Dictionary) -> None:
    demo, source, other = collection.demo, collection.demo.path, collection.other
    clock = demo.stack.clock
    client = OpenMrsClient(f"{demo.url}{collection.path}", token=ADMIN_TOKEN)
    _, release = client.fetch_release()
    clock.advance(10)  # the reads come well after the writes that built the collection
    everything = client.fetch_snapshot(None)
    assert urls(everything.concepts) == urls(release.concepts)
    since = client.fetch_snapshot(release.updated_to).updated_to

    demo.call("PATCH", f"{source}concepts/Apple/", 200, json={"datatype": "Text"})  # followed
    demo.call("PATCH", f"{source}concepts/Pear/", 200, json={"datatype": "Text"})  # not in it
    demo.call("PATCH", f"{source}concepts/Mango/", 200, json={"datatype": "Text"})  # pinned
    demo.call("PUT", f"{collection.path}references/", 200, json={"data": {"expressions": [
        f"{other}concepts/Banana/"]}})  # enters
    clock.advance(10)
    changes = client.fetch_snapshot(since)
    assert urls(changes.concepts) == {f"{source}concepts/Apple/", f"{other}concepts/Banana/"}
    assert next(c for c in changes.concepts if c["source"] == "DemoSource")["datatype"] == "Text"
    assert changes.mappings == []
    assert client.fetch_snapshot(changes.updated_to).concepts == []


def test_ocl_cli_adds_lists_and_removes_references(collection: Dictionary,
                                                   ocl: Callable[[str], Any]) -> None:
    demo, source, org = collection.demo, collection.demo.path, collection.demo.org
    run = ocl(demo.url)

    def listed(*extra: str) -> set[str]:
        answer = json.loads(run("ref", "list", org, "Dict", "--limit", "100", *extra).stdout)
        return {reference["expression"] for reference in answer["results"]}

    assert len(listed()) == 14
    added = json.loads(run("ref", "add", org, "Dict", f"{source}concepts/Fruit/",
                           f"{source}concepts/Nothing/", "--cascade", "sourcemappings").stdout)
    by_expression = {result["expression"]: result for result in added}
    assert by_expression[f"{source}concepts/Fruit/"]["added"] is True
    assert by_expression[f"{source}concepts/Nothing/"]["added"] is False
    assert by_expression[f"{source}mappings/3/"]["cascaded_from"] == f"{source}concepts/Fruit/"
    head = listed()
    assert f"{source}concepts/Fruit/" in head and f"{source}mappings/3/" in head
    assert len(head) == 14 + 1 + 10  # Fruit and its ten mappings

    removed = run("ref", "remove", org, "Dict", f"{source}concepts/Fruit/",
                  f"{collection.other}concepts/Apple/")
    assert "Removed 2 reference(s)" in removed.stdout
    after = listed()
    assert f"{source}concepts/Fruit/" not in after
    assert f"{collection.other}concepts/Apple/" not in after
    assert f"{source}mappings/3/" in after  # removed without cascade: its mappings stay
    assert len(listed("--collection-version", "v1")) == 14  # the version keeps its references
    items = demo.call("GET", f"{collection.path}?includeConcepts=true&limit=100", 200)["concepts"]
    assert urls(items) == {f"{source}concepts/Apple/", f"{source}concepts/Mango/",
                           f"{source}concepts/Vegetable/"}
