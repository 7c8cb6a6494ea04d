"""Content as people browse it: searches, counts, changes since the last release, a concept's
mappings both ways and its history across versions.

Every read goes through the same rights as the API (`Accounts`): the caller only finds the orgs
and sources the API would list for them, and a concept's mappings from other sources only where
the caller may see those sources. The web console is built on this service and on `Content`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..model import (
    CHANGES,
    CONCEPT,
    HEAD_SEQ,
    LIVE,
    MAPPING,
    SOURCE_TYPE,
    ContentQuery,
    ItemFilters,
    RepoFilters,
    Source,
    Version,
)
from ..store import Store
from .accounts import Accounts, Caller, Owner
from .content import Content

__all__ = ["Browse", "ConceptLinks", "HistoryEntry", "ItemMatch", "ItemPage", "LinkedMapping",
           "ReleaseChanges", "SourceSummary"]

logger = logging.getLogger(__name__)

Document = dict[str, Any]


@dataclass(frozen=True)
class ItemMatch:
    """What the console's concept list narrows by: a text found (any case, as a substring) in
    the id or in a name, and a concept class and datatype (exact)."""

    text: str | None = None
    concept_class: str | None = None
    datatype: str | None = None

    def filters(self) -> ItemFilters:
        """The same as the store's search filters."""
        return ItemFilters(q=self.text or None,
                           concept_class=(self.concept_class,) if self.concept_class else (),
                           datatype=(self.datatype,) if self.datatype else ())


@dataclass(frozen=True)
class SourceSummary:
    """How much a source holds at HEAD, and its content checksum."""

    concepts: int
    retired_concepts: int
    mappings: int
    retired_mappings: int
    checksum: str
    last_updated: str | None


@dataclass(frozen=True)
class ReleaseChanges:
    """What HEAD changed since the latest released version (everything, without one)."""

    release: Version | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANGES, 0))

    @property
    def total(self) -> int:
        """Items changed in any way."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class ItemPage:
    """One page of a concept list, and how many match (`more`: at least that many)."""

    items: list[Document]
    num_found: int
    more: bool = False


@dataclass(frozen=True)
class LinkedMapping:
    """A mapping that names a concept, with the source it lives in."""

    item: Document
    source: Source
    at_head: bool  # read at HEAD of another source, not at the version being viewed


@dataclass(frozen=True)
class ConceptLinks:
    """A concept's mappings both ways: from it (outbound) and to it (inbound)."""

    outbound: list[LinkedMapping]
    inbound: list[LinkedMapping]


@dataclass(frozen=True)
class HistoryEntry:
    """One version of an item and the source versions that hold exactly it."""

    item: Document
    versions: list[str]


class Browse:
    """Read models for people, over the store's repositories and the caller's rights."""

    def __init__(self, store: Store, accounts: Accounts, content: Content) -> None:
        self.store = store
        self.accounts = accounts
        self.content = content

    # --- orgs and sources -----------------------------------------------------------------
    def search_orgs(self, caller: Caller, text: str | None, skip: int,
                    limit: int) -> tuple[list[Document], int]:
        """Orgs the caller may see, by id; with `text`, those whose id or name holds it."""
        return self.accounts.list_orgs(caller, skip, limit, q=text or None)

    def search_sources(self, caller: Caller, owner: Owner | None, text: str | None, skip: int,
                       limit: int, kind: str = SOURCE_TYPE) -> tuple[list[Source], int]:
        """Sources (or with `kind`, collections) the caller may see, under one owner or all;
        with `text`, those whose id, name or full name holds it."""
        return self.content.list_repos(caller, owner, RepoFilters(q=text or None, repo_type=kind),
                                       skip, limit)

    def source_summary(self, source: Source) -> SourceSummary:
        """Concept and mapping counts (and how many are retired) and checksums.content of HEAD."""
        head = self.content.head_version(source)
        counts = {}
        for item_type in (CONCEPT, MAPPING):
            for retired in (True, False):
                counts[item_type, retired] = self.content.count(source, head, ContentQuery(
                    source.url, HEAD_SEQ, (item_type,), include_retired=retired))
        return SourceSummary(
            concepts=counts[CONCEPT, True], retired_concepts=counts[CONCEPT, True] - counts[
                CONCEPT, False],
            mappings=counts[MAPPING, True], retired_mappings=counts[MAPPING, True] - counts[
                MAPPING, False],
            checksum=self.content.checksum(source, head), last_updated=head.last_updated)

    def changes_since_release(self, source: Source,
                              summary: SourceSummary | None = None) -> ReleaseChanges:
        """Items created, updated, retired and deleted in HEAD since the latest release.

        Without a release everything in HEAD is new; `summary` (if the caller has one) gives
        that count without reading the items again.
        """
        release = self.store.versions.latest_released(source.url)
        if release is None:
            summary = summary or self.source_summary(source)
            return ReleaseChanges(None, dict(dict.fromkeys(CHANGES, 0),
                                             created=summary.concepts + summary.mappings))
        return ReleaseChanges(release, self.store.items.changes(source.url, release.seq))

    # --- concepts -------------------------------------------------------------------------
    def find_concepts(self, source: Source, version: Version, match: ItemMatch,
                      include_retired: bool, skip: int, limit: int,
                      count_limit: int = 1000) -> ItemPage:
        """A page of a version's concepts by id, narrowed by text, class and datatype.

        A text search counts its matches up to `count_limit` (then `more` is set): it reads the
        items one by one, where the other filters are answered from indexes.
        """
        query = ContentQuery(source.url, version.seq, (CONCEPT,),
                             include_retired=include_retired, filters=match.filters())
        items, found = self.content.reader(source).search(query, skip, limit, count_limit)
        more = bool(match.text) and found > max(count_limit, skip + limit)
        return ItemPage(items, min(found, max(count_limit, skip + limit)) if more else found,
                        more)

    def concept_links(self, caller: Caller, source: Source, version: Version,
                      concept_url: str, limit: int = 200) -> ConceptLinks:
        """Mappings from and to a concept: those of its own source at the version viewed, and
        those of other sources (at their HEAD) that the caller may see."""
        seen: dict[str, Source | None] = {source.url: source}

        def visible(source_url: str) -> Source | None:
            """The source of that url if the caller may see it (looked up once)."""
            if source_url not in seen:
                other = self.store.sources.get(source_url)
                seen[source_url] = other if other is not None and \
                    self.accounts.can_view(caller, other) else None
            return seen[source_url]

        links: dict[str, list[LinkedMapping]] = {}
        for end in ("from", "to"):
            found = [LinkedMapping(item, source, False) for item in self.store.items.linked_mappings(
                concept_url, end, source.url, version.seq, limit)]
            for item in self.store.items.linked_mappings(concept_url, end, None, HEAD_SEQ,
                                                         limit + len(found)):
                if item["source"] == source.url:
                    continue
                other = visible(item["source"])
                if other is not None and len(found) < limit:
                    found.append(LinkedMapping(item, other, True))
            links[end] = found
        return ConceptLinks(outbound=links["from"], inbound=links["to"])

    def item_history(self, source: Source, item_url: str) -> list[HistoryEntry]:
        """Every version of an item, newest first, each with the source versions holding it
        ("HEAD" for the live one)."""
        versions, _ = self.content.list_versions(source, None, 0, 0)
        entries = []
        for item in self.store.items.history(source.url, item_url, 0, 0)[0]:
            holding = [version.id for version in versions
                       if item["seq"] <= version.seq < item["sup"]]
            if item["sup"] == LIVE:
                holding.insert(0, "HEAD")
            entries.append(HistoryEntry(item, holding))
        return entries
