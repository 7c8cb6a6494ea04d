"""The HTTP client: retries, Retry-After, backoff, typed errors, token kept to its server."""

from __future__ import annotations

import pytest

from sync.client import (
    MethodNotAllowed,
    NotFound,
    ServerError,
    ServerUnreachable,
    TermsyncClient,
    parse_retry_after,
)

from .conftest import TOKEN
from .ocl_stub import Fault, LiveServer, StubSource, create_stub_app


def client_for(url, sleeps, **kwargs):
    return TermsyncClient(url, TOKEN, timeout=5, connect_timeout=1, sleep=sleeps,
                          jitter=lambda: 0.5, **kwargs)


def test_429_and_503_retry_after_are_honoured(faults, stub, stub_server, sleeps):
    faults.faults += [Fault(path="versions", status=429, retry_after="3"),
                    Fault(path="versions", status=503, retry_after="11")]
    stub.release("v1")
    latest = client_for(stub_server.url, sleeps).latest_released_version(stub.path)
    assert latest["id"] == "v1"
    assert sleeps.waits == [3.0, 11.0]


def test_5xx_without_retry_after_backs_off_exponentially(faults, stub, stub_server, sleeps):
    faults.faults.append(Fault(path="versions", status=502, times=4))
    client = client_for(stub_server.url, sleeps, max_retries=5, backoff_base=1.0)
    assert client.latest_released_version(stub.path) is None
    # ceiling 1, 2, 4, 8 s; with jitter 0.5 each wait is 3/4 of its ceiling
    assert sleeps.waits == [0.75, 1.5, 3.0, 6.0]


def test_backoff_is_capped_and_retry_after_too(sleeps):
    client = client_for("http://127.0.0.1:9", sleeps, backoff_max=10)
    assert client.backoff(20) <= 10
    assert client.backoff(0, retry_after=3600) == 10


def test_persistent_503_raises_a_typed_error_with_the_server_message(faults, stub, stub_server, sleeps):
    faults.faults.append(Fault(path="versions", status=503, times=100, retry_after="1"))
    with pytest.raises(ServerError) as caught:
        client_for(stub_server.url, sleeps, max_retries=2).latest_released_version(stub.path)
    assert caught.value.status == 503
    assert caught.value.message == "stub fault 503"
    assert sleeps.waits == [1.0, 1.0]


def test_404_and_405_are_typed_and_not_retried(faults, stub, stub_server, sleeps):
    client = client_for(stub_server.url, sleeps)
    with pytest.raises(NotFound) as caught:
        client.get_json(f"{stub.path}nope/")
    assert "not found" in caught.value.message
    faults.faults.append(Fault(path="HEAD/export", status=405, body={
        "code": 405, "status": "Method Not Allowed", "message": "HEAD has no export"}))
    with pytest.raises(MethodNotAllowed, match="HEAD has no export"):
        client.request("GET", f"{stub.path}HEAD/export/")
    assert sleeps.waits == []


def test_unreachable_server_fails_after_retries(sleeps):
    with LiveServer(create_stub_app(StubSource())) as server:
        url = server.url
    client = client_for(url, sleeps, max_retries=2)
    with pytest.raises(ServerUnreachable, match="server unreachable"):
        client.get_json("/orgs/X/sources/S/")
    assert len(sleeps.waits) == 2


def test_token_never_goes_to_another_host_on_redirect(stub, stub_server, sleeps):
    other = StubSource()
    with LiveServer(create_stub_app(other), host="localhost") as elsewhere:
        client = client_for(stub_server.url, sleeps)
        answer = client.get_json(f"/redirect?to={elsewhere.url}{other.path}")
        assert answer.body["id"] == "HEAD"
        assert stub.auth_seen == [f"Token {TOKEN}"]
        assert other.auth_seen == [None]
        # a redirect back to the configured server carries the token again
        client.get_json(f"{elsewhere.url}/redirect?to={stub_server.url}{stub.path}")
        assert stub.auth_seen[-1] == f"Token {TOKEN}"
        assert other.auth_seen == [None, None]


def test_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("-5") == 0.0
