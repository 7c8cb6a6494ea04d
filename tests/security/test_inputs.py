"""Input rules (docs/security.md, Input), one class of input at a time, through HTTP.

Everything accepted is stored and read back identically; anything else is a 4xx naming the field
(a failed line naming it, in a bulk import, whose other lines are applied): text with lone
surrogates or control characters, integers past 64 bits, NaN and Infinity, keys given twice,
ids that cannot be a URL path segment, versions past 64 bits in URLs, CR/LF in the console's
`next`. Zip and CSV imports are bounded (the bench is bench/inputs.py).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import flask_smorest
import pytest
import requests

from app import create_app
from app.api import parsing
from tests.conftest import ADMIN, ADMIN_TOKEN, app_config, concept
from tests.security.hostile_zips import concept as zipped_concept
from tests.security.hostile_zips import deflate_bomb, export_zip, huge_item_zip, item_bomb
from tests.security.test_bad_files import peak_bytes
from tests.sync.ocl_stub import LiveServer

IMPORTS = "/importers/bulk-import/"
URL = "/orgs/O/sources/S/"
MB = 1 << 20
JSON = "application/json"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    application = create_app(app_config(IMPORT_DIR=str(tmp_path / "imports"),
                                        EXPORT_DIR=str(tmp_path / "exports")))
    client = application.test_client()
    assert client.post("/orgs/", json={"id": "O"}, headers=ADMIN).status_code == 201
    assert client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN).status_code == 201
    yield application


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def post_raw(client: Any, path: str, text: str) -> Any:
    """POST JSON text as it is (the test builds what json.dumps would refuse to write)."""
    return client.post(path, data=text.encode("utf-8", "surrogatepass"), content_type=JSON,
                       headers=ADMIN)


def errors_at(answer: Any, *path: str | int) -> list[str]:
    """The messages a 4xx carries for the field at `path` of the JSON body."""
    node = answer.get_json()["errors"]["json"]
    for part in path:
        node = node[str(part)]
    return node  # type: ignore[no-any-return]


def import_job(app: Any, client: Any, body: bytes, content_type: str = "application/x-ndjson",
               query: str = "") -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Submit an upload, run it; the job and its results by line."""
    answer = client.post(f"{IMPORTS}{query}", data=body, content_type=content_type, headers=ADMIN)
    assert answer.status_code == 202, answer.get_json()
    job_id = answer.get_json()["id"]
    app.extensions["termsync.jobs"].run_until_idle()
    job = client.get(f"{IMPORTS}{job_id}/", headers=ADMIN).get_json()
    results = client.get(f"{IMPORTS}{job_id}/results/?limit=500", headers=ADMIN).get_json()
    return job, {result["line"]: result for result in results}


def concept_line(concept_id: str, **fields: Any) -> dict[str, Any]:
    return dict(concept(concept_id, **fields), type="Concept", owner="O", source="S")


# --- values that storage cannot hold as they are ------------------------------------------------
# (JSON text of the value, what the message says)
BAD_TEXT = [('"\\ud800"', "lone surrogate (U+D800)"), ('"a\\udfffb"', "lone surrogate (U+DFFF)"),
            ('"a\\u0000b"', "control character U+0000"), ('"\\u001b[31m"', "U+001B"),
            ('"\\u007f"', "U+007F"), ('"x\\u0085"', "U+0085")]
TEXT_FIELDS = [("names", 0, "name"), ("descriptions", 0, "description"), ("concept_class",),
               ("external_id",), ("extras", "k"), ("extras", "k", 1)]


def concept_text(field: tuple[Any, ...], value: str) -> str:
    """A concept's JSON text with `value` (JSON text) at `field`."""
    body = concept("c1", descriptions=[{"description": "d", "locale": "en"}],
                   extras={"k": ["ok", "ok"]})
    marker = "@@VALUE@@"
    node: Any = body
    for part in field[:-1]:
        node = node[part]
    node[field[-1]] = marker
    return json.dumps(body).replace(json.dumps(marker), value)


