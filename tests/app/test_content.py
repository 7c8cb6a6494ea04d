"""The content API through HTTP: OCL compatibility, immutable versions, diffs and checksums."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app import timeutil
from tests.conftest import ADMIN, FIXTURES, concept, mapping

DEMO = "/orgs/DemoOrg/sources/DemoSource/"


def ocl_export() -> dict[str, Any]:
    with zipfile.ZipFile(FIXTURES / "DemoSource_v1.0.zip") as archive:
        return json.loads(archive.read("export.json"))


def concept_key(item: dict[str, Any]) -> tuple[Any, ...]:
    return (item["id"], item["url"], item["concept_class"], item["datatype"],
            tuple(sorted((n["name"], n["locale"], n["name_type"]) for n in item["names"])))


def mapping_key(item: dict[str, Any]) -> tuple[Any, ...]:
    # OCL numbered these mappings while importing them in parallel (its ids follow no file
    # order), so ids are compared as a set and mappings by what they say.
    return (item["map_type"], item["from_concept_url"], item["to_concept_url"])


def all_pages(client: Any, url: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Follow `next` links; return every item of every page."""
    items: list[dict[str, Any]] = []
    while url:
        answer = client.get(url, headers=headers)
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        items.extend(body["concepts"] + body["mappings"])
        url = answer.headers.get("next")
    return items


def test_demo_v1_equals_ocl_export(demo_client: Any) -> None:
    answer = demo_client.get(f"{DEMO}v1.0/?includeConcepts=true&includeMappings=true")
    assert answer.status_code == 200
    body = answer.get_json()
    expected = ocl_export()
    assert len(body["concepts"]) == 23 and len(body["mappings"]) == 22
    assert sorted(map(concept_key, body["concepts"])) == sorted(map(concept_key, expected["concepts"]))
    assert sorted(map(mapping_key, body["mappings"])) == sorted(map(mapping_key, expected["mappings"]))
    assert {m["id"] for m in body["mappings"]} == {m["id"] for m in expected["mappings"]}
    assert body["type"] == "Source Version" and body["id"] == "v1.0" and body["released"] is True
    assert answer.headers["num_found"] == "45"


def test_versions_are_immutable_and_diffs_return_exactly_the_changes(demo_client: Any) -> None:
    before = demo_client.get(f"{DEMO}v1.0/?includeConcepts=true&includeMappings=true").get_json()
    head = demo_client.get(DEMO).get_json()
    since = head["lastUpdated"]

    assert demo_client.patch(f"{DEMO}concepts/Apple/", headers=ADMIN,
                             json={"names": [{"name": "Green apple", "locale": "en",
                                              "locale_preferred": True}]}).status_code == 200
    assert demo_client.delete(f"{DEMO}concepts/Pear/", headers=ADMIN).status_code == 204
    assert demo_client.delete(f"{DEMO}concepts/Corn/?hard=true", headers=ADMIN).status_code == 204
    assert demo_client.post(f"{DEMO}concepts/", headers=ADMIN,
                            json=concept("Kiwi", concept_class="Product")).status_code == 201

    after = demo_client.get(f"{DEMO}v1.0/?includeConcepts=true&includeMappings=true").get_json()
    assert after["concepts"] == before["concepts"] and after["mappings"] == before["mappings"]
    assert demo_client.get(f"{DEMO}v1.0/concepts/Apple/").get_json()["names"][0]["name"] == "Apple"

    live = {c["id"]: c for c in all_pages(demo_client, f"{DEMO}?includeConcepts=true")}
    assert live["Apple"]["names"][0]["name"] == "Green apple"
    assert "Corn" not in live and "Pear" not in live  # retired and deleted are hidden by default
    assert demo_client.get(f"{DEMO}concepts/Corn/").status_code == 404

    # Without includeDeleted (as OCL clients ask) a diff has no tombstones: they cannot read them.
    without = all_pages(demo_client, f"{DEMO}?includeConcepts=true&includeMappings=true"
                                     f"&includeRetired=true&updatedSince={since}")
    assert "Corn" not in {item["id"] for item in without}
    assert not any(item.get("deleted") for item in without)
    changed = all_pages(demo_client, f"{DEMO}?includeConcepts=true&includeMappings=true"
                                     f"&includeRetired=true&includeDeleted=true&updatedSince={since}")
    by_id = {item["id"]: item for item in changed}
    # updatedSince is inclusive: the item stamped exactly `since` comes back too.
    assert set(by_id) - {before_item["id"] for before_item in before["mappings"]} >= {
        "Apple", "Pear", "Corn", "Kiwi"}
    assert by_id["Pear"]["retired"] is True
    assert by_id["Corn"] == {"type": "Concept", "id": "Corn", "deleted": True,
                             "url": f"{DEMO}concepts/Corn/", "version": by_id["Corn"]["version"],
                             "updated_on": by_id["Corn"]["updated_on"]}
    strictly_after = [item for item in changed if item["updated_on"] > since]
    assert sorted(item["id"] for item in strictly_after) == ["Apple", "Corn", "Kiwi", "Pear"]


