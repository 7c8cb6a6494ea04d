"""Atom feeds: parsed with a real XML parser, Atom's required elements checked, entries matching
the released versions, conditional GET, visibility."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

from tests.conftest import ADMIN

ATOM = "{http://www.w3.org/2005/Atom}"
NCTS = "{http://ns.electronichealth.net.au/ncts/syndication/asf/extensions/1.0.0}"
TERMSYNC = "{urn:x-termsync:syndication:1}"
BASE = "/orgs/FeedOrg/sources/Fed/"


def parse_atom(answer: Any) -> ET.Element:
    """The feed of an answer, checked against RFC 4287's required elements."""
    assert answer.status_code == 200, answer.data[:500]
    assert answer.headers["Content-Type"].startswith("application/atom+xml")
    feed = ET.fromstring(answer.data)
    assert feed.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated"):
        assert len(feed.findall(f"{ATOM}{name}")) == 1, name
    assert feed.find(f"{ATOM}author/{ATOM}name") is not None  # so entries need none of their own
    assert feed.find(f"{ATOM}link[@rel='self']").get("href", "").endswith("feed.xml")
    stamps = [feed.findtext(f"{ATOM}updated")]
    ids = []
    for entry in feed.findall(f"{ATOM}entry"):
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"{ATOM}{name}")) == 1, name
        assert entry.find(f"{ATOM}link[@rel='alternate']") is not None  # no atom:content
        assert entry.findtext(f"{NCTS}contentItemIdentifier")
        stamps.append(entry.findtext(f"{ATOM}updated"))
        ids.append(entry.findtext(f"{ATOM}id"))
    for stamp in stamps:
        datetime.fromisoformat(str(stamp))  # RFC 3339 date-times
    assert len(set(ids)) == len(ids) and all(str(i).startswith("urn:uuid:") for i in ids)
    assert feed.findtext(f"{ATOM}updated") == max(stamps[1:], default=stamps[0])
    return feed


def entries(feed: ET.Element) -> dict[str, ET.Element]:
    """Entries by version id (the end of contentItemVersion)."""
    return {str(entry.findtext(f"{NCTS}contentItemVersion")).rstrip("/").rsplit("/", 1)[-1]: entry
            for entry in feed.findall(f"{ATOM}entry")}


def run_jobs(app: Any) -> None:
    app.extensions["termsync.jobs"].run_until_idle()


def make_source(client: Any, public_access: str = "View", org: str = "FeedOrg",
                source_id: str = "Fed") -> str:
    if client.get(f"/orgs/{org}/", headers=ADMIN).status_code == 404:
        assert client.post("/orgs/", json={"id": org}, headers=ADMIN).status_code == 201
    base = f"/orgs/{org}/sources/{source_id}/"
    assert client.post(f"/orgs/{org}/sources/", json={"id": source_id, "public_access":
                                                      public_access}, headers=ADMIN).status_code == 201
    return base


def add_concept(client: Any, base: str, concept_id: str) -> None:
    assert client.post(f"{base}concepts/", headers=ADMIN, json={
        "id": concept_id, "concept_class": "Misc", "datatype": "N/A",
        "names": [{"name": concept_id, "locale": "en"}]}).status_code == 201


def cut(client: Any, base: str, version: str, released: bool = True) -> None:
    assert client.post(f"{base}versions/", json={"id": version, "released": released},
                       headers=ADMIN).status_code == 201


