"""The deployed stack (tests/stack.py: nginx with deploy/nginx/termsync.conf, gunicorn with
gunicorn.conf.py, `termsync worker`) as the OpenMRS module meets it: every answer's `Date` is
termsync's, and a snapshot larger than one answer, read from `Date` to `Date` as the module reads
it, brings every item exactly once. These fail if an upgrade of gunicorn, nginx or werkzeug (or a
change of the site file) stops termsync's `Date` from reaching clients."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, STACK_CONTENT_MAX_LIMIT
from tests.stack import Stack

from .openmrs import DATE_FORMAT, OpenMrsClient

pytestmark = pytest.mark.slow


def stamp(text: str) -> datetime:
    """A stored time stamp (`lastUpdated`, `updated_on`) as an aware datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def the_date(answer: requests.Response) -> datetime:
    """The one `Date` of an answer (requests joins repeated headers with a comma)."""
    value = answer.headers["Date"]
    assert value.count(",") == 1, f"several Date headers: {value!r}"
    return parsedate_to_datetime(value)


def tree_lines(org: str, numbers: range, edition: str = "") -> str:
    """OCL JSON lines of concepts `numbers` of source S of `org`, each but the root mapped to
    its parent (n // 10), as ICD-10-CM's codes are: a tree."""
    owner = {"owner": org, "owner_type": "Organization", "source": "S"}
    lines = []
    for number in numbers:
        lines.append({"type": "Concept", "id": f"C{number}", "concept_class": "Diagnosis",
                      "datatype": "N/A", **owner,
                      "names": [{"name": f"Condition {number}{edition}", "locale": "en",
                                 "locale_preferred": True, "name_type": "FULLY_SPECIFIED"}]})
        if number:
            lines.append({"type": "Mapping", "id": f"M{number}", "map_type": "CHILD-OF", **owner,
                          "from_concept_url": f"/orgs/{org}/sources/S/concepts/C{number}/",
                          "to_concept_url": f"/orgs/{org}/sources/S/concepts/C{number // 10}/"})
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_a_snapshot_larger_than_its_limit_arrives_exactly_once(stack: Stack) -> None:
    """The module's snapshot mode through nginx and gunicorn: its first import is the release's
    export (whose `Date` is the release's `lastUpdated`), then one request per run, never paged,
    from the `Date` of the answer before. Thousands of later edits, more than the server's page
    size (CONTENT_MAX_LIMIT), arrive over several runs, each exactly once."""
    org = stack.new_org("Snap")
    stack.call("POST", f"/orgs/{org}/sources/", 201, json={"id": "S"})
    source = f"/orgs/{org}/sources/S/"
    stack.import_lines(tree_lines(org, range(200)))
    stack.call("POST", f"{source}versions/", 201, json={"id": "v1", "released": True})
    export = stack.wait_for_export(f"{source}v1/")
    last_updated = stamp(export.headers["lastUpdated"])

    client = OpenMrsClient(f"{stack.url}{source}", token=ADMIN_TOKEN)
    version, release = client.fetch_release()
    assert version == "v1" and len(release.concepts) == 200 and len(release.mappings) == 199
    assert release.updated_to == last_updated.replace(microsecond=0)  # the release's, not now

    # HEAD moves on: thousands of new items and edits, in several imports a few seconds apart
    # (so that answers end inside seconds as well as between them), then time passes
    expected: Counter[str] = Counter()
    for batch, numbers in enumerate((range(100, 1300), range(1300, 2000), range(2000, 2600))):
        stack.clock.advance(3)
        job = stack.import_lines(tree_lines(org, numbers, edition=f" (edition {batch})"),
                                 update_if_exists=True)
        assert job["summary"]["updated"] == (100 if batch == 0 else 0), job["summary"]
        for number in numbers:  # C100-C199 are renamed; their mappings stay as released
            expected.update([f"C{number}"] if number < 200 else [f"C{number}", f"M{number}"])
    # the release's Date is its lastUpdated rounded down to the second, so the released items of
    # that last second come once more (a HEAD edit made in that second after the release is
    # not lost); the new ones, once each
    expected.update({item["id"] for item in release.concepts + release.mappings
                     if stamp(item["updated_on"]).replace(microsecond=0) == release.updated_to}
                    - set(expected))
    expected_total = sum(expected.values())
    assert expected_total > 3 * STACK_CONTENT_MAX_LIMIT
    stack.clock.advance(60)  # every write older than the in-flight margin of an answer's Date

    received: Counter[str] = Counter()
    since, answers = release.updated_to, 0
    while True:  # the module's scheduled runs, each one request from the Date before
        answer = client.fetch_snapshot(since)
        assert client.sent[-1][1] == {"Authorization": f"Token {ADMIN_TOKEN}", "Compress": "true"}
        assert "limit=100000" in client.sent[-1][0]
        assert client.sent[-1][0].endswith(f"updatedSince={since.strftime(DATE_FORMAT)}")
        items = answer.concepts + answer.mappings
        if not items:
            break
        answers += 1
        received.update(item["id"] for item in items)
        assert answer.updated_to >= since  # Date never goes back
        since = answer.updated_to
        assert answers <= expected_total
    assert received == expected  # every item, exactly once
    assert answers >= 3  # more than one answer's worth: the cut answers really were cut
    assert since <= stack.clock.now()


