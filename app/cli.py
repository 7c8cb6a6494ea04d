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
    from .domain.accounts import Caller
    from .domain.loader import Loader, Target, numbered_lines

    app = _app(args)
    domain = app.extensions["termsync"]
    user = domain.accounts.get_user(args.user)
    caller = Caller(username=user["_id"], is_admin=bool(user.get("is_admin")),
                    orgs=frozenset(domain.repos.orgs.for_member(user["_id"])))
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


def cmd_create_user(args: argparse.Namespace) -> int:
    app = _app(args)
    accounts = app.extensions["termsync"].accounts
    accounts.create_user(args.username, name=args.name, email=args.email, is_admin=args.admin)
    print(f"created user {args.username}")
    if args.token:
        print(accounts.create_token(args.username))
    return 0


def cmd_create_token(args: argparse.Namespace) -> int:
    app = _app(args)
    print(app.extensions["termsync"].accounts.create_token(args.username, args.value))
    return 0


def cmd_create_org(args: argparse.Namespace) -> int:
    from .domain.accounts import Caller

    app = _app(args)
    accounts = app.extensions["termsync"].accounts
    owner = accounts.get_user(args.owner)
    accounts.create_org(Caller(username=owner["_id"]), {
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

    token = commands.add_parser("create-token", help="issue an API token for a user")
    token.add_argument("username")
    token.add_argument("--value", help="use this token instead of a random one")
    token.set_defaults(func=cmd_create_token)

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
