"""Webhooks: hooks of a repository, the events that queue deliveries, and the delivery job.

An event (a release, a ready export, a version unreleased or deleted, the repository deleted, a
ping) writes one delivery per hook subscribed to it, in the delivery log, and queues a job. The
job sends one attempt (app/webhooks/targets.py: checked and pinned target, short timeout, no
redirects); a failed attempt queues the next one with exponential backoff and jitter
(`not_before` in the job queue: it waits in the database, so a restart loses none). Every
attempt is logged on its delivery (the last ATTEMPTS_KEPT) and counted on its hook: a hook that
fails WEBHOOK_DISABLE_AFTER attempts in a row is switched off, which the console and /readyz
show. A delivery is sent at least once: a worker that dies after the receiver answered but
before the log is written sends it again (the same `X-Termsync-Delivery` id).

The signature: `X-Termsync-Signature: sha256=HEX`, HEX the HMAC-SHA256, keyed with the hook's
secret (its UTF-8 bytes), of `X-Termsync-Timestamp` (Unix seconds, as sent), a dot, and the
body's bytes. The secret is kept as it is (signing needs it; a hash would not do), never shown
after it is set, and replaced with `POST .../secret/`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
from flask import Flask, current_app

from ..config import WebhookSettings
from ..domain import Domain
from ..domain.accounts import Caller, owner_of
from ..domain.errors import Invalid, NotFound
from ..jobs import JobContext, JobQueue
from ..model import SOURCE_TYPE, ExportFile, Source, Version
from ..model.records import (
    DeliveryAttempt,
    DeliveryChanges,
    LastDelivery,
    Webhook,
    WebhookChanges,
    WebhookDelivery,
)
from ..store import Store
from ..timeutil import format_time
from .targets import check_target, post

logger = logging.getLogger(__name__)

EXTENSION = "termsync.webhooks"
JOB_KIND = "webhook-delivery"
RELEASE_CREATED, EXPORT_READY = "release.created", "export.ready"
VERSION_UNRELEASED, REPOSITORY_DELETED, PING = "version.unreleased", "repository.deleted", "ping"
EVENTS = (RELEASE_CREATED, EXPORT_READY, VERSION_UNRELEASED, REPOSITORY_DELETED)
PENDING, DELIVERED, FAILED, CANCELLED = "PENDING", "DELIVERED", "FAILED", "CANCELLED"
ATTEMPTS_KEPT = 10  # attempts a delivery's log keeps (the last ones)
DELIVERIES_KEPT = 100  # deliveries a hook's log keeps (the newest ones)
USER_AGENT = "termsync-webhooks/1"
SECRET_MIN_LENGTH = 16


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Termsync-Signature` value of a delivery: `sha256=` + hex HMAC-SHA256 of
    `{timestamp}.{body}` keyed with the hook's secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """How long to wait after failed attempt number `attempt` (1, 2, ...): base * 2^(n-1),
    at most `cap`, less a random part of up to half of it (jitter), so that the deliveries to
    a receiver that was down do not all come back at the same moment."""
    delay = min(cap, base * 2 ** min(attempt - 1, 30))
    return delay / 2 + random.uniform(0, delay / 2)


class WebhookService:
    """Everything about webhooks that is not HTTP: hooks, events, deliveries, the job."""

    def __init__(self, domain: Domain, queue: JobQueue, store: Store, settings: WebhookSettings,
                 public_url: str = "", wake: Callable[[], None] | None = None) -> None:
        self.domain = domain
        self.queue = queue
        self.hooks = store.webhooks
        self.log = store.webhook_deliveries
        self.settings = settings
        self.public_url = public_url.rstrip("/")
        self.wake = wake or (lambda: None)
        self.export_status: Callable[[Source, Version], Any] | None = None

    def _now(self) -> datetime:
        return self.queue.clock()

    # --- hooks ----------------------------------------------------------------------------
    def require_manager(self, caller: Caller, repo: Source) -> None:
        """Hooks of a repository are its owner's business (members of its org, or the user),
        and admins': 401 without a token, 403 otherwise."""
        self.domain.accounts.require_owner(caller, owner_of(repo))

    def may_manage(self, caller: Caller, repo: Source) -> bool:
        """Whether the caller may see and change the hooks of a repository."""
        return self.domain.accounts.owns(caller, owner_of(repo))

    def of_repository(self, caller: Caller, repo: Source) -> list[Webhook]:
        """The hooks of a repository, oldest first."""
        self.require_manager(caller, repo)
        return [hook for hook in self.hooks.for_repository(repo.url)
                if not hook.repository_deleted]

    def get(self, caller: Caller, repo: Source, hook_id: str) -> Webhook:
        """One hook of a repository (404 if it is another's)."""
        self.require_manager(caller, repo)
        hook = self.hooks.get(hook_id)
        if hook is None or hook.repository != repo.url or hook.repository_deleted:
            raise NotFound(f"Webhook '{hook_id}' not found.")
        return hook

    def _checked(self, payload: dict[str, Any]) -> WebhookChanges:
        """The fields of a hook a caller may set, checked (the URL against the SSRF rules);
        a field given as null is left as it is (or to its default)."""
        payload = {key: value for key, value in payload.items() if value is not None}
        fields: WebhookChanges = {}
        if "url" in payload:
            check_target(payload["url"], self.settings.allow_private_targets)
            fields["url"] = payload["url"]
        if "events" in payload:
            events = list(dict.fromkeys(payload["events"]))
            unknown = [event for event in events if event not in EVENTS]
            if unknown or not events:
                raise Invalid(f"Unknown events: {', '.join(unknown)}; choose among "
                              f"{', '.join(EVENTS)}." if unknown else "Name at least one event.",
                              errors={"events": ["Unknown or empty."]})
            fields["events"] = tuple(events)
        if "description" in payload:
            fields["description"] = payload["description"]
        if "active" in payload:
            fields["active"] = payload["active"]
        if "secret" in payload:
            fields["secret"] = self._secret(payload["secret"])
        return fields

    @staticmethod
    def _secret(given: str | None) -> str:
        if given is None:
            return secrets.token_urlsafe(32)
        if len(given) < SECRET_MIN_LENGTH:
            raise Invalid(f"A webhook secret has at least {SECRET_MIN_LENGTH} characters; "
                          "leave it out to have the server make one.",
                          errors={"secret": ["Too short."]})
        return given

    def create(self, caller: Caller, repo: Source, payload: dict[str, Any],
               origin: str) -> tuple[Webhook, str]:
        """Register a hook; returns it and its secret (the only time the secret is shown).

        `origin` is where the caller reached this server: the absolute URLs of its deliveries
        start with it unless PUBLIC_URL says otherwise.
        """
        self.require_manager(caller, repo)
        fields = self._checked(payload)
        secret = fields.pop("secret", None) or self._secret(None)
        now = format_time(self._now())
        hook = Webhook(id=uuid.uuid4().hex, repository=repo.url, url=fields["url"],
                       events=fields.get("events") or EVENTS,
                       description=fields.get("description") or "",
                       active=fields.get("active", True), secret=secret,
                       origin=origin.rstrip("/"), created_on=now, created_by=caller.username,
                       updated_on=now, updated_by=caller.username)
        self.hooks.insert(hook)
        logger.info("webhook %s of %s registered by %s", hook.id, repo.url, caller.username)
        return hook, secret

    def update(self, caller: Caller, repo: Source, hook_id: str,
               payload: dict[str, Any]) -> Webhook:
        """Change a hook's URL, events, description or state; switching it on again clears its
        failures."""
        hook = self.get(caller, repo, hook_id)
        fields = self._checked({key: value for key, value in payload.items() if key != "secret"})
        if fields.get("active") and not hook.active:
            fields.update({"failures": 0, "disabled_on": None, "disabled_reason": None})
        fields.update({"updated_on": format_time(self._now()), "updated_by": caller.username})
        updated = self.hooks.update(hook.id, **fields)
        if updated is None:
            raise NotFound(f"Webhook '{hook_id}' not found.")
        return updated

    def rotate_secret(self, caller: Caller, repo: Source, hook_id: str,
                      given: str | None = None) -> tuple[Webhook, str]:
        """Give a hook a new secret (made by the server unless given); shown this once."""
        hook = self.get(caller, repo, hook_id)
        secret = self._secret(given)
        updated = self.hooks.update(hook.id, secret=secret, updated_on=format_time(self._now()),
                                    updated_by=caller.username)
        if updated is None:
            raise NotFound(f"Webhook '{hook_id}' not found.")
        return updated, secret

    def delete(self, caller: Caller, repo: Source, hook_id: str) -> None:
        """Remove a hook and its delivery log (its pending deliveries are dropped)."""
        hook = self.get(caller, repo, hook_id)
        self.hooks.delete(hook.id)
        self.log.delete_for_hook(hook.id)

    # --- the delivery log -----------------------------------------------------------------
    def deliveries(self, caller: Caller, repo: Source, hook_id: str, skip: int,
                   limit: int) -> tuple[list[WebhookDelivery], int]:
        """A hook's deliveries, newest first."""
        hook = self.get(caller, repo, hook_id)
        return self.log.page(hook.id, skip, limit)

    def delivery(self, caller: Caller, repo: Source, hook_id: str,
                 delivery_id: str) -> WebhookDelivery:
        """One delivery of a hook."""
        hook = self.get(caller, repo, hook_id)
        delivery = self.log.get(delivery_id)
        if delivery is None or delivery.hook != hook.id:
            raise NotFound(f"Delivery '{delivery_id}' not found.")
        return delivery

    def redeliver(self, caller: Caller, repo: Source, hook_id: str,
                  delivery_id: str) -> WebhookDelivery:
        """Send a delivery's body again, as a new delivery (a new id, `redelivery_of` the old)."""
        earlier = self.delivery(caller, repo, hook_id, delivery_id)
        hook = self.get(caller, repo, hook_id)
        return self._queue(hook, earlier.event, earlier.body, redelivery_of=earlier.id)

    def ping(self, caller: Caller, repo: Source, hook_id: str) -> WebhookDelivery:
        """Queue a `ping` delivery to a hook (sent even to a hook that is switched off)."""
        hook = self.get(caller, repo, hook_id)
        return self._queue(hook, PING, self._body(hook, PING, repo))

    # --- events ---------------------------------------------------------------------------
    def on_content_event(self, event: str, source: Source,
                         version: Version | None) -> None:
        """Content listener: releases, unreleases and deletions become webhook events."""
        if event == "version_created" and version is not None and version.released:
            self.emit(RELEASE_CREATED, source, version)
        elif event == "version_released" and version is not None:
            self.emit(RELEASE_CREATED, source, version)
        elif event == "version_unreleased" and version is not None:
            self.emit(VERSION_UNRELEASED, source, version)
        elif event == "version_deleted" and version is not None and version.released:
            self.emit(VERSION_UNRELEASED, source, version, deleted=True)
        elif event == "source_deleted":
            self.emit(REPOSITORY_DELETED, source)

    def on_export_ready(self, source: Source, version: Version,
                        file: ExportFile) -> None:
        """Export listener: a version's export was built."""
        if not version.is_head:
            self.emit(EXPORT_READY, source, version, file=file)

    def emit(self, event: str, repo: Source, version: Version | None = None, *,
             file: ExportFile | None = None, deleted: bool = False) -> list[WebhookDelivery]:
        """Queue a delivery of `event` to every active hook of the repository that takes it."""
        queued = []
        for hook in self.hooks.for_repository(repo.url):
            if not hook.active or event not in hook.events or hook.repository_deleted:
                continue
            body = self._body(hook, event, repo, version, file, deleted)
            queued.append(self._queue(hook, event, body))
            if event == REPOSITORY_DELETED:
                # gone from the repository's list now (a repository of the same name created
                # later starts with none); removed once this last delivery is done
                self.hooks.update(hook.id, repository_deleted=True)
        if event == REPOSITORY_DELETED:
            for hook in self.hooks.for_repository(repo.url):
                if not hook.repository_deleted:
                    self._remove(hook.id)
        return queued

    def _origin(self, hook: Webhook) -> str:
        """Where the absolute URLs of a hook's deliveries start: PUBLIC_URL, or the origin the
        hook was registered at."""
        return self.public_url or hook.origin

    def _body(self, hook: Webhook, event: str, repo: Source,
              version: Version | None = None, file: ExportFile | None = None,
              deleted: bool = False) -> str:
        """The JSON body of a delivery, as text (signed and sent byte for byte, again on retry)."""
        origin = self._origin(hook)
        body: dict[str, Any] = {
            "event": event, "created_on": format_time(self._now()),
            "hook": {"id": hook.id, "url": f"{origin}{repo.url}webhooks/{hook.id}/"},
            "repository": {"url": f"{origin}{repo.url}", "id": repo.id,
                           "type": repo.repo_type or SOURCE_TYPE,
                           "owner": repo.owner, "owner_type": repo.owner_type,
                           "name": repo.name}}
        if version is not None:
            version_url = f"{origin}{repo.url}{version.id}/"
            body["version"] = {"id": version.id, "url": version_url,
                               "released": version.released and not deleted,
                               "deleted": deleted,
                               "lastUpdated": version.last_updated,
                               "checksums": {"content": version.checksum}}
            body["lastUpdated"] = version.last_updated
            if not deleted:
                body["export"] = self._export(origin, repo, version, file)
        return orjson.dumps(body).decode()

    def _export(self, origin: str, repo: Source, version: Version,
                file: ExportFile | None) -> dict[str, Any]:
        """What a delivery says of the version's export: its URL always; its file once built."""
        export: dict[str, Any] = {"url": f"{origin}{repo.url}{version.id}/export/"}
        if file is None and self.export_status is not None:
            status = self.export_status(repo, version)
            export["state"] = status.state
            file = status.file
        if file is not None:
            export.update(state="READY", sha256=file.sha256, size=file.size,
                          lastUpdated=file.last_updated,
                          fileURL=f"{origin}{repo.url}exports/{file.sha256}.zip")
        return export

    def _queue(self, hook: Webhook, event: str, body: str,
               redelivery_of: str | None = None) -> WebhookDelivery:
        now = format_time(self._now())
        delivery = WebhookDelivery(id=uuid.uuid4().hex, hook=hook.id, repository=hook.repository,
                                   event=event, body=body, state=PENDING, created_on=now,
                                   next_attempt_on=now, redelivery_of=redelivery_of)
        # One unit on SQLite: a crash leaves both the delivery and its job or neither. (On
        # MongoDB these are two writes; a crash between them leaves a PENDING delivery that only
        # a redelivery sends.)
        with self.domain.transaction():
            self.log.insert(delivery)
            self.queue.submit(JOB_KIND, {"delivery": delivery.id}, key=delivery.id)
        self.log.prune(hook.id, DELIVERIES_KEPT)
        self.wake()
        return delivery

    def _remove(self, hook_id: str) -> None:
        self.hooks.delete(hook_id)
        self.log.delete_for_hook(hook_id)

    # --- the delivery job -----------------------------------------------------------------
    def deliver(self, context: JobContext) -> dict[str, Any]:
        """The `webhook-delivery` job: one attempt of one delivery; a failure queues the next
        attempt after a backoff, until WEBHOOK_MAX_ATTEMPTS."""
        delivery = self.log.get(context.job.payload["delivery"])
        if delivery is None or delivery.state != PENDING:
            return {"skipped": "no pending delivery"}
        hook = self.hooks.get(delivery.hook)
        if hook is None:
            self.log.update(delivery.id, state=CANCELLED)
            return {"skipped": "webhook deleted"}
        # Pings, redeliveries and a repository's last word go out even to a hook switched off.
        forced = delivery.event in (PING, REPOSITORY_DELETED) or bool(delivery.redelivery_of)
        if not hook.active and not forced:
            self.log.update(delivery.id, state=CANCELLED, error="the webhook is switched off")
            return {"skipped": "webhook switched off"}
        moment = self._now()
        timestamp = str(int(moment.timestamp()))
        body = delivery.body.encode()
        attempt = post(hook.url, body, {
            "Content-Type": "application/json", "User-Agent": USER_AGENT,
            "X-Termsync-Event": delivery.event, "X-Termsync-Delivery": delivery.id,
            "X-Termsync-Timestamp": timestamp,
            "X-Termsync-Signature": signature(hook.secret, timestamp, body)},
            timeout=self.settings.timeout_seconds,
            allow_private=self.settings.allow_private_targets)
        at = format_time(moment)
        count = delivery.attempt_count + 1
        record = DeliveryAttempt(at=at, status=attempt.status, duration_ms=attempt.duration_ms,
                                 error=attempt.error)
        changes: DeliveryChanges = {"attempts": (*delivery.attempts, record)[-ATTEMPTS_KEPT:],
                                    "attempt_count": count}
        after = self.hooks.record_attempt(
            hook.id, attempt.ok, at, self.settings.disable_after,
            f"{self.settings.disable_after} failed attempts in a row; the last: {attempt.error}")
        if attempt.ok:
            changes.update({"state": DELIVERED, "delivered_on": at, "next_attempt_on": None})
        elif count >= self.settings.max_attempts or (after is not None and not after.active
                                                      and not forced):
            changes.update({"state": FAILED, "next_attempt_on": None})
        else:
            wait = backoff_seconds(count, self.settings.retry_base_seconds,
                                   self.settings.retry_max_seconds)
            due = moment + timedelta(seconds=wait)
            changes["next_attempt_on"] = format_time(due)
            self.queue.submit(JOB_KIND, {"delivery": delivery.id}, key=delivery.id,
                              dedupe=False, not_before=due)
        self.log.update(delivery.id, **changes)
        state = changes.get("state", PENDING)
        self.hooks.update(hook.id, last_delivery=LastDelivery(
            id=delivery.id, event=delivery.event, state=state, at=at, status=attempt.status,
            error=attempt.error))
        if after is not None and not after.active and after.disabled_on == at:
            logger.warning("webhook %s of %s switched off after %d failed attempts in a row",
                           hook.id, hook.repository, after.failures)
        if delivery.event == REPOSITORY_DELETED and state != PENDING:
            self._remove(hook.id)
        return {"state": state, "status": attempt.status, "error": attempt.error,
                "attempt": count}

    # --- alerts ---------------------------------------------------------------------------
    def alerts(self, limit: int = 100) -> tuple[list[Webhook], int]:
        """Hooks switched off after failing, newest first, and how many (console, /readyz)."""
        return self.hooks.disabled(limit)

    def switched_off(self, repo: Source) -> list[Webhook]:
        """The hooks of a repository switched off after failing (the console's alert)."""
        return [hook for hook in self.hooks.for_repository(repo.url)
                if not hook.active and hook.disabled_on]

    def readiness(self) -> dict[str, Any]:
        """The /readyz detail: how many hooks failing switched off, and the newest of them."""
        hooks, total = self.alerts(10)
        return {"disabled": total, "hooks": [
            {"id": hook.id, "repository": hook.repository, "disabled_on": hook.disabled_on,
             "reason": hook.disabled_reason}
            for hook in hooks]}


def webhook_service(app: Flask | None = None) -> WebhookService:
    """The webhook service of an app (the current one by default)."""
    service: WebhookService = (app or current_app).extensions[EXTENSION]
    return service
