"""MongoDB repositories of webhooks and their delivery log (app/webhooks); counts and the switch
off after failures are single-document atomic updates."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from ...model import Document
from .. import interfaces
from .content import DocumentRepository


class Webhooks(DocumentRepository, interfaces.Webhooks):
    """The `webhooks` collection."""

    def __init__(self, db: Any) -> None:
        super().__init__(db["webhooks"])

    def ensure_indexes(self) -> None:
        self.collection.create_index([("repository", ASCENDING), ("created_on", ASCENDING)])
        self.collection.create_index([("active", ASCENDING), ("disabled_on", DESCENDING)])

    def for_repository(self, repository: str) -> list[Document]:
        return list(self.collection.find({"repository": repository})
                    .sort([("created_on", ASCENDING), ("_id", ASCENDING)]))

    def record_attempt(self, hook_id: str, ok: bool, now: str, disable_after: int,
                       reason: str) -> Document | None:
        if ok:
            hook: Document | None = self.collection.find_one_and_update(
                {"_id": hook_id}, {"$set": {"failures": 0}}, return_document=ReturnDocument.AFTER)
            return hook
        hook = self.collection.find_one_and_update(
            {"_id": hook_id}, {"$inc": {"failures": 1}}, return_document=ReturnDocument.AFTER)
        if hook is None or hook["failures"] < disable_after:
            return hook
        # Only the attempt that finds it still on switches it off (and names the reason).
        switched: Document | None = self.collection.find_one_and_update(
            {"_id": hook_id, "active": True},
            {"$set": {"active": False, "disabled_on": now, "disabled_reason": reason}},
            return_document=ReturnDocument.AFTER)
        return switched or self.get(hook_id)

    def disabled(self, limit: int = 100) -> tuple[list[Document], int]:
        return self.page({"active": False, "disabled_on": {"$ne": None}},
                         [("disabled_on", DESCENDING), ("_id", DESCENDING)], 0, limit)


class WebhookDeliveries(DocumentRepository, interfaces.WebhookDeliveries):
    """The `webhook_deliveries` collection."""

    def __init__(self, db: Any) -> None:
        super().__init__(db["webhook_deliveries"])

    def ensure_indexes(self) -> None:
        self.collection.create_index([("hook", ASCENDING), ("created_on", DESCENDING),
                                      ("_id", DESCENDING)])

    def page(self, hook_id: str, skip: int, limit: int  # type: ignore[override]
             ) -> tuple[list[Document], int]:
        return super().page({"hook": hook_id}, [("created_on", DESCENDING), ("_id", DESCENDING)],
                            skip, limit)

    def prune(self, hook_id: str, keep: int) -> int:
        kept = [found["_id"] for found in self.collection.find(
            {"hook": hook_id}, {"_id": 1}).sort([("created_on", DESCENDING),
                                                 ("_id", DESCENDING)]).limit(keep)]
        done = self.collection.delete_many({"hook": hook_id, "_id": {"$nin": kept}})
        return int(done.deleted_count)

    def delete_for_hook(self, hook_id: str) -> None:
        self.collection.delete_many({"hook": hook_id})
