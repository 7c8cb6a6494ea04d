"""Configuration layers and the embedded database across restarts."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.config import DEFAULTS, ConfigError, load_config, settings_of
from tests.conftest import ADMIN, ADMIN_TOKEN, concept


def test_layers_defaults_file_env_overrides(tmp_path: Path, monkeypatch: Any) -> None:
    config_file = tmp_path / "termsync.toml"
    config_file.write_text('[server]\nport = 9000\nlog_level = "DEBUG"\nload_demo = true\n')
    monkeypatch.setenv("TERMSYNC_CONFIG", str(config_file))
    monkeypatch.setenv("TERMSYNC_LOG_LEVEL", "WARNING")
    config = load_config({"PORT": 9100})
    assert config["PORT"] == 9100 and config["LOG_LEVEL"] == "WARNING" and config["LOAD_DEMO"] is True
    assert config["DATABASE_URI"] == "sqlite:///var/termsync.db"


def test_mongo_uri_is_the_old_name_of_database_uri(monkeypatch: Any) -> None:
    monkeypatch.setenv("TERMSYNC_MONGO_URI", "mongodb://db.example:27017")
    assert load_config()["DATABASE_URI"] == "mongodb://db.example:27017"
    monkeypatch.setenv("TERMSYNC_DATABASE_URI", "sqlite:////srv/termsync.db")
    assert load_config()["DATABASE_URI"] == "sqlite:////srv/termsync.db"


@pytest.mark.parametrize("text, message", [
    ("[server]\nport = \"x\"\n", "PORT"),
    ("[server]\nnope = 1\n", "unknown key"),
    ("[server\n", "invalid TOML"),
    ("[server]\ndatabase_uri = \"postgres://x\"\n", "DATABASE_URI"),
    ("[server]\ndatabase_uri = \"sqlite://\"\n", "DATABASE_URI"),
    ("[server]\nsqlite_synchronous = \"sometimes\"\n", "SQLITE_SYNCHRONOUS"),
    ("[server]\nexport_storage = \"gridfs\"\n", "needs a MongoDB"),
])
def test_bad_config_stops_with_a_clear_message(tmp_path: Path, monkeypatch: Any, text: str,
                                               message: str) -> None:
    config_file = tmp_path / "bad.toml"
    config_file.write_text(text)
    monkeypatch.setenv("TERMSYNC_CONFIG", str(config_file))
    with pytest.raises(ConfigError, match=message):
        load_config()


@pytest.mark.parametrize("key, value", [
    ("IMPORT_BATCH_SIZE", 0), ("IMPORT_MAX_ACTIVE_JOBS", 0), ("LOG_FORMAT", "xml"),
    ("LOG_LEVEL", "LOUD"), ("RATE_LIMIT_DIFFS", -1), ("WORKER_HEARTBEAT_SECONDS", 0),
    ("EXPORT_COMPRESSLEVEL", 10), ("EXPORT_RETRY_AFTER", 0), ("JOB_MAX_ATTEMPTS", 0),
])
def test_a_bad_setting_of_any_feature_stops_startup_before_it_connects(
        tmp_path: Path, key: str, value: Any) -> None:
    database = tmp_path / "termsync.db"
    with pytest.raises(ConfigError, match=key):
        create_app({"DATABASE_URI": f"sqlite:///{database}", "TESTING": True, key: value})
    assert not database.exists()


def test_each_feature_reads_typed_settings(app: Any) -> None:
    settings = settings_of(app)
    assert settings.exports.retry_after == DEFAULTS["EXPORT_RETRY_AFTER"]
    assert settings.imports.batch_size == DEFAULTS["IMPORT_BATCH_SIZE"]
    assert settings.ops.rate_limits == {"exports": 0, "imports": 0, "diffs": 0}
    assert settings.jobs.max_attempts == DEFAULTS["JOB_MAX_ATTEMPTS"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.exports.retry_after = 1  # type: ignore[misc]


def test_example_config_documents_every_key_with_its_default(monkeypatch: Any) -> None:
    example = Path(__file__).parents[2] / "config.example.toml"
    documented = tomllib.loads(example.read_text())["server"]
    assert {key.upper() for key in documented} == set(DEFAULTS)
    monkeypatch.setenv("TERMSYNC_CONFIG", str(example))
    assert load_config() == DEFAULTS


def test_embedded_database_survives_a_restart(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'termsync.db'}"
    app = create_app({"DATABASE_URI": uri, "ADMIN_TOKEN": ADMIN_TOKEN, "TESTING": True})
    client = app.test_client()
    client.post("/orgs/", json={"id": "O"}, headers=ADMIN)
    client.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN)
    client.post("/orgs/O/sources/S/concepts/", json=concept("1"), headers=ADMIN)
    client.post("/orgs/O/sources/S/versions/", json={"id": "v1", "released": True}, headers=ADMIN)
    checksum = client.get("/orgs/O/sources/S/v1/").get_json()["checksums"]["content"]
    app.extensions["termsync.store"].close()

    again = create_app({"DATABASE_URI": uri, "TESTING": True}).test_client()
    assert again.get("/orgs/O/sources/S/v1/").get_json()["checksums"]["content"] == checksum
    assert again.get("/orgs/O/sources/S/concepts/1/", headers=ADMIN).status_code == 200
    assert again.get("/user/", headers=ADMIN).get_json()["username"] == "admin"


def test_two_apps_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    """Several processes (gunicorn workers, `termsync worker`) share one SQLite file."""
    uri = f"sqlite:///{tmp_path / 'termsync.db'}"
    first = create_app({"DATABASE_URI": uri, "ADMIN_TOKEN": ADMIN_TOKEN,
                        "TESTING": True}).test_client()
    second = create_app({"DATABASE_URI": uri, "TESTING": True}).test_client()
    first.post("/orgs/", json={"id": "O"}, headers=ADMIN)
    first.post("/orgs/O/sources/", json={"id": "S"}, headers=ADMIN)
    second.post("/orgs/O/sources/S/concepts/", json=concept("1"), headers=ADMIN)
    assert first.get("/orgs/O/sources/S/concepts/1/").status_code == 200
    assert first.get("/orgs/O/sources/S/").get_json()["checksums"]["content"] == \
        second.get("/orgs/O/sources/S/").get_json()["checksums"]["content"]
