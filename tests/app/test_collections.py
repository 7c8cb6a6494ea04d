"""Collections through HTTP: references (plain, pinned, cascaded) from two sources, what HEAD and
versions hold as sources change, diffs, checksums, exports, rights and bulk-imported references."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from typing import Any

import pytest

from app import create_app
from app.domain.accounts import Caller
from app.model import checksum_of
from tests.conftest import ADMIN, FILES_ROOT, app_config, concept, mapping, mongo_database_uri

DEMO = "/orgs/DemoOrg/sources/DemoSource/"
OTHER = "/orgs/DemoOrg/sources/Other/"
DICT = "/orgs/DemoOrg/collections/Dict/"
# Vegetable's mappings in the demo: Has Child to ten vegetables
VEGETABLE_MAPPINGS = {str(n) for n in range(13, 23)}
ADMIN_CALLER = Caller(username="admin", is_admin=True)


def call(client: Any, method: str, path: str, expect: int, headers: dict[str, str] | None = None,
         **kwargs: Any) -> Any:
    answer = client.open(path, method=method, headers=ADMIN if headers is None else headers,
                         **kwargs)
    assert answer.status_code == expect, (method, path, answer.status_code, answer.get_data())
    return answer.get_json(silent=True)


def put_references(client: Any, expressions: list[str], cascade: str | None = None,
                   collection: str = DICT, expect: int = 200) -> dict[str, str]:
    """PUT expressions; {expression: result}."""
    query = f"?cascade={cascade}" if cascade else ""
    answer = call(client, "PUT", f"{collection}references/{query}", expect,
                  json={"data": {"expressions": expressions}})
    return {result["expression"]: result["result"] for result in answer} if expect == 200 else {}


def content(client: Any, path: str, **params: str) -> dict[str, Any]:
    query = "&".join(f"{key}={value}" for key, value in {
        "includeConcepts": "true", "includeMappings": "true", "includeRetired": "true",
        **params}.items())
    return call(client, "GET", f"{path}?{query}", 200)


def new_user(client: Any, username: str, orgs: tuple[str, ...] = ()) -> dict[str, str]:
    """A user of the demo app (a member of `orgs`); the Authorization headers of its token."""
    call(client, "POST", "/users/", 201, json={"username": username})
    token = call(client, "POST", f"/users/{username}/tokens/", 201, json={})["token"]
    for org in orgs:
        call(client, "PUT", f"/orgs/{org}/members/{username}/", 200)
    return {"Authorization": f"Token {token}"}


def urls(items: list[dict[str, Any]]) -> set[str]:
    return {item["url"] for item in items}


@pytest.fixture
def dictionary(demo_client: Any) -> Any:
    """The demo, a second source with its own Apple and Banana, and an empty collection."""
    client = demo_client
    call(client, "POST", "/orgs/DemoOrg/sources/", 201, json={"id": "Other"})
    call(client, "POST", f"{OTHER}concepts/", 201, json=concept("Apple", "Other apple"))
    call(client, "POST", f"{OTHER}concepts/", 201, json=concept("Banana"))
    created = call(client, "POST", "/orgs/DemoOrg/collections/", 201,
                   json={"id": "Dict", "name": "Dictionary", "collection_type": "Dictionary"})
    assert created["type"] == "Collection" and created["url"] == DICT
    assert created["collection_type"] == "Dictionary" and "source_type" not in created
    return client


@pytest.fixture
def filled(dictionary: Any) -> Any:
    """The collection with a plain, a version-pinned and a cascaded expression of the demo, and
    the other source's Apple (the same id as the demo's)."""
    results = put_references(dictionary, [f"{DEMO}concepts/Apple/", f"{DEMO}v1.0/concepts/Mango/",
                                          f"{OTHER}concepts/Apple/"])
    assert set(results.values()) == {"added"}
    results = put_references(dictionary, [f"{DEMO}concepts/Vegetable/"], cascade="sourcemappings")
    assert results[f"{DEMO}concepts/Vegetable/"] == "added"
    assert {expression.split("/")[-2] for expression, result in results.items()
            if "/mappings/" in expression and result == "added"} == VEGETABLE_MAPPINGS
    return dictionary


def test_collections_are_listed_counted_and_kept_apart_from_sources(dictionary: Any) -> None:
    client = dictionary
    assert [c["id"] for c in call(client, "GET", "/collections/", 200)] == ["Dict"]
    assert [c["id"] for c in call(client, "GET", "/orgs/DemoOrg/collections/", 200)] == ["Dict"]
    assert {s["id"] for s in call(client, "GET", "/sources/", 200)} == {"DemoSource", "Other"}
    assert {s["id"] for s in call(client, "GET", "/orgs/DemoOrg/sources/", 200)} == \
        {"DemoSource", "Other"}
    assert {r["type"] for r in call(client, "GET", "/repos/", 200)} == {"Source", "Collection"}
    assert [r["id"] for r in call(client, "GET", "/repos/?repoType=Collection", 200)] == ["Dict"]
    assert [r["id"] for r in call(client, "GET", "/orgs/DemoOrg/repos/?repoType=collection",
                                  200)] == ["Dict"]
    assert call(client, "GET", "/orgs/DemoOrg/", 200)["public_collections"] == 1
    # a source and a collection of one owner may share an id: their urls differ
    call(client, "POST", "/orgs/DemoOrg/collections/", 409, json={"id": "Dict"})
    call(client, "POST", "/orgs/DemoOrg/collections/", 201, json={"id": "DemoSource"})
    assert call(client, "GET", "/orgs/DemoOrg/collections/DemoSource/", 200)["type"] == \
        "Collection"
    changed = call(client, "PATCH", DICT, 200, json={"name": "Renamed", "source_type": "x",
                                                     "canonical_url": "http://x.org/dict"})
    assert changed["name"] == "Renamed" and changed["canonical_url"] == "http://x.org/dict"
    assert "source_type" not in changed


def test_references_resolve_to_items_that_keep_their_source_identity(filled: Any) -> None:
    client = filled
    head = content(client, DICT)
    assert urls(head["concepts"]) == {f"{DEMO}concepts/Apple/", f"{DEMO}concepts/Mango/",
                                      f"{OTHER}concepts/Apple/", f"{DEMO}concepts/Vegetable/"}
    assert {m["id"] for m in head["mappings"]} == VEGETABLE_MAPPINGS
    apples = {item["source"]: item for item in head["concepts"] if item["id"] == "Apple"}
    assert apples["Other"]["url"] == f"{OTHER}concepts/Apple/"
    assert apples["Other"]["names"][0]["name"] == "Other apple"
    assert apples["DemoSource"]["source_url"] == DEMO and apples["DemoSource"]["owner"] == "DemoOrg"
    assert apples["Other"]["version_url"] == f"{OTHER}concepts/Apple/{apples['Other']['version']}/"

    listed = call(client, "GET", f"{DICT}concepts/?limit=2", 200)
    assert [c["url"] for c in listed] == [f"{DEMO}concepts/Apple/", f"{DEMO}concepts/Mango/"]
    page2 = client.get(f"{DICT}concepts/?limit=2&page=2", headers=ADMIN)
    assert page2.headers["num_found"] == "4"
    assert [c["url"] for c in page2.get_json()] == [f"{DEMO}concepts/Vegetable/",
                                                    f"{OTHER}concepts/Apple/"]
    # one id, two sources: naming it by id is ambiguous
    ambiguous = client.get(f"{DICT}concepts/Apple/", headers=ADMIN)
    assert ambiguous.status_code == 409 and OTHER in ambiguous.get_json()["message"]
    vegetable = call(client, "GET", f"{DICT}concepts/Vegetable/?includeMappings=true", 200)
    assert {m["id"] for m in vegetable["mappings"]} == VEGETABLE_MAPPINGS
    assert call(client, "GET", f"{DICT}mappings/13/", 200)["to_concept_code"] == "Carrot"
    call(client, "GET", f"{DICT}concepts/Fruit/", 404)  # in the demo, not in the collection
    summary = call(client, "GET", f"{DICT}?includeSummary=true", 200)["summary"]
    assert summary == {"active_concepts": 4, "active_mappings": 10, "versions": 0}

    references = client.get(f"{DICT}references/?limit=5", headers=ADMIN)
    assert references.headers["num_found"] == "14"
    first = references.get_json()[0]
    assert first["expression"] == f"{DEMO}concepts/Apple/"
    assert first["reference_type"] == "concepts" and first["type"] == "CollectionReference"
    pinned = call(client, "GET", f"{DICT}references/?q=v1.0", 200)
    assert [(r["expression"], r["version"]) for r in pinned] == [
        (f"{DEMO}v1.0/concepts/Mango/", "v1.0")]


def test_a_collections_lists_take_ocls_search_parameters(filled: Any) -> None:
    """q, conceptClass, datatype, mapType, toConcept... narrow a collection's lists as they
    narrow a source's, on the item versions the collection holds (HEAD or a version)."""
    client = filled

    def found(path: str) -> tuple[list[str], str]:
        answer = client.get(path, headers=ADMIN)
        assert answer.status_code == 200, answer.get_data()
        return [item["url"] for item in answer.get_json()], answer.headers["num_found"]

    apples = [f"{DEMO}concepts/Apple/", f"{OTHER}concepts/Apple/"]
    assert found(f"{DICT}concepts/?q=apple") == (apples, "2")
    assert found(f"{DICT}concepts/?q=apple&limit=1&page=2") == (apples[1:], "2")
    assert found(f"{DICT}concepts/?datatype=N/A") == ([f"{OTHER}concepts/Apple/"], "1")
    assert found(f"{DICT}concepts/?q=pear") == ([], "0")  # in the demo, not in the collection
    mappings, count = found(f"{DICT}mappings/?toConcept=Carrot")
    assert count == "1" and mappings[0].endswith("/mappings/13/")
    assert found(f"{DICT}mappings/?mapType=Has%20Child")[1] == str(len(VEGETABLE_MAPPINGS))

    call(client, "POST", f"{DICT}versions/", 201, json={"id": "v1"})
    call(client, "PATCH", f"{OTHER}concepts/Apple/", 200,
         json={"names": [{"name": "Pomme", "locale": "fr"}]})
    assert found(f"{DICT}concepts/?q=pomme") == ([f"{OTHER}concepts/Apple/"], "1")
    assert found(f"{DICT}v1/concepts/?q=pomme") == ([], "0")
    assert found(f"{DICT}v1/concepts/?q=apple") == (apples, "2")
    assert found(f"{DICT}concepts/?locale=fr") == ([f"{OTHER}concepts/Apple/"], "1")


