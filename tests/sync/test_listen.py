"""`termsync-sync listen`: signed deliveries checked (signature, timestamp, replays), and a
subscriber that syncs a release within seconds of it through a real webhook on loopback, with an
hourly schedule."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from app import create_app
from app.ops.maintenance import stop_worker_services
from sync.cli import main
from sync.config import ConfigError, ListenSettings, Subscription, build_config
from sync.listen import HookListener, HookVerifier, expected_signature
from sync.store import open_store
from tests.conftest import ADMIN, app_config

from .ocl_stub import LiveServer

SECRET = "listen-secret-0123456789"
BASE = "/orgs/ListenOrg/sources/Listened/"


def delivery(secret: str = SECRET, event: str = "release.created", repository: str = BASE,
             timestamp: int | None = None, delivery_id: str = "d1") -> tuple[dict[str, str], bytes]:
    body = orjson.dumps({"event": event, "repository": {"url": f"http://server{repository}"}})
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"x-termsync-timestamp": stamp, "x-termsync-delivery": delivery_id,
            "x-termsync-signature": expected_signature(secret, stamp, body)}, body


def subscription(**fields: Any) -> Subscription:
    values: dict[str, Any] = {"name": "demo", "server": "http://server", "url": BASE,
                              "hook_secret": SECRET}
    values.update(fields)
    return Subscription(**values)


def test_deliveries_are_verified_before_they_trigger_a_pass() -> None:
    now = time.time()
    verifier = HookVerifier([subscription(), subscription(name="quiet", hook_secret=None)], 300,
                            clock=lambda: now)
    headers, body = delivery()
    assert verifier.verify("demo", headers, body).trigger == "demo"
    # the same delivery again (a replay, or a retry after a lost answer): 200, no pass
    again = verifier.verify("demo", headers, body)
    assert again.status == 200 and again.trigger is None
    for name, (bad_headers, bad_body), status in [
            ("demo", delivery(secret="another-secret-0123456789", delivery_id="d2"), 401),
            ("demo", delivery(timestamp=int(now) - 301, delivery_id="d3"), 401),
            ("demo", delivery(timestamp=int(now) + 301, delivery_id="d4"), 401),
            ("demo", ({**headers, "x-termsync-delivery": "d5"}, body + b" "), 401),
            ("demo", ({"x-termsync-delivery": "d6"}, body), 400),
            ("quiet", delivery(delivery_id="d7"), 404),
            ("nobody", delivery(delivery_id="d8"), 404)]:
        verdict = verifier.verify(name, bad_headers, bad_body)
        assert verdict.status == status and verdict.trigger is None, (name, verdict)
    other = verifier.verify("demo", *delivery(repository="/orgs/X/sources/Y/", delivery_id="d9"))
    assert other.status == 200 and other.trigger is None
    ping = verifier.verify("demo", *delivery(event="ping", delivery_id="d10"))
    assert ping.status == 200 and ping.body == {"pong": True}


def test_the_endpoint_answers_over_http_and_hands_the_pass_on() -> None:
    triggered: list[str] = []
    verifier = HookVerifier([subscription()], 300)
    with HookListener(ListenSettings("127.0.0.1", 0), verifier, triggered.append) as listener:
        url = f"http://127.0.0.1:{listener.port}/hooks/demo"
        headers, body = delivery()
        answer = requests.post(url, data=body, headers=headers, timeout=10)
        assert answer.status_code == 202 and answer.json() == {"triggered": True}
        assert requests.post(url, data=body, headers={**headers, "x-termsync-signature": "x"},
                             timeout=10).status_code == 401
        assert requests.get(url, timeout=10).status_code == 405
        assert requests.post(f"http://127.0.0.1:{listener.port}/other", data=b"{}",
                             timeout=10).status_code == 404
    assert triggered == ["demo"]


def test_listen_settings_are_checked() -> None:
    base = {"subscriptions": [{"name": "demo", "server": "http://s", "url": BASE}]}
    config = build_config({**base, "listen": {"bind": "0.0.0.0:9000", "replay_window": 60}}, {})
    assert config.listen == ListenSettings("0.0.0.0", 9000, 60.0)
    assert build_config(base, {}).listen is None
    for bad in ({"bind": "nowhere"}, {"bind": "h:99999"}, {"replay_window": 0}, {"port": 1}):
        with pytest.raises(ConfigError):
            build_config({**base, "listen": bad}, {})
    with pytest.raises(ConfigError, match="hook_secret"):
        build_config({"subscriptions": [{**base["subscriptions"][0], "hook_secret": "short"}]}, {})


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    """Poll an outcome (generously); fail with `what` if it never comes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_listening_subscriber_syncs_a_release_within_seconds(tmp_path: Path) -> None:
    application = create_app(app_config(WEBHOOK_ALLOW_PRIVATE_TARGETS=True, EXPORT_RETRY_AFTER=1,
                                        JOB_POLL_SECONDS=0.05,
                                        EXPORT_DIR=str(tmp_path / "exports")))
    curator = application.test_client()
    assert curator.post("/orgs/", json={"id": "ListenOrg"}, headers=ADMIN).status_code == 201
    assert curator.post("/orgs/ListenOrg/sources/", json={"id": "Listened"},
                        headers=ADMIN).status_code == 201

    def concept(concept_id: str) -> None:
        assert curator.post(f"{BASE}concepts/", headers=ADMIN, json={
            "id": concept_id, "concept_class": "Misc", "datatype": "N/A",
            "names": [{"name": concept_id, "locale": "en"}]}).status_code == 201

    def release(version: str) -> None:
        assert curator.post(f"{BASE}versions/", json={"id": version, "released": True},
                            headers=ADMIN).status_code == 201

    concept("A")
    release("v1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = curator.post(f"{BASE}webhooks/", headers=ADMIN, json={
        "url": f"http://127.0.0.1:{port}/hooks/demo", "secret": SECRET,
        "events": ["release.created", "export.ready"]})
    assert hook.status_code == 201, hook.get_json()
    database = f"sqlite:///{tmp_path}/mirror.db"
    workers = application.extensions["termsync.jobs"]
    failures: list[BaseException] = []

    def version() -> str | None:
        store = open_store(database)
        try:
            return store.load_state("demo").version
        finally:
            store.close()

    with LiveServer(application) as server:
        config = tmp_path / "sync.toml"
        config.write_text(
            f'[listen]\nbind = "127.0.0.1:{port}"\n\n[[subscriptions]]\nname = "demo"\n'
            f'server = "{server.url}"\nurl = "{BASE}"\ninterval = "1h"\n'
            f'database_uri = "{database}"\nhook_secret = "{SECRET}"\nexport_wait = 120\n')
        workers.start(1)  # builds exports and sends deliveries, as a deployed server does

        def curate() -> None:
            try:
                wait_for(lambda: version() == "v1", "the first pass (v1)")
                concept("B")
                release("v2")  # the hourly schedule is far off: only the webhook can bring it
                wait_for(lambda: version() == "v2", "the pass the webhook triggered (v2)")
            except BaseException as exc:
                failures.append(exc)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # stops `listen` as a service manager does

        driver = threading.Thread(target=curate, daemon=True)
        driver.start()
        try:
            assert main(["listen", "--config", str(config)]) == 0
        finally:
            driver.join(30)
            workers.stop()
            stop_worker_services(application)
    if failures:
        raise failures[0]
    log = curator.get(f"{BASE}webhooks/{hook.get_json()['id']}/deliveries/",
                      headers=ADMIN).get_json()
    created = [entry for entry in log if entry["event"] == "release.created"]
    assert created and created[0]["state"] == "DELIVERED"
    assert created[0]["attempts"][-1]["status"] == 202
    application.extensions["termsync.store"].drop()
