"""`termsync-sync listen`: a small HTTP endpoint for termsync's webhooks that triggers a pass at
once, beside the schedule (which stays, as a safety net for a lost delivery).

A subscription that has a `hook_secret` listens at `POST /hooks/{name}` on the `[listen]` bind
address; the server's hook for it names that URL and the same secret. A delivery is taken when:

- `X-Termsync-Timestamp` (Unix seconds) is within `replay_window` seconds of this clock;
- `X-Termsync-Signature` is `sha256=` + the hex HMAC-SHA256, keyed with the secret, of the
  timestamp, a dot and the body, compared in constant time;
- its `X-Termsync-Delivery` id was not taken within the replay window (a replayed or retried
  delivery is answered 200 and triggers nothing);
- the body's repository is the one the subscription follows.

A release, a ready export or a version unreleased then triggers a pass through the scheduler's
own job (`max_instances=1` still holds: a delivery during a pass makes that job run one more pass
when it ends); the answer (202) goes out at once, before the pass. Refusals: 401 (signature or
timestamp), 404 (no such subscription, or one without a secret), 400, 405, 413.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson

from .config import ListenSettings, Subscription

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
TRIGGERING = ("release.created", "export.ready", "version.unreleased")
PATH = re.compile(r"^/hooks/([A-Za-z0-9][A-Za-z0-9_.-]*)/?$")


@dataclass(frozen=True)
class Verdict:
    """What the endpoint answers a delivery, and which subscription it triggers (if any)."""

    status: int
    body: dict[str, Any]
    trigger: str | None = None


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 of `{timestamp}.{body}` keyed with the hook's secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class HookVerifier:
    """Checks deliveries against the subscriptions' secrets, the clock and the ids seen."""

    def __init__(self, subscriptions: list[Subscription], replay_window: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.subscriptions = {sub.name: sub for sub in subscriptions if sub.hook_secret}
        self.replay_window = replay_window
        self.clock = clock
        self._seen: dict[str, float] = {}  # delivery id -> when it may be forgotten
        self._guard = threading.Lock()

    def _first_time(self, delivery: str, now: float) -> bool:
        with self._guard:
            for known, until in list(self._seen.items()):
                if until < now:
                    del self._seen[known]
            if delivery in self._seen:
                return False
            self._seen[delivery] = now + 2 * self.replay_window
            return True

    def verify(self, name: str, headers: dict[str, str], body: bytes) -> Verdict:
        """The answer to one delivery for subscription `name` (headers in lower case)."""
        subscription = self.subscriptions.get(name)
        if subscription is None or not subscription.hook_secret:
            return Verdict(404, {"error": f"no subscription {name!r} listens here"})
        timestamp = headers.get("x-termsync-timestamp", "")
        given = headers.get("x-termsync-signature", "")
        delivery = headers.get("x-termsync-delivery", "")
        if not timestamp.isdigit() or not given or not delivery:
            return Verdict(400, {"error": "X-Termsync-Timestamp, -Signature and -Delivery "
                                          "are required"})
        now = self.clock()
        if abs(now - int(timestamp)) > self.replay_window:
            return Verdict(401, {"error": "the timestamp is outside the replay window"})
        if not hmac.compare_digest(given, expected_signature(subscription.hook_secret,
                                                             timestamp, body)):
            return Verdict(401, {"error": "the signature does not match"})
        try:
            event = orjson.loads(body)
            kind = str(event["event"])
            repository = urlsplit(str(event["repository"]["url"])).path
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return Verdict(400, {"error": "the body is not a termsync webhook delivery"})
        if not self._first_time(delivery, now):
            return Verdict(200, {"duplicate": True})
        if repository != subscription.url:
            logger.warning("[%s] webhook %s names %s, not %s: ignored", name, kind, repository,
                           subscription.url)
            return Verdict(200, {"triggered": False, "reason": "another repository"})
        if kind == "ping":
            return Verdict(200, {"pong": True})
        if kind not in TRIGGERING:
            logger.warning("[%s] webhook %s: nothing to do", name, kind)
            return Verdict(200, {"triggered": False})
        logger.info("[%s] webhook %s (delivery %s): a pass starts now", name, kind, delivery)
        return Verdict(202, {"triggered": True}, trigger=name)


class Passes:
    """Runs a subscription's passes for the scheduler's job, one more when a delivery came in
    during a pass (so none is lost and never two run at once)."""

    def __init__(self, run: Callable[[Subscription], Any]) -> None:
        self.run = run
        self.flags: dict[str, threading.Event] = {}
        self._guard = threading.Lock()

    def _flag(self, name: str) -> threading.Event:
        with self._guard:
            return self.flags.setdefault(name, threading.Event())

    def __call__(self, subscription: Subscription) -> None:
        """The scheduler's job for one subscription."""
        flag = self._flag(subscription.name)
        while True:
            flag.clear()
            self.run(subscription)
            if not flag.is_set():
                return

    def trigger(self, name: str, scheduler: Any, job_id: str) -> None:
        """Ask for a pass now: the scheduler's job runs at once (or, while it runs, once more)."""
        self._flag(name).set()
        scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))


class HookListener:
    """The endpoint: a threaded HTTP server in a daemon thread while in a `with` block."""

    def __init__(self, settings: ListenSettings, verifier: HookVerifier,
                 trigger: Callable[[str], None]) -> None:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "termsync-sync-listen"

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                match = PATH.match(self.path)
                if match is None:
                    self._answer(404, {"error": "POST to /hooks/{subscription}"})
                    return
                try:
                    length = int(self.headers.get("Content-Length") or -1)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:
                    self._answer(413 if length > MAX_BODY else 400,
                                 {"error": f"a body of 0..{MAX_BODY} bytes with its length"})
                    return
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                verdict = listener.verifier.verify(match.group(1), headers, body)
                self._answer(verdict.status, verdict.body)
                if verdict.trigger is not None:
                    listener.trigger(verdict.trigger)

            def do_GET(self) -> None:
                self._answer(405, {"error": "POST webhook deliveries here"})

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("listen: " + format, *args)

        self.verifier = verifier
        self.trigger = trigger
        self.server = ThreadingHTTPServer((settings.host, settings.port), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="termsync-sync-listen")

    def __enter__(self) -> HookListener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
