"""The repositories of accounts: users (and their API tokens), organizations, console sessions."""

from __future__ import annotations

from ...model import Document, Visibility
from .documents import DocumentRepository


class Users(DocumentRepository):
    """User accounts and their hashed API tokens."""

    def search(self, q: str | None, skip: int, limit: int) -> tuple[list[Document], int]:
        """Users by username, with `q` (any case) in their username or name when given."""
        raise NotImplementedError

    def page_of(self, usernames: list[str], skip: int,
                limit: int) -> tuple[list[Document], int]:
        """One page of the named users (an org's members), by username."""
        raise NotImplementedError

    def add_token(self, token: Document) -> None:
        """Store an API token's record: `_id` its sha256, `username`, `id` (public, unique per
        user), `prefix`, `label`, `created_on`, `created_by`, `expires_on`, `last_used_on`,
        `revoked_on`, `bootstrap` (ADMIN_TOKEN's). DuplicateKey if that hash is stored already:
        a token is never taken over, nor a revoked one brought back."""
        raise NotImplementedError

    def token(self, token_hash: str) -> Document | None:
        """The record of a token by its sha256 (revoked and expired ones too)."""
        raise NotImplementedError

    def token_of(self, username: str, token_id: str) -> Document | None:
        """One token record of a user, by its public id."""
        raise NotImplementedError

    def tokens_of(self, username: str, include_revoked: bool) -> list[Document]:
        """A user's token records, newest first."""
        raise NotImplementedError

    def update_token(self, token_hash: str, changes: Document) -> None:
        """Set fields of a token record (`revoked_on` revokes it: the record stays, so its
        value is never accepted again)."""
        raise NotImplementedError

    def touch_token(self, token_hash: str, used_on: str, before: str) -> None:
        """Record a token's use at `used_on` unless it was recorded at or after `before`
        (so a busy token is written once per interval, not on every request)."""
        raise NotImplementedError

    def bootstrap_tokens(self) -> list[Document]:
        """The records of tokens issued from ADMIN_TOKEN that are not revoked."""
        raise NotImplementedError


class Orgs(DocumentRepository):
    """Organizations; `members` (usernames) is part of each document."""

    def add_member(self, org_id: str, username: str) -> None:
        raise NotImplementedError

    def remove_member(self, org_id: str, username: str) -> bool:
        """Take a user out of an org; False if they were not a member."""
        raise NotImplementedError

    def for_member(self, username: str) -> list[str]:
        """Ids of the orgs a user belongs to."""
        raise NotImplementedError

    def is_public(self, org_id: str) -> bool:
        """Whether an org exists and anyone may see it (its `public_access` is not "None")."""
        raise NotImplementedError

    def search(self, q: str | None, member: str | None, visible_to: Visibility | None,
               skip: int, limit: int) -> tuple[list[Document], int]:
        """Orgs by id: public ones and the caller's (all for None, an admin), with `q` (any
        case) in their id or name, with `member` among their members, when given."""
        raise NotImplementedError


class ConsoleSessions:
    """Signed-in sessions of the web console, addressed by the sha256 of their id (the browser
    holds the id; the store never does)."""

    def insert(self, session: Document) -> None:
        """Insert a session with `_id` and `expires_at`; DuplicateKey if the id exists."""
        raise NotImplementedError

    def get(self, key: str) -> Document | None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def purge(self, now: str) -> int:
        """Delete the sessions that expired before `now`; how many."""
        raise NotImplementedError
