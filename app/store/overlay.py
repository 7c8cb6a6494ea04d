"""A dry-run overlay over a store: reads fall through to the real repositories, writes stay in
memory. The loader runs a dry run through the very same domain code as a real one, over this.

Only what the domain's write paths use is overlaid (accounts, sources, versions, items and their
mapping keys, the references and entries of collections); every other repository is the real one,
read-only by convention.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Generic, Protocol, TypeVar, Unpack

from .. import model
from ..model import HEAD_SEQ, LIVE, Document
from ..model.records import Source, SourceChanges, Version, VersionChanges
from . import interfaces
from .base import DuplicateKey, StaleHead
from .records import (
    source_changes_document,
    source_document,
    source_record,
    version_document,
    version_record,
)

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


class Addressed(Protocol):
    """A record addressed by its url (a version, a source)."""

    @property
    def url(self) -> str: ...


Record = TypeVar("Record", bound=Addressed)


class OverlayRecords(Generic[Record]):
    """Records by url: staged ones first (changed as their stored documents would be, by the
    conversions of `app/store/records.py`), then the real repository's; `termsync db copy`
    reads and writes the real one."""

    def __init__(self, real: Any, stored: Callable[[Record], Document],
                 record: Callable[[Document], Record]) -> None:
        self.real = real
        self.staged: dict[str, Record | None] = {}  # None: deleted
        self.stored = stored
        self.record = record

    def get(self, url: str) -> Record | None:
        if url in self.staged:
            return self.staged[url]
        found: Record | None = self.real.get(url)
        return found

    def insert(self, record: Record) -> None:
        if self.get(record.url) is not None:
            raise DuplicateKey(record.url)
        self.staged[record.url] = record

    def _set(self, url: str, changes: Document) -> Record | None:
        record = self.get(url)
        if record is None:
            return None
        self.staged[url] = self.record(dict(self.stored(record), **changes))
        return self.staged[url]

    def delete(self, url: str) -> None:
        self.staged[url] = None

    def dump(self) -> Iterator[Document]:
        documents: Iterator[Document] = self.real.dump()
        return documents

    def load(self, documents: Iterable[Document]) -> int:
        return int(self.real.load(documents))


class OverlayVersions(OverlayRecords[Version], interfaces.Versions):
    """Versions: lists read the real repository alone (what a dry run cuts is not listed)."""

    def __init__(self, real: interfaces.Versions) -> None:
        super().__init__(real, version_document, version_record)

    def update(self, url: str, **changes: Unpack[VersionChanges]) -> Version | None:
        return self._set(url, dict(changes))

    def delete_for_source(self, source_url: str) -> None:
        self.real.delete_for_source(source_url)

    def list(self, source_url: str, released: bool | None, skip: int, limit: int,
             updated_since: str | None = None) -> tuple[builtins.list[Version], int]:
        return self.real.list(source_url, released, skip, limit, updated_since)

    def all_released(self) -> Iterator[Version]:
        return self.real.all_released()

    def newest_released(self, skip: int, limit: int) -> builtins.list[Version]:
        return self.real.newest_released(skip, limit)


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


class OverlaySources(OverlayRecords[Source], interfaces.Sources):
    """Sources and collections: counters continue from the real ones in memory; lists and
    counts read the real repository alone."""

    def __init__(self, real: interfaces.Sources) -> None:
        super().__init__(real, source_document, source_record)

    def insert(self, record: Source) -> None:
        super().insert(replace(record, seq=0, mapping_counter=0, last_updated=None))

    def update(self, url: str, **changes: Unpack[SourceChanges]) -> Source | None:
        return self._set(url, source_changes_document(changes))

    def next_mapping_number(self, url: str) -> int:
        source = self.get(url)
        assert source is not None
        self.staged[url] = replace(source, mapping_counter=source.mapping_counter + 1)
        return source.mapping_counter + 1

    def next_seq(self, url: str, updated_on: str) -> int:
        source = self.get(url)
        assert source is not None
        self.staged[url] = replace(source, seq=source.seq + 1,
                                   last_updated=max(source.last_updated or "", updated_on))
        return source.seq + 1

    def cut_state(self, url: str) -> model.CutState:
        source = self.get(url)
        if source is None:
            return model.CutState(0, None, None, None)
        return model.CutState(source.seq, source.last_updated, None, None)

    def search(self, owner_url: str | None, visible_to: model.Visibility | None,
               filters: model.RepoFilters, skip: int,
               limit: int) -> tuple[builtins.list[Source], int]:
        return self.real.search(owner_url, visible_to, filters, skip, limit)

    def count_public(self, owner_url: str, repo_type: str = model.SOURCE_TYPE) -> int:
        return self.real.count_public(owner_url, repo_type)


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
        self.sources = sources
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
