"""Confidentiality through HTTP and the console (docs/security.md, Confidentiality): a private
org's repositories and their content are absent from every list, search and count for everyone but
its members and admins; the routes are found by walking the app's url_map, so a new listing route
is covered (or the test fails until it is)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import pytest

from tests.app.test_console import Browser
from tests.conftest import ADMIN, app_on_fresh_database, concept, mapping

# Everything inside the private org carries "Leak" (any case) in its id, name or fields, so one
# text search matches all of it, and finding "leak" in an answer is finding a leak.
PRIVATE_ORG = "LeakOrg"
LEAK = re.compile("leak", re.IGNORECASE)
PRIVATE_SOURCE = f"/orgs/{PRIVATE_ORG}/sources/LeakSrc/"
PRIVATE_COLLECTION = f"/orgs/{PRIVATE_ORG}/collections/LeakColl/"
PUBLIC_SOURCE = "/orgs/OpenOrg/sources/OpenSrc/"
EMAILS = {"insider": "insider@example.org", "outsider": "outsider@example.org",
          "member": "member@example.org"}

# Values of every route variable a listing is reached by (the owner it lists); a route with any
# other variable reads one repository, job or file (hidden as a whole: test_auth_matrix.py).
OWNERS = (("orgs", PRIVATE_ORG), ("orgs", "OpenOrg"), ("users", "insider"))
OWNER_VALUES: dict[str, tuple[str, ...]] = {
    "owner_kind": ("orgs", "users"), "owner_id": (PRIVATE_ORG, "OpenOrg", "insider"),
    "org_id": (PRIVATE_ORG, "OpenOrg"), "username": ("insider", "outsider"),
    "repo_path": ("sources", "collections"), "segment": ("default",)}
ONE_THING = {"source_id", "collection_id", "version_id", "item_id", "item_version", "sha256",
             "job_id", "task_id", "filename", "unknown", "token_id", "concept_id", "hook_id",
             "delivery_id"}
# A value for every query parameter the OpenAPI document gives a listing, chosen to select the
# private org's content; a parameter missing here fails the test (choose one for it).
PARAMETER_VALUES = {
    "q": "leak", "owner": PRIVATE_ORG, "ownerType": "Organization", "repoType": "Source",
    "customValidationSchema": "None", "updatedSince": "2000-01-01", "conceptClass": "LeakClass",
    "datatype": "LeakType", "locale": "en", "mapType": "LEAK-MAP", "fromConcept": "LEAKCONCEPT",
    "fromConceptSource": "LeakSrc", "fromConceptOwner": PRIVATE_ORG, "toConcept": "Target",
    "toConceptSource": "OpenSrc", "toConceptOwner": "OpenOrg", "includeRetired": "true",
    "includeMappings": "true", "includeInverseMappings": "true", "verbose": "true",
    "page": "1", "limit": "500", "released": "true", "state": "SUCCESS", "start_date": "2000-01-01",
    "task": "none", "result": "json", "includeRevoked": "true", "type": "concept",
}
CONSOLE_PARAMETERS = ("q", "page")


@dataclass
class Caller:
    """Someone asking: API headers and a console browser (signed in, or not)."""

    name: str
    headers: dict[str, str]
    browser: Browser
    sees_private: bool = False
    emails: set[str] = field(default_factory=set)  # the addresses this caller may read


def call(client: Any, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    kwargs.setdefault("headers", ADMIN)
    answer = client.open(path, method=method, **kwargs)
    assert answer.status_code == expect, (method, path, answer.status_code, answer.get_data())
    return answer.get_json(silent=True)


def new_user(client: Any, username: str, orgs: tuple[str, ...] = ()) -> dict[str, str]:
    call(client, "POST", "/users/", 201, json={"username": username,
                                               "email": EMAILS.get(username)})
    token = call(client, "POST", f"/users/{username}/tokens/", 201, json={})["token"]
    for org in orgs:
        call(client, "PUT", f"/orgs/{org}/members/{username}/", 200)
    return {"Authorization": f"Token {token}"}


@pytest.fixture
def world() -> Iterator[tuple[Any, dict[str, Caller]]]:
    """A private org (with a public-looking source and collection, and a mapping), a public org,
    and callers: an insider (member), an outsider, anonymous."""
    app = next(app_on_fresh_database())
    client = app.test_client()
    call(client, "POST", "/orgs/", 201, json={"id": PRIVATE_ORG, "name": "Leak Org",
                                             "public_access": "None"})
    call(client, "POST", "/orgs/", 201, json={"id": "OpenOrg"})
    call(client, "POST", "/orgs/OpenOrg/sources/", 201, json={"id": "OpenSrc"})
    call(client, "POST", f"{PUBLIC_SOURCE}concepts/", 201, json=concept("Target"))
    # the private org's source and collection say View: their org hides them all the same
    call(client, "POST", f"/orgs/{PRIVATE_ORG}/sources/", 201,
         json={"id": "LeakSrc", "name": "Leak source", "public_access": "View"})
    call(client, "POST", f"{PRIVATE_SOURCE}concepts/", 201, json=concept(
        "LEAKCONCEPT", "Leak name", concept_class="LeakClass", datatype="LeakType"))
    call(client, "POST", f"{PRIVATE_SOURCE}mappings/", 201, json=mapping(
        f"{PRIVATE_SOURCE}concepts/LEAKCONCEPT/", f"{PUBLIC_SOURCE}concepts/Target/", "LEAK-MAP"))
    call(client, "POST", f"{PRIVATE_SOURCE}versions/", 201, json={"id": "v1", "released": True})
    call(client, "POST", f"/orgs/{PRIVATE_ORG}/collections/", 201,
         json={"id": "LeakColl", "public_access": "View"})
    call(client, "PUT", f"{PRIVATE_COLLECTION}references/", 200,
         json={"data": {"expressions": [f"{PRIVATE_SOURCE}concepts/LEAKCONCEPT/"]}})
    callers = {}
    for name, orgs, sees in (("insider", (PRIVATE_ORG,), True), ("outsider", (), False),
                             ("member", ("OpenOrg",), False)):
        headers = new_user(client, name, orgs)
        browser = Browser(app)
        browser.sign_in(headers["Authorization"].split()[1])
        callers[name] = Caller(name, headers, browser, sees, {EMAILS[name]})
    callers["anonymous"] = Caller("anonymous", {}, Browser(app))
    yield app, callers
    app.extensions["termsync.store"].drop()


def listing_rules(app: Any) -> list[Any]:
    """GET rules of the app that list or count things: without variables, or with owner variables
    only; a variable of neither kind fails the test until it is classified above."""
    rules = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        variables = set(rule.arguments) - set(rule.defaults or {})
        unknown = variables - set(OWNER_VALUES) - ONE_THING
        assert not unknown, f"{rule.rule}: classify its variables {unknown} in this test"
        if not variables & ONE_THING:
            rules.append(rule)
    return rules


def urls_of(rule: Any) -> list[str]:
    """The rule's URL for every combination of owner values."""
    names = sorted(set(rule.arguments) - set(rule.defaults or {}))
    urls = []
    for values in product(*(OWNER_VALUES[name] for name in names)):
        arguments = dict(zip(names, values, strict=True), **(rule.defaults or {}))
        if "owner_kind" in arguments and \
                (arguments["owner_kind"], arguments["owner_id"]) not in OWNERS:
            continue
        try:
            urls.append(rule.build(arguments, append_unknown=False)[1])
        except Exception:  # a value its converter refuses (any(orgs,users)): not a URL of it
            continue
    return sorted(set(urls))


