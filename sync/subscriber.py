"""The sync algorithm: first sync from the latest released export, then paged diffs."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pymongo.errors import PyMongoError

from app.faults import kill_point

from .client import ApiError, BadRequest, NotFound, ServerUnreachable, TermsyncClient
from .config import Subscription
from .exportfile import ITEM_ARRAYS, ExportDownloader, ExportError, ExportReader, ProgressFn
from .items import (
    InvalidItem,
    ItemRecord,
    content_checksum_of,
    item_record,
    normalize_timestamp,
    shift_timestamp,
)
from .store import LocalStore, utcnow

logger = logging.getLogger(__name__)



class SyncStopped(Exception):
    """A shutdown was requested; the pass stopped between pages (nothing half-applied)."""


class ContentMismatch(Exception):
    """After a complete pass the local checksums.content differs from the server's."""


@dataclass
class SyncResult:
    """What one pass of one subscription did."""

    name: str
    ok: bool = False
    action: str = ""
    version: str | None = None
    last_updated: str | None = None
    applied: int = 0
    pages: int = 0
    skipped: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    checksum: str | None = None
    server_checksum: str | None = None
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _stamp(value: Any) -> str | None:
    """A server-given timestamp in canonical form; None (logged) when it cannot be read."""
    try:
        return normalize_timestamp(value)
    except InvalidItem:
        logger.warning("ignoring unreadable timestamp %r", value)
        return None


def _max_ts(*values: str | None) -> str | None:
    """The latest of some canonical timestamps (None ignored)."""
    present = [v for v in values if v]
    return max(present) if present else None


def _version_path(version: dict[str, Any], source_path: str) -> str:
    """The path of a version resource from a version payload."""
    for key in ("version_url", "url"):
        value = version.get(key)
        if isinstance(value, str) and value.rstrip("/") != source_path.rstrip("/"):
            return value if value.endswith("/") else value + "/"
    return f"{source_path.rstrip('/')}/{version['id']}/"


