"""Console sessions: an API token pasted once, kept server-side, and the caller it names.

The browser holds only a random session id (in an HttpOnly, SameSite=Strict cookie). The store
keeps the session under the sha256 of that id, with the API token sealed by a key derived from
the id: someone who reads the database learns neither a usable session id nor the token. Every
request turns the token back into its caller through `Accounts.caller_for_token`, exactly as an
API request with `Authorization: Token ...` does, so a revoked token or an inactive account ends
the session at once, and what the console shows is what the API shows that caller.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..domain.accounts import Accounts, Caller, hash_token
from ..domain.errors import Unauthorized
from ..store.base import DuplicateKey
from ..store.interfaces import ConsoleSessions
from ..timeutil import format_time

logger = logging.getLogger(__name__)

SEAL_CONTEXT = b"termsync console token\x00"


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in session as a request sees it."""

    key: str  # sha256 of the session id: the store's key
    username: str
    csrf_token: str
    expires_at: str
    token_hash: str = ""  # the sha256 of the API token it signed in with (the account page marks it)


def session_key(session_id: str) -> str:
    """The store's key of a session: the sha256 of its id (the id itself is never stored)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _pad(session_id: str, length: int) -> bytes:
    return hashlib.shake_256(SEAL_CONTEXT + session_id.encode()).digest(length)


def seal(token: str, session_id: str) -> str:
    """The token XOR a pad drawn from the session id (a one-time pad: each id seals one token)."""
    data = token.encode()
    return bytes(a ^ b for a, b in zip(data, _pad(session_id, len(data)), strict=True)).hex()


def unseal(sealed: str, session_id: str) -> str:
    """The token `seal` sealed with this session id."""
    data = bytes.fromhex(sealed)
    return bytes(a ^ b for a, b in zip(data, _pad(session_id, len(data)),
                                       strict=True)).decode(errors="replace")


def same_token(expected: str, given: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens."""
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


class SessionService:
    """Sign in, resume, sign out and purge console sessions."""

    def __init__(self, sessions: ConsoleSessions, accounts: Accounts, lifetime: timedelta) -> None:
        self.sessions = sessions
        self.accounts = accounts
        self.lifetime = lifetime

    def sign_in(self, token: str) -> tuple[str, Caller, ConsoleSession]:
        """A new session for an API token (Unauthorized if it names nobody); returns the id
        the browser keeps, the caller and the session."""
        caller = self.accounts.caller_for_token(token.strip() or None)
        if not caller.authenticated:
            raise Unauthorized("Paste an API token to sign in.")
        assert caller.username is not None
        now = datetime.now(UTC)
        while True:
            session_id = secrets.token_urlsafe(32)
            document = {"_id": session_key(session_id), "username": caller.username,
                        "token": seal(token.strip(), session_id),
                        "csrf": secrets.token_urlsafe(32), "created_on": format_time(now),
                        "expires_at": format_time(now + self.lifetime)}
            try:
                self.sessions.insert(document)
            except DuplicateKey:  # 256 random bits: never, but never is not a proof
                continue
            logger.info("console: %s signed in", caller.username)
            return session_id, caller, self._session(document, token.strip())

    def resume(self, session_id: str | None) -> tuple[Caller, ConsoleSession] | None:
        """The caller and session of a session id; None when it is unknown, expired, or its
        token no longer names an active account (then the session is removed)."""
        if not session_id:
            return None
        key = session_key(session_id)
        document = self.sessions.get(key)
        if document is None:
            return None
        if document["expires_at"] <= format_time(datetime.now(UTC)):
            self.sessions.delete(key)
            return None
        token = unseal(document["token"], session_id)
        try:
            caller = self.accounts.caller_for_token(token)
        except Unauthorized:
            logger.info("console: session of %s ended: its token no longer signs in",
                        document.get("username"))
            self.sessions.delete(key)
            return None
        return caller, self._session(document, token)

    def sign_out(self, session_id: str | None) -> None:
        """End a session (nothing happens for an unknown one)."""
        if session_id:
            self.sessions.delete(session_key(session_id))

    def purge(self) -> int:
        """Delete expired sessions (a maintenance task); how many."""
        return self.sessions.purge(format_time(datetime.now(UTC)))

    @staticmethod
    def _session(document: dict[str, str], token: str) -> ConsoleSession:
        return ConsoleSession(document["_id"], document["username"], document["csrf"],
                              document["expires_at"], hash_token(token))
