"""The line-level OCL loader: one JSON object per line, applied in order, a result per line.

A bad line never stops the load: it gets a result with status 'failed' and a message a curator
understands. The bulk-import job wraps this function; the demo and the CLI call it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from marshmallow import ValidationError

from ..model import COLLECTION_TYPE, CONCEPT, MAPPING, SOURCE_TYPE, Source
from ..store.overlay import Overlay
from . import ocl, values
from .accounts import OWNER_KINDS, Accounts, Caller, Owner
from .collections import ADDED, EXISTS, check_cascade
from .content import Content
from .errors import DomainError, Forbidden, NotFound, Unauthorized
from .payloads import (
    CollectionSchema,
    ConceptSchema,
    MappingSchema,
    OrganizationSchema,
    ReferenceLineSchema,
    SourceSchema,
    VersionSchema,
)

logger = logging.getLogger(__name__)

LINE_TYPES = ("Organization", "Source", "Source Version", "Concept", "Mapping", "Collection",
              "Collection Version", "Reference")
ACTIONS = ("created", "updated", "unchanged", "skipped", "failed")
_SCHEMAS = {"Organization": OrganizationSchema(), "Source": SourceSchema(),
            "Source Version": VersionSchema(), "Concept": ConceptSchema(),
            "Mapping": MappingSchema(), "Collection": CollectionSchema(),
            "Collection Version": VersionSchema(), "Reference": ReferenceLineSchema()}
REPO_LINES = ("Organization", "Source", "Source Version", "Collection", "Collection Version")
# A line that stands for an input record that could not be carried as it was (an item of an
# export zip nested too deeply, or not an object): the key holds why, and the line fails with it.
UNREADABLE = "__termsync_unreadable__"


@dataclass
class LineResult:
    """What happened to one input line."""

    line: int
    type: str | None
    url: str | None
    action: str
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The result as stored: messages that quote the line's bad text keep it escaped."""
        return {"line": self.line, "type": values.printable(self.type), "url": self.url,
                "action": self.action, "errors": values.printable(self.errors)}


@dataclass
class Target:
    """The source that lines without owner/source (the older CIEL line format) go into."""

    owner_kind: str  # 'orgs' or 'users'
    owner_id: str
    source_id: str


