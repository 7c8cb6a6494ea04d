"""Export files: resumable, verified download to a temp file; streaming parse of zip/tar.gz."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import ijson
import orjson
import requests
from ijson.common import ObjectBuilder
from urllib3.exceptions import HTTPError as Urllib3Error

from .client import ServerError, TermsyncClient, parse_retry_after

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
# Zip-bomb guards: the largest export.json a reader expands, and how many times larger than its
# compressed bytes it may be (JSON deflates 5-20x; a bomb, ~1000x). Below the floor, any ratio.
MAX_EXPORT_JSON_BYTES = 64 << 30
MAX_COMPRESSION_RATIO = 200
RATIO_FLOOR_BYTES = 64 << 20
DEFAULT_BUILD_WAIT = 5.0
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_REPR_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/=]+):")
_ITEM_PREFIXES = {"concepts.item": "concepts", "mappings.item": "mappings"}
ITEM_ARRAYS = ("concepts", "mappings")
# a body that stops arriving: requests' wrappers, or urllib3's own from `raw.stream`
_BROKEN = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
           requests.exceptions.Timeout, Urllib3Error)

ProgressFn = Callable[[str, int, int | None], None]


class ExportError(Exception):
    """An export could not be fetched or read."""


class ExportNotReady(ExportError):
    """The server kept building the export for longer than the configured wait."""


class ExportChecksumMismatch(ExportError):
    """Every download attempt produced bytes that do not match the advertised sha256."""


class InvalidExport(ExportError):
    """The file is not a readable OCL export (bad archive, unsafe member, bad JSON)."""


class ExportBuildFailed(ExportError):
    """The server reports that building the export failed."""


class DownloadStopped(ExportError):
    """The download was asked to stop (shutdown)."""


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


def _content_range_start(response: requests.Response) -> int | None:
    """First byte position of a 206 answer's Content-Range."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


class ExportDownloader:
    """Waits for a build, then streams the export to a temp file, resuming and verifying."""

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

    def fetch(self, version_url: str) -> ExportFile:
        """Download the export of a version; retry from scratch when the sha256 does not match."""
        export_url = version_url.rstrip("/") + "/export/"
        for attempt in range(1, self.attempts + 1):
            response = self._wait_until_ready(export_url)
            export = self._download(response, export_url)
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

    def _wait_until_ready(self, export_url: str) -> requests.Response:
        """GET the export until it is 200, sleeping as Retry-After says on 202."""
        waited = 0.0
        while True:
            try:
                response = self.client.request("GET", export_url, stream=True, ok=(200, 202),
                                               headers={"Accept-Encoding": "identity"})
            except ServerError as exc:
                if isinstance(exc.body, dict) and exc.body.get("state") == "FAILED":
                    raise ExportBuildFailed(f"the server failed to build {export_url}: "
                                            f"{exc.body.get('error') or exc.message}") from exc
                raise
            if response.status_code == 200:
                return response
            delay = parse_retry_after(response.headers.get("Retry-After"))
            delay = DEFAULT_BUILD_WAIT if delay is None else max(delay, 0.1)
            try:
                state = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                state = {}
            response.close()
            if waited + delay > self.max_wait:
                raise ExportNotReady(f"export {export_url} still {state.get('state', 'building')} "
                                     f"after {waited:.0f}s (export_wait = {self.max_wait:.0f}s)")
            logger.info("export %s is %s (%s); checking again in %.0fs", export_url,
                        state.get("state", "being built"), state.get("progress", "?"), delay)
            if self.progress:
                self.progress("waiting for export", int(waited), None)
            self.client.sleep(delay)
            waited += delay

    def _download(self, response: requests.Response, export_url: str) -> ExportFile:
        """Stream a 200 answer to a temp file; on a broken connection resume with Range."""
        headers = {key.lower(): value for key, value in response.headers.items()}
        # the immutable file URL, so a resumed range cannot come from a rebuilt export
        file_url = response.headers.get("exportURL") or export_url
        etag = response.headers.get("ETag")
        total = _int_or_none(response.headers.get("Content-Length"))
        expected = expected_sha256(response.headers)
        if self.directory is not None:  # a configured work_dir that does not exist yet
            self.directory.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(prefix="termsync-export-", suffix=".part",
                                             dir=self.directory, delete=False)
        path = Path(handle.name)
        digest = hashlib.sha256()
        written = 0
        resumes = 0
        try:
            with handle:
                while True:
                    try:
                        for chunk in response.raw.stream(CHUNK_SIZE, decode_content=False):
                            handle.write(chunk)
                            digest.update(chunk)
                            written += len(chunk)
                            if self.progress:
                                self.progress("downloading", written, total)
                            if self.should_stop():
                                raise DownloadStopped("download stopped on request")
                        response.close()
                        if total is None or written >= total:
                            break
                        raise requests.exceptions.ChunkedEncodingError(
                            f"connection closed after {written} of {total} bytes")
                    except _BROKEN as exc:
                        response.close()
                        resumes += 1
                        if resumes > max(self.client.max_retries, 1):
                            raise ExportError(f"download of {file_url} kept breaking: {exc}") \
                                from exc
                        delay = self.client.backoff(resumes - 1)
                        logger.warning("download of %s broke after %d bytes (%s); resuming in "
                                       "%.1fs", file_url, written, exc, delay)
                        self.client.sleep(delay)
                        range_headers = {"Range": f"bytes={written}-",
                                         "Accept-Encoding": "identity"}
                        if etag:
                            range_headers["If-Range"] = etag
                        response = self.client.request("GET", file_url, stream=True,
                                                       ok=(200, 206), headers=range_headers)
                        if response.status_code != 206 or \
                                _content_range_start(response) != written:
                            logger.warning("server did not resume %s at byte %d; starting over",
                                           file_url, written)
                            handle.seek(0)
                            handle.truncate()
                            digest, written = hashlib.sha256(), 0
                            if response.status_code == 206:
                                response.close()
                                response = self.client.request(
                                    "GET", file_url, stream=True,
                                    headers={"Accept-Encoding": "identity"})
                            total = _int_or_none(response.headers.get("Content-Length"))
                            expected = expected_sha256(response.headers)
                            etag = response.headers.get("ETag")
        except BaseException:
            response.close()
            path.unlink(missing_ok=True)
            raise
        return ExportFile(path=path, sha256=digest.hexdigest(), size=written,
                          expected_sha256=expected, headers=headers)


