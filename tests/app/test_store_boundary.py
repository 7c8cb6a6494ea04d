"""The server starts and runs without mongomock installed (a test dependency only): on SQLite, and
on FerretDB over the wire with exports in GridFS and uploads in the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter in which `import mongomock` fails as it does where it is not
# installed: an import, a bulk import through its job, a release, its export built and served.
SCRIPT = """
import io, json, sys, zipfile
sys.modules["mongomock"] = None  # `import mongomock` raises ImportError from here on
from app import create_app

config = json.loads(sys.argv[1])
app = create_app(config)
client = app.test_client()
admin = {"Authorization": "Token " + config["ADMIN_TOKEN"]}
assert client.post("/orgs/", json={"id": "O"}, headers=admin).status_code == 201
assert client.post("/orgs/O/sources/", json={"id": "S"}, headers=admin).status_code == 201
lines = "".join(json.dumps({"type": "Concept", "id": str(n), "owner": "O", "source": "S",
                            "concept_class": "Diagnosis", "datatype": "N/A",
                            "names": [{"name": f"C {n}", "locale": "en",
                                       "name_type": "FULLY_SPECIFIED"}]}) + "\\n"
                for n in range(20))
answer = client.post("/importers/bulk-import/", data=lines, headers=dict(
    admin, **{"Content-Type": "application/x-ndjson"}))
assert answer.status_code == 202, answer.get_json()
workers = app.extensions["termsync.jobs"]
workers.run_until_idle()
assert client.post("/orgs/O/sources/S/versions/", json={"id": "v1", "released": True},
                   headers=admin).status_code == 201
workers.run_until_idle()
export = client.get("/orgs/O/sources/S/v1/export/")
assert export.status_code == 200, export.status_code
content = json.loads(zipfile.ZipFile(io.BytesIO(export.data)).read("export.json"))
store = app.extensions["termsync.store"]
print(json.dumps({"concepts": len(content["concepts"]), "mongomock": "mongomock" in sys.modules
                  and sys.modules["mongomock"] is not None, "store": store.kind}))
store.drop()
store.close()
"""


@pytest.mark.parametrize("backend", ["sqlite", "ferretdb"])
def test_the_server_runs_without_mongomock(backend: str, request: Any, tmp_path: Path) -> None:
    config: dict[str, Any] = {"ADMIN_TOKEN": "boundary-token", "LOAD_DEMO": False,
                              "BACKGROUND_WORKERS": 0, "EXPORT_DIR": str(tmp_path / "exports"),
                              "IMPORT_DIR": str(tmp_path / "uploads")}
    if backend == "sqlite":
        config["DATABASE_URI"] = f"sqlite:///{tmp_path}/termsync.db"
    else:
        config.update(DATABASE_URI=request.getfixturevalue("ferretdb_uri"),
                      MONGO_DB=f"boundary_{uuid.uuid4().hex[:10]}", EXPORT_STORAGE="gridfs",
                      IMPORT_STORAGE="mongo")
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, PYTHONWARNINGS="error"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "concepts": 20, "mongomock": False,
        "store": "sqlite" if backend == "sqlite" else "mongodb"}
