"""`termsync webhooks list|create|update|delete|ping|deliveries|redeliver|disabled`: webhooks from
the server's command line, acting as an admin (one JSON object a line)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ..config import settings_of
from ..domain.accounts import Caller
from ..domain.errors import NotFound
from ..model import Source
from ..model.records import Webhook, WebhookDelivery
from .routes import shown, shown_delivery
from .schemas import DeliveryOut, WebhookCreatedOut, WebhookOut
from .service import EVENTS, WebhookService, webhook_service

ADMIN = Caller("termsync-cli", is_admin=True)


def _repo(app: Any, url: str) -> Source:
    """A source or collection by its url (`/orgs/O/sources/S/`)."""
    path = url if url.endswith("/") else url + "/"
    repo = app.extensions["termsync"].content.find_repo(path)
    if repo is None:
        raise NotFound(f"No source or collection {path}.")
    return repo


def _print(document: dict[str, Any]) -> None:
    print(json.dumps(document, default=str))


def _hook(hook: Webhook, secret: str | None = None) -> None:
    """Print a hook as the API shows it (with its secret only when just set)."""
    schema = WebhookCreatedOut() if secret is not None else WebhookOut()
    _print(schema.dump(shown(hook, secret)))


def _delivery(delivery: WebhookDelivery) -> None:
    _print(DeliveryOut().dump(shown_delivery(delivery)))


def cmd_list(app: Any, service: WebhookService, args: argparse.Namespace) -> int:
    """Every hook of a repository."""
    for hook in service.of_repository(ADMIN, _repo(app, args.repository)):
        _hook(hook)
    return 0


def cmd_create(app: Any, service: WebhookService, args: argparse.Namespace) -> int:
    """Register a hook; prints its secret (shown this once)."""
    settings = settings_of(app)
    origin = args.origin or str(app.config.get("PUBLIC_URL") or "") \
        or f"http://{settings.host}:{settings.port}"
    hook, secret = service.create(ADMIN, _repo(app, args.repository), {
        "url": args.url, "events": args.event or None, "secret": args.secret,
        "description": args.description}, origin)
    _hook(hook, secret)
    return 0


def cmd_update(app: Any, service: WebhookService, args: argparse.Namespace) -> int:
    """Switch a hook on (clearing its failures) or off, or change its URL or events."""
    changes: dict[str, Any] = {"url": args.url, "events": args.event or None}
    if args.on or args.off:
        changes["active"] = bool(args.on)
    _hook(service.update(ADMIN, _repo(app, args.repository), args.hook, changes))
    return 0


def cmd_delete(app: Any, service: WebhookService, args: argparse.Namespace) -> int:
    """Remove a hook and its delivery log."""
    service.delete(ADMIN, _repo(app, args.repository), args.hook)
    _print({"deleted": args.hook})
    return 0


def cmd_ping(app: Any, service: WebhookService, args: argparse.Namespace) -> int:
    """Queue a ping; --now sends it from here and prints the outcome."""
    repo = _repo(app, args.repository)
    queued = service.ping(ADMIN, repo, args.hook)
    if args.now:
        app.extensions["termsync.jobs"].run_until_idle()
        queued = service.delivery(ADMIN, repo, args.hook, queued.id)
    _delivery(queued)
    return 0 if queued.state in ("PENDING", "DELIVERED") else 1


def cmd_deliveries(app: Any, service: WebhookService, args: argparse.Namespace) -> int:
    """A hook's delivery log, newest first."""
    found, _ = service.deliveries(ADMIN, _repo(app, args.repository), args.hook, 0, args.limit)
    for delivery in found:
        _delivery(delivery)
    return 0


def cmd_redeliver(app: Any, service: WebhookService, args: argparse.Namespace) -> int:
    """Send a delivery again (as a new delivery)."""
    _delivery(service.redeliver(ADMIN, _repo(app, args.repository), args.hook, args.delivery))
    return 0


def cmd_disabled(app: Any, service: WebhookService, args: argparse.Namespace) -> int:
    """Hooks switched off after failing, on the whole server (what /readyz counts)."""
    hooks, _ = service.alerts(args.limit)
    for hook in hooks:
        _hook(hook)
    return 0


Handler = Callable[[Any, WebhookService, argparse.Namespace], int]


def add_commands(commands: Any, make_app: Callable[..., Any]) -> None:
    """Add the `webhooks` command group to the `termsync` parser."""
    group = commands.add_parser("webhooks", help="webhooks of sources and collections")
    actions = group.add_subparsers(dest="webhooks_command", required=True)

    def run(handler: Handler) -> Callable[[argparse.Namespace], int]:
        def command(args: argparse.Namespace) -> int:
            app = make_app(args)
            with app.app_context():
                return handler(app, webhook_service(app), args)
        return command

    def action(name: str, handler: Handler, help_text: str, hook: bool = True) -> Any:
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("repository", help="e.g. /orgs/CIEL/sources/CIEL/")
        if hook:
            parser.add_argument("hook", help="the hook's id")
        parser.set_defaults(func=run(handler))
        return parser

    action("list", cmd_list, "the hooks of a repository", hook=False)
    create = action("create", cmd_create, "register a hook (prints its secret once)", hook=False)
    create.add_argument("url", help="the target (http or https, a public address)")
    create.add_argument("--event", action="append", choices=EVENTS,
                        help="an event to deliver (repeatable; default: all)")
    create.add_argument("--secret", help="the signing secret (default: one the server makes)")
    create.add_argument("--description")
    create.add_argument("--origin", help="where delivery URLs start (default PUBLIC_URL, else "
                                         "http://HOST:PORT)")
    update = action("update", cmd_update, "switch a hook on or off, change its URL or events")
    update.add_argument("--url")
    update.add_argument("--event", action="append", choices=EVENTS)
    switch = update.add_mutually_exclusive_group()
    switch.add_argument("--on", action="store_true", help="switch on (clears its failures)")
    switch.add_argument("--off", action="store_true")
    action("delete", cmd_delete, "remove a hook and its log")
    ping = action("ping", cmd_ping, "queue a ping delivery")
    ping.add_argument("--now", action="store_true", help="send it from here and print how it went")
    deliveries = action("deliveries", cmd_deliveries, "a hook's delivery log, newest first")
    deliveries.add_argument("--limit", type=int, default=20)
    redeliver = action("redeliver", cmd_redeliver, "send a delivery again")
    redeliver.add_argument("delivery", help="the delivery's id")
    disabled = actions.add_parser("disabled", help="hooks switched off after failing")
    disabled.add_argument("--limit", type=int, default=100)
    disabled.set_defaults(func=run(cmd_disabled))