@pytest.mark.parametrize("field", TEXT_FIELDS, ids=lambda f: ".".join(map(str, f)))
@pytest.mark.parametrize(("value", "said"), BAD_TEXT, ids=[said for _, said in BAD_TEXT])
def test_text_storage_cannot_hold_is_a_422_naming_the_field(client: Any, field: tuple[Any, ...],
                                                              value: str, said: str) -> None:
    answer = post_raw(client, f"{URL}concepts/", concept_text(field, value))
    assert answer.status_code == 422, answer.get_data()
    assert said in " ".join(errors_at(answer, *field))
    assert client.get(f"{URL}concepts/c1/").status_code == 404


def test_keys_storage_cannot_hold_are_refused_naming_the_key(client: Any) -> None:
    answer = post_raw(client, f"{URL}concepts/",
                      json.dumps(concept("c1", extras={"@": 1})).replace('"@"', '"a\\u0000"'))
    assert answer.status_code == 422
    assert "U+0000" in errors_at(answer, "extras", "a\x00")[0]
    answer = client.post(f"{URL}concepts/", json=concept("c1", extras={"k": [{"a.b": 1}]}),
                         headers=ADMIN)
    assert answer.status_code == 422
    assert "FerretDB" in errors_at(answer, "extras", "k", 0, "a.b")[0]
    for key in ("", " ", "a$b", "a b", "é"):  # what every store holds
        assert client.post(f"{URL}concepts/", json=concept(f"k{key}", extras={key: 1}),
                           headers=ADMIN).status_code == 201


def test_free_text_keeps_tab_newline_carriage_return_and_unicode(client: Any) -> None:
    text = "line 1\r\n\tline 2 — ⚕ \U0001d518\U0001d52b \u200b\ufeff"
    body = concept("c1", name=text, extras={text: [text, {"k": text}]},
                   descriptions=[{"description": text, "locale": "en"}])
    assert client.post(f"{URL}concepts/", json=body, headers=ADMIN).status_code == 201
    stored = client.get(f"{URL}concepts/c1/").get_json()
    assert stored["names"][0]["name"] == text
    assert stored["descriptions"][0]["description"] == text
    assert stored["extras"] == {text: [text, {"k": text}]}


# (JSON text of a number, accepted?, what it reads back as)
NUMBERS = [("9223372036854775807", True, 2**63 - 1), ("-9223372036854775808", True, -2**63),
           ("9223372036854775808", False, None), ("-9223372036854775809", False, None),
           ("18446744073709551616", False, None), ("1" * 5000, False, None),
           ("NaN", False, None), ("Infinity", False, None), ("-Infinity", False, None),
           ("1e999", False, None), ("-1e999", False, None), ("1e308", True, 1e308),
           ("5e-324", True, 5e-324), ("-0.0", False, None), ("-0", True, 0), ("0.1", True, 0.1)]


@pytest.mark.parametrize(("text", "accepted", "read_back"), NUMBERS, ids=[n[0][:24] for n in NUMBERS])
def test_extras_numbers_are_stored_exactly_or_refused_naming_the_field(
        client: Any, text: str, accepted: bool, read_back: Any) -> None:
    body = json.dumps(concept("c1", extras={"deep": [{"n": "@@"}]})).replace('"@@"', text)
    answer = post_raw(client, f"{URL}concepts/", body)
    if not accepted:
        assert answer.status_code == 422, answer.get_data()
        message = errors_at(answer, "extras", "deep", 0, "n")[0]
        assert "64 bits" in message or "not a number JSON can carry" in message \
            or "-0.0 would read back as 0.0" in message
        assert client.get(f"{URL}concepts/c1/").status_code == 404
        return
    assert answer.status_code == 201, answer.get_data()
    stored = client.get(f"{URL}concepts/c1/").get_json()["extras"]["deep"][0]["n"]
    assert repr(stored) == repr(read_back)  # repr: -0.0 is not 0.0, 1.0 is not 1


@pytest.mark.parametrize(("text", "accepted"), [("1e999", False), ("NaN", False),
                                                ("9007199254740993", False), ("9007199254740992", True),
                                                ("2.5", True)])
