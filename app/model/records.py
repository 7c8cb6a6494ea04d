"""The records repositories return: frozen, typed, in the model's words. Their stored shapes (the
documents both backends keep, `_id` and all) are written down once, in `app/store/records.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


@dataclass(frozen=True, slots=True)
class Job:
    """A job of the queue (app/jobs.py) as it stands: what it is, whose, its state and lease.

    `payload` (what its handler is given), `progress` and `result` are the handler's own JSON
    documents, free-form by kind of job, so they stay dicts.
    """

    id: str
    kind: str
    state: str  # PENDING | RUNNING | FINISHED | FAILED | CANCELLED
    payload: dict[str, Any]
    created_on: str
    updated_on: str
    key: str | None = None  # what deduplicated jobs of a kind are numbered by
    generation: int | None = None  # the number of a deduplicated job of its key
    owner: str | None = None
    queue: str | None = None  # jobs of one queue run one at a time, in order
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0  # claims so far (a takeover after a lost worker is one more)
    worker: str | None = None
    lease_until: str | None = None
    started_on: str | None = None
    finished_on: str | None = None
    not_before: str | None = None  # not claimed before then (a webhook retry's backoff)
