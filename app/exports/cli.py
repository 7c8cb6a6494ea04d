"""`termsync exports list|rebuild|purge`: administer exports from the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from .service import export_service


def cmd_list(app: Any, args: argparse.Namespace) -> int:
    """Print every export with its state, one JSON object a line."""
    with app.app_context():
        for row in export_service(app).listing():
            print(json.dumps(row))
    return 0


def cmd_rebuild(app: Any, args: argparse.Namespace) -> int:
    """Queue rebuilds (by version url, or every export with --all); --now runs them here."""
    service = export_service(app)
    with app.app_context():
        targets = [row["export"] for row in service.listing()] if args.all else args.export
        for export in targets:
            status = service.rebuild(export)
            print(json.dumps({"export": export, "state": status.state, "job": status.job.id
                              if status.job else None}))
    if args.now:
        ran = app.extensions["termsync.jobs"].run_until_idle()
        print(json.dumps({"jobs_run": ran}))
    return 0


def cmd_purge(app: Any, args: argparse.Namespace) -> int:
    """Collect stale and orphaned export files now."""
    with app.app_context():
        report = export_service(app).purge(grace_seconds=args.grace)
    print(json.dumps(report.__dict__))
    return 0


def add_commands(commands: Any, make_app: Callable[..., Any]) -> None:
    """Add the `exports` command group to the `termsync` parser."""
    exports = commands.add_parser("exports", help="list, rebuild and purge exports")
    actions = exports.add_subparsers(dest="exports_command", required=True)

    def run(handler: Callable[[Any, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        # `make_app` starts no job threads or scheduler: a one-shot command must not race workers
        return lambda args: handler(make_app(args), args)

    listing = actions.add_parser("list", help="every export and its state")
    listing.set_defaults(func=run(cmd_list))

    rebuild = actions.add_parser("rebuild", help="queue a rebuild of exports")
    rebuild.add_argument("export", nargs="*",
                         help="version url, e.g. /orgs/CIEL/sources/CIEL/v2024-01-01/")
    rebuild.add_argument("--all", action="store_true", help="every known export")
    rebuild.add_argument("--now", action="store_true",
                         help="build here and now instead of leaving it to the workers")
    rebuild.set_defaults(func=run(cmd_rebuild))

    purge = actions.add_parser("purge", help="delete stale and orphaned export files")
    purge.add_argument("--grace", type=float, default=None,
                       help="keep unreferenced files younger than this many seconds "
                            "(default EXPORT_GC_GRACE_SECONDS)")
    purge.set_defaults(func=run(cmd_purge))
