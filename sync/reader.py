"""Export files: one streaming pass over a zip, tar.gz or plain-JSON OCL export on disk."""

from __future__ import annotations

import logging
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import IO, Any

import ijson
from ijson.common import ObjectBuilder

from .errors import InvalidExport

logger = logging.getLogger(__name__)

# Zip-bomb guards: the largest export.json a reader expands, and how many times larger than its
# compressed bytes it may be (JSON deflates 5-20x; a bomb, ~1000x). Below the floor, any ratio.
MAX_EXPORT_JSON_BYTES = 64 << 30
MAX_COMPRESSION_RATIO = 200
RATIO_FLOOR_BYTES = 64 << 20
ITEM_ARRAYS = ("concepts", "mappings")
_ITEM_PREFIXES = {"concepts.item": "concepts", "mappings.item": "mappings"}


class ExportReader:
    """Reads an export file (zip, tar.gz or plain JSON) in one streaming pass."""

    def __init__(self, path: str | Path, *, max_bytes: int = MAX_EXPORT_JSON_BYTES,
                 max_ratio: float = MAX_COMPRESSION_RATIO) -> None:
        self.path = Path(path)
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
        """Yield ("concepts" | "mappings", item) in file order; fills `header` as it goes."""
        stream = self._open_json()
        builder: ObjectBuilder | None = None
        kind = ""
        header = ObjectBuilder()
        in_items = False  # inside a top-level concepts/mappings array
        try:
            for prefix, event, value in ijson.parse(stream, use_float=True):
                if builder is not None:
                    builder.event(event, value)
                    if event == "end_map" and prefix in _ITEM_PREFIXES:
                        yield kind, builder.value
                        builder = None
                    continue
                if in_items:
                    if prefix in _ITEM_PREFIXES:
                        if event == "start_map":
                            kind = _ITEM_PREFIXES[prefix]
                            builder = ObjectBuilder()
                            builder.event(event, value)
                        elif event != "null":
                            raise InvalidExport(f"{prefix} holds a {event}, not an object")
                    elif prefix in ITEM_ARRAYS and event != "start_array":
                        in_items = False  # end of the array, or a null in its place
                    continue
                if prefix == "" and event == "map_key" and value in ITEM_ARRAYS:
                    in_items = True
                    continue
                header.event(event, value)
        except ijson.JSONError as exc:
            raise InvalidExport(f"{self.path}: export.json is not valid JSON: {exc}") from exc
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise InvalidExport(f"{self.path}: archive is damaged: {exc}") from exc
        value = getattr(header, "value", None)
        if not isinstance(value, dict):
            raise InvalidExport(f"{self.path}: export.json is not a JSON object")
        self.header = value


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
