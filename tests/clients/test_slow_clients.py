"""Slow clients cannot starve the deployed stack: with more connections than gunicorn has threads
trickling request bodies, and as many reading a download slowly, `/healthz` and a HEAD probe of
an export still answer, within a generous timeout (no timing assertion: bench/slow_clients.py
measures the latencies, against gunicorn alone too, where these probes get no answer)."""

from __future__ import annotations

import json
import os

import pytest
import requests

from tests.stack import SlowClients, Stack

pytestmark = pytest.mark.slow

# gunicorn's threads in the stack: 2 processes x 4 threads (gunicorn.conf.py's default)
GUNICORN_THREADS = 8


def test_probes_answer_while_slow_clients_hold_connections(stack: Stack) -> None:
    org = stack.new_org("Slow")
    stack.call("POST", f"/orgs/{org}/sources/", 201, json={"id": "S"})
    owner = {"type": "Concept", "owner": org, "owner_type": "Organization", "source": "S"}
    stack.import_lines("".join(json.dumps({  # an export of a few megabytes, hard to compress
        **owner, "id": str(number), "concept_class": "Diagnosis", "datatype": "N/A",
        "names": [{"name": f"Condition {number}", "locale": "en"}],
        "descriptions": [{"description": os.urandom(1500).hex(), "locale": "en"}]}) + "\n"
        for number in range(1500)))
    stack.call("POST", f"/orgs/{org}/sources/S/versions/", 201,
               json={"id": "v1", "released": True})
    export = f"/orgs/{org}/sources/S/v1/export/"
    assert int(stack.wait_for_export(f"/orgs/{org}/sources/S/v1/").headers["Content-Length"]) \
        > 2_000_000

    senders = SlowClients(stack.url, 3 * GUNICORN_THREADS, "senders")
    readers = SlowClients(stack.url, 3 * GUNICORN_THREADS, "readers", export)
    try:
        for _ in range(10):
            assert requests.get(f"{stack.url}/healthz", timeout=30).status_code == 200
            assert requests.head(f"{stack.url}{export}", timeout=30).status_code == 200
            # and the rest of the API: a write, which waits for no slow client either
            stack.call("POST", f"/orgs/{org}/sources/S/concepts/", 201, json={
                "id": f"c{os.urandom(4).hex()}", "concept_class": "Misc", "datatype": "N/A",
                "names": [{"name": "Probe", "locale": "en"}]})
    finally:
        senders.close()
        readers.close()
