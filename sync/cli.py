"""`termsync-sync once|run|listen|status|verify --config FILE`: the subscriber's command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from .client import ApiError, ServerUnreachable, TermsyncClient
from .config import ConfigError, Subscription, SyncConfig, load_config
from .items import content_checksum_of
from .listen import HookListener, HookVerifier, Passes
from .scheduler import build_scheduler, job_id, run_until_stopped
from .state import SyncState
from .store import LocalStore, open_store
from .subscriber import build_subscriber

logger = logging.getLogger(__name__)

CONFIG_ENV = "TERMSYNC_SYNC_CONFIG"


class TerminalProgress:
    """A one-line progress display on a terminal, redrawn at most 10 times a second."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self.name = name
        self.stream = stream
        self.last = 0.0
        self.shown = False

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and (total is None or done < total):
            return
        self.last = now
        if total:
            width = 30
            filled = int(width * min(done, total) / total)
            text = f"[{'#' * filled}{'.' * (width - filled)}] {done * 100 // total:3d}% " \
                   f"{_size(done)}/{_size(total)}"
        else:
            text = f"{done:,}"
        self.stream.write(f"\r\x1b[K{self.name}: {phase} {text}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        """End the progress line."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


class LogProgress:
    """Progress as log lines, at most one every `every` seconds (for logs and pipes)."""

    def __init__(self, name: str, every: float = 15.0) -> None:
        self.name = name
        self.every = every
        self.last = time.monotonic()

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            logger.info("[%s] %s: %s%s", self.name, phase, f"{done:,}",
                        f" of {total:,}" if total else "")

    def close(self) -> None:
        """Nothing to tidy."""


def _size(count: int) -> str:
    """Bytes in human units."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{count}B"


class Stores:
    """One LocalStore per database URI, shared by the subscriptions that name it."""

    def __init__(self) -> None:
        self._open: dict[str, LocalStore] = {}

    def __call__(self, subscription: Subscription) -> LocalStore:
        if subscription.database_uri not in self._open:
            self._open[subscription.database_uri] = open_store(subscription.database_uri)
        return self._open[subscription.database_uri]

    def close(self) -> None:
        """Close (and flush) every store."""
        for store in self._open.values():
            store.close()


def _progress_for(name: str, quiet: bool) -> TerminalProgress | LogProgress:
    """A progress bar on a terminal, log lines otherwise."""
    if not quiet and sys.stderr.isatty():
        return TerminalProgress(name, sys.stderr)
    return LogProgress(name)


def _emit(records: list[dict[str, Any]], as_json: bool, lines: list[str]) -> None:
    """Print JSON for machines or the prepared lines for people."""
    if as_json:
        sys.stdout.write(orjson.dumps(records, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))


def cmd_once(config: SyncConfig, args: argparse.Namespace, stores: Stores) -> int:
    """One pass of each subscription; non-zero when any failed."""
    results = []
    for subscription in config.select(args.subscription):
        progress = _progress_for(subscription.name, args.json)
        subscriber = build_subscriber(subscription, stores(subscription),
                                      progress=progress)
        try:
            results.append(subscriber.sync(full=args.full))
        finally:
            progress.close()
            subscriber.client.close()
    lines = [f"{r.name}: {'ok' if r.ok else 'FAILED'} {r.action or ''} version={r.version} "
             f"lastUpdated={r.last_updated} applied={r.applied} "
             f"concepts={r.counts.get('concepts', '-')} mappings={r.counts.get('mappings', '-')}"
             + (f" checksum={'ok' if r.checksum == r.server_checksum else 'DIFFERS'}"
                if r.server_checksum else "")
             + (f"\n  error: {r.error}" if r.error else "") for r in results]
    _emit([r.as_dict() for r in results], args.json, lines)
    return 0 if all(r.ok for r in results) else 1


def cmd_run(config: SyncConfig, args: argparse.Namespace, stores: Stores) -> int:
    """Run the scheduler until SIGTERM/SIGINT."""
    stop_event = threading.Event()
    subscribers = {s.name: build_subscriber(s, stores(s), stop_event=stop_event,
                                            progress=LogProgress(s.name))
                   for s in config.select(args.subscription)}
    selected = SyncConfig([s for s in config.subscriptions if s.name in subscribers])

    def run_one(subscription: Subscription) -> None:
        """The scheduler job: one pass of one subscription."""
        subscribers[subscription.name].sync()

    run_until_stopped(build_scheduler(selected, run_one), stop_event)
    for subscriber in subscribers.values():
        subscriber.client.close()
    return 0


def cmd_listen(config: SyncConfig, args: argparse.Namespace, stores: Stores) -> int:
    """`run`, plus the webhook endpoint: a signed delivery triggers a pass at once."""
    if config.listen is None or not any(s.hook_secret for s in config.select(args.subscription)):
        sys.stderr.write("termsync-sync: listen needs a [listen] table and a hook_secret in the "
                         "subscriptions to listen for (docs/sync.md, listen)\n")
        return 2
    stop_event = threading.Event()
    subscribers = {s.name: build_subscriber(s, stores(s), stop_event=stop_event,
                                            progress=LogProgress(s.name))
                   for s in config.select(args.subscription)}
    selected = SyncConfig([s for s in config.subscriptions if s.name in subscribers])
    passes = Passes(lambda subscription: subscribers[subscription.name].sync())
    scheduler = build_scheduler(selected, passes)
    verifier = HookVerifier(selected.subscriptions, config.listen.replay_window)
    by_name = {s.name: s for s in selected.subscriptions}
    with HookListener(config.listen, verifier, lambda name: passes.trigger(
            name, scheduler, job_id(by_name[name]))) as listener:
        logger.info("listening for webhooks on %s:%d (/hooks/{subscription}) for %s",
                    config.listen.host, listener.port, ", ".join(verifier.subscriptions))
        run_until_stopped(scheduler, stop_event)
    for subscriber in subscribers.values():
        subscriber.client.close()
    return 0


def _server_checksum(subscription: Subscription, state: SyncState) -> tuple[str | None,
                                                                          str | None]:
    """(server checksums.content of what the subscription follows, error message)."""
    target = state.version_url if subscription.mode == "release" else subscription.url
    if not target:
        return None, "nothing synced yet"
    client = TermsyncClient(subscription.server, subscription.token,
                            timeout=subscription.timeout,
                            connect_timeout=subscription.connect_timeout, max_retries=1)
    try:
        body = client.get_json(target).body
    except (ApiError, ServerUnreachable) as exc:
        return None, str(exc)
    finally:
        client.close()
    value = content_checksum_of(body)
    return (value, None) if value else (None, "the server publishes no checksums.content")


def _report(config: SyncConfig, args: argparse.Namespace, stores: Stores, recompute: bool
            ) -> int:
    """Shared by status and verify: per subscription, local state against the server."""
    records: list[dict[str, Any]] = []
    lines: list[str] = []
    healthy = True
    for subscription in config.select(args.subscription):
        store = stores(subscription)
        state = store.load_state(subscription.name)
        local = store.checksum(subscription.name) if recompute else state.checksum
        server, server_error = _server_checksum(subscription, state)
        matches = None if server is None or local is None else local == server
        counts = store.counts(subscription.name)
        record: dict[str, Any] = {
            "name": subscription.name, "mode": subscription.mode,
            "server": subscription.source_url, "database": subscription.database_uri,
            "version": state.version, "last_updated": state.last_updated, "counts": counts,
            "checksum": local, "server_checksum": server, "checksum_matches": matches,
            "server_error": server_error, "last_success": state.last_success,
            "last_error": state.last_error, "last_error_at": state.last_error_at,
            "resuming": state.cursor is not None,
        }
        records.append(record)
        healthy = healthy and matches is not False and not state.last_error \
            and (not recompute or matches is True)
        verdict = {True: "in sync", False: "DIFFERS", None: "unknown"}[matches]
        lines.append(
            f"{subscription.name} ({subscription.mode}) {subscription.source_url}\n"
            f"  version {record['version']}  lastUpdated {record['last_updated']}  "
            f"concepts {counts['concepts']}  mappings {counts['mappings']}\n"
            f"  checksums.content local {local} server {server}: {verdict}"
            + (f" ({server_error})" if server_error else "") + "\n"
            f"  last success {record['last_success']}"
            + (f"  last error {record['last_error_at']}: {record['last_error']}"
               if record["last_error"] else ""))
    _emit(records, args.json, lines)
    return 0 if healthy else 1


def cmd_status(config: SyncConfig, args: argparse.Namespace, stores: Stores) -> int:
    """Per subscription: version, lastUpdated, counts, last outcome, checksum vs server."""
    return _report(config, args, stores, recompute=False)


def cmd_verify(config: SyncConfig, args: argparse.Namespace, stores: Stores) -> int:
    """Recompute the local checksums.content and compare with the server's."""
    return _report(config, args, stores, recompute=True)


COMMANDS = {"once": cmd_once, "run": cmd_run, "listen": cmd_listen, "status": cmd_status,
            "verify": cmd_verify}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=os.environ.get(CONFIG_ENV, "config.toml"),
                        help=f"TOML file with [[subscriptions]] (default ${CONFIG_ENV} "
                             "or ./config.toml)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--subscription", "-s", action="append",
                        help="only this subscription (repeatable)")
    common.add_argument("--log-level", default=os.environ.get("TERMSYNC_SYNC_LOG_LEVEL", "INFO"))
    parser = argparse.ArgumentParser(prog="termsync-sync",
                                     description="Keep a local database (SQLite or MongoDB) in "
                                                 "step with a termsync or OCL server.")
    commands = parser.add_subparsers(dest="command", required=True)
    once = commands.add_parser("once", parents=[common], help="one pass of every subscription")
    once.add_argument("--full", action="store_true",
                      help="reload from the latest released export instead of diffs")
    commands.add_parser("run", parents=[common], help="run every subscription on its schedule")
    commands.add_parser("listen", parents=[common],
                        help="run on the schedule and pass at once on a signed webhook delivery")
    commands.add_parser("status", parents=[common], help="where each subscription stands")
    commands.add_parser("verify", parents=[common],
                        help="recompute local checksums and compare with the server")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `termsync-sync`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        config.select(args.subscription)
    except ConfigError as exc:
        sys.stderr.write(f"termsync-sync: config error: {exc}\n")
        return 2
    stores = Stores()
    try:
        return COMMANDS[args.command](config, args, stores)
    finally:
        stores.close()


if __name__ == "__main__":
    sys.exit(main())
