"""The browsing service the console reads through: rights as in the API, counts, changes since the
last release, concept search, mappings both ways and history."""

from __future__ import annotations

from typing import Any

from app.domain.accounts import ANONYMOUS, Caller, Owner
from app.domain.browse import ItemMatch
from tests.conftest import ADMIN, concept, mapping

BASE = "/orgs/TestOrg/sources/TestSource/"
SECRET = "/orgs/Secret/sources/Hidden/"


def domain_of(app: Any) -> Any:
    return app.extensions["termsync"]


def post(client: Any, url: str, payload: dict[str, Any], status: int = 201) -> Any:
    answer = client.post(url, json=payload, headers=ADMIN)
    assert answer.status_code == status, answer.get_json()
    return answer.get_json()


def fill(client: Any, source: Any) -> None:
    """TestOrg/TestSource (public) and Secret/Hidden (a private org's private source)."""
    source()
    post(client, "/orgs/", {"id": "Secret", "public_access": "None"})
    post(client, "/orgs/Secret/sources/", {"id": "Hidden", "public_access": "None",
                                          "name": "Hidden terms"})
    for concept_id, concept_class in (("A", "Diagnosis"), ("B", "Symptom"), ("C", "Diagnosis")):
        post(client, f"{BASE}concepts/", concept(concept_id, f"Name of {concept_id}",
                                                 concept_class=concept_class))
    post(client, f"{BASE}mappings/", mapping(f"{BASE}concepts/A/", f"{BASE}concepts/B/"))
    post(client, f"{SECRET}concepts/", concept("X"))
    post(client, f"{SECRET}mappings/", mapping(f"{SECRET}concepts/X/", f"{BASE}concepts/A/"))


def test_searches_show_what_the_api_lists(app: Any, client: Any, source: Any,
                                          make_user: Any) -> None:
    fill(client, source)
    browse = domain_of(app).browse
    member = Caller(username="ann", orgs=frozenset({"Secret"}))
    assert [o["_id"] for o in browse.search_orgs(ANONYMOUS, None, 0, 10)[0]] == ["TestOrg"]
    assert browse.search_orgs(ANONYMOUS, "secret", 0, 10) == ([], 0)
    assert [o["_id"] for o in browse.search_orgs(member, "SECRET", 0, 10)[0]] == ["Secret"]
    assert browse.search_sources(ANONYMOUS, None, "hidden", 0, 10) == ([], 0)
    assert [s.id for s in browse.search_sources(member, None, "hidden", 0, 10)[0]] == ["Hidden"]
    owner = Owner("Organization", "TestOrg")
    assert [s.id for s in browse.search_sources(ANONYMOUS, owner, None, 0, 10)[0]] == \
        ["TestSource"]
    assert browse.search_sources(ANONYMOUS, owner, "hidden", 0, 10) == ([], 0)


def test_summary_and_changes_since_the_last_release(app: Any, client: Any, source: Any) -> None:
    fill(client, source)
    domain = domain_of(app)
    stored = domain.content.find_repo(BASE)
    summary = domain.browse.source_summary(stored)
    assert (summary.concepts, summary.retired_concepts, summary.mappings) == (3, 0, 1)
    assert summary.checksum == client.get(BASE).get_json()["checksums"]["content"]
    changes = domain.browse.changes_since_release(stored)
    assert changes.release is None and changes.counts["created"] == 4 and changes.total == 4

    post(client, f"{BASE}versions/", {"id": "v1", "released": True})
    assert client.patch(f"{BASE}concepts/A/", json={"datatype": "Text"},
                        headers=ADMIN).status_code == 200
    assert client.delete(f"{BASE}concepts/B/", headers=ADMIN).status_code == 204  # retire
    assert client.delete(f"{BASE}concepts/C/?hard=true", headers=ADMIN).status_code == 204
    post(client, f"{BASE}concepts/", concept("D"))
    stored = domain.content.find_repo(BASE)
    changes = domain.browse.changes_since_release(stored)
    assert changes.release.id == "v1"
    assert changes.counts == {"created": 1, "updated": 1, "retired": 1, "deleted": 1}
    summary = domain.browse.source_summary(stored)
    assert (summary.concepts, summary.retired_concepts) == (3, 1)


def test_concepts_found_by_text_class_and_datatype_at_a_version(app: Any, client: Any,
                                                                 source: Any) -> None:
    fill(client, source)
    domain = domain_of(app)
    stored = domain.content.find_repo(BASE)
    head = domain.content.head_version(stored)
    browse = domain.browse

    def ids(version: Any, match: ItemMatch, **options: Any) -> tuple[list[str], int, bool]:
        page = browse.find_concepts(stored, version, match, options.get("retired", False),
                                    options.get("skip", 0), options.get("limit", 10),
                                    options.get("count_limit", 1000))
        return [item["id"] for item in page.items], page.num_found, page.more

    assert ids(head, ItemMatch()) == (["A", "B", "C"], 3, False)
    assert ids(head, ItemMatch(concept_class="Diagnosis")) == (["A", "C"], 2, False)
    assert ids(head, ItemMatch(text="name of b")) == (["B"], 1, False)
    assert ids(head, ItemMatch(text="name"), limit=1, count_limit=1) == (["A"], 1, True)
    version = post(client, f"{BASE}versions/", {"id": "v1"})
    client.delete(f"{BASE}concepts/A/", headers=ADMIN)  # retired at HEAD, not in v1
    v1 = domain.content.get_version(stored, version["id"])
    assert ids(head, ItemMatch(concept_class="Diagnosis")) == (["C"], 1, False)
    assert ids(head, ItemMatch(concept_class="Diagnosis"), retired=True) == (["A", "C"], 2, False)
    assert ids(v1, ItemMatch(concept_class="Diagnosis", datatype="N/A")) == (["A", "C"], 2, False)


def test_mappings_both_ways_only_from_sources_the_caller_sees(app: Any, client: Any,
                                                             source: Any) -> None:
    fill(client, source)
    domain = domain_of(app)
    stored = domain.content.find_repo(BASE)
    head = domain.content.head_version(stored)
    concept_a = f"{BASE}concepts/A/"

    def links(caller: Caller) -> tuple[list[str], list[str]]:
        found = domain.browse.concept_links(caller, stored, head, concept_a)
        return ([f"{link.source.id}:{link.item['id']}" for link in found.outbound],
                [f"{link.source.id}:{link.item['id']}" for link in found.inbound])

    assert links(ANONYMOUS) == (["TestSource:1"], [])
    assert links(Caller(username="bob")) == (["TestSource:1"], [])
    assert links(Caller(username="ann", orgs=frozenset({"Secret"}))) == (["TestSource:1"],
                                                                         ["Hidden:1"])
    assert links(Caller(username="root", is_admin=True))[1] == ["Hidden:1"]


def test_history_names_the_versions_holding_each_item_version(app: Any, client: Any,
                                                              source: Any) -> None:
    fill(client, source)
    domain = domain_of(app)
    post(client, f"{BASE}versions/", {"id": "v1"})
    post(client, f"{BASE}versions/", {"id": "v2"})
    assert client.patch(f"{BASE}concepts/A/", json={"datatype": "Text"},
                        headers=ADMIN).status_code == 200
    stored = domain.content.find_repo(BASE)
    history = domain.browse.item_history(stored, f"{BASE}concepts/A/")
    assert [entry.versions for entry in history] == [["HEAD"], ["v2", "v1"]]
    assert history[0].item["data"]["datatype"] == "Text"