def test_put_reports_each_expression(filled: Any) -> None:
    client = filled
    call(client, "POST", "/orgs/", 201, json={"id": "Secret", "public_access": "None"})
    call(client, "POST", "/orgs/Secret/sources/", 201, json={"id": "S", "public_access": "None"})
    call(client, "POST", "/orgs/Secret/sources/S/concepts/", 201, json=concept("X"))
    results = put_references(client, [
        f"{DEMO}concepts/Apple/",  # there already
        f"{DEMO}concepts/Nothing/", "/orgs/Nobody/sources/S/concepts/X/",  # not found
        "/orgs/Secret/sources/S/concepts/X/",  # private: not in a public collection
        "not an expression", f"{DEMO}concepts/",  # invalid (whole sources are not supported)
        f"http://termsync.example{DEMO}concepts/Pear",  # absolute, no slash: the same as Pear
        f"{DEMO}concepts/Cherry/1/",  # an item version that is another item's
    ])
    assert results == {
        f"{DEMO}concepts/Apple/": "exists", f"{DEMO}concepts/Nothing/": "not_found",
        "/orgs/Nobody/sources/S/concepts/X/": "not_found",
        "/orgs/Secret/sources/S/concepts/X/": "not_allowed",
        "not an expression": "invalid", f"{DEMO}concepts/": "invalid",
        f"{DEMO}concepts/Pear/": "added", f"{DEMO}concepts/Cherry/1/": "not_found"}
    # someone who cannot see the private source is told it is not found
    outsider = new_user(client, "ann", orgs=("DemoOrg",))
    answer = call(client, "PUT", f"{DICT}references/", 200, headers=outsider,
                  json={"data": {"expressions": ["/orgs/Secret/sources/S/concepts/X/"]}})
    assert answer[0]["result"] == "not_found" and answer[0]["added"] is False
    # a private collection of the same owner may reference the private source
    call(client, "POST", "/orgs/Secret/collections/", 201, json={"id": "C",
                                                                 "public_access": "None"})
    assert put_references(client, ["/orgs/Secret/sources/S/concepts/X/"],
                          collection="/orgs/Secret/collections/C/") == {
        "/orgs/Secret/sources/S/concepts/X/": "added"}
    # ... which stays hidden with its org whatever its own access (docs/security.md,
    # Confidentiality: test_org_access_changes_keep_collections_from_exposing_sources)
    call(client, "PATCH", "/orgs/Secret/collections/C/", 200, json={"public_access": "View"})
    assert "/orgs/Secret/collections/C/" not in urls(call(client, "GET", "/collections/", 200,
                                                         headers=outsider))
    # ... and a public one may not hold them
    call(client, "POST", "/orgs/DemoOrg/collections/", 201, json={"id": "Open"})
    assert put_references(client, ["/orgs/Secret/sources/S/concepts/X/"],
                          collection="/orgs/DemoOrg/collections/Open/") == {
        "/orgs/Secret/sources/S/concepts/X/": "not_allowed"}
    # nor may a source become private while a collection shows its items to more people
    answer = client.patch(OTHER, json={"public_access": "None"}, headers=ADMIN)
    assert answer.status_code == 400 and DICT in answer.get_json()["message"]
    assert call(client, "GET", OTHER, 200)["public_access"] == "View"
    call(client, "PATCH", DICT, 200, json={"public_access": "None"})  # same owner, private
    call(client, "PATCH", OTHER, 200, json={"public_access": "None"})
    call(client, "PATCH", DICT, 400, json={"public_access": "View"})
    call(client, "PUT", f"{DICT}references/?cascade=everything", 400,
         json={"data": {"expressions": [f"{DEMO}concepts/Pear/"]}})
    call(client, "PUT", f"{DICT}references/", 422, json={"expressions": ["x"]})


