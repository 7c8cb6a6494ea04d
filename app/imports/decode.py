"""Records of a stored upload as units of work: JSON lines, or OCL CSV rows turned into OCL lines.

A unit knows where it ends (byte offset and physical line), so that a job taken over by another
worker resumes right after its last committed unit; a resumed CSV job reads its header again.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .csvformat import row_records
from .store import UploadStore


@dataclass
class Unit:
    """One input record (a JSON line or a CSV row): its line, its OCL lines, where it ends.

    A record that cannot be read at all (bytes that are not UTF-8, a row wider than its header)
    carries the reason in `error` instead; it becomes one failed result.
    """

    line: int
    texts: list[str]
    end_offset: int
    end_line: int
    error: str | None = None


def read_units(uploads: UploadStore, payload: dict[str, Any], offset: int, line: int) -> Iterator[Unit]:
    """The records of a stored upload from byte `offset` (just after physical line `line`) on."""
    lines = uploads.read_lines(payload["upload"], offset)
    if payload["format"] == "csv":
        return _csv_units(uploads, payload["upload"], lines, offset, line)
    return _json_units(lines, line)


def _csv_units(uploads: UploadStore, upload_id: str, lines: Iterator[tuple[bytes, int]],
               offset: int, line: int) -> Iterator[Unit]:
    """OCL CSV rows as units: a row's OCL lines, or why it cannot be read."""
    position = {"offset": offset, "line": line}
    not_utf8: dict[int, str] = {}  # physical line -> why it is not UTF-8

    def decoded(source: Iterator[tuple[bytes, int]]) -> Iterator[str]:
        for raw, end in source:
            position["offset"] = end
            position["line"] += 1
            text, error = _decode(raw, position["line"])
            if error:
                not_utf8[position["line"]] = error
            yield text

    if offset == 0:
        reader = csv.reader(decoded(lines))
        header = next(reader, None)
    else:  # resuming: read the header again, then go on where the job stopped
        header = next(csv.reader(_decode_first(uploads.read_lines(upload_id, 0))), None)
        reader = csv.reader(decoded(lines))
    if not header:
        return
    header = [column.strip() for column in header]
    start = position["line"] + 1
    for row in reader:
        if any(cell.strip() for cell in row):
            bad = [not_utf8[n] for n in range(start, position["line"] + 1) if n in not_utf8]
            extra = [cell for cell in row[len(header):] if cell.strip()]
            if bad:
                yield Unit(start, [""], position["offset"], position["line"], bad[0])
            elif extra:
                yield Unit(start, [""], position["offset"], position["line"],
                           f"Row has {len(row)} cells but the header names {len(header)} "
                           "columns; quote cells that hold commas.")
            else:
                records = row_records(dict(zip(header, row, strict=False)))
                texts = [orjson.dumps(record).decode() for record in records]
                yield Unit(start, texts, position["offset"], position["line"])
        not_utf8.clear()
        start = position["line"] + 1


def _decode_first(lines: Iterator[tuple[bytes, int]]) -> Iterator[str]:
    for number, (raw, _) in enumerate(lines, start=1):
        yield raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace")


def _decode(raw: bytes, line: int) -> tuple[str, str | None]:
    """A line as text, and why it is not UTF-8 (None when it is); a BOM on line 1 is dropped."""
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8"), None
    except UnicodeDecodeError as exc:
        return (raw.decode("utf-8", errors="replace"),
                f"Line is not valid UTF-8 (byte {exc.start + 1}); save the file as UTF-8.")


def _json_units(lines: Iterator[tuple[bytes, int]], line: int) -> Iterator[Unit]:
    for raw, end in lines:
        line += 1
        if not raw.strip():
            continue
        text, error = _decode(raw, line)
        yield Unit(line, [text], end, line, error)
