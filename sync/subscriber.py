"""The sync algorithm: first sync from the latest released export, then delta packages (release
mode, from termsync) or paged diffs; and applying an export or delta package from disk."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .client import (
    ApiError,
    BadRequest,
    JsonResponse,
    MethodNotAllowed,
    NotFound,
    ServerUnreachable,
    TermsyncClient,
)
from .config import Subscription
from .delta import DeltaManifest, DeltaRefused, apply_delta, read_manifest, same_repository
from .download import CHUNK_SIZE, ExportDownloader, ExportFile, ProgressFn
from .errors import DownloadStopped, ExportError
from .items import (
    InvalidItem,
    ItemRecord,
    content_checksum_of,
    item_record,
    normalize_timestamp,
    shift_timestamp,
)
from .reader import ITEM_ARRAYS, ExportReader
from .state import DiffCursor, SyncState
from .store import LocalStore, Staging, StoreError, utcnow

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
        self.state = SyncState()
        # the local checksum a delta's apply computed just before it committed: the convergence
        # check takes it instead of reading every item a third time
        self.applied_checksum: str | None = None

    # --- entry point -----------------------------------------------------------------------
    def sync(self, full: bool = False) -> SyncResult:
        """One pass: bootstrap if needed, then diffs until current; never raises for sync errors."""
        result = SyncResult(name=self.name)
        started = time.monotonic()
        self.applied_checksum = None
        try:
            self.store.recover(self.name)  # a delta a crash interrupted (MongoDB) goes first
            self.state = self.store.load_state(self.name)
            self.state.last_started = utcnow()
            self._save()
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
        except (ApiError, ServerUnreachable, ExportError, InvalidItem, ContentMismatch,
                StoreError) as exc:
            result.error = str(exc)
            logger.error("[%s] sync failed: %s", self.name, exc)
        except Exception as exc:  # a scheduler job must survive anything; keep the traceback
            result.error = f"{type(exc).__name__}: {exc}"
            logger.exception("[%s] sync failed unexpectedly", self.name)
        return self._finish(result, started)

    def _save(self) -> None:
        """Persist the state as it is now."""
        self.store.save_state(self.name, self.state)

    def _finish(self, result: SyncResult, started: float) -> SyncResult:
        """Time the pass and record its outcome (a store that cannot take it is logged)."""
        result.seconds = round(time.monotonic() - started, 3)
        try:
            self._record(result)
        except StoreError as exc:
            logger.error("[%s] cannot record the outcome in the local database: %s", self.name,
                         exc)
        return result

    def _record(self, result: SyncResult) -> None:
        """Save the outcome of a pass in the sync state and log it."""
        state = self.store.load_state(self.name)
        result.version = state.version
        result.last_updated = state.last_updated
        state.last_result = result.as_dict()
        if result.ok:
            state.last_success = utcnow()
            state.last_error = None
            logger.info("[%s] %s: version %s, lastUpdated %s, %d applied in %d page(s), %s, "
                        "%.1fs", self.name, result.action, result.version, result.last_updated,
                        result.applied, result.pages, result.counts, result.seconds)
        else:
            state.last_error = result.error
            state.last_error_at = utcnow()
        self.store.save_state(self.name, state)
        self.state = state

    def _check_stop(self) -> None:
        """Raise SyncStopped at a safe point when a shutdown was requested."""
        if self.stop_event.is_set():
            raise SyncStopped("stopped on request; the next pass resumes from the saved cursor")

    # --- the pass --------------------------------------------------------------------------
    def _pass(self, result: SyncResult, full: bool) -> None:
        """Resume a saved cursor, then bring the local copy up to the mode's target."""
        state = self.state
        if state.source_url != self.sub.source_url or state.mode != self.sub.mode:
            if state.last_updated or state.cursor:
                logger.info("[%s] the subscription changed: starting over from an export",
                            self.name)
            state.forget_position()
            state.source_url = self.sub.source_url
            state.mode = self.sub.mode
            self._save()
        if full:
            # the current copy and its state stay until the export has replaced them
            state.cursor = None
            self._save()
        elif state.cursor:
            self._resume(result, state.cursor)
        if self.sub.mode == "release":
            self._release_pass(result, full)
        else:
            self._snapshot_pass(result, full)

    def _release_pass(self, result: SyncResult, full: bool) -> None:
        """Follow released versions: export first, then diffs of each newer release."""
        state = self.state
        latest = self.client.latest_released_version(self.sub.source_url)
        if latest is None:
            result.action = result.action or "no released version"
            logger.info("[%s] %s has no released version yet", self.name, self.sub.source_url)
            return
        if full or not state.last_updated:
            self._bootstrap(result, latest)
            return
        if latest.get("id") == state.version:
            result.action = result.action or "up to date"
            return
        if (_stamp(latest.get("created_on")) or "") < (state.version_created or ""):
            # the newest release is older than ours (ours was unreleased): start from its export
            logger.warning("[%s] newest release %s predates %s; reloading from its export",
                           self.name, latest.get("id"), state.version)
            self._bootstrap(result, latest)
            return
        version_path = _version_path(latest, self.sub.url)
        if self._delta_pass(result, latest, version_path):
            return
        self._start_diff(result, version_path, latest, since=state.last_updated)

    def _snapshot_pass(self, result: SyncResult, full: bool) -> None:
        """Follow HEAD: bootstrap from the latest release (if any), then HEAD diffs."""
        since = None if full else self.state.last_updated
        before = result.action  # "resumed" (a saved cursor finished first) or ""
        if not since:
            latest = self.client.latest_released_version(self.sub.source_url)
            if latest is not None:
                self._bootstrap(result, latest)
                since = self.state.last_updated
                before = result.action
            else:
                logger.info("[%s] no released version: full HEAD diff", self.name)
                self.store.clear(self.name)
        self._start_diff(result, self.sub.url, None, since=since)
        result.action = f"{before} + snapshot" if before else "snapshot"

    # --- bootstrap from an export ----------------------------------------------------------
    def _bootstrap(self, result: SyncResult, version: dict[str, Any]) -> None:
        """Replace the local copy with the version's export, streamed and batched."""
        version_path = _version_path(version, self.sub.url)
        logger.info("[%s] first sync from the export of %s", self.name, version.get("id"))
        downloader = ExportDownloader(self.client, self.work_dir, max_wait=self.sub.export_wait,
                                      progress=self.progress,
                                      should_stop=self.stop_event.is_set)
        export = downloader.fetch(version_path)
        try:
            self._install_export(result, export.path, version, version_path, export)
        finally:
            export.path.unlink(missing_ok=True)

    def _install_export(self, result: SyncResult, path: Path, version: dict[str, Any],
                        version_path: str, export: ExportFile | None,
                        check: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Load an export in place of the local copy, once its content is the version's (its
        `checksums.content`, where the server publishes one; `check` the export's header)."""
        expected = content_checksum_of(version)

        def verify(header: dict[str, Any], staging: Staging) -> None:
            if check is not None:
                check(header)
            want = expected or content_checksum_of(header)
            if want is not None:
                staged = self.store.staged_checksum(staging)
                if staged != want:
                    raise ContentMismatch(
                        f"[{self.name}] the export of {version.get('id')} holds checksums.content "
                        f"{staged}, not the version's {want}; the local copy is unchanged")

        loaded, max_seen, header = self._load_export(result, path, verify)
        state = self.state
        state.cursor = None
        state.version = version.get("id")
        state.version_url = version_path
        state.last_updated = _max_ts(_stamp(export.last_updated) if export else None,
                                     _stamp(header.get("lastUpdated")),
                                     _stamp(version.get("lastUpdated")), max_seen)
        state.version_created = _stamp(version.get("created_on"))
        state.server_checksum = content_checksum_of(version) or content_checksum_of(header)
        if export is not None:
            state.export_sha256 = export.sha256
            state.export_verified = export.verified
        self._save()
        result.action = "export"
        result.applied += loaded
        if export is not None:
            logger.info("[%s] loaded %d items from the %s export of %s (%d bytes, sha256 %s)",
                        self.name, loaded, "verified" if export.verified else "UNVERIFIED",
                        version.get("id"), export.size, export.sha256)

    def _load_export(self, result: SyncResult, path: Path,
                     verify: Callable[[dict[str, Any], Staging], None] | None = None,
                     ) -> tuple[int, str | None, dict[str, Any]]:
        """Stream the export into a staging area and, once `verify` accepts it, swap it in:
        (items, newest updated_on, the export's header fields)."""
        staging = self.store.begin_load(self.name)
        max_seen: str | None = None
        try:
            with ExportReader(path) as reader:
                batch: list[ItemRecord] = []
                for kind, payload in reader.items():
                    record = self._item(result, payload, kind, "export")
                    if record is None:
                        continue
                    batch.append(record)
                    if record.updated_on and (max_seen is None or record.updated_on > max_seen):
                        max_seen = record.updated_on
                    if len(batch) >= self.sub.batch_size:
                        self.store.load_batch(staging, batch)
                        batch = []
                        if self.progress:
                            self.progress("loading export", staging.loaded, None)
                        self._check_stop()
                self.store.load_batch(staging, batch)
            self._check_stop()
            if verify is not None:
                verify(reader.header, staging)
            self.store.finish_load(staging)
        except BaseException:
            self.store.abandon_load(staging)
            raise
        return staging.loaded, max_seen, reader.header

    def _item(self, result: SyncResult, payload: dict[str, Any], kind: str, where: str
              ) -> ItemRecord | None:
        """The record of an item payload; None (counted, logged) when it is unusable."""
        try:
            return item_record(payload, kind, self.sub.url)
        except InvalidItem as exc:
            result.skipped += 1
            logger.warning("[%s] %s item skipped: %s", self.name, where, exc)
            return None

    # --- delta packages --------------------------------------------------------------------
    def _delta_pass(self, result: SyncResult, latest: dict[str, Any], version_path: str) -> bool:
        """Move from our release to `latest` with its delta package from ours: one download.
        False (diffs follow) when the server has no deltas (OCL; termsync answers 400 when ours
        cannot start one) or the delta does not fit this copy."""
        state = self.state
        if not state.version or not self._wants_tombstones(latest):
            return False  # OCL has no delta packages: diffs
        downloader = ExportDownloader(self.client, self.work_dir, max_wait=self.sub.export_wait,
                                      progress=self.progress,
                                      should_stop=self.stop_event.is_set)
        try:
            package = downloader.fetch(version_path, since=state.version)
        except DownloadStopped:
            raise
        except (BadRequest, NotFound, MethodNotAllowed, ExportError) as exc:
            logger.info("[%s] no delta package %s -> %s (%s): following the diff", self.name,
                        state.version, latest.get("id"), exc)
            return False
        try:
            manifest = read_manifest(package.path)
            if manifest is None:
                # a server that does not know `since` sent the whole export: load it as one
                logger.info("[%s] the server answered the delta with the whole export of %s",
                            self.name, latest.get("id"))
                self._install_export(result, package.path, latest, version_path, package)
                return True
            if manifest.end.id != latest.get("id"):
                logger.warning("[%s] the delta to %s is for %s: following the diff", self.name,
                               latest.get("id"), manifest.end.id)
                return False
            try:
                self._apply_delta(result, package.path, manifest)
            except DeltaRefused as exc:
                logger.warning("[%s] %s: following the diff instead", self.name, exc)
                return False
        finally:
            package.path.unlink(missing_ok=True)
        state = self.state
        state.export_sha256 = package.sha256
        state.export_verified = package.verified
        self._save()
        logger.info("[%s] moved to %s with its delta package (%d bytes, %s)", self.name,
                    manifest.end.id, package.size,
                    "verified" if package.verified else "UNVERIFIED")
        return True

    def _apply_delta(self, result: SyncResult, path: Path, manifest: DeltaManifest) -> None:
        """Check a delta package against this copy and apply it all or nothing."""
        if not same_repository(manifest.repository_url, self.sub.url):
            raise DeltaRefused(f"{path} is a delta of {manifest.repository_url}, not of "
                               f"{self.sub.url}")
        state = self.store.load_state(self.name)
        state.source_url = self.sub.source_url
        state.mode = self.sub.mode
        done = apply_delta(self.store, self.name, path, manifest, state,
                           lambda payload, kind: self._item(result, payload, kind, "delta"),
                           batch_size=self.sub.batch_size, should_stop=self._check_stop)
        self.state = self.store.load_state(self.name)
        self.applied_checksum = done.checksum
        result.action = "delta"
        result.applied += done.written

    # --- from disk -------------------------------------------------------------------------
    def apply_file(self, path: str | Path, sha256: str | None = None) -> SyncResult:
        """`termsync-sync apply FILE`: bring in a whole export or a delta package from disk
        (a site without a network). Everything is checked before the local copy changes, and
        any error leaves it as it was; never raises for such errors (the result says)."""
        result = SyncResult(name=self.name)
        started = time.monotonic()
        file = Path(path)
        self.applied_checksum = None
        try:
            self.store.recover(self.name)
            self.state = self.store.load_state(self.name)
            digest = _file_sha256(file)
            if sha256 is not None and digest != sha256.strip().lower():
                raise DeltaRefused(f"{file} has sha256 {digest}, not {sha256}")
            manifest = read_manifest(file)
            if manifest is None:
                self._apply_export_file(result, file)
            else:
                self._apply_delta(result, file, manifest)
            state = self.state
            state.export_sha256 = digest
            state.export_verified = sha256 is not None
            self._save()
            self._verify(result, offline=True)
            result.ok = True
        except (DeltaRefused, ExportError, InvalidItem, ContentMismatch, StoreError,
                OSError) as exc:
            result.error = str(exc)
            logger.error("[%s] %s not applied: %s", self.name, file, exc)
        return self._finish(result, started)

    def _apply_export_file(self, result: SyncResult, path: Path) -> None:
        """A whole export from disk: this subscription's repository, its checksum verified
        before it replaces the local copy."""
        def check(header: dict[str, Any]) -> None:
            where = str(header.get("version_url") or header.get("url") or "")
            if not where.startswith(self.sub.url.rstrip("/") + "/"):
                raise DeltaRefused(f"{path} is an export of {where or 'an unnamed repository'}, "
                                   f"not of {self.sub.url}")

        state = self.state
        state.source_url = self.sub.source_url
        state.mode = self.sub.mode
        state.cursor = None
        holder: dict[str, Any] = {}

        def remember(header: dict[str, Any]) -> None:
            check(header)
            holder.update(header)

        self._install_export(result, path, {}, "", None, check=remember)
        header = holder
        state = self.state
        state.version = header.get("id") or header.get("version")
        state.version_url = str(header.get("version_url") or "") or None
        state.version_created = _stamp(header.get("created_on"))
        self._save()
        result.action = "export (file)"

    # --- diffs -----------------------------------------------------------------------------
    def _wants_tombstones(self, version: dict[str, Any] | None) -> bool:
        """Whether to send includeDeleted=true: to termsync (configured, or detected by the
        `checksums.content` it publishes on every source and version), never to OCL."""
        if self.sub.server_kind != "auto":
            return self.sub.server_kind == "termsync"
        payload = version if version is not None else self.client.get_json(self.sub.url).body
        return content_checksum_of(payload) is not None

    def _start_diff(self, result: SyncResult, target_path: str, version: dict[str, Any] | None,
                    since: str | None) -> None:
        """Save a cursor at the first diff page of `target_path`, then follow it."""
        params: dict[str, Any] = {"includeConcepts": "true", "includeMappings": "true",
                                  "includeRetired": "true"}
        include_deleted = self._wants_tombstones(version)
        if include_deleted:
            params["includeDeleted"] = "true"
        params["limit"] = self.sub.page_size
        if since:
            params["updatedSince"] = shift_timestamp(since, -self.sub.overlap_seconds)
        cursor = DiffCursor(
            next_url=self.client.absolute(target_path) + "?" + urlencode(params),
            target=target_path,
            version=version.get("id") if version else None,
            version_created=_stamp(version.get("created_on")) if version else None,
            version_last_updated=_stamp(version.get("lastUpdated")) if version else None,
            server_checksum=content_checksum_of(version) if version else None,
            since=since, max_seen=since, include_deleted=include_deleted)
        self.state.cursor = cursor
        self._save()
        self._follow(result, cursor)

    def _resume(self, result: SyncResult, cursor: DiffCursor) -> None:
        """Finish a pass a previous run left half way; restart it if the cursor went stale."""
        logger.info("[%s] resuming after page %d of %s", self.name, cursor.pages, cursor.target)
        try:
            self._follow(result, cursor, resumed=True)
        except (BadRequest, NotFound) as exc:
            logger.warning("[%s] saved cursor no longer works (%s); restarting the pass",
                           self.name, exc.message)
            self.state.cursor = None
            self._save()

    def _page(self, result: SyncResult, url: str, cursor: DiffCursor) -> JsonResponse | None:
        """A diff page; None when the pass has nothing more to read from the diff.

        A real OCL v2 answers the first page of a diff with `404 {"detail": "Not found."}` when
        the repository itself was not edited since (`updatedSince` filters the repository, not
        its concepts), however many of its concepts changed. So when the repository answers 200,
        the 404 is not trusted as "no changes": `_cross_check` asks its listings. A 404 for a
        later page (a stale cursor) or for the repository itself stays an error.
        """
        try:
            return self.client.get_json(url)
        except NotFound as exc:
            if cursor.pages > 0:
                raise
            try:
                self.client.get_json(cursor.target)
            except NotFound:
                raise exc from None
            self._cross_check(result, cursor, "answered 404 to the diff, and 200 itself")
            return None

    def _cross_check(self, result: SyncResult, cursor: DiffCursor, why: str) -> None:
        """When a diff cannot be trusted (OCL): ask `concepts/` and `mappings/` of the diff's
        repository how many items changed since (`updatedSince`, `limit=1`, `num_found`), and
        when they list any, fetch them through those listings."""
        base = self.client.absolute(cursor.target).rstrip("/") + "/"
        since = _since_param(cursor.next_url)
        asked = {"includeRetired": "true", "limit": 1, **({"updatedSince": since} if since else {})}
        found = {kind: _num_found(self.client.get_json(f"{base}{kind}/", asked))
                 for kind in ITEM_ARRAYS}
        if not any(found.values()):
            logger.info("[%s] %s %s; its concepts/ and mappings/ list nothing changed since %s "
                        "either: no changes (cross-checked)", self.name, cursor.target, why, since)
            return
        logger.info("[%s] %s %s, but its listings hold %d concepts and %d mappings updated "
                    "since %s (the overlap included): reading them through concepts/ and "
                    "mappings/", self.name, cursor.target, why, found["concepts"],
                    found["mappings"], since)
        for kind, count in found.items():
            if count:
                self._read_listing(result, cursor, f"{base}{kind}/", kind, since)

    def _read_listing(self, result: SyncResult, cursor: DiffCursor, listing: str, kind: str,
                      since: str | None) -> None:
        """Apply every item a listing holds since `since`, page by page (`next`). A listing
        sorted newest first shifts when an item changes while it is paged, so it is read again
        (at most LISTING_ROUNDS times) until every item it counted was seen."""
        params = {"includeRetired": "true", "verbose": "true", "limit": self.sub.page_size,
                  **({"updatedSince": since} if since else {})}
        for attempt in range(1, LISTING_ROUNDS + 1):
            seen: set[str] = set()
            expected: int | None = None
            url: str | None = f"{listing}?{urlencode(params)}"
            while url:
                self._check_stop()
                page = self.client.get_json(url)
                if expected is None:
                    expected = _num_found(page)
                payloads = page.body if isinstance(page.body, list) else \
                    (page.body.get("results") or []) if isinstance(page.body, dict) else []
                records = [record for payload in payloads if isinstance(payload, dict)
                           and (record := self._item(result, payload, kind, "listing"))
                           is not None]
                applied = self.store.apply_changes(self.name, records)
                cursor.max_seen = _max_ts(cursor.max_seen, *(r.updated_on for r in records))
                cursor.applied += applied
                result.pages += 1
                result.applied += applied
                seen.update(record.url for record in records)
                url = page.next_url
            if len(seen) >= (expected or 0):
                return
            logger.warning("[%s] %s changed while it was read (%d of %d items seen): reading it "
                           "again (%d/%d)", self.name, listing, len(seen), expected, attempt,
                           LISTING_ROUNDS)

    def _follow(self, result: SyncResult, cursor: DiffCursor, resumed: bool = False) -> None:
        """Apply pages from the cursor on, saving it after each page; finish the pass."""
        url: str | None = cursor.next_url
        while url:
            self._check_stop()
            page = self._page(result, url, cursor)
            if page is None:
                break
            body = page.body if isinstance(page.body, dict) else {}
            if cursor.pages == 0 and not page.next_url and not cursor.include_deleted and any(
                    len(body.get(kind) or []) >= self.sub.page_size for kind in ITEM_ARRAYS):
                # OCL cuts a repository's diff at `limit` and links no next page: the rest
                # would be lost, so the listings, which page, are read instead
                self._cross_check(result, cursor, f"cut its diff at {self.sub.page_size} items "
                                                  "with no next page")
                break
            records = [record for kind in ITEM_ARRAYS for payload in body.get(kind) or []
                       if (record := self._item(result, payload, kind, "diff")) is not None]
            applied = self.store.apply_changes(self.name, records)
            cursor.max_seen = _max_ts(cursor.max_seen, *(r.updated_on for r in records))
            cursor.server_checksum = content_checksum_of(body) or cursor.server_checksum
            cursor.pages += 1
            cursor.applied += applied
            result.pages += 1
            result.applied += applied
            url = page.next_url
            if self.progress:
                self.progress("applying changes", cursor.applied, None)
            if url:
                cursor.next_url = url
                self.state.cursor = cursor
                self._save()
        state = self.state
        state.cursor = None
        state.last_updated = _max_ts(state.last_updated, cursor.max_seen,
                                     cursor.version_last_updated)
        state.server_checksum = cursor.server_checksum
        if cursor.version:
            state.version = cursor.version
            state.version_url = cursor.target
            state.version_created = cursor.version_created
        elif self.sub.mode == "snapshot":
            state.version = "HEAD"
            state.version_url = self.sub.url
        self._save()
        if not result.action:
            result.action = "resumed" if resumed else "diff"

    # --- convergence check -----------------------------------------------------------------
    def _verify(self, result: SyncResult, offline: bool = False) -> None:
        """Compare the local checksums.content with the server's, when the server gave one
        (`offline`: with the one the applied file gave)."""
        state = self.state
        if self.sub.mode == "snapshot" and not offline:
            # HEAD's checksum is not in diff pages; HEAD itself (without content) carries it
            state.server_checksum = content_checksum_of(
                self.client.get_json(self.sub.source_url).body)
        result.counts = self.store.counts(self.name)
        result.checksum = self.applied_checksum or self.store.checksum(self.name)
        self.applied_checksum = None
        result.server_checksum = state.server_checksum
        matches = None if result.server_checksum is None else \
            result.checksum == result.server_checksum
        state.counts = result.counts
        state.checksum = result.checksum
        state.checksum_ok = matches
        self._save()
        if matches is False and self.sub.mode == "release":
            # a released version is immutable: a difference is a real divergence
            raise ContentMismatch(
                f"[{self.name}] local checksums.content {result.checksum} differs from "
                f"{result.server_checksum} of version {state.version}")
        if matches is False:
            logger.warning("[%s] local checksum differs from HEAD's as of the last page "
                           "(HEAD may have changed since); the next pass catches up", self.name)


LISTING_ROUNDS = 3  # readings of a listing that shifts while it is paged


def _since_param(url: str) -> str | None:
    """The `updatedSince` a diff URL asks with."""
    values = [value for key, value in parse_qsl(urlsplit(url).query) if key == "updatedSince"]
    return values[0] if values else None


def _num_found(answer: JsonResponse) -> int:
    """How many items a listing holds: its `num_found` header, else what it returned."""
    try:
        return int(answer.headers.get("num_found") or "")
    except ValueError:
        body = answer.body
        return len(body) if isinstance(body, list) else len((body or {}).get("results") or [])


def _file_sha256(path: Path) -> str:
    """The sha256 of a file, read a block at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_SIZE):
            digest.update(block)
    return digest.hexdigest()


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
