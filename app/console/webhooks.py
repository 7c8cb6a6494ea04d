"""A repository's webhooks in the console: the hooks with their delivery logs and an alert for
those switched off after failing; register, ping, switch on or off, delete, redeliver. Only who
may manage them through the API (the repository's owners, admins) sees the page; every form
carries the CSRF token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from flask import Blueprint, redirect, request, url_for
from marshmallow import ValidationError

from ..domain.errors import Invalid
from ..domain.loader import flatten_errors
from ..model import Source
from ..model.records import Webhook, WebhookDelivery
from ..webhooks import WebhookService, webhook_service
from ..webhooks.schemas import WebhookInSchema
from ..webhooks.service import EVENTS
from .sources import SOURCE, resolve_source
from .web import Answer, render, require_sign_in, source_args

bp = Blueprint("webhooks", __name__)

DELIVERIES_SHOWN = 10  # deliveries per hook on the page (the API pages through them all)
NOTICES = {"pinged": "A ping is queued; its delivery appears in the log below.",
           "redelivered": "The delivery is queued again.",
           "switched_on": "The webhook is switched on again.",
           "switched_off": "The webhook is switched off.",
           "deleted": "The webhook was deleted."}


def _managed(owner_kind: str, owner_id: str, repo_path: str,
             source_id: str) -> tuple[WebhookService, Source, Any]:
    """The repository and its signed-in manager (403 for others, 404 if hidden)."""
    who = require_sign_in()
    _, repo = resolve_source(owner_kind, owner_id, repo_path, source_id)
    service = webhook_service()
    service.require_manager(who, repo)
    return service, repo, who


@dataclass(frozen=True, slots=True)
class HookLog:
    """A hook as the page shows it: with its newest deliveries, and how many its log keeps."""

    hook: Webhook
    deliveries: list[WebhookDelivery]
    total: int


def _page(service: WebhookService, repo: Source, who: Any, status: int = 200,
          **context: Any) -> Answer:
    hooks = [HookLog(hook, *service.deliveries(who, repo, hook.id, 0, DELIVERIES_SHOWN))
             for hook in service.of_repository(who, repo)]
    notice = NOTICES.get(request.args.get("notice", ""))
    return render("console/webhooks.html", status, source=repo, hooks=hooks, events=EVENTS,
                  switched_off=[entry.hook for entry in hooks
                                if not entry.hook.active and entry.hook.disabled_on],
                  notice=notice, **context)


def _back(repo: Source, notice: str) -> Answer:
    arguments: dict[str, Any] = dict(source_args(repo), notice=notice)
    return redirect(url_for("console.webhooks.webhooks", **arguments), 303)


@bp.route(f"{SOURCE}/webhooks/")
def webhooks(owner_kind: str, owner_id: str, repo_path: str, source_id: str) -> Answer:
    """The repository's hooks and their delivery logs."""
    service, repo, who = _managed(owner_kind, owner_id, repo_path, source_id)
    return _page(service, repo, who)


@bp.route(f"{SOURCE}/webhooks/", methods=["POST"])
def register(owner_kind: str, owner_id: str, repo_path: str, source_id: str) -> Answer:
    """Register a hook; the page shows its secret this once (never in a URL)."""
    service, repo, who = _managed(owner_kind, owner_id, repo_path, source_id)
    form = request.form
    try:
        payload = WebhookInSchema().load({
            "url": form.get("url", "").strip(), "events": form.getlist("events") or None,
            "secret": form.get("secret") or None,
            "description": form.get("description") or None})
    except ValidationError as error:
        raise Invalid("The webhook was not registered: " + "; ".join(
            flatten_errors(error.messages)), errors=error.normalized_messages()) from None
    hook, secret = service.create(who, repo, payload, request.host_url)
    return _page(service, repo, who, 201, new_hook=hook, new_secret=secret)


@bp.route(f"{SOURCE}/webhooks/<hook_id>/ping", methods=["POST"])
def ping(owner_kind: str, owner_id: str, repo_path: str, source_id: str, hook_id: str) -> Answer:
    """Queue a ping to a hook."""
    service, repo, who = _managed(owner_kind, owner_id, repo_path, source_id)
    service.ping(who, repo, hook_id)
    return _back(repo, "pinged")


@bp.route(f"{SOURCE}/webhooks/<hook_id>/switch", methods=["POST"])
def switch(owner_kind: str, owner_id: str, repo_path: str, source_id: str,
           hook_id: str) -> Answer:
    """Switch a hook on (clearing its failures) or off."""
    service, repo, who = _managed(owner_kind, owner_id, repo_path, source_id)
    on = request.form.get("active") == "on"
    service.update(who, repo, hook_id, {"active": on})
    return _back(repo, "switched_on" if on else "switched_off")


@bp.route(f"{SOURCE}/webhooks/<hook_id>/delete", methods=["POST"])
def delete(owner_kind: str, owner_id: str, repo_path: str, source_id: str,
           hook_id: str) -> Answer:
    """Delete a hook and its log."""
    service, repo, who = _managed(owner_kind, owner_id, repo_path, source_id)
    service.delete(who, repo, hook_id)
    return _back(repo, "deleted")


@bp.route(f"{SOURCE}/webhooks/<hook_id>/deliveries/<delivery_id>/redeliver", methods=["POST"])
def redeliver(owner_kind: str, owner_id: str, repo_path: str, source_id: str, hook_id: str,
              delivery_id: str) -> Answer:
    """Send a delivery again."""
    service, repo, who = _managed(owner_kind, owner_id, repo_path, source_id)
    service.redeliver(who, repo, hook_id, delivery_id)
    return _back(repo, "redelivered")


@bp.route(f"{SOURCE}/webhooks/<hook_id>/deliveries/<delivery_id>")
def delivery(owner_kind: str, owner_id: str, repo_path: str, source_id: str, hook_id: str,
             delivery_id: str) -> Answer:
    """One delivery: its body and every attempt kept."""
    service, repo, who = _managed(owner_kind, owner_id, repo_path, source_id)
    found = service.delivery(who, repo, hook_id, delivery_id)
    hook = service.get(who, repo, hook_id)
    body = orjson.dumps(orjson.loads(found.body), option=orjson.OPT_INDENT_2).decode()
    return render("console/webhook_delivery.html", source=repo, hook=hook, delivery=found,
                  body=body)
