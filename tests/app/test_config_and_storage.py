"""Configuration layers and the persisted embedded database."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.config import DEFAULTS, ConfigError, load_config
from app.db import close_embedded
from tests.conftest import ADMIN, concept


def test_layers_defaults_file_env_overrides(tmp_path: Path, monkeypatch: Any) -> None:
    config_file = tmp_path / "termsync.toml"
    config_file.write_text('[server]\nport = 9000\nlog_level = "DEBUG"\nload_demo = true\n')
    monkeypatch.setenv("TERMSYNC_CONFIG", str(config_file))
    monkeypatch.setenv("TERMSYNC_LOG_LEVEL", "WARNING")
    config = load_config({"PORT": 9100})
    assert config["PORT"] == 9100 and config["LOG_LEVEL"] == "WARNING" and config["LOAD_DEMO"] is True
    assert config["MONGO_URI"] == "mongomock://"


@pytest.mark.parametrize("text, message", [
    ("[server]\nport = \"x\"\n", "PORT"),
    ("[server]\nnope = 1\n", "unknown key"),
    ("[server\n", "invalid TOML"),
    ("[server]\nmongo_uri = \"postgres://x\"\n", "MONGO_URI"),
])
def test_bad_config_stops_with_a_clear_message(tmp_path: Path, monkeypatch: Any, text: str,
                                               message: str) -> None:
    config_file = tmp_path / "bad.toml"
    config_file.write_text(text)
    monkeypatch.setenv("TERMSYNC_CONFIG", str(config_file))
    with pytest.raises(ConfigError, match=message):
        load_config()


def test_example_config_documents_every_key_with_its_default(monkeypatch: Any) -> None:
    example = Path(__file__).parents[2] / "config.example.toml"
    documented = tomllib.loads(example.read_text())["server"]
    assert {key.upper() for key in documented} == set(DEFAULTS)
    monkeypatch.setenv("TERMSYNC_CONFIG", str(example))
    assert load_config() == DEFAULTS


def test_persisted_embedded_database_survives_a_restart(tmp_path: Path) -> None:
    uri = f"mongomock://{tmp_path / 'termsync.db'}"
    app = create_app({"MONGO_URI": uri, "ADMIN_TOKEN": "admin-token-for-tests", "TESTING": True})
    client = app.test_client()
    client.post("/orgs/", json={"id": "O"}, headers=ADMIN)
    client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN)
    client.post("/orgs/O/sources/S/concepts/", json=concept("1"), headers=ADMIN)
    client.post("/orgs/O/sources/S/versions/", json={"id": "v1", "released": True}, headers=ADMIN)
    checksum = client.get("/orgs/O/sources/S/v1/").get_json()["checksums"]["content"]
    close_embedded(uri)  # clean shutdown: saved atomically
    assert (tmp_path / "termsync.db").stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".termsync-")]

    again = create_app({"MONGO_URI": uri, "TESTING": True}).test_client()
    assert again.get("/orgs/O/sources/S/v1/").get_json()["checksums"]["content"] == checksum
    assert again.get("/orgs/O/sources/S/concepts/1/", headers=ADMIN).status_code == 200
    assert again.get("/user/", headers=ADMIN).get_json()["username"] == "admin"
    close_embedded(uri)