def test_sourcetoconcepts_also_brings_the_targets_pinned_as_the_concept_is(
        dictionary: Any) -> None:
    client = dictionary
    results = put_references(client, [f"{DEMO}v1.0/concepts/Food/"], cascade="sourcetoconcepts")
    assert results == {f"{DEMO}v1.0/concepts/Food/": "added",
                       f"{DEMO}v1.0/mappings/1/": "added", f"{DEMO}v1.0/mappings/2/": "added",
                       f"{DEMO}v1.0/concepts/Fruit/": "added",
                       f"{DEMO}v1.0/concepts/Vegetable/": "added"}
    head = content(client, DICT)
    assert {c["id"] for c in head["concepts"]} == {"Food", "Fruit", "Vegetable"}
    assert {m["id"] for m in head["mappings"]} == {"1", "2"}
    call(client, "PATCH", f"{DEMO}concepts/Fruit/", 200, json={"datatype": "Text"})
    assert call(client, "GET", f"{DICT}concepts/Fruit/", 200)["datatype"] == "None"  # pinned


def test_rights_are_those_of_sources(filled: Any) -> None:
    client = filled
    body = {"json": {"data": {"expressions": [f"{DEMO}concepts/Pear/"]}}}
    call(client, "PUT", f"{DICT}references/", 401, headers={}, **body)
    stranger = new_user(client, "bob")
    call(client, "PUT", f"{DICT}references/", 403, headers=stranger, **body)
    call(client, "DELETE", f"{DICT}references/", 403, headers=stranger,
         json={"references": [f"{DEMO}concepts/Apple/"]})
    call(client, "POST", f"{DICT}versions/", 403, headers=stranger, json={"id": "v9"})
    assert call(client, "GET", f"{DICT}references/", 200, headers=stranger)
    call(client, "PATCH", DICT, 200, json={"public_access": "None"})
    call(client, "GET", DICT, 404, headers=stranger)
    call(client, "GET", f"{DICT}concepts/", 404, headers=stranger)
    call(client, "GET", f"{DICT}references/", 404, headers=stranger)
    assert [c["id"] for c in call(client, "GET", "/collections/", 200, headers=stranger)] == []


