"""The records repositories return: frozen, typed, in the model's words. Their stored shapes (the
documents both backends keep, `_id` and all) are written down once, in `app/store/records.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict


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


# --- versions (app/domain/content.py) -------------------------------------------------------
# `counts` and `extras` stay JSON values: counts per item type as the cut read them, extras as
# the client sent them.


@dataclass(frozen=True, slots=True)
class Version:
    """A version of a source or collection: the seq (and checksum, counts, lastUpdated) of the
    content it was cut at, and its own metadata. HEAD, the live content, is one too (`is_head`,
    seq HEAD_SEQ, its url the repository's), never stored."""

    url: str  # the version's url (the repository's url, then its id and a slash)
    id: str
    source: str  # the repository's url
    seq: int
    created_on: str
    updated_on: str
    last_updated: str | None = None  # the newest change in its content (None: empty)
    checksum: str | None = None  # checksums.content, once known
    counts: dict[str, list[int]] | None = None  # per item type: [active, retired, deleted]
    description: str | None = None
    released: bool = False
    retired: bool = False
    external_id: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    previous_version_url: str | None = None
    created_by: str | None = None
    updated_by: str | None = None
    is_head: bool = False


class VersionChanges(TypedDict, total=False):
    """Fields of a version to set (`Versions.update`), in the record's words: its metadata and
    the checksum worked out once; never its content."""

    description: str | None
    released: bool
    retired: bool
    external_id: str | None
    extras: dict[str, Any] | None
    checksum: str
    updated_on: str
    updated_by: str | None


# --- webhooks (app/webhooks) -----------------------------------------------------------------
# A delivery's body stays JSON text: it is signed and sent byte for byte, again on every retry.


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One attempt to send a delivery: when, the receiver's HTTP status (None: no answer), how
    long it took, and what went wrong (None: nothing)."""

    at: str
    status: int | None
    duration_ms: float
    error: str | None


@dataclass(frozen=True, slots=True)
class LastDelivery:
    """What a hook remembers of its latest delivery attempt (shown with the hook)."""

    id: str  # the delivery's
    event: str
    state: str
    at: str
    status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Webhook:
    """A hook of a repository: where its events go, which ones, the secret that signs them, and
    its state (switched off by its owner, or after `failures` attempts failed in a row)."""

    id: str
    repository: str  # the source's or collection's url
    url: str  # the target
    events: tuple[str, ...]
    secret: str
    active: bool = True
    description: str = ""
    origin: str = ""  # where the caller reached the server when registering it
    failures: int = 0
    disabled_on: str | None = None  # when failures switched it off
    disabled_reason: str | None = None
    last_delivery: LastDelivery | None = None
    created_on: str = ""
    created_by: str | None = None
    updated_on: str = ""
    updated_by: str | None = None
    repository_deleted: bool = False  # its repository is gone; its last delivery is on the way


class WebhookChanges(TypedDict, total=False):
    """Fields of a hook to set (`Webhooks.update`), in the record's words."""

    url: str
    events: tuple[str, ...]
    secret: str
    active: bool
    description: str
    failures: int
    disabled_on: str | None
    disabled_reason: str | None
    last_delivery: LastDelivery
    updated_on: str
    updated_by: str | None
    repository_deleted: bool


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event sent (or to send) to one hook, with its last attempts."""

    id: str  # sent as X-Termsync-Delivery
    hook: str
    repository: str
    event: str
    body: str  # the JSON text sent
    state: str  # PENDING, DELIVERED, FAILED or CANCELLED
    created_on: str
    attempts: tuple[DeliveryAttempt, ...] = ()  # the last ones, oldest first
    attempt_count: int = 0
    next_attempt_on: str | None = None
    delivered_on: str | None = None
    redelivery_of: str | None = None
    error: str | None = None  # why it was cancelled unsent

    @property
    def last_attempt(self) -> DeliveryAttempt | None:
        return self.attempts[-1] if self.attempts else None


class DeliveryChanges(TypedDict, total=False):
    """Fields of a delivery to set (`WebhookDeliveries.update`), in the record's words."""

    state: str
    attempts: tuple[DeliveryAttempt, ...]
    attempt_count: int
    next_attempt_on: str | None
    delivered_on: str | None
    error: str


# --- sources and collections (app/domain/content.py) ----------------------------------------
# OCL's metadata is typed field by field (the API accepts and renders each by name); `extras`
# stays the JSON object the client sent.


@dataclass(frozen=True, slots=True)
class Source:
    """A repository, a source or a collection (`repo_type`), at HEAD: its owner, who may see it,
    OCL's metadata, and the seq and lastUpdated of its live content (kept by the store with
    every write). A source has `source_type` and no collection fields; a collection the reverse.
    """

    url: str
    id: str
    repo_type: str  # SOURCE_TYPE or COLLECTION_TYPE
    owner: str  # the owner's id
    owner_type: str  # "Organization" or "User"
    owner_url: str
    public_access: str  # "View", "Edit" or "None"
    created_on: str
    updated_on: str
    created_by: str | None = None
    updated_by: str | None = None
    seq: int = 0  # the newest seq of its content (item versions; a collection's entries)
    last_updated: str | None = None  # the newest change in its content (None: empty)
    mapping_counter: int = 0  # the last mapping number handed out
    short_code: str | None = None
    name: str | None = None
    full_name: str | None = None
    description: str | None = None
    source_type: str | None = None  # sources only
    default_locale: str | None = None
    supported_locales: tuple[str, ...] | None = ()
    website: str | None = None
    custom_validation_schema: str | None = None
    external_id: str | None = None
    extras: dict[str, Any] | None = field(default_factory=dict)
    collection_type: str | None = None  # collections only, from here on
    canonical_url: str | None = None
    preferred_source: str | None = None
    custom_resources_linked_source: str | None = None
    immutable: bool | None = None
    locked_date: str | None = None

    @property
    def is_collection(self) -> bool:
        return self.repo_type == "Collection"  # COLLECTION_TYPE (app/model imports this module)


class SourceChanges(TypedDict, total=False):
    """Fields of a source or collection to set (`Sources.update`): its metadata (OCL's, and who
    may see it) and who changed it when; `seq`, `last_updated` and `mapping_counter` only for a bulk
    fill that writes its content around the domain (the benches)."""

    public_access: str
    short_code: str | None
    name: str | None
    full_name: str | None
    description: str | None
    source_type: str | None
    default_locale: str | None
    supported_locales: tuple[str, ...] | None
    website: str | None
    custom_validation_schema: str | None
    external_id: str | None
    extras: dict[str, Any] | None
    collection_type: str | None
    canonical_url: str | None
    preferred_source: str | None
    custom_resources_linked_source: str | None
    immutable: bool | None
    locked_date: str | None
    updated_on: str
    updated_by: str | None
    seq: int
    last_updated: str
