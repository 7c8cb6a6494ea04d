"""The stored shape of the model's records: the documents both backends keep (`_id` and all, the
same on SQLite and MongoDB, so `termsync db copy` moves them unchanged), and the records
(`app/model/records.py`) the repositories return. Backends convert here, at their edge."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeVar, Unpack

from ..model import SOURCE_TYPE, Document
from ..model.records import (
    DeliveryAttempt,
    DeliveryChanges,
    ExportFile,
    ExportRecord,
    Job,
    LastDelivery,
    Source,
    SourceChanges,
    Version,
    VersionChanges,
    Webhook,
    WebhookChanges,
    WebhookDelivery,
)
from . import interfaces

Record = TypeVar("Record")


def export_file_document(file: ExportFile) -> Document:
    """The `file` an export record keeps."""
    return {"sha256": file.sha256, "size": file.size, "created_on": file.created_on,
            "last_updated": file.last_updated, "stamp": file.stamp, "storage": file.storage,
            "concepts": file.concepts, "mappings": file.mappings}


def export_file(document: Document) -> ExportFile:
    """A stored export record's `file`."""
    return ExportFile(sha256=document["sha256"], size=int(document["size"]),
                      created_on=document["created_on"], last_updated=document.get("last_updated"),
                      stamp=document["stamp"], storage=document["storage"],
                      concepts=int(document["concepts"]), mappings=int(document["mappings"]))


def export_target_document(source: str, version_id: str, since_id: str | None) -> Document:
    """What an export record says it is of (a delta package's also names its base)."""
    target: Document = {"source": source, "version_id": version_id}
    if since_id is not None:
        target["since_id"] = since_id
    return target


def export_record(document: Document) -> ExportRecord:
    """A stored export record (`_id`: its key; `file` absent or None until a build commits)."""
    file = document.get("file")
    return ExportRecord(key=document["_id"], source=document["source"],
                        version_id=document["version_id"], job_id=document["job_id"],
                        since_id=document.get("since_id"),
                        file=export_file(file) if file else None)


def job_document(job: Job) -> Document:
    """The document a job is stored as: every field, as JobQueue has always written them."""
    return {"_id": job.id, "kind": job.kind, "key": job.key, "state": job.state,
            "payload": job.payload, "owner": job.owner, "progress": job.progress,
            "result": job.result, "error": job.error, "attempts": job.attempts,
            "worker": job.worker, "lease_until": job.lease_until, "generation": job.generation,
            "queue": job.queue, "created_on": job.created_on, "updated_on": job.updated_on,
            "started_on": job.started_on, "finished_on": job.finished_on,
            "not_before": job.not_before}


def job(document: Document) -> Job:
    """A stored job (one from an older release may lack the fields added since: `generation`,
    `queue`, `not_before`)."""
    generation = document.get("generation")
    return Job(id=document["_id"], kind=document["kind"], state=document["state"],
               payload=document["payload"], created_on=document["created_on"],
               updated_on=document["updated_on"],
               key=document.get("key"),
               generation=None if generation is None else int(generation),
               owner=document.get("owner"), queue=document.get("queue"),
               progress=document.get("progress") or {}, result=document.get("result"),
               error=document.get("error"), attempts=int(document.get("attempts") or 0),
               worker=document.get("worker"), lease_until=document.get("lease_until"),
               started_on=document.get("started_on"), finished_on=document.get("finished_on"),
               not_before=document.get("not_before"))


# --- versions (app/domain/content.py) -------------------------------------------------------


def version_document(version: Version) -> Document:
    """The document a version is stored as (`_id`: its url), every field as a cut has always
    written them."""
    return {"_id": version.url, "id": version.id, "source": version.source, "seq": version.seq,
            "checksum": version.checksum, "counts": version.counts,
            "last_updated": version.last_updated, "description": version.description,
            "released": version.released, "retired": version.retired,
            "external_id": version.external_id, "extras": version.extras,
            "previous_version_url": version.previous_version_url,
            "created_on": version.created_on, "updated_on": version.updated_on,
            "created_by": version.created_by, "updated_by": version.updated_by}


def version_record(document: Document) -> Version:
    """A stored version (`extras` stored as null, as an update may set it, reads as none; one
    stored without `updated_on` reads its `created_on` there, as the feeds always did)."""
    return Version(url=document["_id"], id=document["id"], source=document["source"],
                   seq=int(document["seq"]), created_on=document["created_on"],
                   updated_on=document.get("updated_on") or document["created_on"],
                   last_updated=document.get("last_updated"),
                   checksum=document.get("checksum"), counts=document.get("counts"),
                   description=document.get("description"),
                   released=bool(document.get("released")),
                   retired=bool(document.get("retired")),
                   external_id=document.get("external_id"),
                   extras=document.get("extras") or {},
                   previous_version_url=document.get("previous_version_url"),
                   created_by=document.get("created_by"), updated_by=document.get("updated_by"))


# --- sources and collections (app/domain/content.py) ----------------------------------------
# Beside a repository's document the backends keep its content's stamps (`seq`, `last_updated`,
# `mapping_counter`) and HEAD's checksum and counts (SQLite: `content_checksum`, `counts`;
# MongoDB: `checksum`): those last stay the backend's, never in the record.

