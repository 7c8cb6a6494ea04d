"""HTTP client for a termsync/OCL server: one Session, timeouts, retries, typed errors."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
RELEASE_PROBE_LIMIT = 10
USER_AGENT = "termsync-sync/0.1"


class ApiError(Exception):
    """The server answered with an error; carries its status and message."""

    def __init__(self, status: int, message: str, url: str, *, code: int | None = None,
                 errors: Any = None, body: Any = None) -> None:
        super().__init__(f"{status} from {url}: {message}")
        self.status = status
        self.message = message
        self.url = url
        self.code = code if code is not None else status
        self.errors = errors
        self.body = body


class BadRequest(ApiError):
    """400: the server rejected the request's parameters."""


class Unauthorized(ApiError):
    """401: a token is needed or was not accepted."""


class Forbidden(ApiError):
    """403: the token may not do this."""


class NotFound(ApiError):
    """404: no such owner, source, version or file (or not visible to this token)."""


class MethodNotAllowed(ApiError):
    """405: e.g. an export of HEAD."""


class RateLimited(ApiError):
    """429 that persisted through every retry."""


class ServerError(ApiError):
    """5xx that persisted through every retry."""


class ServerUnreachable(Exception):
    """No answer at all (connection refused, DNS, timeouts) after every retry."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"server unreachable at {url}: {cause}")
        self.url = url
        self.cause = cause


_ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    429: RateLimited,
}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: requests.Response) -> ApiError:
    """Turn an error response into the matching typed ApiError with the server's message."""
    body: Any = None
    message = response.reason or "error"
    code = errors = None
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        text = response.text.strip()
        if text:
            message = text[:500]
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("detail") or body.get("error") or message)
        code = body.get("code") if isinstance(body.get("code"), int) else None
        errors = body.get("errors")
    status = response.status_code
    cls = _ERRORS_BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(status, message, response.url, code=code, errors=errors, body=body)


@dataclass
class JsonResponse:
    """A decoded JSON answer with the headers that matter for paging and exports."""

    body: Any
    headers: Mapping[str, str]
    url: str

    @property
    def next_url(self) -> str | None:
        """Absolute URL of the next page, from `next` or `Link: rel="next"`."""
        nxt = self.headers.get("next")
        if nxt and nxt.lower() != "none":
            return urljoin(self.url, nxt)
        link = requests.utils.parse_header_links(self.headers.get("Link", "")) \
            if self.headers.get("Link") else []
        for entry in link:
            if entry.get("rel") == "next" and entry.get("url"):
                return urljoin(self.url, entry["url"])
        return None


class TermsyncClient:
    """Talks to one server; the token only ever goes to that server's origin."""

    def __init__(self, server: str, token: str | None = None, *, timeout: float = 60.0,
                 connect_timeout: float = 10.0, max_retries: int = 6, backoff_base: float = 0.5,
                 backoff_max: float = 300.0, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random,
                 session: requests.Session | None = None) -> None:
        self.server = server.rstrip("/")
        self._origin = _origin(self.server)
        self.token = token
        self.timeout = (connect_timeout, timeout)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.jitter = jitter
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)

    def close(self) -> None:
        """Close the underlying Session."""
        self.session.close()

    def absolute(self, url: str) -> str:
        """An absolute URL: server-relative paths are joined to the server."""
        return url if urlsplit(url).scheme else self.server + "/" + url.lstrip("/")

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before retry number `attempt` (0-based): Retry-After, else capped exp + jitter."""
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** attempt)
        return ceiling / 2 + self.jitter() * ceiling / 2

    def request(self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, stream: bool = False,
                ok: tuple[int, ...] = (200,), follow_redirects: bool = True
                ) -> requests.Response:
        """Send with retries on connection errors, 5xx and 429; return a response whose status
        is in `ok`, or raise the typed error. Redirects are followed (the answers on the way are
        in the response's `history`) unless `follow_redirects` is False."""
        target = self.absolute(url)
        attempt = 0
        while True:
            try:
                response = self._send(method, target, params, headers, stream, follow_redirects)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.max_retries:
                    raise ServerUnreachable(target, exc) from exc
                delay = self.backoff(attempt)
                logger.warning("%s %s failed (%s); retry %d/%d in %.1fs", method, target,
                               type(exc).__name__, attempt + 1, self.max_retries, delay)
            else:
                status = response.status_code
                if status in ok:
                    return response
                if status not in RETRY_STATUSES or attempt >= self.max_retries \
                        or _is_failed_export(response):
                    error = error_from_response(response)
                    response.close()
                    raise error
                delay = self.backoff(attempt, parse_retry_after(response.headers.get("Retry-After")))
                logger.warning("%s %s answered %d; retry %d/%d in %.1fs", method, target, status,
                               attempt + 1, self.max_retries, delay)
                response.close()
            self.sleep(delay)
            attempt += 1

    def get_json(self, url: str, params: Mapping[str, Any] | None = None) -> JsonResponse:
        """GET a JSON document."""
        response = self.request("GET", url, params=params, headers={"Accept": "application/json"})
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ApiError(response.status_code, f"answer is not JSON: {exc}", response.url) from exc
        return JsonResponse(body=body, headers=response.headers, url=response.url)

    def latest_released_version(self, source_url: str) -> dict[str, Any] | None:
        """The newest released version of a source, or None when nothing is released."""
        # newest first; a few rather than one, in case a server lists HEAD or unreleased
        # versions despite `released=true`: neither is a release to follow
        answer = self.get_json(source_url.rstrip("/") + "/versions/",
                               {"released": "true", "limit": RELEASE_PROBE_LIMIT})
        versions = answer.body if isinstance(answer.body, list) else answer.body.get("results", [])
        versions = [v for v in versions if isinstance(v, dict) and v.get("id") != "HEAD"
                    and v.get("released", True) is not False]
        return versions[0] if versions else None

    def _headers_for(self, url: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        """Request headers; Authorization only for the configured server's origin."""
        headers = dict(extra or {})
        if self.token and _origin(url) == self._origin:
            headers["Authorization"] = f"Token {self.token}"
        return headers

    def _send(self, method: str, url: str, params: Mapping[str, Any] | None,
              headers: Mapping[str, str] | None, stream: bool,
              follow_redirects: bool) -> requests.Response:
        """Send, following redirects ourselves so the token never leaves the server's origin."""
        history: list[requests.Response] = []
        for _ in range(MAX_REDIRECTS + 1):
            response = self.session.request(method, url, params=params,
                                            headers=self._headers_for(url, headers),
                                            stream=stream, timeout=self.timeout,
                                            allow_redirects=False)
            location = response.headers.get("Location")
            if not (follow_redirects and response.is_redirect and location):
                response.history = history
                return response
            response.close()
            history.append(response)
            url = urljoin(response.url, location)
            params = None  # the Location already carries its query
            if response.status_code == 303 or (response.status_code in (301, 302)
                                                and method == "POST"):
                method = "GET"
        raise ApiError(310, f"more than {MAX_REDIRECTS} redirects", url)


def _origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) with default ports made explicit."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), f"{(parts.hostname or '').lower()}:{port}"


def _is_failed_export(response: requests.Response) -> bool:
    """A 500 that reports a failed export build is an answer, not a transient fault."""
    if response.status_code != 500:
        return False
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and body.get("state") == "FAILED"
