"""Property: whatever ids, names, extras and numbers a concept carries, sent through the API and
through a bulk import, the server never answers 5xx; it accepts exactly what can be stored and
read back identically (an independent statement of the rule decides which, below) and reads it
back identically (GET, the item list and a diff); it refuses the rest naming the field, stores
nothing of it, and in an import fails that line alone.

Deterministic: hypothesis derandomized, a fixed number of examples (TERMSYNC_PROPERTY_EXAMPLES
explores more, with other seeds when TERMSYNC_PROPERTY_RANDOM=1).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app import create_app
from tests.conftest import ADMIN, app_config

IMPORTS = "/importers/bulk-import/"
EXAMPLES = int(os.environ.get("TERMSYNC_PROPERTY_EXAMPLES", "50"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    derandomize=os.environ.get("TERMSYNC_PROPERTY_RANDOM") != "1",
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])
SOURCES = itertools.count()

class RawNumber:
    """A number as JSON text, written into the body as it is (1e999, NaN, 25 digits...)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


# --- the rule, stated independently of the server's code -------------------------------------
def text_ok_piece(piece: str) -> bool:
    return text_ok(piece, is_id=True)


def text_ok(text: str, is_id: bool = False) -> bool:
    for character in text:
        code = ord(character)
        if 0xD800 <= code <= 0xDFFF or (code < 0x20 and (is_id or character not in "\t\n\r")) \
                or 0x7F <= code <= 0x9F:
            return False
    return True


# Pieces that stress ids and text: URL syntax, dots, controls, surrogates, non-ASCII.
ODD = ["/", ".", "..", "%", "%2F", "#", "?", "&", "+", " ", "\\", '"', "\x00", "\t", "\n", "\r",
       "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", "\ud800", "\udfff", "é", "日", "\U0001f489",
       "$", "a", "Z", "0", "-", "_", "@"]
hostile_texts = st.lists(st.one_of(st.sampled_from(ODD),
                                   st.text(st.characters(exclude_categories=()), max_size=4)),
                         max_size=6).map("".join)
# Text as curators write it, with the URL syntax and scripts ids meet (no control characters).
clean_texts = st.lists(st.one_of(st.sampled_from([piece for piece in ODD if text_ok_piece(piece)]),
                                 st.text(st.characters(exclude_categories=("Cc", "Cs")),
                                         min_size=1, max_size=4)),
                       min_size=1, max_size=6).map("".join)
NUMBER_TEXTS = ["1e999", "-1e999", "1E400", "1e-400", "-0.0", "0.1", "1" * 25, "-" + "9" * 19,
                "9223372036854775807", "-9223372036854775808", "9223372036854775808", "NaN",
                "Infinity", "-Infinity", "2.5e-308", "1.7976931348623157e308"]
hostile_numbers = st.one_of(st.sampled_from(NUMBER_TEXTS),
                            st.integers(min_value=-2**70, max_value=2**70).map(str),
                            st.floats(allow_nan=True, allow_infinity=True).map(json.dumps))
clean_numbers = st.one_of(st.integers(min_value=-2**63, max_value=2**63 - 1).map(str),
                          st.floats(allow_nan=False, allow_infinity=False).map(json.dumps))


def extras_of(texts: st.SearchStrategy[str], numbers: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """JSON values of texts, numbers (as RawNumber), booleans and null, nested."""
    leaves = st.one_of(st.none(), st.booleans(), texts, numbers.map(RawNumber))
    return st.recursive(leaves, lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(texts, children, max_size=3)),
        max_leaves=8)


@st.composite
def concepts(draw: st.DrawFn) -> tuple[str, str, Any]:
    """An id, a name and an extras value: all as curators write them, or any of them hostile."""
    hostile = draw(st.booleans())
    texts = hostile_texts if hostile else clean_texts
    numbers = hostile_numbers if hostile else clean_numbers
    concept_id = draw(st.one_of(texts, st.integers(0, 10**6).map(str)))
    return concept_id, draw(texts), draw(extras_of(texts, numbers))