def _int_or_none(value: str | None) -> int | None:
    """An integer header value, or None."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class ExportReader:
    """Reads an export file (zip, tar.gz or plain JSON) in one streaming pass."""

    def __init__(self, path: str | Path, *, max_bytes: int = MAX_EXPORT_JSON_BYTES,
                 max_ratio: float = MAX_COMPRESSION_RATIO) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_ratio = max_ratio
        self.header: dict[str, Any] = {}
        self._stack = ExitStack()

    def _check_expansion(self, member: str, size: int, compressed: int) -> None:
        """Refuse a member that would expand beyond the limits (a zip bomb) before reading it.

        zipfile and tarfile never read past a member's declared size, so checking it is enough.
        """
        if size > self.max_bytes:
            raise InvalidExport(f"{self.path}: {member} would expand to {size} bytes, more than "
                                f"the {self.max_bytes} bytes an export may hold")
        if size > RATIO_FLOOR_BYTES and size > self.max_ratio * max(compressed, 1):
            raise InvalidExport(f"{self.path}: {member} would expand {size // max(compressed, 1)}"
                                f" times (to {size} bytes), more than the {self.max_ratio:g}x an "
                                "export compresses; refusing a likely zip bomb")

    def __enter__(self) -> ExportReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open_json(self) -> IO[bytes]:
        """The export.json stream inside whatever container the file is."""
        with self.path.open("rb") as probe:
            magic = probe.read(4)
        try:
            if magic.startswith(b"PK"):
                archive = self._stack.enter_context(zipfile.ZipFile(self.path))
                names = [n for n in archive.namelist() if not n.endswith("/")]
                member = _pick_member(names)
                info = archive.getinfo(member)
                self._check_expansion(member, info.file_size, info.compress_size)
                return self._stack.enter_context(archive.open(member))
            if magic.startswith(b"\x1f\x8b"):
                tar = self._stack.enter_context(tarfile.open(self.path, mode="r:gz"))
                for entry in tar.getmembers():
                    _check_member_name(entry.name)
                chosen = _pick_member([m.name for m in tar.getmembers() if m.isfile()])
                self._check_expansion(chosen, tar.getmember(chosen).size,
                                      self.path.stat().st_size)
                stream = tar.extractfile(chosen)
                if stream is None:
                    raise InvalidExport(f"{self.path}: {chosen} is not a regular file")
                return self._stack.enter_context(stream)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise InvalidExport(f"{self.path} is not a readable export archive: {exc}") from exc
        return self._stack.enter_context(self.path.open("rb"))

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ("concepts" | "mappings", item) in file order; fills `header` as it goes."""
        stream = self._open_json()
        builder: ObjectBuilder | None = None
        kind = ""
        header = ObjectBuilder()
        in_items = False  # inside a top-level concepts/mappings array
        try:
            for prefix, event, value in ijson.parse(stream, use_float=True):
                if builder is not None:
                    builder.event(event, value)
                    if event == "end_map" and prefix in _ITEM_PREFIXES:
                        yield kind, builder.value
                        builder = None
                    continue
                if in_items:
                    if prefix in _ITEM_PREFIXES:
                        if event == "start_map":
                            kind = _ITEM_PREFIXES[prefix]
                            builder = ObjectBuilder()
                            builder.event(event, value)
                        elif event != "null":
                            raise InvalidExport(f"{prefix} holds a {event}, not an object")
                    elif prefix in ITEM_ARRAYS and event != "start_array":
                        in_items = False  # end of the array, or a null in its place
                    continue
                if prefix == "" and event == "map_key" and value in ITEM_ARRAYS:
                    in_items = True
                    continue
                header.event(event, value)
        except ijson.JSONError as exc:
            raise InvalidExport(f"{self.path}: export.json is not valid JSON: {exc}") from exc
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise InvalidExport(f"{self.path}: archive is damaged: {exc}") from exc
        value = getattr(header, "value", None)
        if not isinstance(value, dict):
            raise InvalidExport(f"{self.path}: export.json is not a JSON object")
        self.header = value


def _check_member_name(name: str) -> None:
    """Refuse absolute or parent-relative archive member names."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise InvalidExport(f"archive member {name!r} has an unsafe path")


def _pick_member(names: list[str]) -> str:
    """export.json (anywhere) or else the only .json member."""
    for name in names:
        _check_member_name(name)
    exact = [n for n in names if PurePosixPath(n).name == "export.json"]
    if exact:
        return exact[0]
    jsons = [n for n in names if n.endswith(".json")]
    if len(jsons) == 1:
        return jsons[0]
    raise InvalidExport(f"archive holds no export.json (members: {', '.join(names[:10])})")
