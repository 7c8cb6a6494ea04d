"""PUBLIC_URL is the one origin absolute URLs name: requests for `Host: evil.example` (and with
every forwarded header saying so too) change none of them, on every kind of answer that carries
one (`next`/`Link`, `exportURL`, `Location`/`URL`, feed links, webhook deliveries, the OpenAPI
document, the console). Without it, the request's Host names them, and `X-Forwarded-Host` only
behind as many proxies as TRUSTED_PROXIES says (docs/deployment.md, Absolute URLs)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from app.config import ConfigError, load_config
from tests.app.test_webhooks import Receiver
from tests.conftest import ADMIN, app_on_fresh_database, concept

PUBLIC = "https://terms.example.org"
SOURCE = "/orgs/O/sources/S/"
# A client (or a cache's other client) naming another host every way HTTP allows.
EVIL = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http",
        "X-Forwarded-Port": "666", "X-Forwarded-For": "203.0.113.9",
        "Forwarded": "for=203.0.113.9;host=evil.example;proto=http"}
ABSOLUTE = re.compile(r"[a-z][a-z0-9+.-]*://[^\s\"'<>)]+", re.IGNORECASE)


def released(client: Any, jobs: Any) -> None:
    """Two concepts in source S of O (made if missing), released as v1 with its export built."""
    if client.get(SOURCE, headers=ADMIN).status_code == 404:
        assert client.post("/orgs/", json={"id": "O"}, headers=ADMIN).status_code == 201
        assert client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN).status_code == 201
    for concept_id in ("A", "B"):
        assert client.post(f"{SOURCE}concepts/", json=concept(concept_id),
                           headers=ADMIN).status_code == 201
    assert client.post(f"{SOURCE}versions/", json={"id": "v1", "released": True},
                       headers=ADMIN).status_code == 201
    jobs.run_until_idle()


def answers(client: Any, headers: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """Every kind of answer that names an absolute URL (or may), asked with `headers`."""
    asked = {**ADMIN, **headers}
    for method, path, kwargs in (
            ("GET", f"{SOURCE}concepts/?limit=1", {}),  # next, Link
            ("GET", "/orgs/?limit=1", {}),
            ("GET", f"{SOURCE}?includeConcepts=true&limit=1&cursor=", {}),
            ("GET", f"{SOURCE}v1/export/", {}),  # exportURL
            ("HEAD", f"{SOURCE}v1/export/", {}),
            ("POST", f"{SOURCE}v1/export/", {}),  # 303 Location, URL
            ("POST", SOURCE.rstrip("/") + "/versions", {"json": {"id": "x"}}),  # 308
            ("POST", "/importers/bulk-import/", {"data": b"", "content_type": "application/x-ndjson"}),
            ("GET", f"{SOURCE}feed.xml", {}), ("GET", "/feed.xml", {}),
            ("GET", f"{SOURCE}webhooks/", {}), ("GET", "/api/openapi.json", {}), ("GET", "/console/", {}),
            ("GET", "/console/nothing-here", {}), ("GET", "/nothing-here/", {})):
        answer = client.open(path, method=method, headers=asked, **kwargs)
        yield f"{method} {path} {answer.status_code}", answer
        answer.close()


def text_of(answer: Any) -> str:
    """An answer's headers and body, as text (a zip's bytes as whatever they decode to)."""
    return "\n".join(f"{key}: {value}" for key, value in answer.headers.items()) + "\n" + \
        answer.get_data().decode("utf-8", "replace")


def test_public_url_is_the_only_origin_absolute_urls_name() -> None:
    for app in app_on_fresh_database(PUBLIC_URL=PUBLIC + "/", TRUSTED_PROXIES=1,
                                     WEBHOOK_ALLOW_PRIVATE_TARGETS=True):
        client = app.test_client()
        with Receiver() as receiver:
            assert client.post("/orgs/", json={"id": "O"}, headers=ADMIN).status_code == 201
            assert client.post("/orgs/O/sources/", json={"id": "S"},
                               headers=ADMIN).status_code == 201
            hook = client.post(f"{SOURCE}webhooks/", json={"url": receiver.url},
                               headers={**ADMIN, **EVIL})  # made from evil.example's view
            assert hook.status_code == 201, hook.get_json()
            released(client, app.extensions["termsync.jobs"])  # deliveries run as jobs
            deliveries = [request["body"].decode() for request in receiver.requests]
        assert deliveries and not any("evil" in body for body in deliveries)
        assert any(f'"{PUBLIC}{SOURCE}' in body for body in deliveries), deliveries

        named: dict[str, list[str]] = {}
        for label, answer in answers(client, EVIL):
            text = text_of(answer)
            assert "evil.example" not in text and ":666" not in text, (label, text[:3000])
            named[label] = [url for url in ABSOLUTE.findall(text)
                            if "terms.example.org" in url or "127.0.0.1" in url]
        assert all(url.startswith(PUBLIC + "/") for urls in named.values() for url in urls
                   if "127.0.0.1" not in url), named
        for label in (f"GET {SOURCE}concepts/?limit=1 200",
                      f"GET {SOURCE}v1/export/ 200", f"HEAD {SOURCE}v1/export/ 200",
                      f"GET {SOURCE}feed.xml 200", "GET /feed.xml 200"):
            assert any(url.startswith(PUBLIC + "/") for url in named[label]), (label, named)


def test_without_public_url_the_request_names_the_origin() -> None:
    """TRUSTED_PROXIES = 0: the Host the request was made to; forwarded headers are anyone's to
    send, so they name nothing. TRUSTED_PROXIES = 1 (nginx in front): the proxy's
    X-Forwarded-Host and -Proto, which nginx sets from the request it received."""
    for app in app_on_fresh_database():
        client = app.test_client()
        released(client, app.extensions["termsync.jobs"])
        answer = client.get(f"{SOURCE}concepts/?limit=1", headers={
            "Host": "terms.example.org", "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https"})
        assert answer.headers["next"].startswith("http://terms.example.org/")
    for app in app_on_fresh_database(TRUSTED_PROXIES=1):
        client = app.test_client()
        released(client, app.extensions["termsync.jobs"])
        answer = client.head(f"{SOURCE}v1/export/", headers={
            "Host": "127.0.0.1:8000", "X-Forwarded-Host": "terms.example.org",
            "X-Forwarded-Proto": "https"})
        answer.close()
        assert answer.headers["exportURL"].startswith("https://terms.example.org/orgs/O/")


@pytest.mark.parametrize("value", ["terms.example.org", "ftp://terms.example.org",
                                   "https://terms.example.org/termsync",
                                   "https://terms.example.org/?x=1", "https://:443",
                                   "https://terms.example.org:99999"])
def test_public_url_must_be_an_origin(value: str) -> None:
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        load_config({"PUBLIC_URL": value})
    assert load_config({"PUBLIC_URL": "HTTPS://Terms.Example.org:8443/"})["PUBLIC_URL"] == \
        "https://terms.example.org:8443"
