"""Users, organizations, API tokens and who may see or change what."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import timeutil
from ..model import COLLECTION_TYPE, Source, Visibility
from ..store import Store
from ..store.base import DuplicateKey
from ..timeutil import now_iso
from .errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized

logger = logging.getLogger(__name__)

ORG = "Organization"
USER = "User"
OWNER_KINDS = {"orgs": ORG, "users": USER}


def hash_token(token: str) -> str:
    """Tokens are stored as their sha256; the raw token is never kept."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who is making a request: a user (with their orgs) or nobody."""

    username: str | None = None
    is_admin: bool = False
    orgs: frozenset[str] = field(default_factory=frozenset)

    @property
    def authenticated(self) -> bool:
        return self.username is not None


ANONYMOUS = Caller()
# Who acts from the `termsync` command line (and at startup): an administrator with no account.
OPERATOR = Caller(is_admin=True)

MIN_CHOSEN_TOKEN_LENGTH = 32  # a caller-chosen token; the server draws 256 bits itself
MAX_TOKEN_LENGTH = 256
TOKEN_PREFIX_LENGTH = 6  # shown in lists, to tell tokens apart; 250 of 256 bits stay unknown
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)  # a token's last use is recorded this often at most
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")


def check_chosen_token(token: str) -> None:
    """A token a caller chooses: MIN_CHOSEN_TOKEN_LENGTH to MAX_TOKEN_LENGTH visible ASCII
    characters (no spaces: it travels in a header), else Invalid."""
    if not MIN_CHOSEN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH \
            or not _TOKEN_CHARACTERS.fullmatch(token):
        raise Invalid(f"A token you choose must have {MIN_CHOSEN_TOKEN_LENGTH} to "
                      f"{MAX_TOKEN_LENGTH} visible ASCII characters (no spaces); leave it out to "
                      "have the server draw one.",
                      errors={"token": [f"At least {MIN_CHOSEN_TOKEN_LENGTH} visible ASCII "
                                        "characters."]})


@dataclass(frozen=True)
class Owner:
    """An organization or a user that owns sources."""

    kind: str  # ORG or USER
    id: str
    public_access: str = "View"

    @property
    def url(self) -> str:
        return f"/{'orgs' if self.kind == ORG else 'users'}/{self.id}/"


