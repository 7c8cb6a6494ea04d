"""The storage interface: one repository per table (SQLite) or collection (MongoDB).

The domain, the features and the HTTP layer speak only to these interfaces; `app.store.sqlite` and
`app.store.mongo` implement each of them, and one contract suite (tests/app/test_store_contract.py)
runs against both. Documents are plain dicts addressed by `_id`, in the same shape on both
backends, so `termsync db copy` moves them from one to the other unchanged.

Item versions model (docs/architecture.md): every write to a concept or mapping inserts a new item
version stamped with its source's next `seq`; `sup` is the seq that superseded it (LIVE while it
is the newest). The content of a version cut at seq V is the item versions with seq <= V < sup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..faults import StorageFault
from .files import ExportStorage, UploadStore

LIVE = 2**62  # `sup` of an item version that nothing superseded yet
HEAD_SEQ = LIVE - 1  # reading HEAD is reading "a version cut at the end of time"
CONCEPT = "Concept"
MAPPING = "Mapping"
SOURCE_TYPE = "Source"  # a repository's `repo_type`: a source holds items,
COLLECTION_TYPE = "Collection"  # a collection references items of sources
CHECKSUM_MODULUS = 2**256
EMPTY_CHECKSUM = "0" * 64

Document = dict[str, Any]
DocumentPage = tuple[list[Document], int]  # one page of documents, and how many match in all
DocumentList = list[Document]


class StoreError(Exception):
    """A storage failure the caller can report (the database is down or busy)."""


class DuplicateKey(StoreError):
    """A document with this `_id` (or unique key) exists already."""


class StaleHead(StoreError):
    """An item's live version is not the one the writer read: another write came first."""


class DatabaseUnusable(StoreError):
    """The database cannot be opened or written at startup; the message names the path (or
    URI) and the cause, and startup stops with it."""


def offset(skip: int) -> int:
    """A skip both databases accept (a 64-bit integer): past the end of any list is its end."""
    return min(int(skip), 2**62)


def version_url(url: str, seq: int) -> str:
    """The url of one item version: the item url plus its version."""
    return f"{url}{seq}/"


def checksum_term(url: str, seq: int) -> int:
    """One item's share of `checksums.content`: sha256 of "url\\tversion\\n" as an integer."""
    return int.from_bytes(hashlib.sha256(f"{url}\t{seq}\n".encode()).digest(), "big")


def add_checksum(checksum: str, term: int) -> str:
    """`checksums.content` with one item added (negative `term`: removed).

    The checksum is the sum, modulo 2**256, of every live item's term, in hex: it does not depend
    on order, so a write updates it in constant time and a version cut copies it.
    """
    return format((int(checksum, 16) + term) % CHECKSUM_MODULUS, "064x")


def checksum_of(terms: Iterable[tuple[str, int]]) -> str:
    """`checksums.content` of (url, seq) pairs, in any order."""
    total = 0
    for url, seq in terms:
        total += checksum_term(url, seq)
    return format(total % CHECKSUM_MODULUS, "064x")


Counts = dict[str, list[int]]  # per type: [active, retired, deleted] live item versions


def empty_counts() -> Counts:
    return {CONCEPT: [0, 0, 0], MAPPING: [0, 0, 0]}


def count_item(counts: Counts, item: Document, step: int) -> None:
    """Add (step 1) or remove (step -1) one live item version to per-type counts."""
    column = 2 if item["deleted"] else 1 if item["retired"] else 0
    counts.setdefault(item["type"], [0, 0, 0])[column] += step


@dataclass(frozen=True)
class CutState:
    """What a version cut records, read together: seq, lastUpdated, and where the backend keeps
    them with every write (SQLite), HEAD's checksum and counts (else None)."""

    seq: int
    last_updated: str | None
    checksum: str | None
    counts: Counts | None


@dataclass(frozen=True)
class ItemFilters:
    """What OCL's search parameters select among concepts and mappings (all must hold).

    Text (`q`) matches any case, taken literally, in an item's id or names (mappings: also its
    map type and ends); lists match any of their values, in any case. A concept end names a
    concept by its id as it appears in urls (already %-quoted), its source id or its owner id.
    """

    q: str | None = None
    concept_class: tuple[str, ...] = ()
    datatype: tuple[str, ...] = ()
    locale: tuple[str, ...] = ()
    map_type: tuple[str, ...] = ()
    from_concept: str | None = None
    from_source: str | None = None
    from_owner: str | None = None
    to_concept: str | None = None
    to_source: str | None = None
    to_owner: str | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__)

    def ends(self) -> list[tuple[str, str, str]]:
        """(field, kind, value) of each concept-end condition: kind concept, source or owner."""
        found = []
        for end in ("from", "to"):
            for kind in ("concept", "source", "owner"):
                value = getattr(self, f"{end}_{kind}")
                if value:
                    found.append((f"{end}_concept_url", kind, value))
        return found


