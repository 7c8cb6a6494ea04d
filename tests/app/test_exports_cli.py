"""`termsync exports list|rebuild|purge` against the embedded database a server uses."""

from __future__ import annotations

import json
from typing import Any

from app import create_app
from app.cli import main
from tests.conftest import ADMIN, ADMIN_TOKEN, concept

BASE = "/orgs/CliOrg/sources/CliSource/"


def test_exports_list_purge_rebuild(tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    uri = f"sqlite:///{tmp_path}/termsync.db"
    monkeypatch.setenv("TERMSYNC_EXPORT_DIR", str(tmp_path / "exports"))
    application = create_app({"DATABASE_URI": uri, "ADMIN_TOKEN": ADMIN_TOKEN,
                              "TESTING": True})
    client = application.test_client()
    try:
        client.post("/orgs/", json={"id": "CliOrg"}, headers=ADMIN)
        client.post("/orgs/CliOrg/sources/", json={"id": "CliSource"}, headers=ADMIN)
        client.post(f"{BASE}concepts/", json=concept("A"), headers=ADMIN)
        client.post(f"{BASE}versions/", json={"id": "v1"}, headers=ADMIN)
        assert client.post(f"{BASE}v1/export/", headers=ADMIN).status_code == 202
        application.extensions["termsync.jobs"].run_until_idle()
        assert client.head(f"{BASE}v1/export/").status_code == 200
        client.put(f"{BASE}v1/", json={"description": "new"}, headers=ADMIN)

        capsys.readouterr()
        assert main(["--database-uri", uri, "exports", "list"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert rows[0]["export"] == f"{BASE}v1/"
        assert rows[0]["state"] == "NONE" and rows[0]["stale_file"] is True

        assert main(["--database-uri", uri, "exports", "purge", "--grace", "0"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["stale_files"] == 1 and report["files"] == 1

        assert main(["--database-uri", uri, "exports", "rebuild", f"{BASE}v1/", "--now"]) == 0
        capsys.readouterr()
        assert client.head(f"{BASE}v1/export/").status_code == 200
        assert main(["--database-uri", uri, "exports", "rebuild", f"{BASE}v9/"]) == 1
    finally:
        application.extensions["termsync.store"].close()
