"""Delta packages: what changed between two released versions of a repository, as a zip in OCL's
export format (docs/exports.md, Delta packages).

`{repo}/{to}/export/?since={from}` is built, cached, probed and invalidated as an export is (an
export whose key and stamp name both versions); this module says what it holds:

- `export.json`: the `to` version's fields, then `concepts` and `mappings` holding the items
  created, changed or retired since `from`, as they are in `to` (OCL's shapes, so any export
  reader loads them), then `deleted`: the tombstones of the items deleted since `from`.
  `deleted` comes after `mappings` because the OpenMRS module's importer reads `concepts`, then
  `mappings`, and stops: it never sees the tombstones (which lack `datatype`, `concept_class`
  and `map_type`, and would break its saver), and skips any other top-level key before them.
- `manifest.json` (a second zip entry, after `export.json`, so that Java's `ZipInputStream`
  finds `export.json` first): `from` and `to` (id, url, `checksums.content`, lastUpdated),
  the counts per kind of item and kind of change, and the entry's sections.

The changes are one indexed range read per kind (the item versions, or a collection's entries,
live at `to` and written after `from`), streamed a batch at a time, so memory stays flat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..domain import Domain
from ..domain.content import is_collection, noun
from ..domain.errors import Invalid, NotFound
from ..model import CONCEPT, MAPPING, Document, Source, Version

logger = logging.getLogger(__name__)

# What a delta package holds; part of its stamp, so raising it rebuilds older files.
DELTA_FORMAT = 1
MANIFEST_ENTRY = "manifest.json"
DELETED_SECTION = "deleted"
SECTIONS = {CONCEPT: "concepts", MAPPING: "mappings"}
CHANGE_KINDS = ("created", "updated", "retired", "deleted")


def delta_base(domain: Domain, source: Source, version: Version,
               since: str) -> Version:
    """The version a delta package to `version` starts from, named by `since` (its id, or its
    url): a released version of the same repository, earlier than `version`, which must be
    released too. Invalid (400) with what is wrong otherwise."""
    what = noun(source)
    name = since.strip()
    if name.startswith("/"):
        if not name.endswith("/"):
            name += "/"
        if not name.startswith(source.url) or "/" in name[len(source.url):-1]:
            raise Invalid(f"since={since} names a version of another repository; a delta package "
                          f"starts at a released version of {what} '{source.id}'.",
                          errors={"since": ["Not a version of this repository."]})
        name = name[len(source.url):-1]
    if not name or name == "HEAD":
        raise Invalid(f"since={since or '(empty)'}: a delta package starts at a released version, "
                      "not at HEAD.", errors={"since": ["Not a released version."]})
    if not version.released:
        raise Invalid(f"Version '{version.id}' of {what} '{source.id}' is not released: "
                      "delta packages are between released versions.",
                      errors={"since": ["The target version is not released."]})
    try:
        base = domain.content.get_version(source, name)
    except NotFound:
        raise Invalid(f"since={since}: {what} '{source.id}' has no version '{name}'.",
                      errors={"since": ["Unknown version."]}) from None
    if not base.released:
        raise Invalid(f"since={since}: version '{base.id}' of {what} '{source.id}' is not "
                      "released; delta packages are between released versions.",
                      errors={"since": ["Not a released version."]})
    if base.url == version.url or base.created_on >= version.created_on:
        raise Invalid(f"since={since}: version '{base.id}' is not earlier than "
                      f"'{version.id}'; a delta package goes forward.",
                      errors={"since": ["Not earlier than the target version."]})
    return base


@dataclass
class DeltaPlan:
    """The sections of a delta's export.json, how many item versions they may hold, and the
    manifest (complete once the sections have been streamed)."""

    sections: list[tuple[str, Iterable[dict[str, Any]]]]
    total: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    manifest_fields: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """manifest.json: the fields known up front and the counts of what was written."""
        counts = {kind: dict(changes) for kind, changes in self.counts.items()}
        return {**self.manifest_fields, "counts": counts,
                "items": sum(sum(changes.values()) for changes in counts.values())}


def change_of(item: Document) -> str | None:
    """How an item changed since the delta's base (None: created and deleted in between)."""
    before = item.get("before")
    if item["deleted"]:
        return "deleted" if before is not None else None
    if before is None:
        return "created"
    return "retired" if item["retired"] and before != "retired" else "updated"


def version_summary(domain: Domain, source: Source,
                    version: Version) -> dict[str, Any]:
    """A version as the manifest names it: id, url, `checksums.content`, lastUpdated."""
    return {"id": version.id, "url": version.url,
            "checksums": {"content": domain.content.checksum(source, version)},
            "lastUpdated": version.last_updated, "created_on": version.created_on}


def plan_delta(domain: Domain, source: Source, base: Version,
               version: Version, created_on: str) -> DeltaPlan:
    """What the delta from `base` to `version` holds, read lazily from the store."""
    reader = domain.content.reader(source)
    plan = DeltaPlan(sections=[], total=reader.count_changed(source.url, base.seq,
                                                             version.seq))
    plan.counts = {section: dict.fromkeys(CHANGE_KINDS, 0) for section in SECTIONS.values()}

    def changed(kind: str, deleted: bool) -> Iterator[Document]:
        counts = plan.counts[SECTIONS[kind]]
        for item in reader.iter_changed(source.url, base.seq, version.seq, kind,
                                        deleted):
            change = change_of(item)
            if change is not None:
                counts[change] += 1
                yield item

    def tombstones() -> Iterator[Document]:
        for kind in SECTIONS:
            yield from changed(kind, deleted=True)

    plan.sections = [(SECTIONS[CONCEPT], changed(CONCEPT, False)),
                     (SECTIONS[MAPPING], changed(MAPPING, False)),
                     (DELETED_SECTION, tombstones())]
    plan.manifest_fields = {
        "type": "Delta Package", "format": DELTA_FORMAT,
        "repository": {"type": "Collection" if is_collection(source) else "Source",
                       "id": source.id, "owner": source.owner, "url": source.url},
        "from": version_summary(domain, source, base),
        "to": version_summary(domain, source, version),
        "created_on": created_on,
        "export": {"entry": "export.json",
                   "sections": [name for name, _ in plan.sections]},
    }
    return plan


def manifest_entry(plan: DeltaPlan) -> Callable[[], dict[str, bytes]]:
    """The builder's extra zip entries of a delta: manifest.json (indented, for people who open
    the zip), written after export.json."""
    def entries() -> dict[str, bytes]:
        return {MANIFEST_ENTRY: orjson.dumps(plan.manifest(), option=orjson.OPT_INDENT_2)}
    return entries