@dataclass(frozen=True)
class ContentQuery:
    """Which item versions a read selects: a source's content at `seq` (or several sources'
    HEADs, for a search), narrowed."""

    source: str | tuple[str, ...]
    seq: int = HEAD_SEQ
    types: tuple[str, ...] = (CONCEPT, MAPPING)
    include_retired: bool = True
    include_deleted: bool = False
    updated_since: str | None = None
    filters: ItemFilters = field(default_factory=ItemFilters)


@dataclass(frozen=True)
class RepoFilters:
    """What a repository list is narrowed by (OCL's `q`, `owner`, `ownerType`, `repoType`, ...)."""

    q: str | None = None
    owner: str | None = None
    owner_type: str | None = None
    repo_type: str | None = None  # SOURCE_TYPE or COLLECTION_TYPE; None: both
    custom_validation_schema: str | None = None
    updated_since: str | None = None


CHANGES = ("created", "updated", "retired", "deleted")


@dataclass(frozen=True, order=True)
class DiffKey:
    """A position in diff order: (updated_on, type, id)."""

    updated_on: str
    type: str
    id: str


def keyset_batches(read: Callable[[Any], list[Any]], key: Callable[[Any], Any], start: Any,
                   batch_size: int) -> Iterator[Any]:
    """Everything `read(after)` returns, a batch at a time: the first read starts after `start`,
    each next one after the `key` of the batch before's last row; a short batch is the last.
    Any size in flat memory, with no read held open between batches."""
    after = start
    while True:
        batch = read(after)
        yield from batch
        if len(batch) < batch_size:
            return
        after = key(batch[-1])


def page_end(keys: Iterable[DiffKey], limit: int) -> tuple[int, DiffKey | None, DiffKey | None]:
    """Where a diff page of up to `limit` items ends, from the keys of up to `limit` + 1 items
    in diff order: (how many it holds, the key of its last one, the key of the first item after
    it or None)."""
    count, last, following = 0, None, None
    for key in keys:
        count += 1
        if count <= limit:
            last = key
        else:
            following = key
            break
    return min(count, limit), last, following


@dataclass(frozen=True)
class Visibility:
    """Who is asking, for lists that hide private documents: None for an admin (sees all)."""

    username: str | None
    orgs: frozenset[str]


