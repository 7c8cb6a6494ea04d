"""The repositories of sources' content: sources, their versions and their item versions."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from typing import Unpack

from ...model import (
    HEAD_SEQ,
    SOURCE_TYPE,
    ContentQuery,
    Counts,
    CutState,
    DiffKey,
    Document,
    RepoFilters,
    Visibility,
)
from ...model.records import Source, SourceChanges, Version, VersionChanges
from ..base import keyset_batches
from .documents import Copied, Records


class Sources(Records[Source]):
    """Repositories, sources and collections (`repo_type`), by url: HEAD metadata, the seq
    counter of their item versions (a collection's: of its entries and references) and HEAD's
    checksum."""

    def update(self, url: str, **changes: Unpack[SourceChanges]) -> Source | None:
        """Set fields; the repository as it is now (None if there is none)."""
        raise NotImplementedError

    def next_mapping_number(self, url: str) -> int:
        raise NotImplementedError

    def cut_state(self, url: str) -> CutState:
        """The source's state read together, so that a version cut at that seq records exactly
        that content."""
        raise NotImplementedError

    def search(self, owner_url: str | None, visible_to: Visibility | None,
               filters: RepoFilters, skip: int, limit: int) -> tuple[builtins.list[Source], int]:
        """Repositories by url that `visible_to` may see (None: an admin, all), under one owner
        or all, narrowed by `filters` (kind, owner, text in the id or names, validation schema, a
        change of metadata or content at or after `updated_since`).

        A repository is visible when it is the caller's or their orgs', or when it is public
        (`public_access` View or Edit) and so is its owner: any user, an org whose own
        `public_access` is not "None" (a private org hides all its repositories)."""
        raise NotImplementedError

    def count_public(self, owner_url: str, repo_type: str = SOURCE_TYPE) -> int:
        """How many sources (or collections) of an owner anyone may see (`public_sources`: none
        of a private org's)."""
        raise NotImplementedError


class Versions(Records[Version]):
    """Versions of sources and collections, by url: metadata and the seq (and checksum) they
    were cut at."""

    def update(self, url: str, **changes: Unpack[VersionChanges]) -> Version | None:
        """Set fields; the version as it is now (None if there is none)."""
        raise NotImplementedError

    def delete_for_source(self, source_url: str) -> None:
        raise NotImplementedError

    def list(self, source_url: str, released: bool | None, skip: int, limit: int,
             updated_since: str | None = None) -> tuple[list[Version], int]:
        """Versions of a source, newest first (changed at or after `updated_since`)."""
        raise NotImplementedError

    def all_released(self) -> Iterator[Version]:
        """Every released version of every source, by url (startup checks their exports)."""
        raise NotImplementedError

    def newest_released(self, skip: int, limit: int) -> builtins.list[Version]:
        """Released versions of every repository, newest first (the server's feed)."""
        raise NotImplementedError

    def latest_released(self, source_url: str) -> Version | None:
        found = self.list(source_url, True, 0, 1)[0]
        return found[0] if found else None


class ContentReader:
    """The reads of a repository's content, the same for a source's items and a collection's
    entries (item versions joined with the entries that name them): `query.source` is the
    repository's url. Items are ordered by id in a source, by url in a collection (two sources'
    items may share an id there); a `DiffKey` is (updated_on, type, id) in a source and
    (the entry's updated_on, type, url) in a collection."""

    def diff_key(self, item: Document) -> DiffKey:
        """Where an item read from this repository stands in diff order."""
        raise NotImplementedError

    def page(self, query: ContentQuery, skip: int, limit: int) -> list[Document]:
        """One page of the selected items, by type then id."""
        raise NotImplementedError

    def count(self, query: ContentQuery) -> int:
        raise NotImplementedError

    def diff(self, query: ContentQuery, after: DiffKey | None, until: DiffKey | None,
             limit: int) -> list[Document]:
        """Up to `limit` selected items after `after` and up to `until` (inclusive; None: no
        end), in (updated_on, type, id) order."""
        raise NotImplementedError

    def diff_end(self, query: ContentQuery, after: DiffKey | None, limit: int,
                 until: DiffKey | None = None) -> tuple[int, DiffKey | None, DiffKey | None]:
        """Where a diff page of up to `limit` items after `after` (and up to `until`,
        inclusive) ends: (how many items it holds, the key of its last one, the key of the first
        item after it up to `until`, or None), read from keys alone."""
        raise NotImplementedError

    def iter_diff(self, query: ContentQuery, after: DiffKey | None, until: DiffKey | None,
                  batch_size: int = 1000) -> Iterator[Document]:
        """The selected items after `after` up to `until` (inclusive), in diff order, read a
        batch at a time: a page of any size in flat memory."""
        return keyset_batches(lambda start: self.diff(query, start, until, batch_size),
                              self.diff_key, after, batch_size)

    def iter_content(self, query: ContentQuery, batch_size: int = 1000) -> Iterator[Document]:
        """Every selected item of `query.types[0]`, by id, read a batch at a time."""
        raise NotImplementedError

    def newest(self, query: ContentQuery) -> Document | None:
        """The most recently updated selected item version."""
        raise NotImplementedError

    def search(self, query: ContentQuery, skip: int, limit: int,
               count_limit: int) -> tuple[list[Document], int]:
        """One page (by id) of the items of `query.types[0]` that `query.filters` select, and how
        many match: exact up to `count_limit`; a count above it means "more than count_limit".
        Text is matched item by item (no index holds "contains"); the rest from indexes."""
        raise NotImplementedError

    def mappings_for_concept(self, source_url: str, seq: int, concept_url: str, *,
                             inverse: bool = False,
                             include_retired: bool = False) -> list[Document]:
        """The mappings of a source at `seq` from a concept (with `inverse`, also to it), by id."""
        raise NotImplementedError

    def settle(self, source_url: str, seq: int) -> int:
        """Before a cut at `seq`: finish or discard writes still in flight (0 where atomic)."""
        return 0

    def iter_changed(self, source_url: str, since_seq: int, until_seq: int, item_type: str,
                     deleted: bool, batch_size: int = 1000) -> Iterator[Document]:
        """The item versions of one type in the content at `until_seq` that were written after
        `since_seq`, tombstones (`deleted`) or not, in seq order, read a batch at a time; each
        with `before`: the item at `since_seq` (None: absent or deleted, else "active" or
        "retired"). What a delta package from `since_seq` to `until_seq` holds."""
        raise NotImplementedError

    def count_changed(self, source_url: str, since_seq: int, until_seq: int) -> int:
        """How many item versions `iter_changed` reads between the two seqs (both types, both
        states): an upper bound of a delta's items, for progress."""
        raise NotImplementedError

    def scan_checksum(self, source_url: str, seq: int) -> str:
        """`checksums.content` at `seq`, computed by reading every item (any order)."""
        raise NotImplementedError

    def head_checksum(self, source_url: str) -> str:
        """`checksums.content` of HEAD: kept with every write, or cached by seq."""
        raise NotImplementedError

    def head_counts(self, source_url: str) -> Counts | None:
        """HEAD's live item versions per type, where kept with every write (else None)."""
        return None


class Items(ContentReader, Copied):
    """Concept and mapping item versions of every source (and the mapping-key index)."""

    def diff_key(self, item: Document) -> DiffKey:
        return DiffKey(item["updated_on"], item["type"], item["id"])

    def head(self, url: str) -> Document | None:
        """The live version's facts of an item url: seq, deleted, retired, source, type, id."""
        raise NotImplementedError

    def current(self, url: str, seq: int = HEAD_SEQ) -> Document | None:
        """The item version of one item at `seq` (tombstones included), or None."""
        raise NotImplementedError

    def item_version(self, url: str, seq: int) -> Document | None:
        """One item version by its url and seq, even a superseded one."""
        raise NotImplementedError

    def history(self, source_url: str, url: str, skip: int,
                limit: int) -> tuple[list[Document], int]:
        """A page of the versions of one item, newest first (tombstones left out); how many."""
        raise NotImplementedError

    def write(self, item: Document, previous_seq: int | None) -> int:
        """Make `item` the live version and return the seq allocated to it.

        `previous_seq` is the live seq the writer read (None: the item is new); StaleHead if
        another write came first. Stamps the source's `last_updated` and keeps HEAD's checksum.
        """
        raise NotImplementedError

    def finish_pending(self, older_than: str | None = None) -> int:
        """Roll forward or drop writes interrupted by a crash (0 where writes are atomic)."""
        return 0

    def changes(self, source_url: str, since_seq: int, until_seq: int = HEAD_SEQ) -> dict[str, int]:
        """How many items were created, updated, retired and deleted between the content at
        `since_seq` and at `until_seq` (an item counts once, by how it ends up)."""
        raise NotImplementedError

    def linked_mappings(self, concept_url: str, end: str, source_url: str | None = None,
                        seq: int = HEAD_SEQ, limit: int = 1000) -> list[Document]:
        """Live mappings whose `end` ("from" or "to") concept url is `concept_url`, by source
        then id: in `source_url` at `seq`, or (source_url None) in every source at HEAD."""
        raise NotImplementedError

    def recompute_checksums(self) -> None:
        """Bring every source's HEAD checksum in line with its items (after `db copy`)."""

    def mapping_for_key(self, key: str) -> str | None:
        """The id of the live mapping with this (source, from, type, to) key, if any."""
        raise NotImplementedError

    def set_mapping_key(self, key: str, source_url: str, mapping_id: str | None) -> None:
        raise NotImplementedError

    def delete_for_source(self, source_url: str) -> None:
        raise NotImplementedError

    def dump(self) -> Iterator[Document]:
        """Every item version (then every mapping key, as {"mapping_key": ...})."""
        raise NotImplementedError

    def load(self, documents: Iterable[Document]) -> int:
        raise NotImplementedError
