"""A Python stand-in for the OpenMRS OCL subscription module (release 3.2.0): it sends exactly the
requests the module sends (docs/compatibility.md) and reads the answers as the module does.

- The subscription URL loses its trailing slash, so every request is slash-less.
- Release mode: `GET {url}/versions` (a JSON array, in the order given); for each id without
  `HEAD`, `GET {url}/{id}/export` without following redirects: the first 200 or redirect
  (301/302/303/307) is the version; then `GET {url}/{id}/export` following redirects must end in
  200.
- Snapshot mode: `GET {url}?includeMappings=true&includeConcepts=true&includeRetired=true&
  limit=100000[&updatedSince=...]` with `Compress: true`, one request, never paged.
- A redirect is followed with a new request that carries only `Authorization` (and that only to
  the same origin): `Compress` is lost.
- `Content-Type` exactly `application/zip`: a zip whose `export.json` is read; anything else is
  taken for a tar.gz (which termsync never sends, so here it is an error).
- The response's `Date` is stored and sent back as the next `updatedSince`, formatted
  `yyyy-MM-dd'T'HH:mm:ss'Z'` (the module formats it in the JVM's time zone: servers run in UTC).
- Items without `datatype`, `concept_class` or `map_type` break its saver (`ModuleBroke`).
- Its importer walks `export.json`'s top-level fields, reads `concepts`, then `mappings`, and stops
  (any other field, before or after them, is skipped or never read); the startup loader reads the
  `export.json` entry of a zip put in its directory (`load_zip`).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

REDIRECTS = (301, 302, 303, 307)
MAX_REDIRECTS = 5
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class ModuleBroke(Exception):
    """What makes the real module fail an import."""


@dataclass
class OclResponse:
    """What the module takes from an answer: the items of export.json and the Date."""

    updated_to: datetime
    concepts: list[dict[str, Any]]
    mappings: list[dict[str, Any]]
    entry_names: list[str]


@dataclass
class OpenMrsClient:
    """The module's HTTP behaviour, with a log of every request it sent."""

    subscription_url: str
    token: str | None = None
    sent: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.url = self.subscription_url.rstrip("/")  # removeLastUrlForwardSlashIfExist
        self.http = requests.Session()
        self.http.trust_env = False

    # --- HTTP as commons-httpclient 3 does it for the module -----------------------------
    def _send(self, url: str, headers: dict[str, str]) -> requests.Response:
        self.sent.append((url, dict(headers)))
        return self.http.get(url, headers=headers, allow_redirects=False, timeout=30)

    def _get(self, url: str, follow: bool, extra: dict[str, str] | None = None) -> requests.Response:
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        headers.update(extra or {})
        response = self._send(url, headers)
        if not follow:
            return response
        origin = urlsplit(url)[:2]
        for _ in range(MAX_REDIRECTS):
            if response.status_code not in REDIRECTS or not response.headers.get("Location"):
                break
            target = urljoin(response.url, response.headers["Location"])
            same_origin = urlsplit(target)[:2] == origin
            # a new request: the token (same origin only), and nothing else
            headers = {"Authorization": f"Token {self.token}"} if self.token and same_origin else {}
            response = self._send(target, headers)
        return response

    # --- release mode ---------------------------------------------------------------------
    def latest_release(self) -> str:
        """fetchLatestOclReleaseVersion: the first version whose export probe is 200 or a redirect."""
        versions = self._get(f"{self.url}/versions", follow=True)
        if versions.status_code != 200:
            raise ModuleBroke(f"HTTP {versions.status_code} for {self.url}/versions")
        for version in versions.json():
            name = version.get("id")
            if name and "HEAD" not in name:
                probe = self._get(f"{self.url}/{name}/export", follow=False)
                probe.close()
                if probe.status_code == 200 or probe.status_code in REDIRECTS:
                    return str(name)
        raise ModuleBroke("There is no released version of given source")

    def fetch_release(self) -> tuple[str, OclResponse]:
        """fetchOclConcepts: the latest release's export."""
        version = self.latest_release()
        response = self._get(f"{self.url}/{version}/export", follow=True)
        if response.status_code != 200:
            raise ModuleBroke(f"HTTP {response.status_code} for the export of {version}")
        return version, self._extract(response)

    # --- snapshot mode --------------------------------------------------------------------
    def fetch_snapshot(self, updated_since: datetime | None, limit: int = 100000) -> OclResponse:
        """fetchSnapshotUpdates (`limit` is always 100000 in the module; tests lower it)."""
        query = f"includeMappings=true&includeConcepts=true&includeRetired=true&limit={limit}"
        if updated_since is not None:
            query += f"&updatedSince={updated_since.strftime(DATE_FORMAT)}"
        response = self._get(f"{self.url}?{query}", follow=True, extra={"Compress": "true"})
        if response.status_code != 200:
            raise ModuleBroke(f"HTTP {response.status_code} for the snapshot")
        return self._extract(response)

    def fetch_file(self, url: str) -> OclResponse:
        """Any export URL the module is given (a release's, or a delta package's): GET it
        following redirects, as fetchOclConcepts does, and read the answer."""
        response = self._get(url.rstrip("/"), follow=True)
        if response.status_code != 200:
            raise ModuleBroke(f"HTTP {response.status_code} for {url}")
        return self._extract(response)

    # --- the startup loader -----------------------------------------------------------------
    @staticmethod
    def load_zip(data: bytes) -> OclResponse:
        """Importer.run(ZipFile): a zip an administrator puts in the module's "load at startup"
        directory, its `export.json` (Utils.extractExportInputStreamFromZip) imported as any
        export (no Date: the time is the epoch)."""
        return read_export(data, datetime.fromtimestamp(0, UTC))

    # --- reading the answer -----------------------------------------------------------------
    def _extract(self, response: requests.Response) -> OclResponse:
        date_header = response.headers.get("Date")
        if not date_header:
            raise ModuleBroke("Cannot parse date header")
        updated_to = parsedate_to_datetime(date_header)
        if response.headers.get("Content-Type") != "application/zip":
            raise ModuleBroke("not application/zip: the module would read a tar.gz here")
        return read_export(response.content, updated_to)


def read_export(data: bytes, updated_to: datetime) -> OclResponse:
    """What Importer.processInput takes from a zip: `export.json`'s top-level fields walked in
    order (advanceToListOf skips any it does not want), the `concepts` array, then `mappings`,
    and nothing after it; every item through the saver's checks."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        if "export.json" not in names:
            raise ModuleBroke("Unsupported format of response. Expected zip with export.json.")
        export = json.loads(archive.read("export.json"))
    if not isinstance(export, dict):
        raise ModuleBroke("JSON must start from an object")
    keys = list(export)
    if "concepts" in keys and "mappings" in keys and keys.index("mappings") < keys.index("concepts"):
        raise ModuleBroke("the module reads concepts before mappings")
    for key in ("concepts", "mappings"):
        if key in export and not isinstance(export[key], list):
            raise ModuleBroke(f"{key} must be a list")
    concepts, mappings = export.get("concepts") or [], export.get("mappings") or []
    for concept in concepts:
        if not concept.get("datatype") or not concept.get("concept_class"):
            raise ModuleBroke(f"concept without datatype or concept_class: {concept}")
        for entry in (concept.get("names") or []) + (concept.get("descriptions") or []):
            if not entry.get("external_id") and not entry.get("uuid"):
                raise ModuleBroke(f"a name or description without uuid: {entry}")
    for mapping in mappings:
        if not mapping.get("map_type"):
            raise ModuleBroke(f"mapping without map_type: {mapping}")
    return OclResponse(updated_to, concepts, mappings, names)
