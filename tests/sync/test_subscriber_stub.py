"""The sync algorithm against the stub OCL server: first sync, diffs, resume, convergence."""

from __future__ import annotations

import threading

import pytest

from sync.state import DiffCursor
from sync.store import StoreError

from .conftest import DEMO_EXPORT, tamper
from .ocl_stub import Fault, LiveServer, StubSource, StubVersion, create_stub_app, load_export_items


def local_content(subscriber) -> dict[str, str]:
    """url -> version of the live local items."""
    return dict(subscriber.store.url_versions(subscriber.name))


def server_content(items) -> dict[str, str]:
    return {u: i["version"] for u, i in items.items() if not i.get("deleted")}


def test_real_ocl_export_syncs_into_23_concepts_and_22_mappings(make_subscriber):
    header, items = load_export_items(DEMO_EXPORT)
    stub = StubSource(owner="DemoOrg", source="DemoSource", items=items)
    stub.versions.append(StubVersion(id="v1.0", items=dict(items), created_on=header["created_on"],
                                     export_path=DEMO_EXPORT))
    with LiveServer(create_stub_app(stub)) as server:
        subscriber = make_subscriber(server.url)
        result = subscriber.sync()
    assert result.ok, result.error
    assert result.counts == {"concepts": 23, "mappings": 22}
    assert result.checksum == result.server_checksum == stub.checksum("v1.0")
    cucumber = subscriber.store.get_item("demo", "/orgs/DemoOrg/sources/DemoSource/concepts/Cucumber/")
    assert cucumber.payload["names"][0]["name"] == "Cucumber"
    state = subscriber.store.load_state("demo")
    assert state.version == "v1.0"
    # the export carries no lastUpdated: the newest item's updated_on stands in
    assert state.last_updated == max(i["updated_on"] for i in items.values())


@pytest.mark.parametrize("deltas, move", [("build", "delta"), ("refuse", "diff")])
def test_release_mode_converges_to_each_new_release(stub, stub_server, make_subscriber, deltas,
                                                     move):
    stub.deltas = deltas
    stub.release("v1")
    subscriber = make_subscriber(stub_server.url)
    first = subscriber.sync()
    assert first.ok and first.action == "export"
    assert local_content(subscriber) == server_content(stub.version("v1").items)

    c1, c2, c3 = (f"{stub.path}concepts/C{n:04d}/" for n in (1, 2, 3))
    stub.put_concept("C0001", name="changed")
    stub.set_retired(c2, True)
    stub.hard_delete(c3)
    stub.hard_delete(f"{stub.path}mappings/4/")
    stub.put_concept("NEW1")
    unchanged = subscriber.sync()  # HEAD changed, no new release: nothing to do
    assert unchanged.ok and unchanged.action == "up to date"
    assert local_content(subscriber) == server_content(stub.version("v1").items)

    stub.release("v2")
    stub.set_retired(c2, False)  # un-retired in HEAD only, after v2
    second = subscriber.sync()
    assert second.ok, second.error
    assert second.action == move and second.version == "v2"
    assert local_content(subscriber) == server_content(stub.version("v2").items)
    assert second.checksum == stub.checksum("v2")
    assert subscriber.store.get_item("demo", c2).payload["retired"] is True
    assert subscriber.store.get_item("demo", c1).payload["names"][0]["name"] == "changed"
    assert subscriber.store.get_item("demo", c3).deleted
    assert second.counts == {"concepts": 30, "mappings": 19}

    stub.release("v3")
    third = subscriber.sync()
    assert third.ok and third.version == "v3" and third.action == move
    assert subscriber.store.get_item("demo", c2).payload["retired"] is False
    assert third.checksum == stub.checksum("v3")