def test_unretire_and_recreate_after_delete(client: Any, source: Any) -> None:
    url = source()
    assert client.post(f"{url}concepts/", json=concept("1"), headers=ADMIN).status_code == 201
    assert client.delete(f"{url}concepts/1/", headers=ADMIN).status_code == 204
    assert client.get(f"{url}concepts/1/").get_json()["retired"] is True
    answer = client.put(f"{url}concepts/1/", json={"retired": False}, headers=ADMIN)
    assert answer.status_code == 200 and answer.get_json()["retired"] is False
    assert client.delete(f"{url}concepts/1/?hard=true", headers=ADMIN).status_code == 204
    assert client.post(f"{url}concepts/", json=concept("1"), headers=ADMIN).status_code == 201
    assert client.post(f"{url}concepts/", json=concept("1"), headers=ADMIN).status_code == 409


def test_paging_while_another_client_writes_skips_nothing(client: Any, source: Any) -> None:
    url = source()
    ids = [f"C{n:03d}" for n in range(60)]
    for concept_id in ids:
        assert client.post(f"{url}concepts/", json=concept(concept_id), headers=ADMIN).status_code == 201
    seen: set[str] = set()
    page_url = f"{url}?includeConcepts=true&limit=7"
    writes = 0
    while page_url:
        answer = client.get(page_url)
        seen.update(item["id"] for item in answer.get_json()["concepts"])
        # Another curator keeps changing items, some already seen and some not yet.
        for concept_id in (ids[writes % 60], ids[(writes * 7 + 3) % 60]):
            client.patch(f"{url}concepts/{concept_id}/", headers=ADMIN,
                         json={"extras": {"edit": writes}})
        writes += 1
        page_url = answer.headers.get("next")
        assert writes < 100
    assert seen == set(ids)


