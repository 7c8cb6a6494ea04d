"""Atom feeds of released versions, in the shape of HL7's FHIR Syndication IG (as NCTS and
Ontoserver read it): one entry per released version, its export as the `alternate` link with
`length` and `ncts:sha256Hash` once it is built, delta packages from earlier releases as
`related` links (with their own `length` and `ncts:sha256Hash` once built),
`ncts:contentItemIdentifier`/`ncts:contentItemVersion` naming the repository and the version.

Ids are `urn:uuid:` URNs derived (uuid5) from the repository's or version's path and creation
time: stable across requests, hosts and restarts, and different for a version deleted and cut
again under the same id. `updated` of an entry is when it last changed in a way a consumer cares
about: the version's own change, or its export or a delta package becoming ready (the entry
gains a hash then).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ..model import SOURCE_TYPE, ExportFile, Source, Version

ATOM = "http://www.w3.org/2005/Atom"
NCTS = "http://ns.electronichealth.net.au/ncts/syndication/asf/extensions/1.0.0"
NCTS_PROFILE = "http://ns.electronichealth.net.au/ncts/syndication/asf/profile/1.0.0"
TERMSYNC = "urn:x-termsync:syndication:1"
CATEGORY_SCHEME = f"{TERMSYNC}:content-type"
ID_NAMESPACE = uuid.UUID("7b0f4f9c-5a8e-4d0e-9a57-2f1d3c6b8e41")  # termsync's, for uuid5 ids
FEED_TYPE = "application/atom+xml"
DELTA_LINKS = 3  # delta packages linked from each entry: from the previous releases, newest first

ET.register_namespace("", ATOM)
ET.register_namespace("ncts", NCTS)
ET.register_namespace("termsync", TERMSYNC)


def stable_id(*parts: str) -> str:
    """A `urn:uuid:` id derived from what names a thing (never random, never the host)."""
    return f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, chr(10).join(parts))}"


@dataclass
class DeltaLink:
    """A delta package from an earlier release, and its file once built (None before)."""

    since: str  # the earlier released version's id
    file: ExportFile | None = None


@dataclass
class FeedEntry:
    """One released version in a feed, with what is known of its export and deltas."""

    repo: Source
    version: Version
    export_state: str  # READY | PENDING | BUILDING | FAILED | NONE
    export_file: ExportFile | None
    deltas: list[DeltaLink] = field(default_factory=list)  # from earlier releases, newest first

    @property
    def updated(self) -> str:
        """When the entry last changed: the version's change or a build of its export or of
        one of its delta packages."""
        stamps = [self.version.updated_on or self.version.created_on]
        files = [self.export_file, *(delta.file for delta in self.deltas)]
        stamps.extend(file.created_on for file in files if file is not None)
        return max(stamps)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {key: value for key, value in attributes.items()})
    if text is not None:
        element.text = text
    return element


def _entry(feed: ET.Element, origin: str, entry: FeedEntry) -> None:
    repo, version = entry.repo, entry.version
    repo_url = f"{origin}{repo.url}"
    version_url = f"{repo_url}{version.id}/"
    element = _sub(feed, f"{{{ATOM}}}entry")
    _sub(element, f"{{{ATOM}}}id", stable_id("version", version.url, version.created_on))
    kind = (repo.repo_type or SOURCE_TYPE).lower()
    _sub(element, f"{{{ATOM}}}title",
         f"{repo.full_name or repo.name or repo.id} {version.id}")
    _sub(element, f"{{{ATOM}}}updated", entry.updated)
    _sub(element, f"{{{ATOM}}}published", version.created_on)
    _sub(element, f"{{{ATOM}}}summary", version.description
         or f"Release {version.id} of the {kind} {repo.owner}/{repo.id}, as an OCL "
            "export (a zip holding export.json).")
    author = _sub(element, f"{{{ATOM}}}author")
    _sub(author, f"{{{ATOM}}}name", str(repo.owner))
    _sub(author, f"{{{ATOM}}}uri", f"{origin}{repo.owner_url}")
    _sub(element, f"{{{ATOM}}}category", term="OCL_EXPORT", label="OCL export (zip)",
         scheme=CATEGORY_SCHEME)
    _sub(element, f"{{{ATOM}}}category", term=f"OCL_{kind.upper()}",
         label=f"OCL {kind}", scheme=CATEGORY_SCHEME)
    file = entry.export_file
    if file is not None:
        # The immutable, content-addressed file: the bytes the hash and length describe.
        _sub(element, f"{{{ATOM}}}link", rel="alternate", type="application/zip",
             href=f"{repo_url}exports/{file.sha256}.zip", length=str(file.size),
             title=f"Export of {version.id}",
             **{f"{{{NCTS}}}sha256Hash": file.sha256, f"{{{TERMSYNC}}}exportState": "READY"})
    else:
        # Not built yet (it is queued on release): the export's URL answers 208 while it builds;
        # this entry gains length and sha256 (and a new `updated`) once it is ready.
        _sub(element, f"{{{ATOM}}}link", rel="alternate", type="application/zip",
             href=f"{version_url}export/", title=f"Export of {version.id} (not built yet)",
             **{f"{{{TERMSYNC}}}exportState": entry.export_state})
    _sub(element, f"{{{ATOM}}}link", rel="related", type="application/json", href=version_url,
         title=f"Version {version.id}")
    for delta in entry.deltas[:DELTA_LINKS]:
        # Once built, the package's length and sha256 (the bytes its URL answers); before, the
        # URL alone, which builds it on a POST and answers 208 meanwhile.
        built = {} if delta.file is None else {
            "length": str(delta.file.size), f"{{{NCTS}}}sha256Hash": delta.file.sha256}
        _sub(element, f"{{{ATOM}}}link", rel="related", type="application/zip",
             href=f"{version_url}export/?since={delta.since}",
             title=f"Changes from {delta.since} to {version.id} (delta package)",
             **{f"{{{TERMSYNC}}}since": delta.since}, **built)
    _sub(element, f"{{{NCTS}}}contentItemIdentifier", repo_url)
    _sub(element, f"{{{NCTS}}}contentItemVersion", version_url)
    if version.last_updated:
        _sub(element, f"{{{TERMSYNC}}}lastUpdated", version.last_updated)
    if version.checksum:
        _sub(element, f"{{{TERMSYNC}}}contentChecksum", version.checksum)


def render_feed(*, feed_id: str, title: str, subtitle: str | None, self_url: str,
                alternate_url: str, author: str, origin: str, entries: list[FeedEntry],
                fallback_updated: str) -> tuple[bytes, str]:
    """The Atom document (UTF-8 bytes) of these entries, newest first, and its `updated`
    (stored times are RFC 3339 as they are)."""
    feed = ET.Element(f"{{{ATOM}}}feed")
    _sub(feed, f"{{{ATOM}}}id", feed_id)
    _sub(feed, f"{{{ATOM}}}title", title)
    if subtitle:
        _sub(feed, f"{{{ATOM}}}subtitle", subtitle)
    updated = max([entry.updated for entry in entries], default=fallback_updated)
    _sub(feed, f"{{{ATOM}}}updated", updated)
    _sub(feed, f"{{{ATOM}}}generator", "termsync")
    _sub(feed, f"{{{ATOM}}}link", rel="self", type=FEED_TYPE, href=self_url)
    _sub(feed, f"{{{ATOM}}}link", rel="alternate", type="application/json", href=alternate_url)
    feed_author = _sub(feed, f"{{{ATOM}}}author")
    _sub(feed_author, f"{{{ATOM}}}name", author)
    _sub(feed, f"{{{NCTS}}}atomSyndicationFormatProfile", NCTS_PROFILE)
    for entry in entries:
        _entry(feed, origin, entry)
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True)), updated
