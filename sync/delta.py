"""Delta packages on the subscriber's side: the manifest, and applying one all or nothing.

A delta package (docs/exports.md, Delta packages) is a zip whose `export.json` holds the items
created, changed or retired between two released versions (`concepts`, `mappings`) and the
tombstones of those deleted (`deleted`), and whose `manifest.json` names both versions with their
`checksums.content`. Applying it to a copy of `from` gives `to`; `apply_delta` makes sure of that
before anything is visible:

1. the manifest names the subscription's repository, and the local copy is at `from`: its state
   says so and its checksum, computed now, equals `from`'s;
2. a first pass over the file computes the checksum the copy will have afterwards (a sum: the
   local terms of the urls it replaces out, the file's in) and compares it with `to`'s, so a
   damaged or tampered file is refused before a write;
3. a second pass writes it through the store's changeset (one transaction on SQLite; an undo
   journal on MongoDB), and the checksum is computed once more before it commits, with the state
   that records the new version; any error leaves the copy as it was.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from .errors import ExportError, InvalidExport
from .items import ItemRecord, normalize_timestamp, shifted_checksum
from .reader import ExportReader
from .state import SyncState
from .store import LocalStore

logger = logging.getLogger(__name__)

MANIFEST_ENTRY = "manifest.json"
DELTA_ARRAYS = ("concepts", "mappings", "deleted")
MAX_MANIFEST_BYTES = 1 << 20


class DeltaRefused(ExportError):
    """A delta package (or export) that must not be applied to this copy: another repository, a
    base that is not the local version, checksums that do not match. Nothing was written."""


@dataclass(frozen=True)
class VersionMark:
    """One end of a delta package: a released version and its `checksums.content`."""

    id: str
    url: str
    checksum: str
    last_updated: str | None
    created_on: str | None


@dataclass(frozen=True)
class DeltaManifest:
    """What `manifest.json` says."""

    repository_url: str
    start: VersionMark
    end: VersionMark
    counts: dict[str, dict[str, int]]
    items: int


def _mark(value: Any, which: str, path: Path) -> VersionMark:
    checksums = value.get("checksums") if isinstance(value, dict) else None
    checksum = checksums.get("content") if isinstance(checksums, dict) else None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) \
            or not isinstance(checksum, str):
        raise InvalidExport(f"{path}: manifest.json has no usable `{which}` (id and "
                            "checksums.content)")
    return VersionMark(value["id"], str(value.get("url") or ""), checksum,
                       normalize_timestamp(value.get("lastUpdated")),
                       normalize_timestamp(value.get("created_on")))


def read_manifest(path: Path) -> DeltaManifest | None:
    """The manifest of a delta package; None for a whole export (no manifest.json entry)."""
    with path.open("rb") as probe:
        if not probe.read(4).startswith(b"PK"):
            return None  # tar.gz or plain JSON: exports, never deltas
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(MANIFEST_ENTRY)
            except KeyError:
                return None
            if info.file_size > MAX_MANIFEST_BYTES:
                raise InvalidExport(f"{path}: manifest.json is {info.file_size} bytes, not a "
                                    "manifest")
            document = orjson.loads(archive.read(info))
    except (zipfile.BadZipFile, OSError, orjson.JSONDecodeError) as exc:
        raise InvalidExport(f"{path}: unreadable manifest.json: {exc}") from exc
    if not isinstance(document, dict) or document.get("type") != "Delta Package":
        raise InvalidExport(f"{path}: manifest.json is not a delta package's")
    repository, counts = document.get("repository"), document.get("counts")
    if not isinstance(repository, dict):
        repository = {}
    if not isinstance(counts, dict):
        counts = {}
    return DeltaManifest(str(repository.get("url") or ""), _mark(document.get("from"), "from", path),
                         _mark(document.get("to"), "to", path), counts,
                         int(document.get("items") or 0))


def same_repository(url: str, subscribed: str) -> bool:
    """Whether a repository url names the subscription's repository (paths compared)."""
    return urlsplit(url).path.rstrip("/") == urlsplit(subscribed).path.rstrip("/")