def openapi_parameters(app: Any) -> dict[str, list[str]]:
    """Query parameters of each path of the OpenAPI document (paths as flask-smorest writes
    them, `{name}` for a variable)."""
    document = app.test_client().get("/api/openapi.json").get_json()
    found: dict[str, list[str]] = {}
    for path, operations in document["paths"].items():
        parameters = operations.get("get", {}).get("parameters", [])
        found[path] = [parameter["name"] for parameter in parameters
                       if parameter.get("in") == "query"]
    return found


def openapi_path(rule: Any) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", re.sub(r"<any\([^)]*\):", "<", rule.rule))


def requests_of(rule: Any, parameters: dict[str, list[str]]) -> list[str]:
    """The rule's URLs, each alone and with each query parameter (of the OpenAPI document's
    `parameters`) set to select private content."""
    if rule.rule.startswith("/console/"):
        names: list[str] = list(CONSOLE_PARAMETERS)
    else:
        names = parameters.get(openapi_path(rule), [])
    missing = [name for name in names if name not in PARAMETER_VALUES]
    assert not missing, f"{rule.rule}: give the parameters {missing} a value in this test"
    requests = []
    for url in urls_of(rule):
        requests.append(url)
        requests.extend(f"{url}?{name}={PARAMETER_VALUES[name]}" for name in names)
    return requests


