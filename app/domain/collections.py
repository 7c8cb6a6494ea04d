"""Collections: references to concepts and mappings of sources, and what they resolve to.

A collection is a repository like a source (same documents, `repo_type` "Collection"), whose
content is not items but *entries*: for each item url some reference brings in, which item version
it resolves to. An item is in the collection while at least one live reference names it; it
follows its item (the item's live version) while an unversioned reference names it, else it is the
newest version a pinned reference names. Adding or removing a reference re-resolves the urls it
names, and writing an item re-resolves the entries that follow it, in the item's transaction (on
SQLite; on MongoDB right after it, with a mark that the maintenance sweep finds after a crash).
An entry version is written only when the resolution changes, so a collection's diffs count an
item when it entered, changed in or left the collection, and nothing else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from ..model import COLLECTION_TYPE, CONCEPT, HEAD_SEQ, MAPPING, Document, RepoFilters, Source, Version
from ..store.base import StaleHead
from ..timeutil import now_iso
from . import ocl
from .accounts import Caller
from .errors import Conflict, Invalid

if TYPE_CHECKING:
    from .content import Content

logger = logging.getLogger(__name__)

CASCADES = ("sourcemappings", "sourcetoconcepts")
ADDED, EXISTS, NOT_FOUND, NOT_ALLOWED, INVALID = \
    "added", "exists", "not_found", "not_allowed", "invalid"
KINDS = {"concepts": CONCEPT, "mappings": MAPPING}
BATCH = 1000  # expressions applied per transaction
_ITEM_VERSION = re.compile(r"^\d{1,18}$")


@dataclass(frozen=True)
class Expression:
    """A reference expression, parsed: the item it names, and how it is pinned."""

    text: str  # normalised: /orgs/O/sources/S/[V/]concepts/ID/[N/]
    url: str  # the item's url
    type: str
    source_url: str
    item_id: str
    source_version: str | None = None
    item_version: int | None = None

    @property
    def pinned(self) -> bool:
        return self.source_version is not None or self.item_version is not None


@dataclass
class ReferenceResult:
    """What happened to one expression of a PUT (or of a cascade it started)."""

    expression: str
    result: str  # added | exists | not_found | not_allowed | invalid
    message: str
    cascaded_from: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """OCL's answer item ({added, expression, message}) plus termsync's `result`."""
        answer: dict[str, Any] = {"added": self.result == ADDED, "expression": self.expression,
                                  "message": self.message, "result": self.result}
        if self.cascaded_from:
            answer["cascaded_from"] = self.cascaded_from
        return answer


def parse_expression(raw: Any) -> Expression | None:
    """An expression naming one concept or mapping of a source (pinned to a source version or an
    item version, or not); None for anything else (whole sources, collections, filters)."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw.strip()
    if "://" in text:
        text = urlsplit(text).path
    if "?" in text or "#" in text:
        return None
    parts = [part for part in text.split("/") if part]
    if len(parts) < 6 or parts[0] not in ("orgs", "users") or parts[2] != "sources":
        return None
    source_url = f"/{parts[0]}/{parts[1]}/sources/{parts[3]}/"
    rest = parts[4:]
    source_version = None
    if rest[0] not in KINDS:
        source_version, rest = rest[0], rest[1:]
    if len(rest) not in (2, 3) or rest[0] not in KINDS:
        return None
    item_version = None
    if len(rest) == 3:
        if source_version is not None or not _ITEM_VERSION.match(rest[2]):
            return None
        item_version = int(rest[2])
    if source_version == "HEAD":
        source_version = None
    item_id = unquote(rest[1])
    kind = rest[0]
    url = f"{source_url}{kind}/{quote(item_id, safe='')}/"
    normal = source_url + (f"{source_version}/" if source_version else "") + \
        f"{kind}/{quote(item_id, safe='')}/" + (f"{item_version}/" if item_version else "")
    return Expression(normal, url, KINDS[kind], source_url, item_id, source_version, item_version)


@dataclass
class _Candidate:
    """An expression that names an existing item the caller may reference."""

    expression: Expression
    document: Document
    cascaded_from: str | None = None


@dataclass
class _Lookups:
    """Sources and source versions looked up once per request."""

    sources: dict[str, Source | None] = field(default_factory=dict)
    versions: dict[str, Version | None] = field(default_factory=dict)


