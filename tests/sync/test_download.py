"""Export download: 208/202 waits, 204 + POST, redirects to another host, Range resume, sha256."""

from __future__ import annotations

import pytest

from sync.client import TermsyncClient
from sync.download import DEFAULT_BUILD_WAIT, MAX_BUILD_WAIT, MIN_BUILD_WAIT, ExportDownloader
from sync.errors import ExportChecksumMismatch, ExportError, ExportNotReady
from sync.reader import ExportReader

from .conftest import TOKEN
from .ocl_stub import Fault, FaultInjector, LiveServer


@pytest.fixture
def downloader(stub_server, sleeps, tmp_path):
    client = TermsyncClient(stub_server.url, TOKEN, timeout=5, max_retries=3, sleep=sleeps,
                            jitter=lambda: 0.5)
    return ExportDownloader(client, tmp_path, max_wait=60)


def read_all(path):
    with ExportReader(path) as reader:
        items = list(reader.items())
    return reader.header, items


@pytest.mark.parametrize("building", [208, 202])  # OCL v2 and termsync now; termsync before
def test_building_waits_as_retry_after_says(stub, downloader, sleeps, building):
    stub.release("v1", pending=3).building_status = building
    export = downloader.fetch(f"{stub.path}v1/")
    assert export.verified
    assert sleeps.waits == [7.0, 7.0, 7.0]
    header, items = read_all(export.path)
    assert header["id"] == "v1" and len(items) == 50
    assert stub.posts_seen == []


def test_retry_after_is_bounded_and_defaulted(faults, stub, downloader, sleeps):
    stub.release("v1")
    downloader.max_wait = 3600
    faults.faults += [Fault(path="v1/export", status=208, retry_after="86400",
                            body={"state": "BUILDING"}),
                      Fault(path="v1/export", status=208, body={"state": "BUILDING"}),
                      Fault(path="v1/export", status=208, retry_after="0",
                            body={"state": "BUILDING"})]
    assert downloader.fetch(f"{stub.path}v1/").verified
    assert sleeps.waits == [MAX_BUILD_WAIT, DEFAULT_BUILD_WAIT, MIN_BUILD_WAIT]


def test_no_export_is_requested_by_post_then_waited_for(stub, downloader, sleeps):
    version = stub.release("v1", pending=2)
    version.needs_post = True
    export = downloader.fetch(f"{stub.path}v1/")
    assert export.verified
    assert stub.posts_seen == ["v1"]  # once: later 204s or 208s are waited out
    assert sleeps.waits == [3.0, 7.0, 7.0]  # the POST's Retry-After, then the 208s'
    calls = [r for r in stub.requests_seen if r.startswith(f"{stub.path}v1/export")]
    assert len(calls) == 5  # GET 204, POST 202, GET 208, GET 208, GET 200


def test_export_gone_again_while_waiting_is_requested_again(faults, stub, downloader, sleeps):
    stub.release("v1")
    faults.faults += [Fault(path="v1/export", status=204, body={}, method="GET"),
                      Fault(path="v1/export", status=208, body={"state": "BUILDING"},
                            method="GET"),
                      Fault(path="v1/export", status=204, body={}, method="GET")]
    # GET 204, POST, GET 208, GET 204 (the build vanished), POST, GET 200
    assert downloader.fetch(f"{stub.path}v1/").verified
    assert len(stub.posts_seen) == 2


def test_post_refused_fails_clearly(faults, stub, downloader):
    stub.release("v1").needs_post = True
    faults.faults.append(Fault(path="v1/export", status=403, method="POST", body={
        "detail": "You do not have permission to perform this action."}))
    with pytest.raises(ExportError, match=r"has no export and requesting one failed: 403.*permission"):
        downloader.fetch(f"{stub.path}v1/")


@pytest.mark.parametrize("export_format, redirect", [("zip", 302), ("tar.gz", 303)])
def test_redirect_to_another_host_goes_there_without_the_token(stub, downloader, file_host,
                                                               sleeps, export_format, redirect):
    stub.file_host = file_host
    stub.redirect_status = redirect
    version = stub.release("v1", pending=1)  # 208 first, then the redirect
    version.export_format = export_format
    export = downloader.fetch(f"{stub.path}v1/")
    assert sleeps.waits == [7.0]
    assert not export.verified  # a bucket's ETag is no sha256: accepted, logged unverified
    assert export.path.read_bytes() == stub.export_bytes(version)
    assert export.last_updated == stub.version_payload(version)["lastUpdated"]  # from the 303
    assert file_host.auth_seen == [None]
    assert set(stub.auth_seen) == {f"Token {TOKEN}"}
    header, items = read_all(export.path)
    assert header["id"] == "v1" and len(items) == 50


def test_download_from_the_other_host_resumes_there(faults, stub, downloader, file_host):
    stub.file_host = file_host
    version = stub.release("v1")
    cutter = FaultInjector(file_host.app)
    cutter.download_paths = ("/files/",)
    cutter.cut_downloads.append(len(stub.export_bytes(version)) // 2)
    with LiveServer(cutter, host="127.0.0.2") as cutting:
        file_host.url = cutting.url  # the bucket cuts the first download half way
        export = downloader.fetch(f"{stub.path}v1/")
    assert export.path.read_bytes() == stub.export_bytes(version)
    assert file_host.auth_seen == [None, None]
    assert file_host.requests_seen[1].startswith("/files/")  # resumed at the bucket's URL


def test_build_that_never_finishes_gives_up_after_export_wait(stub, downloader):
    stub.release("v1", pending=100)
    with pytest.raises(ExportNotReady, match="still BUILDING"):
        downloader.fetch(f"{stub.path}v1/")


def test_failed_build_is_reported_not_retried(stub, downloader, sleeps):
    stub.release("v1").failed = True
    with pytest.raises(ExportError, match="disk full"):
        downloader.fetch(f"{stub.path}v1/")
    assert sleeps.waits == []


def test_download_cut_mid_file_resumes_with_range(faults, stub, downloader, tmp_path):
    version = stub.release("v1")
    size = len(stub.export_bytes(version))
    faults.cut_downloads += [size // 3, size // 4]  # two breaks: at 1/3, then 1/4 further
    export = downloader.fetch(f"{stub.path}v1/")
    assert export.verified and export.size == size
    ranges = [r for r in stub.requests_seen if "export" in r]
    assert len(ranges) == 3
    assert export.path.read_bytes() == stub.export_bytes(version)
    assert list(tmp_path.iterdir()) == [export.path]


def test_server_ignoring_range_restarts_the_download(faults, stub, downloader):
    version = stub.release("v1")
    stub.ignore_range = True
    faults.cut_downloads.append(100)
    export = downloader.fetch(f"{stub.path}v1/")
    assert export.verified and export.path.read_bytes() == stub.export_bytes(version)


def test_corrupted_byte_is_detected_and_the_file_fetched_again(faults, stub, downloader, tmp_path):
    version = stub.release("v1")
    faults.corrupt_downloads = 1
    export = downloader.fetch(f"{stub.path}v1/")
    assert export.verified
    assert export.path.read_bytes() == stub.export_bytes(version)
    assert list(tmp_path.iterdir()) == [export.path]  # the bad copy is gone


def test_always_corrupt_fails_clearly(faults, stub, downloader, tmp_path):
    stub.release("v1")
    faults.corrupt_downloads = 10
    with pytest.raises(ExportChecksumMismatch, match="sha256"):
        downloader.fetch(f"{stub.path}v1/")
    assert list(tmp_path.iterdir()) == []
