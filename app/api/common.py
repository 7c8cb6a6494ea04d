"""Shared pieces of the HTTP layer: the caller, owner routes, JSON and paging responses."""

from __future__ import annotations

import base64
import zipfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
from flask import Response, current_app, g, request
from werkzeug.http import http_date

from ..domain import Domain, ocl
from ..domain.accounts import Caller, Owner
from ..domain.content import DiffCursor
from ..domain.errors import Invalid, Unauthorized
from ..domain.values import printable
from ..model import COLLECTION_TYPE, SOURCE_TYPE, Source
from ..timeutil import to_datetime

# How much earlier than the moment a query read the data a diff says it is complete up to: a
# write stamped just before that moment may still be in flight (its stamp is taken before it
# is visible), and the OpenMRS module, which sends `Date` back as `updatedSince`, has no overlap.
DATE_MARGIN = timedelta(seconds=1)
# The header that carries the application's `Date` through HTTP servers that send their own
# (gunicorn drops an application's `Date`); the proxy sends it on as `Date` (docs/deployment.md).
DATE_CARRIER = "X-Termsync-Date"


def domain() -> Domain:
    """The domain services of the running app."""
    return current_app.extensions["termsync"]


def current_caller() -> Caller:
    """The caller of this request, from `Authorization: Token <key>` (401 for a bad token)."""
    if "caller" not in g:
        header = request.headers.get("Authorization", "")
        token = None
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() not in ("token", "bearer") or not value.strip():
                raise Unauthorized("Malformed Authorization header: expected 'Token <key>'.")
            token = value.strip()
        g.caller = domain().accounts.caller_for_token(token)
    return g.caller


# A route under one source serves the collection of the same name too (docs/api.md, Collections:
# "versions, exports, diffs and subscriptions work exactly as for sources"): its collections/ rule
# carries `repo_kind`, which goes to `g.repo_kind` (app.api.register_http_rules) where
# `resolve_source` reads it, and the domain answers a write a collection does not take with 405.
SOURCE_PREFIX = "sources/<source_id>/"
COLLECTION_PREFIX = "collections/<source_id>/"


def owner_routes(blp: Any, suffix: str, name: str) -> Callable[[Any], Any]:
    """Register a view under /orgs/{owner}/, /users/{owner}/ and /user/ (the caller); a view of
    one source (`sources/<source_id>/...`) also serves collections (`collections/<source_id>/...`)."""
    variants: list[tuple[str, str, dict[str, Any]]] = [(suffix, name, {})]
    if suffix.startswith(SOURCE_PREFIX):
        variants.append((COLLECTION_PREFIX + suffix[len(SOURCE_PREFIX):], f"{name}_in_collection",
                         {"defaults": {"repo_kind": "collections"}}))

    def decorator(view: Any) -> Any:
        for rule, endpoint, options in variants:
            blp.route(f"/<any(orgs,users):owner_kind>/<owner_id>/{rule}", endpoint=endpoint,
                      **options)(view)
            blp.route(f"/user/{rule}", endpoint=f"{endpoint}_caller", **options)(view)
        return view
    return decorator


def resolve_owner(owner_kind: str | None, owner_id: str | None) -> Owner:
    """The owner named by the URL (404 if unknown or hidden)."""
    return domain().accounts.resolve_owner(current_caller(), owner_kind, owner_id)


def resolve_source(owner_kind: str | None, owner_id: str | None,
                   source_id: str) -> tuple[Owner, Source]:
    """The owner and the source (or collection: the URL says which) named by the URL (404 if
    unknown or hidden)."""
    owner = resolve_owner(owner_kind, owner_id)
    kind = COLLECTION_TYPE if g.get("repo_kind") == "collections" else SOURCE_TYPE
    return owner, domain().content.get_source(current_caller(), owner, source_id, kind)


def render_user(user: dict[str, Any], counts: bool = True) -> dict[str, Any]:
    """A user (with OCL's counts: organizations, public sources), with their personal data only
    for themself and admins (`Accounts.sees_personal_data`)."""
    accounts = domain().accounts
    return ocl.render_user(user, accounts.user_counts(user) if counts else None,
                           personal=accounts.sees_personal_data(current_caller(), user["_id"]))


