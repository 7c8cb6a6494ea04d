"""Webhooks end to end: real receivers on loopback, signatures checked as a receiver would,
retries across a server restart, the SSRF rules, switching off after failures, the console."""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from app import create_app
from app.webhooks.service import backoff_seconds
from tests.app.test_console import Browser, text
from tests.conftest import ADMIN, app_config

BASE = "/orgs/HookOrg/sources/Hooked/"


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request; answers `status` (and a
    `Location` when it is a redirect)."""

    def __init__(self, port: int = 0, status: int = 200, location: str | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = status
        self.location = location
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body})
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/termsync"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def verify(secret: str, request: dict[str, Any]) -> dict[str, Any]:
    """What a receiver does (docs/api.md, Webhooks): recompute the signature over
    timestamp + "." + body and compare in constant time; the body as JSON."""
    headers = {name.lower(): value for name, value in request["headers"].items()}
    expected = hmac.new(secret.encode(), headers["x-termsync-timestamp"].encode() + b"."
                        + request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-termsync-signature"], f"sha256={expected}")
    body: dict[str, Any] = orjson.loads(request["body"])
    assert headers["x-termsync-event"] == body["event"]
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-termsync-delivery"])
    return body


def free_port() -> int:
    """A port nothing listens on (bound and closed; loopback only)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def hook_app() -> Iterator[Any]:
    config = app_config(WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    application = create_app(config)
    application.config["TEST_CONFIG"] = config
    client = application.test_client()
    assert client.post("/orgs/", json={"id": "HookOrg"}, headers=ADMIN).status_code == 201
    assert client.post("/orgs/HookOrg/sources/", json={"id": "Hooked"},
                       headers=ADMIN).status_code == 201
    assert client.post(f"{BASE}concepts/", headers=ADMIN, json={
        "id": "C1", "concept_class": "Misc", "datatype": "N/A",
        "names": [{"name": "One", "locale": "en"}]}).status_code == 201
    yield application
    application.extensions["termsync.store"].drop()


def register(client: Any, url: str, **fields: Any) -> dict[str, Any]:
    answer = client.post(f"{BASE}webhooks/", json={"url": url, **fields}, headers=ADMIN)
    assert answer.status_code == 201, answer.get_json()
    created: dict[str, Any] = answer.get_json()
    return created


def run_jobs(app: Any) -> int:
    return int(app.extensions["termsync.jobs"].run_until_idle())


def release(client: Any, version: str) -> None:
    answer = client.post(f"{BASE}versions/", json={"id": version, "released": True}, headers=ADMIN)
    assert answer.status_code == 201, answer.get_json()


def deliveries(client: Any, hook: dict[str, Any]) -> list[dict[str, Any]]:
    answer = client.get(f"{BASE}webhooks/{hook['id']}/deliveries/", headers=ADMIN)
    assert answer.status_code == 200, answer.get_json()
    found: list[dict[str, Any]] = answer.get_json()
    return found


def test_deliveries_are_signed_and_verified_by_a_real_receiver(hook_app: Any) -> None:
    client = hook_app.test_client()
    with Receiver() as receiver:
        hook = register(client, receiver.url)
        secret = hook["secret"]
        assert len(secret) >= 32 and hook["secret_hint"] == f"…{secret[-4:]}"
        # the secret is shown once: never in a read or a list
        assert "secret" not in client.get(f"{BASE}webhooks/{hook['id']}/", headers=ADMIN).get_json()
        assert all("secret" not in listed for listed in
                   client.get(f"{BASE}webhooks/", headers=ADMIN).get_json())

        release(client, "v1")
        run_jobs(hook_app)  # the export builds, then both deliveries go out
        bodies = [verify(secret, request) for request in receiver.requests]
    assert [body["event"] for body in bodies] == ["release.created", "export.ready"]
    created, ready = bodies
    origin = "http://localhost"
    assert created["repository"]["url"] == f"{origin}{BASE}"
    assert created["version"]["id"] == "v1" and created["version"]["released"] is True
    assert created["export"]["url"] == f"{origin}{BASE}v1/export/"
    export = client.head(f"{BASE}v1/export/")
    assert export.status_code == 200
    assert ready["export"]["sha256"] == export.headers["ETag"].strip('"')
    assert ready["export"]["size"] == int(export.headers["Content-Length"])
    assert ready["export"]["fileURL"] == export.headers["exportURL"]
    assert ready["lastUpdated"] == export.headers["lastUpdated"]
    assert ready["version"]["checksums"]["content"] == client.get(f"{BASE}v1/").get_json()[
        "checksums"]["content"]
    logged = deliveries(client, hook)
    assert [entry["state"] for entry in logged] == ["DELIVERED", "DELIVERED"]
    assert logged[0]["attempts"][0]["status"] == 200


def test_a_receiver_that_is_down_gets_the_delivery_after_a_server_restart(hook_app: Any) -> None:
    client = hook_app.test_client()
    port = free_port()
    hook = register(client, f"http://127.0.0.1:{port}/hooks/termsync", events=["release.created"])
    release(client, "v1")
    run_jobs(hook_app)
    [delivery] = deliveries(client, hook)
    assert delivery["state"] == "PENDING" and delivery["attempt_count"] == 1
    assert delivery["attempts"][0]["status"] is None and delivery["attempts"][0]["error"]
    assert delivery["next_attempt_on"] > delivery["attempts"][0]["at"]

    # The server stops; a new one starts on the same database: the retry waits in the queue.
    config = hook_app.config["TEST_CONFIG"]
    restarted = create_app(config)
    workers = restarted.extensions["termsync.jobs"]
    assert run_jobs(restarted) == 0  # not due yet: its backoff holds it back
    with Receiver(port) as receiver:
        real_clock = workers.queue.clock
        workers.queue.clock = lambda: real_clock() + timedelta(hours=2)  # the backoff has passed
        assert run_jobs(restarted) >= 1
        [request] = receiver.requests
    body = verify(hook["secret"], request)
    assert body["event"] == "release.created" and body["version"]["id"] == "v1"
    [delivery] = deliveries(restarted.test_client(), hook)
    assert delivery["state"] == "DELIVERED" and delivery["attempt_count"] == 2
    assert request["headers"]["X-Termsync-Delivery"] == delivery["id"]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://127.1.2.3:8080/", "http://10.0.0.8/hook",
    "http://172.16.5.4/", "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook", "http://[::ffff:127.0.0.1]/", "http://[fe80::1]/",
    "http://100.64.0.1/", "http://0.0.0.0/", "http://localhost:9/hook",
    "ftp://example.org/hook", "file:///etc/passwd", "gopher://example.org/",
    "http://user:secret@example.org/hook", "http:///nohost", "http://exa mple.org/"])