class Collections:
    """References of collections and the entries they resolve to (part of the content domain)."""

    def __init__(self, content: Content) -> None:
        self.content = content
        self.store = content.store
        self.accounts = content.accounts

    # --- references -----------------------------------------------------------------------
    def add_references(self, caller: Caller, collection: Source, expressions: list[Any],
                       cascade: str | None = None) -> list[ReferenceResult]:
        """Add references (and, with `cascade`, those of each concept's mappings in its source,
        and with sourcetoconcepts of their target concepts); one result per expression."""
        self.accounts.require_edit(caller, collection)
        if cascade is not None and cascade not in CASCADES:
            cascade = None  # OCL's "none" and unknown values: no cascade
        results: dict[str, ReferenceResult] = {}
        candidates: dict[str, _Candidate] = {}
        lookups = _Lookups()
        for raw in expressions:
            self._consider(caller, collection, raw, None, lookups, results, candidates)
            parsed = parse_expression(raw)
            if cascade and parsed is not None and parsed.text in candidates \
                    and parsed.type == CONCEPT:
                candidates[parsed.text].document["cascade"] = cascade
                for child in self._cascade(candidates[parsed.text], cascade, lookups):
                    self._consider(caller, collection, child, parsed.text, lookups, results,
                                   candidates)
        pending = list(candidates.values())
        url = collection.url
        for start in range(0, len(pending), BATCH):
            chunk = pending[start:start + BATCH]
            with self.store.transaction(url):
                live = self.store.references.live(url, (c.expression.text for c in chunk))
                new = [c for c in chunk if c.expression.text not in live]
                for candidate in chunk:
                    text = candidate.expression.text
                    if text in live:
                        results[text] = ReferenceResult(
                            text, EXISTS, "This reference is in the collection already.",
                            candidate.cascaded_from)
                now = now_iso()
                self.store.references.add(url, [dict(c.document, created_on=now,
                                                     created_by=caller.username) for c in new])
                self._settle(url, {c.expression.url for c in new}, now)
        return list(results.values())

    def _consider(self, caller: Caller, collection: Source, raw: Any, cascaded_from: str | None,
                  lookups: _Lookups, results: dict[str, ReferenceResult],
                  candidates: dict[str, _Candidate]) -> None:
        """Check one expression; record its failure or make it a candidate."""
        parsed = parse_expression(raw)
        key = parsed.text if parsed is not None else str(raw)
        if key in results:
            return
        if parsed is None:
            results[key] = ReferenceResult(key, INVALID, (
                "Not a concept or mapping expression: expected /orgs/ORG/sources/SOURCE/"
                "[VERSION/]concepts/ID/ or .../mappings/ID/[ITEM_VERSION/]."), cascaded_from)
            return
        source = self._source(caller, parsed.source_url, lookups)
        if source is None:
            results[key] = ReferenceResult(key, NOT_FOUND, f"Source {parsed.source_url} not found.",
                                           cascaded_from)
            return
        if not self.exposable(collection, source):
            results[key] = ReferenceResult(key, NOT_ALLOWED, (
                f"Source {parsed.source_url} is private: this collection would show its content "
                "to people who may not see it."), cascaded_from)
            return
        resolved = self._resolve_expression(parsed, lookups)
        if resolved is None:
            results[key] = ReferenceResult(key, NOT_FOUND, f"{parsed.type} {parsed.text} not found.",
                                           cascaded_from)
            return
        noun = parsed.type.lower()
        message = (f"Added the {noun} version to the collection. Future updates will not be added "
                   "automatically." if parsed.pinned else
                   f"The {noun} {parsed.item_id} is successfully added to collection "
                   f"{collection.id}")
        results[key] = ReferenceResult(key, ADDED, message, cascaded_from)
        candidates[key] = _Candidate(parsed, dict(resolved, cascaded_from=cascaded_from),
                                     cascaded_from)

    def _source(self, caller: Caller, source_url: str, lookups: _Lookups) -> Source | None:
        if source_url not in lookups.sources:
            source = self.store.sources.get(source_url)
            visible = source is not None and source.repo_type == "Source" \
                and self.accounts.can_view(caller, source)
            lookups.sources[source_url] = source if visible else None
        return lookups.sources[source_url]

    def exposable(self, collection: Source, source: Source) -> bool:
        """Whether a collection may show a source's items: it shows them to its own viewers, so
        a source that not everyone may see (private, or of a private org) only to a collection
        of the same owner that not everyone may see either."""
        if self.accounts.is_public(source):
            return True
        return not self.accounts.is_public(collection) \
            and collection.owner_url == source.owner_url

    def check_org_access(self, caller: Caller, org_id: str, public_access: str) -> None:
        """An org about to become private may not have its sources' items in other owners'
        collections; one about to become public may not have public collections that hold items
        of sources not everyone may see (Invalid naming them)."""
        owner_url = f"/orgs/{org_id}/"
        becoming_private = public_access == "None"
        blocking: set[str] = set()
        for repo in self._repos_of(owner_url):
            if becoming_private and repo.repo_type != COLLECTION_TYPE:
                blocking.update(url for url in self.store.collection_entries.holding(repo.url)
                                if not url.startswith(owner_url))
            elif not becoming_private and repo.repo_type == COLLECTION_TYPE \
                    and repo.public_access in ("View", "Edit"):
                for source_url in self.store.collection_entries.sources_held(repo.url):
                    source = self.store.sources.get(source_url)
                    if source is None or source.public_access not in ("View", "Edit") or (
                            source.owner_url != owner_url and not
                            self.accounts.is_public(source)):
                        blocking.add(repo.url)
                        break
        if blocking:
            change = "private" if becoming_private else "public"
            raise Invalid(f"Organization '{org_id}' cannot become {change}: collection(s) "
                          f"{self.named(caller, blocking)} would show items to "
                          "people who may not see their sources.",
                          errors={"public_access": ["Collections would expose sources."]})

    def _repos_of(self, owner_url: str) -> Iterable[Source]:
        """Every repository of an owner, a page at a time."""
        skip = 0
        while True:
            page, total = self.store.sources.search(owner_url, None, RepoFilters(), skip, BATCH)
            yield from page
            skip += len(page)
            if not page or skip >= total:
                return

    def check_exposable(self, caller: Caller, collection: Source) -> None:
        """A collection about to be seen by more people may not hold a private source's items
        that those people may not see (Invalid naming the sources)."""
        hidden = []
        for source_url in self.store.collection_entries.sources_held(collection.url):
            source = self.store.sources.get(source_url)
            if source is not None and not self.exposable(collection, source):
                hidden.append(source_url)
        if hidden:
            raise Invalid(f"Collection '{collection.id}' holds items of private source(s) "
                          f"{self.named(caller, hidden)}: it cannot be made visible to more "
                          "people.", errors={"public_access": ["Would expose private sources."]})

    def named(self, caller: Caller, urls: Iterable[str]) -> str:
        """Repositories by url for a message to `caller`: those they may see; the others only
        counted, since whether they exist is not theirs to learn."""
        urls = sorted(set(urls))
        shown = [url for url in urls if (repo := self.store.sources.get(url)) is not None
                 and self.accounts.can_view(caller, repo)]
        others = len(urls) - len(shown)
        if others:
            shown.append(f"{others} other(s) that you may not see")
        return ", ".join(shown)

    def _resolve_expression(self, parsed: Expression, lookups: _Lookups) -> Document | None:
        """The reference document for an expression naming an existing item, else None."""
        items = self.store.items
        if parsed.item_version is not None:
            item = items.item_version(parsed.url, parsed.item_version)
        elif parsed.source_version is not None:
            version_url = f"{parsed.source_url}{parsed.source_version}/"
            if version_url not in lookups.versions:
                lookups.versions[version_url] = self.store.versions.get(version_url)
            version = lookups.versions[version_url]
            item = items.current(parsed.url, version.seq) if version is not None else None
        else:
            head = items.head(parsed.url)
            item = dict(head, url=parsed.url) if head is not None else None
        if item is None or item["deleted"]:
            return None
        return {"expression": parsed.text, "url": parsed.url, "type": parsed.type,
                "id": item["id"], "source": parsed.source_url,
                "item_seq": item["seq"] if parsed.pinned else None,
                "retired": bool(item["retired"]), "source_version": parsed.source_version,
                "item_version": parsed.item_version, "cascade": None}

    def _cascade(self, parent: _Candidate, cascade: str, lookups: _Lookups) -> list[str]:
        """Expressions a concept's cascade adds: its mappings in its source (from it), pinned as
        it is to a source version; with sourcetoconcepts also their target concepts."""
        concept = parent.expression
        seq = HEAD_SEQ
        if concept.source_version is not None:
            version = lookups.versions.get(f"{concept.source_url}{concept.source_version}/")
            seq = version.seq if version is not None else HEAD_SEQ
        prefix = f"{concept.source_url}{concept.source_version}/" if concept.source_version \
            else concept.source_url
        expressions = []
        for mapping in self.store.items.mappings_for_concept(concept.source_url, seq, concept.url):
            expressions.append(f"{prefix}mappings/{quote(mapping['id'], safe='')}/")
            target = mapping["data"].get("to_concept_url")
            if cascade == "sourcetoconcepts" and target:
                parsed = ocl.parse_concept_url(target)
                if parsed is None:
                    continue
                if parsed["source_url"] == concept.source_url and concept.source_version:
                    expressions.append(f"{prefix}concepts/{quote(parsed['code'], safe='')}/")
                else:
                    expressions.append(target)
        return expressions

    def remove_references(self, caller: Caller, collection: Source, expressions: list[Any],
                          cascade: str | None = None) -> list[str]:
        """Remove references by expression (with cascade=sourcemappings also those of the
        collection's mappings from the concepts removed); return the expressions removed."""
        self.accounts.require_edit(caller, collection)
        url = collection.url
        texts = []
        for raw in expressions:
            parsed = parse_expression(raw)
            texts.append(parsed.text if parsed is not None else str(raw).strip())
        removed: list[str] = []
        for start in range(0, len(texts), BATCH):
            chunk = texts[start:start + BATCH]
            with self.store.transaction(url):
                if cascade in CASCADES:
                    chunk = chunk + self._cascaded_mappings(url, chunk)
                ended = self.store.references.remove(url, chunk)
                self._settle(url, {reference["url"] for reference in ended}, now_iso())
                removed.extend(reference["expression"] for reference in ended)
        return removed

    def _cascaded_mappings(self, collection_url: str, expressions: list[str]) -> list[str]:
        """The expressions of the live references to the collection's mappings from the concepts
        these expressions name."""
        found: list[str] = []
        for text in expressions:
            parsed = parse_expression(text)
            if parsed is None or parsed.type != CONCEPT:
                continue
            for mapping in self.store.collection_entries.mappings_for_concept(
                    collection_url, HEAD_SEQ, parsed.url, include_retired=True):
                found.extend(reference["expression"] for reference in
                             self.store.references.bringing(collection_url, mapping["url"]))
        return found

    def iter_references(self, collection: Source, version: Version) -> Iterator[Document]:
        """Every reference of a collection at a version, in order (an export's section)."""
        return self.store.references.iter_at(collection.url, version.seq)

    def references(self, collection: Source, version: Version, q: str | None, skip: int,
                   limit: int) -> tuple[list[Document], int]:
        """A page of a collection's references at a version (HEAD: the live ones)."""
        return self.store.references.page(collection.url, version.seq, q, skip, limit)

    # --- resolution -----------------------------------------------------------------------
    def _settle(self, collection_url: str, urls: Iterable[str], now: str) -> int:
        """`_resolve_urls`, again if another writer of one of these entries came first (only
        where writes of one collection are not serialised: MongoDB across processes)."""
        for _ in range(3):
            try:
                return self._resolve_urls(collection_url, urls, now)
            except StaleHead:
                continue
        raise Conflict(f"Collection {collection_url} changed concurrently; retry.")

    def _resolve_urls(self, collection_url: str, urls: Iterable[str], now: str) -> int:
        """Bring the entries of these item urls in line with the collection's references; return
        how many entry versions were written. Runs inside the caller's transaction."""
        entries = self.store.collection_entries
        writes: list[tuple[Document, int | None]] = []
        for url in sorted(set(urls)):
            current = entries.head(collection_url, url)
            wanted = self._wanted(self.store.references.bringing(collection_url, url), url)
            change = _change(current, wanted, now)
            if change is None:
                continue
            if change == "follow":
                assert current is not None and wanted is not None
                entries.set_follow(collection_url, url, bool(wanted["follow"]))
            else:
                writes.append((change, current["seq"] if current is not None else None))
        entries.write(collection_url, writes)
        return len(writes)

    def _wanted(self, references: list[Document], url: str) -> Document | None:
        """What an item url should resolve to in a collection, given the references naming it:
        the item's live version while an unversioned reference follows it, else the newest
        pinned version; a tombstone that follows if only followers remain and the item is
        deleted; None if no reference names it."""
        if not references:
            return None
        following = [reference for reference in references if reference.get("item_seq") is None]
        base = references[0]
        entry = {"url": url, "type": base["type"], "id": base["id"], "source": base["source"],
                 "follow": bool(following)}
        if following:
            head = self.store.items.head(url)
            if head is not None and not head["deleted"]:
                return dict(entry, item_seq=head["seq"], retired=bool(head["retired"]),
                            deleted=False)
        pinned = [reference for reference in references if reference.get("item_seq") is not None]
        if pinned:
            newest = max(pinned, key=lambda reference: int(reference["item_seq"]))
            return dict(entry, item_seq=int(newest["item_seq"]), retired=bool(newest["retired"]),
                        deleted=False)
        return dict(entry, item_seq=None, retired=False, deleted=True)

    # --- following ------------------------------------------------------------------------
    def followed(self, url: str) -> bool:
        """Whether some collection follows this item url (its write must bring them along)."""
        return bool(self.store.collection_entries.followers(url))

    def follow(self, url: str) -> int:
        """Re-resolve every collection entry that follows an item url (after the item's write);
        return how many entry versions were written."""
        written = 0
        now = now_iso()
        for entry in self.store.collection_entries.followers(url):
            with self.store.transaction(entry["collection"]):
                written += self._settle(entry["collection"], [url], now)
        return written

    def finish_pending(self, older_than: str | None = None) -> int:
        """Finish or discard entry writes a crash interrupted (as `Content.finish_pending`)."""
        return self.store.collection_entries.finish_pending(older_than=older_than)

    def finish_following(self, older_than: str | None = None) -> int:
        """Bring along the followers of items whose writes a crash interrupted before their
        followers were (MongoDB: the marks the sweep finds); return how many items."""
        entries = self.store.collection_entries
        urls = entries.marked_following(older_than)
        for url in urls:
            self.follow(url)
            entries.unmark_following(url)
        return len(urls)

    # --- checks ---------------------------------------------------------------------------
    def check_hideable(self, caller: Caller, source: Source) -> None:
        """A source about to be seen by fewer people may not stay in a collection that shows
        its items to more (HEAD or a version): Invalid naming those collections."""
        exposing = []
        for collection_url in self.store.collection_entries.holding(source.url):
            collection = self.store.sources.get(collection_url)
            if collection is not None and not self.exposable(collection, source):
                exposing.append(collection_url)
        if exposing:
            raise Invalid(f"Source '{source.id}' has items in collection(s) "
                          f"{self.named(caller, exposing)} that more people may see: make them "
                          "private or remove those references (and versions) first.",
                          errors={"public_access": ["Collections would expose it."]})

    def check_source_deletable(self, caller: Caller, source: Source) -> None:
        """A source whose items a collection (HEAD or a version) holds cannot be deleted: a
        released collection version never changes."""
        holding = self.store.collection_entries.holding(source.url)
        if holding:
            raise Conflict(f"Source '{source.id}' has items in collection(s) "
                           f"{self.named(caller, holding)}: remove those references (and "
                           "versions) first.")


def _change(current: Document | None, wanted: Document | None, now: str) -> Any:
    """The entry version to write to go from `current` to `wanted`, "follow" when only the
    follow flag differs (not content: changed in place), or None when nothing changes."""
    if wanted is None or wanted["deleted"]:
        follow = bool(wanted and wanted["follow"])
        if current is None:
            return None
        if current["deleted"]:
            return "follow" if bool(current["follow"]) != follow else None
        return dict(current, deleted=True, retired=False, follow=follow, updated_on=now)
    if current is not None and not current["deleted"] \
            and current["item_seq"] == wanted["item_seq"] \
            and bool(current["retired"]) == wanted["retired"]:
        return "follow" if bool(current["follow"]) != wanted["follow"] else None
    return dict(wanted, updated_on=now)


def check_cascade(value: str | None) -> str | None:
    """The cascade asked for (lower case), None for none; Invalid for anything else."""
    if not value:
        return None
    value = value.strip().lower()
    if value in ("", "none"):
        return None
    if value not in CASCADES:
        raise Invalid(f"cascade {value!r}: expected sourcemappings, sourcetoconcepts or none.",
                      errors={"cascade": ["Unknown cascade."]})
    return value

