"""The OpenMRS OCL subscription module's protocol (tests/clients/openmrs.py) against the deployed
stack: release mode, snapshot mode, edits and deletes, and a limit smaller than the changes."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, concept, mapping

from .conftest import Demo
from .openmrs import DATE_FORMAT, OpenMrsClient

pytestmark = pytest.mark.slow


def ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["id"] for item in items}


def stamp(item: dict[str, Any]) -> datetime:
    return datetime.strptime(item["updated_on"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_release_mode_picks_v1_and_reads_the_demo_export(demo: Demo) -> None:
    client = OpenMrsClient(f"{demo.url}{demo.path}", token=ADMIN_TOKEN)
    version, answer = client.fetch_release()
    assert version == "v1.0"
    assert len(answer.concepts) == 23 and len(answer.mappings) == 22
    assert answer.entry_names == ["export.json"]
    # three requests, all slash-less, none redirected: the list, the probe, the download
    assert [urlsplit(url).path for url, _ in client.sent] == [
        demo.path.rstrip("/") + "/versions", f"{demo.path}v1.0/export", f"{demo.path}v1.0/export"]
    assert all(headers == {"Authorization": f"Token {ADMIN_TOKEN}"} for _, headers in client.sent)
    # the download's Date is v1.0's lastUpdated: the first snapshot continues from there
    last_updated = demo.call("GET", f"{demo.path}v1.0/", 200)["lastUpdated"]
    assert answer.updated_to == stamp({"updated_on": last_updated}).replace(microsecond=0)


def test_release_probe_skips_a_version_whose_export_is_not_built(demo: Demo) -> None:
    client = OpenMrsClient(f"{demo.url}{demo.path}")
    with demo.stack.jobs_held():
        demo.call("POST", f"{demo.path}versions/", 201, json={"id": "v2.0", "released": True})
        assert client.latest_release() == "v1.0"  # v2.0 answers 208 (queued): not taken yet
    demo.stack.run_jobs()
    assert client.latest_release() == "v2.0"


def test_snapshot_mode_whole_then_exactly_the_changes(demo: Demo) -> None:
    path, clock = demo.path, demo.stack.clock
    client = OpenMrsClient(f"{demo.url}{path}", token=ADMIN_TOKEN)
    _, release = client.fetch_release()
    whole = client.fetch_snapshot(release.updated_to.replace(year=2000))
    assert len(whole.concepts) == 23 and len(whole.mappings) == 22  # one zip, never paged
    clock.advance(10)  # the reads come well after the demo's writes
    everything = client.fetch_snapshot(None)
    assert ids(everything.concepts) == ids(whole.concepts)
    assert client.sent[-1][1] == {"Authorization": f"Token {ADMIN_TOKEN}", "Compress": "true"}
    assert "limit=100000" in client.sent[-1][0]
    since = everything.updated_to

    demo.call("PATCH", f"{path}concepts/Apple/", 200, json={"names": [
        {"name": "Malus domestica", "locale": "en", "locale_preferred": True,
         "name_type": "Fully Specified"}]})
    demo.call("DELETE", f"{path}concepts/Pear/", 204)  # retire
    demo.call("DELETE", f"{path}concepts/Corn/?hard=true", 204)
    demo.call("POST", f"{path}concepts/", 201, json=concept("Kiwi", concept_class="Product"))
    created = demo.call("POST", f"{path}mappings/", 201, json=mapping(
        f"{path}concepts/Fruit/", f"{path}concepts/Kiwi/", "Has Child"))

    clock.advance(10)
    changes = client.fetch_snapshot(since)
    assert ids(changes.concepts) == {"Apple", "Pear", "Kiwi"}  # Corn's tombstone is not sent
    assert ids(changes.mappings) == {created["id"]}
    assert not any(item.get("deleted") for item in changes.concepts + changes.mappings)
    by_id = {item["id"]: item for item in changes.concepts}
    assert by_id["Pear"]["retired"] is True
    assert by_id["Apple"]["names"][0]["name"] == "Malus domestica"
    assert client.sent[-1][0].endswith(f"updatedSince={since.strftime(DATE_FORMAT)}")
    # nothing changed since: nothing comes back
    assert client.fetch_snapshot(changes.updated_to).concepts == []


def test_a_limit_smaller_than_the_changes_loses_nothing(demo: Demo) -> None:
    path, clock = demo.path, demo.stack.clock
    client = OpenMrsClient(f"{demo.url}{path}", token=ADMIN_TOKEN)
    clock.advance(10)
    since = client.fetch_snapshot(None).updated_to
    added = {f"New{n}" for n in range(7)}
    for concept_id in sorted(added):
        clock.advance(10)  # each in a second of its own
        demo.call("POST", f"{path}concepts/", 201, json=concept(concept_id, concept_class="Product"))
    demo.call("DELETE", f"{path}concepts/New3/?hard=true", 204)  # gone before anyone saw it
    clock.advance(10)

    seen: set[str] = set()
    answers = 0
    for _ in range(10):  # the module's scheduled runs, each one request
        answer = client.fetch_snapshot(since, limit=3)
        if not answer.concepts:
            break
        answers += 1
        assert not ids(answer.concepts) & seen  # each item once
        seen |= ids(answer.concepts)
        assert answer.updated_to >= since  # Date never goes back
        since = answer.updated_to
    assert seen == added - {"New3"}
    assert answers == 2  # six items, three an answer: the first answer was cut at the limit


def release_changes(demo: Demo) -> None:
    """Curate the demo (an edit, a retirement, a hard delete, a new concept and mapping) and
    release v2.0: its export and its delta package from v1.0 are built."""
    path = demo.path
    demo.call("PATCH", f"{path}concepts/Apple/", 200, json={"datatype": "Text"})
    demo.call("DELETE", f"{path}concepts/Pear/", 204)
    demo.call("DELETE", f"{path}concepts/Mango/?hard=true", 204)
    demo.call("POST", f"{path}concepts/", 201, json=concept("Kiwi"))
    demo.call("POST", f"{path}mappings/", 201, json=mapping(f"{path}concepts/Kiwi/",
                                                            f"{path}concepts/Fruit/"))
    demo.call("POST", f"{path}versions/", 201, json={"id": "v2.0", "released": True})
    demo.stack.run_jobs()


def test_the_openmrs_importer_loads_a_delta(demo: Demo) -> None:
    release_changes(demo)
    client = OpenMrsClient(f"{demo.url}{demo.path}", token=ADMIN_TOKEN)
    # over HTTP, as the module reads any export URL (slash-less, Content-Type application/zip)
    answer = client.fetch_file(f"{demo.url}{demo.path}v2.0/export?since=v1.0")
    assert answer.entry_names == ["export.json", "manifest.json"]
    assert ids(answer.concepts) == {"Apple", "Pear", "Kiwi"}  # no tombstone among them
    assert {item["retired"] for item in answer.concepts if item["id"] == "Pear"} == {True}
    assert len(answer.mappings) == 1
    # the startup loader: the same zip dropped into its directory (a USB stick's)
    delta = requests.get(f"{demo.url}{demo.path}v2.0/export/?since=v1.0", timeout=30).content
    loaded = client.load_zip(delta)
    assert ids(loaded.concepts) == ids(answer.concepts)
    # the deletion is there for termsync-sync, after `mappings` where the module never reads
    with zipfile.ZipFile(io.BytesIO(delta)) as archive:
        export = json.loads(archive.read("export.json"))
    assert list(export)[-3:] == ["concepts", "mappings", "deleted"]
    assert [item["id"] for item in export["deleted"]] == ["Mango"]
