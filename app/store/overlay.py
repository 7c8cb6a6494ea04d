"""A dry-run overlay over a store: reads fall through to the real repositories, writes stay in
memory. The loader runs a dry run through the very same domain code as a real one, over this.

Only what the domain's write paths use is overlaid (accounts, sources, versions, items and their
mapping keys, the references and entries of collections); every other repository is the real one,
read-only by convention.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Unpack

from .. import model
from ..model import HEAD_SEQ, LIVE, Document
from ..model.records import Version, VersionChanges
from . import interfaces
from .base import DuplicateKey, StaleHead
from .records import version_document, version_record

_GONE = object()


class OverlayDocuments(interfaces.DocumentRepository):
    """Documents by `_id`: staged ones first, then the real repository's."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.staged: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)  # reads the overlay does not stage (lists, ...)

    def get(self, key: str) -> Document | None:
        if key in self.staged:
            staged = self.staged[key]
            return None if staged is _GONE else dict(staged)
        document: Document | None = self.real.get(key)
        return document

    def insert(self, document: Document) -> None:
        if self.get(document["_id"]) is not None:
            raise DuplicateKey(str(document["_id"]))
        self.staged[document["_id"]] = dict(document)

    def update(self, key: str, changes: Document) -> Document | None:
        document = self.get(key)
        if document is None:
            return None
        document.update(changes)
        self.staged[key] = document
        return dict(document)

    def delete(self, key: str) -> None:
        self.staged[key] = _GONE


class OverlayVersions(interfaces.Versions):
    """Versions: staged ones first (changed as their stored documents would be), then the real
    repository's; lists read the real repository alone (what a dry run cuts is not listed)."""

    def __init__(self, real: interfaces.Versions) -> None:
        self.real = real
        self.staged: dict[str, Version | None] = {}  # None: deleted

    def get(self, url: str) -> Version | None:
        if url in self.staged:
            return self.staged[url]
        return self.real.get(url)

    def insert(self, version: Version) -> None:
        if self.get(version.url) is not None:
            raise DuplicateKey(version.url)
        self.staged[version.url] = version

    def update(self, url: str, **changes: Unpack[VersionChanges]) -> Version | None:
        version = self.get(url)
        if version is None:
            return None
        self.staged[url] = version_record(dict(version_document(version), **changes))
        return self.staged[url]

    def delete(self, url: str) -> None:
        self.staged[url] = None

    def delete_for_source(self, source_url: str) -> None:
        self.real.delete_for_source(source_url)

    def list(self, source_url: str, released: bool | None, skip: int, limit: int,
             updated_since: str | None = None) -> tuple[builtins.list[Version], int]:
        return self.real.list(source_url, released, skip, limit, updated_since)

    def all_released(self) -> Iterator[Version]:
        return self.real.all_released()

    def newest_released(self, skip: int, limit: int) -> builtins.list[Version]:
        return self.real.newest_released(skip, limit)

    def dump(self) -> Iterator[Document]:
        return self.real.dump()

    def load(self, documents: Iterable[Document]) -> int:
        return self.real.load(documents)


class OverlayOrgs(OverlayDocuments):
    """Orgs and their members."""

    def add_member(self, org_id: str, username: str) -> None:
        org = self.get(org_id)
        if org is not None and username not in org.get("members", []):
            self.update(org_id, {"members": [*org.get("members", []), username]})

    def for_member(self, username: str) -> list[str]:
        orgs = set(self.real.for_member(username))
        for key, org in self.staged.items():
            if org is not _GONE and username in org.get("members", []):
                orgs.add(key)
        return sorted(orgs)


class OverlaySources(OverlayDocuments):
    """Sources: counters continue from the real ones in memory."""

    def insert(self, document: Document) -> None:
        super().insert(dict(document, seq=0, mapping_counter=0, last_updated=""))

    def next_mapping_number(self, url: str) -> int:
        source = self.get(url) or {}
        number = int(source.get("mapping_counter") or 0) + 1
        self.update(url, {"mapping_counter": number})
        return number

    def next_seq(self, url: str, updated_on: str) -> int:
        source = self.get(url) or {}
        seq = int(source.get("seq") or 0) + 1
        self.update(url, {"seq": seq, "last_updated": max(source.get("last_updated") or "",
                                                          updated_on)})
        return seq

    def cut_state(self, url: str) -> model.CutState:
        source = self.get(url) or {}
        return model.CutState(int(source.get("seq") or 0), source.get("last_updated") or None,
                             None, None)


