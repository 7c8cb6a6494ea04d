"""Sources, collections, versions, concepts and mappings: the content domain, over the
repositories.

Sources and collections are both repositories (`repo_type`), with the same versions, diffs,
checksums and exports: what differs is where their content is read from, a source's items or a
collection's entries (`reader`), and that a collection's content changes through its references
(`app.domain.collections`), never by writing items into it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from ..model import (
    COLLECTION_TYPE,
    CONCEPT,
    HEAD_SEQ,
    MAPPING,
    SOURCE_TYPE,
    ContentQuery,
    DiffKey,
    ItemFilters,
    RepoFilters,
    Source,
    Version,
)
from ..model.records import SourceChanges
from ..store import Store
from ..store.base import DuplicateKey, StaleHead
from ..store.interfaces import ContentReader
from ..timeutil import format_time, now_iso, to_datetime
from . import ocl
from .accounts import Accounts, Caller, Owner, owner_of, visibility
from .collections import Collections
from .errors import Conflict, Forbidden, Invalid, NotAllowed, NotFound

logger = logging.getLogger(__name__)
EXACT = 2**62  # count every match (Items.search may stop counting early when told a limit)
ONE_SECOND_AT_MOST = 2**31 - 2  # more items than one second of writes can ever stamp

CONCEPT_FIELDS = ("concept_class", "datatype", "names", "descriptions", "external_id", "extras",
                  "parent_concept_urls", "update_comment")
COLLECTION_FIELDS = ("collection_type", "canonical_url", "preferred_source",
                     "custom_resources_linked_source", "immutable", "locked_date")
# URL segment of each kind of repository, and its kind
REPO_PATHS = {SOURCE_TYPE: "sources", COLLECTION_TYPE: "collections"}
REPO_KINDS = {"sources": SOURCE_TYPE, "collections": COLLECTION_TYPE, "source": SOURCE_TYPE,
              "collection": COLLECTION_TYPE}


def is_collection(repo: Source) -> bool:
    """Whether a repository is a collection (else a source)."""
    return repo.repo_type == COLLECTION_TYPE


def noun(repo: Source) -> str:
    """'source' or 'collection', for messages."""
    return "collection" if is_collection(repo) else "source"
MAPPING_FIELDS = ("map_type", "from_concept_url", "to_concept_url", "to_source_url",
                  "to_concept_code", "to_concept_name", "external_id", "extras", "sort_weight",
                  "update_comment")

@dataclass(frozen=True)
class DiffCursor:
    """Where the next diff page starts: the last (updated_on, type, id) sent, and the count
    of matching items found when paging began (counted once, not on every page)."""

    updated_on: str
    type: str
    id: str
    num_found: int


@dataclass
class DiffPage:
    """One page of a diff (or of a version's content) in keyset order, read when iterated:
    `items(type)` streams the page's items of one type in flat memory, however many.
    `unsent_from`: when more items follow, an `updated_on` at or before the first of them (the
    page is complete up to it), else None."""

    num_found: int
    returned: int
    next_cursor: DiffCursor | None
    items: Callable[[str], Iterator[dict[str, Any]]]
    unsent_from: str | None = None


def start_of_second(stamp: str) -> str:
    """The stored time stamp of the start of the second `stamp` falls in."""
    return stamp[:19] + ".000000Z"


def before(stamp: str) -> DiffKey:
    """A key that sorts after every item updated before `stamp` and before all others."""
    return DiffKey(stamp, "", "")


class Content:
    """The content domain: every rule about sources, versions and items lives here."""

    def __init__(self, store: Store, accounts: Accounts) -> None:
        self.store = store
        self.accounts = accounts
        self.listeners: list[Any] = []  # callables(event, source, version) for exports etc.
        self.collections = Collections(self)

    def _notify(self, event: str, source: Source, version: Version | None = None) -> None:
        for listener in self.listeners:
            try:
                listener(event, source, version)
            except Exception:  # a listener never breaks a write
                logger.exception("content listener failed on %s", event)

    def finish_pending(self, older_than: str | None = None) -> int:
        """Finish or discard item writes a crash interrupted (MongoDB; those begun before
        `older_than`, so none in flight elsewhere); return how many."""
        return self.store.items.finish_pending(older_than=older_than)

    # --- sources --------------------------------------------------------------------------
    def find_repo(self, url: str) -> Source | None:
        """A source or collection by its url, whoever may see it: for the server's own work
        (jobs, feeds, the CLI), never for an answer to a caller (`get_source` checks rights)."""
        return self.store.sources.get(url)

    def get_source(self, caller: Caller, owner: Owner, source_id: str,
                   kind: str = SOURCE_TYPE) -> Source:
        """A source (or with `kind`, a collection) the caller may see; a private one is 404 to
        outsiders."""
        source = self.store.sources.get(f"{owner.url}{REPO_PATHS[kind]}/{source_id}/")
        if source is None or not self.accounts.can_view(caller, source):
            raise NotFound(f"{kind} '{source_id}' of '{owner.id}' not found.")
        return source

    def reader(self, repo: Source) -> ContentReader:
        """Where a repository's content is read: a source's items, a collection's entries."""
        if is_collection(repo):
            return self.store.collection_entries
        return self.store.items

    def renderer(self, repo: Source) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """Renders items read from a repository in OCL's shape, each with its own source (a
        collection's items keep their source identity); sources are looked up once per renderer."""
        sources: dict[str, Source] = {repo.url: repo}

        def render(item: dict[str, Any]) -> dict[str, Any]:
            source = sources.get(item["source"])
            if source is None:
                source = self.store.sources.get(item["source"]) or _missing_source(item)
                sources[item["source"]] = source
            return ocl.render_item(item, source)

        return render

    def create_source(self, caller: Caller, owner: Owner, payload: dict[str, Any]) -> Source:
        """Create a source under an owner the caller belongs to."""
        return self._create_repo(caller, owner, payload, SOURCE_TYPE)

    def create_collection(self, caller: Caller, owner: Owner,
                          payload: dict[str, Any]) -> Source:
        """Create a collection under an owner the caller belongs to."""
        return self._create_repo(caller, owner, payload, COLLECTION_TYPE)

    def _create_repo(self, caller: Caller, owner: Owner, payload: dict[str, Any],
                     kind: str) -> Source:
        self.accounts.require_owner(caller, owner)
        url = f"{owner.url}{REPO_PATHS[kind]}/{payload['id']}/"
        now = now_iso()
        collection = kind == COLLECTION_TYPE
        locales = payload.get("supported_locales")
        source = Source(
            url=url, id=payload["id"], repo_type=kind, owner=owner.id, owner_type=owner.kind,
            owner_url=owner.url, public_access=payload.get("public_access") or "View",
            created_on=now, updated_on=now, created_by=caller.username,
            updated_by=caller.username, short_code=payload.get("short_code") or payload["id"],
            name=payload.get("name") or payload["id"],
            full_name=payload.get("full_name") or payload.get("name") or payload["id"],
            description=payload.get("description"),
            source_type=None if collection else payload.get("source_type"),
            default_locale=payload.get("default_locale"),
            supported_locales=tuple(locales or ()), website=payload.get("website"),
            custom_validation_schema=payload.get("custom_validation_schema"),
            external_id=payload.get("external_id"), extras=payload.get("extras") or {},
            **{key: payload.get(key)  # type: ignore[arg-type]  # OCL's, as the schema took them
               for key in (COLLECTION_FIELDS if collection else ())})
        try:
            self.store.sources.insert(source)
        except DuplicateKey:
            raise Conflict(f"{kind} '{payload['id']}' already exists.") from None
        return source

    def update_source(self, caller: Caller, source: Source, changes: dict[str, Any]) -> Source:
        """Change a source's metadata (HEAD); exports of HEAD become stale."""
        self.accounts.require_edit(caller, source)
        if "public_access" in changes and not self.accounts.owns(caller, owner_of(source)):
            raise Forbidden(f"Only the owner may change who can see a {noun(source)} "
                            "(public_access).")
        kind_only = COLLECTION_FIELDS if not is_collection(source) else ("source_type",)
        # SourceUpdateSchema's fields are SourceChanges' own: the payload is those changes
        fields: SourceChanges = {key: value for key, value in changes.items()  # type: ignore[assignment]
                                 if key not in kind_only}
        if fields.get("supported_locales") is not None:
            fields["supported_locales"] = tuple(fields["supported_locales"] or ())
        if is_collection(source) and fields.get("public_access") in ("View", "Edit"):
            self.collections.check_exposable(caller, replace(source, **fields))
        elif not is_collection(source) and fields.get("public_access") == "None":
            self.collections.check_hideable(caller, replace(source, **fields))
        fields["updated_on"] = now_iso()
        fields["updated_by"] = caller.username
        updated = self.store.sources.update(source.url, **fields)
        assert updated is not None
        self._notify("source_changed", updated)
        return updated

    def delete_source(self, caller: Caller, source: Source) -> None:
        """Delete a source with its versions and items, or a collection with its versions,
        references and entries (owners only). A source whose items a collection holds stays."""
        self.accounts.require_owner(caller, owner_of(source))
        if is_collection(source):
            self._notify("source_deleted", source)
            self.store.collection_entries.delete_for_collection(source.url)
            self.store.references.delete_for_collection(source.url)
        else:
            self.collections.check_source_deletable(caller, source)
            self._notify("source_deleted", source)
            self.store.items.delete_for_source(source.url)
        self.store.versions.delete_for_source(source.url)
        self.store.sources.delete(source.url)

    def list_repos(self, caller: Caller, owner: Owner | None, filters: RepoFilters, skip: int,
                   limit: int) -> tuple[list[Source], int]:
        """Repositories the caller may see, under one owner or everywhere: sources, collections
        or (`filters.repo_type` None) both."""
        if filters.repo_type is not None:
            kind = REPO_KINDS.get(filters.repo_type.strip().lower())
            if kind is None:
                return [], 0  # a kind of repository termsync does not have: none of them
            filters = replace(filters, repo_type=kind)
        return self.store.sources.search(owner.url if owner is not None else None,
                                         visibility(caller), filters, skip, limit)

    def summary(self, source: Source, version: Version) -> dict[str, int]:
        """OCL's `summary` of a source or version: its active (not retired) concepts and mappings."""
        counts = {f"active_{ocl.ITEM_PATHS[kind]}": self.count(
            source, version, ContentQuery(source.url, version.seq, (kind,),
                                          include_retired=False)) for kind in (CONCEPT, MAPPING)}
        if version.is_head:
            counts["versions"] = self.store.versions.list(source.url, None, 0, 1)[1]
        return counts

    # --- versions -------------------------------------------------------------------------
    @staticmethod
    def head_version(source: Source) -> Version:
        """HEAD as a version: the live content of the source."""
        return Version(url=source.url, id="HEAD", source=source.url, seq=HEAD_SEQ,
                       is_head=True, last_updated=source.last_updated or None,
                       created_on=source.created_on, updated_on=source.updated_on)

    def get_version(self, source: Source, version_id: str) -> Version:
        """A version by id; 'HEAD' is the live source, 'latest' the newest released version."""
        if version_id == "HEAD":
            return self.head_version(source)
        if version_id == "latest":
            version = self.store.versions.latest_released(source.url)
            if version is None:
                raise NotFound(f"{noun(source).capitalize()} '{source.id}' has no released "
                               "version.")
            return version
        version = self.store.versions.get(f"{source.url}{version_id}/")
        if version is None:
            raise NotFound(f"Version '{version_id}' of {noun(source)} '{source.id}' not found.")
        return version

    def create_version(self, caller: Caller, source: Source,
                       payload: dict[str, Any]) -> Version:
        """Cut a version from HEAD: records the seq, copies nothing (constant time)."""
        self.accounts.require_edit(caller, source)
        url = f"{source.url}{payload['id']}/"
        with self.store.transaction(source.url):
            state = self.store.sources.cut_state(source.url)
            self.reader(source).settle(source.url, state.seq)
            previous = self.store.versions.list(source.url, None, 0, 1)[0]
            now = now_iso()
            version = Version(url=url, id=payload["id"], source=source.url, seq=state.seq,
                              checksum=state.checksum, counts=state.counts,
                              last_updated=state.last_updated,
                              description=payload.get("description"),
                              released=bool(payload.get("released")),
                              retired=bool(payload.get("retired")),
                              external_id=payload.get("external_id"),
                              extras=payload.get("extras") or {},
                              previous_version_url=previous[0].url if previous else None,
                              created_on=now, updated_on=now,
                              created_by=caller.username, updated_by=caller.username)
            try:
                self.store.versions.insert(version)
            except DuplicateKey:
                raise Conflict(f"Version '{payload['id']}' already exists.") from None
        self._notify("version_created", source, version)
        return version

    def update_version(self, caller: Caller, source: Source, version: Version,
                       changes: dict[str, Any]) -> Version:
        """Change a version's metadata (description, released, retired, external_id, extras, as
        `VersionUpdateSchema` reads them); never its content."""
        self.accounts.require_edit(caller, source)
        if version.is_head:
            raise NotAllowed("HEAD is not a version; change the source instead.")
        updated = self.store.versions.update(
            version.url, **dict(changes, updated_on=now_iso(), updated_by=caller.username))
        if updated is None:
            raise NotFound(f"Version '{version.id}' not found.")
        self._notify("version_changed", source, updated)
        if updated.released != version.released:
            # webhooks announce a release (or its withdrawal) once, when the flag flips
            self._notify("version_released" if updated.released else "version_unreleased",
                         source, updated)
        return updated

    def delete_version(self, caller: Caller, source: Source, version: Version) -> None:
        """Delete a version (its exports go with it)."""
        self.accounts.require_edit(caller, source)
        if version.is_head:
            raise NotAllowed("HEAD cannot be deleted.")
        self.store.versions.delete(version.url)
        self._notify("version_deleted", source, version)

    def list_versions(self, source: Source, released: bool | None, skip: int,
                      limit: int, updated_since: str | None = None) -> tuple[list[Version], int]:
        """Versions of a source, newest first."""
        return self.store.versions.list(source.url, released, skip, limit, updated_since)

    # --- checksums ------------------------------------------------------------------------
    def released_versions(self, source: Source) -> Iterator[Version]:
        """Every released version of a repository, newest first, a page at a time."""
        skip = 0
        while True:
            page, total = self.store.versions.list(source.url, True, skip, 100)
            yield from page
            skip += len(page)
            if not page or skip >= total:
                return

    def every_released_version(self) -> Iterator[Version]:
        """The released versions of every repository."""
        return self.store.versions.all_released()

    def newest_releases(self, skip: int, limit: int) -> list[Version]:
        """Released versions of every repository, the newest first."""
        return self.store.versions.newest_released(skip, limit)

    def find_version(self, url: str) -> Version | None:
        """A version by its url (or None), whoever may see it: for the server's own work."""
        return self.store.versions.get(url)

    def find_item(self, url: str) -> dict[str, Any] | None:
        """An item's live version by its url, tombstones included (or None), whoever may see
        it: for the server's own work."""
        return self.store.items.current(url)

    def checksum(self, source: Source, version: Version) -> str:
        """checksums.content of a version (cached: a version's content never changes)."""
        if version.is_head:
            return self.reader(source).head_checksum(source.url)
        if version.checksum:
            return version.checksum
        value = self.reader(source).scan_checksum(source.url, version.seq)
        self.store.versions.update(version.url, checksum=value)
        return value

    # --- reading items --------------------------------------------------------------------
    def get_item(self, source: Source, version: Version, item_type: str,
                 item_id: str) -> dict[str, Any]:
        """One concept or mapping as it is in a version (of a collection: 409 when two sources'
        items there have this id)."""
        if is_collection(source):
            found = [item for item in self.store.collection_entries.find(
                source.url, version.seq, item_type, item_id) if not item["deleted"]]
            if len(found) > 1:
                raise Conflict(f"{len(found)} {item_type.lower()}s with id '{item_id}' are in "
                               f"{version.id} of '{source.id}': "
                               f"{', '.join(item['url'] for item in found)}.")
            item = found[0] if found else None
        else:
            item = self.store.items.current(ocl.item_url(source.url, item_type, item_id),
                                            version.seq)
        if item is None or item["deleted"]:
            raise NotFound(f"{item_type} '{item_id}' not found in {version.id} of "
                           f"'{source.id}'.")
        return item

    def get_item_version(self, source: Source, item_type: str, item_id: str,
                         item_version: int) -> dict[str, Any]:
        """One item version by its `version` (an item's `version_url`), even a superseded one
        (of a collection: of the item with that id in its HEAD)."""
        url = ocl.item_url(source.url, item_type, item_id)
        if is_collection(source):
            url = self.get_item(source, self.head_version(source), item_type, item_id)["url"]
        item = self.store.items.item_version(url, item_version)
        if item is None or item["deleted"]:
            raise NotFound(f"{item_type} '{item_id}' has no version {item_version}.")
        return item

    def item_history(self, source: Source, item_type: str, item_id: str, skip: int,
                     limit: int) -> tuple[list[dict[str, Any]], int]:
        """The versions of a concept or mapping, newest first (404 if it is not in HEAD)."""
        item = self.get_item(source, self.head_version(source), item_type, item_id)
        return self.store.items.history(item["source"], item["url"], skip, limit)

    def concept_mappings(self, source: Source, version: Version,
                         concept: dict[str, Any], inverse: bool,
                         include_retired: bool) -> list[dict[str, Any]]:
        """Mappings of the concept's source (of a collection: of the collection) at `version`
        from it, and with `inverse` to it."""
        return self.reader(source).mappings_for_concept(source.url, version.seq, concept["url"],
                                                     inverse=inverse, include_retired=include_retired)

    def list_items(self, source: Source, version: Version, item_type: str,
                   include_retired: bool, skip: int, limit: int,
                   filters: ItemFilters | None = None,
                   updated_since: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Concepts or mappings of a version by id, narrowed by OCL's search parameters."""
        query = ContentQuery(source.url, version.seq, (item_type,),
                             include_retired=include_retired, updated_since=updated_since,
                             filters=filters or ItemFilters())
        if query.filters or updated_since is not None:
            return self.reader(source).search(query, skip, limit, EXACT)
        return self.reader(source).page(query, skip, limit), self.count(source, version, query)

    def search_items(self, caller: Caller, item_type: str, include_retired: bool,
                     filters: ItemFilters, repos: RepoFilters, skip: int, limit: int,
                     updated_since: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Concepts or mappings (HEAD) of every source the caller may see (narrowed by owner),
        by type then id; the global `/concepts/` and `/mappings/`."""
        sources: list[str] = []
        page_skip = 0
        while True:
            found, total = self.list_repos(caller, None, repos, page_skip, 500)
            sources.extend(source.url for source in found)
            page_skip += len(found)
            if not found or page_skip >= total:
                break
        if not sources:
            return [], 0
        query = ContentQuery(tuple(sources), HEAD_SEQ, (item_type,), include_retired=include_retired,
                             updated_since=updated_since, filters=filters)
        return self.store.items.search(query, skip, limit, EXACT)

    def count(self, source: Source, version: Version, query: ContentQuery) -> int:
        """How many items a query selects: from the counts kept with HEAD or cut into a version
        where the backend keeps them and the query selects by type and state alone."""
        if query.filters and is_collection(source):
            raise Invalid("Search filters do not apply to collections yet.")
        counts = self.reader(source).head_counts(source.url) if version.is_head \
            else version.counts
        if counts is None or query.updated_since is not None or query.filters:
            return self.reader(source).count(query)
        total = 0
        for kind in query.types:
            active, retired, deleted = counts.get(kind, [0, 0, 0])
            total += active + (retired if query.include_retired else 0) \
                + (deleted if query.include_deleted else 0)
        return total

    def diff_page(self, source: Source, version: Version, types: list[str],
                  include_retired: bool, updated_since: str | None,
                  cursor: DiffCursor | None, limit: int, include_deleted: bool = False) -> DiffPage:
        """A page of items changed since a time, in (updated_on, type, id) keyset order.

        Keyset, not offset: an item updated while a client pages moves to the end (its
        updated_on is now), so nothing present at the start is skipped, and every page costs
        the same index scan wherever it starts. Tombstones only with `include_deleted`. Where
        the page ends is found from keys alone; its items are read when streamed.
        """
        query = ContentQuery(source.url, version.seq, tuple(types),
                             include_retired=include_retired, include_deleted=include_deleted,
                             updated_since=updated_since)
        num_found = self.count(source, version, query) if cursor is None else cursor.num_found
        after = None if cursor is None else DiffKey(cursor.updated_on, cursor.type, cursor.id)
        items = self.reader(source)
        returned, until, following = items.diff_end(query, after, limit)
        unsent_from = following.updated_on if following is not None else None
        if cursor is None and following is not None and until is not None:
            returned, until, unsent_from = self._end_at_a_second(items, query, returned, until,
                                                                 following)
        next_cursor = DiffCursor(until.updated_on, until.type, until.id, num_found) \
            if unsent_from is not None and until is not None else None

        def of_type(item_type: str) -> Iterator[dict[str, Any]]:
            if item_type not in types or until is None:
                return iter(())
            return items.iter_diff(replace(query, types=(item_type,)), after, until,
                                   batch_size=max(1, min(1000, returned)))

        return DiffPage(num_found, returned, next_cursor, of_type, unsent_from)

    @staticmethod
    def _end_at_a_second(items: ContentReader, query: ContentQuery, returned: int, until: DiffKey,
                         following: DiffKey) -> tuple[int, DiffKey | None, str | None]:
        """Where a first page cut at `limit` ends so that no second is split between it and the
        rest: (items, last key, start of the second the rest begins at, or None if nothing
        follows).

        Clients that continue from `Date` (the OpenMRS module sends it back as its next
        `updatedSince`, which is inclusive, at second precision) then get every item exactly once:
        the page leaves out the items of the second its cut falls in, and `Date` names that second.
        When more than `limit` items share the page's first second, the page holds all of them
        (more than `limit`): it never stops short of the first second, or such a client would
        ask for the same page for ever.
        """
        second = start_of_second(following.updated_on)
        if until.updated_on < second:  # the cut already falls between two seconds
            return returned, until, second
        count, last, _ = items.diff_end(query, None, returned, until=before(second))
        if count:
            return count, last, second
        next_second = format_time(to_datetime(second) + timedelta(seconds=1))
        count, last, _ = items.diff_end(query, None, ONE_SECOND_AT_MOST, until=before(next_second))
        _, rest, _ = items.diff_end(query, last, 1)
        return count, last, None if rest is None else start_of_second(rest.updated_on)

    def iter_content(self, source: Source, version: Version, item_type: str,
                     batch_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Every live item of one type in a version, streamed by id (for exports)."""
        query = ContentQuery(source.url, version.seq, (item_type,))
        yield from self.reader(source).iter_content(query, batch_size)

    # --- writing items --------------------------------------------------------------------
    def _put(self, caller: Caller, source: Source, item_type: str, item_id: str,
             data: dict[str, Any], retired: bool, *, expect: str, deleted: bool = False,
             update_if_exists: bool = True) -> tuple[str, dict[str, Any]]:
        """Write one item version; return (action, item).

        expect: 'new' (409 if it exists), 'existing' (404 if it does not) or 'any'. Writing the
        same content as HEAD is 'unchanged' and writes nothing, so subscribers see no noise. A
        mapping's key (from, type, target) moves with it in the same unit.
        """
        url = ocl.item_url(source.url, item_type, item_id)
        self._require_source(source)
        with self.store.transaction(source.url):
            current = self.store.items.current(url)
            live = None if current is None or current["deleted"] else current
            if expect == "new" and live is not None:
                raise Conflict(f"{item_type} '{item_id}' already exists in '{source.id}'.")
            if expect == "existing" and live is None:
                raise NotFound(f"{item_type} '{item_id}' not found in '{source.id}'.")
            if live is not None and not deleted:
                if live["data"] == data and bool(live["retired"]) == retired:
                    return "unchanged", live
                if not update_if_exists:
                    return "skipped", live
            now = now_iso()
            item = {"source": source.url, "type": item_type, "id": item_id, "url": url,
                    "deleted": deleted, "retired": retired if not deleted else False,
                    "updated_on": now,
                    "created_on": live["created_on"] if live is not None else now,
                    "created_by": live["created_by"] if live is not None else caller.username,
                    "updated_by": caller.username, "data": data if not deleted else {}}
            followed = self.collections.followed(url)
            if followed:  # where the two are not one transaction, a crash leaves this mark
                self.store.collection_entries.mark_following(url, now)
            try:
                item["seq"] = self.store.items.write(item, current["seq"] if current else None)
            except StaleHead:
                raise Conflict(f"{item_type} '{item_id}' was changed concurrently; "
                               "retry.") from None
            if item_type == MAPPING:
                self._move_mapping_key(source, live, item)
            if followed:
                self.collections.follow(url)
                self.store.collection_entries.unmark_following(url)
        action = "deleted" if deleted else ("updated" if live is not None else "created")
        self._notify("content_changed", source)
        return action, item

    def save_concept(self, caller: Caller, source: Source, payload: dict[str, Any], *,
                     expect: str = "any", update_if_exists: bool = True,
                     ) -> tuple[str, dict[str, Any]]:
        """Create or replace a concept from a validated ConceptSchema payload."""
        self.accounts.require_edit(caller, source)
        self._require_source(source)
        data = {key: payload.get(key) for key in CONCEPT_FIELDS}
        return self._put(caller, source, CONCEPT, payload["id"], data, bool(payload.get("retired")),
                         expect=expect, update_if_exists=update_if_exists)

    def update_concept(self, caller: Caller, source: Source, concept_id: str,
                       changes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Change some fields of a concept (PATCH/PUT); un-retire with retired=false."""
        self.accounts.require_edit(caller, source)
        self._require_source(source)
        current = self.get_item(source, self.head_version(source), CONCEPT, concept_id)
        data = dict(current["data"])
        data.update({key: value for key, value in changes.items() if key in CONCEPT_FIELDS})
        retired = bool(changes.get("retired", current["retired"]))
        return self._put(caller, source, CONCEPT, concept_id, data, retired, expect="existing")

    def _check_concept_ref(self, caller: Caller, own: Source, url: str | None,
                           field_name: str) -> None:
        """A concept url in a source on this server that the caller may see must name a
        concept that exists (`own`: the mapping's source, which the caller edits). A source
        they may not see is treated as one this server does not
        have (the url is kept as given, as another server's would be): whether it exists, and
        what it holds, is not theirs to learn (docs/security.md, Confidentiality)."""
        if not url:
            return
        parsed = ocl.parse_concept_url(url)
        if parsed is None:
            raise Invalid(f"{field_name} '{url}' is not a concept URL "
                          "(/orgs/ORG/sources/SOURCE/concepts/ID/).",
                          errors={field_name: ["Not a concept URL."]})
        source = (own if parsed["source_url"] == own.url  # the caller edits it: they see it
                  else self.store.sources.get(parsed["source_url"]))
        if source is None or not self.accounts.can_view(caller, source):
            return
        head = self.store.items.head(url)
        if head is None or head["deleted"]:
            raise Invalid(f"{field_name}: concept '{parsed['code']}' does not exist in "
                          f"{parsed['source_url']}.",
                          errors={field_name: [f"Concept {url} does not exist."]})

    @staticmethod
    def _mapping_key(source_url: str, data: dict[str, Any]) -> str:
        target = data.get("to_concept_url") or f"{data.get('to_source_url')}#{data.get('to_concept_code')}"
        return "|".join((source_url, data["from_concept_url"], data["map_type"], target))

    def save_mapping(self, caller: Caller, source: Source, payload: dict[str, Any], *,
                     expect: str = "any", update_if_exists: bool = True,
                     ) -> tuple[str, dict[str, Any]]:
        """Create or replace a mapping from a validated MappingSchema payload.

        A mapping without an id that matches a live mapping (same from, type and target) is that
        mapping; otherwise it gets the source's next free number, as OCL does.
        """
        self.accounts.require_edit(caller, source)
        data = {key: payload.get(key) for key in MAPPING_FIELDS}
        self._require_source(source)
        self._check_concept_ref(caller, source, data["from_concept_url"], "from_concept_url")
        self._check_concept_ref(caller, source, data.get("to_concept_url"), "to_concept_url")
        key = self._mapping_key(source.url, data)
        mapping_id = payload.get("id")
        with self.store.transaction(source.url):
            if mapping_id is None:
                mapping_id = self.store.items.mapping_for_key(key)
                if mapping_id is None:
                    mapping_id = self._next_mapping_id(source)
                    expect = "new"
            return self._put(caller, source, MAPPING, mapping_id, data,
                             bool(payload.get("retired")), expect=expect,
                             update_if_exists=update_if_exists)

    def _move_mapping_key(self, source: Source, previous: dict[str, Any] | None,
                          item: dict[str, Any]) -> None:
        """The key of a mapping's previous live version stops naming it; its new one names it."""
        def key(version: dict[str, Any] | None) -> str | None:
            if version is None or version["deleted"] or not version["data"]:
                return None
            return self._mapping_key(source.url, version["data"])

        old, new = key(previous), key(item)
        if old == new:
            return
        if old is not None:
            self.store.items.set_mapping_key(old, source.url, None)
        if new is not None:
            self.store.items.set_mapping_key(new, source.url, item["id"])

    def _next_mapping_id(self, source: Source) -> str:
        while True:
            candidate = str(self.store.sources.next_mapping_number(source.url))
            if self.store.items.head(ocl.item_url(source.url, MAPPING, candidate)) is None:
                return candidate

    def update_mapping(self, caller: Caller, source: Source, mapping_id: str,
                       changes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Change some fields of a mapping; un-retire with retired=false."""
        self.accounts.require_edit(caller, source)
        current = self.get_item(source, self.head_version(source), MAPPING, mapping_id)
        payload = dict(current["data"], id=mapping_id, retired=current["retired"])
        payload.update({key: value for key, value in changes.items()
                        if key in MAPPING_FIELDS or key == "retired"})
        if changes.get("to_concept_url"):
            payload["to_source_url"] = None
            payload["to_concept_code"] = None
        return self.save_mapping(caller, source, payload, expect="existing")

    def delete_item(self, caller: Caller, source: Source, item_type: str, item_id: str,
                    hard: bool) -> tuple[str, dict[str, Any]]:
        """Retire an item, or with hard=True delete it (a tombstone version stays for diffs)."""
        self.accounts.require_edit(caller, source)
        self._require_source(source)
        current = self.get_item(source, self.head_version(source), item_type, item_id)
        if not hard:
            return self._put(caller, source, item_type, item_id, current["data"], True,
                             expect="existing")
        return self._put(caller, source, item_type, item_id, {}, False, expect="existing",
                         deleted=True)

    def last_item(self, source: Source, version: Version) -> dict[str, Any] | None:
        """The newest item version in a version (its updated_on is the version's lastUpdated)."""
        query = ContentQuery(source.url, version.seq, include_deleted=True)
        return self.reader(source).newest(query)

    def _require_source(self, repo: Source) -> None:
        """Items are written into sources; a collection's come from its references."""
        if is_collection(repo):
            raise NotAllowed(f"Collection '{repo.id}' holds references, not items: PUT "
                             f"expressions to {repo.url}references/ instead.")


def _missing_source(item: dict[str, Any]) -> Source:
    """What renders an item whose source is gone (never expected: a source whose items a
    collection holds cannot be deleted): what its url says."""
    parsed = ocl.parse_source_url(item["source"]) or {}
    return Source(url=item["source"], id=parsed.get("source", ""),
                  repo_type=SOURCE_TYPE, owner=parsed.get("owner") or "",
                  owner_type=parsed.get("owner_type") or "",
                  owner_url=item["source"].rsplit("/sources/", 1)[0] + "/", public_access="None",
                  created_on="", updated_on="", default_locale=None)

