"""SQLite repositories of webhooks and their delivery log (app/webhooks)."""

from __future__ import annotations

from ...model.records import Webhook, WebhookDelivery
from ..records import RecordedDeliveries, RecordedWebhooks
from .db import DocTable, SqliteDatabase


class Webhooks(RecordedWebhooks):
    """`webhooks`: the repository, on/off flag and failure count in columns, the rest in `doc`."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "webhooks", ("repository", "created_on", "failures",
                                                     "disabled_on"), flags=("active",))
        self.documents = self.table

    def for_repository(self, repository: str) -> list[Webhook]:
        return [self.record(document) for document in
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
        return None if hook is None else self.record(hook)

    def disabled(self, limit: int = 100) -> tuple[list[Webhook], int]:
        clause = "active = 0 AND disabled_on IS NOT NULL"
        found, total = self.table.page(clause, (), "disabled_on DESC, _id DESC", 0, limit)
        return [self.record(document) for document in found], total


class WebhookDeliveries(RecordedDeliveries):
    """`webhook_deliveries`: one row per delivery, its hook and creation time in columns."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self.table = DocTable(database, "webhook_deliveries", ("hook", "created_on", "state"))
        self.documents = self.table

    def page(self, hook_id: str, skip: int, limit: int) -> tuple[list[WebhookDelivery], int]:
        found, total = self.table.page("hook = ?", (hook_id,), "created_on DESC, _id DESC", skip,
                                       limit)
        return [self.record(document) for document in found], total

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