class OverlayItems(interfaces.Items):
    """Item writes kept in memory, by item url; reads of other items fall through."""

    def __init__(self, real: interfaces.Items, sources: OverlaySources) -> None:
        self.real = real
        self.sources = sources
        self.live: dict[str, Document] = {}
        self.mapping_keys: dict[str, str | None] = {}

    def head(self, url: str) -> Document | None:
        if url in self.live:
            return self.live[url]
        return self.real.head(url)

    def current(self, url: str, seq: int = HEAD_SEQ) -> Document | None:
        if url in self.live and seq >= HEAD_SEQ:
            return self.live[url]
        return self.real.current(url, seq)

    def item_version(self, url: str, seq: int) -> Document | None:
        staged = self.live.get(url)
        if staged is not None and staged["seq"] == seq:
            return staged
        return self.real.item_version(url, seq)

    def write(self, item: Document, previous_seq: int | None) -> int:
        head = self.head(item["url"])
        if (head["seq"] if head else None) != previous_seq:
            raise StaleHead(item["url"])
        seq = self.sources.next_seq(item["source"], item["updated_on"])
        self.live[item["url"]] = dict(item, seq=seq, sup=LIVE)
        return seq

    def mappings_for_concept(self, source_url: str, seq: int, concept_url: str, *,
                             inverse: bool = False,
                             include_retired: bool = False) -> list[Document]:
        # a cascade in a dry run reaches the mappings stored already (not those staged)
        return self.real.mappings_for_concept(source_url, seq, concept_url, inverse=inverse,
                                              include_retired=include_retired)

    def mapping_for_key(self, key: str) -> str | None:
        if key in self.mapping_keys:
            return self.mapping_keys[key]
        return self.real.mapping_for_key(key)

    def set_mapping_key(self, key: str, source_url: str, mapping_id: str | None) -> None:
        self.mapping_keys[key] = mapping_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class OverlayReferences:
    """References added and removed in memory; reads of the live ones merge them in."""

    def __init__(self, real: interfaces.References) -> None:
        self.real = real
        self.staged: dict[tuple[str, str], Document | None] = {}  # None: removed

    def add(self, collection_url: str, references: list[Document]) -> int:
        for reference in references:
            self.staged[collection_url, reference["expression"]] = dict(
                reference, collection=collection_url, seq=0, sup=LIVE)
        return 0

    def remove(self, collection_url: str, expressions: list[str]) -> list[Document]:
        found = self.live(collection_url, expressions)
        for expression in found:
            self.staged[collection_url, expression] = None
        return list(found.values())

    def live(self, collection_url: str, expressions: Any) -> dict[str, Document]:
        wanted = list(expressions)
        found = self.real.live(collection_url, wanted)
        for expression in wanted:
            if (collection_url, expression) in self.staged:
                staged = self.staged[collection_url, expression]
                if staged is None:
                    found.pop(expression, None)
                else:
                    found[expression] = staged
        return found

    def bringing(self, collection_url: str, url: str) -> list[Document]:
        found = {reference["expression"]: reference
                 for reference in self.real.bringing(collection_url, url)}
        for (collection, expression), staged in self.staged.items():
            if collection != collection_url:
                continue
            if staged is None:
                found.pop(expression, None)
            elif staged["url"] == url:
                found[expression] = staged
        return list(found.values())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class OverlayEntries:
    """Entry writes kept in memory, by (collection, url); other reads fall through."""

    def __init__(self, real: interfaces.CollectionEntries) -> None:
        self.real = real
        self.live: dict[tuple[str, str], Document] = {}

    def head(self, collection_url: str, url: str) -> Document | None:
        if (collection_url, url) in self.live:
            return self.live[collection_url, url]
        return self.real.head(collection_url, url)

    def write(self, collection_url: str, entries: list[tuple[Document, int | None]]) -> int:
        for entry, _ in entries:
            self.live[collection_url, entry["url"]] = dict(entry, collection=collection_url,
                                                           seq=0, sup=LIVE)
        return 0

    def set_follow(self, collection_url: str, url: str, follow: bool) -> None:
        entry = self.head(collection_url, url)
        if entry is not None:
            self.live[collection_url, url] = dict(entry, follow=follow)

    def mark_following(self, url: str, since: str) -> None:
        pass

    def unmark_following(self, url: str) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class Overlay(interfaces.Store):
    """A store whose content writes are staged in memory (a dry run)."""

    kind = "overlay"

    def __init__(self, real: interfaces.Store) -> None:
        self.real = real
        self.users = real.users
        sources = OverlaySources(real.sources)
        self.orgs = OverlayOrgs(real.orgs)  # type: ignore[assignment]
        self.sources = sources  # type: ignore[assignment]
        self.versions = OverlayVersions(real.versions)
        self.items = OverlayItems(real.items, sources)
        self.references = OverlayReferences(real.references)  # type: ignore[assignment]
        self.collection_entries = OverlayEntries(  # type: ignore[assignment]
            real.collection_entries)
        for name in ("jobs", "exports", "import_results", "import_keys", "leases", "heartbeats",
                     "rate_counters"):
            setattr(self, name, getattr(real, name))

    @contextmanager
    def transaction(self, source_url: str | None = None) -> Iterator[None]:
        yield

    def is_unavailable(self, error: BaseException) -> bool:
        return self.real.is_unavailable(error)
