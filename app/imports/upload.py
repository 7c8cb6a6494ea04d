"""An upload as it arrives: its format sniffed, an OCL export zip read as OCL lines, and its
bytes, lines and line lengths counted against the limits while it streams to storage."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from itertools import chain

from ..config import ImportSettings
from ..domain.errors import DomainError, Invalid
from .exportzip import ExportTooLarge, NotAnExport, export_lines
from .formats import JSONL, ZIP, sniff


class PayloadTooLarge(DomainError):
    """The upload is bigger (in bytes or lines) than this server accepts in one job."""

    status = 413


def prepare(chunks: Iterable[bytes], fmt: str | None, limits: ImportSettings,
            org_exists: Callable[[str], bool]) -> tuple[Iterator[bytes], str, str]:
    """The upload as the job stores it, its stored format and the format it came in: a body
    whose format nothing said is sniffed; an OCL export zip becomes OCL JSON lines."""
    stream = iter(chunks)
    first = next((chunk for chunk in stream if chunk), b"")
    body = chain([first], stream) if first else iter(())
    received = fmt or sniff(first)
    if received == ZIP:
        return export_as_lines(body, limits, org_exists), JSONL, ZIP
    return body, received, received


def export_as_lines(chunks: Iterator[bytes], limits: ImportSettings,
                    org_exists: Callable[[str], bool]) -> Iterator[bytes]:
    """Spool a zip (its directory is at the end) and read its export.json as OCL lines, within
    the limits: the upload's bytes, export.json's expanded bytes and ratio, one item's bytes."""
    with tempfile.TemporaryFile(prefix="termsync-import-") as spool:
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > limits.max_bytes:
                raise PayloadTooLarge(
                    f"The upload is larger than {limits.max_bytes} bytes, the most one "
                    "import job accepts; split the file.")
            spool.write(chunk)
        spool.seek(0)
        try:
            yield from export_lines(spool, org_exists, max_expanded=limits.max_expanded_bytes,
                                    max_ratio=limits.max_expansion_ratio,
                                    max_item=limits.max_line_bytes)
        except NotAnExport as exc:
            raise Invalid(str(exc), errors={"file": [str(exc)]}) from None
        except ExportTooLarge as exc:
            raise PayloadTooLarge(str(exc), errors={"file": [str(exc)]}) from None


class LineCounter:
    """Counts bytes and lines of a streamed upload, stopping it as soon as a limit is passed."""

    def __init__(self, limits: ImportSettings) -> None:
        self.limits = limits
        self.size = 0
        self.lines = 0
        self._open_line = False
        self._line_bytes = 0  # bytes of the line being read so far

    def count(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Pass the chunks on, counted; PayloadTooLarge as soon as one passes a limit."""
        for chunk in chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self.limits.max_bytes:
                raise PayloadTooLarge(
                    f"The upload is larger than {self.limits.max_bytes} bytes, the most one "
                    "import job accepts; split the file.")
            self._check_line_length(chunk)
            self.lines += chunk.count(b"\n")
            self._open_line = not chunk.endswith(b"\n")
            if self.lines > self.limits.max_lines:
                raise PayloadTooLarge(
                    f"The upload has more than {self.limits.max_lines} lines, the most one import "
                    "job accepts; split the file.")
            yield chunk
        if self._open_line:
            self.lines += 1

    def _check_line_length(self, chunk: bytes) -> None:
        """Refuse a line longer than the limit: the job holds one line in memory at a time."""
        if self._line_bytes + len(chunk) > self.limits.max_line_bytes:
            length = self._line_bytes
            for index, part in enumerate(chunk.split(b"\n")):
                length = (length if index == 0 else 0) + len(part)
                if length > self.limits.max_line_bytes:
                    raise PayloadTooLarge(
                        f"Line {self.lines + index + 1} is longer than "
                        f"{self.limits.max_line_bytes} bytes, the longest line an import "
                        "accepts (one resource per line).")
        last = chunk.rfind(b"\n")
        self._line_bytes = self._line_bytes + len(chunk) if last < 0 else len(chunk) - last - 1