SOURCE_METADATA = ("short_code", "name", "full_name")
SOURCE_ATTRIBUTES = ("description", "source_type", "default_locale", "supported_locales",
                     "public_access", "website", "custom_validation_schema", "external_id",
                     "extras")
COLLECTION_ATTRIBUTES = ("collection_type", "canonical_url", "preferred_source",
                         "custom_resources_linked_source", "immutable", "locked_date")


def source_document(source: Source) -> Document:
    """The document a repository is stored as (`_id`: its url), as creating one has always
    written it: a source's `source_type` and no collection fields, a collection the reverse."""
    document: Document = {
        "_id": source.url, "url": source.url, "id": source.id, "repo_type": source.repo_type,
        "short_code": source.short_code, "name": source.name, "full_name": source.full_name,
        "owner": source.owner, "owner_type": source.owner_type, "owner_url": source.owner_url,
        "created_on": source.created_on, "updated_on": source.updated_on,
        "created_by": source.created_by, "updated_by": source.updated_by}
    for key in SOURCE_ATTRIBUTES:
        if key != "source_type" or not source.is_collection:
            document[key] = getattr(source, key)
    if source.is_collection:
        for key in COLLECTION_ATTRIBUTES:
            document[key] = getattr(source, key)
    if source.supported_locales is not None:
        document["supported_locales"] = list(source.supported_locales)
    document.update(seq=source.seq, mapping_counter=source.mapping_counter,
                    last_updated=source.last_updated or "")
    return document


def source_record(document: Document) -> Source:
    """A stored repository (one stored without `repo_type` is a source, without
    `public_access` private ("None"), without `updated_on` unchanged since created; an empty
    `last_updated`, as stored before any content, reads as none)."""
    locales = document.get("supported_locales")
    return Source(
        url=document["_id"], id=document["id"],
        repo_type=document.get("repo_type") or SOURCE_TYPE, owner=document["owner"],
        owner_type=document["owner_type"], owner_url=document["owner_url"],
        public_access=document.get("public_access") or "None",
        created_on=document["created_on"],
        updated_on=document.get("updated_on") or document["created_on"],
        created_by=document.get("created_by"), updated_by=document.get("updated_by"),
        seq=int(document.get("seq") or 0), last_updated=document.get("last_updated") or None,
        mapping_counter=int(document.get("mapping_counter") or 0),
        supported_locales=None if locales is None else tuple(locales),
        **{key: document.get(key) for key in (*SOURCE_METADATA, *SOURCE_ATTRIBUTES,
                                              *COLLECTION_ATTRIBUTES)
           if key not in ("supported_locales", "public_access")})


def source_changes_document(changes: SourceChanges) -> Document:
    """The stored fields `Sources.update` sets."""
    document: Document = dict(changes)
    locales = changes.get("supported_locales")
    if locales is not None:
        document["supported_locales"] = list(locales)
    return document


# --- webhooks (app/webhooks) -----------------------------------------------------------------


def last_delivery_document(last: LastDelivery) -> Document:
    """The `last_delivery` a hook keeps."""
    return {"id": last.id, "event": last.event, "state": last.state, "at": last.at,
            "status": last.status, "error": last.error}


def webhook_document(hook: Webhook) -> Document:
    """A hook as stored (`repository_deleted` only once its repository is gone)."""
    document: Document = {
        "_id": hook.id, "repository": hook.repository, "url": hook.url, "events": list(hook.events),
        "description": hook.description, "active": hook.active, "secret": hook.secret,
        "origin": hook.origin, "failures": hook.failures, "disabled_on": hook.disabled_on,
        "disabled_reason": hook.disabled_reason,
        "last_delivery": last_delivery_document(hook.last_delivery) if hook.last_delivery else None,
        "created_on": hook.created_on, "created_by": hook.created_by,
        "updated_on": hook.updated_on, "updated_by": hook.updated_by}
    if hook.repository_deleted:
        document["repository_deleted"] = True
    return document


def webhook_record(document: Document) -> Webhook:
    """A stored hook (`repository_deleted` absent until its repository is gone)."""
    last = document.get("last_delivery")
    return Webhook(
        id=document["_id"], repository=document["repository"], url=document["url"],
        events=tuple(document["events"]), secret=document["secret"],
        active=bool(document.get("active", True)), description=document.get("description") or "",
        origin=document.get("origin") or "", failures=int(document.get("failures") or 0),
        disabled_on=document.get("disabled_on"), disabled_reason=document.get("disabled_reason"),
        last_delivery=LastDelivery(**last) if last else None,
        created_on=document.get("created_on") or "", created_by=document.get("created_by"),
        updated_on=document.get("updated_on") or "", updated_by=document.get("updated_by"),
        repository_deleted=bool(document.get("repository_deleted")))


def webhook_changes_document(changes: WebhookChanges) -> Document:
    """The stored fields `Webhooks.update` sets."""
    document: Document = dict(changes)
    if "events" in changes:
        document["events"] = list(changes["events"])
    if "last_delivery" in changes:
        document["last_delivery"] = last_delivery_document(changes["last_delivery"])
    return document