def test_a_collection_takes_no_item_writes(filled: Any) -> None:
    client = filled
    answer = client.post(f"{DICT}concepts/", json=concept("New"), headers=ADMIN)
    assert answer.status_code == 405 and "references" in answer.get_json()["message"]
    call(client, "PATCH", f"{DICT}concepts/Vegetable/", 405, json={"datatype": "Text"})
    call(client, "DELETE", f"{DICT}mappings/13/", 405)
    call(client, "POST", f"{DICT}mappings/", 405,
         json=mapping(f"{DEMO}concepts/Apple/", f"{DEMO}concepts/Pear/"))


def test_head_follows_a_version_freezes_and_diffs_count_exactly_the_change(filled: Any) -> None:
    client = filled
    v1 = call(client, "POST", f"{DICT}versions/", 201, json={"id": "v1", "released": True,
                                                             "description": "first"})
    assert v1["type"] == "Collection Version" and v1["collection"]["id"] == "Dict"
    assert v1["version_url"] == f"{DICT}v1/" and v1["checksums"]["content"] == \
        call(client, "GET", DICT, 200)["checksums"]["content"]
    assert call(client, "GET", f"{DICT}latest/", 200)["id"] == "v1"
    assert [v["id"] for v in call(client, "GET", f"{DICT}versions/?released=true", 200)] == ["v1"]

    call(client, "PATCH", f"{DEMO}concepts/Apple/", 200, json={"datatype": "Text"})
    call(client, "PATCH", f"{DEMO}concepts/Mango/", 200, json={"datatype": "Text"})  # pinned
    call(client, "PATCH", f"{DEMO}concepts/Pear/", 200, json={"datatype": "Text"})  # not in it

    def apple(path: str) -> dict[str, Any]:
        return next(c for c in content(client, path)["concepts"]
                    if c["url"] == f"{DEMO}concepts/Apple/")

    assert apple(DICT)["datatype"] == "Text"
    assert apple(f"{DICT}v1/")["datatype"] == "None"
    mango = call(client, "GET", f"{DICT}concepts/Mango/", 200)
    assert mango["datatype"] == "None"  # pinned to the demo's v1.0

    diff = content(client, DICT, updatedSince=v1["created_on"])
    assert [c["url"] for c in diff["concepts"]] == [f"{DEMO}concepts/Apple/"]
    assert diff["mappings"] == []
    assert content(client, f"{DICT}v1/", updatedSince=v1["created_on"])["concepts"] == []
    head = call(client, "GET", DICT, 200)["checksums"]["content"]
    assert head != v1["checksums"]["content"]
    assert call(client, "GET", f"{DICT}v1/", 200)["checksums"]["content"] == \
        v1["checksums"]["content"]
    # the checksum is the one a subscriber computes from what it receives
    everything = content(client, DICT)
    assert head == checksum_of((item["url"], int(item["version"]))
                               for item in everything["concepts"] + everything["mappings"])