def body_of(answer: Any) -> str:
    data = answer.get_data(as_text=True)
    answer.close()
    return data


def check_answer(caller: Caller, url: str, answer: Any) -> None:
    """No private content, no counts of it, and no one else's email in an answer."""
    body = body_of(answer)
    path = url.split("?")[0]
    if PRIVATE_ORG in path and not caller.sees_private:
        # the URL names the private org: exactly what a missing one answers
        assert answer.status_code in (401, 404) or answer.request.path == "/console/sign-in", \
            (caller.name, url, answer.status_code)
    named = {match.lower() for match in LEAK.findall(url)}
    leaked = [found for found in LEAK.findall(body) if found.lower() not in named]
    if not caller.sees_private:
        assert not leaked or answer.status_code == 404 and PRIVATE_ORG in path, \
            (caller.name, url, body[:1000])
    for email in set(EMAILS.values()) - caller.emails:
        assert email not in body, (caller.name, url, email)
    if "num_found" in answer.headers and answer.mimetype == "application/json" \
            and "next" not in answer.headers:
        listed = answer.get_json()
        assert int(answer.headers["num_found"]) == len(listed), (caller.name, url)


def test_private_org_content_is_absent_from_every_list_and_search(
        world: tuple[Any, dict[str, Caller]]) -> None:
    app, callers = world
    rules = listing_rules(app)
    endpoints = {rule.endpoint for rule in rules}
    # the walk found the lists the issue names (and whatever was added since)
    assert {"sources.AllSources", "collections.AllCollections", "repos.AllRepos",
            "concepts.all_concepts", "mappings.all_mappings", "repos.owner_repos",
            "users.UserOrgs", "orgs.Members", "console.sources.sources",
            "console.sources.orgs", "console.sources.owner"} <= endpoints
    checked = 0
    parameters = openapi_parameters(app)
    for rule in rules:
        for url in requests_of(rule, parameters):
            for caller in callers.values():
                headers = {} if url.startswith("/console/") else caller.headers
                answer = caller.browser.client.get(url, headers=headers, follow_redirects=True)
                check_answer(caller, url, answer)
                checked += 1
    assert checked > 500


CONTROLS = ("/sources/", "/collections/", "/repos/", "/concepts/?q=leak", "/mappings/?q=leak",
            "/orgs/", "/users/insider/orgs/", f"/orgs/{PRIVATE_ORG}/repos/",
            "/console/sources/?q=leak", "/console/collections/", "/console/orgs/")


def test_members_and_admins_see_what_the_others_do_not(
        world: tuple[Any, dict[str, Caller]]) -> None:
    """The control: the lists the walk checks do show the private org's content to its members
    and admins, so finding nothing there for the others means something."""
    app, callers = world
    insider = callers["insider"]
    admin = Browser(app)
    admin.sign_in(ADMIN["Authorization"].split()[1])
    for url in CONTROLS:
        console = url.startswith("/console/")
        for browser, headers in ((insider.browser, insider.headers), (admin, ADMIN)):
            answer = browser.client.get(url, headers={} if console else headers)
            assert answer.status_code == 200 and LEAK.search(body_of(answer)), url


# --- no existence oracle ---------------------------------------------------------------------

def same_answer(first: Any, second: Any, first_name: str, second_name: str) -> None:
    """Two answers that differ only where the request named different things."""
    assert first.status_code == second.status_code, (first.get_data(), second.get_data())
    assert first.get_data(as_text=True).replace(first_name, second_name) == \
        second.get_data(as_text=True), (first.get_data(), second.get_data())


def neutral(payload: Any, target: str) -> str:
    """A mapping's JSON with what differs by construction blanked: times, its own id, and the
    target url's parts (owner, source, concept id)."""
    def blank(key: str, value: Any) -> Any:
        if key.endswith("_on") or key in ("id", "uuid", "version"):
            return "-"
        if isinstance(value, str):
            for number, part in enumerate(target.strip("/").split("/")[1::2]):
                value = value.replace(f"/{part}/", f"/PART{number}/")
                value = "PART2" if value == part else value
            return re.sub(r"/mappings/[^/]+/(\d+/)?", "/mappings/ID/", value)
        return value
    return json_text({key: blank(key, value) for key, value in payload.items()})


def json_text(payload: Any) -> str:
    import json
    return json.dumps(payload, sort_keys=True)


