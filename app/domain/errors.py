"""Domain errors; one handler in the HTTP layer turns each into its status code."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of the errors the domain raises on purpose."""

    status = 500

    def __init__(self, message: str, errors: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = headers or {}


class Invalid(DomainError):
    """The request is well formed but its content is not acceptable."""

    status = 400


class Unauthorized(DomainError):
    """No valid credentials where some are needed."""

    status = 401


class Forbidden(DomainError):
    """Valid credentials without the right to do this."""

    status = 403


class NotFound(DomainError):
    """No such resource (or one the caller may not see)."""

    status = 404


class NotAllowed(DomainError):
    """The method does not apply to this resource."""

    status = 405


class Conflict(DomainError):
    """The resource exists already or changed underneath."""

    status = 409


class Unavailable(DomainError):
    """A dependency (the database) does not answer; try again later."""

    status = 503