def test_an_item_stays_while_any_reference_brings_it(filled: Any) -> None:
    client = filled
    apple = f"{DEMO}concepts/Apple/"
    pinned = f"{apple}{call(client, 'GET', apple, 200)['version']}/"
    assert put_references(client, [pinned]) == {pinned: "added"}
    call(client, "POST", f"{DICT}versions/", 201, json={"id": "v1"})
    since = call(client, "GET", f"{DICT}v1/", 200)["created_on"]
    call(client, "DELETE", f"{DICT}references/", 204, json={"references": [apple]})
    assert apple in urls(content(client, DICT)["concepts"])  # the pinned one still brings it
    # ... and pins it now: a change of the source no longer shows
    call(client, "PATCH", apple, 200, json={"datatype": "Text"})
    assert next(c for c in content(client, DICT)["concepts"] if c["url"] == apple)[
        "datatype"] == "None"

    call(client, "DELETE", f"{DICT}references/", 204,
         json={"expressions": [pinned, f"{DEMO}concepts/Nothing/"]})
    assert call(client, "GET", f"{DICT}references/?q=DemoSource/concepts/Apple", 200) == []
    head = content(client, DICT)
    assert apple not in urls(head["concepts"])
    assert apple in urls(content(client, f"{DICT}v1/")["concepts"])
    # it left: a diff with tombstones says so, one without leaves it out
    left = content(client, DICT, updatedSince=since, includeDeleted="true")["concepts"]
    assert left == [{"type": "Concept", "id": "Apple", "url": apple, "deleted": True,
                     "version": left[0]["version"], "updated_on": left[0]["updated_on"]}]
    assert content(client, DICT, updatedSince=since)["concepts"] == []
    # removing a concept with cascade takes its mappings in the collection too
    call(client, "DELETE", f"{DICT}references/?cascade=sourcemappings", 204,
         json={"references": [f"{DEMO}concepts/Vegetable/"]})
    assert content(client, DICT)["mappings"] == []
    assert call(client, "GET", f"{DICT}references/", 200) == [] or all(
        "/mappings/" not in r["expression"] for r in call(client, "GET", f"{DICT}references/",
                                                          200))