def test_sort_weight_reads_back_as_sent_or_is_refused(client: Any, text: str, accepted: bool) -> None:
    client.post(f"{URL}concepts/", json=concept("a"), headers=ADMIN)
    body = json.dumps({"id": "m1", "map_type": "SAME-AS", "from_concept_url": f"{URL}concepts/a/",
                       "to_concept_url": f"{URL}concepts/a/", "sort_weight": "@@"}
                      ).replace('"@@"', text)
    answer = post_raw(client, f"{URL}mappings/", body)
    if accepted:
        assert answer.status_code == 201
        assert client.get(f"{URL}mappings/m1/").get_json()["sort_weight"] == json.loads(text)
    else:
        assert answer.status_code == 422 and errors_at(answer, "sort_weight")


def test_a_key_given_twice_is_a_400_naming_it(client: Any) -> None:
    for text, key in (('{"id": "c1", "id": "c2", "concept_class": "x", '
                       '"names": [{"name": "n", "locale": "en"}]}', "id"),
                      ('{"id": "c2", "concept_class": "x", '
                       '"names": [{"name": "n", "locale": "en", "locale": "fr"}]}', "locale")):
        answer = post_raw(client, f"{URL}concepts/", text)
        assert answer.status_code == 400
        assert f"the key '{key}' appears twice" in answer.get_json()["message"]
        assert client.get(f"{URL}concepts/c2/").status_code == 404


def test_values_in_fields_that_are_ignored_are_ignored(client: Any) -> None:
    """OCL's exports carry fields termsync does not keep: nothing of them is stored, so they
    need not be storable."""
    body = json.dumps(concept("c1", checksums="@@")).replace('"@@"', '"\\ud800"')
    assert post_raw(client, f"{URL}concepts/", body).status_code == 201


def test_every_api_blueprint_reads_arguments_by_the_input_rules(app: Any) -> None:
    """A feature package's blueprint is `app.api.parsing.Blueprint`, so its arguments are held
    to the same rule (flask-smorest's own would read JSON with the standard library)."""
    smorest = [blueprint for blueprint in app.blueprints.values()
               if isinstance(blueprint, flask_smorest.Blueprint)]
    assert len(smorest) > 8
    for blueprint in smorest:
        assert isinstance(blueprint, parsing.Blueprint), blueprint.name


def test_odd_values_read_back_identically_from_an_export(app: Any, client: Any) -> None:
    """Text, ids and numbers at their edges, through a released version's export file."""
    text = "tab\tnew line\ncarriage\r — ⚕ \U0001f489 \ufeff"
    extras = {"max": 2**63 - 1, "min": -2**63, "tiny": 5e-324, "huge": 1.7976931348623157e308,
              "zero": 0.0, "one": 1, "one float": 1.0, "t": True, "none": None,
              text: [text, {"nested": text}]}
    for concept_id in ODD_IDS[:12]:
        body = concept(concept_id, name=text, extras=extras,
                       descriptions=[{"description": text, "locale": "en"}])
        assert client.post(f"{URL}concepts/", json=body, headers=ADMIN).status_code == 201
    assert client.post(f"{URL}versions/", json={"id": "v1", "released": True},
                       headers=ADMIN).status_code == 201
    app.extensions["termsync.jobs"].run_until_idle()
    answer = client.get(f"{URL}v1/export/")
    assert answer.status_code == 200
    data = answer.get_data()
    answer.close()  # the file it streamed from
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        exported = json.loads(archive.read("export.json"))
    assert sorted(item["id"] for item in exported["concepts"]) == sorted(ODD_IDS[:12])
    for item in exported["concepts"]:
        assert item["names"][0]["name"] == text and item["descriptions"][0]["description"] == text
        assert json.dumps(item["extras"], sort_keys=True) == json.dumps(extras, sort_keys=True)
        assert type(item["extras"]["one"]) is int and type(item["extras"]["one float"]) is float


