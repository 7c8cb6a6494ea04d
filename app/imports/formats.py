"""Upload formats: what a body without a Content-Type is.

OCL's clients send bulk imports every way OCL accepts them: JSON lines with or without a
Content-Type (ocldev's `OclBulkImporter` sends none), CSV, and an OCL export zip (`ocl import file
x.zip`, read by `exportzip`).
"""

from __future__ import annotations

JSONL, CSV, ZIP = "jsonl", "csv", "zip"
FORMATS = (JSONL, CSV, ZIP)
ZIP_MAGIC = b"PK\x03\x04"


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