def test_the_feed_has_one_entry_per_released_version(app: Any, client: Any) -> None:
    base = make_source(client)
    add_concept(client, base, "A")
    cut(client, base, "v1")
    run_jobs(app)  # v1's export is built
    add_concept(client, base, "B")
    cut(client, base, "v2")  # released, its export only queued
    cut(client, base, "v3", released=False)
    add_concept(client, base, "C")
    cut(client, base, "v4")
    assert client.patch(f"{base}v4/", json={"released": False}, headers=ADMIN).status_code == 200

    feed = parse_atom(client.get(f"{base}feed.xml"))
    released = [version["id"] for version in client.get(f"{base}versions/?released=true").get_json()]
    found = entries(feed)
    assert list(found) == released == ["v2", "v1"]

    ready = found["v1"].find(f"{ATOM}link[@rel='alternate']")
    export = client.head(f"{base}v1/export/")
    assert export.status_code == 200
    assert ready.get("href") == export.headers["exportURL"]
    assert ready.get("length") == export.headers["Content-Length"]
    assert ready.get(f"{NCTS}sha256Hash") == export.headers["ETag"].strip('"')
    assert ready.get("type") == "application/zip"

    pending = found["v2"].find(f"{ATOM}link[@rel='alternate']")
    assert pending.get("href") == f"http://localhost{base}v2/export/"
    assert pending.get("length") is None and pending.get(f"{NCTS}sha256Hash") is None
    assert pending.get(f"{TERMSYNC}exportState") == "PENDING"
    deltas = [link for link in found["v2"].findall(f"{ATOM}link[@rel='related']")
              if link.get(f"{TERMSYNC}since")]
    assert [link.get("href") for link in deltas] == [f"http://localhost{base}v2/export/?since=v1"]
    assert deltas[0].get("length") is None and deltas[0].get(f"{NCTS}sha256Hash") is None
    assert found["v2"].findtext(f"{NCTS}contentItemIdentifier") == f"http://localhost{base}"
    assert found["v2"].findtext(f"{TERMSYNC}contentChecksum") == client.get(
        f"{base}v2/").get_json()["checksums"]["content"]
    # ids are stable: the same on every request
    again = entries(parse_atom(client.get(f"{base}feed.xml")))
    assert {key: entry.findtext(f"{ATOM}id") for key, entry in again.items()} == \
        {key: entry.findtext(f"{ATOM}id") for key, entry in found.items()}
    # once built, a delta link names the bytes its URL answers, and the entry is updated
    run_jobs(app)
    built = entries(parse_atom(client.get(f"{base}feed.xml")))["v2"]
    [delta] = [link for link in built.findall(f"{ATOM}link[@rel='related']")
               if link.get(f"{TERMSYNC}since")]
    with client.get(f"{base}v2/export/?since=v1") as package:
        assert package.status_code == 200
        data = package.data
    assert delta.get(f"{NCTS}sha256Hash") == hashlib.sha256(data).hexdigest()
    assert delta.get("length") == str(len(data))
    assert built.findtext(f"{ATOM}updated") > found["v2"].findtext(f"{ATOM}updated")


def test_conditional_get(app: Any, client: Any) -> None:
    base = make_source(client)
    add_concept(client, base, "A")
    cut(client, base, "v1")
    first = client.get(f"{base}feed.xml")
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert client.get(f"{base}feed.xml", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"{base}feed.xml", headers={"If-None-Match": f'W/{etag}'}).status_code == 304
    assert client.get(f"{base}feed.xml", headers={"If-Modified-Since": modified}).status_code == 304
    assert client.get(f"{base}feed.xml", headers={"If-None-Match": '"other"',
                                                  "If-Modified-Since": modified}).status_code == 200
    run_jobs(app)  # the export is ready: the entry changes (hash, length, updated)
    changed = client.get(f"{base}feed.xml", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert entries(parse_atom(changed))["v1"].find(f"{ATOM}link[@rel='alternate']").get("length")
    assert client.get(f"{base}feed.xml", headers={
        "If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"}).status_code == 200


def test_private_repositories_are_hidden_from_feeds(app: Any, client: Any) -> None:
    public = make_source(client)
    hidden = make_source(client, public_access="None", source_id="Hidden")
    for base in (public, hidden):
        add_concept(client, base, "A")
        cut(client, base, "v1")
    assert client.post("/orgs/", json={"id": "QuietOrg", "public_access": "None"},
                       headers=ADMIN).status_code == 201
    in_private_org = make_source(client, org="QuietOrg", source_id="Open")  # public, its org not
    add_concept(client, in_private_org, "A")
    cut(client, in_private_org, "v1")
    assert client.get(f"{in_private_org}feed.xml").status_code == 404
    assert client.get(f"{hidden}feed.xml").status_code == 404
    assert client.get(hidden.rstrip("/") + "/feed.xml").status_code == 404
    assert entries(parse_atom(client.get(f"{hidden}feed.xml", headers=ADMIN))).keys() == {"v1"}
    server = parse_atom(client.get("/feed.xml", headers=ADMIN))  # public only, whoever asks
    named = [entry.findtext(f"{NCTS}contentItemIdentifier") for entry in
             server.findall(f"{ATOM}entry")]
    assert named == [f"http://localhost{public}"]
    assert server.find(f"{ATOM}link[@rel='self']").get("href") == "http://localhost/feed.xml"


def test_the_server_feed_lists_every_public_release_newest_first(app: Any, client: Any) -> None:
    assert parse_atom(client.get("/feed.xml")).findall(f"{ATOM}entry") == []
    first = make_source(client, source_id="First")
    second = make_source(client, source_id="Second")
    add_concept(client, first, "A")
    cut(client, first, "v1")
    add_concept(client, second, "A")
    cut(client, second, "r1")
    add_concept(client, first, "B")
    cut(client, first, "v2")
    feed = parse_atom(client.get("/feed.xml"))
    versions = [entry.findtext(f"{NCTS}contentItemVersion") for entry in
                feed.findall(f"{ATOM}entry")]
    assert versions == [f"http://localhost{first}v2/", f"http://localhost{second}r1/",
                        f"http://localhost{first}v1/"]
    delta = [link.get(f"{TERMSYNC}since") for link in
             feed.find(f"{ATOM}entry").findall(f"{ATOM}link[@rel='related']")]
    assert "v1" in delta
