"""Export download: wait for (or request) the build, stream to a temp file, resume, verify sha256.

What a server may answer to `GET {version}export/` (OCL v2, termsync old and new), and termsync to
`GET {version}export/?since={earlier}` (a delta package: the same answers, or 400 when it cannot
start one):
- 200: the file (termsync), or a 302/303 to it on another host (OCL: a storage bucket), which
  the client follows without the `Authorization` header;
- 208 (OCL v2, termsync) or 202 (termsync before it followed OCL): queued or building; wait as
  `Retry-After` says (default `DEFAULT_BUILD_WAIT`, each wait at most `MAX_BUILD_WAIT`);
- 204: no export; POST one, then wait as above;
- 500 `{"state": "FAILED"}`: the build failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from .client import ApiError, ServerError, TermsyncClient, parse_retry_after
from .errors import (
    DownloadStopped,
    ExportBuildFailed,
    ExportChecksumMismatch,
    ExportError,
    ExportNotReady,
)

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
DEFAULT_BUILD_WAIT = 5.0
MIN_BUILD_WAIT = 1.0
MAX_BUILD_WAIT = 60.0
BUILDING = (202, 208)
NO_EXPORT = 204
READY_AFTER_POST = (200, 301, 302, 303, 307, 308)
# headers of a redirect answer worth keeping when the final answer (a bucket's) lacks them
CHAIN_HEADERS = ("lastupdated", "x-export-created")
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_REPR_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/=]+):")
# a body that stops arriving: requests' wrappers, or urllib3's own from `raw.stream`
_BROKEN = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
           requests.exceptions.Timeout, Urllib3Error)

ProgressFn = Callable[[str, int, int | None], None]


@dataclass
class ExportFile:
    """A downloaded export on disk, with what the server said about it."""

    path: Path
    sha256: str
    size: int
    expected_sha256: str | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """Whether the bytes match the sha256 the server advertised."""
        return self.expected_sha256 is not None and self.sha256 == self.expected_sha256

    @property
    def last_updated(self) -> str | None:
        """The `lastUpdated` header (newest item in the version), if the server sent it."""
        return self.headers.get("lastupdated")


def expected_sha256(headers: Any) -> str | None:
    """The file's sha256 (hex) from a strong ETag or from `Repr-Digest`, if advertised."""
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):
        value = etag.strip('"')
        if _HEX_SHA256.match(value):
            return value.lower()
    match = _REPR_DIGEST.search(headers.get("Repr-Digest") or "")
    if match:
        try:
            raw = base64.b64decode(match.group(1), validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) == 32:
            return raw.hex()
    return None


def _int_or_none(value: str | None) -> int | None:
    """An integer header value, or None."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _content_range_start(response: requests.Response) -> int | None:
    """First byte position of a 206 answer's Content-Range."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _poll_delay(response: requests.Response) -> float:
    """Seconds before asking again: Retry-After, else the default, kept within bounds."""
    delay = parse_retry_after(response.headers.get("Retry-After"))
    return min(max(DEFAULT_BUILD_WAIT if delay is None else delay, MIN_BUILD_WAIT),
               MAX_BUILD_WAIT)


def _build_state(response: requests.Response) -> dict[str, Any]:
    """The JSON body of a not-ready answer ({} when there is none); closes the response."""
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = {}
    finally:
        response.close()
    return body if isinstance(body, dict) else {}


@dataclass
class _Origin:
    """Where the bytes come from and what the server promised about them."""

    file_url: str
    etag: str | None
    total: int | None
    expected: str | None
    headers: dict[str, str]

    @classmethod
    def of(cls, response: requests.Response) -> _Origin:
        """From a 200 answer (after any redirects)."""
        headers = {key.lower(): value for key, value in response.headers.items()}
        for earlier in reversed(response.history):
            for key in CHAIN_HEADERS:
                if key not in headers and earlier.headers.get(key):
                    headers[key] = earlier.headers[key]
        # the immutable file, so a resumed range cannot come from a rebuilt export
        file_url = response.headers.get("exportURL") or response.url
        return cls(file_url, response.headers.get("ETag"),
                   _int_or_none(response.headers.get("Content-Length")),
                   expected_sha256(response.headers), headers)

    def restarted(self, response: requests.Response) -> None:
        """The server sent the whole file again: take its promises instead."""
        self.etag = response.headers.get("ETag")
        self.total = _int_or_none(response.headers.get("Content-Length"))
        self.expected = expected_sha256(response.headers)