def parsed(value: Any) -> Any:
    """The value as JSON text carries it (RawNumber read as Python's json reads it)."""
    if isinstance(value, RawNumber):
        return json.loads(value.text)
    if isinstance(value, list):
        return [parsed(item) for item in value]
    if isinstance(value, dict):
        return {key: parsed(item) for key, item in value.items()}
    return value


def storable(value: Any, depth: int = 0) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, str):
        return text_ok(value)
    if isinstance(value, int):
        return -2**63 <= value < 2**63
    if isinstance(value, float):
        return math.isfinite(value) and not (value == 0.0 and math.copysign(1.0, value) < 0)
    if isinstance(value, list):
        return all(storable(item, depth + 1) for item in value)
    return all(text_ok(key) and not key.startswith("$") and "." not in key
               and storable(item, depth + 1) for key, item in value.items())


def kept_id(sent: str) -> str:
    """OCL keeps the last path segment of an id holding '/'."""
    return sent.rstrip("/").rsplit("/", 1)[-1]


def acceptable(concept_id: str, name: str, extras_value: Any) -> bool:
    kept = kept_id(concept_id)
    return (0 < len(kept) <= 255 and text_ok(kept, is_id=True) and kept not in (".", "..")
            and len(name) > 0 and text_ok(name) and storable(parsed(extras_value)))


def identical(left: Any, right: Any) -> bool:
    """Equal with types: 1 is not 1.0 nor True, -0.0 is not 0.0."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return repr(left) == repr(right)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(identical, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(identical(left[k], right[k]) for k in left)
    return bool(left == right)


def body_text(record: dict[str, Any]) -> str:
    """JSON text of `record` with its RawNumbers as written and lone surrogates escaped."""
    numbers: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, RawNumber):
            numbers.append(value.text)
            return f"@@number{len(numbers) - 1}@@"
        if isinstance(value, list):
            return [mark(item) for item in value]
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        return value

    text = json.dumps(mark(record), ensure_ascii=True)
    for index, number in enumerate(numbers):
        text = text.replace(f'"@@number{index}@@"', number)
    return text


# --- the property --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("property")
    application = create_app(app_config(IMPORT_DIR=str(root / "imports"),
                                        EXPORT_DIR=str(root / "exports")))
    assert application.test_client().post("/orgs/", json={"id": "O"},
                                          headers=ADMIN).status_code == 201
    yield application


def new_source(client: Any) -> str:
    source_id = f"S{next(SOURCES)}"
    assert client.post("/orgs/O/sources/", json={"id": source_id}, headers=ADMIN).status_code == 201
    return f"/orgs/O/sources/{source_id}/"


def read_back(client: Any, source: str, concept_id: str) -> list[dict[str, Any]]:
    """The concept as its URL, its source's list and a diff of HEAD give it."""
    kept = kept_id(concept_id)
    url = f"{source}concepts/{quote(kept, safe='')}/"
    one = client.get(url)
    assert one.status_code == 200, (url, one.get_json())
    listed = client.get(f"{source}concepts/?limit=10").get_json()
    diff = client.get(f"{source}?includeConcepts=true&updatedSince=2000-01-01").get_json()
    seen = [one.get_json(), *[item for item in listed if item["id"] == kept],
            *[item for item in diff["concepts"] if item["id"] == kept]]
    assert len(seen) == 3, seen
    return seen


def assert_reads_back(seen: list[dict[str, Any]], concept_id: str, name: str,
                      extras_value: Any) -> None:
    for item in seen:
        assert item["id"] == kept_id(concept_id)
        assert item["names"][0]["name"] == name
        assert identical(item["extras"], {"value": parsed(extras_value)}), item["extras"]


def payload(concept_id: str, name: str, extras_value: Any) -> dict[str, Any]:
    return {"id": concept_id, "concept_class": "Diagnosis", "datatype": "N/A",
            "names": [{"name": name, "locale": "en"}], "extras": {"value": extras_value}}


