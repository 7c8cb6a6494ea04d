"""`termsync` command line: run the server, load files, and administer users, orgs and tokens."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .config import ConfigError, settings_of

logger = logging.getLogger(__name__)


def _app(args: argparse.Namespace, *, job_threads: bool = False, **overrides: Any) -> Any:
    """The app a command works on; only `serve` runs job threads (and with them heartbeat and
    maintenance): a one-shot command must not take jobs it would abandon when it exits."""
    from . import create_app
    config: dict[str, Any] = dict(overrides)
    if not job_threads:
        config["BACKGROUND_WORKERS"] = 0
    if getattr(args, "database_uri", None):
        config["DATABASE_URI"] = args.database_uri
    return create_app(config)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server (werkzeug, threaded) until SIGINT/SIGTERM; see docs for gunicorn."""
    from werkzeug.serving import make_server

    overrides: dict[str, Any] = {}
    if args.demo:
        overrides["LOAD_DEMO"] = True
    app = _app(args, job_threads=True, **overrides)
    settings = settings_of(app)
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    from .serving import AppDateRequestHandler
    server = make_server(host, port, app, threaded=True, request_handler=AppDateRequestHandler)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"termsync serving on http://{host}:{server.server_port}/  "
          f"(API docs: http://{host}:{server.server_port}/api/docs)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["termsync.jobs"].stop()
        app.extensions["termsync.store"].close()
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """Load an OCL JSON-lines file as a user; print a summary and the failed lines."""
    from .domain.loader import Loader, Target, numbered_lines

    app = _app(args)
    domain = app.extensions["termsync"]
    caller = domain.accounts.caller_for(domain.accounts.get_user(args.user)["_id"])
    target = None
    if args.source:
        kind, _, rest = args.source.strip("/").partition("/")
        owner_id, _, source_id = rest.partition("/sources/")
        target = Target(kind, owner_id, source_id.strip("/"))
    loader = Loader(domain.content, caller, update_if_exists=args.update_if_exists,
                    dry_run=args.dry_run, target=target)
    counts: Counter[str] = Counter()
    with open(args.file, "rb") as handle:
        for result in loader.load(numbered_lines(handle)):
            counts[result.action] += 1
            if result.action == "failed":
                print(f"line {result.line}: {'; '.join(result.errors)}", file=sys.stderr)
    print(json.dumps(dict(counts)))
    return 1 if counts["failed"] else 0


def _accounts(args: argparse.Namespace) -> Any:
    """The accounts service of the database a command works on."""
    return _app(args).extensions["termsync"].accounts


def cmd_create_user(args: argparse.Namespace) -> int:
    from .domain.accounts import OPERATOR

    accounts = _accounts(args)
    accounts.create_user(args.username, name=args.name, email=args.email, is_admin=args.admin)
    print(f"created user {args.username}")
    if args.token:
        print(accounts.issue_token(OPERATOR, args.username)[0])
    return 0


def cmd_create_token(args: argparse.Namespace) -> int:
    """Issue a token and print it (its value is shown this once); details go to stderr."""
    from .domain.accounts import OPERATOR, token_expiry

    token, record = _accounts(args).issue_token(
        OPERATOR, args.username, token=args.value, label=args.label,
        expires_on=token_expiry(args.expires_on, args.expires_in_days))
    print(f"token {record['id']} of {args.username}"
          + (f", expires {record['expires_on']}" if record["expires_on"] else "")
          + ": shown this once", file=sys.stderr)
    print(token)
    return 0


def cmd_list_tokens(args: argparse.Namespace) -> int:
    """A user's tokens, one a line (never their values)."""
    from .domain.accounts import OPERATOR, token_state

    records = _accounts(args).list_tokens(OPERATOR, args.username, args.all)
    columns = ("id", "prefix", "state", "created_on", "last_used_on", "expires_on", "label")
    print("\t".join(columns))
    for record in records:
        values = dict(record, state=token_state(record),
                      label=("ADMIN_TOKEN" if record.get("bootstrap") else record.get("label")))
        print("\t".join(str(values.get(column) or "-") for column in columns))
    return 0


def cmd_revoke_token(args: argparse.Namespace) -> int:
    from .domain.accounts import OPERATOR

    _accounts(args).revoke_token(OPERATOR, args.username, args.token_id)
    print(f"token {args.token_id} of {args.username} is revoked")
    return 0


def cmd_set_active(args: argparse.Namespace) -> int:
    from .domain.accounts import OPERATOR

    active = args.users_command == "reactivate"
    _accounts(args).set_active(OPERATOR, args.username, active)
    print(f"user {args.username} is {'active' if active else 'deactivated'}")
    return 0


def cmd_create_org(args: argparse.Namespace) -> int:

    app = _app(args)
    accounts = app.extensions["termsync"].accounts
    owner = accounts.get_user(args.owner)
    accounts.create_org(accounts.caller_for(owner["_id"]), {
        "id": args.org_id, "name": args.name, "public_access": args.public_access})
    print(f"created organization {args.org_id} with member {args.owner}")
    return 0