# --- numbers in URLs ----------------------------------------------------------------------------
def test_numbers_past_64_bits_in_urls_are_4xx(client: Any) -> None:
    assert client.post(f"{URL}concepts/", json=concept("c1"), headers=ADMIN).status_code == 201
    big = "99999999999999999999999"
    assert client.get(f"{URL}concepts/c1/{big}/").status_code == 404
    assert client.get(f"{URL}concepts/c1/9223372036854775808/").status_code == 404
    assert client.get(f"{URL}{big}/").status_code == 404
    assert client.get(f"{URL}{big}/concepts/c1/").status_code == 404
    answer = client.get(f"{URL}concepts/?page={big}")
    assert answer.status_code == 400 and "page" in answer.get_json()["errors"]["query"]
    assert client.get(f"{URL}concepts/?limit={big}").status_code == 200  # served as the most


# --- ids ----------------------------------------------------------------------------------------
def test_dot_ids_are_refused_everywhere(client: Any) -> None:
    for dots in (".", ".."):
        for path, body in (("/orgs/", {"id": dots}), ("/users/", {"username": dots}),
                           ("/orgs/O/sources/", {"id": dots}),
                           ("/orgs/O/collections/", {"id": dots}),
                           (f"{URL}versions/", {"id": dots}),
                           (f"{URL}concepts/", concept(dots)),
                           (f"{URL}concepts/", concept(f"a/{dots}"))):
            answer = client.post(path, json=body, headers=ADMIN)
            assert answer.status_code == 422, (path, dots, answer.get_json())
            field = "username" if path == "/users/" else "id"
            assert answer.get_json()["errors"]["json"][field]


def test_ids_with_control_characters_are_refused(client: Any) -> None:
    for character in ("\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85"):
        answer = client.post(f"{URL}concepts/", json=concept(f"a{character}b"), headers=ADMIN)
        assert answer.status_code == 422, repr(character)
        assert "control character" in answer.get_json()["errors"]["json"]["id"][0]
        for path, body in (("/orgs/", {"id": f"a{character}"}),
                           (f"{URL}versions/", {"id": f"v{character}"})):
            assert client.post(path, json=body, headers=ADMIN).status_code == 422


def test_mapping_ids_follow_ocl_namespace(client: Any) -> None:
    client.post(f"{URL}concepts/", json=concept("a"), headers=ADMIN)
    target = f"{URL}concepts/a/"
    for mapping_id, status in (("m-1.2_x@y", 201), ("m 1", 422), ("m/1", 422), ("..", 422),
                               ("é", 422)):
        answer = client.post(f"{URL}mappings/", headers=ADMIN, json={
            "id": mapping_id, "map_type": "SAME-AS", "from_concept_url": target,
            "to_concept_url": target})
        assert answer.status_code == status, (mapping_id, answer.get_json())


# Concept ids as OCL takes them (any text; its URL %-quotes it) and where termsync reads them.
ODD_IDS = ["a b", " lead", "trail ", "a%b", "%41", "a%20b", "a#b", "a?b=c&d", "é", "日本語",
           "a+b", "+", "a;b", "a,b", "a:b", "a'b", 'a"b', "a\\b", "a.b", "...", "~user", "a[b]",
           "🩺", "x" * 255]


def test_every_accepted_concept_id_is_reachable_at_its_url_by_a_real_client(app: Any) -> None:
    """Each odd id is created, then read back through a real HTTP client (requests, over a
    socket) at the url the server gave, in its item list and by a mapping naming that url."""
    client = app.test_client()
    with LiveServer(app) as server:
        for index, concept_id in enumerate(ODD_IDS):
            answer = client.post(f"{URL}concepts/", json=concept(concept_id), headers=ADMIN)
            assert answer.status_code == 201, (concept_id, answer.get_json())
            url = answer.get_json()["url"]
            assert url == f"{URL}concepts/{quote(concept_id, safe='')}/"
            fetched = requests.get(f"{server.url}{url}", timeout=30)
            assert fetched.status_code == 200, concept_id
            assert fetched.json()["id"] == concept_id
            slashless = requests.get(f"{server.url}{url.rstrip('/')}", timeout=30)
            assert slashless.status_code == 200 and slashless.json()["id"] == concept_id
            mapping = client.post(f"{URL}mappings/", headers=ADMIN, json={
                "id": f"m{index}", "map_type": "SAME-AS", "from_concept_url": url,
                "to_concept_url": url})
            assert mapping.status_code == 201, (concept_id, mapping.get_json())
            assert mapping.get_json()["from_concept_code"] == concept_id
        listed = requests.get(f"{server.url}{URL}concepts/?limit=100", timeout=30).json()
        assert {item["id"] for item in listed} == set(ODD_IDS)