def test_paging_headers_and_link(client: Any, source: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url = source()
    start = datetime(2030, 1, 1, tzinfo=UTC)
    for n in range(5):  # each in a second of its own: a first page ends between two seconds
        monkeypatch.setattr(timeutil, "now", lambda n=n: start + timedelta(seconds=n))
        client.post(f"{url}concepts/", json=concept(str(n)), headers=ADMIN)
    monkeypatch.undo()
    answer = client.get(f"{url}?includeConcepts=true&limit=2")
    assert answer.headers["num_found"] == "5" and answer.headers["num_returned"] == "2"
    assert answer.headers["next"].startswith("http://localhost/orgs/TestOrg/sources/TestSource/?")
    assert answer.headers["Link"] == f'<{answer.headers["next"]}>; rel="next"'
    assert len(all_pages(client, f"{url}?includeConcepts=true&limit=2")) == 5
    last = client.get(f"{url}?includeConcepts=true&limit=5")
    assert "next" not in last.headers
    default = client.get(f"{url}?includeConcepts=true&limit=0")
    assert default.headers["num_returned"] == "5"


def test_page_sizes_real_clients_send_are_never_a_400(client: Any, source: Any) -> None:
    url = source()
    for n in range(3):
        client.post(f"{url}concepts/", json=concept(str(n)), headers=ADMIN)
    # The OpenMRS module asks for 100000 and never pages; more than the most is served as the most.
    for query in ("?includeConcepts=true&limit=100000", "?includeConcepts=true&limit=100001",
                  "concepts/?limit=100000", "concepts/?limit=-1", "concepts/?page=0",
                  "versions/?limit=100000", "?includeConcepts=true&includeRetired=&limit=",
                  "?includeConcepts=true&verbose=true&sortAsc=&brief=false&includeSummary=true"):
        answer = client.get(f"{url}{query}")
        assert answer.status_code == 200, (query, answer.get_json())
    assert client.get("/orgs/?limit=100000").headers["num_returned"] == "1"


def test_bad_diff_parameters_are_400_with_a_message(client: Any, source: Any) -> None:
    url = source()
    bad_time = client.get(f"{url}?includeConcepts=true&updatedSince=yesterday")
    assert bad_time.status_code == 400
    assert "updatedSince" in bad_time.get_json()["message"]
    assert client.get(f"{url}?includeConcepts=true&cursor=garbage").status_code == 400
    zoned = client.get(f"{url}?includeConcepts=true&updatedSince=2026-01-01T02:00:00%2B02:00")
    assert zoned.status_code == 200
    zoneless = client.get(f"{url}?includeConcepts=true&updatedSince=2026-01-01T00:00:00")
    assert zoneless.status_code == 200


def test_every_time_parameter_answers_a_bad_time_alike(client: Any, source: Any) -> None:
    url = source()
    client.post(f"{url}concepts/", json=concept("1"), headers=ADMIN)
    diff_example = " (e.g. 2026-01-01T00:00:00Z)"
    for query, name, example in (
            (f"{url}concepts/?updatedSince=", "updatedSince", ""),
            ("/mappings/?updatedSince=", "updatedSince", ""),
            (f"{url}versions/?updatedSince=", "updatedSince", ""),
            ("/repos/?updatedSince=", "updatedSince", ""),
            (f"{url}HEAD/?includeMappings=true&updatedSince=", "updatedSince", diff_example),
            ("/user/tasks/?start_date=", "start_date", "")):
        answer = client.get(f"{query}2026-13-01", headers=ADMIN)
        assert (answer.status_code, answer.get_json()) == (400, {
            "code": 400, "status": "Bad Request",
            "message": f"{name} '2026-13-01' is not an ISO 8601 time{example}.",
            "errors": {name: ["Not an ISO 8601 time."]}}), query
        assert client.get(f"{query}2026-01-01T02:00:00%2B02:00", headers=ADMIN).status_code == 200
    # another bad argument is answered first, as webargs answers it
    both = client.get(f"{url}concepts/?limit=many&updatedSince=never").get_json()
    assert both["errors"] == {"query": {"limit": ["Not a valid integer."]}}
    # the repository alone, without its items, is not narrowed by a time: none is read
    assert client.get(f"{url}?updatedSince=never").status_code == 200


def test_flags_parse_as_real_booleans(client: Any, source: Any) -> None:
    url = source()
    client.post(f"{url}concepts/", json=concept("1"), headers=ADMIN)
    body = client.get(f"{url}?includeConcepts=false&includeMappings=false").get_json()
    assert "concepts" not in body
    body = client.get(f"{url}?includeConcepts=True").get_json()
    assert len(body["concepts"]) == 1


def test_unknown_owner_source_version_concept_are_404(client: Any, source: Any) -> None:
    url = source()
    for missing in ("/orgs/Nope/sources/", "/orgs/Nope/sources/X/", "/orgs/TestOrg/sources/Nope/",
                    f"{url}v9/", f"{url}concepts/nope/", f"{url}v9/concepts/", f"{url}latest/",
                    "/users/nobody/sources/"):
        answer = client.get(missing)
        assert answer.status_code == 404, missing
        assert answer.get_json()["code"] == 404 and answer.get_json()["message"]


def test_checksum_changes_with_content_and_matches_equal_content(client: Any, source: Any) -> None:
    first, second = source("A", "S"), source("B", "S")
    for url in (first, second):
        assert client.get(url).get_json()["checksums"]["content"] == "0" * 64
    client.post(f"{first}concepts/", json=concept("1"), headers=ADMIN)
    one = client.get(first).get_json()["checksums"]["content"]
    assert one != client.get(second).get_json()["checksums"]["content"]
    client.post(f"{first}versions/", json={"id": "v1"}, headers=ADMIN)
    assert client.get(f"{first}v1/").get_json()["checksums"]["content"] == one
    client.patch(f"{first}concepts/1/", json={"datatype": "Coded"}, headers=ADMIN)
    changed = client.get(first).get_json()["checksums"]["content"]
    assert changed != one
    assert client.get(f"{first}v1/").get_json()["checksums"]["content"] == one
    # Equal content means equal (url, version) pairs: a version cut now equals HEAD.
    client.post(f"{first}versions/", json={"id": "v2"}, headers=ADMIN)
    assert client.get(f"{first}v2/").get_json()["checksums"]["content"] == changed


def test_same_content_twice_is_unchanged_and_writes_no_version(client: Any, source: Any) -> None:
    url = source()
    created = client.post(f"{url}concepts/", json=concept("1"), headers=ADMIN).get_json()
    again = client.put(f"{url}concepts/1/", json={"names": created["names"]}, headers=ADMIN)
    assert again.get_json()["version"] == created["version"]


def test_versions_list_newest_first_latest_and_conflict(client: Any, source: Any) -> None:
    url = source()
    client.post(f"{url}versions/", json={"id": "v1", "released": "True"}, headers=ADMIN)
    client.post(f"{url}versions/", json={"id": "v2", "released": False}, headers=ADMIN)
    assert [v["id"] for v in client.get(f"{url}versions/").get_json()] == ["v2", "v1"]
    released = client.get(f"{url}versions/?released=true&limit=1").get_json()
    assert [v["id"] for v in released] == ["v1"]
    assert client.get(f"{url}latest/").get_json()["id"] == "v1"
    assert client.post(f"{url}versions/", json={"id": "v1"}, headers=ADMIN).status_code == 409
    client.patch(f"{url}v2/", json={"released": True}, headers=ADMIN)
    assert client.get(f"{url}latest/").get_json()["id"] == "v2"
    assert client.delete(f"{url}v2/", headers=ADMIN).status_code == 204
    assert client.get(f"{url}v2/").status_code == 404
    assert client.put(f"{url}HEAD/", json={"description": "x"}, headers=ADMIN).status_code == 405


def test_mappings_get_next_free_number_and_validate_targets(client: Any, source: Any) -> None:
    url = source()
    for concept_id in ("A", "B"):
        client.post(f"{url}concepts/", json=concept(concept_id), headers=ADMIN)
    first = client.post(f"{url}mappings/", headers=ADMIN,
                        json=mapping(f"{url}concepts/A/", f"{url}concepts/B/"))
    assert first.status_code == 201 and first.get_json()["id"] == "1"
    assert first.get_json()["to_concept_code"] == "B"
    external = client.post(f"{url}mappings/", headers=ADMIN, json={
        "map_type": "SAME-AS", "from_concept_url": f"{url}concepts/A/",
        "to_source_url": "/orgs/WHO/sources/ICD-10/", "to_concept_code": "D62"})
    assert external.status_code == 201 and external.get_json()["id"] == "2"
    missing = client.post(f"{url}mappings/", headers=ADMIN,
                          json=mapping(f"{url}concepts/A/", f"{url}concepts/Z/"))
    assert missing.status_code == 400 and "does not exist" in missing.get_json()["message"]
    no_target = client.post(f"{url}mappings/", headers=ADMIN,
                            json={"map_type": "X", "from_concept_url": f"{url}concepts/A/"})
    assert no_target.status_code == 422 and "to_concept_url" in no_target.get_json()["errors"]["json"]


def test_validation_errors_are_field_level_422(client: Any, source: Any) -> None:
    url = source()
    answer = client.post(f"{url}concepts/", json={"id": "1", "names": []}, headers=ADMIN)
    assert answer.status_code == 422
    body = answer.get_json()
    assert body["code"] == 422 and body["status"] == "Unprocessable Entity"
    assert set(body["errors"]["json"]) >= {"concept_class", "names"}


def test_compress_header_returns_a_zip_with_export_json(demo_client: Any) -> None:
    answer = demo_client.get(f"{DEMO}v1.0/?includeConcepts=true&includeMappings=true",
                             headers={"Compress": "true"})
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        body = json.loads(archive.read("export.json"))
    assert len(body["concepts"]) == 23 and len(body["mappings"]) == 22


def test_errors_are_json_never_html(client: Any) -> None:
    for answer in (client.get("/no/such/route/"), client.post("/orgs/", data="not json",
                                                              headers=ADMIN),
                   client.delete("/orgs/")):
        assert answer.is_json and {"code", "status", "message"} <= set(answer.get_json())


def test_openapi_document_is_complete(client: Any) -> None:
    spec = client.get("/api/openapi.json").get_json()
    paths = spec["paths"]
    assert "/orgs/{owner_id}/sources/{source_id}/{version_id}/" not in paths  # owner kind is a param
    assert "/{owner_kind}/{owner_id}/sources/{source_id}/{version_id}/" in paths
    assert "/user/sources/{source_id}/concepts/{item_id}/" in paths
    get_source = paths["/{owner_kind}/{owner_id}/sources/{source_id}/"]["get"]
    assert {p["name"] for p in get_source["parameters"]} >= {"updatedSince", "limit", "cursor"}
    assert "404" in get_source["responses"] and "Token" in spec["components"]["securitySchemes"]
    assert client.get("/api/docs").status_code == 200


def test_version_url_of_every_item_version_resolves(client: Any, source: Any) -> None:
    url = source()
    first = client.post(f"{url}concepts/", json=concept("1", "One"), headers=ADMIN).get_json()
    second = client.patch(f"{url}concepts/1/", json={"datatype": "Coded"}, headers=ADMIN).get_json()
    assert first["version_url"] != second["version_url"]
    old = client.get(first["version_url"])
    assert old.status_code == 200 and old.get_json()["datatype"] == "N/A"
    assert client.get(second["version_url"]).get_json()["datatype"] == "Coded"
    assert client.get(f"{url}concepts/1/999/").status_code == 404


def test_num_found_matches_the_items_listed_at_head_and_in_versions(client: Any, source: Any) -> None:
    """num_found comes from counts kept with every write (and cut into versions) where the
    backend keeps them: it must equal what paging through returns, in every state."""
    url = source()
    for number in range(6):
        client.post(f"{url}concepts/", json=concept(str(number)), headers=ADMIN)
    client.post(f"{url}mappings/", json=mapping(f"{url}concepts/0/", f"{url}concepts/1/"),
                headers=ADMIN)
    client.delete(f"{url}concepts/2/", headers=ADMIN)  # retired
    client.delete(f"{url}concepts/3/?hard=true", headers=ADMIN)  # a tombstone
    client.post(f"{url}versions/", json={"id": "v1"}, headers=ADMIN)
    client.post(f"{url}concepts/", json=concept("later"), headers=ADMIN)
    for target, expected in (("", 6), ("v1/", 5)):
        for flags, wanted in (("", expected - 1), ("&includeRetired=true", expected)):
            listed = client.get(f"{url}{target}concepts/?limit=2{flags}")
            assert int(listed.headers["num_found"]) == wanted, (target, flags)
            diff = client.get(f"{url}{target}?includeConcepts=true&includeMappings=true"
                              f"&limit=500{flags}")
            body = diff.get_json()
            assert int(diff.headers["num_found"]) == len(body["concepts"]) + len(body["mappings"])