class Accounts:
    """Authentication and authorization over the users, tokens and orgs repositories."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- authentication -------------------------------------------------------------------
    def caller_for_token(self, token: str | None) -> Caller:
        """The caller a token belongs to; a token that matches nobody, is revoked or expired, or
        whose account is deactivated is a 401, at once (nothing is cached between requests)."""
        if token is None:
            return ANONYMOUS
        # Tokens are looked up by their sha256, never compared as plain text: the time a lookup
        # takes says nothing about how much of a stored token a guess got right.
        record = self.store.users.token(hash_token(token))
        user = self.store.users.get(record["username"]) if record is not None else None
        if record is None or user is None:
            raise Unauthorized("Invalid token.")
        if record.get("revoked_on"):
            raise Unauthorized("This token was revoked.")
        now = timeutil.now()
        stamp = timeutil.format_time(now)
        if record.get("expires_on") and record["expires_on"] <= stamp:
            raise Unauthorized("This token has expired.")
        if not user.get("is_active", True):
            raise Unauthorized("This account is inactive.")
        self._touch(record, now)
        return self._caller(user["_id"], user)

    def caller_for(self, username: str) -> Caller:
        """The caller a user is now (admin or not, their orgs as they are now), for work done in
        their name outside a request (an import job, the CLI, the demo); a user who is gone is
        a caller with no rights beyond the public's."""
        return self._caller(username, self.store.users.get(username) or {})

    def _caller(self, username: str, user: dict[str, Any]) -> Caller:
        """The caller of a user account as read: its admin flag, its orgs as they are now."""
        return Caller(username=username, is_admin=bool(user.get("is_admin")),
                      orgs=frozenset(self.store.orgs.for_member(username)))

    def _touch(self, record: dict[str, Any], now: datetime) -> None:
        """Record when a token was last used, at most once per TOKEN_TOUCH_INTERVAL: a token
        that probes every second costs a write a minute, not a write a request. Best effort: a
        database that takes no writes (full, read-only) still answers reads."""
        before = timeutil.format_time(now - TOKEN_TOUCH_INTERVAL)
        if record.get("last_used_on") and record["last_used_on"] >= before:
            return
        try:
            self.store.users.touch_token(record["_id"], timeutil.format_time(now), before)
        except Exception:
            logger.warning("could not record the use of token %s of %s", record.get("id"),
                           record.get("username"), exc_info=True)

    # --- users and tokens -----------------------------------------------------------------
    def create_user(self, username: str, *, name: str | None = None, email: str | None = None,
                    company: str | None = None, is_admin: bool = False) -> dict[str, Any]:
        """Create a user account."""
        now = now_iso()
        user = {"_id": username, "username": username, "name": name or username, "email": email,
                "company": company, "is_admin": is_admin, "is_active": True,
                "created_on": now, "updated_on": now}
        try:
            self.store.users.insert(user)
        except DuplicateKey:
            raise Conflict(f"User '{username}' already exists.") from None
        return user

    def list_users(self, caller: Caller, q: str | None, skip: int,
                   limit: int) -> tuple[list[dict[str, Any]], int]:
        """Users by username, with `q` in the username or name (administrators only)."""
        require_admin(caller)
        return self.store.users.search(q, skip, limit)

    def require_account(self, caller: Caller, username: str) -> dict[str, Any]:
        """The user whose account (tokens) the caller acts on: themself, or anyone for an admin
        (401 without a token, 403 for someone else's, 404 for a user that does not exist)."""
        if not caller.is_admin:
            require_login(caller)
            if caller.username != username:
                raise Forbidden("You may only manage your own tokens.")
        return self.get_user(username)

    def issue_token(self, caller: Caller, username: str, *, token: str | None = None,
                    label: str | None = None, expires_on: str | None = None,
                    bootstrap: bool = False) -> tuple[str, dict[str, Any]]:
        """Issue an API token for a user; return it (shown this once: only its sha256 is stored)
        and its record. The server draws it (256 random bits) unless the caller brings one of
        MIN_CHOSEN_TOKEN_LENGTH or more visible ASCII characters."""
        self.require_account(caller, username)
        if token is None:
            token = secrets.token_urlsafe(32)
        else:
            check_chosen_token(token)
        now = now_iso()
        if expires_on is not None and expires_on <= now:
            raise Invalid("expires_on must be in the future.",
                          errors={"expires_on": ["Not in the future."]})
        record = {"_id": hash_token(token), "username": username, "id": secrets.token_hex(8),
                  "prefix": token[:TOKEN_PREFIX_LENGTH], "label": label, "created_on": now,
                  "created_by": caller.username, "expires_on": expires_on,
                  "last_used_on": None, "revoked_on": None, "bootstrap": bootstrap}
        try:
            self.store.users.add_token(record)
        except DuplicateKey:
            raise Conflict("This token cannot be used: choose another one.") from None
        logger.info("token %s issued for %s by %s", record["id"], username,
                    caller.username or "the command line")
        return token, record

    def list_tokens(self, caller: Caller, username: str,
                    include_revoked: bool = False) -> list[dict[str, Any]]:
        """A user's tokens, newest first (never their values)."""
        self.require_account(caller, username)
        return self.store.users.tokens_of(username, include_revoked)

    def get_token(self, caller: Caller, username: str, token_id: str) -> dict[str, Any]:
        """One of a user's tokens by its id."""
        self.require_account(caller, username)
        record = self.store.users.token_of(username, token_id)
        if record is None:
            raise NotFound(f"Token '{token_id}' of '{username}' not found.")
        return record

    def revoke_token(self, caller: Caller, username: str, token_id: str) -> dict[str, Any]:
        """Revoke a token: the next request with it is a 401 and console sessions signed in
        with it end (builds and imports it started keep running). Revoking twice is once."""
        record = self.get_token(caller, username, token_id)
        if not record.get("revoked_on"):
            record["revoked_on"] = now_iso()
            self.store.users.update_token(record["_id"], {"revoked_on": record["revoked_on"]})
            logger.info("token %s of %s revoked by %s", token_id, username,
                        caller.username or "the command line")
        return record

    def set_active(self, caller: Caller, username: str, active: bool) -> dict[str, Any]:
        """Deactivate or reactivate a user (admins only; not their own account): a deactivated
        user's tokens are 401 at once and their console sessions end; what they published stays
        and the builds and imports they started keep running."""
        require_admin(caller)
        user = self.get_user(username)
        if not active and caller.username == username:
            raise Forbidden("You may not deactivate your own account.")
        if bool(user.get("is_active", True)) != active:
            user = self.store.users.update(username, {"is_active": active,
                                                      "updated_on": now_iso()}) or user
            logger.info("user %s %s by %s", username, "reactivated" if active else "deactivated",
                        caller.username or "the command line")
        return user

    def ensure_admin(self, username: str, token: str) -> None:
        """Bootstrap an admin user holding ADMIN_TOKEN (docs/security.md, Accounts and tokens).

        A new ADMIN_TOKEN replaces the one before: the tokens earlier values issued are revoked.
        A value that was revoked is never issued again (a stale config cannot bring it back)."""
        user = self.store.users.get(username)
        if user is None:
            try:
                self.create_user(username, is_admin=True)
            except Conflict:  # another process starting at the same moment created it
                user = self.store.users.get(username)
        if user is not None and not user.get("is_admin"):
            self.store.users.update(username, {"is_admin": True})
        token_hash = hash_token(token)
        record = self.store.users.token(token_hash)
        if record is not None and record.get("revoked_on"):
            logger.warning("ADMIN_TOKEN was revoked on %s: it is not issued again; configure a "
                           "new one to have a bootstrap admin token", record["revoked_on"])
            return
        if record is not None and record["username"] != username:
            logger.error("ADMIN_TOKEN is a token of user %s, not of %s: not issued",
                         record["username"], username)
            return
        if record is None:
            try:
                self.issue_token(OPERATOR, username, token=token, label="ADMIN_TOKEN",
                                 bootstrap=True)
            except Conflict:
                pass  # another process starting at the same moment issued it
        elif not record.get("bootstrap"):
            self.store.users.update_token(token_hash, {"bootstrap": True, "label": "ADMIN_TOKEN"})
        for earlier in self.store.users.bootstrap_tokens():
            if earlier["_id"] != token_hash:
                self.store.users.update_token(earlier["_id"], {"revoked_on": now_iso()})
                logger.warning("ADMIN_TOKEN changed: the token the earlier value issued (%s of "
                               "%s) is revoked", earlier.get("id"), earlier["username"])

    @staticmethod
    def sees_personal_data(caller: Caller, username: str) -> bool:
        """Personal data (email, account state) is for the user themself and admins only."""
        return caller.is_admin or caller.username == username

    def has_user(self, username: str) -> bool:
        return self.store.users.get(username) is not None

    def has_org(self, org_id: str) -> bool:
        return self.find_org(org_id) is not None

    def find_org(self, org_id: str) -> dict[str, Any] | None:
        """An organization by its id (or None), whoever may see it: for the server's own work."""
        return self.store.orgs.get(org_id)

    def get_user(self, username: str) -> dict[str, Any]:
        """A user account (404 if there is none)."""
        user = self.store.users.get(username)
        if user is None:
            raise NotFound(f"User '{username}' not found.")
        return user

    # --- organizations --------------------------------------------------------------------
    def create_org(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        """Create an organization; its creator becomes a member."""
        require_login(caller)
        now = now_iso()
        org = {"_id": payload["id"], "id": payload["id"], "name": payload.get("name") or payload["id"],
               "company": payload.get("company"), "website": payload.get("website"),
               "location": payload.get("location"),
               "public_access": payload.get("public_access") or "View",
               "extras": payload.get("extras") or {},
               "members": [caller.username] if caller.username else [],
               "created_on": now, "updated_on": now,
               "created_by": caller.username, "updated_by": caller.username}
        try:
            self.store.orgs.insert(org)
        except DuplicateKey:
            raise Conflict(f"Organization '{payload['id']}' already exists.") from None
        return org

    def add_member(self, org_id: str, username: str) -> None:
        """Make a user a member of an organization."""
        if not self.has_org(org_id):
            raise NotFound(f"Organization '{org_id}' not found.")
        self.get_user(username)
        self.store.orgs.add_member(org_id, username)

    def get_org(self, caller: Caller, org_id: str) -> dict[str, Any]:
        """An organization the caller may see (a private one is 404 to outsiders)."""
        org = self.store.orgs.get(org_id)
        if org is None or not self.can_see_org(caller, org):
            raise NotFound(f"Organization '{org_id}' not found.")
        return org

    @staticmethod
    def can_see_org(caller: Caller, org: dict[str, Any]) -> bool:
        """Anyone sees an org but a private one, which only its members and admins see."""
        return (org.get("public_access", "View") != "None" or caller.is_admin
                or org["_id"] in caller.orgs)

    def list_orgs(self, caller: Caller, skip: int, limit: int,
                  q: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Organizations the caller may see, by id (with `q` in their id or name)."""
        return self.store.orgs.search(q, None, visibility(caller), skip, limit)

    def orgs_of_user(self, caller: Caller, username: str, skip: int,
                     limit: int) -> tuple[list[dict[str, Any]], int]:
        """The organizations a user belongs to that the caller may see."""
        self.get_user(username)
        return self.store.orgs.search(None, username, visibility(caller), skip, limit)

    def list_members(self, caller: Caller, org_id: str, skip: int,
                     limit: int) -> tuple[list[dict[str, Any]], int]:
        """The members of an organization the caller may see, by username."""
        org = self.get_org(caller, org_id)
        return self.store.users.page_of(list(org.get("members") or []), skip, limit)

    def is_member(self, caller: Caller, org_id: str, username: str) -> bool:
        """Whether a user belongs to an organization the caller may see."""
        org = self.get_org(caller, org_id)
        return username in (org.get("members") or [])

    def remove_member(self, caller: Caller, org_id: str, username: str) -> None:
        """Take a user out of an organization (its members and admins only; 404 if not a member)."""
        self.get_org(caller, org_id)
        self.require_owner(caller, Owner(ORG, org_id))
        if not self.store.orgs.remove_member(org_id, username):
            raise NotFound(f"'{username}' is not a member of '{org_id}'.")

    def org_counts(self, org: dict[str, Any]) -> dict[str, int]:
        """OCL's counts on an organization: members, public sources and public collections."""
        url = f"/orgs/{org['_id']}/"
        return {"members": len(org.get("members") or []),
                "public_sources": self.store.sources.count_public(url),
                "public_collections": self.store.sources.count_public(url, COLLECTION_TYPE)}

    def user_counts(self, user: dict[str, Any]) -> dict[str, int]:
        """OCL's counts on a user: organizations, public sources and public collections."""
        orgs = len(self.store.orgs.for_member(user["_id"]))
        url = f"/users/{user['_id']}/"
        return {"orgs": orgs, "organizations": orgs,
                "public_sources": self.store.sources.count_public(url),
                "public_collections": self.store.sources.count_public(url, COLLECTION_TYPE)}

    # --- owners and rights ----------------------------------------------------------------
    def resolve_owner(self, caller: Caller, kind: str | None, owner_id: str | None) -> Owner:
        """The owner a URL names: /orgs/X/, /users/X/, or /user/ (the caller)."""
        if kind is None:
            require_login(caller)
            assert caller.username is not None
            return Owner(USER, caller.username)
        if OWNER_KINDS.get(kind) == ORG:
            org = self.get_org(caller, owner_id or "")
            return Owner(ORG, org["_id"], org.get("public_access", "View"))
        user = self.store.users.get(owner_id or "")
        if user is None:
            raise NotFound(f"User '{owner_id}' not found.")
        return Owner(USER, user["_id"])

    def owns(self, caller: Caller, owner: Owner) -> bool:
        """Admins, the owning user and members of the owning org act as owners."""
        if caller.is_admin:
            return True
        if owner.kind == USER:
            return caller.username == owner.id
        return owner.id in caller.orgs

    def is_public(self, source: Source) -> bool:
        """Whether anyone may see a repository: it is public (`public_access` View or Edit) and
        so is its owner (any user; an org that is not private). The rule the stores' lists apply
        in their queries (`Sources.search`)."""
        if source.public_access not in ("View", "Edit"):
            return False
        return source.owner_type != ORG or self.store.orgs.is_public(source.owner)

    def can_view(self, caller: Caller, source: Source) -> bool:
        """Owners see their repositories; everyone sees public ones (`is_public`)."""
        return self.owns(caller, owner_of(source)) or self.is_public(source)

    def can_edit(self, caller: Caller, source: Source) -> bool:
        """Owners change their repositories; any signed-in user changes public `Edit` ones."""
        if self.owns(caller, owner_of(source)):
            return True
        return caller.authenticated and source.public_access == "Edit" \
            and self.is_public(source)

    def require_edit(self, caller: Caller, source: Source) -> None:
        """401 without a token, 403 with one that has no edit right on the source."""
        if self.can_edit(caller, source):
            return
        require_login(caller)
        noun = "collection" if source.repo_type == COLLECTION_TYPE else "source"
        raise Forbidden(f"You may not change {noun} '{source.id}'.")

    def require_owner(self, caller: Caller, owner: Owner) -> None:
        """Creating under an owner needs to be (a member of) that owner."""
        if self.owns(caller, owner):
            return
        require_login(caller)
        raise Forbidden(f"You are not a member of '{owner.id}'.")


def token_expiry(expires_on: str | None = None, days: int | None = None) -> str | None:
    """When a new token expires: an ISO 8601 time (any zone), or in `days` days; None: never."""
    if days is not None:
        return timeutil.format_time(timeutil.now() + timedelta(days=days))
    if expires_on is None:
        return None
    try:
        return timeutil.parse_time(expires_on)
    except ValueError:
        raise Invalid(f"expires_on {expires_on!r} is not an ISO 8601 time.",
                      errors={"expires_on": ["Not an ISO 8601 time."]}) from None


def token_state(record: dict[str, Any]) -> str:
    """A token's state: revoked, expired or active."""
    if record.get("revoked_on"):
        return "revoked"
    if record.get("expires_on") and record["expires_on"] <= timeutil.now_iso():
        return "expired"
    return "active"


def require_login(caller: Caller) -> None:
    """401 for an anonymous caller."""
    if not caller.authenticated:
        raise Unauthorized("Authentication credentials were not provided.",
                           headers={"WWW-Authenticate": 'Token realm="termsync"'})


def require_admin(caller: Caller) -> None:
    """401 for an anonymous caller, 403 for one who is not an administrator."""
    if not caller.is_admin:
        require_login(caller)
        raise Forbidden("Only administrators may do this.")


def visibility(caller: Caller) -> Visibility | None:
    """What a list may show this caller: None (everything) for an admin."""
    return None if caller.is_admin else Visibility(caller.username, caller.orgs)


def owner_of(source: Source) -> Owner:
    """The owner of a source document."""
    return Owner(source.owner_type, source.owner)
