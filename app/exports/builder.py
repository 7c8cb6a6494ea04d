"""Streaming build of an export file: a zip holding one `export.json`, in OCL's format.

The version's fields are written first, then `concepts` and `mappings` (and a collection's
`references`, rendered already), each item rendered and
encoded one at a time straight from the database cursor into the deflate stream, so memory stays
flat however large the source. The zip is written to a temp file through a hashing writer: the
sha256 that names the file is known when the last byte is written, without reading it back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..domain import ocl
from ..model import Source

logger = logging.getLogger(__name__)

ENTRY_NAME = "export.json"
WRITE_BATCH = 512  # items encoded per write into the deflate stream

# Top-level keys of OCL's export.json that termsync has no data for; written as OCL writes them
# when empty, so that OCL clients find every key they look for.
OCL_ONLY_FIELDS: dict[str, Any] = {
    "is_processing": False, "canonical_url": None, "identifier": None, "publisher": None,
    "contact": None, "jurisdiction": None, "purpose": None, "copyright": None,
    "content_type": None, "revision_date": None, "text": None, "meta": None,
    "experimental": None, "case_sensitive": None, "collection_reference": None,
    "hierarchy_meaning": None, "compositional": None, "version_needed": None,
    "hierarchy_root_url": None,
}


@dataclass
class BuildStats:
    """What a build produced and where its time went (the benchmark reports these)."""

    sha256: str = ""
    size: int = 0
    json_bytes: int = 0
    concepts: int = 0
    mappings: int = 0
    seconds_read: float = 0.0  # waiting on the database cursor
    seconds_render: float = 0.0  # building OCL-shaped dicts
    seconds_encode_compress: float = 0.0  # orjson + deflate + file writes
    seconds_total: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def items(self) -> int:
        return self.concepts + self.mappings


class _HashingWriter:
    """A write-only, unseekable file: zipfile then streams (data descriptors) and we hash."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self._handle.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._handle.flush()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def export_header(version_fields: dict[str, Any], last_updated: str | None,
                  export_time: str) -> dict[str, Any]:
    """The top-level fields of export.json: the version as OCL renders it, plus export stamps."""
    header = dict(version_fields)
    for key, value in OCL_ONLY_FIELDS.items():
        header.setdefault(key, value)
    header["lastUpdated"] = last_updated
    header["export_time"] = export_time
    header.pop("concepts", None)
    header.pop("mappings", None)
    return header


class ZipTooLarge(Exception):
    """The export passed 4 GiB without zip64 records: build it again with `zip64=True`."""


def build_export(path: str, header: dict[str, Any], source: Source,
                 sections: Iterable[tuple[str, Iterable[dict[str, Any]]]],
                 progress: Callable[[int], None] | None = None,
                 progress_every: int = 1000, compresslevel: int = 6,
                 zip64: bool = False,
                 render: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 extra_entries: Callable[[], dict[str, bytes]] | None = None) -> BuildStats:
    """Write the zip to `path`; `sections` are ("concepts", cursor), ("mappings", cursor) and,
    for a collection, ("references", rendered references); a delta package adds ("deleted",
    tombstones) and, after export.json, the `extra_entries` (asked for once the sections are
    written: its manifest).

    Items are rendered with `render` (a collection's: each with its own source), by default
    with `source`.
    `progress(items_done)` is called every `progress_every` items (the job heartbeats there; it
    may raise to abort the build). Without `zip64` the file has no zip64 records, as Java's
    `ZipInputStream` (the OpenMRS module) needs; ZipTooLarge if it passes 4 GiB that way.
    """
    render = render or (lambda item: ocl.render_item(item, source))
    try:
        return _build(path, header, render, sections, progress, progress_every, compresslevel,
                      zip64, extra_entries)
    except RuntimeError as exc:
        # zipfile refuses, when the entry closes, sizes past 4 GiB without zip64 records
        if not zip64 and "force_zip64" in str(exc):
            raise ZipTooLarge(str(exc)) from exc
        raise


def _build(path: str, header: dict[str, Any], render: Callable[[dict[str, Any]], dict[str, Any]],
           sections: Iterable[tuple[str, Iterable[dict[str, Any]]]],
           progress: Callable[[int], None] | None, progress_every: int, compresslevel: int,
           zip64: bool, extra_entries: Callable[[], dict[str, bytes]] | None = None) -> BuildStats:
    stats = BuildStats()
    started = time.perf_counter()
    clock = time.perf_counter
    with open(path, "wb") as raw:
        writer = _HashingWriter(raw)
        with zipfile.ZipFile(writer, "w", compression=zipfile.ZIP_DEFLATED,  # type: ignore[call-overload]
                             compresslevel=compresslevel) as archive:
            info = zipfile.ZipInfo(ENTRY_NAME, date_time=time.gmtime()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=zip64) as entry:
                mark = clock()
                opening = orjson.dumps(header)[:-1]
                entry.write(opening)
                stats.json_bytes += len(opening)
                stats.seconds_encode_compress += clock() - mark
                done = 0
                for name, cursor in sections:
                    parts: list[bytes] = [f',"{name}":['.encode()]
                    first = True
                    iterator = iter(cursor)
                    while True:
                        mark = clock()
                        item = next(iterator, None)
                        after_read = clock()
                        stats.seconds_read += after_read - mark
                        if item is None:
                            break
                        rendered = item if name == "references" else render(item)
                        after_render = clock()
                        stats.seconds_render += after_render - after_read
                        encoded = orjson.dumps(rendered)
                        parts.append(encoded if first else b"," + encoded)
                        first = False
                        if name == "concepts":
                            stats.concepts += 1
                        elif name == "mappings":
                            stats.mappings += 1
                        done += 1
                        if len(parts) >= WRITE_BATCH:
                            chunk = b"".join(parts)
                            entry.write(chunk)
                            stats.json_bytes += len(chunk)
                            parts = []
                        stats.seconds_encode_compress += clock() - after_render
                        if progress is not None and done % progress_every == 0:
                            progress(done)
                    mark = clock()
                    parts.append(b"]")
                    chunk = b"".join(parts)
                    entry.write(chunk)
                    stats.json_bytes += len(chunk)
                    stats.seconds_encode_compress += clock() - mark
                mark = clock()
                entry.write(b"}")
                stats.json_bytes += 1
            stats.seconds_encode_compress += clock() - mark  # the final flush of deflate
            for name, data in (extra_entries() if extra_entries else {}).items():
                extra = zipfile.ZipInfo(name, date_time=info.date_time)
                extra.compress_type = zipfile.ZIP_DEFLATED  # Java streams only deflated entries
                extra.external_attr = 0o644 << 16
                with archive.open(extra, "w", force_zip64=zip64) as entry:
                    entry.write(data)
        writer.flush()
    stats.sha256 = writer.hexdigest()
    stats.size = writer.size
    stats.seconds_total = time.perf_counter() - started
    return stats


def temp_path(directory: str) -> str:
    """A fresh temp file name in `directory` (the garbage collector knows the prefix)."""
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=".export-", suffix=".zip.part", dir=directory)
    os.close(fd)
    return path
