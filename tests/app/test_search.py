"""OCL's search parameters on concept and mapping lists (of a source, of a version, and across
every source the caller may see): each one given narrows the list, none is ignored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ADMIN, concept, mapping

S = "/orgs/O/sources/S/"
T = "/orgs/O/sources/T/"
P = "/users/admin/sources/Private/"


@pytest.fixture
def catalogue(client: Any, source: Callable[..., str]) -> Any:
    """Two public sources and a private one, concepts of several classes, datatypes and locales,
    and mappings between them."""
    source("O", "S")
    source("O", "T")
    assert client.post("/users/admin/sources/", json={"id": "Private", "public_access": "None"},
                       headers=ADMIN).status_code == 201
    for url, concept_id, name, concept_class, datatype, locale in (
            (S, "1", "Malaria", "Diagnosis", "N/A", "en"),
            (S, "2", "Fever", "Symptom", "N/A", "en"),
            (S, "3", "Paludisme", "Diagnosis", "Coded", "fr"),
            (S, "4", "Quinine", "Drug", "N/A", "en"),
            (T, "1", "Malaria (T)", "Diagnosis", "N/A", "en"),
            (P, "9", "Malaria secret", "Diagnosis", "N/A", "en")):
        payload = concept(concept_id, name, concept_class=concept_class, datatype=datatype)
        payload["names"][0]["locale"] = locale
        assert client.post(f"{url}concepts/", json=payload, headers=ADMIN).status_code == 201
    for number, (from_url, to_url, map_type) in enumerate((
            (f"{S}concepts/1/", f"{S}concepts/3/", "SAME-AS"),
            (f"{S}concepts/2/", f"{S}concepts/1/", "NARROWER-THAN"),
            (f"{S}concepts/4/", f"{T}concepts/1/", "SAME-AS")), start=1):
        assert client.post(f"{S}mappings/", json=mapping(from_url, to_url, map_type, id=str(number)),
                           headers=ADMIN).status_code == 201
    client.delete(f"{S}concepts/2/", headers=ADMIN)  # retired
    return client


def ids(client: Any, url: str, **params: str) -> list[str]:
    answer = client.get(url, query_string=params)
    assert answer.status_code == 200, answer.get_json()
    found = [item["id"] for item in answer.get_json()]
    assert int(answer.headers["num_found"]) == len(found)
    return found


def test_concept_filters_of_a_source(catalogue: Any) -> None:
    concepts = f"{S}concepts/"
    assert ids(catalogue, concepts) == ["1", "3", "4"]
    assert ids(catalogue, concepts, includeRetired="true") == ["1", "2", "3", "4"]
    assert ids(catalogue, concepts, q="MAL") == ["1"]
    assert ids(catalogue, concepts, q="palud") == ["3"]
    assert ids(catalogue, concepts, conceptClass="Diagnosis") == ["1", "3"]
    assert ids(catalogue, concepts, conceptClass="Drug,Diagnosis", datatype="N/A") == ["1", "4"]
    assert ids(catalogue, concepts, locale="fr") == ["3"]
    assert ids(catalogue, concepts, q="fev", conceptClass="Symptom", includeRetired="true") == ["2"]
    assert ids(catalogue, concepts, conceptClass="") == ["1", "3", "4"]  # empty means absent


def test_mapping_filters_of_a_source(catalogue: Any) -> None:
    mappings = f"{S}mappings/"
    assert ids(catalogue, mappings, mapType="SAME-AS") == ["1", "3"]
    assert ids(catalogue, mappings, fromConcept="1") == ["1"]
    assert ids(catalogue, mappings, fromConcept=f"{S}concepts/2/") == ["2"]
    assert ids(catalogue, mappings, toConcept="1") == ["2", "3"]
    assert ids(catalogue, mappings, toConceptSource="T") == ["3"]
    assert ids(catalogue, mappings, toConceptSource="S", toConcept="1") == ["2"]
    assert ids(catalogue, mappings, fromConceptOwner="O", mapType="NARROWER-THAN") == ["2"]
    assert ids(catalogue, mappings, q="narrower") == ["2"]


def test_filters_at_a_version_and_with_mappings(catalogue: Any) -> None:
    assert catalogue.post(f"{S}versions/", json={"id": "v1"}, headers=ADMIN).status_code == 201
    catalogue.patch(f"{S}concepts/4/", json={"concept_class": "Diagnosis"}, headers=ADMIN)
    assert ids(catalogue, f"{S}v1/concepts/", conceptClass="Diagnosis") == ["1", "3"]
    assert ids(catalogue, f"{S}concepts/", conceptClass="Diagnosis") == ["1", "3", "4"]
    listed = catalogue.get(f"{S}concepts/", query_string={"q": "malaria",
                                                          "includeInverseMappings": "true"})
    assert [m["id"] for m in listed.get_json()[0]["mappings"]] == ["1", "2"]


def test_global_search_sees_what_the_caller_may_see(catalogue: Any, make_user: Any) -> None:
    assert ids(catalogue, "/concepts/", q="malaria") == ["1", "1"]  # S and T; not the private one
    found = catalogue.get("/concepts/", query_string={"q": "malaria"}).get_json()
    assert sorted(item["url"] for item in found) == [f"{S}concepts/1/", f"{T}concepts/1/"]
    admin_sees = catalogue.get("/concepts/", query_string={"q": "malaria"}, headers=ADMIN)
    assert len(admin_sees.get_json()) == 3
    assert ids(catalogue, "/concepts/", q="malaria", owner="admin", ownerType="User") == []
    assert ids(catalogue, "/mappings/", toConceptSource="T") == ["3"]
    assert ids(catalogue, "/concepts/", conceptClass="Drug", limit="1") == ["4"]
    stranger = make_user("stranger")
    assert len(catalogue.get("/concepts/", query_string={"q": "secret"},
                             headers=stranger).get_json()) == 0