class Subscriber:
    """Runs passes of one subscription against a client and a local store."""

    def __init__(self, subscription: Subscription, client: TermsyncClient, store: LocalStore, *,
                 stop_event: threading.Event | None = None, progress: ProgressFn | None = None,
                 work_dir: str | Path | None = None) -> None:
        self.sub = subscription
        self.client = client
        self.store = store
        self.stop_event = stop_event or threading.Event()
        self.progress = progress
        self.work_dir = work_dir or subscription.work_dir
        self.name = subscription.name

    # --- entry point -----------------------------------------------------------------------
    def sync(self, full: bool = False) -> SyncResult:
        """One pass: bootstrap if needed, then diffs until current; never raises for sync errors."""
        result = SyncResult(name=self.name)
        started = time.monotonic()
        try:
            self.store.save_state(self.name, last_started=utcnow())
            self._pass(result, full)
            try:
                self._verify(result)
            except ContentMismatch as exc:
                if full:
                    raise
                logger.warning("%s; reloading from the export", exc)
                result.action = ""
                self._pass(result, full=True)
                self._verify(result)
            result.ok = True
        except SyncStopped as exc:
            result.error = str(exc)
            logger.warning("[%s] %s", self.name, exc)
        except (ApiError, ServerUnreachable, ExportError, InvalidItem, ContentMismatch) as exc:
            result.error = str(exc)
            logger.error("[%s] sync failed: %s", self.name, exc)
        except PyMongoError as exc:
            result.error = f"local database ({self.sub.mongo_uri}): {exc}"
            logger.error("[%s] sync failed: %s", self.name, result.error)
        except Exception as exc:  # a scheduler job must survive anything; keep the traceback
            result.error = f"{type(exc).__name__}: {exc}"
            logger.exception("[%s] sync failed unexpectedly", self.name)
        result.seconds = round(time.monotonic() - started, 3)
        try:
            self._record(result)
        except PyMongoError as exc:
            logger.error("[%s] cannot record the outcome in the local database: %s", self.name,
                         exc)
        return result

    def _record(self, result: SyncResult) -> None:
        """Save the outcome of a pass in the sync state and log it."""
        state = self.store.state(self.name)
        result.version = state.get("version")
        result.last_updated = state.get("lastUpdated")
        if result.ok:
            self.store.save_state(self.name, last_success=utcnow(), last_error=None,
                                  last_result=result.as_dict())
            logger.info("[%s] %s: version %s, lastUpdated %s, %d applied in %d page(s), %s, "
                        "%.1fs", self.name, result.action, result.version, result.last_updated,
                        result.applied, result.pages, result.counts, result.seconds)
        else:
            self.store.save_state(self.name, last_error=result.error, last_error_at=utcnow(),
                                  last_result=result.as_dict())

    def _check_stop(self) -> None:
        """Raise SyncStopped at a safe point when a shutdown was requested."""
        if self.stop_event.is_set():
            raise SyncStopped("stopped on request; the next pass resumes from the saved cursor")

    # --- the pass --------------------------------------------------------------------------
    def _pass(self, result: SyncResult, full: bool) -> None:
        """Resume a saved cursor, then bring the local copy up to the mode's target."""
        state = self.store.state(self.name)
        if state.get("source_url") != self.sub.source_url or state.get("mode") != self.sub.mode:
            if state.get("lastUpdated") or state.get("cursor"):
                logger.info("[%s] the subscription changed: starting over from an export",
                            self.name)
            self.store.save_state(self.name, cursor=None, lastUpdated=None, version=None,
                                  version_url=None, source_url=self.sub.source_url,
                                  mode=self.sub.mode)
            state = self.store.state(self.name)
        if full:
            # the current copy and its state stay until the export has replaced them
            self.store.save_state(self.name, cursor=None)
        elif state.get("cursor"):
            self._resume(result, state["cursor"])
        state = self.store.state(self.name)
        if self.sub.mode == "release":
            self._release_pass(result, state, full)
        else:
            self._snapshot_pass(result, state, full)

    def _release_pass(self, result: SyncResult, state: dict[str, Any], full: bool) -> None:
        """Follow released versions: export first, then diffs of each newer release."""
        latest = self.client.latest_released_version(self.sub.source_url)
        if latest is None:
            result.action = result.action or "no released version"
            logger.info("[%s] %s has no released version yet", self.name, self.sub.source_url)
            return
        if full or not state.get("lastUpdated"):
            self._bootstrap(result, latest)
            return
        if latest.get("id") == state.get("version"):
            result.action = result.action or "up to date"
            return
        if (_stamp(latest.get("created_on")) or "") < (state.get("version_created") or ""):
            # the newest release is older than ours (ours was unreleased): start from its export
            logger.warning("[%s] newest release %s predates %s; reloading from its export",
                           self.name, latest.get("id"), state.get("version"))
            self._bootstrap(result, latest)
            return
        version_path = _version_path(latest, self.sub.url)
        self._start_diff(result, version_path, latest, since=state["lastUpdated"])

    def _snapshot_pass(self, result: SyncResult, state: dict[str, Any], full: bool) -> None:
        """Follow HEAD: bootstrap from the latest release (if any), then HEAD diffs."""
        since = None if full else state.get("lastUpdated")
        if not since:
            latest = self.client.latest_released_version(self.sub.source_url)
            if latest is not None:
                self._bootstrap(result, latest)
                since = self.store.state(self.name).get("lastUpdated")
            else:
                logger.info("[%s] no released version: full HEAD diff", self.name)
                self.store.items(self.name).drop()
        self._start_diff(result, self.sub.url, None, since=since)
        result.action = "snapshot" if not result.action else result.action + " + snapshot"

    # --- bootstrap from an export ----------------------------------------------------------
    def _bootstrap(self, result: SyncResult, version: dict[str, Any]) -> None:
        """Replace the local copy with the version's export, streamed and batched."""
        version_path = _version_path(version, self.sub.url)
        logger.info("[%s] first sync from the export of %s", self.name, version.get("id"))
        downloader = ExportDownloader(self.client, self.work_dir, max_wait=self.sub.export_wait,
                                      progress=self.progress,
                                      should_stop=self.stop_event.is_set)
        export = downloader.fetch(version_path)
        staging = self.store.begin_load(self.name)
        loaded = 0
        max_seen: str | None = None
        try:
            with ExportReader(export.path) as reader:
                batch: list[ItemRecord] = []
                for kind, payload in reader.items():
                    try:
                        record = item_record(payload, kind, self.sub.url)
                    except InvalidItem as exc:
                        result.skipped += 1
                        logger.warning("[%s] export item skipped: %s", self.name, exc)
                        continue
                    batch.append(record)
                    if record.updated_on and (max_seen is None or record.updated_on > max_seen):
                        max_seen = record.updated_on
                    if len(batch) >= self.sub.batch_size:
                        loaded += self.store.load_batch(staging, batch)
                        kill_point("sync-export-batch")
                        batch = []
                        if self.progress:
                            self.progress("loading export", loaded, None)
                        self._check_stop()
                loaded += self.store.load_batch(staging, batch)
            header = reader.header
            self._check_stop()
            self.store.finish_load(self.name, staging)
        except BaseException:
            self.store.abandon_load(staging)
            raise
        finally:
            export.path.unlink(missing_ok=True)
        last_updated = _max_ts(_stamp(export.last_updated), _stamp(header.get("lastUpdated")),
                               _stamp(version.get("lastUpdated")), max_seen)
        self.store.save_state(self.name, cursor=None, version=version.get("id"),
                              version_url=version_path, lastUpdated=last_updated,
                              version_created=_stamp(version.get("created_on")),
                              server_checksum=content_checksum_of(version),
                              export_sha256=export.sha256, export_verified=export.verified)
        result.action = "export"
        result.applied += loaded
        logger.info("[%s] loaded %d items from the %s export of %s (%d bytes, sha256 %s)",
                    self.name, loaded, "verified" if export.verified else "UNVERIFIED",
                    version.get("id"), export.size, export.sha256)

    # --- diffs -----------------------------------------------------------------------------
    def _start_diff(self, result: SyncResult, target_path: str, version: dict[str, Any] | None,
                    since: str | None) -> None:
        """Save a cursor at the first diff page of `target_path`, then follow it."""
        params: dict[str, Any] = {"includeConcepts": "true", "includeMappings": "true",
                                  "includeRetired": "true", "limit": self.sub.page_size}
        if since:
            params["updatedSince"] = shift_timestamp(since, -self.sub.overlap_seconds)
        cursor = {
            "next": self.client.absolute(target_path) + "?" + urlencode(params),
            "target": target_path,
            "version": version.get("id") if version else None,
            "version_created": _stamp(version.get("created_on")) if version else None,
            "version_last_updated": _stamp(version.get("lastUpdated")) if version else None,
            "server_checksum": content_checksum_of(version) if version else None,
            "since": since, "max_seen": since, "pages": 0, "applied": 0,
        }
        self.store.save_state(self.name, cursor=cursor)
        self._follow(result, cursor)

    def _resume(self, result: SyncResult, cursor: dict[str, Any]) -> None:
        """Finish a pass a previous run left half way; restart it if the cursor went stale."""
        logger.info("[%s] resuming after page %d of %s", self.name, cursor.get("pages", 0),
                    cursor.get("target"))
        try:
            self._follow(result, cursor, resumed=True)
        except (BadRequest, NotFound) as exc:
            logger.warning("[%s] saved cursor no longer works (%s); restarting the pass",
                           self.name, exc.message)
            self.store.save_state(self.name, cursor=None)

    def _follow(self, result: SyncResult, cursor: dict[str, Any], resumed: bool = False) -> None:
        """Apply pages from the cursor on, saving it after each page; finish the pass."""
        url: str | None = cursor["next"]
        while url:
            self._check_stop()
            page = self.client.get_json(url)
            body = page.body if isinstance(page.body, dict) else {}
            records: list[ItemRecord] = []
            for kind in ITEM_ARRAYS:
                for payload in body.get(kind) or []:
                    try:
                        records.append(item_record(payload, kind, self.sub.url))
                    except InvalidItem as exc:
                        result.skipped += 1
                        logger.warning("[%s] diff item skipped: %s", self.name, exc)
            applied = self.store.apply_changes(self.name, records)
            kill_point("sync-page")
            cursor["max_seen"] = _max_ts(cursor.get("max_seen"),
                                         *(r.updated_on for r in records))
            cursor["server_checksum"] = content_checksum_of(body) or cursor.get("server_checksum")
            cursor["pages"] += 1
            cursor["applied"] += applied
            result.pages += 1
            result.applied += applied
            url = page.next_url
            if self.progress:
                self.progress("applying changes", cursor["applied"], None)
            if url:
                cursor["next"] = url
                self.store.save_state(self.name, cursor=cursor)
        state = self.store.state(self.name)
        finished: dict[str, Any] = {
            "cursor": None,
            "lastUpdated": _max_ts(state.get("lastUpdated"), cursor.get("max_seen"),
                                   cursor.get("version_last_updated")),
            "server_checksum": cursor.get("server_checksum"),
        }
        if cursor.get("version"):
            finished.update(version=cursor["version"], version_url=cursor["target"],
                            version_created=cursor.get("version_created"))
        elif self.sub.mode == "snapshot":
            finished.update(version="HEAD", version_url=self.sub.url)
        self.store.save_state(self.name, **finished)
        if not result.action:
            result.action = "resumed" if resumed else "diff"

    # --- convergence check -----------------------------------------------------------------
    def _verify(self, result: SyncResult) -> None:
        """Compare the local checksums.content with the server's, when the server gave one."""
        state = self.store.state(self.name)
        if self.sub.mode == "snapshot":
            # HEAD's checksum is not in diff pages; HEAD itself (without content) carries it
            head = self.client.get_json(self.sub.source_url).body
            self.store.save_state(self.name, server_checksum=content_checksum_of(head))
            state = self.store.state(self.name)
        result.counts = self.store.counts(self.name)
        result.checksum = self.store.checksum(self.name)
        result.server_checksum = state.get("server_checksum")
        matches = None if result.server_checksum is None else \
            result.checksum == result.server_checksum
        self.store.save_state(self.name, counts=result.counts, checksum=result.checksum,
                              checksum_ok=matches)
        if matches is False and self.sub.mode == "release":
            # a released version is immutable: a difference is a real divergence
            raise ContentMismatch(
                f"[{self.name}] local checksums.content {result.checksum} differs from "
                f"{result.server_checksum} of version {state.get('version')}")
        if matches is False:
            logger.warning("[%s] local checksum differs from HEAD's as of the last page "
                           "(HEAD may have changed since); the next pass catches up", self.name)


def build_subscriber(subscription: Subscription, store: LocalStore, *,
                     stop_event: threading.Event | None = None,
                     progress: ProgressFn | None = None) -> Subscriber:
    """A Subscriber with a client configured from the subscription."""
    client = TermsyncClient(subscription.server, subscription.token,
                            timeout=subscription.timeout,
                            connect_timeout=subscription.connect_timeout,
                            max_retries=subscription.max_retries,
                            backoff_max=subscription.backoff_max)
    return Subscriber(subscription, client, store, stop_event=stop_event, progress=progress)