def test_concept_ids_with_a_slash_keep_their_last_segment(client: Any) -> None:
    for sent, kept in (("Food/Papaya", "Papaya"), ("x/", "x"), ("a/b/", "b"), ("a//c", "c")):
        answer = client.post(f"{URL}concepts/", json=concept(sent), headers=ADMIN)
        assert answer.status_code == 201 and answer.get_json()["id"] == kept, sent
        assert client.get(f"{URL}concepts/{kept}/").status_code == 200
    for sent in ("/", "//", "a/."):
        assert client.post(f"{URL}concepts/", json=concept(sent), headers=ADMIN).status_code == 422


def test_queue_names_with_control_characters_are_refused(client: Any) -> None:
    for queue in ("a%0Db", "a%00", "q" * 129):
        answer = client.post(f"{IMPORTS}{queue}/", data=b"{}\n", content_type="application/x-ndjson",
                             headers=ADMIN)
        assert answer.status_code == 400, queue
        assert answer.get_json()["errors"]["queue"]
    assert client.post(f"{IMPORTS}my-queue/", data=b"{}\n", content_type="application/x-ndjson",
                       headers=ADMIN).status_code == 202


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_console_next_with_control_characters_goes_home(app: Any) -> None:
    """`next` says where signing in leads (a Location header): CR/LF would split it."""
    for target in ("/console/\r\nSet-Cookie: x=1", "/console/\nX: y", "/console/\x00",
                   "/console/\x85"):
        client = app.test_client()
        page = client.get("/console/sign-in", query_string={"next": target})
        assert page.status_code == 200
        assert b"Set-Cookie: x" not in page.get_data() and b"X: y" not in page.get_data()
        csrf = CSRF.search(page.get_data(as_text=True))
        assert csrf is not None
        answer = client.post("/console/sign-in", data={
            "csrf_token": csrf.group(1), "token": ADMIN_TOKEN, "next": target})
        assert answer.status_code == 303 and answer.headers["Location"] == "/console/"
        signed_in = client.get("/console/sign-in", query_string={"next": target})
        assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/console/"
        answer = client.get("/console/sign-in", query_string={"next": "/console/sources/"})
        assert answer.headers["Location"] == "/console/sources/"  # a good one is followed


# --- bulk imports: one bad line fails only itself -----------------------------------------------
def test_a_line_of_each_bad_kind_fails_alone_and_the_job_finishes(app: Any, client: Any) -> None:
    good = json.dumps(concept_line("good"))
    bad = [json.dumps(concept_line("s1", name="@@")).replace('"@@"', '"\\ud800"'),
           json.dumps(concept_line("s2", extras={"n": "@@"})).replace('"@@"', "NaN"),
           json.dumps(concept_line("s3", extras={"n": "@@"})).replace('"@@"', "1e999"),
           json.dumps(concept_line("s4", extras={"n": "@@"})).replace('"@@"', str(2**64)),
           json.dumps(concept_line("s5", extras={"@": 1})).replace('"@"', '"\\u0000"'),
           json.dumps(concept_line("a\u0000b")), json.dumps(concept_line("..")),
           '{"type": "Concept", "id": "s6", "id": "s7"}',
           json.dumps(concept_line("s8", external_id="@@")).replace('"@@"', '"\\u001b"')]
    body = "\n".join([good, *bad, good.replace('"good"', '"good2"')]) + "\n"
    job, results = import_job(app, client, body.encode())
    assert job["state"] == "FINISHED"
    assert job["summary"]["created"] == 2 and job["summary"]["failed"] == len(bad)
    for number in range(2, 2 + len(bad)):
        assert results[number]["action"] == "failed" and results[number]["errors"], results[number]
    assert "names.0.name" in results[2]["errors"][0]
    assert "extras.n" in results[3]["errors"][0] and "extras.n" in results[4]["errors"][0]
    assert "appears twice" in results[9]["errors"][0]
    assert client.get(f"{URL}concepts/good2/").status_code == 200


