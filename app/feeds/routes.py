"""The Atom feeds over HTTP: `{repo}/feed.xml` (with the repository's visibility: hidden is 404)
and `/feed.xml` (public repositories only), with ETag / If-None-Match and Last-Modified /
If-Modified-Since."""

from __future__ import annotations

import hashlib

from flask import Response, current_app, request
from flask.views import MethodView
from werkzeug.http import http_date, parse_date, parse_etags

from ..api.common import owner_routes, resolve_source
from ..api.docs import errors
from ..api.parsing import Blueprint
from ..domain.content import is_collection
from ..timeutil import to_datetime
from .atom import FEED_TYPE, FeedEntry, render_feed, stable_id
from .service import FeedService

blp = Blueprint("feeds", __name__, description=(
    "Atom feeds of released versions (the shape of HL7's FHIR Syndication IG): one per "
    "source or collection, and one of every public repository (docs/api.md, Feeds)."))

EXTENSION = "termsync.feeds"


def feeds() -> FeedService:
    """The feed service of the running app."""
    service: FeedService = current_app.extensions[EXTENSION]
    return service


def origin() -> str:
    """Where absolute URLs start: PUBLIC_URL when set, else this request's scheme and host
    (behind TRUSTED_PROXIES, the proxy's), as the other absolute URLs of the API."""
    public = str(current_app.config.get("PUBLIC_URL") or "").rstrip("/")
    return public or request.host_url.rstrip("/")


def feed_response(document: bytes, updated: str, public: bool) -> Response:
    """The feed, or 304 when the caller's copy is current (If-None-Match first, as RFC 9110
    says; If-Modified-Since only without it)."""
    etag = hashlib.sha256(document).hexdigest()[:32]
    modified = to_datetime(updated).replace(microsecond=0)
    headers = {"ETag": f'"{etag}"', "Last-Modified": http_date(modified),
               "Cache-Control": ("public" if public else "private") + ", no-cache",
               "Vary": "Authorization"}
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        etags = parse_etags(if_none_match)
        if etags.star_tag or etags.contains_weak(etag):
            return Response(status=304, headers=headers)
    else:
        since = parse_date(request.headers.get("If-Modified-Since"))
        if since is not None and modified <= since:
            return Response(status=304, headers=headers)
    return Response(document, status=200, headers=headers, content_type=f"{FEED_TYPE}; charset=utf-8")


@owner_routes(blp, "sources/<source_id>/feed.xml", "repository_feed")
class RepositoryFeed(MethodView):
    @blp.response(200, description="An Atom feed (application/atom+xml).",
                  content_type=FEED_TYPE)
    @blp.alt_response(304, description="Not Modified: the caller's copy is current.")
    @errors(blp, 401, 404)
    def get(self, owner_id: str | None = None, source_id: str = "",
            owner_kind: str | None = None) -> Response:
        """The released versions of a source or collection, newest first (the newest 50)."""
        _, repo = resolve_source(owner_kind, owner_id, source_id)
        base = origin()
        entries: list[FeedEntry] = feeds().repository_entries(repo)
        kind = "collection" if is_collection(repo) else "source"
        document, updated = render_feed(
            feed_id=stable_id("feed", repo.url, str(repo.created_on)),
            title=f"{repo.full_name or repo.name or repo.id}: releases",
            subtitle=repo.description or f"Released versions of the {kind} "
                                                f"{repo.owner}/{repo.id}.",
            self_url=f"{base}{repo.url}feed.xml", alternate_url=f"{base}{repo.url}",
            author=str(repo.owner), origin=base, entries=entries,
            fallback_updated=str(repo.updated_on or repo.created_on))
        return feed_response(document, updated, feeds().is_public(repo))


@blp.route("/feed.xml")
class ServerFeed(MethodView):
    @blp.doc(security=[])
    @blp.response(200, description="An Atom feed (application/atom+xml).",
                  content_type=FEED_TYPE)
    @blp.alt_response(304, description="Not Modified: the caller's copy is current.")
    def get(self) -> Response:
        """The newest released versions of every public source and collection (50)."""
        base = origin()
        entries = feeds().server_entries()
        document, updated = render_feed(
            feed_id=stable_id("server-feed", base), title="termsync: releases",
            subtitle="Released versions of every public source and collection of this server.",
            self_url=f"{base}/feed.xml", alternate_url=f"{base}/repos/", author="termsync",
            origin=base, entries=entries, fallback_updated=_epoch())
        return feed_response(document, updated, True)


def _epoch() -> str:
    """`updated` of a feed with no entry: a fixed time, so that its ETag stays the same."""
    return "1970-01-01T00:00:00.000000Z"