def test_ssrf_targets_are_refused(client: Any, source: Any, url: str) -> None:
    base = source()
    answer = client.post(f"{base}webhooks/", json={"url": url}, headers=ADMIN)
    assert answer.status_code == 400, (url, answer.get_json())
    assert "refused" in answer.get_json()["message"] or "url" in answer.get_json()["errors"]


def test_private_targets_are_checked_again_at_delivery_and_redirects_not_followed(
        hook_app: Any) -> None:
    client = hook_app.test_client()
    with Receiver() as elsewhere, Receiver(status=302, location=elsewhere.url) as redirecting:
        by_name = register(client, f"http://localhost:{elsewhere.port}/by-name", events=["export.ready"])
        redirect = register(client, redirecting.url, events=["export.ready"])
        # The admin setting is withdrawn: the next server refuses the same targets when it
        # delivers (a name's addresses are looked up again at every attempt: DNS rebinding).
        strict = create_app(dict(hook_app.config["TEST_CONFIG"],
                                 WEBHOOK_ALLOW_PRIVATE_TARGETS=False))
        strict_client = strict.test_client()
        assert strict_client.post(f"{BASE}webhooks/{by_name['id']}/ping/",
                                  headers=ADMIN).status_code == 202
        run_jobs(strict)
        [refused] = deliveries(strict_client, by_name)
        assert refused["attempts"][0]["error"].startswith("refused: localhost resolves to 127.0.0.1")
        assert elsewhere.requests == []

        assert client.post(f"{BASE}webhooks/{redirect['id']}/ping/", headers=ADMIN).status_code == 202
        run_jobs(hook_app)
        [redirected] = deliveries(client, redirect)
        assert redirected["attempts"][0]["status"] == 302
        assert "not followed" in redirected["attempts"][0]["error"]
        assert len(redirecting.requests) == 1 and elsewhere.requests == []