def test_a_mapping_to_a_hidden_concept_answers_as_to_a_missing_one(
        world: tuple[Any, dict[str, Caller]]) -> None:
    app, callers = world
    client = app.test_client()
    outsider = callers["outsider"].headers
    call(client, "POST", "/user/sources/", 201, headers=outsider, json={"id": "Mine"})
    mine = "/users/outsider/sources/Mine/"
    call(client, "POST", f"{mine}concepts/", 201, headers=outsider, json=concept("A"))
    call(client, "POST", "/orgs/OpenOrg/sources/", 201, json={"id": "Shut",
                                                             "public_access": "None"})
    call(client, "POST", "/orgs/OpenOrg/sources/Shut/concepts/", 201, json=concept("Real"))
    targets = {  # the same answer, whether the concept exists or not, wherever it hides
        "hidden in a private org": f"{PRIVATE_SOURCE}concepts/LEAKCONCEPT/",
        "missing in a private org": f"{PRIVATE_SOURCE}concepts/NOPECONCEPT/",
        "hidden in a private source": "/orgs/OpenOrg/sources/Shut/concepts/Real/",
        "missing in a private source": "/orgs/OpenOrg/sources/Shut/concepts/Nope/",
        "in a source that does not exist": "/orgs/Nobody/sources/None/concepts/Nope/"}
    answers = {}
    for number, (case, target) in enumerate(targets.items()):
        for end in ("to", "from"):
            ends = (f"{mine}concepts/A/", target) if end == "to" else (target, f"{mine}concepts/A/")
            answer = client.post(f"{mine}mappings/", headers=outsider,
                                 json=mapping(*ends, "SAME-AS", id=f"{end}{number}"))
            answers[case, end] = (answer.status_code, neutral(answer.get_json(), target))
    for end in ("to", "from"):
        assert len({answers[case, end] for case in targets}) == 1, \
            [answers[case, end] for case in targets]
    assert {status for status, _ in answers.values()} == {201}
    # the control: to someone who may see the source, a missing concept is a 400
    insider = callers["insider"].headers
    call(client, "POST", f"/orgs/{PRIVATE_ORG}/sources/", 201, headers=insider, json={"id": "Own"})
    answer = client.post(f"/orgs/{PRIVATE_ORG}/sources/Own/mappings/", headers=insider,
                         json=mapping(f"{PRIVATE_SOURCE}concepts/LEAKCONCEPT/",
                                      f"{PRIVATE_SOURCE}concepts/NOPECONCEPT/"))
    assert answer.status_code == 400 and "to_concept_url" in answer.get_json()["errors"]


def test_a_hidden_reference_or_cascade_answers_as_a_missing_one(
        world: tuple[Any, dict[str, Caller]]) -> None:
    app, callers = world
    client = app.test_client()
    member = callers["member"].headers  # a member of OpenOrg, not of the private org
    collection = "/orgs/OpenOrg/collections/Mine/"
    call(client, "POST", "/orgs/OpenOrg/collections/", 201, headers=member, json={"id": "Mine"})
    # a public concept whose mappings name a hidden concept and a missing one
    for target in (f"{PRIVATE_SOURCE}concepts/LEAKCONCEPT/",
                   f"{PRIVATE_SOURCE}concepts/NOPECONCEPT/"):
        call(client, "POST", f"{PUBLIC_SOURCE}mappings/", 201, headers=member,
             json=mapping(f"{PUBLIC_SOURCE}concepts/Target/", target, "NARROWER-THAN"))
    answer = call(client, "PUT", f"{collection}references/?cascade=sourcetoconcepts", 200,
                  headers=member, json={"data": {"expressions": [
                      f"{PUBLIC_SOURCE}concepts/Target/",
                      f"{PRIVATE_SOURCE}concepts/OTHERCONCEPT/",
                      f"{PRIVATE_SOURCE}v1/concepts/LEAKCONCEPT/",
                      f"{PRIVATE_SOURCE}v9/concepts/LEAKCONCEPT/",
                      f"{PRIVATE_SOURCE}concepts/LEAKCONCEPT/1/",
                      "/orgs/Nobody/sources/LeakSrc/concepts/LEAKCONCEPT/"]}})
    hidden = [result for result in answer if "LeakSrc" in result["expression"]]
    assert len(hidden) == 7  # five named, two cascaded from Target's mappings
    for result in hidden:
        source = re.match(r"(/orgs/[^/]+/sources/[^/]+/)", result["expression"]).group(1)
        assert {key: value for key, value in result.items()
                if key not in ("expression", "cascaded_from")} == {
            "added": False, "result": "not_found", "message": f"Source {source} not found."}
    assert sum(1 for result in hidden if result.get("cascaded_from")) == 2


