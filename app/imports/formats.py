"""Upload formats: what a body without a Content-Type is, and an OCL export zip as OCL lines.

OCL's clients send bulk imports every way OCL accepts them: JSON lines with or without a
Content-Type (ocldev's `OclBulkImporter` sends none), CSV, and an OCL export zip (`ocl import file
x.zip`). A zip's `export.json` is read streaming and turned into the JSON lines that make that
version: the owner organization (when it does not exist yet), the source, its concepts, its
mappings, then the version itself, cut after them, so its content is the export's.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, Any

import ijson
import orjson
from ijson.common import ObjectBuilder

from ..domain.ocl import parse_source_url

logger = logging.getLogger(__name__)

JSONL, CSV, ZIP = "jsonl", "csv", "zip"
FORMATS = (JSONL, CSV, ZIP)
ZIP_MAGIC = b"PK\x03\x04"
ENTRY = "export.json"
SOURCE_FIELDS = ("name", "full_name", "description", "source_type", "default_locale",
                 "supported_locales", "public_access", "website", "custom_validation_schema",
                 "external_id", "extras")
SECTIONS = ("concepts", "mappings")


class NotAnExport(ValueError):
    """The zip is not an OCL export (no export.json, or one that is not a repository's)."""


def sniff(first: bytes) -> str:
    """The format of an upload from its first bytes: a zip, JSON lines, or else CSV."""
    if first.startswith(ZIP_MAGIC):
        return ZIP
    text = first.lstrip(b"\xef\xbb\xbf \t\r\n")
    return JSONL if text[:1] in (b"{", b"[") else CSV


def format_of(mimetype: str, filename: str | None) -> str | None:
    """The format a Content-Type or file name says; None when they say nothing (then sniff)."""
    name = (filename or "").lower()
    if mimetype in ("text/csv", "application/csv") or name.endswith(".csv"):
        return CSV
    if mimetype in ("application/zip", "application/x-zip-compressed") or name.endswith(".zip"):
        return ZIP
    if mimetype in ("application/json", "application/x-ndjson", "application/jsonl",
                    "application/jsonlines") or name.endswith((".json", ".jsonl", ".ndjson")):
        return JSONL
    return None


def export_lines(archive: IO[bytes], org_exists: Callable[[str], bool]) -> Iterator[bytes]:
    """The OCL JSON lines (each ending in a newline) that import the export in `archive`.

    NotAnExport if it is not a zip holding an export.json of a source or source version.
    """
    try:
        zipped = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise NotAnExport(f"The upload is not a readable zip ({exc}).") from None
    with zipped:
        if ENTRY not in zipped.namelist():
            raise NotAnExport(f"The zip holds no {ENTRY}: it is not an OCL export.")
        with zipped.open(ENTRY) as stream:
            try:
                yield from _lines(stream, org_exists)
            except ijson.JSONError as exc:
                raise NotAnExport(f"{ENTRY} is not valid JSON ({exc}).") from None


def _lines(stream: IO[bytes], org_exists: Callable[[str], bool]) -> Iterator[bytes]:
    header = ObjectBuilder()  # the export's top-level fields, concepts and mappings left out
    target: dict[str, Any] | None = None
    item: ObjectBuilder | None = None
    skipping = ""  # a top-level section other than concepts/mappings being passed over
    for prefix, event, value in ijson.parse(stream, use_float=True):
        section = prefix.split(".", 1)[0]
        if prefix == "" and event == "map_key" and value in (*SECTIONS, "references"):
            skipping = value
            continue
        if section in SECTIONS and skipping == section:
            if prefix == section:
                if event == "start_array" and target is None:
                    target = _target(header.value)
                    yield from (_line(record) for record in _head_records(target, org_exists))
                continue
            if prefix == f"{section}.item" and event == "start_map":
                item = ObjectBuilder()
            if item is not None:
                item.event(event, value)
                if prefix == f"{section}.item" and event == "end_map":
                    yield _line(_item_record(item.value, target or {}))
                    item = None
            continue
        if skipping and section == skipping:
            continue  # e.g. a collection's references: not imported here
        skipping = ""
        header.event(event, value)
    if target is None:
        target = _target(header.value)
        yield from (_line(record) for record in _head_records(target, org_exists))
    if target["version"] is not None:
        yield _line(target["version"])


def _line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def _target(header: Any) -> dict[str, Any]:
    """Where the export goes: its owner, source fields and (for a version) the version line."""
    if not isinstance(header, dict) or header.get("type") not in ("Source", "Source Version"):
        kind = header.get("type") if isinstance(header, dict) else None
        raise NotAnExport(f"{ENTRY} is not the export of a source or source version "
                          f"(type {kind!r}).")
    source = header.get("source") if isinstance(header.get("source"), dict) else None
    fields = source if source is not None else header
    parsed = parse_source_url(str(fields.get("url") or header.get("url") or "")) or {}
    source_id = (source or {}).get("id") or parsed.get("source") or header.get("short_code")
    owner = header.get("owner") or parsed.get("owner")
    if not source_id or not owner:
        raise NotAnExport(f"{ENTRY} does not say which source and owner it belongs to.")
    owner_type = "User" if header.get("owner_type") == "User" else "Organization"
    where = {"owner": owner, "owner_type": owner_type, "source": source_id}
    source_record = {"type": "Source", "id": source_id, **where}
    source_record.update({key: fields.get(key) for key in SOURCE_FIELDS if fields.get(key) is not None})
    source_record.pop("source", None)
    version = None
    if header.get("type") == "Source Version" and header.get("id") not in (None, "HEAD"):
        version = {"type": "Source Version", "id": header["id"], **where,
                   "description": header.get("description"),
                   "released": bool(header.get("released")),
                   "external_id": header.get("external_id"), "extras": header.get("extras") or {}}
    return {"where": where, "source": source_record, "version": version}


def _head_records(target: dict[str, Any], org_exists: Callable[[str], bool]) -> list[dict[str, Any]]:
    """The owner organization (only when it does not exist: an existing one is left as it is)
    and the source."""
    where = target["where"]
    records = []
    if where["owner_type"] == "Organization" and not org_exists(where["owner"]):
        records.append({"type": "Organization", "id": where["owner"], "name": where["owner"]})
    records.append(target["source"])
    return records


def _item_record(item: Any, target: dict[str, Any]) -> dict[str, Any]:
    """A concept or mapping of the export as a line of its source."""
    if not isinstance(item, dict):
        return {"type": None, "value": item}  # the loader reports it as a failed line
    return {**item, **target.get("where", {})}
