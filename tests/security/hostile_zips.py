"""Hostile OCL export zips, built in well under a second whatever they expand to.

A deflate stream flushed with Z_FULL_FLUSH starts afresh after each flush, so a megabyte of one
repeated byte compresses to the same bytes every time: a stream of N such megabytes is those bytes
N times, and a 1 GiB bomb costs one megabyte of compression. The zips are written by hand (one
entry, no data descriptor); a bomb's CRC is left 0 unless asked for (computing it costs a second a
GiB), since what a test sends is refused before the end of the entry, where zipfile checks it (a
reader that went on would fail there instead).
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from typing import Any

MB = 1 << 20
ENTRY = b"export.json"
SOURCE_HEAD = (b'{"type": "Source", "id": "S", "owner": "O", "owner_type": "Organization", '
               b'"url": "/orgs/O/sources/S/"')


def zip_of(parts: list[bytes], repeated: bytes, times: int, tail: bytes,
           claims: int | None = None, with_crc: bool = False) -> bytes:
    """A zip of export.json made of `parts`, then `repeated` `times` times, then `tail`; its
    directory says it expands to `claims` bytes (default: the truth)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = b"".join(compressor.compress(part) for part in parts) + \
        compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(repeated) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
    data = head + block * times + end
    size = sum(map(len, parts)) + len(repeated) * times + len(tail)
    declared = size if claims is None else claims
    if declared >= 0xFFFFFFFF or len(data) >= 0xFFFFFFFF:
        raise ValueError("zip64 is not needed here")
    crc = 0
    if with_crc:
        for part in (*parts, *([repeated] * times), tail):
            crc = zlib.crc32(part, crc)
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data),
                        declared, len(ENTRY), 0) + ENTRY
    directory = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc,
                            len(data), declared, len(ENTRY), 0, 0, 0, 0, 0, 0) + ENTRY
    end_record = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(directory),
                             len(local) + len(data), 0)
    return local + data + directory + end_record


def deflate_bomb(expanded: int, claims: int | None = None, with_crc: bool = False) -> bytes:
    """An export of no items whose export.json is `expanded` bytes of spaces (about 1 KB a MB
    zipped), its directory claiming `claims` bytes (default: the truth)."""
    return zip_of([SOURCE_HEAD], b" " * MB, expanded // MB,
                  b', "concepts": [], "mappings": []}', claims, with_crc)


def item_bomb(expanded: int, with_crc: bool = False) -> bytes:
    """An export of `expanded` bytes of small concepts (64 bytes each, the same one over and
    over): what an honest directory can carry that is not refused before it is read."""
    item = b'{"type": "Concept", "id": "x", "names": []}, '
    item += b" " * (64 - len(item))
    return zip_of([SOURCE_HEAD, b', "concepts": ['], item * (MB // 64), expanded // MB,
                  b'{"type": "Concept", "id": "x", "names": []}], "mappings": []}',
                  with_crc=with_crc)


def concept(concept_id: str, **fields: Any) -> bytes:
    """A concept as an OCL export holds it."""
    payload = {"type": "Concept", "id": concept_id, "concept_class": "Diagnosis",
               "datatype": "N/A", "names": [{"name": f"Concept {concept_id}", "locale": "en"}]}
    payload.update(fields)
    return json.dumps(payload).encode()


def huge_item_zip(size: int, dense: bool = False, with_crc: bool = False) -> bytes:
    """An export whose second concept has a name of `size` bytes: one letter over and over
    (about size / 1000 zipped), or `dense`, a megabyte of random letters over and over, which
    deflate (a 32 KiB window) cannot shrink below about 60%."""
    block = bytes(random.Random(19).choices(b"abcdefghijklmnopqrstuvwxyz", k=MB)) if dense \
        else b"a" * MB
    return zip_of([SOURCE_HEAD, b', "concepts": [', concept("ok"),
                   b', {"type": "Concept", "id": "big", "names": [{"name": "'],
                  block, size // MB, b'", "locale": "en"}]}], "mappings": []}',
                  with_crc=with_crc)


def export_zip(concepts_text: bytes) -> bytes:
    """An export whose concepts array is `concepts_text` (JSON text)."""
    return zip_of([SOURCE_HEAD, b', "concepts": ', concepts_text, b', "mappings": []}'], b"", 0,
                  b"", with_crc=True)
