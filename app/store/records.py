"""The stored shape of the model's records: the documents both backends keep (`_id` and all, the
same on SQLite and MongoDB, so `termsync db copy` moves them unchanged), and the records
(`app/model/records.py`) the repositories return. Backends convert here, at their edge."""

from __future__ import annotations

from ..model import Document
from ..model.records import ExportFile, ExportRecord, Job


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