def test_snapshot_mode_converges_to_head(stub, stub_server, make_subscriber):
    stub.release("v1")
    subscriber = make_subscriber(stub_server.url, mode="snapshot")
    assert subscriber.sync().ok
    c5 = f"{stub.path}concepts/C0005/"
    stub.set_retired(c5, True)
    stub.put_concept("C0006", name="renamed")
    stub.hard_delete(f"{stub.path}concepts/C0007/")
    stub.put_mapping("99", "C0001", "C0002")
    result = subscriber.sync()
    assert result.ok, result.error
    assert local_content(subscriber) == server_content(stub.items)
    assert result.checksum == result.server_checksum == stub.checksum()
    stub.set_retired(c5, False)
    stub.put_concept("C0007", name="back again")
    result = subscriber.sync()
    assert result.ok and result.checksum == stub.checksum()
    assert subscriber.store.get_item("demo", c5).payload["retired"] is False
    assert subscriber.store.load_state("demo").version == "HEAD"


def test_snapshot_without_any_release_diffs_head_from_the_start(stub, stub_server, make_subscriber):
    subscriber = make_subscriber(stub_server.url, mode="snapshot")
    result = subscriber.sync()
    assert result.ok and result.pages == 10  # 50 items, 5 per page
    assert result.checksum == stub.checksum()


def test_late_commit_inside_the_overlap_is_not_missed(stub, stub_server, make_subscriber):
    subscriber = make_subscriber(stub_server.url, mode="snapshot")
    assert subscriber.sync().ok
    last = subscriber.store.load_state("demo").last_updated
    # a second server writer commits an item stamped 10 s before what we already saw
    stub.put_concept("LATE", updated_on="2026-01-01T00:00:00.000000Z")
    late = stub.items[f"{stub.path}concepts/LATE/"]
    assert late["updated_on"] < last
    result = subscriber.sync()
    assert result.ok and result.checksum == stub.checksum()


def test_sync_killed_after_page_k_resumes_and_converges(faults, stub, stub_server, make_subscriber):
    subscriber = make_subscriber(stub_server.url, mode="snapshot", max_retries=0)
    assert subscriber.sync().ok
    for n in range(23):  # 23 changes = 5 pages of 5
        stub.put_concept(f"C{n:04d}", name=f"second edition {n}")
    # the server dies while the subscriber asks for page 3 (pages 2+ carry `after=`)
    faults.faults.append(Fault(path="after=", status=503, times=1, skip=1))
    killed = subscriber.sync()
    assert not killed.ok and "503" in killed.error
    state = subscriber.store.load_state("demo")
    assert state.cursor.pages == 2
    assert local_content(subscriber) != server_content(stub.items)

    resumed = subscriber.sync()
    assert resumed.ok, resumed.error
    assert resumed.action.startswith("resumed")
    assert local_content(subscriber) == server_content(stub.items)
    assert resumed.checksum == stub.checksum()
    assert subscriber.store.load_state("demo").cursor is None


def test_stop_between_pages_then_resume(stub, stub_server, make_subscriber):
    stop = threading.Event()
    subscriber = make_subscriber(stub_server.url, mode="snapshot", stop_event=stop,
                                 overlap_seconds=0)
    pages = []
    subscriber.progress = lambda phase, done, total: (pages.append(done),
                                                      stop.set() if len(pages) == 3 else None)
    result = subscriber.sync()
    assert not result.ok and "stopped" in result.error
    assert subscriber.store.load_state("demo").cursor.pages == 3
    stop.clear()
    subscriber.progress = None
    result = subscriber.sync()
    assert result.ok and result.checksum == stub.checksum()
    # the 7 pages left of 10, then one page of the follow-up pass (updatedSince is inclusive)
    assert result.pages == 8