class DocumentRepository:
    """Documents addressed by `_id`: get, insert (DuplicateKey when it exists), update, delete."""

    def get(self, key: str) -> Document | None:
        raise NotImplementedError

    def insert(self, document: Document) -> None:
        """Insert a new document; DuplicateKey if its `_id` exists."""
        raise NotImplementedError

    def update(self, key: str, changes: Document) -> Document | None:
        """Set fields; return the document as it is now (None if there is none)."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def dump(self) -> Iterator[Document]:
        """Every document, for `termsync db copy`."""
        raise NotImplementedError

    def load(self, documents: Iterable[Document]) -> int:
        """Insert copied documents (replacing any with the same `_id`); return how many."""
        raise NotImplementedError


class Users(DocumentRepository):
    """User accounts and their hashed API tokens."""

    def search(self, q: str | None, skip: int, limit: int) -> tuple[list[Document], int]:
        """Users by username, with `q` (any case) in their username or name when given."""
        raise NotImplementedError

    def page_of(self, usernames: list[str], skip: int,
                limit: int) -> tuple[list[Document], int]:
        """One page of the named users (an org's members), by username."""
        raise NotImplementedError

    def add_token(self, token: Document) -> None:
        """Store an API token's record: `_id` its sha256, `username`, `id` (public, unique per
        user), `prefix`, `label`, `created_on`, `created_by`, `expires_on`, `last_used_on`,
        `revoked_on`, `bootstrap` (ADMIN_TOKEN's). DuplicateKey if that hash is stored already:
        a token is never taken over, nor a revoked one brought back."""
        raise NotImplementedError

    def token(self, token_hash: str) -> Document | None:
        """The record of a token by its sha256 (revoked and expired ones too)."""
        raise NotImplementedError

    def token_of(self, username: str, token_id: str) -> Document | None:
        """One token record of a user, by its public id."""
        raise NotImplementedError

    def tokens_of(self, username: str, include_revoked: bool) -> list[Document]:
        """A user's token records, newest first."""
        raise NotImplementedError

    def update_token(self, token_hash: str, changes: Document) -> None:
        """Set fields of a token record (`revoked_on` revokes it: the record stays, so its
        value is never accepted again)."""
        raise NotImplementedError

    def touch_token(self, token_hash: str, used_on: str, before: str) -> None:
        """Record a token's use at `used_on` unless it was recorded at or after `before`
        (so a busy token is written once per interval, not on every request)."""
        raise NotImplementedError

    def bootstrap_tokens(self) -> list[Document]:
        """The records of tokens issued from ADMIN_TOKEN that are not revoked."""
        raise NotImplementedError


class Orgs(DocumentRepository):
    """Organizations; `members` (usernames) is part of each document."""

    def add_member(self, org_id: str, username: str) -> None:
        raise NotImplementedError

    def remove_member(self, org_id: str, username: str) -> bool:
        """Take a user out of an org; False if they were not a member."""
        raise NotImplementedError

    def for_member(self, username: str) -> list[str]:
        """Ids of the orgs a user belongs to."""
        raise NotImplementedError

    def is_public(self, org_id: str) -> bool:
        """Whether an org exists and anyone may see it (its `public_access` is not "None")."""
        raise NotImplementedError

    def search(self, q: str | None, member: str | None, visible_to: Visibility | None,
               skip: int, limit: int) -> tuple[list[Document], int]:
        """Orgs by id: public ones and the caller's (all for None, an admin), with `q` (any
        case) in their id or name, with `member` among their members, when given."""
        raise NotImplementedError


class Sources(DocumentRepository):
    """Repositories, sources and collections (`repo_type`): HEAD metadata, the seq counter of
    their item versions (a collection's: of its entries and references) and HEAD's checksum."""

    def next_mapping_number(self, url: str) -> int:
        raise NotImplementedError

    def cut_state(self, url: str) -> CutState:
        """The source's state read together, so that a version cut at that seq records exactly
        that content."""
        raise NotImplementedError

    def search(self, owner_url: str | None, visible_to: Visibility | None,
               filters: RepoFilters, skip: int, limit: int) -> tuple[list[Document], int]:
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


class Versions(DocumentRepository):
    """Source versions: metadata and the seq (and checksum) they were cut at."""

    def delete_for_source(self, source_url: str) -> None:
        raise NotImplementedError

    def list(self, source_url: str, released: bool | None, skip: int, limit: int,
             updated_since: str | None = None) -> tuple[list[Document], int]:
        """Versions of a source, newest first (changed at or after `updated_since`)."""
        raise NotImplementedError

    def all_released(self) -> Iterator[Document]:
        """Every released version of every source, by url (startup checks their exports)."""
        raise NotImplementedError

    def newest_released(self, skip: int, limit: int) -> DocumentList:
        """Released versions of every repository, newest first (the server's feed)."""
        raise NotImplementedError

    def latest_released(self, source_url: str) -> Document | None:
        found = self.list(source_url, True, 0, 1)[0]
        return found[0] if found else None


class Items:
    """Concept and mapping item versions of every source (and the mapping-key index)."""

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

    def mappings_for_concept(self, source_url: str, seq: int, concept_url: str, *,
                             inverse: bool = False,
                             include_retired: bool = False) -> list[Document]:
        """The mappings of a source at `seq` from a concept (with `inverse`, also to it), by id."""
        raise NotImplementedError

    def write(self, item: Document, previous_seq: int | None) -> int:
        """Make `item` the live version and return the seq allocated to it.

        `previous_seq` is the live seq the writer read (None: the item is new); StaleHead if
        another write came first. Stamps the source's `last_updated` and keeps HEAD's checksum.
        """
        raise NotImplementedError

    def settle(self, source_url: str, seq: int) -> int:
        """Before a cut at `seq`: finish or discard writes still in flight (0 where atomic)."""
        return 0

    def finish_pending(self, older_than: str | None = None) -> int:
        """Roll forward or drop writes interrupted by a crash (0 where writes are atomic)."""
        return 0

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
                              lambda item: DiffKey(item["updated_on"], item["type"], item["id"]),
                              after, batch_size)

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

    def changes(self, source_url: str, since_seq: int, until_seq: int = HEAD_SEQ) -> dict[str, int]:
        """How many items were created, updated, retired and deleted between the content at
        `since_seq` and at `until_seq` (an item counts once, by how it ends up)."""
        raise NotImplementedError

    def linked_mappings(self, concept_url: str, end: str, source_url: str | None = None,
                        seq: int = HEAD_SEQ, limit: int = 1000) -> list[Document]:
        """Live mappings whose `end` ("from" or "to") concept url is `concept_url`, by source
        then id: in `source_url` at `seq`, or (source_url None) in every source at HEAD."""
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