def test_a_hook_failing_again_and_again_is_switched_off_with_an_alert(hook_app: Any) -> None:
    client = hook_app.test_client()
    with Receiver(status=500) as receiver:
        hook = register(client, receiver.url)
        store = hook_app.extensions["termsync.store"]
        limit = 3
        for _ in range(limit):
            assert client.post(f"{BASE}webhooks/{hook['id']}/ping/", headers=ADMIN).status_code == 202
        settings = hook_app.extensions["termsync.webhooks"].settings
        object.__setattr__(settings, "disable_after", limit)  # the app's WEBHOOK_DISABLE_AFTER
        object.__setattr__(settings, "max_attempts", 1)
        run_jobs(hook_app)
        assert len(receiver.requests) == limit
    shown = client.get(f"{BASE}webhooks/{hook['id']}/", headers=ADMIN).get_json()
    assert shown["active"] is False and shown["failures"] == limit
    assert shown["disabled_on"] and "HTTP 500" in shown["disabled_reason"]
    # /readyz tells, and stays ready
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ok"
    assert ready.get_json()["checks"]["webhooks"]["disabled"] == 1
    assert ready.get_json()["checks"]["webhooks"]["hooks"][0]["id"] == hook["id"]
    # a switched-off hook is sent no events
    release(client, "v1")
    run_jobs(hook_app)
    assert len(deliveries(client, hook)) == limit
    # switching it on again clears the alert
    answer = client.patch(f"{BASE}webhooks/{hook['id']}/", json={"active": True}, headers=ADMIN)
    assert answer.get_json()["active"] is True and answer.get_json()["failures"] == 0
    assert client.get("/readyz").get_json()["checks"]["webhooks"]["disabled"] == 0
    assert store.webhooks.disabled()[1] == 0


def test_only_owners_and_admins_manage_hooks(hook_app: Any) -> None:
    client = hook_app.test_client()
    hook = register(client, "http://127.0.0.1:9/")
    assert client.get(f"{BASE}webhooks/").status_code == 401
    assert client.post("/users/", json={"username": "outsider"}, headers=ADMIN).status_code == 201
    token = client.post("/users/outsider/tokens/", json={}, headers=ADMIN).get_json()["token"]
    outsider = {"Authorization": f"Token {token}"}
    assert client.get(f"{BASE}webhooks/", headers=outsider).status_code == 403
    assert client.delete(f"{BASE}webhooks/{hook['id']}/", headers=outsider).status_code == 403
    assert client.get(f"{BASE}webhooks/nope/", headers=ADMIN).status_code == 404
    assert client.post(f"{BASE}webhooks/", json={"url": "http://127.0.0.1:9/",
                                                 "events": ["nothing"]},
                       headers=ADMIN).status_code == 422
    assert client.delete(f"{BASE}webhooks/{hook['id']}/", headers=ADMIN).status_code == 204
    assert client.get(f"{BASE}webhooks/", headers=ADMIN).get_json() == []


def test_unrelease_delete_and_redeliver(hook_app: Any) -> None:
    client = hook_app.test_client()
    with Receiver() as receiver:
        hook = register(client, receiver.url, events=["release.created", "version.unreleased",
                                                      "repository.deleted"])
        release(client, "v1")
        assert client.patch(f"{BASE}v1/", json={"released": False},
                            headers=ADMIN).status_code == 200
        run_jobs(hook_app)
        first = deliveries(client, hook)[-1]
        answer = client.post(f"{BASE}webhooks/{hook['id']}/deliveries/{first['id']}/redeliver/",
                             headers=ADMIN)
        assert answer.status_code == 202 and answer.get_json()["redelivery_of"] == first["id"]
        run_jobs(hook_app)
        assert client.delete(BASE, headers=ADMIN).status_code == 204
        run_jobs(hook_app)
        events = [verify(hook["secret"], request)["event"] for request in receiver.requests]
        assert receiver.requests[0]["body"] == receiver.requests[2]["body"]  # the same body again
    assert events == ["release.created", "version.unreleased", "release.created",
                      "repository.deleted"]
    store = hook_app.extensions["termsync.store"]
    assert store.webhooks.get(hook["id"]) is None  # gone with its repository, once told