def flatten_errors(messages: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested error dict as 'field: message' lines."""
    if isinstance(messages, dict):
        lines: list[str] = []
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            lines.extend(flatten_errors(value, "" if key == "_schema" else name))
        return lines
    if isinstance(messages, list):
        out: list[str] = []
        for message in messages:
            out.extend(flatten_errors(message, prefix))
        return out
    return [f"{prefix}: {messages}" if prefix else str(messages)]


class Loader:
    """Applies OCL lines through the content domain, as one caller.

    A dry run applies them through the same domain over an overlay of the store, whose writes stay
    in this loader's memory: later lines see what earlier ones would have written.
    """

    def __init__(self, content: Content, caller: Caller, *, update_if_exists: bool = False,
                 dry_run: bool = False, target: Target | None = None) -> None:
        if dry_run:
            overlay = Overlay(content.store)
            content = Content(overlay, Accounts(overlay))
        self.content = content
        self.accounts = content.accounts
        self.caller = caller
        self.update_if_exists = update_if_exists
        self.target = target
        # Owners and sources looked up for earlier lines (most lines of a file name the same
        # ones); forgotten whenever a line writes an org, a source or a version.
        self._owners: dict[tuple[str, str], Owner] = {}
        self._sources: dict[str, Source] = {}

    def load(self, lines: Iterable[tuple[int, str]]) -> Iterator[LineResult]:
        """Apply numbered lines in order; yield one result per non-blank line."""
        for number, text in lines:
            if not text.strip():
                continue
            yield self.load_line(number, text)

    def load_line(self, number: int, text: str) -> LineResult:
        """Apply one line; never raises for bad input."""
        try:
            record = values.loads(text)
        except values.NotJSON as exc:
            return LineResult(number, None, None, "failed", [f"Line is not valid JSON: {exc}"])
        if not isinstance(record, dict):
            return LineResult(number, None, None, "failed",
                              ["Line must be a JSON object (one resource per line)."])
        if isinstance(record.get(UNREADABLE), str):
            return LineResult(number, None, None, "failed", [record[UNREADABLE]])
        where = _where_problems(record)
        if where:
            return LineResult(number, None, None, "failed", where)
        line_type = record.get("type") or self._infer_type(record)
        if line_type not in LINE_TYPES:
            message = (f"Unknown type {record['type']!r}" if record.get("type") else "Missing 'type'")
            return LineResult(number, None, None, "failed",
                              [f"{message}: expected one of {', '.join(LINE_TYPES)}."])
        try:
            payload = _SCHEMAS[line_type].load(record)
        except ValidationError as exc:
            return LineResult(number, line_type, None, "failed", flatten_errors(exc.messages))
        try:
            action, url = self._apply(line_type, record, payload)
        except Unauthorized as exc:
            return LineResult(number, line_type, None, "failed", [f"Not authorized: {exc.message}"])
        except Forbidden as exc:
            return LineResult(number, line_type, None, "failed", [f"Forbidden: {exc.message}"])
        except DomainError as exc:
            return LineResult(number, line_type, None, "failed", [exc.message])
        return LineResult(number, line_type, url, action)

    def _infer_type(self, record: dict[str, Any]) -> str | None:
        """Older line formats have no 'type': inferable only when the job names the source."""
        if self.target is None:
            return None
        if "map_type" in record:
            return MAPPING
        if "concept_class" in record or "names" in record:
            return CONCEPT
        return None

    # --- per type -------------------------------------------------------------------------
    def _apply(self, line_type: str, record: dict[str, Any],
               payload: dict[str, Any]) -> tuple[str, str | None]:
        if line_type in REPO_LINES:
            self._owners.clear()
            self._sources.clear()
        if line_type == "Organization":
            return self._organization(payload)
        if line_type == "Collection":
            return self._source(self._owner(record), payload, COLLECTION_TYPE)
        if line_type in ("Collection Version", "Reference"):
            collection = self._collection_for(record)
            if line_type == "Reference":
                return self._references(collection, payload)
            return self._version(collection, payload)
        if line_type == "Source":
            return self._source(self._owner(record), payload)
        source = self._source_for(record)
        if line_type == "Source Version":
            return self._version(source, payload)
        save = self.content.save_concept if line_type == CONCEPT else self.content.save_mapping
        action, item = save(self.caller, source, payload, update_if_exists=self.update_if_exists)
        return action, item["url"]

    def _organization(self, payload: dict[str, Any]) -> tuple[str, str]:
        url = f"/orgs/{payload['id']}/"
        existing = self.accounts.store.orgs.get(payload["id"])
        if existing is not None and not self.accounts.can_see_org(self.caller, existing):
            existing = None  # its id is taken all the same: create_org says so, as POST /orgs/
        if existing is None:
            self.accounts.create_org(self.caller, payload)
            # The creator is the org's first member: the lines that follow may write into it.
            self.caller = replace(self.caller, orgs=self.caller.orgs | {payload["id"]})
            return "created", url
        changes = {key: payload.get(key) for key in ("name", "company", "website", "public_access")
                   if payload.get(key) != existing.get(key)}
        if not changes:
            return "unchanged", url
        if not self.update_if_exists:
            return "skipped", url
        self.accounts.require_owner(self.caller, Owner("Organization", payload["id"]))
        if "public_access" in changes:
            self.content.collections.check_org_access(self.caller, payload["id"],
                                                      changes["public_access"] or "View")
        self.accounts.store.orgs.update(payload["id"], changes)
        return "updated", url

    def _owner(self, record: dict[str, Any]) -> Owner:
        if self.target is not None and not record.get("owner"):
            kind, owner_id = self.target.owner_kind, self.target.owner_id
        else:
            if not record.get("owner"):
                raise NotFound("Missing 'owner': which organization or user owns this?")
            owner_id = str(record["owner"])
            kind = "users" if record.get("owner_type") == "User" else "orgs"
        known = self._owners.get((kind, owner_id))
        if known is not None:
            return known
        owner_doc = (self.accounts.store.orgs.get(owner_id) if kind == "orgs"
                     else self.accounts.store.users.get(owner_id))
        if kind == "orgs" and owner_doc is not None \
                and not self.accounts.can_see_org(self.caller, owner_doc):
            owner_doc = None  # a private org is missing to outsiders, as at its own URL
        if owner_doc is None:
            raise NotFound(f"{OWNER_KINDS[kind]} '{owner_id}' does not exist.")
        owner = Owner(OWNER_KINDS[kind], owner_id, owner_doc.get("public_access", "View"))
        self._owners[(kind, owner_id)] = owner
        return owner

    def _source_for(self, record: dict[str, Any]) -> Source:
        """The source a concept, mapping or version line goes into (404 if the caller cannot
        see it)."""
        owner = self._owner(record)
        source_id = record.get("source") if record.get("owner") or self.target is None \
            else self.target.source_id
        if not source_id:
            raise NotFound("Missing 'source': which source does this belong to?")
        url = ocl.source_url(owner.url, source_id)
        source = self._sources.get(url) or self.accounts.store.sources.get(url)
        if source is None or not self.accounts.can_view(self.caller, source):
            raise NotFound(f"Source '{source_id}' of '{owner.id}' does not exist.")
        self._sources[url] = source
        return source

    def _collection_for(self, record: dict[str, Any]) -> Source:
        """The collection a Collection Version or Reference line names (OCL: owner, owner_type
        and collection, or collection_url)."""
        url = record.get("collection_url")
        if isinstance(url, str) and url:
            url = url if url.endswith("/") else url + "/"
        else:
            if not record.get("collection"):
                raise NotFound("Missing 'collection': which collection does this belong to?")
            url = f"{self._owner(record).url}collections/{record['collection']}/"
        collection = self._sources.get(url) or self.accounts.store.sources.get(url)
        if collection is None or collection.repo_type != COLLECTION_TYPE \
                or not self.accounts.can_view(self.caller, collection):
            raise NotFound(f"Collection {url} does not exist.")
        self._sources[url] = collection
        return collection

    def _references(self, collection: Source,
                    payload: dict[str, Any]) -> tuple[str, str]:
        results = self.content.collections.add_references(
            self.caller, collection, payload["data"]["expressions"],
            check_cascade(payload.get("cascade")))
        failed = [f"{result.expression}: {result.message}" for result in results
                  if result.result not in (ADDED, EXISTS)]
        if failed:
            added = sum(result.result == ADDED for result in results)
            raise DomainError(f"{added} reference(s) added; these were not: {'; '.join(failed)}")
        if any(result.result == ADDED for result in results):
            return "created", collection.url
        return "unchanged", collection.url

    def _source(self, owner: Owner, payload: dict[str, Any],
                kind: str = SOURCE_TYPE) -> tuple[str, str]:
        collection = kind == COLLECTION_TYPE
        url = f"{owner.url}{'collections' if collection else 'sources'}/{payload['id']}/"
        existing = self.accounts.store.sources.get(url)
        if existing is not None and not self.accounts.can_view(self.caller, existing):
            existing = None  # creating it is refused as for a missing one: not their owner
        if existing is None:
            create = self.content.create_collection if collection else self.content.create_source
            create(self.caller, owner, payload)
            return "created", url
        keys = ("name", "full_name", "description", "default_locale", "supported_locales",
                "public_access", "website", "custom_validation_schema",
                *(("collection_type", "canonical_url") if collection else ("source_type",)))
        changes = {key: payload.get(key) for key in keys
                   if payload.get(key) is not None and payload.get(key) != ocl.repo_field(existing, key)}
        if not changes:
            return "unchanged", url
        if not self.update_if_exists:
            return "skipped", url
        self.content.update_source(self.caller, existing, changes)
        return "updated", url

    def _version(self, source: Source, payload: dict[str, Any]) -> tuple[str, str]:
        url = f"{source.url}{payload['id']}/"
        existing = self.accounts.store.versions.get(url)
        if existing is None:
            self.content.create_version(self.caller, source, payload)
            return "created", url
        changes = {key: payload[key] for key in ("description", "released")
                   if payload.get(key) != getattr(existing, key)}
        if not changes:
            return "unchanged", url
        if not self.update_if_exists:
            return "skipped", url
        self.content.update_version(self.caller, source, existing, changes)
        return "updated", url


# Fields of a line that say where it goes (looked up, never stored as they are).
WHERE_FIELDS = ("type", "owner", "owner_type", "source", "collection", "collection_url")


def _where_problems(record: dict[str, Any]) -> list[str]:
    """Why the fields that say where a line goes cannot be looked up: each is text (an owner or
    a source may be a number) without control characters or lone surrogates."""
    found = []
    for key in WHERE_FIELDS:
        value = record.get(key)
        if value is None or (type(value) is int and key != "type"):
            continue
        problem = values.line_problem(value) if isinstance(value, str) else "Must be text."
        if problem is not None:
            found.append(f"{key}: {problem}")
    return found


def numbered_lines(stream: Iterable[str | bytes]) -> Iterator[tuple[int, str]]:
    """Number the lines of a text or binary stream from 1, decoding UTF-8 (BOM tolerated)."""
    for number, raw in enumerate(stream, start=1):
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace")
        elif number == 1:
            raw = raw.lstrip("\ufeff")
        yield number, raw