class ContentReader(Protocol):
    """The reads of a repository's content, the same for a source's items and a collection's
    entries (item versions joined with the entries that name them): `query.source` is the
    repository's url. In a collection a `DiffKey`'s `id` is the item's url (two sources' items
    may share an id there), and its `updated_on` the collection-side one."""

    def page(self, query: ContentQuery, skip: int, limit: int) -> list[Document]: ...

    def count(self, query: ContentQuery) -> int: ...

    def diff_end(self, query: ContentQuery, after: DiffKey | None, limit: int,
                 until: DiffKey | None = None) -> tuple[int, DiffKey | None, DiffKey | None]: ...

    def iter_diff(self, query: ContentQuery, after: DiffKey | None, until: DiffKey | None,
                  batch_size: int = 1000) -> Iterator[Document]: ...

    def iter_content(self, query: ContentQuery, batch_size: int = 1000) -> Iterator[Document]: ...

    def search(self, query: ContentQuery, skip: int, limit: int,
               count_limit: int) -> tuple[list[Document], int]: ...

    def newest(self, query: ContentQuery) -> Document | None: ...

    def mappings_for_concept(self, source_url: str, seq: int, concept_url: str, *,
                             inverse: bool = False,
                             include_retired: bool = False) -> list[Document]: ...

    def settle(self, source_url: str, seq: int) -> int: ...

    def iter_changed(self, source_url: str, since_seq: int, until_seq: int, item_type: str,
                     deleted: bool, batch_size: int = 1000) -> Iterator[Document]: ...

    def count_changed(self, source_url: str, since_seq: int, until_seq: int) -> int: ...

    def scan_checksum(self, source_url: str, seq: int) -> str: ...

    def head_checksum(self, source_url: str) -> str: ...

    def head_counts(self, source_url: str) -> Counts | None: ...


class References:
    """The references of collections, versioned like item versions: a reference added at the
    collection's seq s and removed at seq t belongs to the versions cut at s..t-1 (`sup` LIVE
    while it stays).

    A reference: `collection`, `expression` (normalised), `url` (the item it names), `type`,
    `item_seq` (a pin: the item version it names; None: it follows the item), `pin` (the source
    version or item version its expression names, or None), `cascade` (the expression whose
    cascade added it, or None), `created_on`, `created_by`, `seq`, `sup`.
    """

    def add(self, collection_url: str, references: list[Document]) -> int:
        """Insert live references, each at the collection's next seq; return the last seq."""
        raise NotImplementedError

    def remove(self, collection_url: str, expressions: list[str]) -> list[Document]:
        """End the live references with these expressions (at the collection's next seq each);
        return those ended."""
        raise NotImplementedError

    def live(self, collection_url: str, expressions: Iterable[str]) -> dict[str, Document]:
        """The live references with these expressions, by expression."""
        raise NotImplementedError

    def bringing(self, collection_url: str, url: str) -> list[Document]:
        """The live references of a collection that name an item url."""
        raise NotImplementedError

    def page(self, collection_url: str, seq: int, q: str | None, skip: int,
             limit: int) -> DocumentPage:
        """A page of the references at `seq` (HEAD_SEQ: the live ones) by expression, with `q`
        (taken literally, any case) in the expression when given; and how many match."""
        raise NotImplementedError

    def iter_at(self, collection_url: str, seq: int,
                batch_size: int = 1000) -> Iterator[Document]:
        """Every reference at `seq`, by expression, read a batch at a time (for exports)."""
        raise NotImplementedError

    def delete_for_collection(self, collection_url: str) -> None:
        raise NotImplementedError

    def dump(self) -> Iterator[Document]:
        raise NotImplementedError

    def load(self, documents: Iterable[Document]) -> int:
        raise NotImplementedError