def test_deleted_and_recreated_items_leave_and_return(filled: Any) -> None:
    client = filled
    apple = f"{DEMO}concepts/Apple/"
    before = call(client, "GET", DICT, 200)["checksums"]["content"]
    call(client, "DELETE", f"{apple}?hard=true", 204)
    assert apple not in urls(content(client, DICT)["concepts"])
    tombstones = content(client, DICT, includeDeleted="true")["concepts"]
    assert any(item["url"] == apple and item.get("deleted") for item in tombstones)
    call(client, "POST", f"{DEMO}concepts/", 201, json=concept("Apple", "Apple again"))
    back = next(c for c in content(client, DICT)["concepts"] if c["url"] == apple)
    assert back["names"][0]["name"] == "Apple again"
    assert call(client, "GET", DICT, 200)["checksums"]["content"] != before
    # retiring is a change too: retired items stay, and are left out without includeRetired
    call(client, "DELETE", f"{OTHER}concepts/Apple/", 204)
    assert f"{OTHER}concepts/Apple/" in urls(content(client, DICT)["concepts"])
    active = call(client, "GET", f"{DICT}concepts/", 200)
    assert f"{OTHER}concepts/Apple/" not in {c["url"] for c in active}


def test_exports_of_collection_versions(filled: Any, demo_app: Any) -> None:
    client = filled
    call(client, "POST", f"{DICT}versions/", 201, json={"id": "v1", "released": True})
    assert client.get(f"{DICT}v1/export/").status_code == 208  # releasing queued it
    demo_app.extensions["termsync.jobs"].run_until_idle()
    answer = client.get(f"{DICT}v1/export/")
    data = answer.data
    answer.close()
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/zip"
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="DemoOrg_Dict_v1.')
    assert answer.headers["exportURL"].split("localhost", 1)[1].startswith(f"{DICT}exports/")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        export = json.loads(archive.read("export.json"))
    assert list(export)[-3:] == ["concepts", "mappings", "references"]
    assert export["type"] == "Collection Version" and export["id"] == "v1"
    assert urls(export["concepts"]) == urls(content(client, f"{DICT}v1/")["concepts"])
    assert {m["id"] for m in export["mappings"]} == VEGETABLE_MAPPINGS
    assert len(export["references"]) == 14
    assert {r["expression"] for r in export["references"]} >= {f"{DEMO}v1.0/concepts/Mango/"}
    by_sha = client.get(answer.headers["exportURL"].split("localhost", 1)[1])
    assert by_sha.data == data
    by_sha.close()
    assert by_sha.status_code == 200
    assert client.get(f"{DICT}HEAD/export/").status_code == 405
    # the version's references stay as they were cut
    call(client, "DELETE", f"{DICT}references/", 204, json={"references": [
        f"{DEMO}concepts/Apple/"]})
    assert len(call(client, "GET", f"{DICT}v1/references/?limit=100", 200)) == 14
    assert len(call(client, "GET", f"{DICT}references/?limit=100", 200)) == 13
    # a collection's snapshot answer is the same body, zipped, for the OpenMRS module
    zipped = client.get(DICT.rstrip("/") + "?includeConcepts=true&includeMappings=true"
                        "&includeRetired=true&limit=100000", headers={"Compress": "true"})
    assert zipped.status_code == 200 and zipped.headers["Content-Type"] == "application/zip"


def test_a_source_held_by_a_collection_is_not_deleted(filled: Any) -> None:
    client = filled
    call(client, "POST", f"{DICT}versions/", 201, json={"id": "v1"})
    answer = client.delete(OTHER, headers=ADMIN)
    assert answer.status_code == 409 and DICT in answer.get_json()["message"]
    call(client, "DELETE", f"{DICT}references/", 204, json={"references": [
        f"{OTHER}concepts/Apple/"]})
    call(client, "DELETE", OTHER, 409)  # v1 holds it still
    call(client, "DELETE", f"{DICT}v1/", 204)
    call(client, "DELETE", OTHER, 204)
    call(client, "DELETE", DICT, 204)
    call(client, "GET", DICT, 404)
    call(client, "DELETE", DEMO, 204)  # nothing holds the demo any more
    assert call(client, "GET", "/collections/", 200) == []


