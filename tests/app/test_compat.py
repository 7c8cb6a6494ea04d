"""What OCL's clients need of the API, through the Flask test client: slash-less URLs, uuids,
a concept's names/descriptions/extras/history/mappings, repository lists, members, counts, and
the `Date` of diffs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from app import timeutil
from app.api.common import DATE_CARRIER
from app.config import ConfigError, load_config
from tests.conftest import ADMIN, app_on_fresh_database, concept

DEMO = "/orgs/DemoOrg/sources/DemoSource/"


def test_slashless_get_and_head_are_answered_as_is_other_methods_308(demo_client: Any) -> None:
    for path in (DEMO.rstrip("/"), f"{DEMO}versions", f"{DEMO}v1.0", f"{DEMO}concepts/Apple",
                 "/orgs/DemoOrg", f"{DEMO}v1.0/export"):
        slashed = demo_client.get(path + "/")
        answer = demo_client.get(path)
        assert answer.status_code == slashed.status_code, path
        assert answer.get_data() == slashed.get_data(), path
        assert demo_client.head(path).status_code == slashed.status_code, path
    compressed = demo_client.get(f"{DEMO.rstrip('/')}?includeConcepts=true&limit=100000",
                                 headers={"Compress": "true"})
    assert compressed.status_code == 200 and compressed.mimetype == "application/zip"
    moved = demo_client.post(f"{DEMO}concepts?x=1", json=concept("Kiwi"), headers=ADMIN)
    assert moved.status_code == 308 and moved.headers["Location"] == f"{DEMO}concepts/?x=1"
    assert demo_client.get(f"{DEMO}concepts/Kiwi/").status_code == 404  # nothing was written


def test_uuids_name_item_versions_and_stay_with_a_name(client: Any, source: Any) -> None:
    first, second = source("Org", "One"), source("Org", "Two")
    payload = concept("1", descriptions=[{"description": "A fruit", "locale": "en"}])
    one = client.post(f"{first}concepts/", json=payload, headers=ADMIN).get_json()
    two = client.post(f"{second}concepts/", json=payload, headers=ADMIN).get_json()
    assert one["uuid"] != two["uuid"]  # unique across the server, not per source
    assert one["names"][0]["uuid"] != two["names"][0]["uuid"]
    names = one["names"] + [{"name": "Other", "locale": "fr", "locale_preferred": False,
                             "name_type": None}]
    changed = client.patch(f"{first}concepts/1/", json={"names": names, "datatype": "Text"},
                           headers=ADMIN).get_json()
    assert changed["uuid"] != one["uuid"]  # a new item version
    assert changed["names"][0]["uuid"] == one["names"][0]["uuid"]  # the same name
    assert changed["descriptions"][0]["uuid"] == one["descriptions"][0]["uuid"]
    renamed = client.patch(f"{first}concepts/1/", headers=ADMIN, json={"names": [
        dict(one["names"][0], name="Renamed")]}).get_json()
    assert renamed["names"][0]["uuid"] != one["names"][0]["uuid"]
    assert len({*(n["uuid"] for n in changed["names"])}) == 2


def test_concept_names_descriptions_extras_and_history(client: Any, source: Any) -> None:
    url = source()
    payload = concept("1", descriptions=[{"description": "Text", "locale": "en"}],
                      extras={"units": "mg"})
    client.post(f"{url}concepts/", json=payload, headers=ADMIN)
    client.patch(f"{url}concepts/1/", json={"datatype": "Numeric"}, headers=ADMIN)
    names = client.get(f"{url}concepts/1/names/")
    assert names.headers["num_found"] == "1" and names.get_json()[0]["name"] == "Concept 1"
    assert client.get(f"{url}concepts/1/descriptions/").get_json()[0]["description"] == "Text"
    assert client.get(f"{url}concepts/1/extras/").get_json() == {"units": "mg"}
    history = client.get(f"{url}concepts/1/versions/")
    assert history.headers["num_found"] == "2"
    assert [v["datatype"] for v in history.get_json()] == ["Numeric", "N/A"]
    assert client.get(f"{url}concepts/2/versions/").status_code == 404
    client.delete(f"{url}concepts/1/?hard=true", headers=ADMIN)
    assert client.get(f"{url}concepts/1/versions/").status_code == 404


def test_include_mappings_and_inverse_mappings(demo_client: Any) -> None:
    fruit = demo_client.get(f"{DEMO}concepts/Fruit/?includeMappings=true").get_json()
    assert fruit["mappings"] and all(m["from_concept_code"] == "Fruit" for m in fruit["mappings"])
    apple = demo_client.get(f"{DEMO}concepts/Apple/?includeMappings=true").get_json()
    assert apple["mappings"] == []  # none from Apple
    inverse = demo_client.get(f"{DEMO}concepts/Apple/?includeInverseMappings=true").get_json()
    assert [m["from_concept_code"] for m in inverse["mappings"]] == ["Fruit"]
    assert "mappings" not in demo_client.get(f"{DEMO}concepts/Apple/").get_json()
    released = demo_client.get(f"{DEMO}v1.0/concepts/Fruit/?includeMappings=true").get_json()
    assert len(released["mappings"]) == len(fruit["mappings"])
    mapping_id = fruit["mappings"][0]["id"]
    demo_client.delete(f"{DEMO}mappings/{mapping_id}/", headers=ADMIN)  # retire
    live = demo_client.get(f"{DEMO}concepts/Fruit/?includeMappings=true").get_json()
    assert mapping_id not in [m["id"] for m in live["mappings"]]
    with_retired = demo_client.get(
        f"{DEMO}concepts/Fruit/?includeMappings=true&includeRetired=true").get_json()
    assert mapping_id in [m["id"] for m in with_retired["mappings"]]


def test_repository_lists(client: Any, source: Any, make_user: Any) -> None:
    source("Alpha", "Dictionary")
    source("Beta", "Other", public_access="None")
    alice = make_user("alice")
    assert client.post("/user/sources/", json={"id": "Mine", "name": "Alice's dictionary"},
                       headers=alice).status_code == 201

    def ids(path: str, headers: dict[str, str] | None = None) -> list[str]:
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200, (path, answer.get_json())
        return [repo["id"] for repo in answer.get_json()]

    assert ids("/repos/") == ["Dictionary", "Mine"]  # Beta's source is private
    assert ids("/repos/", ADMIN) == ["Dictionary", "Other", "Mine"]
    assert ids("/sources/?q=DICT") == ["Dictionary", "Mine"]  # id or name, any case
    assert ids("/repos/?owner=alice") == ["Mine"] == ids("/repos/?ownerType=User")
    assert ids("/repos/?ownerType=orgs") == ["Dictionary"]
    assert ids("/repos/?repoType=Source&limit=1") == ["Dictionary"]
    assert ids("/repos/?repoType=Collection") == []
    assert ids("/orgs/Alpha/repos/") == ["Dictionary"] == ids("/orgs/Alpha/sources/")
    assert ids("/users/alice/repos/") == ["Mine"] == ids("/user/repos/", alice)
    assert ids("/repos/?updatedSince=2999-01-01") == []
    assert client.get("/repos/?updatedSince=whenever").status_code == 400
    assert ids("/orgs/Beta/repos/") == []  # a public org; its one source is private
    assert client.get("/orgs/Nobody/repos/").status_code == 404


def test_members_user_orgs_and_counts(client: Any, source: Any, make_user: Any) -> None:
    source("Alpha", "Public")
    source("Alpha", "Private", public_access="None")
    alice = make_user("alice", orgs=("Alpha",))
    make_user("bob")
    members = client.get("/orgs/Alpha/members/")
    assert [m["username"] for m in members.get_json()] == ["admin", "alice"]
    assert client.get("/orgs/Alpha/members/alice/").status_code == 204
    assert client.get("/orgs/Alpha/members/bob/").status_code == 404
    org = client.get("/orgs/Alpha/").get_json()
    assert org["members"] == 2 and org["public_sources"] == 1 and org["public_collections"] == 0
    assert client.get("/orgs/?q=alp").get_json()[0]["members"] == 2
    assert [o["id"] for o in client.get("/users/alice/orgs/").get_json()] == ["Alpha"]
    assert [o["id"] for o in client.get("/user/orgs/", headers=alice).get_json()] == ["Alpha"]
    user = client.get("/users/alice/", headers=alice).get_json()
    assert user["orgs"] == user["organizations"] == 1 and user["public_sources"] == 0
    assert client.delete("/orgs/Alpha/members/alice/").status_code == 401
    bob = make_user("carol")
    assert client.delete("/orgs/Alpha/members/alice/", headers=bob).status_code == 403
    assert client.delete("/orgs/Alpha/members/alice/", headers=alice).status_code == 204
    assert client.delete("/orgs/Alpha/members/alice/", headers=ADMIN).status_code == 404
    assert client.get("/users/alice/orgs/").get_json() == []


def test_summary_and_versions_updated_since(demo_client: Any) -> None:
    summary = demo_client.get(f"{DEMO}?includeSummary=true").get_json()["summary"]
    assert summary == {"active_concepts": 23, "active_mappings": 22, "versions": 2}
    assert demo_client.get(f"{DEMO}v1.0/?includeSummary=true").get_json()["summary"] == {
        "active_concepts": 23, "active_mappings": 22}
    assert len(demo_client.get(f"{DEMO}versions/?updatedSince=2000-01-01").get_json()) == 2
    assert demo_client.get(f"{DEMO}versions/?updatedSince=2999-01-01").get_json() == []


class Clock:
    """Server time under the test's hand."""

    def __init__(self) -> None:
        self.moment = datetime(2030, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moment = Clock()
    monkeypatch.setattr(timeutil, "now", moment)
    return moment


def test_diff_date_is_when_the_answer_is_complete_up_to(client: Any, source: Any,
                                                        clock: Clock) -> None:
    url = source()
    stamps = []
    for n in range(4):
        clock.moment += timedelta(seconds=7)
        stamps.append(clock.moment)
        client.post(f"{url}concepts/", json=concept(str(n)), headers=ADMIN)
    clock.moment += timedelta(minutes=1)
    read_at = clock.moment
    whole = client.get(f"{url}?includeConcepts=true")
    # complete: a second before the moment the data was read (writes stamped just before it
    # may still be in flight), in HTTP's second precision
    assert parsedate_to_datetime(whole.headers["Date"]) == (read_at - timedelta(seconds=1)).replace(
        microsecond=0)
    for date in (whole.headers["Date"], whole.headers[DATE_CARRIER]):
        assert date == whole.headers["Date"]  # the same value for the proxy to send on
    cut = client.get(f"{url}?includeConcepts=true&limit=2")
    assert cut.headers["num_returned"] == "2" and "next" in cut.headers
    # more matched than were sent: complete up to the second the rest begins at
    assert parsedate_to_datetime(cut.headers["Date"]) == stamps[2].replace(microsecond=0)
    following = client.get(f"{url}?includeConcepts=true&limit=2&updatedSince="
                           f"{stamps[2].strftime('%Y-%m-%dT%H:%M:%SZ')}")
    assert [c["id"] for c in following.get_json()["concepts"]] == ["2", "3"]
    # any other answer: the server's time
    assert parsedate_to_datetime(client.get(url).headers["Date"]) == read_at.replace(microsecond=0)
    assert client.get(url).headers[DATE_CARRIER] == client.get(url).headers["Date"]


SECOND_ZERO = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def write_at(client: Any, url: str, clock: Clock, seconds: float, ids: list[str]) -> None:
    """Write concepts `ids`, all stamped `seconds` after SECOND_ZERO."""
    clock.moment = SECOND_ZERO + timedelta(seconds=seconds)
    for concept_id in ids:
        assert client.post(f"{url}concepts/", json=concept(concept_id), headers=ADMIN).status_code \
            == 201


def read_from_date_to_date(client: Any, url: str, limit: int) -> list[list[str]]:
    """The ids of each answer, read as the OpenMRS module reads: from `Date` to `Date`."""
    answers: list[list[str]] = []
    since = "2000-01-01T00:00:00Z"
    while True:
        answer = client.get(f"{url}?includeConcepts=true&limit={limit}&updatedSince={since}")
        ids = [item["id"] for item in answer.get_json()["concepts"]]
        if not ids:
            return answers
        answers.append(ids)
        since = parsedate_to_datetime(answer.headers["Date"]).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert len(answers) < 20


def test_reading_from_date_to_date_gives_every_item_exactly_once(client: Any, source: Any,
                                                                 clock: Clock) -> None:
    url = source()
    write_at(client, url, clock, 1.1, ["a1", "a2"])
    write_at(client, url, clock, 2.7, ["b1", "b2", "b3"])  # a cut at 3 would split this second
    write_at(client, url, clock, 3.0, ["c1"])
    write_at(client, url, clock, 5.2, [f"d{n}" for n in range(5)])  # more than limit in a second
    write_at(client, url, clock, 9.9, ["e1"])
    clock.moment += timedelta(minutes=1)  # every write is older than the in-flight margin

    first = client.get(f"{url}?includeConcepts=true&limit=3")
    # the cut falls inside the second of b1-b3: the page leaves that second out whole, and Date
    # names it (the items of that second come with the next answer, once)
    assert [item["id"] for item in first.get_json()["concepts"]] == ["a1", "a2"]
    assert first.headers["num_returned"] == "2" and first.headers["num_found"] == "12"
    assert parsedate_to_datetime(first.headers["Date"]) == SECOND_ZERO + timedelta(seconds=2)
    # a page reached through `next` holds exactly `limit`, continuing after the last item sent
    second = client.get(first.headers["next"])
    assert [item["id"] for item in second.get_json()["concepts"]] == ["b1", "b2", "b3"]

    assert read_from_date_to_date(client, url, limit=3) == [
        ["a1", "a2"], ["b1", "b2", "b3"], ["c1"],
        [f"d{n}" for n in range(5)],  # five in one second: all of them, never no progress
        ["e1"]]
    for limit in (1, 2, 4, 6, 100):
        answers = read_from_date_to_date(client, url, limit)
        sent = [concept_id for answer in answers for concept_id in answer]
        assert sorted(sent) == sorted(set(sent)) and len(sent) == 12, (limit, answers)


def test_the_most_items_an_answer_holds_is_a_setting(clock: Clock) -> None:
    """CONTENT_MAX_LIMIT: the OpenMRS module's limit=100000 is served as that many items (a
    deployment may lower it; the tests of the deployed stack do)."""
    for application in app_on_fresh_database(CONTENT_MAX_LIMIT=3):
        client = application.test_client()
        assert client.post("/orgs/", json={"id": "O"}, headers=ADMIN).status_code == 201
        assert client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN).status_code == 201
        for n in range(5):
            write_at(client, "/orgs/O/sources/S/", clock, 10 * n, [f"c{n}"])
        clock.moment += timedelta(minutes=1)
        answer = client.get("/orgs/O/sources/S?includeConcepts=true&limit=100000")
        assert answer.headers["num_returned"] == "3" and answer.headers["num_found"] == "5"
        assert parsedate_to_datetime(answer.headers["Date"]) == SECOND_ZERO + timedelta(seconds=30)
        listed = client.get("/orgs/O/sources/S/concepts/?limit=100000")
        assert listed.headers["num_returned"] == "3" and "next" in listed.headers
    with pytest.raises(ConfigError, match="CONTENT_MAX_LIMIT"):
        load_config({"CONTENT_MAX_LIMIT": 0})