def test_every_answer_carries_termsyncs_date_through_the_stack(stack: Stack) -> None:
    """Export downloads (GET, HEAD, a range, a 304, the immutable file) carry the release's
    `lastUpdated`; every other answer, errors included, the application's clock, which this
    test sets a day ahead of the real one (the clock gunicorn and nginx use themselves)."""
    demo = stack.demo()
    version = stack.call("GET", f"{demo}v1.0/", 200).json()
    released = stamp(version["lastUpdated"]).replace(microsecond=0)
    export = f"{stack.url}{demo}v1.0/export/"
    whole = requests.get(export, timeout=30)
    assert whole.status_code == 200 and the_date(whole) == released
    etag = whole.headers["ETag"]
    for answer, status in (
            (requests.head(export, timeout=30), 200),
            (requests.get(export, headers={"Range": "bytes=10-99"}, timeout=30), 206),
            (requests.get(export, headers={"If-None-Match": etag}, timeout=30), 304),
            (requests.get(whole.headers["exportURL"], timeout=30), 200)):
        assert answer.status_code == status, answer.status_code
        assert the_date(answer) == released, (status, answer.headers)
        assert "X-Termsync-Date" not in answer.headers  # nginx sends it on as Date only

    stack.clock.advance(86400)
    ahead = stack.clock.now()
    for method, path, status in (("GET", "/orgs/", 200), ("GET", "/healthz", 200),
                                 ("GET", f"{demo}concepts/Nothing/", 404),
                                 ("POST", demo.rstrip("/") + "/versions", 308),
                                 ("GET", "/console/", 200), ("HEAD", f"{demo}HEAD/export/", 405)):
        answer = requests.request(method, stack.url + path, timeout=30, allow_redirects=False)
        assert answer.status_code == status, (path, answer.status_code)
        assert abs(the_date(answer) - ahead) < timedelta(minutes=5), (path, answer.headers)
        assert "X-Termsync-Date" not in answer.headers


def test_nginx_own_answers_keep_a_date_and_termsyncs_error_shape(tmp_path: Path) -> None:
    """With gunicorn gone, nginx answers by itself: a 503 in termsync's error shape with
    `Retry-After` (subscribers retry it), and nginx's own `Date` (the site file replaces `Date`
    only on answers that come from gunicorn)."""
    with Stack(tmp_path, web_processes=1, worker=False) as stack:
        assert stack.gunicorn is not None
        stack.gunicorn.terminate()
        stack.gunicorn.wait(60)
        answer = requests.get(f"{stack.url}/orgs/", timeout=30)
        assert answer.status_code == 503
        assert answer.json()["code"] == 503 and answer.headers["Retry-After"] == "5"
        assert abs(the_date(answer) - datetime.now(UTC)) < timedelta(minutes=5)


def test_gunicorn_bare_sends_its_own_clock(tmp_path: Path) -> None:
    """Why nginx is in front: gunicorn drops the application's `Date` (every version pip may
    install, `hop_headers` in gunicorn/util.py) and sends its own clock's, which is not when a
    diff or an export is complete up to."""
    with Stack(tmp_path, proxy=False, web_processes=1, worker=False) as stack:
        stack.clock.advance(86400)
        answer = requests.get(f"{stack.url}/orgs/", timeout=30)
        carried = parsedate_to_datetime(answer.headers["X-Termsync-Date"])
        assert abs(carried - stack.clock.now()) < timedelta(minutes=5)
        assert abs(the_date(answer) - datetime.now(UTC)) < timedelta(minutes=5)


def test_public_url_names_every_link_through_the_stack(tmp_path: Path) -> None:
    """With PUBLIC_URL set, a request for `Host: evil.example` through nginx (which passes the
    client's Host on, as X-Forwarded-Host too) gets links to PUBLIC_URL only."""
    public = "https://terms.example.org"
    with Stack(tmp_path, web_processes=1, settings={"TERMSYNC_PUBLIC_URL": public}) as stack:
        demo = stack.demo()
        evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
        listed = requests.get(f"{stack.url}{demo}concepts/?limit=1", headers=evil, timeout=30)
        export = requests.head(f"{stack.url}{demo}v1.0/export/", headers=evil, timeout=30)
        built = requests.post(f"{stack.url}{demo}v1.0/export/", headers=evil, timeout=30,
                              allow_redirects=False)
        for answer in (listed, export, built):
            assert "evil" not in str(answer.headers) + answer.text, answer.headers
        assert listed.headers["next"].startswith(f"{public}{demo}concepts/?")
        assert listed.headers["Link"] == f'<{listed.headers["next"]}>; rel="next"'
        assert export.headers["exportURL"].startswith(f"{public}{demo}exports/")
        assert built.status_code == 303 and built.headers["Location"] == f"{demo}v1.0/export/"
