"""A small in-memory OCL/termsync server for subscriber tests and benches, with fault injection.

One `StubSource` speaks either dialect:
- termsync (default): `checksums.content` on sources and versions; tombstones in diffs only with
  `includeDeleted=true` (`tombstones_need_flag=False`: always, as termsync did before);
- a real OCL v2 (`ocl=True`), as oclapi2's code behaves: OCL's `checksums` (`standard`, `smart`)
  instead of `checksums.content`; `updatedSince` on a source or version URL filters the repository
  itself (`get_base_queryset`: `updated_at >= updatedSince`), so the "diff" of a repository not
  edited since answers `404 {"detail": "Not found."}` however many of its concepts changed, and one
  that was answers its concepts and mappings changed since, newest first, cut at `limit` (from
  `offset`) with no `next` and no `num_found`; DELETE retires (a new, retired version: the
  listings show it with `includeRetired=true`), a hard delete leaves nothing anywhere.
  `concepts/` and `mappings/` (of the source or a version) are OCL's listings: `updatedSince`,
  `includeRetired`, `verbose`, `limit` (over 1000: 25) and `page`, newest first, with `num_found`,
  `num_returned`, `pages`, `page_number` and `next` headers.
Exports: 200 with the file, or (`file_host` set) a 303 to a `FileHost` on another loopback
address that refuses any request carrying `Authorization`; `pending` not-ready answers first
(`building_status` 208, or 202 as termsync answered before); `needs_post`: 204 until a POST.
Delta packages (`export/?since=`, termsync only): `deltas` "build" (termsync now: a zip with
export.json and manifest.json, or 400 for a `since` that cannot start one), "ignore" (termsync
before deltas, and OCL: the parameter is unknown, so the answer is the whole export) or
"refuse" (400 to every `since`).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from flask import Flask, Response, request
from werkzeug.serving import make_server

TS = "%Y-%m-%dT%H:%M:%S.%fZ"
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def content_checksum(items: dict[str, dict[str, Any]]) -> str:
    """checksums.content as the contract defines it: the sum modulo 2**256 of the sha256 of
    "url\tversion\n" over live items."""
    total = sum(int.from_bytes(hashlib.sha256(f"{url}\t{item['version']}\n".encode()).digest(),
                               "big") for url, item in items.items() if not item.get("deleted"))
    return format(total % 2**256, "064x")


@dataclass
class Fault:
    """Answer `status` (with Retry-After) to requests whose path contains `path`, `times` times."""

    path: str
    status: int
    times: int = 1
    retry_after: str | None = None
    body: dict[str, Any] | None = None
    skip: int = 0  # let this many matching requests through first
    method: str | None = None  # only requests with this method (default: any)


@dataclass
class StubVersion:
    """A released (or not) snapshot of the source."""

    id: str
    items: dict[str, dict[str, Any]]
    created_on: str
    released: bool = True
    export_bytes: bytes | None = None
    export_path: Path | None = None
    pending: int = 0  # answer `building_status` this many times before the export is ready
    failed: bool = False
    building_status: int = 208
    needs_post: bool = False  # answer 204 (no export) until the export is POSTed
    requested: bool = False
    export_format: str = "zip"  # or "tar.gz" (OCL's exports before v2)


@dataclass
class StubSource:
    """One source: HEAD items (tombstones included), versions, faults."""

    owner: str = "DemoOrg"
    source: str = "DemoSource"
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: list[StubVersion] = field(default_factory=list)
    ignore_range: bool = False
    ocl: bool = False
    tombstones_need_flag: bool = True
    file_host: FileHost | None = None
    redirect_status: int = 303  # how exports on the file host are pointed at (OCL: 303)
    deltas: str = "build"  # "build" | "ignore" | "refuse" (see the module docstring)
    delta_cache: dict[tuple[str, str], bytes] = field(default_factory=dict)
    requests_seen: list[str] = field(default_factory=list)
    posts_seen: list[str] = field(default_factory=list)
    auth_seen: list[str | None] = field(default_factory=list)
    tick: int = 0
    # the source's own updated_at (its metadata), from before any of its concepts
    updated_on: str = (BASE_TIME - timedelta(days=1)).strftime(TS)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> str:
        return f"/orgs/{self.owner}/sources/{self.source}/"

    # --- curator operations ----------------------------------------------------------------
    def now(self) -> str:
        self.tick += 1
        return (BASE_TIME + timedelta(milliseconds=self.tick)).strftime(TS)

    def _write(self, url: str, payload: dict[str, Any], updated_on: str | None = None) -> dict[str, Any]:
        payload["updated_on"] = updated_on or self.now()
        payload["version"] = str(int(self.items.get(url, {}).get("version", "0") or 0) + 1000 + self.tick)
        payload["version_url"] = f"{url}{payload['version']}/"
        self.items[url] = payload
        return payload

    def put_concept(self, concept_id: str, name: str | None = None, updated_on: str | None = None,
                    **fields: Any) -> dict[str, Any]:
        url = f"{self.path}concepts/{concept_id}/"
        payload = {"type": "Concept", "id": concept_id, "url": url, "concept_class": "Misc",
                   "datatype": "None", "retired": False, "source": self.source,
                   "owner": self.owner, "names": [{"name": name or concept_id, "locale": "en",
                                                   "name_type": "Fully Specified",
                                                   "locale_preferred": True}],
                   "descriptions": [], "extras": {}, **fields}
        return self._write(url, payload, updated_on)

    def put_mapping(self, mapping_id: str, from_id: str, to_id: str, map_type: str = "Same As",
                    **fields: Any) -> dict[str, Any]:
        url = f"{self.path}mappings/{mapping_id}/"
        payload = {"type": "Mapping", "id": mapping_id, "url": url, "map_type": map_type,
                   "retired": False, "from_concept_url": f"{self.path}concepts/{from_id}/",
                   "to_concept_url": f"{self.path}concepts/{to_id}/", **fields}
        return self._write(url, payload)

    def set_retired(self, url: str, retired: bool) -> None:
        payload = copy.deepcopy(self.items[url])
        payload["retired"] = retired
        self._write(url, payload)

    def hard_delete(self, url: str) -> None:
        item = self.items[url]
        self.items[url] = {"type": item["type"], "id": item["id"], "url": url, "deleted": True,
                           "updated_on": self.now(), "version": ""}

    def release(self, version_id: str, released: bool = True, pending: int = 0) -> StubVersion:
        version = StubVersion(id=version_id, items=copy.deepcopy(self.items),
                              created_on=self.now(), released=released, pending=pending)
        self.versions.append(version)
        return version

    def live(self, items: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        return {u: i for u, i in (self.items if items is None else items).items()
                if not i.get("deleted")}

    def checksum(self, version_id: str | None = None) -> str:
        return content_checksum(self.items if version_id is None else self.version(version_id).items)

    def version(self, version_id: str) -> StubVersion:
        return next(v for v in self.versions if v.id == version_id)

    # --- payloads --------------------------------------------------------------------------
    def version_payload(self, version: StubVersion | None) -> dict[str, Any]:
        items = self.items if version is None else version.items
        stamps = [i["updated_on"] for i in items.values()]
        vid = "HEAD" if version is None else version.id
        url = self.path if version is None else f"{self.path}{version.id}/"
        checksums = {"standard": "a" * 32, "smart": "b" * 32} if self.ocl else \
            {"content": content_checksum(items)}
        return {"type": "Source" if version is None else "Source Version", "id": vid,
                "short_code": self.source, "owner": self.owner, "url": url, "version_url": url,
                "released": bool(version and version.released),
                "created_on": version.created_on if version else self.updated_on,
                "updated_on": version.created_on if version else self.updated_on,
                "lastUpdated": max(stamps) if stamps else None,
                "checksums": checksums}

    def export_bytes(self, version: StubVersion) -> bytes:
        if version.export_path is not None:
            return version.export_path.read_bytes()
        if version.export_bytes is None:
            body = self.version_payload(version)
            body.pop("checksums")
            live = [i for i in version.items.values() if not i.get("deleted")]
            body["concepts"] = [i for i in live if i["type"] == "Concept"]
            body["mappings"] = [i for i in live if i["type"] == "Mapping"]
            data = json.dumps(body).encode()
            buffer = io.BytesIO()
            if version.export_format == "tar.gz":
                with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                    info = tarfile.TarInfo("export.json")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            else:
                with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                    archive.writestr("export.json", data)
            version.export_bytes = buffer.getvalue()
        return version.export_bytes


def delta_bytes(stub: StubSource, base: StubVersion, version: StubVersion) -> bytes:
    """A delta package as termsync builds it: export.json (the version's fields, the items
    created or changed since `base`, then `deleted`) and manifest.json."""
    key = (base.id, version.id)
    if key not in stub.delta_cache:
        before, after = stub.live(base.items), stub.live(version.items)
        changed = [item for url, item in after.items()
                   if before.get(url, {}).get("version") != item["version"]]
        deleted = [{"type": item["type"], "id": item["id"], "url": url, "deleted": True,
                    "version": version.items.get(url, {}).get("version", ""),
                    "updated_on": version.items.get(url, {}).get("updated_on")
                    or version.created_on}
                   for url, item in before.items() if url not in after]
        body = stub.version_payload(version)
        body.pop("checksums")
        body["concepts"] = [i for i in changed if i["type"] == "Concept"]
        body["mappings"] = [i for i in changed if i["type"] == "Mapping"]
        body["deleted"] = deleted

        def mark(end: StubVersion) -> dict[str, Any]:
            payload = stub.version_payload(end)
            return {"id": end.id, "url": payload["url"], "checksums": payload["checksums"],
                    "lastUpdated": payload["lastUpdated"], "created_on": end.created_on}

        counts = {kind: {"created": 0, "updated": 0, "retired": 0, "deleted": 0}
                  for kind in ("concepts", "mappings")}
        for item in changed:
            kind = "concepts" if item["type"] == "Concept" else "mappings"
            counts[kind]["updated" if item["url"] in before else "created"] += 1
        for item in deleted:
            counts["concepts" if item["type"] == "Concept" else "mappings"]["deleted"] += 1
        manifest = {"type": "Delta Package", "format": 1,
                    "repository": {"type": "Source", "id": stub.source, "owner": stub.owner,
                                   "url": stub.path},
                    "from": mark(base), "to": mark(version), "counts": counts,
                    "items": len(changed) + len(deleted)}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("export.json", json.dumps(body))
            archive.writestr("manifest.json", json.dumps(manifest))
        stub.delta_cache[key] = buffer.getvalue()
    return stub.delta_cache[key]


def load_export_items(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(header, items by url) of a real OCL export zip."""
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("export.json"))
    items = {i["url"]: i for kind in ("concepts", "mappings") for i in data.pop(kind)}
    return data, items