def attempt_document(attempt: DeliveryAttempt) -> Document:
    """One of the `attempts` a delivery keeps."""
    return {"at": attempt.at, "status": attempt.status, "duration_ms": attempt.duration_ms,
            "error": attempt.error}


def delivery_document(delivery: WebhookDelivery) -> Document:
    """A delivery as stored (`error` only once it was cancelled for one)."""
    document: Document = {
        "_id": delivery.id, "hook": delivery.hook, "repository": delivery.repository,
        "event": delivery.event, "body": delivery.body, "state": delivery.state,
        "created_on": delivery.created_on,
        "attempts": [attempt_document(attempt) for attempt in delivery.attempts],
        "attempt_count": delivery.attempt_count, "next_attempt_on": delivery.next_attempt_on,
        "delivered_on": delivery.delivered_on, "redelivery_of": delivery.redelivery_of}
    if delivery.error is not None:
        document["error"] = delivery.error
    return document


def delivery_record(document: Document) -> WebhookDelivery:
    """A stored delivery (`error` absent unless it was cancelled for one)."""
    return WebhookDelivery(
        id=document["_id"], hook=document["hook"], repository=document["repository"],
        event=document["event"], body=document["body"], state=document["state"],
        created_on=document["created_on"],
        attempts=tuple(DeliveryAttempt(**attempt) for attempt in document.get("attempts") or ()),
        attempt_count=int(document.get("attempt_count") or 0),
        next_attempt_on=document.get("next_attempt_on"),
        delivered_on=document.get("delivered_on"), redelivery_of=document.get("redelivery_of"),
        error=document.get("error"))


def delivery_changes_document(changes: DeliveryChanges) -> Document:
    """The stored fields `WebhookDeliveries.update` sets."""
    document: Document = dict(changes)
    if "attempts" in changes:
        document["attempts"] = [attempt_document(attempt) for attempt in changes["attempts"]]
    return document


class Documents(Protocol):
    """What a backend keeps a repository's documents in (a SQLite `DocTable`, a MongoDB
    collection's `DocumentRepository`): addressed by `_id`, dumped and loaded as they are."""

    def get(self, key: str) -> Document | None: ...

    def insert(self, document: Document) -> None: ...

    def update(self, key: str, changes: Document) -> Document | None: ...

    def delete(self, key: str) -> None: ...

    def dump(self) -> Iterator[Document]: ...

    def load(self, documents: Iterable[Document]) -> int: ...


class Recorded(Generic[Record]):
    """The record side both backends share: a repository's records read, inserted, changed and
    deleted over its `documents`, converted here; `dump`/`load` move the documents unchanged."""

    documents: Documents
    # Each repository's two conversions (this module's functions, as static attributes): the
    # record a stored document holds, and the document a record is stored as.
    record: Callable[[Document], Record]
    stored: Callable[[Record], Document]

    def get(self, key: str) -> Record | None:
        document = self.documents.get(key)
        return None if document is None else self.record(document)

    def insert(self, record: Record) -> None:
        self.documents.insert(self.stored(record))

    def _set(self, key: str, fields: Document) -> Record | None:
        document = self.documents.update(key, fields)
        return None if document is None else self.record(document)

    def delete(self, key: str) -> None:
        self.documents.delete(key)

    def dump(self) -> Iterator[Document]:
        return self.documents.dump()

    def load(self, documents: Iterable[Document]) -> int:
        return self.documents.load(documents)


class RecordedWebhooks(Recorded[Webhook], interfaces.Webhooks):
    """Webhooks as records over a backend's documents; the backend adds its queries."""

    record = staticmethod(webhook_record)
    stored = staticmethod(webhook_document)

    def update(self, hook_id: str, **changes: Unpack[WebhookChanges]) -> Webhook | None:
        return self._set(hook_id, webhook_changes_document(changes))


class RecordedDeliveries(Recorded[WebhookDelivery], interfaces.WebhookDeliveries):
    """Webhook deliveries as records over a backend's documents; the backend adds its queries."""

    record = staticmethod(delivery_record)
    stored = staticmethod(delivery_document)

    def update(self, delivery_id: str,
               **changes: Unpack[DeliveryChanges]) -> WebhookDelivery | None:
        return self._set(delivery_id, delivery_changes_document(changes))


class RecordedVersions(Recorded[Version], interfaces.Versions):
    """Versions as records over a backend's documents; the backend adds its queries."""

    record = staticmethod(version_record)
    stored = staticmethod(version_document)

    def update(self, url: str, **changes: Unpack[VersionChanges]) -> Version | None:
        return self._set(url, dict(changes))


class RecordedSources(Recorded[Source], interfaces.Sources):
    """Sources and collections as records over a backend's documents; the backend adds its
    counters and queries."""

    record = staticmethod(source_record)
    stored = staticmethod(source_document)

    def update(self, url: str, **changes: Unpack[SourceChanges]) -> Source | None:
        return self._set(url, source_changes_document(changes))
