"""Users, organizations, API tokens and who may see or change what."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from ..store import Store
from ..store.base import COLLECTION_TYPE, DuplicateKey, Visibility
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

    def __init__(self, repos: Store) -> None:
        self.repos = repos

    # --- authentication -------------------------------------------------------------------
    def caller_for_token(self, token: str | None) -> Caller:
        """The caller a token belongs to; a token that matches nobody is a 401."""
        if token is None:
            return ANONYMOUS
        # Tokens are looked up by their sha256, never compared as plain text: the time a lookup
        # takes says nothing about how much of a stored token a guess got right.
        user = self.repos.users.user_for_token(hash_token(token))
        if user is None:
            raise Unauthorized("Invalid token.")
        if not user.get("is_active", True):
            raise Unauthorized("This account is inactive.")
        return Caller(username=user["_id"], is_admin=bool(user.get("is_admin")),
                      orgs=frozenset(self.repos.orgs.for_member(user["_id"])))

    # --- users and tokens -----------------------------------------------------------------
    def create_user(self, username: str, *, name: str | None = None, email: str | None = None,
                    company: str | None = None, is_admin: bool = False) -> dict[str, Any]:
        """Create a user account."""
        now = now_iso()
        user = {"_id": username, "username": username, "name": name or username, "email": email,
                "company": company, "is_admin": is_admin, "is_active": True,
                "created_on": now, "updated_on": now}
        try:
            self.repos.users.insert(user)
        except DuplicateKey:
            raise Conflict(f"User '{username}' already exists.") from None
        return user

    def create_token(self, username: str, token: str | None = None) -> str:
        """Issue an API token for a user and return it (only its hash is stored)."""
        if self.repos.users.get(username) is None:
            raise NotFound(f"User '{username}' not found.")
        token = token or secrets.token_hex(20)
        if len(token) < 8:
            raise Invalid("A token must have at least 8 characters.")
        self.repos.users.add_token(username, hash_token(token), now_iso())
        return token

    def ensure_admin(self, username: str, token: str) -> None:
        """Bootstrap an admin user holding this token (TERMSYNC_ADMIN_TOKEN)."""
        user = self.repos.users.get(username)
        if user is None:
            try:
                self.create_user(username, is_admin=True)
            except Conflict:  # another process starting at the same moment created it
                user = self.repos.users.get(username)
        if user is not None and not user.get("is_admin"):
            self.repos.users.update(username, {"is_admin": True})
        self.create_token(username, token)

    @staticmethod
    def sees_personal_data(caller: Caller, username: str) -> bool:
        """Personal data (email, account state) is for the user themself and admins only."""
        return caller.is_admin or caller.username == username

    def get_user(self, username: str) -> dict[str, Any]:
        """A user account (404 if there is none)."""
        user = self.repos.users.get(username)
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
            self.repos.orgs.insert(org)
        except DuplicateKey:
            raise Conflict(f"Organization '{payload['id']}' already exists.") from None
        return org

    def add_member(self, org_id: str, username: str) -> None:
        """Make a user a member of an organization."""
        if self.repos.orgs.get(org_id) is None:
            raise NotFound(f"Organization '{org_id}' not found.")
        self.get_user(username)
        self.repos.orgs.add_member(org_id, username)

    def get_org(self, caller: Caller, org_id: str) -> dict[str, Any]:
        """An organization the caller may see (a private one is 404 to outsiders)."""
        org = self.repos.orgs.get(org_id)
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
        return self.repos.orgs.search(q, None, visibility(caller), skip, limit)

    def orgs_of_user(self, caller: Caller, username: str, skip: int,
                     limit: int) -> tuple[list[dict[str, Any]], int]:
        """The organizations a user belongs to that the caller may see."""
        self.get_user(username)
        return self.repos.orgs.search(None, username, visibility(caller), skip, limit)

    def list_members(self, caller: Caller, org_id: str, skip: int,
                     limit: int) -> tuple[list[dict[str, Any]], int]:
        """The members of an organization the caller may see, by username."""
        org = self.get_org(caller, org_id)
        return self.repos.users.page_of(list(org.get("members") or []), skip, limit)

    def is_member(self, caller: Caller, org_id: str, username: str) -> bool:
        """Whether a user belongs to an organization the caller may see."""
        org = self.get_org(caller, org_id)
        return username in (org.get("members") or [])

    def remove_member(self, caller: Caller, org_id: str, username: str) -> None:
        """Take a user out of an organization (its members and admins only; 404 if not a member)."""
        self.get_org(caller, org_id)
        self.require_owner(caller, Owner(ORG, org_id))
        if not self.repos.orgs.remove_member(org_id, username):
            raise NotFound(f"'{username}' is not a member of '{org_id}'.")

    def org_counts(self, org: dict[str, Any]) -> dict[str, int]:
        """OCL's counts on an organization: members, public sources and public collections."""
        url = f"/orgs/{org['_id']}/"
        return {"members": len(org.get("members") or []),
                "public_sources": self.repos.sources.count_public(url),
                "public_collections": self.repos.sources.count_public(url, COLLECTION_TYPE)}

    def user_counts(self, user: dict[str, Any]) -> dict[str, int]:
        """OCL's counts on a user: organizations, public sources and public collections."""
        orgs = len(self.repos.orgs.for_member(user["_id"]))
        url = f"/users/{user['_id']}/"
        return {"orgs": orgs, "organizations": orgs,
                "public_sources": self.repos.sources.count_public(url),
                "public_collections": self.repos.sources.count_public(url, COLLECTION_TYPE)}

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
        user = self.repos.users.get(owner_id or "")
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

    def is_public(self, source: dict[str, Any]) -> bool:
        """Whether anyone may see a repository: it is public (`public_access` View or Edit) and
        so is its owner (any user; an org that is not private). The rule the stores' lists apply
        in their queries (`Sources.search`)."""
        if source.get("public_access") not in ("View", "Edit"):
            return False
        return source.get("owner_type") != ORG or self.repos.orgs.is_public(source["owner"])

    def can_view(self, caller: Caller, source: dict[str, Any]) -> bool:
        """Owners see their repositories; everyone sees public ones (`is_public`)."""
        return self.owns(caller, owner_of(source)) or self.is_public(source)

    def can_edit(self, caller: Caller, source: dict[str, Any]) -> bool:
        """Owners change their repositories; any signed-in user changes public `Edit` ones."""
        if self.owns(caller, owner_of(source)):
            return True
        return caller.authenticated and source.get("public_access") == "Edit" \
            and self.is_public(source)

    def require_edit(self, caller: Caller, source: dict[str, Any]) -> None:
        """401 without a token, 403 with one that has no edit right on the source."""
        if self.can_edit(caller, source):
            return
        require_login(caller)
        noun = "collection" if source.get("repo_type") == COLLECTION_TYPE else "source"
        raise Forbidden(f"You may not change {noun} '{source['id']}'.")

    def require_owner(self, caller: Caller, owner: Owner) -> None:
        """Creating under an owner needs to be (a member of) that owner."""
        if self.owns(caller, owner):
            return
        require_login(caller)
        raise Forbidden(f"You are not a member of '{owner.id}'.")


def require_login(caller: Caller) -> None:
    """401 for an anonymous caller."""
    if not caller.authenticated:
        raise Unauthorized("Authentication credentials were not provided.",
                           headers={"WWW-Authenticate": 'Token realm="termsync"'})


def visibility(caller: Caller) -> Visibility | None:
    """What a list may show this caller: None (everything) for an admin."""
    return None if caller.is_admin else Visibility(caller.username, caller.orgs)


def owner_of(source: dict[str, Any]) -> Owner:
    """The owner of a source document."""
    return Owner(source["owner_type"], source["owner"])