def create_stub_app(stub: StubSource) -> Flask:
    """The stub's Flask app."""
    app = Flask("ocl_stub")

    @app.before_request
    def record() -> None:
        with stub.lock:
            stub.requests_seen.append(request.full_path)
            stub.auth_seen.append(request.headers.get("Authorization"))

    def page(payload: dict[str, Any], items: dict[str, dict[str, Any]]) -> Response:
        args = request.args
        since = args.get("updatedSince")
        if stub.ocl and since and payload["updated_on"] < since:
            # oclapi2 filters the repository itself by updatedSince
            return Response(json.dumps({"detail": "Not found."}), 404,
                            mimetype="application/json")
        kinds = [k for flag, k in (("includeConcepts", "Concept"), ("includeMappings", "Mapping"))
                 if args.get(flag, "").lower() == "true"]
        if not kinds:
            return Response(json.dumps(payload), mimetype="application/json")
        if stub.ocl:
            return ocl_detail(payload, items, since, kinds)
        include_retired = args.get("includeRetired", "").lower() == "true"
        tombstones = not stub.tombstones_need_flag \
            or args.get("includeDeleted", "").lower() == "true"
        limit = int(args.get("limit") or 500)
        selected = sorted(
            (i for i in items.values()
             if i["type"] in kinds and (since is None or i["updated_on"] >= since)
             and (tombstones or not i.get("deleted"))
             and (include_retired or not (i.get("retired") or i.get("deleted")))),
            key=lambda i: (i["updated_on"], i["type"], i["id"]))
        after = args.get("after")
        found = len(selected)
        if after:
            key = tuple(after.split("|"))
            selected = [i for i in selected if (i["updated_on"], i["type"], i["id"]) > key]
        chunk = selected[:limit]
        body = dict(payload, concepts=[i for i in chunk if i["type"] == "Concept"],
                    mappings=[i for i in chunk if i["type"] == "Mapping"])
        headers = {"num_found": str(found), "num_returned": str(len(chunk))}
        if len(selected) > limit:
            last = chunk[-1]
            query = dict(args.items(), after=f"{last['updated_on']}|{last['type']}|{last['id']}")
            nxt = f"{request.base_url}?{urlencode(query)}"
            headers.update({"next": nxt, "Link": f'<{nxt}>; rel="next"'})
        return Response(json.dumps(body), headers=headers, mimetype="application/json")

    def delta_base(version: StubVersion) -> StubVersion | Response | None:
        """The base of the delta `since` asks for (None: the whole export), or the 400."""
        since = request.args.get("since")
        if not since or stub.ocl or stub.deltas == "ignore":
            return None
        found = [v for v in stub.versions if v.id == since and v.released]
        if stub.deltas == "refuse" or not found or not version.released \
                or found[0].created_on >= version.created_on:
            return Response(json.dumps({"code": 400, "status": "Bad Request",
                                        "message": f"since={since} cannot start a delta"}), 400,
                            mimetype="application/json")
        return found[0]

    def ocl_detail(payload: dict[str, Any], items: dict[str, dict[str, Any]], since: str | None,
                   kinds: list[str]) -> Response:
        """OCL's repository detail with includeConcepts/includeMappings: each kind newest first,
        `offset` and `limit`, no paging headers."""
        args = request.args
        include_retired = args.get("includeRetired", "").lower() == "true"
        offset, limit = int(args.get("offset") or 0), int(args.get("limit") or 25)
        body = dict(payload)
        for kind, key in (("Concept", "concepts"), ("Mapping", "mappings")):
            if kind in kinds:
                body[key] = ocl_selected(items, kind, since, include_retired)[offset:offset + limit]
        return Response(json.dumps(body), mimetype="application/json")

    def ocl_selected(items: dict[str, dict[str, Any]], kind: str, since: str | None,
                     include_retired: bool) -> list[dict[str, Any]]:
        """What OCL lists of one kind: never a hard delete, retired only when asked, newest first."""
        return sorted((i for i in items.values()
                       if i["type"] == kind and not i.get("deleted")
                       and (since is None or i["updated_on"] >= since)
                       and (include_retired or not i.get("retired"))),
                      key=lambda i: (i["updated_on"], i["id"]), reverse=True)

    def listing(items: dict[str, dict[str, Any]], kind: str) -> Response:
        """`concepts/` or `mappings/` as OCL lists them (termsync's dialects alike)."""
        args = request.args
        limit = int(args.get("limit") or 25)
        limit = 25 if limit <= 0 or limit > 1000 else limit
        number = max(1, int(args.get("page") or 1))
        selected = ocl_selected(items, kind, args.get("updatedSince"),
                                args.get("includeRetired", "").lower() == "true")
        chunk = selected[(number - 1) * limit:number * limit]
        if args.get("verbose", "").lower() != "true":  # OCL's list serializer: no names
            chunk = [{key: value for key, value in item.items()
                      if key not in ("names", "descriptions", "updated_on")}
                     | {"version_updated_on": item["updated_on"]} for item in chunk]
        pages = -(-len(selected) // limit)
        headers = {"num_found": str(len(selected)), "num_returned": str(len(chunk)),
                   "pages": str(pages), "page_number": str(number)}
        if number < pages:
            headers["next"] = f"{request.base_url}?{urlencode(dict(args.items(), page=number + 1))}"
        return Response(json.dumps(chunk), headers=headers, mimetype="application/json")

    def version_items(version_id: str | None) -> dict[str, dict[str, Any]] | None:
        if version_id is None:
            return stub.items
        found = [v for v in stub.versions if v.id == version_id]
        return found[0].items if found else None

    base = stub.path

    for kind, name in (("Concept", "concepts"), ("Mapping", "mappings")):
        def listed(version_id: str | None = None, kind: str = kind) -> Response:
            items = version_items(version_id)
            if items is None:
                return Response(json.dumps({"detail": "Not found."}), 404,
                                mimetype="application/json")
            return listing(items, kind)

        app.add_url_rule(f"{base}{name}/", f"{name}_head", listed)
        app.add_url_rule(f"{base}<version_id>/{name}/", f"{name}_version", listed)

    @app.get("/redirect")
    def redirect() -> Response:
        return Response("", 302, {"Location": request.args["to"]})

    @app.get(f"{base}versions/")
    def versions() -> Response:
        released = request.args.get("released")
        chosen = [v for v in reversed(stub.versions)
                  if released is None or v.released == (released.lower() == "true")]
        limit = int(request.args.get("limit") or 500)
        return Response(json.dumps([stub.version_payload(v) for v in chosen[:limit]]),
                        mimetype="application/json")

    @app.get(base)
    def head() -> Response:
        return page(stub.version_payload(None), stub.items)

    @app.get(f"{base}<version_id>/")
    def version(version_id: str) -> Response:
        found = [v for v in stub.versions if v.id == version_id]
        if not found:
            return Response(json.dumps({"code": 404, "status": "Not Found",
                                        "message": f"Version '{version_id}' not found."}), 404,
                            mimetype="application/json")
        return page(stub.version_payload(found[0]), found[0].items)

    @app.get(f"{base}<version_id>/export/")
    def export(version_id: str) -> Response:
        found = [v for v in stub.versions if v.id == version_id]
        if not found:
            return Response(json.dumps({"code": 404, "status": "Not Found", "message": "nope"}),
                            404, mimetype="application/json")
        version = found[0]
        base = delta_base(version)
        if isinstance(base, Response):
            return base
        if version.failed:
            return Response(json.dumps({"state": "FAILED", "error": "disk full"}), 500,
                            mimetype="application/json")
        if version.needs_post and not version.requested:
            return Response("", 204)
        if version.pending > 0:
            version.pending -= 1
            return Response(json.dumps({"state": "BUILDING", "progress": "41%"}),
                            version.building_status,
                            {"Retry-After": "7", "X-Export-Progress": "41%"},
                            mimetype="application/json")
        data = stub.export_bytes(version) if base is None else delta_bytes(stub, base, version)
        last_updated = stub.version_payload(version)["lastUpdated"] or ""
        if stub.file_host is not None:
            # OCL: a redirect to the file in a bucket elsewhere, with lastUpdated on the way
            location = stub.file_host.publish(data, version.export_format)
            return Response("", stub.redirect_status,
                            {"Location": location, "lastUpdated": last_updated})
        sha = hashlib.sha256(data).digest()
        headers = {"ETag": f'"{sha.hex()}"',
                   "Repr-Digest": f"sha-256=:{base64.b64encode(sha).decode()}:",
                   "Accept-Ranges": "bytes", "exportURL": request.base_url,
                   "lastUpdated": last_updated, "Connection": "close"}
        start = 0
        status = 200
        range_header = request.headers.get("Range")
        if range_header and not stub.ignore_range and range_header.startswith("bytes="):
            start = int(range_header[6:].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        headers["Content-Length"] = str(len(body))
        return Response(body, status, headers, mimetype="application/zip")

    @app.post(f"{base}<version_id>/export/")
    def request_export(version_id: str) -> Response:
        stub.posts_seen.append(version_id)
        found = [v for v in stub.versions if v.id == version_id]
        if not found:
            return Response(json.dumps({"detail": "Not found."}), 404, mimetype="application/json")
        version = found[0]
        base = delta_base(version)
        if isinstance(base, Response):
            return base
        if version.needs_post and not version.requested:
            version.requested = True
            return Response(json.dumps({"state": "PENDING"}), 202, {"Retry-After": "3"},
                            mimetype="application/json")
        if version.pending > 0:
            return Response(json.dumps({"state": "BUILDING"}), 409, mimetype="application/json")
        return Response("", 303, {"Location": request.base_url})

    return app


class FileHost:
    """Where OCL keeps export files (a bucket): another origin that serves bytes by path with
    ranges, and refuses any request carrying `Authorization` (as S3 refuses a second auth)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests_seen: list[str] = []
        self.auth_seen: list[str | None] = []
        self.url = ""  # set once served
        self.app = Flask("file_host")
        self.app.add_url_rule("/files/<name>", "file", self._serve)

    def publish(self, data: bytes, extension: str) -> str:
        """Store a file; its absolute URL."""
        name = f"{hashlib.sha256(data).hexdigest()}.{extension}"
        self.files[name] = data
        return f"{self.url}/files/{name}"

    def _serve(self, name: str) -> Response:
        self.requests_seen.append(request.full_path)
        self.auth_seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization"):
            return Response("<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism "
                            "allowed</Message></Error>", 400, mimetype="application/xml")
        data = self.files.get(name)
        if data is None:
            return Response("<Error><Code>NoSuchKey</Code></Error>", 404, mimetype="application/xml")
        headers = {"ETag": f'"{hashlib.md5(data).hexdigest()}"', "Accept-Ranges": "bytes"}
        start, status = 0, 200
        range_header = request.headers.get("Range", "")
        if range_header.startswith("bytes="):
            start = int(range_header[6:].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        headers["Content-Length"] = str(len(body))
        kind = "application/zip" if name.endswith(".zip") else "application/x-gzip"
        return Response(body, status, headers, mimetype=kind)


class ForwardTo:
    """A WSGI app that sends every request on to another server (the deployed stack) and its
    answer back as it streams, so that a FaultInjector can stand between a client and a server
    that runs in processes of its own."""

    # Headers of one hop, which the forwarding server sets itself. `Host` goes on as the client
    # sent it, as a proxy's does: absolute URLs in answers (`exportURL`) name this server.
    HOP = frozenset({"connection", "keep-alive", "transfer-encoding"})

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.http.trust_env = False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        # the request's own bytes: werkzeug's PATH_INFO is decoded (%2F would become a slash)
        target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ["PATH_INFO"]
        headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
                   if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in self.HOP}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        answer = self.http.request(environ["REQUEST_METHOD"], self.url + target, headers=headers,
                                   data=body, allow_redirects=False, stream=True, timeout=60)
        start_response(f"{answer.status_code} {answer.reason}",
                       [(key, value) for key, value in answer.headers.items()
                        if key.lower() not in self.HOP])
        return ForwardedBody(answer)


class ForwardedBody:
    """The body of a forwarded answer, streamed; closing it closes the answer."""

    def __init__(self, answer: requests.Response) -> None:
        self.answer = answer

    def __iter__(self) -> Any:
        return self.answer.raw.stream(65536, decode_content=False)

    def close(self) -> None:
        self.answer.close()


class FaultInjector:
    """WSGI middleware in front of any server (stub or real): scripted errors, cut or corrupted
    export downloads."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.faults: list[Fault] = []
        self.cut_downloads: list[int] = []  # serve only N bytes of the next downloads, then close
        self.corrupt_downloads = 0  # flip one byte in this many full (200) downloads
        self.download_paths = ("/export",)  # what counts as a download
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        target = environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", "")
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.path in target and \
                        fault.method in (None, environ["REQUEST_METHOD"]):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.times -= 1
                    body = json.dumps(fault.body or {"code": fault.status, "status": "Unavailable",
                                                     "message": f"stub fault {fault.status}"})
                    headers = [("Content-Type", "application/json"),
                               ("Content-Length", str(len(body)))]
                    if fault.retry_after:
                        headers.append(("Retry-After", fault.retry_after))
                    start_response(f"{fault.status} FAULT", headers)
                    return [body.encode()]
            path = environ.get("PATH_INFO", "")
            tamper = any(p in path for p in self.download_paths) and \
                (self.cut_downloads or self.corrupt_downloads) and environ["REQUEST_METHOD"] == "GET"
        if not tamper:
            return self.app(environ, start_response)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers)
            return lambda data: None

        chunks = self.app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        code = int(captured["status"].split()[0])
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "connection"]
        headers.append(("Connection", "close"))
        with self.lock:
            if code == 200 and self.corrupt_downloads > 0:
                self.corrupt_downloads -= 1
                middle = len(body) // 2
                body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
            elif code in (200, 206) and self.cut_downloads:
                body = body[:self.cut_downloads.pop(0)]  # Content-Length still promises it all
        start_response(captured["status"], headers)
        return [body]


class LiveServer:
    """A WSGI app served on 127.0.0.1:<free port> from a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        self.app = app
        self.server = make_server(host, 0, app, threaded=True)
        self.url = f"http://{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