def test_the_console_shows_hooks_their_log_and_the_alert(hook_app: Any) -> None:
    browser = Browser(hook_app)
    browser.sign_in("admin-token-for-tests")
    page = "/console/orgs/HookOrg/sources/Hooked/webhooks/"
    browser.get("/console/orgs/HookOrg/sources/Hooked/")
    assert 'id="webhooks-link"' in browser.page
    with Receiver(status=503) as receiver:
        browser.get(page)
        browser.post(page, {"url": receiver.url, "events": ["release.created", "export.ready"]},
                     status=201)
        secret = re.search(r"<code>([A-Za-z0-9_-]{40,})</code>", browser.page)
        assert secret and "this once" in text(browser.page)
        hook_id = re.search(r'id="hook-([0-9a-f]{32})"', browser.page)
        assert hook_id
        browser.post(f"{page}{hook_id.group(1)}/ping")
        run_jobs(hook_app)
    browser.get(page)
    shown = text(browser.page)
    assert "ping" in shown and "PENDING" in shown and "503" in shown
    # a form without its CSRF token is refused
    browser.post(f"{page}{hook_id.group(1)}/ping", csrf=False, status=403)
    # the alert: switched off after failing, on the hooks page and the repository's page
    store = hook_app.extensions["termsync.store"]
    store.webhooks.record_attempt(hook_id.group(1), False, "2026-01-01T00:00:00.000000Z", 1,
                                  "1 failed attempt in a row; the last: HTTP 503")
    browser.get(page)
    assert f'id="alert-{hook_id.group(1)}"' in browser.page
    browser.get("/console/orgs/HookOrg/sources/Hooked/")
    assert 'id="webhooks-alert"' in browser.page
    # someone who cannot manage the repository's hooks does not see them
    other = Browser(hook_app)
    other.get(page, status=303)  # not signed in: to the sign-in form


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    waits = [backoff_seconds(attempt, 10.0, 3600.0) for attempt in range(1, 12)]
    for attempt, wait in enumerate(waits, start=1):
        ceiling = min(3600.0, 10.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= wait <= ceiling


def test_the_termsync_command_manages_hooks(tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    from app.cli import main

    uri = f"sqlite:///{tmp_path}/termsync.db"
    monkeypatch.setenv("TERMSYNC_EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setenv("TERMSYNC_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
    application = create_app({"DATABASE_URI": uri, "ADMIN_TOKEN": "admin-token-for-tests",
                              "TESTING": True})
    client = application.test_client()
    client.post("/orgs/", json={"id": "HookOrg"}, headers=ADMIN)
    client.post("/orgs/HookOrg/sources/", json={"id": "Hooked"}, headers=ADMIN)

    def run(*argv: str) -> list[dict[str, Any]]:
        capsys.readouterr()
        code = main(["--database-uri", uri, "webhooks", *argv])
        lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert code == 0, (argv, lines)
        return lines

    try:
        with Receiver() as receiver:
            [created] = run("create", BASE, receiver.url, "--event", "release.created",
                            "--origin", "https://terms.example.org")
            assert created["events"] == ["release.created"] and len(created["secret"]) >= 32
            [listed] = run("list", BASE)
            assert listed["id"] == created["id"] and "secret" not in listed
            [pinged] = run("ping", BASE, created["id"], "--now")
            assert pinged["state"] == "DELIVERED"
            body = verify(created["secret"], receiver.requests[0])
            assert body["repository"]["url"] == f"https://terms.example.org{BASE}"
            [logged] = run("deliveries", BASE, created["id"])
            assert logged["id"] == pinged["id"]
            [off] = run("update", BASE, created["id"], "--off")
            assert off["active"] is False
            assert run("disabled") == []  # switched off by hand: no alert
            run("delete", BASE, created["id"])
            assert run("list", BASE) == []
        assert main(["--database-uri", uri, "webhooks", "create", BASE,
                     "ftp://example.org/"]) == 1
        assert main(["--database-uri", uri, "webhooks", "list", "/orgs/No/sources/Such/"]) == 1
    finally:
        application.extensions["termsync.store"].close()


def test_a_receiver_trickling_its_answer_is_cut_off(tmp_path: Any) -> None:
    from app.webhooks.targets import post

    stop = threading.Event()

    class Trickle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            try:
                while not stop.is_set():  # a header line, a byte at a time, for ever
                    self.wfile.write(b"X")
                    self.wfile.flush()
                    stop.wait(0.05)
            except OSError:
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        attempt = post(f"http://127.0.0.1:{server.server_address[1]}/", b"{}", {},
                       timeout=0.3, allow_private=True)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
    assert not attempt.ok and attempt.status is None and attempt.error