def test_crash_mid_page_reapplies_it_without_changing_the_result(stub, stub_server, store_factory,
                                                                 make_subscriber):
    crashing = store_factory()
    apply_changes = crashing.apply_changes
    calls = []

    def half_then_die(name, records):
        """Dies after writing half of the 2nd page, before the cursor is saved."""
        calls.append(1)
        records = list(records)
        if len(calls) == 2:
            apply_changes(name, records[: len(records) // 2])
            raise KeyboardInterrupt("killed")
        return apply_changes(name, records)

    crashing.apply_changes = half_then_die
    subscriber = make_subscriber(stub_server.url, mode="snapshot", store=crashing)
    with pytest.raises(KeyboardInterrupt):
        subscriber.sync()
    fresh = make_subscriber(stub_server.url, mode="snapshot", store=store_factory())
    assert fresh.store.load_state("demo").cursor.pages == 1
    result = fresh.sync()
    assert result.ok and result.checksum == stub.checksum()
    assert result.counts == {"concepts": 30, "mappings": 20}


def test_full_resync_replaces_a_diverged_local_copy(stub, stub_server, make_subscriber):
    stub.release("v1")
    subscriber = make_subscriber(stub_server.url, overlap_seconds=0)
    assert subscriber.sync().ok
    tamper(subscriber.store, "demo", f"{stub.path}concepts/C0001/", delete=True)
    tamper(subscriber.store, "demo", f"{stub.path}concepts/C0002/", version="x")
    stub.put_concept("C0003", name="v2 change")
    stub.release("v2")
    # the diff cannot repair what it does not touch; the checksum notices and reloads
    result = subscriber.sync()
    assert result.ok, result.error
    assert result.action == "export"
    assert result.checksum == stub.checksum("v2")


def test_stale_cursor_is_dropped_and_the_pass_restarted(stub, stub_server, make_subscriber):
    subscriber = make_subscriber(stub_server.url, mode="snapshot")
    assert subscriber.sync().ok
    stub.put_concept("C0001", name="changed")
    state = subscriber.store.load_state("demo")
    state.cursor = DiffCursor(next_url=f"{stub_server.url}{stub.path}gone/?includeConcepts=true",
                              target=stub.path, pages=3, applied=15)
    subscriber.store.save_state("demo", state)
    result = subscriber.sync()
    assert result.ok, result.error
    assert result.checksum == stub.checksum()


def test_newest_release_older_than_ours_is_loaded_from_its_export(stub, stub_server,
                                                                 make_subscriber):
    stub.release("v1")
    stub.put_concept("C0001", name="only in v2")
    stub.hard_delete(f"{stub.path}concepts/C0002/")
    stub.release("v2")
    subscriber = make_subscriber(stub_server.url)
    assert subscriber.sync().version == "v2"
    stub.version("v2").released = False  # the curator withdraws v2
    result = subscriber.sync()
    assert result.ok and result.action == "export" and result.version == "v1"
    assert result.checksum == stub.checksum("v1")


def test_stop_during_an_export_load_leaves_the_previous_copy(stub, stub_server, make_subscriber):
    stub.release("v1")
    stop = threading.Event()
    subscriber = make_subscriber(stub_server.url, stop_event=stop, batch_size=10)
    assert subscriber.sync().ok
    before = local_content(subscriber)
    stub.put_concept("C0001", name="v2")
    stub.release("v2")
    subscriber.progress = lambda phase, done, total: stop.set() if phase == "loading export" \
        else None
    stopped = subscriber.sync(full=True)
    assert not stopped.ok and "stopped" in stopped.error
    assert local_content(subscriber) == before
    assert subscriber.store.counts("demo") == {"concepts": 30, "mappings": 20}
    stop.clear()
    subscriber.progress = None
    result = subscriber.sync()
    assert result.ok and result.version == "v2" and result.checksum == stub.checksum("v2")


def test_local_database_down_fails_the_pass_with_a_clear_message(stub, stub_server, store,
                                                                 make_subscriber):
    def down(name, state):
        raise StoreError(f"local database ({store.uri}): disk I/O error")

    store.save_state = down
    subscriber = make_subscriber(stub_server.url)
    result = subscriber.sync()
    assert not result.ok
    assert result.error == f"local database ({store.uri}): disk I/O error"