def test_import_lines_naming_hidden_things_fail_as_for_missing_ones(
        world: tuple[Any, dict[str, Caller]]) -> None:
    app, callers = world
    client = app.test_client()
    outsider = callers["outsider"].headers
    call(client, "POST", "/user/sources/", 201, headers=outsider, json={"id": "Mine"})
    lines = [  # pairs: hidden, then missing, answered the same but for the names
        {"type": "Concept", "id": "X1", "owner": PRIVATE_ORG, "source": "LeakSrc",
         **concept("X1")},
        {"type": "Concept", "id": "X1", "owner": "NopeOrg", "source": "LeakSrc",
         **concept("X1")},
        {"type": "Concept", "id": "X2", "owner": "OpenOrg", "source": "Shut", **concept("X2")},
        {"type": "Concept", "id": "X2", "owner": "OpenOrg", "source": "Nope", **concept("X2")},
        {"type": "Source", "id": "LeakSrc", "owner": PRIVATE_ORG, "name": "Leak source"},
        {"type": "Source", "id": "NopeSrc", "owner": PRIVATE_ORG, "name": "Leak source"},
        {"type": "Source", "id": "Shut", "owner": "OpenOrg", "name": "Shut"},
        {"type": "Source", "id": "Open", "owner": "OpenOrg", "name": "Shut"},
        {"type": "Mapping", "owner": "outsider", "owner_type": "User", "source": "Mine",
         **mapping("/users/outsider/sources/Mine/concepts/A/",
                   f"{PRIVATE_SOURCE}concepts/LEAKCONCEPT/")},
        {"type": "Mapping", "owner": "outsider", "owner_type": "User", "source": "Mine",
         **mapping("/users/outsider/sources/Mine/concepts/A/",
                   f"{PRIVATE_SOURCE}concepts/NOPECONCEPT/")},
        {"type": "Collection Version", "collection_url": PRIVATE_COLLECTION, "id": "v1"},
        {"type": "Collection Version", "collection_url": "/orgs/OpenOrg/collections/Nope/",
         "id": "v1"},
    ]
    call(client, "POST", "/orgs/OpenOrg/sources/", 201, json={"id": "Shut",
                                                             "public_access": "None"})
    call(client, "POST", "/users/outsider/sources/Mine/concepts/", 201, headers=outsider,
         json=concept("A"))
    body = "\n".join(json_text(line) for line in lines)
    job = call(client, "POST", "/importers/bulk-import/", 202, headers=outsider,
               data=body.encode(), content_type="application/x-ndjson")
    app.extensions["termsync.jobs"].run_until_idle()
    results = call(client, "GET", f"/importers/bulk-import/{job['id']}/results/?limit=100", 200,
                   headers=outsider)
    assert len(results) == len(lines)
    names = [(PRIVATE_ORG, "NopeOrg"), ("Shut", "Nope"), ("LeakSrc", "NopeSrc"),
             ("/sources/Shut/", "/sources/Open/"), ("LEAKCONCEPT", "NOPECONCEPT"), (PRIVATE_COLLECTION, "/orgs/OpenOrg/collections/Nope/")]
    for (hidden, missing), (old, new) in zip(zip(results[::2], results[1::2], strict=True), names,
                                             strict=True):
        text = json_text({key: value for key, value in hidden.items()
                          if key not in ("line", "url")}).replace(old, new)
        assert text == json_text({key: value for key, value in missing.items()
                                  if key not in ("line", "url")}), (hidden, missing)
        assert hidden["action"] in ("failed", "created"), hidden
    assert "not a member of 'OpenOrg'" in json_text(results[6])


