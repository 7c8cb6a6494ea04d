"""The repositories of webhooks and their deliveries: they return the model's records
(`app/model/records.py`), and `dump`/`load` documents for `termsync db copy`."""

from __future__ import annotations

from typing import Unpack

from ...model.records import DeliveryChanges, Webhook, WebhookChanges, WebhookDelivery
from .documents import Records


class Webhooks(Records[Webhook]):
    """Webhooks of repositories, by id: target, events, secret, state, failures."""

    def update(self, hook_id: str, **changes: Unpack[WebhookChanges]) -> Webhook | None:
        """Set fields; the hook as it is now (None if there is none)."""
        raise NotImplementedError

    def for_repository(self, repository: str) -> list[Webhook]:
        """The hooks of one repository (source or collection url), oldest first."""
        raise NotImplementedError

    def record_attempt(self, hook_id: str, ok: bool, now: str, disable_after: int,
                       reason: str) -> Webhook | None:
        """Count one delivery attempt atomically: a success resets `failures`, a failure adds
        one and, reaching `disable_after`, turns the hook off (`active` false, `disabled_on`,
        `disabled_reason`); the hook after the change."""
        raise NotImplementedError

    def disabled(self, limit: int = 100) -> tuple[list[Webhook], int]:
        """Hooks turned off after failing (not those their owner switched off), newest first,
        and how many there are."""
        raise NotImplementedError


class WebhookDeliveries(Records[WebhookDelivery]):
    """The delivery log of webhooks, by delivery id: event, body, state, last attempts."""

    def update(self, delivery_id: str,
               **changes: Unpack[DeliveryChanges]) -> WebhookDelivery | None:
        """Set fields; the delivery as it is now (None if there is none)."""
        raise NotImplementedError

    def page(self, hook_id: str, skip: int, limit: int) -> tuple[list[WebhookDelivery], int]:
        """A hook's deliveries, newest first, and how many it has."""
        raise NotImplementedError

    def prune(self, hook_id: str, keep: int) -> int:
        """Delete a hook's deliveries but the newest `keep`; how many went."""
        raise NotImplementedError

    def delete_for_hook(self, hook_id: str) -> None:
        raise NotImplementedError
