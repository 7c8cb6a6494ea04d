"""The subscriber against each dialect it must speak, in release and snapshot mode: termsync
before and after it took OCL v2's answers, and a real OCL v2 (exports 204 until POSTed, 208 while
building, then a 303 to a bucket on another host that refuses the token; zip or tar.gz; no
`checksums.content`; hard deletes never listed; an empty diff answered 404)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import TOKEN, populate
from .ocl_stub import Fault, FaultInjector, FileHost, LiveServer, StubSource, create_stub_app

DIALECTS = ["termsync-before", "termsync", "ocl-zip", "ocl-tar.gz"]


def dialect_stub(dialect: str, file_host: FileHost) -> StubSource:
    """A populated stub speaking `dialect`."""
    stub = StubSource()
    populate(stub)
    if dialect == "termsync-before":
        stub.tombstones_need_flag = False
        stub.deltas = "ignore"  # it knew no `since`: a delta request gets the whole export
    elif dialect.startswith("ocl"):
        stub.ocl = True
        stub.file_host = file_host
        stub.redirect_status = 302 if dialect == "ocl-tar.gz" else 303
    return stub


def release(stub: StubSource, version_id: str, dialect: str) -> None:
    """Cut a release whose export is not ready at once, as each dialect says so."""
    version = stub.release(version_id, pending=2)
    if dialect == "termsync-before":
        version.building_status = 202  # GET queued the build itself
    else:
        version.needs_post = True  # 204 until POSTed, then 208
    if dialect == "ocl-tar.gz":
        version.export_format = "tar.gz"


def curate(stub: StubSource) -> set[str]:
    """Edits, a retirement, an un-retirement, hard deletes and new items; the deleted urls."""
    stub.put_concept("C0001", name="changed")
    stub.set_retired(f"{stub.path}concepts/C0002/", True)
    stub.set_retired(f"{stub.path}concepts/C0003/", True)
    stub.set_retired(f"{stub.path}concepts/C0003/", False)
    deleted = {f"{stub.path}concepts/C0004/", f"{stub.path}mappings/5/"}
    for url in deleted:
        stub.hard_delete(url)
    stub.put_concept("NEW1")
    stub.put_mapping("99", "NEW1", "C0001")
    return deleted


def content(items: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {u: i["version"] for u, i in items.items() if not i.get("deleted")}


@pytest.mark.parametrize("mode", ["release", "snapshot"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_dialect_converges(dialect, mode, file_host, make_subscriber, sleeps):
    stub = dialect_stub(dialect, file_host)
    release(stub, "v1", dialect)
    with LiveServer(create_stub_app(stub)) as server:
        subscriber = make_subscriber(server.url, mode=mode)
        first = subscriber.sync()
        assert first.ok, first.error
        assert first.action.startswith("export")
        assert first.counts == {"concepts": 30, "mappings": 20}
        assert sleeps.waits[:2] == [7.0, 7.0] or sleeps.waits[:3] == [3.0, 7.0, 7.0]
        assert stub.posts_seen == ([] if dialect == "termsync-before" else ["v1"])

        deleted = curate(stub)
        release(stub, "v2", dialect)
        second = subscriber.sync()
    assert second.ok, second.error
    target = stub.items if mode == "snapshot" else stub.version("v2").items
    local = dict(subscriber.store.url_versions("demo"))
    diffs = [r for r in stub.requests_seen if "includeConcepts" in r]
    deltas = [r for r in stub.requests_seen if "since=" in r]
    if mode == "release" and not dialect.startswith("ocl"):
        # termsync: one delta package (before deltas: the whole export it answers instead)
        assert second.action == ("export" if dialect == "termsync-before" else "delta")
        assert deltas and not diffs
    else:
        assert diffs and not deltas  # OCL has no delta packages: never asked for one
    if dialect.startswith("ocl"):
        # OCL publishes no checksums.content (nothing to verify) and never lists hard deletes,
        # so they stay in the mirror until the next full load (docs/sync.md)
        assert second.server_checksum is None
        assert not any("includeDeleted" in r for r in diffs)
        assert local == {**content(target), **{u: stub.version("v1").items[u]["version"]
                                               for u in deleted}}
        assert file_host.auth_seen and set(file_host.auth_seen) == {None}
    else:
        assert all("includeDeleted=true" in r for r in diffs)
        assert local == content(target)
        assert second.checksum == second.server_checksum == content_checksum_of(target)
        # tombstones, or gone when a whole export replaced the copy
        assert all(item is None or item.deleted
                   for item in (subscriber.store.get_item("demo", u) for u in deleted))
    assert set(stub.auth_seen) == {f"Token {TOKEN}"}
    assert subscriber.store.get_item("demo", f"{stub.path}concepts/C0002/").payload["retired"]


def content_checksum_of(items: dict[str, dict[str, Any]]) -> str:
    from .ocl_stub import content_checksum

    return content_checksum(items)


@pytest.fixture
def ocl(file_host: FileHost):
    """A populated OCL v2 stub with a released v1, served behind a fault injector."""
    stub = dialect_stub("ocl-zip", file_host)
    release(stub, "v1", "ocl-zip")
    injector = FaultInjector(create_stub_app(stub))
    with LiveServer(injector) as server:
        yield stub, injector, server


def test_empty_diff_answered_404_means_no_changes(ocl, make_subscriber):
    stub, _, server = ocl
    subscriber = make_subscriber(server.url, mode="snapshot", overlap_seconds=0)
    assert subscriber.sync().ok
    # the newest item is hard-deleted: OCL lists nothing at or after our lastUpdated: a 404
    newest = max(stub.items.values(), key=lambda i: i["updated_on"])
    stub.hard_delete(newest["url"])
    result = subscriber.sync()
    assert result.ok, result.error
    assert result.action == "snapshot" and result.pages == 0
    state = subscriber.store.load_state("demo")
    assert state.cursor is None and state.version == "HEAD"
    assert any(r.startswith(f"{stub.path}?") and "updatedSince" in r for r in stub.requests_seen)
    # cross-checked: the listings hold nothing changed either
    assert any(r.startswith(f"{stub.path}concepts/?") and "limit=1" in r
               for r in stub.requests_seen)


def test_404_for_a_new_release_diff_is_cross_checked(ocl, make_subscriber):
    stub, injector, server = ocl
    subscriber = make_subscriber(server.url, overlap_seconds=0)
    assert subscriber.sync().ok
    stub.release("v2")  # nothing changed since v1
    injector.faults.append(Fault(path="v2/?includeConcepts", status=404,
                                 body={"detail": "Not found."}))
    result = subscriber.sync()
    assert result.ok, result.error
    assert result.action == "diff" and result.version == "v2"
    # the listings were asked (one item each, for num_found), and listed only the item at the
    # very updatedSince (inclusive), read again: the content is v2's
    asked = [r for r in stub.requests_seen if "/v2/concepts/" in r or "/v2/mappings/" in r]
    assert any("limit=1" in r and "updatedSince" in r for r in asked)
    assert dict(subscriber.store.url_versions("demo")) == content(stub.version("v2").items)


def changes_after_first_pass(stub: StubSource) -> dict[str, str]:
    """What a curator did in OCL after the subscriber's first pass: a PATCH and a DELETE (which
    OCL makes a retirement), and a new mapping; {url: what to look for}."""
    stub.put_concept("C0007", name="edited after the first pass")
    stub.set_retired(f"{stub.path}concepts/C0008/", True)
    stub.put_mapping("77", "C0007", "C0008")
    return {f"{stub.path}concepts/C0007/": "edited", f"{stub.path}concepts/C0008/": "retired",
            f"{stub.path}mappings/77/": "new"}


def test_a_404_diff_is_not_no_changes_when_the_listings_hold_changes(ocl, make_subscriber,
                                                                     caplog):
    """Issue 21, item 6: OCL answered the source's diff 404 (the source itself was not edited)
    while its concepts/ listed the edited concept; the subscriber read that as no changes."""
    stub, _, server = ocl
    subscriber = make_subscriber(server.url, mode="snapshot")
    assert subscriber.sync().ok
    changed = changes_after_first_pass(stub)
    seen = len(stub.requests_seen)
    caplog.set_level("INFO", logger="sync.subscriber")
    result = subscriber.sync()
    assert result.ok, result.error
    requests = stub.requests_seen[seen:]
    diff = [r for r in requests if r.startswith(f"{stub.path}?") and "updatedSince" in r]
    assert diff  # the source-level diff: 404 (the source itself was not edited)
    assert any(r.startswith(f"{stub.path}concepts/?") and "limit=1" in r for r in requests)
    assert any(r.startswith(f"{stub.path}mappings/?") and "limit=1" in r for r in requests)
    assert any(r.startswith(f"{stub.path}concepts/?") and "verbose=true" in r for r in requests)
    store = subscriber.store
    concept = store.get_item("demo", f"{stub.path}concepts/C0007/")
    assert concept.payload["names"][0]["name"] == "edited after the first pass"
    assert store.get_item("demo", f"{stub.path}concepts/C0008/").payload["retired"] is True
    assert store.get_item("demo", f"{stub.path}mappings/77/") is not None
    assert dict(store.url_versions("demo")) == content(stub.items)
    assert set(changed) <= set(dict(store.url_versions("demo")))
    assert "reading them through concepts/ and mappings/" in caplog.text  # the path taken


def test_a_diff_ocl_cuts_at_the_limit_is_read_through_the_listings(ocl, make_subscriber):
    """OCL answers a repository's diff with at most `limit` items of each kind and no next
    page; the rest come from the listings, which page."""
    stub, _, server = ocl
    subscriber = make_subscriber(server.url, mode="snapshot", page_size=5)
    assert subscriber.sync().ok
    for number in range(12):
        stub.put_concept(f"C{number:04d}", name=f"renamed {number}")
    stub.updated_on = stub.now()  # the source itself edited too: its diff answers 200
    before = len(stub.requests_seen)
    result = subscriber.sync()
    assert result.ok, result.error
    assert any(r.startswith(f"{stub.path}?") for r in stub.requests_seen[before:])
    assert dict(subscriber.store.url_versions("demo")) == content(stub.items)
    names = {subscriber.store.get_item("demo", f"{stub.path}concepts/C{n:04d}/")
             .payload["names"][0]["name"] for n in range(12)}
    assert names == {f"renamed {n}" for n in range(12)}


def test_404_for_the_source_itself_stays_an_error(ocl, make_subscriber):
    stub, injector, server = ocl
    subscriber = make_subscriber(server.url, mode="snapshot")
    assert subscriber.sync().ok
    injector.faults.append(Fault(path=stub.path, status=404, times=100,
                                 body={"detail": "Not found."}))
    result = subscriber.sync()
    assert not result.ok
    assert "404" in result.error and "Not found." in result.error
    assert subscriber.store.load_state("demo").version == "HEAD"  # nothing touched


@pytest.mark.parametrize("kind, sent", [("termsync", True), ("ocl", False), ("auto", True)])
def test_server_kind_decides_include_deleted(kind, sent, stub, stub_server, make_subscriber):
    subscriber = make_subscriber(stub_server.url, mode="snapshot", server_kind=kind)
    assert subscriber.sync().ok
    diffs = [r for r in stub.requests_seen if "includeConcepts" in r]
    assert diffs and all(("includeDeleted=true" in r) is sent for r in diffs)


def test_a_listing_that_shifts_while_it_is_paged_is_read_again(file_host, make_subscriber):
    """OCL lists newest first: an item edited between two pages moves to the front and pushes
    one item from page 1 to page 2, where it was already read past: seen < num_found, so the
    listing is read again and nothing is lost."""
    stub = dialect_stub("ocl-zip", file_host)
    release(stub, "v1", "ocl-zip")
    edits: list[str] = []

    def edit_between_pages(environ: dict[str, Any], start_response: Any) -> Any:
        query = environ.get("QUERY_STRING", "")
        if environ["PATH_INFO"].endswith("/concepts/") and "page=2" in query and not edits:
            edits.append(stub.put_concept("C0000", name="edited while paged")["url"])
        return app(environ, start_response)

    app = create_stub_app(stub)
    with LiveServer(edit_between_pages) as server:
        subscriber = make_subscriber(server.url, mode="snapshot", page_size=5)
        assert subscriber.sync().ok
        for number in range(10, 20):  # ten changes: two pages of five
            stub.put_concept(f"C{number:04d}", name=f"changed {number}")
        result = subscriber.sync()
    assert result.ok, result.error
    assert edits
    rounds = [r for r in stub.requests_seen if r.startswith(f"{stub.path}concepts/?")
              and "verbose=true" in r and "page=" not in r]
    assert len(rounds) >= 2  # the listing was read from its first page again
    assert dict(subscriber.store.url_versions("demo")) == content(stub.items)