class CollectionEntries:
    """The item versions of collections: which item version (`item_seq`) each item url of a
    collection resolves to, versioned by the collection's seq exactly as items are by their
    source's, with the collection's HEAD checksum and counts kept with every write.

    An entry: `collection`, `url`, `type`, `id`, `source`, `item_seq`, `deleted` (the item left
    the collection, or was deleted in its source), `retired`, `follow` (an unversioned reference
    brings it in: it follows its item), `updated_on` (collection-side: when the item entered,
    changed in or left the collection), `seq`, `sup`.

    Content reads (the `ContentReader` methods) return the item versions the entries name, as
    `Items` returns them, with the entry's `deleted` and `retired`, the entry's `updated_on` as
    `entry_updated_on` (a tombstone's `updated_on` is the entry's), ordered by `url` where items
    are by `id`. Search filters (`query.filters`) are not applied to collections.
    """

    def head(self, collection_url: str, url: str) -> Document | None:
        """The live entry of an item url in a collection (a tombstone included), or None."""
        raise NotImplementedError

    def write(self, collection_url: str, entries: list[tuple[Document, int | None]]) -> int:
        """Make each entry the live one of its url, each at the collection's next seq, with the
        collection's checksum, counts and lastUpdated; return the last seq.

        Each entry comes with the seq of the live entry its writer read (None: none); StaleHead
        if another write came first. Urls are distinct within one call.
        """
        raise NotImplementedError

    def set_follow(self, collection_url: str, url: str, follow: bool) -> None:
        """Change whether the live entry follows its item: not content, so in place."""
        raise NotImplementedError

    def followers(self, url: str) -> list[Document]:
        """The live entries, in every collection, that follow an item url."""
        raise NotImplementedError

    def find(self, collection_url: str, seq: int, item_type: str,
             item_id: str) -> list[Document]:
        """The item versions of one type and id in a collection at `seq` (one per source)."""
        raise NotImplementedError

    def holding(self, source_url: str) -> list[str]:
        """The collections whose HEAD or one of whose versions holds an item of a source."""
        raise NotImplementedError

    def sources_held(self, collection_url: str) -> list[str]:
        """The sources whose items a collection holds or held (HEAD, versions, history)."""
        raise NotImplementedError

    def mark_following(self, url: str, since: str) -> None:
        """Note that the followers of an item are about to be brought up to date, where that is
        not atomic with the item's write (MongoDB); no-op where it is."""

    def unmark_following(self, url: str) -> None:
        """The followers of an item are up to date."""

    def marked_following(self, older_than: str | None = None) -> list[str]:
        """Item urls whose followers a crash may have left behind (marked before older_than)."""
        return []

    def finish_pending(self, older_than: str | None = None) -> int:
        """Roll forward or drop entry writes interrupted by a crash (0 where writes are atomic)."""
        return 0

    def recompute_checksums(self) -> None:
        """Bring every collection's HEAD checksum and counts in line with its entries."""

    def delete_for_collection(self, collection_url: str) -> None:
        raise NotImplementedError

    def dump(self) -> Iterator[Document]:
        raise NotImplementedError

    def load(self, documents: Iterable[Document]) -> int:
        raise NotImplementedError

    # the ContentReader reads
    def page(self, query: ContentQuery, skip: int, limit: int) -> list[Document]:
        """One page of the collection's selected items, by type then url."""
        raise NotImplementedError

    def count(self, query: ContentQuery) -> int:
        raise NotImplementedError

    def diff(self, query: ContentQuery, after: DiffKey | None, until: DiffKey | None,
             limit: int) -> list[Document]:
        """As Items.diff, in (entry updated_on, type, url) order."""
        raise NotImplementedError

    def diff_end(self, query: ContentQuery, after: DiffKey | None, limit: int,
                 until: DiffKey | None = None) -> tuple[int, DiffKey | None, DiffKey | None]:
        """As Items.diff_end, in (entry updated_on, type, url) order."""
        raise NotImplementedError

    def search(self, query: ContentQuery, skip: int, limit: int,
               count_limit: int) -> tuple[list[Document], int]:
        """As Items.search: one page (by url) of the entries of `query.types[0]` whose item
        versions `query.filters` select, and how many match (exact up to `count_limit`)."""
        raise NotImplementedError

    def iter_diff(self, query: ContentQuery, after: DiffKey | None, until: DiffKey | None,
                  batch_size: int = 1000) -> Iterator[Document]:
        """As Items.iter_diff, in (entry updated_on, type, url) order."""
        return keyset_batches(lambda start: self.diff(query, start, until, batch_size),
                              lambda item: DiffKey(item["entry_updated_on"], item["type"],
                                                   item["url"]),
                              after, batch_size)

    def iter_content(self, query: ContentQuery, batch_size: int = 1000) -> Iterator[Document]:
        """Every selected item of `query.types[0]`, by url, read a batch at a time."""
        raise NotImplementedError

    def newest(self, query: ContentQuery) -> Document | None:
        """The selected item whose entry changed last."""
        raise NotImplementedError

    def mappings_for_concept(self, source_url: str, seq: int, concept_url: str, *,
                             inverse: bool = False,
                             include_retired: bool = False) -> list[Document]:
        """The mappings of a collection (`source_url`) at `seq` from a concept (with `inverse`,
        also to it), by url."""
        raise NotImplementedError

    def settle(self, source_url: str, seq: int) -> int:
        """Before a cut at `seq`: finish or discard entry writes in flight (0 where atomic)."""
        return 0

    def iter_changed(self, source_url: str, since_seq: int, until_seq: int, item_type: str,
                     deleted: bool, batch_size: int = 1000) -> Iterator[Document]:
        """As Items.iter_changed, over the collection's entries (its seqs): the entries live at
        `until_seq` written after `since_seq`, joined with their item versions."""
        raise NotImplementedError

    def count_changed(self, source_url: str, since_seq: int, until_seq: int) -> int:
        raise NotImplementedError

    def scan_checksum(self, source_url: str, seq: int) -> str:
        """`checksums.content` of the collection at `seq`, from every entry (any order)."""
        raise NotImplementedError

    def head_checksum(self, source_url: str) -> str:
        raise NotImplementedError

    def head_counts(self, source_url: str) -> Counts | None:
        return None


