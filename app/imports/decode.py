"""Records of a stored upload as units of work: JSON lines, or OCL CSV rows turned into OCL lines.

A unit knows where it ends (byte offset and physical line), so that a job taken over by another
worker resumes right after its last committed unit; a resumed CSV job reads its header again.
"""

from __future__ import annotations

import csv
import re
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


def read_units(uploads: UploadStore, payload: dict[str, Any], offset: int, line: int,
               max_record: int) -> Iterator[Unit]:
    """The records of a stored upload from byte `offset` (just after physical line `line`) on;
    a CSV row of more than `max_record` bytes (its cells may span lines) is a failed unit."""
    lines = uploads.read_lines(payload["upload"], offset)
    if payload["format"] == "csv":
        return _csv_units(uploads, payload["upload"], lines, offset, line, max_record)
    return _json_units(lines, line)


# What decides where a CSV cell and row end: runs of quotes, commas, line ends, other text.
_CSV_TOKENS = re.compile(r'"+|,|\r\n?|\n|[^",\r\n]+')


class RowEnd:
    """Finds where the CSV reader (excel dialect, not strict) ends a row that is inside a quoted
    cell, reading its lines without keeping them."""

    START, FIELD, QUOTED, CLOSED = range(4)  # a cell's start, unquoted, quoted, quote closed

    def __init__(self) -> None:
        self.state = self.QUOTED

    def ends_in(self, text: str) -> bool:
        """Read one more line of the row: whether the row ends with it."""
        for token in _CSV_TOKENS.findall(text):
            first = token[0]
            if first == '"':
                quotes = len(token)
                if self.state == self.START:
                    self.state, quotes = self.QUOTED, quotes - 1
                if self.state != self.FIELD and quotes % 2:  # in an unquoted cell, text
                    self.state = self.CLOSED if self.state == self.QUOTED else self.QUOTED
            elif first == ",":
                if self.state != self.QUOTED:
                    self.state = self.START
            elif first in "\r\n":
                if self.state != self.QUOTED:
                    return True
            elif self.state in (self.START, self.CLOSED):
                self.state = self.FIELD
        return False


def _csv_units(uploads: UploadStore, upload_id: str, lines: Iterator[tuple[bytes, int]],
               offset: int, line: int, max_record: int) -> Iterator[Unit]:
    """OCL CSV rows as units: a row's OCL lines, or why it cannot be read.

    A row is read whole into memory, so its size is bounded: once its lines pass `max_record`
    bytes (a quoted cell without its closing quote runs to the end of the file), the lines left
    of it are read by `RowEnd`, which keeps nothing, up to where the CSV reader would end the
    row; the reader is then handed a closing quote, and the row fails.
    """
    # The csv module's own cap on one cell is 128 KiB, process-wide; a cell may fill a row.
    csv.field_size_limit(max(csv.field_size_limit(), max_record + 64))
    position = {"offset": offset, "line": line, "record_bytes": 0}
    not_utf8: dict[int, str] = {}  # physical line -> why it is not UTF-8
    overlong: list[int] = []  # the row being read passed max_record (at this line)

    def decoded(source: Iterator[tuple[bytes, int]]) -> Iterator[str]:
        rest: RowEnd | None = None  # reading the lines left of an overlong row
        for raw, end in source:
            position["offset"] = end
            position["line"] += 1
            position["record_bytes"] += len(raw)
            text, error = _decode(raw, position["line"])
            if error:
                not_utf8[position["line"]] = error
            if rest is None and position["record_bytes"] > max_record:
                # A row goes on past a line only inside a quoted cell: read on, keeping nothing.
                overlong.append(position["line"])
                rest = RowEnd()
            if rest is None:
                yield text
            elif rest.ends_in(text):
                rest = None
                yield '"\n'
        if rest is not None:
            yield '"\n'

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
    position["record_bytes"] = 0
    overlong.clear()
    while True:
        try:
            row = next(reader)
            error = None
        except StopIteration:
            return
        except csv.Error as exc:  # the reader goes on with the next line
            row, error = ["error"], f"Row is not valid CSV ({exc})."
        if overlong:
            row, error = ["error"], (f"Row is longer than {max_record} bytes, the longest an "
                                     "import accepts; a quoted cell may lack its closing quote.")
        if any(cell.strip() for cell in row):
            bad = [not_utf8[n] for n in range(start, position["line"] + 1) if n in not_utf8]
            extra = [cell for cell in row[len(header):] if cell.strip()]
            if error or bad:
                yield Unit(start, [""], position["offset"], position["line"], error or bad[0])
            elif extra:
                yield Unit(start, [""], position["offset"], position["line"],
                           f"Row has {len(row)} cells but the header names {len(header)} "
                           "columns; quote cells that hold commas.")
            else:
                records = row_records(dict(zip(header, row, strict=False)))
                texts = [orjson.dumps(record).decode() for record in records]
                yield Unit(start, texts, position["offset"], position["line"])
        not_utf8.clear()
        overlong.clear()
        position["record_bytes"] = 0
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
