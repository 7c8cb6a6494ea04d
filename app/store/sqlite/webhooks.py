"""SQLite repositories of webhooks and their delivery log (app/webhooks)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Unpack

from ...model import Document
from ...model.records import DeliveryChanges, Webhook, WebhookChanges, WebhookDelivery
from .. import interfaces
from ..records import (
    delivery_changes_document,
    delivery_document,
    delivery_record,
    webhook_changes_document,
    webhook_document,
    webhook_record,
)
from .db import DocTable, SqliteDatabase


class Webhooks(interfaces.Webhooks):
    """`webhooks`: the repository, on/off flag and failure count in columns, the rest in `doc`."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "webhooks", ("repository", "created_on", "failures",
                                                     "disabled_on"), flags=("active",))

    def get(self, hook_id: str) -> Webhook | None:
        document = self.table.get(hook_id)
        return None if document is None else webhook_record(document)

    def insert(self, hook: Webhook) -> None:
        self.table.insert(webhook_document(hook))

    def update(self, hook_id: str, **changes: Unpack[WebhookChanges]) -> Webhook | None:
        document = self.table.update(hook_id, webhook_changes_document(changes))
        return None if document is None else webhook_record(document)

    def delete(self, hook_id: str) -> None:
        self.table.delete(hook_id)

    def for_repository(self, repository: str) -> list[Webhook]:
        return [webhook_record(document) for document in
                self.table.where("repository = ?", (repository,), "created_on, _id")]

    def record_attempt(self, hook_id: str, ok: bool, now: str, disable_after: int,
                       reason: str) -> Webhook | None:
        # One statement, so two workers' attempts cannot lose a count between them.
        with self.database.transaction() as connection:
            if ok:
                connection.execute("UPDATE webhooks SET failures = 0 WHERE _id = ?", (hook_id,))
            else:
                connection.execute(
                    "UPDATE webhooks SET failures = failures + 1, "
                    "active = CASE WHEN failures + 1 >= ? THEN 0 ELSE active END, "
                    "disabled_on = CASE WHEN active = 1 AND failures + 1 >= ? THEN ? "
                    "ELSE disabled_on END WHERE _id = ?",
                    (disable_after, disable_after, now, hook_id))
            hook = self.table.get(hook_id)
            if hook is not None and not ok and hook["disabled_on"] == now \
                    and hook.get("disabled_reason") is None:
                hook = self.table.update(hook_id, {"disabled_reason": reason})
        return None if hook is None else webhook_record(hook)

    def disabled(self, limit: int = 100) -> tuple[list[Webhook], int]:
        clause = "active = 0 AND disabled_on IS NOT NULL"
        found, total = self.table.page(clause, (), "disabled_on DESC, _id DESC", 0, limit)
        return [webhook_record(document) for document in found], total

    def dump(self) -> Iterator[Document]:
        return self.table.dump()

    def load(self, documents: Iterable[Document]) -> int:
        return self.table.load(documents)


class WebhookDeliveries(interfaces.WebhookDeliveries):
    """`webhook_deliveries`: one row per delivery, its hook and creation time in columns."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "webhook_deliveries", ("hook", "created_on", "state"))

    def get(self, delivery_id: str) -> WebhookDelivery | None:
        document = self.table.get(delivery_id)
        return None if document is None else delivery_record(document)

    def insert(self, delivery: WebhookDelivery) -> None:
        self.table.insert(delivery_document(delivery))

    def update(self, delivery_id: str,
               **changes: Unpack[DeliveryChanges]) -> WebhookDelivery | None:
        document = self.table.update(delivery_id, delivery_changes_document(changes))
        return None if document is None else delivery_record(document)

    def page(self, hook_id: str, skip: int, limit: int) -> tuple[list[WebhookDelivery], int]:
        found, total = self.table.page("hook = ?", (hook_id,), "created_on DESC, _id DESC", skip,
                                       limit)
        return [delivery_record(document) for document in found], total

    def prune(self, hook_id: str, keep: int) -> int:
        with self.database.transaction() as connection:
            done = connection.execute(
                "DELETE FROM webhook_deliveries WHERE hook = ? AND _id NOT IN (SELECT _id FROM "
                "webhook_deliveries WHERE hook = ? ORDER BY created_on DESC, _id DESC LIMIT ?)",
                (hook_id, hook_id, keep))
        return done.rowcount

    def delete_for_hook(self, hook_id: str) -> None:
        with self.database.transaction() as connection:
            connection.execute("DELETE FROM webhook_deliveries WHERE hook = ?", (hook_id,))

    def dump(self) -> Iterator[Document]:
        return self.table.dump()

    def load(self, documents: Iterable[Document]) -> int:
        return self.table.load(documents)