class Jobs:
    """The job queue: submit, claim with a lease, heartbeat, finish, fail, cancel.

    States: PENDING, RUNNING, FINISHED, FAILED, CANCELLED. A claim takes the oldest PENDING job
    of the given kinds, or a RUNNING one whose lease expired (its worker died), atomically. Jobs
    naming the same `queue` run in order: a job waits while an older one of its queue is active.
    """

    def insert(self, job: Document) -> None:
        """Insert a job; DuplicateKey if its `_id` exists."""
        raise NotImplementedError

    def get(self, job_id: str) -> Document | None:
        raise NotImplementedError

    def latest(self, kind: str, key: str) -> Document | None:
        """The newest numbered (deduplicated) job of this kind and key, whatever its state."""
        raise NotImplementedError

    def claim(self, kinds: list[str], worker: str, now: str, lease_until: str) -> Document | None:
        raise NotImplementedError

    def heartbeat(self, job_id: str, worker: str, now: str, lease_until: str,
                  progress: Document | None) -> bool:
        """Extend our lease; False if the job is no longer ours (cancelled or taken over)."""
        raise NotImplementedError

    def save_progress(self, job_id: str, worker: str, now: str, progress: Document) -> bool:
        """Record progress of our job, even if it was cancelled meanwhile (the work it counts
        is done); False if another worker has taken it over."""
        raise NotImplementedError

    def mark_started(self, job_id: str, worker: str, now: str) -> None:
        raise NotImplementedError

    def end(self, job_id: str, worker: str, state: str, now: str, changes: Document) -> bool:
        """Finish our RUNNING job in `state` with `changes` (result/error); False if not ours."""
        raise NotImplementedError

    def cancel(self, job_id: str, now: str) -> bool:
        """Cancel a PENDING or RUNNING job; False if it had ended."""
        raise NotImplementedError

    def update(self, job_id: str, changes: Document) -> None:
        raise NotImplementedError

    def list(self, kind: str | None, owner: str | None, states: Iterable[str] | None, skip: int,
             limit: int, *, queues: list[str | None] | None = None,
             started_since: str | None = None) -> tuple[list[Document], int]:
        """Jobs newest first, narrowed by kind, owner, states, queues (None: a job naming no
        queue) and a start at or after `started_since`."""
        raise NotImplementedError

    def active_counts(self) -> dict[tuple[str, str], int]:
        """How many jobs wait or run, per (kind, state)."""
        raise NotImplementedError

    def oldest_pending(self) -> str | None:
        """`created_on` of the oldest PENDING job."""
        raise NotImplementedError

    def fail_abandoned(self, now: str, max_attempts: int, error: str) -> int:
        """FAIL running jobs whose lease expired after `max_attempts` attempts; how many."""
        raise NotImplementedError

    def count_expired(self, now: str) -> int:
        """RUNNING jobs whose lease expired (waiting to be taken over)."""
        raise NotImplementedError

    def dump(self) -> Iterator[Document]:
        raise NotImplementedError

    def load(self, documents: Iterable[Document]) -> int:
        raise NotImplementedError


class ExportRecords:
    """One record per export (`_id` = export key): the committed file and the latest build job."""

    def get(self, key: str) -> Document | None:
        raise NotImplementedError

    def set_job(self, key: str, fields: Document, job_id: str) -> None:
        """Create or update the record with these fields and its current build job."""
        raise NotImplementedError

    def commit_file(self, key: str, job_id: str, file: Document) -> bool:
        """Record a built file, only if this job is still the export's job (not cancelled)."""
        raise NotImplementedError

    def drop_file_if(self, key: str, sha256: str) -> bool:
        """Forget the record's file if it is still this one."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def by_file(self, source_url: str, sha256: str) -> Document | None:
        raise NotImplementedError

    def referenced(self, sha256: str) -> bool:
        raise NotImplementedError

    def for_source(self, source_url: str) -> list[Document]:
        raise NotImplementedError

    def all(self) -> Iterator[Document]:
        """Every record, by key."""
        raise NotImplementedError

    def shas(self) -> set[str]:
        """The sha256 of every file a record holds."""
        raise NotImplementedError


class ImportResults:
    """Per-line results of import jobs, addressed by (job, line, part)."""

    def add(self, job_id: str, part: int, result: Document) -> None:
        """Store one line's result; DuplicateKey if it is there already."""
        raise NotImplementedError

    def get(self, job_id: str, line: int, part: int = 0) -> Document | None:
        raise NotImplementedError

    def page(self, job_id: str, after: tuple[int, int] | None, actions: list[str] | None,
             limit: int) -> list[Document]:
        """Results in line order after (line, part), optionally only some actions."""
        raise NotImplementedError

    def iter_all(self, job_id: str, batch_size: int = 1000) -> Iterator[Document]:
        """Every result of a job in line order, read a page at a time."""
        after: tuple[int, int] | None = None
        while True:
            page = self.page(job_id, after, None, batch_size)
            yield from page
            if len(page) < batch_size:
                return
            after = (page[-1]["line"], page[-1]["part"])

    def delete_for_job(self, job_id: str) -> None:
        raise NotImplementedError

    def dump(self) -> Iterator[Document]:
        raise NotImplementedError

    def load(self, documents: Iterable[Document]) -> int:
        raise NotImplementedError