# --- zip imports ---------------------------------------------------------------------------------
def test_zip_items_that_cannot_be_stored_fail_alone(app: Any, client: Any) -> None:
    items = [zipped_concept("good1"),
             zipped_concept("s1", names=[{"name": "@@", "locale": "en"}]).replace(
                 b'"@@"', b'"\\ud800"'),
             zipped_concept("s2", extras={"n": 1}).replace(b'"n": 1', b'"n": 1e999'),
             zipped_concept("s3", extras={"n": 1}).replace(b'"n": 1', b'"n": ' + str(2**70).encode()),
             b"[" * 200 + b"]" * 200, b'"a string"', zipped_concept("a\u0000b"),
             zipped_concept("s4", extras={"deep": 1}).replace(
                 b'"deep": 1', b'"deep": ' + b"[" * 100 + b"]" * 100),
             zipped_concept("good2")]
    job, results = import_job(app, client, export_zip(b"[" + b",".join(items) + b"]"),
                              content_type="application/zip")
    assert job["state"] == "FINISHED", job
    failed = sorted(result["errors"][0] for result in results.values() if result["action"] == "failed")
    assert len(failed) == len(items) - 2, failed
    assert any("lone surrogate escape \\ud800 (near its field 'name')" in message
               for message in failed)
    assert any("extras.n" in message for message in failed)  # 1e999, 2**70
    assert any("nested deeper" in message for message in failed)
    assert any("not an object" in message for message in failed)
    for concept_id in ("good1", "good2"):
        assert client.get(f"{URL}concepts/{concept_id}/").status_code == 200


def test_zip_with_one_200_mb_item_is_refused_before_it_is_built(tmp_path: Path) -> None:
    """The item bound, on its own: the ratio bound (below) would refuse this zip first."""
    application = create_app(app_config(IMPORT_DIR=str(tmp_path / "imports"),
                                        IMPORT_MAX_LINE_BYTES=MB,
                                        IMPORT_MAX_EXPANSION_RATIO=10**6))
    body = huge_item_zip(200 * MB)
    assert len(body) < 300_000
    answer, peak = peak_bytes(lambda: application.test_client().post(
        IMPORTS, data=body, content_type="application/zip", headers=ADMIN))
    assert answer.status_code == 413, answer.get_json()
    assert "Item 2 of 'concepts' is larger than 1048576 bytes" in answer.get_json()["message"]
    # Python holds at most a few reads of the expanded text, never the 200 MB string.
    assert peak < 12 * MB, f"peak {peak / MB:.1f} MB"
    assert list((tmp_path / "imports").glob("*")) == []


@pytest.mark.parametrize("claims", [None, 100], ids=["size-declared", "size-lied-about"])
def test_zip_bomb_of_1_gib_is_refused_without_expanding_it(tmp_path: Path,
                                                           claims: int | None) -> None:
    application = create_app(app_config(IMPORT_DIR=str(tmp_path / "imports"),
                                        IMPORT_MAX_EXPANDED_BYTES=64 * MB))
    body = deflate_bomb(1024 * MB, claims)
    assert len(body) < 2 * MB
    answer, peak = peak_bytes(lambda: application.test_client().post(
        IMPORTS, data=body, content_type="application/zip", headers=ADMIN))
    if claims is None:  # refused from its directory, before a byte is expanded
        assert answer.status_code == 413, answer.get_json()
        assert "more than the 67108864 an import accepts" in answer.get_json()["message"]
    else:  # zipfile stops at the size claimed and the checksum fails
        assert answer.status_code == 400 and "damaged" in answer.get_json()["message"]
    assert peak < 12 * MB, f"peak {peak / MB:.1f} MB"
    assert application.test_client().get(IMPORTS, headers=ADMIN).get_json() == []
    assert list((tmp_path / "imports").glob("*")) == []