def cmd_add_member(args: argparse.Namespace) -> int:
    app = _app(args)
    app.extensions["termsync"].accounts.add_member(args.org_id, args.username)
    print(f"{args.username} is a member of {args.org_id}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run queued jobs (export builds, bulk imports) in threads until SIGINT/SIGTERM."""
    import threading

    app = _app(args)  # no threads from create_app: it starts its own below
    workers = app.extensions["termsync.jobs"]
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers.start(args.threads)  # also starts heartbeat and maintenance (export GC) under a lease
    print(f"termsync worker: {args.threads} threads for {', '.join(sorted(workers.handlers))}",
          flush=True)
    stopping.wait()
    workers.stop()
    app.extensions["termsync.store"].close()
    return 0


def cmd_db_copy(args: argparse.Namespace) -> int:
    """Copy every document from one DATABASE_URI to another; compare checksums afterwards."""
    from .config import load_config
    from .store import open_store
    from .store.copy import copy_store

    config = load_config()
    source = open_store(args.source, mongo_db=args.source_db or config["MONGO_DB"])
    target = open_store(args.target, mongo_db=args.target_db or config["MONGO_DB"])
    source.ensure_schema()
    report = copy_store(source, target)
    print(json.dumps(report))
    source.close()
    target.close()
    return 0 if report["checksums"]["different"] == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="termsync", description=__doc__)
    parser.add_argument("--database-uri", "--mongo-uri", dest="database_uri",
                        help="overrides DATABASE_URI / TERMSYNC_DATABASE_URI")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--demo", action="store_true",
                       help="load OCL's DemoOrg/DemoSource and release it as v1.0")
    serve.set_defaults(func=cmd_serve)

    load = commands.add_parser("load", help="load an OCL JSON-lines file")
    load.add_argument("file")
    load.add_argument("--user", required=True, help="the curator the lines are loaded as")
    load.add_argument("--source", help="for lines without owner/source: /orgs/ORG/sources/SRC/")
    load.add_argument("--update-if-exists", action="store_true")
    load.add_argument("--dry-run", action="store_true")
    load.set_defaults(func=cmd_load)

    user = commands.add_parser("create-user", help="create a user")
    user.add_argument("username")
    user.add_argument("--name")
    user.add_argument("--email")
    user.add_argument("--admin", action="store_true")
    user.add_argument("--token", action="store_true", help="also issue and print a token")
    user.set_defaults(func=cmd_create_user)

    def token_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--value", help="use this token (32+ visible ASCII characters) "
                                            "instead of one the server draws")
        parser.add_argument("--label", help="what the token is for")
        expiry = parser.add_mutually_exclusive_group()
        expiry.add_argument("--expires-in-days", type=int, help="it stops working after this")
        expiry.add_argument("--expires-on", help="it stops working then (ISO 8601 time)")
        parser.set_defaults(func=cmd_create_token)

    token_options(commands.add_parser("create-token", help="issue an API token for a user "
                                                           "(the same as tokens create)"))
    tokens = commands.add_parser("tokens", help="list, issue and revoke API tokens")
    tokens_commands = tokens.add_subparsers(dest="tokens_command", required=True)
    token_options(tokens_commands.add_parser("create", help="issue a token for a user"))
    listing = tokens_commands.add_parser("list", help="a user's tokens (never their values)")
    listing.add_argument("username")
    listing.add_argument("--all", action="store_true", help="revoked ones too")
    listing.set_defaults(func=cmd_list_tokens)
    revoke = tokens_commands.add_parser("revoke", help="revoke a token (by its id)")
    revoke.add_argument("username")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=cmd_revoke_token)

    users = commands.add_parser("users", help="deactivate or reactivate a user")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    for name, text in (("deactivate", "tokens refused at once, console sessions end"),
                       ("reactivate", "the account works again")):
        command = users_commands.add_parser(name, help=text)
        command.add_argument("username")
        command.set_defaults(func=cmd_set_active)

    org = commands.add_parser("create-org", help="create an organization")
    org.add_argument("org_id")
    org.add_argument("--owner", required=True, help="first member")
    org.add_argument("--name")
    org.add_argument("--public-access", default="View", choices=("View", "Edit", "None"))
    org.set_defaults(func=cmd_create_org)

    member = commands.add_parser("add-member", help="add a user to an organization")
    member.add_argument("org_id")
    member.add_argument("username")
    member.set_defaults(func=cmd_add_member)

    worker = commands.add_parser("worker", help="run queued jobs (exports, imports) only")
    worker.add_argument("--threads", type=int, default=2)
    worker.set_defaults(func=cmd_worker)

    database = commands.add_parser("db", help="database administration")
    database_commands = database.add_subparsers(dest="db_command", required=True)
    copy = database_commands.add_parser(
        "copy", help="copy everything from one database to another (e.g. SQLite to MongoDB)")
    copy.add_argument("source", help="DATABASE_URI to copy from")
    copy.add_argument("target", help="DATABASE_URI to copy into")
    copy.add_argument("--source-db", help="MongoDB database name of the source")
    copy.add_argument("--target-db", help="MongoDB database name of the target")
    copy.set_defaults(func=cmd_db_copy)

    from .exports.cli import add_commands as add_export_commands
    from .webhooks.cli import add_commands as add_webhook_commands
    add_export_commands(commands, _app)
    add_webhook_commands(commands, _app)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `termsync` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"termsync: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # domain errors and the like: one line, no trace
        message = getattr(exc, "message", None) or str(exc)
        print(f"termsync: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