@SETTINGS
@given(example=concepts())
def test_any_concept_is_stored_exactly_or_refused_naming_the_field(
        app: Any, example: tuple[str, str, Any]) -> None:
    concept_id, name, extras_value = example
    client = app.test_client()
    expected = acceptable(concept_id, name, extras_value)
    event("stored" if expected else "refused")
    record = payload(concept_id, name, extras_value)

    # Through the API.
    source = new_source(client)
    answer = client.post(f"{source}concepts/", data=body_text(record).encode(),
                         content_type="application/json", headers=ADMIN)
    assert answer.status_code < 500, answer.get_data()
    if expected:
        assert answer.status_code == 201, (answer.status_code, answer.get_json())
        assert_reads_back(read_back(client, source, concept_id), concept_id, name, extras_value)
    else:
        assert answer.status_code == 422, (answer.status_code, answer.get_json())
        assert answer.get_json()["errors"]["json"], answer.get_json()
        assert client.get(f"{source}concepts/").get_json() == []

    # Through a bulk import, between two good lines.
    source = new_source(client)
    where = {"type": "Concept", "owner": "O", "source": source.split("/")[-2]}
    lines = [dict(payload("before", "b", 1), **where), dict(record, **where),
             dict(payload("after", "a", 2), **where)]
    upload = "\n".join(body_text(line) for line in lines).encode() + b"\n"
    submitted = client.post(IMPORTS, data=upload, content_type="application/x-ndjson",
                            headers=ADMIN)
    assert submitted.status_code == 202, submitted.get_json()
    job_id = submitted.get_json()["id"]
    app.extensions["termsync.jobs"].run_until_idle()
    job = client.get(f"{IMPORTS}{job_id}/", headers=ADMIN).get_json()
    assert job["state"] == "FINISHED", job
    results = client.get(f"{IMPORTS}{job_id}/results/", headers=ADMIN).get_json()
    actions = [result["action"] for result in results]
    assert actions == ["created", "created" if expected else "failed", "created"], results
    if expected:
        assert_reads_back(read_back(client, source, concept_id), concept_id, name, extras_value)
    else:
        assert results[1]["errors"], results[1]
        assert {item["id"] for item in client.get(f"{source}concepts/").get_json()} == \
            {"before", "after"}


NAMESPACE_CHARACTERS = "abcXYZ019_.@-"
mnemonics = st.one_of(
    st.text(st.sampled_from(NAMESPACE_CHARACTERS), max_size=130),
    st.lists(st.sampled_from([*NAMESPACE_CHARACTERS, *ODD]), max_size=8).map("".join))


def namespace_ok(text: str) -> bool:
    """OCL's NAMESPACE_REGEX, 1 to 128 characters, not '.' or '..'."""
    return 0 < len(text) <= 128 and all(character in "".join(sorted(set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@-"))) for character in text) \
        and text not in (".", "..")


@SETTINGS
@given(org_id=mnemonics)
def test_any_org_id_is_reachable_at_its_url_or_refused(app: Any, org_id: str) -> None:
    """Org ids through the API and a bulk import: accepted exactly when OCL's namespace rule
    takes them (less '.' and '..'), then reachable at /orgs/{id}/; refused naming `id`."""
    client = app.test_client()
    expected = namespace_ok(org_id)
    event("stored" if expected else "refused")
    if expected and client.get(f"/orgs/{org_id}/").status_code == 200:
        return  # an earlier example made it
    answer = client.post("/orgs/", data=body_text({"id": org_id}).encode(),
                         content_type="application/json", headers=ADMIN)
    assert answer.status_code == (201 if expected else 422), answer.get_json()
    if expected:
        assert client.get(f"/orgs/{org_id}/").get_json()["id"] == org_id
        assert client.get(f"/orgs/{org_id}").get_json()["id"] == org_id
    else:
        assert answer.get_json()["errors"]["json"]["id"]
    line = body_text({"type": "Source", "id": "S", "owner": org_id}).encode() + b"\n"
    submitted = client.post(IMPORTS, data=line, content_type="application/x-ndjson",
                            headers=ADMIN)
    assert submitted.status_code == 202
    app.extensions["termsync.jobs"].run_until_idle()
    result = client.get(f"{IMPORTS}{submitted.get_json()['id']}/results/",
                        headers=ADMIN).get_json()[0]
    assert result["action"] == ("created" if expected else "failed"), result