@dataclass
class DeltaApplied:
    """What applying a delta did."""

    written: int
    checksum: str


def apply_delta(store: LocalStore, name: str, path: Path, manifest: DeltaManifest,
                state: SyncState, record: Callable[[dict[str, Any], str], ItemRecord | None], *,
                batch_size: int = 1000, should_stop: Callable[[], None] = lambda: None,
                ) -> DeltaApplied:
    """Check and apply a delta package to a subscription's copy (see the module docstring);
    `state` is updated and committed with the changes. DeltaRefused before any write when it
    does not fit; any error leaves the copy as it was. `record` turns a payload into an item
    record (None: unusable, which makes the checksums differ)."""
    if state.version != manifest.start.id:
        raise DeltaRefused(f"{path} goes from version {manifest.start.id} to {manifest.end.id}, "
                           f"but the local copy is at {state.version or 'no version'}")
    local = store.checksum(name)
    if local != manifest.start.checksum:
        raise DeltaRefused(f"{path} applies to {manifest.start.id} with checksums.content "
                           f"{manifest.start.checksum}; the local copy's is {local} (it is not "
                           f"exactly {manifest.start.id})")
    predicted = local
    header: dict[str, Any] = {}
    for batch, seen in _batches(path, record, batch_size):
        header = seen
        stored = store.live_versions(name, [item.url for item in batch])
        predicted = shifted_checksum(
            predicted, ((item.url, item.version) for item in batch if not item.deleted),
            ((item.url, stored[item.url]) for item in batch if item.url in stored))
    if header.get("id") not in (None, manifest.end.id):
        raise DeltaRefused(f"{path}: export.json is version {header.get('id')}, its manifest "
                           f"says {manifest.end.id}")
    if predicted != manifest.end.checksum:
        raise DeltaRefused(f"{path} is damaged or altered: applied to {manifest.start.id} it "
                           f"would give checksums.content {predicted}, not {manifest.end.id}'s "
                           f"{manifest.end.checksum}")
    changeset = store.begin_changes(name)
    try:
        for batch, _ in _batches(path, record, batch_size):
            store.write_changes(changeset, batch)
            should_stop()
        after = store.changes_checksum(changeset)
        if after != manifest.end.checksum:  # the file changed between the passes, or a bug
            raise DeltaRefused(f"applying {path} gave checksums.content {after}, not "
                               f"{manifest.end.id}'s {manifest.end.checksum}; rolled back")
        state.version = manifest.end.id
        state.version_url = manifest.end.url or state.version_url
        state.version_created = manifest.end.created_on
        state.last_updated = max(filter(None, (state.last_updated, manifest.end.last_updated)),
                                 default=None)
        state.server_checksum = manifest.end.checksum
        state.checksum = after
        state.checksum_ok = True
        state.cursor = None
        store.commit_changes(changeset, state)
    except BaseException:
        store.abandon_changes(changeset)
        raise
    logger.info("[%s] applied the delta %s -> %s: %d items (%s)", name, manifest.start.id,
                manifest.end.id, changeset.written, manifest.counts)
    return DeltaApplied(changeset.written, after)


def _batches(path: Path, record: Callable[[dict[str, Any], str], ItemRecord | None],
             batch_size: int) -> Iterator[tuple[list[ItemRecord], dict[str, Any]]]:
    """The file's items and tombstones as records, a batch at a time, with export.json's
    header (complete with the last batch)."""
    with ExportReader(path, arrays=DELTA_ARRAYS) as reader:
        batch: list[ItemRecord] = []
        for kind, payload in reader.items():
            item = record(payload, kind)
            if item is not None:
                batch.append(item)
            if len(batch) >= batch_size:
                yield batch, reader.header
                batch = []
        yield batch, reader.header