def render_item(item: dict[str, Any], repo: Source) -> dict[str, Any]:
    """An item read from a repository in OCL's shape, with its own source's fields (a
    collection's items keep their source identity); sources are looked up once per request."""
    renderers = g.setdefault("renderers", {})
    if repo.url not in renderers:
        renderers[repo.url] = domain().content.renderer(repo)
    rendered: dict[str, Any] = renderers[repo.url](item)
    return rendered


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded with orjson."""
    return Response(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS), status=status, headers=headers,
                    mimetype="application/json")


def error_response(status: int, message: str, errors: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """The one error shape: {code, status, message, errors?}, as flask-smorest answers."""
    # Messages may quote what was sent, lone surrogates too: those are sent as escapes.
    body: dict[str, Any] = {"code": status, "status": HTTPStatus(status).phrase,
                            "message": printable(message)}
    if errors:
        body["errors"] = printable(errors)
    return json_response(body, status, headers)


def page_url(**changes: Any) -> str:
    """The absolute URL of this request with some query parameters changed."""
    params = request.args.to_dict()
    params.update({key: str(value) for key, value in changes.items()})
    return f"{request.base_url}?{urlencode(params)}"


def paging_headers(num_found: int, num_returned: int, next_url: str | None) -> dict[str, str]:
    """num_found / num_returned / next / Link headers, the same on every list and diff."""
    headers = {"num_found": str(num_found), "num_returned": str(num_returned)}
    if next_url:
        headers["next"] = next_url
        headers["Link"] = f'<{next_url}>; rel="next"'
    return headers


Listed = TypeVar("Listed")  # what a list holds: documents, or the model's records


def list_response(args: dict[str, Any],
                  fetch: Callable[[int, int], tuple[list[Listed], int]],
                  render: Callable[[Listed], dict[str, Any]]) -> Response:
    """One page of a list (`page`, `limit` in args): `fetch(skip, limit)` gives the documents
    (or records) and how many there are in all; paging headers, with `next` at the following
    page."""
    page, limit = args["page"], args["limit"]
    documents, num_found = fetch((page - 1) * limit, limit)
    items = [render(document) for document in documents]
    next_url = page_url(page=page + 1, limit=limit) if page * limit < num_found else None
    return json_response(items, headers=paging_headers(num_found, len(items), next_url))


def encode_cursor(cursor: DiffCursor) -> str:
    """An opaque keyset cursor for the `next` link."""
    fields = [cursor.updated_on, cursor.type, cursor.id, cursor.num_found]
    return base64.urlsafe_b64encode(orjson.dumps(fields)).decode().rstrip("=")


def decode_cursor(text: str) -> DiffCursor:
    """Read a cursor back; a mangled one is a 400."""
    try:
        values = orjson.loads(base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode()))
        if isinstance(values, list) and len(values) == 4 and all(
                isinstance(value, str) for value in values[:3]) and isinstance(values[3], int):
            return DiffCursor(values[0], values[1], values[2], values[3])
    except (ValueError, TypeError):
        pass
    raise Invalid("Invalid cursor: follow the `next` link as given.", errors={"cursor": ["Invalid."]})


def json_object_stream(fields: dict[str, Any],
                       arrays: list[tuple[str, Iterator[dict[str, Any]]]],
                       batch: int = 500) -> Iterator[bytes]:
    """The bytes of `{**fields, name: [items...], ...}`, items rendered and sent in batches, so
    that an answer of any size goes out in flat memory."""
    head = orjson.dumps(fields, option=orjson.OPT_NON_STR_KEYS)
    yield head[:-1]
    separator = b"," if fields else b""
    for name, items in arrays:
        yield separator + orjson.dumps(name) + b":["
        separator = b","
        chunk: list[bytes] = []
        first = True
        for item in items:
            chunk.append(orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS))
            if len(chunk) >= batch:
                yield (b"" if first else b",") + b",".join(chunk)
                first, chunk = False, []
        if chunk:
            yield (b"" if first else b",") + b",".join(chunk)
        yield b"]"
    yield b"}"


class _Pipe:
    """A write-only, unseekable file whose written bytes are taken out as they come."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def zip_stream(parts: Iterator[bytes], name: str = "export.json") -> Iterator[bytes]:
    """A zip holding one file made of `parts`, streamed as it is compressed (data descriptors;
    no zip64 records, which Java's ZipInputStream misreads): the `Compress: true` answer."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED) as archive:  # type: ignore[call-overload]
        with archive.open(name, "w") as entry:
            for part in parts:
                entry.write(part)
                data = pipe.take()
                if data:
                    yield data
    yield pipe.take()


def complete_up_to(read_at: datetime, unsent_from: str | None = None) -> datetime:
    """The `Date` of a diff or listing: when it is complete up to (docs/api.md, The Date header).

    `read_at` is taken just before the query reads the data; `unsent_from` is an `updated_on`
    at or before the first item not sent when more items matched than were sent. Second
    precision, rounded down, as HTTP dates are.
    """
    moment = read_at - DATE_MARGIN
    if unsent_from:
        moment = min(moment, to_datetime(unsent_from))
    return moment.replace(microsecond=0)


def date_header(moment: datetime) -> dict[str, str]:
    """A `Date` header for a moment (carried past the HTTP server as `DATE_CARRIER` too)."""
    return {"Date": http_date(moment)}