class IdempotencyKeys:
    """Idempotency-Key of each import submission, claimed atomically before the upload is read.

    A claim has an `owner` (the request receiving the upload) and a lease (`lease_until`, a
    time as format_time writes it) that the owner renews while bytes arrive. A claim that names
    no job yet and whose lease has ended (its upload died with its process) may be taken over;
    one that names a job is the key's for good.
    """

    def claim(self, key: str, owner: str, now: str, lease_until: str) -> Document | None:
        """Claim a key (or take over a lapsed unbound claim); None if `owner` holds it now,
        else the claim that holds it ({job: id or None, owner, lease_until})."""
        raise NotImplementedError

    def renew(self, key: str, owner: str, lease_until: str) -> bool:
        """Extend `owner`'s claim; False if the claim is no longer `owner`'s."""
        raise NotImplementedError

    def bind(self, key: str, owner: str, job_id: str) -> bool:
        """Name the job of `owner`'s claim; False if the claim is no longer `owner`'s."""
        raise NotImplementedError

    def job_for(self, key: str) -> str | None:
        raise NotImplementedError

    def release(self, key: str, owner: str) -> None:
        """Free `owner`'s claim of a key whose submission failed (only while it names no job)."""
        raise NotImplementedError

    def purge(self, now: str) -> int:
        """Delete the claims that name no job and whose lease ended before `now`; how many."""
        raise NotImplementedError


class Leases:
    """Named leases: one holder at a time until the lease runs out."""

    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take the lease if it is free or expired; True if `holder` has it now."""
        raise NotImplementedError

    def release(self, name: str, holder: str, now: datetime) -> None:
        raise NotImplementedError

    def record(self, name: str, holder: str, fields: Document) -> None:
        """Note facts of the last run (finished_on, error) on the lease."""
        raise NotImplementedError

    def get(self, name: str) -> Document | None:
        raise NotImplementedError


class Heartbeats:
    """One heartbeat per job-running process."""

    def beat(self, name: str, fields: Document, now: datetime, expires_at: datetime) -> None:
        raise NotImplementedError

    def forget(self, name: str) -> None:
        raise NotImplementedError

    def alive(self, since: datetime) -> list[Document]:
        """Processes seen since `since`."""
        raise NotImplementedError

    def purge(self, now: datetime) -> int:
        """Delete the heartbeats that expired before `now`; how many."""
        raise NotImplementedError


class RateCounters:
    """Fixed-window request counters shared by every web process."""

    def hit(self, key: str, expires_at: datetime) -> int:
        """Count one hit on `key`; return the count (the counter expires at `expires_at`)."""
        raise NotImplementedError

    def purge(self, now: datetime) -> int:
        """Delete the counters of windows that ended before `now`; how many."""
        raise NotImplementedError


class ConsoleSessions:
    """Signed-in sessions of the web console, addressed by the sha256 of their id (the browser
    holds the id; the store never does)."""

    def insert(self, session: Document) -> None:
        """Insert a session with `_id` and `expires_at`; DuplicateKey if the id exists."""
        raise NotImplementedError

    def get(self, key: str) -> Document | None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def purge(self, now: str) -> int:
        """Delete the sessions that expired before `now`; how many."""
        raise NotImplementedError


class Webhooks:
    """Webhooks of repositories (`_id` = hook id): target, events, secret, state, failures."""

    def get(self, hook_id: str) -> Document | None:
        raise NotImplementedError

    def insert(self, hook: Document) -> None:
        """Insert a hook; DuplicateKey if its id exists."""
        raise NotImplementedError

    def update(self, hook_id: str, changes: Document) -> Document | None:
        """Change fields of a hook; the hook after the change, None if there is none."""
        raise NotImplementedError

    def delete(self, hook_id: str) -> None:
        raise NotImplementedError

    def for_repository(self, repository: str) -> list[Document]:
        """The hooks of one repository (source or collection url), oldest first."""
        raise NotImplementedError

    def record_attempt(self, hook_id: str, ok: bool, now: str, disable_after: int,
                       reason: str) -> Document | None:
        """Count one delivery attempt atomically: a success resets `failures`, a failure adds
        one and, reaching `disable_after`, turns the hook off (`active` false, `disabled_on`,
        `disabled_reason`); the hook after the change."""
        raise NotImplementedError

    def disabled(self, limit: int = 100) -> tuple[list[Document], int]:
        """Hooks turned off after failing (not those their owner switched off), newest first,
        and how many there are."""
        raise NotImplementedError

    def dump(self) -> Iterator[Document]:
        raise NotImplementedError

    def load(self, documents: Iterable[Document]) -> int:
        raise NotImplementedError


class WebhookDeliveries:
    """The delivery log of webhooks (`_id` = delivery id): event, body, state, last attempts."""

    def get(self, delivery_id: str) -> Document | None:
        raise NotImplementedError

    def insert(self, delivery: Document) -> None:
        raise NotImplementedError

    def update(self, delivery_id: str, changes: Document) -> Document | None:
        raise NotImplementedError

    def page(self, hook_id: str, skip: int, limit: int) -> DocumentPage:
        """A hook's deliveries, newest first, and how many it has."""
        raise NotImplementedError

    def prune(self, hook_id: str, keep: int) -> int:
        """Delete a hook's deliveries but the newest `keep`; how many went."""
        raise NotImplementedError

    def delete_for_hook(self, hook_id: str) -> None:
        raise NotImplementedError

    def dump(self) -> Iterator[Document]:
        raise NotImplementedError

    def load(self, documents: Iterable[Document]) -> int:
        raise NotImplementedError


