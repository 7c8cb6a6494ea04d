"""The model's words: item kinds, versions' seqs, the checksum algebra, counts and the queries
that select content. They sit above storage: `app.store` implements its repositories over them,
the domain and the features speak them.

Item versions model (docs/architecture.md): every write to a concept or mapping inserts a new item
version stamped with its source's next `seq`; `sup` is the seq that superseded it (LIVE while it
is the newest). The content of a version cut at seq V is the item versions with seq <= V < sup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .records import ExportFile as ExportFile  # the records, re-exported: `from app.model import ...`
from .records import ExportRecord as ExportRecord
from .records import Job as Job
from .records import Source as Source
from .records import Version as Version

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


@dataclass(frozen=True)
class Visibility:
    """Who is asking, for lists that hide private documents: None for an admin (sees all)."""

    username: str | None
    orgs: frozenset[str]
