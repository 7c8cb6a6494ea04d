"""Subscriber configuration: TOML, environment overrides, validation messages."""

from __future__ import annotations

import pytest

from sync.config import ConfigError, build_config, load_config, parse_interval

BASE = {"name": "ciel", "server": "https://terms.example.org/", "url": "/orgs/CIEL/sources/CIEL"}


def test_example_file_shape_and_defaults(tmp_path):
    path = tmp_path / "sync.toml"
    path.write_text('''
mongo_uri = "mongomock://"   # server keys in the same file are not the subscriber's business

[[subscriptions]]
name = "ciel"
server = "https://terms.example.org"
url = "/orgs/CIEL/sources/CIEL/"
token = "abc"
mode = "release"
interval = "1h"
mongo_uri = "mongodb://localhost/ciel_mirror"
page_size = 500

[[subscriptions]]
name = "demo"
server = "http://127.0.0.1:8000"
url = "/orgs/DemoOrg/sources/DemoSource/"
mode = "snapshot"
cron = "0 2 * * *"
''')
    config = load_config(path, environ={})
    ciel, demo = config.subscriptions
    # mongo_uri is the old name of database_uri; the default is SQLite
    assert ciel.database_uri == "mongodb://localhost/ciel_mirror"
    assert demo.database_uri == "sqlite:///var/termsync-sync.db"
    assert (ciel.server_kind, demo.server_kind) == ("auto", "auto")
    assert (ciel.interval, ciel.cron, ciel.token, ciel.page_size) == (3600.0, None, "abc", 500)
    assert ciel.source_url == "https://terms.example.org/orgs/CIEL/sources/CIEL/"
    assert (demo.interval, demo.cron, demo.mode, demo.overlap_seconds) == (None, "0 2 * * *",
                                                                         "snapshot", 60.0)
    assert config.select(["demo"]) == [demo]
    with pytest.raises(ConfigError, match="unknown subscription"):
        config.select(["nope"])


def test_environment_overrides_all_then_one_subscription():
    data = {"subscriptions": [BASE, dict(BASE, name="ciel-2")]}
    env = {"TERMSYNC_SYNC_TOKEN": "everyone", "TERMSYNC_SYNC_CIEL_2_TOKEN": "just-me",
           "TERMSYNC_SYNC_CIEL_2_PAGE_SIZE": "100", "TERMSYNC_SYNC_INTERVAL": "15m"}
    one, two = build_config(data, env).subscriptions
    assert (one.token, one.page_size, one.interval) == ("everyone", 500, 900.0)
    assert (two.token, two.page_size, one.url) == ("just-me", 100, "/orgs/CIEL/sources/CIEL/")
    env = {"TERMSYNC_SYNC_MONGO_URI": "mongodb://old/name",
           "TERMSYNC_SYNC_CIEL_2_DATABASE_URI": "sqlite:////var/lib/ciel.db?synchronous=FULL"}
    one, two = build_config(data, env).subscriptions
    assert (one.database_uri, two.database_uri) == ("mongodb://old/name",
                                                    "sqlite:////var/lib/ciel.db?synchronous=FULL")


@pytest.mark.parametrize("change, message", [
    ({"mode": "mirror"}, "mode = 'mirror' must be one of release, snapshot"),
    ({"server": "ftp://x"}, "must be an http"),
    ({"url": "CIEL"}, "must be a source path"),
    ({"page_size": 501}, "page_size = 501 must be between 1 and 500"),
    ({"page_size": "lots"}, "page_size = 'lots' is not a number"),
    ({"interval": "often"}, "is not a duration"),
    ({"cron": "every night"}, "is not a crontab expression"),
    ({"database_uri": "postgres://x"}, "database_uri = 'postgres://x' must start with sqlite:///"),
    ({"database_uri": "sqlite:///"}, "needs a file path"),
    ({"mongo_uri": "mongomock://var/termsync-sync.db"}, "in-memory database for tests and takes no path"),
    ({"database_uri": "sqlite:///m.db?synchronous=sometimes"}, "synchronous must be one of"),
    ({"database_uri": "sqlite:///m.db?journal=x"}, "unknown option"),
    ({"server_kind": "ocl2"}, "server_kind = 'ocl2' must be one of auto, termsync, ocl"),
    ({"mongo_uri": "mongodb://h/db", "database_uri": "sqlite:///m.db"}, "old name of database_uri"),
    ({"colour": "blue"}, "unknown key"),
    ({"name": "bad name"}, "name may hold only"),
])
def test_bad_values_are_named_clearly(change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_config({"subscriptions": [dict(BASE, **change)]}, {})


def test_missing_and_duplicate(tmp_path):
    with pytest.raises(ConfigError, match="needs 'server'"):
        build_config({"subscriptions": [{"name": "x", "url": "/orgs/A/sources/B/"}]}, {})
    with pytest.raises(ConfigError, match="repeated: ciel"):
        build_config({"subscriptions": [BASE, BASE]}, {})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml", {})
    (tmp_path / "bad.toml").write_text("[[subscriptions]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml", {})
    (tmp_path / "empty.toml").write_text("")
    with pytest.raises(ConfigError, match="no \\[\\[subscriptions\\]\\]"):
        load_config(tmp_path / "empty.toml", {})


def test_intervals():
    assert [parse_interval(v) for v in (90, "90s", "30m", "1h", "1d", "2.5h")] == \
        [90.0, 90.0, 1800.0, 3600.0, 86400.0, 9000.0]
    with pytest.raises(ConfigError, match="positive"):
        parse_interval("0s")


def test_config_example_documents_every_key():
    from dataclasses import fields
    from pathlib import Path

    from sync.config import Subscription

    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    config = load_config(example, {})
    assert [s.name for s in config.subscriptions] == ["demo"]
    section = example.read_text().split("# --- subscriber (termsync-sync) ---")[1]
    for key in (f.name for f in fields(Subscription)):
        assert f"{key} =" in section, f"config.example.toml does not document {key}"