def test_bulk_import_of_collections_and_reference_lines(dictionary: Any, demo_app: Any) -> None:
    client = dictionary
    lines = [
        {"type": "Collection", "id": "Imported", "owner": "DemoOrg",
         "owner_type": "Organization", "collection_type": "Value Set"},
        {"type": "Reference", "owner": "DemoOrg", "owner_type": "Organization",
         "collection": "Imported", "data": {"expressions": [
             f"{DEMO}concepts/Fruit/", f"{OTHER}concepts/Banana/"]}},
        {"type": "Reference", "collection_url": "/orgs/DemoOrg/collections/Imported/",
         "__cascade": "sourcemappings", "data": {"expressions": [f"{DEMO}concepts/Food/"]}},
        {"type": "Reference", "owner": "DemoOrg", "collection": "Imported",
         "data": {"expressions": [f"{DEMO}concepts/Fruit/"]}},
        {"type": "Reference", "owner": "DemoOrg", "collection": "Imported",
         "data": {"expressions": [f"{DEMO}concepts/Nothing/"]}},
        {"type": "Collection Version", "id": "v1", "released": True, "owner": "DemoOrg",
         "collection": "Imported"},
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines)

    def run(query: str = "") -> dict[str, Any]:
        submitted = client.post(f"/importers/bulk-import/{query}", data=body, headers={
            **ADMIN, "Content-Type": "application/x-ndjson"})
        assert submitted.status_code == 202, submitted.get_json()
        demo_app.extensions["termsync.jobs"].run_until_idle()
        job = call(client, "GET", f"/importers/bulk-import/{submitted.get_json()['id']}/", 200)
        assert job["state"] == "FINISHED"
        return dict(job["summary"])

    imported = "/orgs/DemoOrg/collections/Imported/"
    dry = run("?dryRun=true")  # the same summary, and nothing written
    call(client, "GET", imported, 404)
    summary = run()
    assert summary == dry
    assert summary["created"] == 4 and summary["unchanged"] == 1 and summary["failed"] == 1
    version = content(client, f"{imported}v1/")
    assert urls(version["concepts"]) == {f"{DEMO}concepts/Fruit/", f"{DEMO}concepts/Food/",
                                         f"{OTHER}concepts/Banana/"}
    assert {m["id"] for m in version["mappings"]} == {"1", "2"}
    assert call(client, "GET", imported, 200)["collection_type"] == "Value Set"


@pytest.mark.parametrize("backend", ["sqlite", "mongodb"])
def test_a_crash_between_an_item_write_and_its_followers_is_repaired(
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite writes the item and its followers in one transaction: a crash leaves neither.
    MongoDB writes the item first: the mark left behind lets the sweep bring the followers."""
    uri = f"sqlite:///{tempfile.mkdtemp(dir=FILES_ROOT)}/termsync.db" if backend == "sqlite" \
        else mongo_database_uri()
    application = create_app(app_config(DATABASE_URI=uri, LOAD_DEMO=True))
    try:
        client = application.test_client()
        call(client, "POST", "/orgs/DemoOrg/collections/", 201, json={"id": "Dict"})
        put_references(client, [f"{DEMO}concepts/Apple/"])
        domain = application.extensions["termsync"]

        def crash(url: str) -> int:
            raise RuntimeError("the process died")

        monkeypatch.setattr(domain.collections, "follow", crash)
        with pytest.raises(RuntimeError):
            domain.content.update_concept(ADMIN_CALLER, domain.content.find_repo(DEMO), "Apple",
                                          {"datatype": "Text"})
        monkeypatch.undo()
        source_side = call(client, "GET", f"{DEMO}concepts/Apple/", 200)["datatype"]
        in_collection = call(client, "GET", f"{DICT}concepts/Apple/", 200)["datatype"]
        marked = application.extensions["termsync.store"].collection_entries.marked_following()
        if backend == "sqlite":
            assert (source_side, in_collection, marked) == ("None", "None", [])
        else:
            assert (source_side, in_collection) == ("Text", "None")
            assert marked == [f"{DEMO}concepts/Apple/"]
        assert domain.collections.finish_following() == len(marked)
        assert call(client, "GET", f"{DICT}concepts/Apple/", 200)["datatype"] == source_side
        assert application.extensions["termsync.store"].collection_entries.marked_following() == []
    finally:
        application.extensions["termsync.store"].drop()