def test_messages_only_name_the_collections_a_caller_may_see(
        world: tuple[Any, dict[str, Caller]]) -> None:
    """A public source held by the private org's collection cannot be deleted or made private;
    the answer counts that collection without naming it."""
    app, callers = world
    client = app.test_client()
    call(client, "PUT", f"{PRIVATE_COLLECTION}references/", 200,
         json={"data": {"expressions": [f"{PUBLIC_SOURCE}concepts/Target/"]}})
    member = callers["member"].headers
    for method, body, status in (("DELETE", None, 409), ("PATCH", {"public_access": "None"}, 400)):
        answer = client.open(PUBLIC_SOURCE, method=method, json=body, headers=member)
        assert answer.status_code == status
        assert not LEAK.search(answer.get_data(as_text=True))
        assert "1 other(s) that you may not see" in answer.get_json()["message"]
    answer = client.delete(PUBLIC_SOURCE, headers=ADMIN)
    assert answer.status_code == 409 and PRIVATE_COLLECTION in answer.get_json()["message"]


def test_org_access_changes_keep_collections_from_exposing_sources(
        world: tuple[Any, dict[str, Caller]]) -> None:
    """An org whose sources' items are in another owner's collection cannot become private; one
    whose public collection holds a private source's items cannot become public."""
    app, callers = world
    client = app.test_client()
    call(client, "PUT", f"{PRIVATE_COLLECTION}references/", 200,
         json={"data": {"expressions": [f"{PUBLIC_SOURCE}concepts/Target/"]}})
    call(client, "POST", f"/orgs/{PRIVATE_ORG}/sources/", 201, json={"id": "LeakPriv",
                                                                    "public_access": "None"})
    call(client, "POST", f"/orgs/{PRIVATE_ORG}/sources/LeakPriv/concepts/", 201,
         json=concept("P"))
    call(client, "PUT", f"{PRIVATE_COLLECTION}references/", 200, json={"data": {
        "expressions": [f"/orgs/{PRIVATE_ORG}/sources/LeakPriv/concepts/P/"]}})
    lines = [{"type": "Organization", "id": "OpenOrg", "public_access": "None"},
             {"type": "Organization", "id": PRIVATE_ORG, "public_access": "View"}]
    job = call(client, "POST", "/importers/bulk-import/?update_if_exists=true", 202,
               data="\n".join(json_text(line) for line in lines).encode(),
               content_type="application/x-ndjson")
    app.extensions["termsync.jobs"].run_until_idle()
    results = call(client, "GET", f"/importers/bulk-import/{job['id']}/results/", 200)
    assert [result["action"] for result in results] == ["failed", "failed"]
    assert PRIVATE_COLLECTION in json_text(results[0]) and "private" in json_text(results[0])
    assert PRIVATE_COLLECTION in json_text(results[1]) and "public" in json_text(results[1])
    assert call(client, "GET", "/orgs/OpenOrg/", 200)["public_access"] == "View"
    assert call(client, "GET", f"/orgs/{PRIVATE_ORG}/", 200)["public_access"] == "None"
    # once the collection is private it may become public (the collection stays private)
    call(client, "PATCH", PRIVATE_COLLECTION, 200, json={"public_access": "None"})
    job = call(client, "POST", "/importers/bulk-import/?update_if_exists=true", 202,
               data=json_text(lines[1]).encode(), content_type="application/x-ndjson")
    app.extensions["termsync.jobs"].run_until_idle()
    assert call(client, "GET", f"/importers/bulk-import/{job['id']}/results/", 200)[0][
        "action"] == "updated"
    assert LEAK.search(body_of(client.get("/sources/")))  # its View source is public now


# --- personal data ---------------------------------------------------------------------------

def test_emails_only_to_the_user_and_admins(world: tuple[Any, dict[str, Caller]]) -> None:
    app, callers = world
    client = app.test_client()
    member, insider = callers["member"].headers, callers["insider"].headers
    for headers in ({}, member):
        shown = call(client, "GET", "/users/insider/", 200, headers=headers)
        assert shown["email"] is None and "is_active" not in shown
    assert call(client, "GET", "/users/insider/", 200, headers=insider)["email"] == \
        EMAILS["insider"]
    assert call(client, "GET", "/user/", 200, headers=insider)["email"] == EMAILS["insider"]
    assert call(client, "GET", "/users/insider/", 200)["email"] == EMAILS["insider"]  # admin
    listed = call(client, "GET", "/orgs/OpenOrg/members/", 200, headers=member)
    assert {user["username"]: user["email"] for user in listed} == {
        "admin": None, "member": EMAILS["member"]}  # only their own
    assert call(client, "GET", "/users/", 403, headers=member)
    assert {user["email"] for user in call(client, "GET", "/users/", 200)} >= set(EMAILS.values())
    added = call(client, "PUT", "/orgs/OpenOrg/members/insider/", 200, headers=member)
    assert added["email"] is None
