"""An OCL export zip as the OCL JSON lines that import it, read within bounds.

A zip's `export.json` is read streaming and turned into the lines that make that version: the
owner organization (when it does not exist yet), the source, its concepts, its mappings, then the
version itself, cut after them, so its content is the export's.

The zip is hostile until read (docs/security.md, Input): its directory is bounded before
Python's zipfile reads it whole; export.json's expanded size is bounded by its declared size and
again as it is decompressed; each item (and each top-level field) is bounded in bytes before the
parser builds it, and in nesting depth; the parser reads 1 MiB at a time, because it scans a token
that spans reads from its start at every read. The work is therefore linear in what is read,
and what is read is bounded. Values the parser cannot carry as they were (a lone surrogate escape
it would turn into '?', a number beyond a double it would refuse) fail their own item only.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import IO, Any

import ijson
import orjson
from ijson.common import ObjectBuilder

from ..domain import values
from ..domain.loader import UNREADABLE
from ..domain.ocl import parse_source_url

logger = logging.getLogger(__name__)

ENTRY = "export.json"
SOURCE_FIELDS = ("name", "full_name", "description", "source_type", "default_locale",
                 "supported_locales", "public_access", "website", "custom_validation_schema",
                 "external_id", "extras")
SECTIONS = ("concepts", "mappings")
# The parser (yajl) scans a token that spans reads again from its start at every read: a
# string of n bytes costs n * n / READ_SIZE. Reads of 1 MiB keep an item of the largest size
# (`max_item`, 4 MiB by default) to a few scans, so that the work stays linear in the input.
READ_SIZE = 1 << 20
# One item, or the export's own fields, nested deeper than this is not built (a payload is
# checked to values.MAX_DEPTH levels; this leaves room for the item's own levels).
MAX_ITEM_DEPTH = values.MAX_DEPTH + 8
# An export.json of up to this many bytes may expand any number of times its zipped size.
RATIO_FLOOR = 64 << 20
ZIP_MAX_ENTRIES = 1000  # an OCL export holds one entry; the directory is read whole
ZIP_MAX_DIRECTORY = 1 << 20
_EOCD, _ZIP64_LOCATOR, _ZIP64_EOCD = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
STARTS, ENDS = ("start_map", "start_array"), ("end_map", "end_array")


class NotAnExport(ValueError):
    """The zip is not an OCL export (no export.json, or one that is not a repository's)."""


class ExportTooLarge(ValueError):
    """An export zip expands, or one of its items is, larger than an import takes."""


def export_lines(archive: IO[bytes], org_exists: Callable[[str], bool], *,
                 max_expanded: int, max_ratio: int, max_item: int) -> Iterator[bytes]:
    """The OCL JSON lines (each ending in a newline) that import the export in `archive`.

    NotAnExport if it is not a zip holding an export.json of a source or source version;
    ExportTooLarge, before it is all read or any item is built whole, if export.json expands to
    more than `max_expanded` bytes, or past its first RATIO_FLOOR bytes to more than `max_ratio`
    times its zipped size (so the work is linear in the bytes uploaded, not only in those
    expanded), or one of its items (or top-level fields) is larger than `max_item` bytes.
    """
    _check_directory(archive)
    try:
        zipped = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise NotAnExport(f"The upload is not a readable zip ({exc}).") from None
    with zipped:
        try:
            info = zipped.getinfo(ENTRY)
        except KeyError:
            raise NotAnExport(f"The zip holds no {ENTRY}: it is not an OCL export.") from None
        if info.file_size > max_expanded:
            raise ExportTooLarge(f"{ENTRY} expands to {info.file_size} bytes, more than the "
                                 f"{max_expanded} an import accepts; split the export.")
        by_ratio = max(RATIO_FLOOR, max_ratio * info.compress_size)
        if info.file_size > by_ratio:
            raise ExportTooLarge(f"{ENTRY} expands to {info.file_size} bytes from "
                                 f"{info.compress_size}, more than {max_ratio} times its size "
                                 "zipped: an export is not compressed that much.")
        with zipped.open(info) as stream:
            lines = ExportLines(org_exists)
            reader = BoundedReader(stream, min(max_expanded, by_ratio), max_item,
                                   lines.lone_surrogate)
            try:
                yield from lines.read(reader)
            except (ijson.JSONError, UnicodeDecodeError, zipfile.BadZipFile, zlib.error,
                    EOFError) as exc:  # JSON text is UTF-8: other bytes make no JSON
                raise NotAnExport(f"{ENTRY} is not valid JSON or is damaged ({exc}).") from None


def _check_directory(archive: IO[bytes]) -> None:
    """Refuse a zip whose central directory is larger than an export's could be (Python's
    zipfile reads it whole: six million empty entries fit in 512 MiB and take gigabytes)."""
    archive.seek(0, 2)
    size = archive.tell()
    archive.seek(max(0, size - 22 - 65535))
    tail = archive.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        archive.seek(0)
        return  # not a zip: zipfile says so
    entries = int.from_bytes(tail[at + 10:at + 12], "little")
    directory = int.from_bytes(tail[at + 12:at + 16], "little")
    if at >= 20 and tail[at - 20:at - 16] == _ZIP64_LOCATOR:
        archive.seek(int.from_bytes(tail[at - 12:at - 4], "little"))
        record = archive.read(56)
        if record[:4] == _ZIP64_EOCD and len(record) == 56:
            entries = int.from_bytes(record[32:40], "little")
            directory = int.from_bytes(record[40:48], "little")
    archive.seek(0)
    if entries > ZIP_MAX_ENTRIES or directory > ZIP_MAX_DIRECTORY:
        raise NotAnExport(f"The zip lists {entries} entries in {directory} bytes: an OCL export "
                          f"has one ({ENTRY}).")


# A \uD800-\uDFFF escape in JSON text; whether it is one (an odd number of backslashes) and
# whether it is lone (not a high surrogate followed by a low one) is decided around each match.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LOW_ESCAPE = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_HOLD = 12  # bytes kept back at the end of a read: a pair of escapes is read together
_BACKSLASH = 0x5C


class BoundedReader:
    """export.json as the JSON parser reads it, counted as it is decompressed: ExportTooLarge
    once it passes `max_bytes` in all, or `max_record` bytes since the last record boundary
    (the start of an item or a top-level field, `boundary`), before the parser builds more.

    The parser reads ahead (`READ_SIZE`), so a record is measured from a point at most that far
    past its start: a record is refused by the time it is `max_record` + `READ_SIZE` long.

    A lone surrogate escape (the parser would read it as '?') ends a read just before it: the
    parser reads again only once it has handed over every event before it, so `on_lone` is
    called then, while the item holding it is the one being built.
    """

    def __init__(self, stream: IO[bytes], max_bytes: int, max_record: int,
                 on_lone: Callable[[str], None]) -> None:
        self.stream = stream
        self.max_bytes = max_bytes
        self.max_record = max_record
        self.on_lone = on_lone
        self.count = 0  # bytes decompressed so far
        self.record_start = 0
        self.record = f"The start of {ENTRY}"
        self.pending = b""  # decompressed, not yet handed to the parser
        self.scanned = 0  # escapes in pending before this offset are dealt with
        self.returned_tail = b""  # the last bytes handed over (backslashes before an escape)
        self.lone_next: str | None = None  # a lone escape starts `pending`: report it first
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        """Up to READ_SIZE decompressed bytes, never past a lone surrogate escape."""
        if size == 0:
            return b""
        if self.lone_next is not None:
            escape, self.lone_next = self.lone_next, None
            self._report_lone(escape)
        while not self.ended and len(self.pending) <= _HOLD:
            data = self.stream.read(READ_SIZE)
            if not data:
                self.ended = True
                break
            self._count(len(data))
            self.pending += data
        end = len(self.pending) if self.ended else len(self.pending) - _HOLD
        lone = self._first_lone(end)
        while lone == 0:  # everything before it was handed over: report it now
            self._report_lone(self.pending[:6].decode("ascii"))
            lone = self._first_lone(end)
        if lone is not None:
            end = lone
            self.lone_next = self.pending[lone:lone + 6].decode("ascii")
        data, self.pending = self.pending[:end], self.pending[end:]
        self.scanned = max(0, self.scanned - end) if lone is None else 6
        self.returned_tail = (self.returned_tail + data)[-64:]
        return data

    def _report_lone(self, escape: str) -> None:
        """Report the lone escape that starts `pending`, then make it U+FFFD: its item fails
        anyway, and the parser would pass a lone low surrogate on as bytes that are not UTF-8."""
        self.on_lone(escape)
        self.pending = b"\\ufffd" + self.pending[6:]
        self.scanned = 6

    def _count(self, size: int) -> None:
        self.count += size
        if self.count > self.max_bytes:
            raise ExportTooLarge(f"{ENTRY} expands to more than {self.max_bytes} bytes, the most "
                                 "an import accepts; split the export.")
        if self.count - self.record_start > self.max_record:
            raise ExportTooLarge(f"{self.record} is larger than {self.max_record} bytes, the "
                                 "largest item an import accepts.")

    def _first_lone(self, end: int) -> int | None:
        """Where in `pending` (before `end`) the first lone surrogate escape starts, if any."""
        position = self.scanned
        while True:
            match = _SURROGATE_ESCAPE.search(self.pending, position)
            if match is None or match.start() >= end:
                return None
            start = position = match.start()
            if not self._escaped(start):
                position += 1  # `\\u...`: a backslash, then text
                continue
            if self.pending[start + 3] in b"89abAB":  # a high surrogate: a pair, or lone
                if _LOW_ESCAPE.match(self.pending, start + 6):
                    position = start + 12
                    self.scanned = max(self.scanned, position)
                    continue
            return start

    def _escaped(self, start: int) -> bool:
        """Whether the backslash at `start` begins an escape (an even run of backslashes, or
        none, before it)."""
        run = 0
        at = start - 1
        while at >= 0 and self.pending[at] == _BACKSLASH:
            run, at = run + 1, at - 1
        if at < 0:
            tail = self.returned_tail
            run += len(tail) - len(tail.rstrip(b"\\"))
        return run % 2 == 0

    def boundary(self, record: str) -> None:
        """A new record starts here (so far as the parser has read)."""
        self.record_start = self.count
        self.record = record


class ExportLines:
    """The lines of one export.json, from the parser's events (see `export_lines`)."""

    def __init__(self, org_exists: Callable[[str], bool]) -> None:
        self.org_exists = org_exists
        self.header = ObjectBuilder()  # the export's top-level fields, sections left out
        self.header_depth = 0
        self.key = ""  # the top-level field being read
        self.section = ""  # a top-level array being read item by item
        self.item = ItemBuilder()

    def read(self, reader: BoundedReader) -> Iterator[bytes]:
        """Yield the lines as the parser reads `reader`."""
        target: dict[str, Any] | None = None
        number = 0  # of the item of `section` being read
        for prefix, event, value in ijson.parse(reader, buf_size=READ_SIZE):
            if type(value) is Decimal:  # every non-integer: read as the standard library does
                value = float(value)
            section = self.section
            if prefix == "" and event == "map_key":
                reader.boundary(f"The field {value!r} of {ENTRY}")
                self.key, number = value, 0
                self.section = value if value in (*SECTIONS, "references") else ""
                if self.section:
                    continue
            elif section and (prefix == section or prefix.startswith(section + ".")):
                if prefix == section:
                    if event == "start_array" and section in SECTIONS and target is None:
                        target = _target(self.header.value)
                        yield from (_line(record) for record in
                                    _head_records(target, self.org_exists))
                    continue
                # The item's own events (its keys have the item's prefix too): it starts (or
                # is a plain value), it ends.
                at_item = prefix == section + ".item" and event != "map_key"
                if at_item and event not in ENDS:
                    number += 1
                    reader.boundary(f"Item {number} of {section!r}")
                    self.item.start(f"Item {number} of {section!r}")
                if section in SECTIONS:  # a collection's references are not imported here
                    built = self.item.event(event, value, ends_item=at_item and event not in STARTS)
                    if built is not None:
                        yield _item_line(built, target or {})
                if at_item and event in ENDS:
                    reader.boundary(f"The text after item {number} of {section!r}")
                    self.item.name = ""
                continue
            self.section = ""
            self.header_depth += event in STARTS
            self.header_depth -= event in ENDS
            if self.header_depth > MAX_ITEM_DEPTH:
                raise NotAnExport(f"{ENTRY} nests its own fields deeper than {MAX_ITEM_DEPTH} "
                                  "levels.")
            self.header.event(event, value)
        if target is None:
            target = _target(self.header.value)
            yield from (_line(record) for record in _head_records(target, self.org_exists))
        if target["version"] is not None:
            yield _line(target["version"])

    def lone_surrogate(self, escape: str) -> None:
        """The text being read holds a lone surrogate escape: its item fails (an export's own
        field refuses the export)."""
        if self.section in SECTIONS and self.item.name:
            self.item.fail(f"{self.item.name} holds the lone surrogate escape {escape} (near "
                           f"its field {self.item.key!r}), which is not Unicode text.")
        elif not self.section:
            raise NotAnExport(f"The field {self.key!r} of {ENTRY} holds the lone surrogate "
                              f"escape {escape}, which is not Unicode text.")


class ItemBuilder:
    """Builds one item of a section at a time from parser events, as far as it can be carried:
    an item nested too deeply is not built, and becomes a line the loader reports as failed."""

    def __init__(self) -> None:
        self.name = ""  # "Item 3 of 'concepts'" while one is being read
        self.key = ""  # the last key read in it
        self.builder = ObjectBuilder()
        self.depth = 0
        self.problem: str | None = None
        self.inexact = False  # holds a float JSON cannot carry (1e999 read as infinity)

    def start(self, name: str) -> None:
        """A new item, called `name` in messages, starts."""
        self.name, self.key, self.builder, self.depth = name, "", ObjectBuilder(), 0
        self.problem, self.inexact = None, False

    def fail(self, problem: str) -> None:
        """The item cannot be imported: stop building it, report `problem` at its end."""
        if self.problem is None:
            self.problem = problem

    def event(self, event: str, value: Any, ends_item: bool) -> Any:
        """Feed one event of the item; at its end, the item (and whether it is inexact) or the
        line that reports why it cannot be imported."""
        self.depth += event in STARTS
        if self.depth > MAX_ITEM_DEPTH:
            self.fail(f"{self.name} is nested deeper than {MAX_ITEM_DEPTH} levels.")
        if event == "map_key":
            self.key = value
        elif type(value) is float and values.number_problem(value):
            self.inexact = True
        if self.problem is None:
            self.builder.event(event, value)
        self.depth -= event in ENDS
        if not ends_item:
            return None
        if self.problem is not None:
            return {UNREADABLE: self.problem}
        if not isinstance(self.builder.value, dict):
            return {UNREADABLE: f"{self.name} is not an object."}
        return self.builder.value, self.inexact


def _item_line(built: Any, target: dict[str, Any]) -> bytes:
    """An item of the export as a line of its source (or the line that reports it failed)."""
    if isinstance(built, dict):
        return _line(built)
    record, inexact = built
    return _line({**record, **target.get("where", {})}, inexact)


def _line(record: dict[str, Any], inexact: bool = False) -> bytes:
    """A record as one JSON line. orjson writes what it can carry exactly; anything else (an
    integer past 64 bits, a float read as infinity) is written by the standard library as it
    came, for the loader to refuse naming the field."""
    if not inexact:
        try:
            return orjson.dumps(record) + b"\n"
        except TypeError:  # orjson.JSONEncodeError
            pass
    return json.dumps(record, ensure_ascii=True, allow_nan=True).encode() + b"\n"


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