class _PartFile:
    """The temp file being downloaded, with its running sha256."""

    def __init__(self, directory: Path | None) -> None:
        if directory is not None:  # a configured work_dir that does not exist yet
            directory.mkdir(parents=True, exist_ok=True)
        self.handle = tempfile.NamedTemporaryFile(prefix="termsync-export-", suffix=".part",
                                                  dir=directory, delete=False)
        self.path = Path(self.handle.name)
        self.digest = hashlib.sha256()
        self.written = 0

    def write(self, chunk: bytes) -> None:
        """Append bytes."""
        self.handle.write(chunk)
        self.digest.update(chunk)
        self.written += len(chunk)

    def restart(self) -> None:
        """Empty the file: the download starts over."""
        self.handle.seek(0)
        self.handle.truncate()
        self.digest = hashlib.sha256()
        self.written = 0

    def discard(self) -> None:
        """Close and delete the file."""
        self.handle.close()
        self.path.unlink(missing_ok=True)


class ExportDownloader:
    """Waits for a build (requesting one if needed), then streams the export to a temp file."""

    def __init__(self, client: TermsyncClient, directory: str | Path | None = None, *,
                 max_wait: float = 3600.0, attempts: int = 3,
                 progress: ProgressFn | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.client = client
        self.directory = Path(directory) if directory else None
        self.max_wait = max_wait
        self.attempts = attempts
        self.progress = progress
        self.should_stop = should_stop

    def fetch(self, version_url: str, since: str | None = None) -> ExportFile:
        """Download the export of a version (`since`: its delta package from that earlier
        version); retry from scratch when the sha256 does not match."""
        export_url = version_url.rstrip("/") + "/export/"
        if since is not None:
            export_url += "?" + urlencode({"since": since})
        for attempt in range(1, self.attempts + 1):
            export = self._download(self._wait_until_ready(export_url))
            if export.expected_sha256 is None:
                logger.warning("%s carries no sha256 (ETag/Repr-Digest); accepting it unverified",
                               export_url)
                return export
            if export.verified:
                return export
            logger.warning("export %s: sha256 %s does not match the advertised %s "
                           "(attempt %d/%d); downloading again", export_url, export.sha256,
                           export.expected_sha256, attempt, self.attempts)
            export.path.unlink(missing_ok=True)
        raise ExportChecksumMismatch(f"export {export_url} failed sha256 verification "
                                     f"{self.attempts} times")

    # --- waiting for the build -------------------------------------------------------------
    def _wait_until_ready(self, export_url: str) -> requests.Response:
        """GET the export until it is 200; on 204 POST a build once per absence; wait between."""
        waited = 0.0
        requested = False  # POSTed since the server last said it was building
        while True:
            response = self._get_export(export_url)
            status = response.status_code
            if status == 200:
                return response
            state = _build_state(response)
            if status == NO_EXPORT and not requested:
                requested = True
                after_post = self._request_build(export_url)
                if after_post is None:
                    continue  # the server says the export is there already
                delay, what = after_post, "requested"
            else:
                requested = requested and status == NO_EXPORT
                delay = _poll_delay(response)
                what = str(state.get("state") or ("not there yet" if status == NO_EXPORT
                                                  else "being built"))
            if waited + delay > self.max_wait:
                raise ExportNotReady(f"export {export_url} still {state.get('state', what)} "
                                     f"after {waited:.0f}s (export_wait = {self.max_wait:.0f}s)")
            logger.info("export %s is %s (%s); checking again in %.0fs", export_url, what,
                        state.get("progress") or response.headers.get("X-Export-Progress", "?"),
                        delay)
            if self.progress:
                self.progress("waiting for export", int(waited), None)
            self.client.sleep(delay)
            waited += delay

    def _get_export(self, export_url: str) -> requests.Response:
        """GET the export (redirects followed, the token kept to the server); FAILED is final."""
        try:
            return self.client.request("GET", export_url, stream=True,
                                       ok=(200, NO_EXPORT, *BUILDING),
                                       headers={"Accept-Encoding": "identity"})
        except ServerError as exc:
            if isinstance(exc.body, dict) and exc.body.get("state") == "FAILED":
                raise ExportBuildFailed(f"the server failed to build {export_url}: "
                                        f"{exc.body.get('error') or exc.message}") from exc
            raise

    def _request_build(self, export_url: str) -> float | None:
        """POST the export; seconds to wait before asking again, None when it is ready."""
        logger.info("%s: no export yet; requesting one", export_url)
        try:
            response = self.client.request("POST", export_url, follow_redirects=False,
                                           ok=(201, 409, *BUILDING, *READY_AFTER_POST))
        except ApiError as exc:
            raise ExportError(f"{export_url} has no export and requesting one failed: "
                              f"{exc}") from exc
        response.close()
        return None if response.status_code in READY_AFTER_POST else _poll_delay(response)

    # --- the download ----------------------------------------------------------------------
    def _download(self, response: requests.Response) -> ExportFile:
        """Stream a 200 answer to a temp file; on a broken connection resume with Range."""
        origin = _Origin.of(response)
        part = _PartFile(self.directory)
        breaks = 0
        try:
            while True:
                try:
                    self._copy(response, part, origin.total)
                    break
                except _BROKEN as exc:
                    response.close()
                    breaks += 1
                    if breaks > max(self.client.max_retries, 1):
                        raise ExportError(f"download of {origin.file_url} kept breaking: "
                                          f"{exc}") from exc
                    delay = self.client.backoff(breaks - 1)
                    logger.warning("download of %s broke after %d bytes (%s); resuming in "
                                   "%.1fs", origin.file_url, part.written, exc, delay)
                    self.client.sleep(delay)
                    response = self._reopen(origin, part)
        except BaseException:
            response.close()
            part.discard()
            raise
        part.handle.close()
        return ExportFile(path=part.path, sha256=part.digest.hexdigest(), size=part.written,
                          expected_sha256=origin.expected, headers=origin.headers)

    def _copy(self, response: requests.Response, part: _PartFile, total: int | None) -> None:
        """Append the body to the part file; a body shorter than promised is a break."""
        for chunk in response.raw.stream(CHUNK_SIZE, decode_content=False):
            part.write(chunk)
            if self.progress:
                self.progress("downloading", part.written, total)
            if self.should_stop():
                raise DownloadStopped("download stopped on request")
        response.close()
        if total is not None and part.written < total:
            raise requests.exceptions.ChunkedEncodingError(
                f"connection closed after {part.written} of {total} bytes")

    def _reopen(self, origin: _Origin, part: _PartFile) -> requests.Response:
        """Ask for the rest of the file; start over when the server does not resume there."""
        headers = {"Range": f"bytes={part.written}-", "Accept-Encoding": "identity"}
        if origin.etag:
            headers["If-Range"] = origin.etag
        response = self.client.request("GET", origin.file_url, stream=True, ok=(200, 206),
                                       headers=headers)
        if response.status_code == 206 and _content_range_start(response) == part.written:
            return response
        logger.warning("server did not resume %s at byte %d; starting over", origin.file_url,
                       part.written)
        part.restart()
        if response.status_code == 206:
            response.close()
            response = self.client.request("GET", origin.file_url, stream=True,
                                           headers={"Accept-Encoding": "identity"})
        origin.restarted(response)
        return response
