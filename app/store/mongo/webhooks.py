"""MongoDB repositories of webhooks and their delivery log (app/webhooks); counts and the switch
off after failures are single-document atomic updates."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from ...model import Document
from ...model.records import Webhook, WebhookDelivery
from ..records import RecordedDeliveries, RecordedWebhooks
from .content import DocumentRepository


class Webhooks(RecordedWebhooks):
    """The `webhooks` collection."""

    documents: DocumentRepository

    def __init__(self, db: Any) -> None:
        self.documents = DocumentRepository(db["webhooks"])
        self.collection = self.documents.collection

    def ensure_indexes(self) -> None:
        self.collection.create_index([("repository", ASCENDING), ("created_on", ASCENDING)])
        self.collection.create_index([("active", ASCENDING), ("disabled_on", DESCENDING)])

    def for_repository(self, repository: str) -> list[Webhook]:
        return [self.record(document) for document in self.collection.find(
            {"repository": repository}).sort([("created_on", ASCENDING), ("_id", ASCENDING)])]

    def record_attempt(self, hook_id: str, ok: bool, now: str, disable_after: int,
                       reason: str) -> Webhook | None:
        if ok:
            hook: Document | None = self.collection.find_one_and_update(
                {"_id": hook_id}, {"$set": {"failures": 0}}, return_document=ReturnDocument.AFTER)
            return None if hook is None else self.record(hook)
        hook = self.collection.find_one_and_update(
            {"_id": hook_id}, {"$inc": {"failures": 1}}, return_document=ReturnDocument.AFTER)
        if hook is None or hook["failures"] < disable_after:
            return None if hook is None else self.record(hook)
        # Only the attempt that finds it still on switches it off (and names the reason).
        switched: Document | None = self.collection.find_one_and_update(
            {"_id": hook_id, "active": True},
            {"$set": {"active": False, "disabled_on": now, "disabled_reason": reason}},
            return_document=ReturnDocument.AFTER)
        return self.record(switched) if switched else self.get(hook_id)

    def disabled(self, limit: int = 100) -> tuple[list[Webhook], int]:
        found, total = self.documents.page({"active": False, "disabled_on": {"$ne": None}},
                                           [("disabled_on", DESCENDING), ("_id", DESCENDING)],
                                           0, limit)
        return [self.record(document) for document in found], total


class WebhookDeliveries(RecordedDeliveries):
    """The `webhook_deliveries` collection."""

    documents: DocumentRepository

    def __init__(self, db: Any) -> None:
        self.documents = DocumentRepository(db["webhook_deliveries"])
        self.collection = self.documents.collection

    def ensure_indexes(self) -> None:
        self.collection.create_index([("hook", ASCENDING), ("created_on", DESCENDING),
                                      ("_id", DESCENDING)])

    def page(self, hook_id: str, skip: int, limit: int) -> tuple[list[WebhookDelivery], int]:
        found, total = self.documents.page({"hook": hook_id},
                                           [("created_on", DESCENDING), ("_id", DESCENDING)],
                                           skip, limit)
        return [self.record(document) for document in found], total

    def prune(self, hook_id: str, keep: int) -> int:
        kept = [found["_id"] for found in self.collection.find(
            {"hook": hook_id}, {"_id": 1}).sort([("created_on", DESCENDING),
                                                 ("_id", DESCENDING)]).limit(keep)]
        done = self.collection.delete_many({"hook": hook_id, "_id": {"$nin": kept}})
        return int(done.deleted_count)

    def delete_for_hook(self, hook_id: str) -> None:
        self.collection.delete_many({"hook": hook_id})
