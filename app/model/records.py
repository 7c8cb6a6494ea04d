"""The records repositories return: frozen, typed, in the model's words. Their stored shapes (the
documents both backends keep, `_id` and all) are written down once, in `app/store/records.py`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExportFile:
    """A built export file as its record holds it: the bytes (content-addressed by sha256), when
    it was built, up to when its content is complete, and the content stamp it was built from."""

    sha256: str
    size: int
    created_on: str
    last_updated: str | None  # its version's lastUpdated (None: an empty version)
    stamp: str
    storage: str  # the storage that keeps it ("local", "gridfs")
    concepts: int
    mappings: int


@dataclass(frozen=True, slots=True)
class ExportRecord:
    """One export's bookkeeping: which version (and, for a delta package, from which base) it is
    of, its latest build job, and the file that job's build committed (None before, or dropped)."""

    key: str  # the export's identity (app/exports/service.py, export_key)
    source: str  # the repository's url
    version_id: str
    job_id: str
    since_id: str | None = None  # a delta package's base version; None for an export
    file: ExportFile | None = None