def test_zip_expanding_past_100_times_its_size_is_refused_before_it_is_read(
        tmp_path: Path) -> None:
    """Past its first 64 MiB, export.json may expand to 100 times its zipped size (exports
    compress 5 to 25 times): work stays linear in the bytes uploaded."""
    application = create_app(app_config(IMPORT_DIR=str(tmp_path / "imports")))
    client = application.test_client()
    for body in (huge_item_zip(200 * MB), item_bomb(200 * MB)):
        answer, peak = peak_bytes(lambda body=body: client.post(
            IMPORTS, data=body, content_type="application/zip", headers=ADMIN))
        assert answer.status_code == 413, answer.get_json()
        assert "more than 100 times its size zipped" in answer.get_json()["message"]
        assert peak < 4 * MB
    within = item_bomb(63 * MB)  # under the floor: read (and refused for its 1M lines here)
    assert len(within) * 100 < 64 * MB
    small = create_app(app_config(IMPORT_DIR=str(tmp_path / "small"), IMPORT_MAX_LINES=10))
    answer = small.test_client().post(IMPORTS, data=within, content_type="application/zip",
                                      headers=ADMIN)
    assert answer.status_code == 413 and "more than 10 lines" in answer.get_json()["message"]


def test_zip_with_a_huge_directory_is_refused_before_it_is_read(client: Any) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for number in range(2000):
            archive.writestr(f"{number}", b"")
        archive.writestr("export.json", b"{}")
    answer = client.post(IMPORTS, data=buffer.getvalue(), content_type="application/zip",
                         headers=ADMIN)
    assert answer.status_code == 400 and "2001 entries" in answer.get_json()["message"]


# --- CSV rows -----------------------------------------------------------------------------------
CSV_HEADER = b"resource_type,owner_id,source,id,concept_class,name,name_locale\n"


def csv_row(concept_id: str, name: str = "n") -> bytes:
    return f"Concept,O,S,{concept_id},Diagnosis,{name},en\n".encode()


def test_csv_row_past_the_limit_fails_alone(tmp_path: Path) -> None:
    """A quoted cell that never closes would swallow the rest of the file: the row is cut at
    the limit, fails, and the rows after its end (the next quote) import."""
    application = create_app(app_config(IMPORT_DIR=str(tmp_path / "imports"),
                                        IMPORT_MAX_LINE_BYTES=256 * 1024))
    client = application.test_client()
    client.post("/orgs/", json={"id": "O"}, headers=ADMIN)
    client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN)
    spanning = b'Concept,O,S,long,Diagnosis,"' + b"".join(
        b"x" * 1000 + b'""quoted"",\n' for _ in range(1000)) + b'",en\n'
    body = CSV_HEADER + csv_row("before") + spanning + csv_row("after") + \
        b'Concept,O,S,cr,Diagnosis,a\rb,en\n' + csv_row("wide", "w" * 200_000) + csv_row("last")
    job, results = import_job(application, client, body, content_type="text/csv")
    assert job["state"] == "FINISHED", job
    by_action = {result["action"] for result in results.values()}
    assert by_action == {"created", "failed"}
    failed = [result for result in results.values() if result["action"] == "failed"]
    assert len(failed) == 2, failed
    assert "longer than 262144 bytes" in failed[0]["errors"][0]
    assert "not valid CSV" in failed[1]["errors"][0]
    for concept_id in ("before", "after", "wide", "last"):
        assert client.get(f"{URL}concepts/{concept_id}/").status_code == 200, concept_id
    assert client.get(f"{URL}concepts/wide/").get_json()["names"][0]["name"] == "w" * 200_000
