"""The repositories of webhooks and their deliveries."""

from __future__ import annotations

from ...model import Document, DocumentPage
from .documents import DocumentRepository


class Webhooks(DocumentRepository):
    """Webhooks of repositories (`_id` = hook id): target, events, secret, state, failures."""

    def for_repository(self, repository: str) -> list[Document]:
        """The hooks of one repository (source or collection url), oldest first."""
        raise NotImplementedError

    def record_attempt(self, hook_id: str, ok: bool, now: str, disable_after: int,
                       reason: str) -> Document | None:
        """Count one delivery attempt atomically: a success resets `failures`, a failure adds
        one and, reaching `disable_after`, turns the hook off (`active` false, `disabled_on`,
        `disabled_reason`); the hook after the change."""
        raise NotImplementedError

    def disabled(self, limit: int = 100) -> tuple[list[Document], int]:
        """Hooks turned off after failing (not those their owner switched off), newest first,
        and how many there are."""
        raise NotImplementedError


class WebhookDeliveries(DocumentRepository):
    """The delivery log of webhooks (`_id` = delivery id): event, body, state, last attempts."""

    def page(self, hook_id: str, skip: int, limit: int) -> DocumentPage:
        """A hook's deliveries, newest first, and how many it has."""
        raise NotImplementedError

    def prune(self, hook_id: str, keep: int) -> int:
        """Delete a hook's deliveries but the newest `keep`; how many went."""
        raise NotImplementedError

    def delete_for_hook(self, hook_id: str) -> None:
        raise NotImplementedError
