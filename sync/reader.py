"""Export files: one streaming pass over a zip, tar.gz or plain-JSON OCL export on disk."""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .errors import InvalidExport

logger = logging.getLogger(__name__)

# Zip-bomb guards: the largest export.json a reader expands, and how many times larger than its
# compressed bytes it may be (JSON deflates 5-20x; a bomb, ~1000x). Below the floor, any ratio.
MAX_EXPORT_JSON_BYTES = 64 << 30
MAX_COMPRESSION_RATIO = 200
RATIO_FLOOR_BYTES = 64 << 20
ITEM_ARRAYS = ("concepts", "mappings")
TEXT_CHUNK = 1 << 20  # characters read at a time
MAX_VALUE_CHARS = 256 << 20  # the longest single item or header value a reader buffers


class ExportReader:
    """Reads an export file (zip, tar.gz or plain JSON) in one streaming pass, one item at a time."""

    def __init__(self, path: str | Path, *, max_bytes: int = MAX_EXPORT_JSON_BYTES,
                 max_ratio: float = MAX_COMPRESSION_RATIO,
                 arrays: tuple[str, ...] = ITEM_ARRAYS) -> None:
        self.path = Path(path)
        self.arrays = arrays  # the top-level arrays streamed item by item (a delta's: `deleted`)
        self.max_bytes = max_bytes
        self.max_ratio = max_ratio
        self.header: dict[str, Any] = {}
        self._stack = ExitStack()

    def _check_expansion(self, member: str, size: int, compressed: int) -> None:
        """Refuse a member that would expand beyond the limits (a zip bomb) before reading it.

        zipfile and tarfile never read past a member's declared size, so checking it is enough.
        """
        if size > self.max_bytes:
            raise InvalidExport(f"{self.path}: {member} would expand to {size} bytes, more than "
                                f"the {self.max_bytes} bytes an export may hold")
        if size > RATIO_FLOOR_BYTES and size > self.max_ratio * max(compressed, 1):
            raise InvalidExport(f"{self.path}: {member} would expand {size // max(compressed, 1)}"
                                f" times (to {size} bytes), more than the {self.max_ratio:g}x an "
                                "export compresses; refusing a likely zip bomb")

    def __enter__(self) -> ExportReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open_json(self) -> IO[bytes]:
        """The export.json stream inside whatever container the file is."""
        with self.path.open("rb") as probe:
            magic = probe.read(4)
        try:
            if magic.startswith(b"PK"):
                archive = self._stack.enter_context(zipfile.ZipFile(self.path))
                names = [n for n in archive.namelist() if not n.endswith("/")]
                member = _pick_member(names)
                info = archive.getinfo(member)
                self._check_expansion(member, info.file_size, info.compress_size)
                return self._stack.enter_context(archive.open(member))
            if magic.startswith(b"\x1f\x8b"):
                tar = self._stack.enter_context(tarfile.open(self.path, mode="r:gz"))
                for entry in tar.getmembers():
                    _check_member_name(entry.name)
                chosen = _pick_member([m.name for m in tar.getmembers() if m.isfile()])
                self._check_expansion(chosen, tar.getmember(chosen).size,
                                      self.path.stat().st_size)
                stream = tar.extractfile(chosen)
                if stream is None:
                    raise InvalidExport(f"{self.path}: {chosen} is not a regular file")
                return self._stack.enter_context(stream)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise InvalidExport(f"{self.path} is not a readable export archive: {exc}") from exc
        return self._stack.enter_context(self.path.open("rb"))

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (array, item) in file order, for each of `arrays` ("concepts", "mappings"; a
        delta's "deleted" too); fills `header` when done.

        The top-level object is walked key by key; each item (and each header value) is decoded
        on its own by the standard library's C decoder, so memory holds one item at a time.
        """
        text = _JsonText(self._stack.enter_context(
            io.TextIOWrapper(self._open_json(), encoding="utf-8-sig")), self.path)
        header: dict[str, Any] = {}
        try:
            text.expect("{")
            more = text.peek() != "}"
            if not more:
                text.pos += 1
            while more:
                key = text.value()
                if not isinstance(key, str):
                    raise InvalidExport(f"{self.path}: export.json has a non-string key")
                text.expect(":")
                if key in self.arrays and text.peek() == "[":
                    yield from ((key, item) for item in text.array_items(key))
                elif key in self.arrays:
                    value = text.value()
                    if value is not None:
                        raise InvalidExport(f"{self.path}: {key} is a {type(value).__name__}, "
                                            "not an array")
                else:
                    header[key] = text.value()
                more = text.separator("}")
            if text.peek() != "":
                raise InvalidExport(f"{self.path}: export.json has data after its object")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error,
                UnicodeDecodeError) as exc:
            raise InvalidExport(f"{self.path}: archive is damaged: {exc}") from exc
        self.header = header


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")


class _JsonText:
    """The text of export.json read in chunks: whitespace, punctuation and whole values."""

    def __init__(self, reader: IO[str], path: Path) -> None:
        self.reader = reader
        self.path = path
        self.buffer = ""
        self.pos = 0
        self.eof = False

    def _fill(self) -> bool:
        """Append the next chunk (dropping what was consumed); False at the end of the file."""
        chunk = self.reader.read(TEXT_CHUNK)
        if not chunk:
            self.eof = True
            return False
        if len(self.buffer) - self.pos + len(chunk) > MAX_VALUE_CHARS:
            raise InvalidExport(f"{self.path}: export.json holds a value longer than "
                                f"{MAX_VALUE_CHARS} characters")
        self.buffer = self.buffer[self.pos:] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end), not consumed."""
        if self.pos < len(self.buffer) and self.buffer[self.pos] not in " \t\n\r":
            return self.buffer[self.pos]  # compact JSON: no whitespace to skip
        while True:
            match = _WHITESPACE.match(self.buffer, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self._fill():
                return ""

    def expect(self, char: str) -> None:
        """Consume `char` (after whitespace) or refuse the file."""
        found = self.peek()
        if found != char:
            raise InvalidExport(f"{self.path}: export.json is not valid JSON: expected "
                                f"{char!r}, found {found or 'the end'!r}")
        self.pos += 1

    def separator(self, closing: str) -> bool:
        """After a member: True on ",", False on `closing` (both consumed)."""
        if self.peek() == ",":
            self.pos += 1
            return True
        self.expect(closing)
        return False

    def value(self) -> Any:
        """The next whole JSON value, reading more text until it is complete."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as exc:
                # a value cut by the chunk's end fails near the end (or as an unterminated
                # string); anything else is bad JSON
                cut = exc.pos >= len(self.buffer) - 8 or exc.msg.startswith("Unterminated")
                if cut and self._fill():
                    continue
                raise InvalidExport(f"{self.path}: export.json is not valid JSON: {exc}") from None
            except ValueError as exc:
                raise InvalidExport(f"{self.path}: export.json is not valid JSON: {exc}") from None
            if (end == len(self.buffer) or (type(value) in (int, float) and
                                            _NUMBER_TAIL.fullmatch(self.buffer, end))) \
                    and self._fill():
                continue  # a number cut by the chunk's end ("-1." of "-1.5") goes on there
            self.pos = end
            return value

    def array_items(self, key: str) -> Iterator[dict[str, Any]]:
        """The objects of the array that starts here (nulls skipped)."""
        self.expect("[")
        if self.peek() == "]":
            self.pos += 1
            return
        more = True
        while more:
            item = self.value()
            if isinstance(item, dict):
                yield item
            elif item is not None:
                raise InvalidExport(f"{self.path}: {key}.item holds a {type(item).__name__}, "
                                    "not an object")
            more = self.separator("]")


def _check_member_name(name: str) -> None:
    """Refuse absolute or parent-relative archive member names."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise InvalidExport(f"archive member {name!r} has an unsafe path")


def _pick_member(names: list[str]) -> str:
    """export.json (anywhere) or else the only .json member."""
    for name in names:
        _check_member_name(name)
    exact = [n for n in names if PurePosixPath(n).name == "export.json"]
    if exact:
        return exact[0]
    jsons = [n for n in names if n.endswith(".json")]
    if len(jsons) == 1:
        return jsons[0]
    raise InvalidExport(f"archive holds no export.json (members: {', '.join(names[:10])})")