class Store:
    """Every repository over one database, chosen by DATABASE_URI."""

    kind = "abstract"
    users: Users
    orgs: Orgs
    sources: Sources
    versions: Versions
    items: Items
    jobs: Jobs
    exports: ExportRecords
    import_results: ImportResults
    import_keys: IdempotencyKeys
    leases: Leases
    heartbeats: Heartbeats
    rate_counters: RateCounters
    console_sessions: ConsoleSessions
    references: References
    collection_entries: CollectionEntries
    webhooks: Webhooks
    webhook_deliveries: WebhookDeliveries

    def ensure_schema(self) -> None:
        """Create or upgrade tables/collections and their indexes (idempotent)."""
        raise NotImplementedError

    def transaction(self, source_url: str | None = None) -> AbstractContextManager[None]:
        """A unit of work: on SQLite one transaction (inside a transaction, a savepoint; inside
        a unit, part of that unit), on MongoDB the process-wide lock of `source_url` (single
        documents are atomic there). Code inside a unit does not catch an exception that leaves
        a unit nested in it: it leaves both."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise if the database does not answer."""
        raise NotImplementedError

    def is_unavailable(self, error: BaseException) -> bool:
        """Whether `error` means the database is down or busy (503), not a bug (500)."""
        raise NotImplementedError

    def fault_of(self, error: BaseException) -> StorageFault | None:
        """The storage fault a database error means (its disk full, read-only, not writable by
        this user: 503 and a degraded /readyz), or None."""
        return None

    def writable_path(self) -> str | None:
        """The file whose directory must stay writable (SQLite), or None (a server's)."""
        return None

    def close(self) -> None:
        raise NotImplementedError

    def drop(self) -> None:
        """Delete everything (tests on a shared server)."""
        raise NotImplementedError

    def export_files(self, bucket: str, temp_directory: str) -> ExportStorage:
        """Export files kept in this database (GridFS's layout in `bucket` on MongoDB), so that
        every host serves them; builds write their temp files under `temp_directory`. ValueError
        where the database keeps no files (configuration refuses that before)."""
        raise ValueError(f"the {self.kind} store keeps no export files; use a directory")

    def import_uploads(self) -> UploadStore:
        """Bulk-import uploads kept in this database (chunks on MongoDB), so that a job runs on
        any host; ValueError where the database keeps no files."""
        raise ValueError(f"the {self.kind} store keeps no uploads; use a directory")

    def repositories(self) -> dict[str, Any]:
        """The repositories `termsync db copy` moves, in the order they must be loaded."""
        return {"users": self.users, "orgs": self.orgs, "sources": self.sources,
                "versions": self.versions, "items": self.items,
                "references": self.references, "collection_entries": self.collection_entries,
                "jobs": self.jobs, "import_results": self.import_results,
                "webhooks": self.webhooks, "webhook_deliveries": self.webhook_deliveries}


Clock = Callable[[], datetime]
