"""Accounts and tokens through HTTP, the console and the CLI (docs/security.md, Accounts and
tokens): list, issue (shown once), expire, revoke, deactivate and reactivate, rotate ADMIN_TOKEN;
a refused token fails at once everywhere while the work it started goes on."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from app import create_app, timeutil
from app.config import ConfigError
from app.console.web import SESSION_COOKIE
from tests.app.test_console import Browser
from tests.conftest import ADMIN, ADMIN_TOKEN, app_config, app_on_fresh_database, concept

TOKENS = "/users/{}/tokens/"


def call(client: Any, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    kwargs.setdefault("headers", ADMIN)
    answer = client.open(path, method=method, **kwargs)
    assert answer.status_code == expect, (method, path, answer.status_code, answer.get_data())
    return answer.get_json(silent=True)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def issue(client: Any, username: str, headers: dict[str, str] | None = None,
          **payload: Any) -> dict[str, Any]:
    return dict(call(client, "POST", TOKENS.format(username), 201, headers=headers or ADMIN,
                     json=payload))


@pytest.fixture
def app() -> Iterator[Any]:
    yield from app_on_fresh_database()


@pytest.fixture
def client(app: Any) -> Any:
    call(app.test_client(), "POST", "/users/", 201, json={"username": "ann"})
    call(app.test_client(), "POST", "/users/", 201, json={"username": "bob"})
    return app.test_client()


class Clock:
    """timeutil.now, moved on by hand (the domain stamps everything from it)."""

    def __init__(self, monkeypatch: Any) -> None:
        self.offset = timedelta()
        real = timeutil.now
        monkeypatch.setattr(timeutil, "now", lambda: real() + self.offset)

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


# --- list, issue ------------------------------------------------------------------------------

def test_tokens_are_listed_with_their_facts_and_never_their_values(client: Any) -> None:
    first = issue(client, "ann", label="subscriber")
    ann = auth(first["token"])
    second = issue(client, "ann", ann, label="curation", expires_in_days=30)
    assert second["token"] != first["token"] and len(second["token"]) >= 43  # 256 bits
    assert second["prefix"] == second["token"][:6] and second["state"] == "active"
    assert second["created_by"] == "ann" and first["created_by"] == "admin"
    assert second["url"] == f"/users/ann/tokens/{second['id']}/"
    answer = client.get(TOKENS.format("ann"), headers=ann)
    assert answer.status_code == 200 and answer.headers["num_found"] == "2"
    listed = answer.get_json()
    assert [token["id"] for token in listed] == [second["id"], first["id"]]  # newest first
    assert listed[0]["expires_on"] == second["expires_on"] and listed[1]["expires_on"] is None
    assert listed[1]["last_used_on"] is not None and listed[0]["last_used_on"] is None
    assert all(set(token) == set(second) - {"token"} for token in listed)
    text = answer.get_data(as_text=True)
    assert first["token"] not in text and second["token"] not in text
    assert call(client, "GET", second["url"], 200, headers=ann) == listed[0]
    # the user themself and admins; others are refused (403), anonymous callers 401
    assert call(client, "GET", TOKENS.format("ann"), 200) == listed
    bob = auth(issue(client, "bob")["token"])
    for method, url in (("GET", TOKENS.format("ann")), ("POST", TOKENS.format("ann")),
                        ("GET", second["url"]), ("DELETE", second["url"])):
        assert client.open(url, method=method, headers=bob, json={}).status_code == 403
        assert client.open(url, method=method, json={}).status_code == 401
    call(client, "GET", "/users/ann/tokens/nope/", 404, headers=ann)
    call(client, "GET", TOKENS.format("nobody"), 404)


def test_a_chosen_token_needs_32_visible_characters(client: Any) -> None:
    for weak in ("password", "x" * 31, "with spaces " * 4, "é" * 40, "x" * 257):
        answer = client.post(TOKENS.format("ann"), json={"token": weak}, headers=ADMIN)
        assert answer.status_code == 422 and "token" in json.dumps(answer.get_json()), weak
    chosen = "a-chosen-token-of-32-characters!"
    assert len(chosen) == 32
    assert issue(client, "ann", token=chosen)["token"] == chosen
    call(client, "GET", "/user/", 200, headers=auth(chosen))
    # a value in use is never taken over by another account (nor told whose it is)
    answer = client.post(TOKENS.format("bob"), json={"token": chosen}, headers=ADMIN)
    assert answer.status_code == 409 and answer.get_json()["message"] == \
        "This token cannot be used: choose another one."
    assert call(client, "GET", "/user/", 200, headers=auth(chosen))["username"] == "ann"
    for bad in ({"expires_on": "soon"}, {"expires_in_days": 0},
                {"expires_on": "2030-01-01", "expires_in_days": 3}):
        assert client.post(TOKENS.format("ann"), json=bad, headers=ADMIN).status_code == 422
    assert client.post(TOKENS.format("ann"), json={"expires_on": "2001-01-01"},
                       headers=ADMIN).status_code == 400


def test_an_admin_token_of_fewer_than_32_characters_stops_startup() -> None:
    with pytest.raises(ConfigError, match="ADMIN_TOKEN must have 32"):
        create_app(app_config(ADMIN_TOKEN="change-me"))


# --- revoke, expire, deactivate ---------------------------------------------------------------

def test_a_revoked_token_is_refused_at_once_and_its_console_session_ends(app: Any,
                                                                         client: Any) -> None:
    kept, revoked = issue(client, "ann"), issue(client, "ann")
    browser = Browser(app)
    browser.sign_in(revoked["token"])
    browser.get("/console/account/", follow_redirects=True)
    assert "(this session)" in browser.page and revoked["id"] in browser.page
    call(client, "DELETE", revoked["url"], 204, headers=auth(kept["token"]))
    answer = client.get("/sources/", headers=auth(revoked["token"]))
    assert answer.status_code == 401 and answer.get_json()["message"] == "This token was revoked."
    # the console session signed in with it is gone at the next click
    answer = browser.get("/console/imports/", status=303)
    assert "/console/sign-in" in answer.headers["Location"] and browser.session_id() is None
    call(client, "GET", "/user/", 200, headers=auth(kept["token"]))  # the other one works
    call(client, "DELETE", revoked["url"], 204)  # twice is once
    listed = call(client, "GET", TOKENS.format("ann"), 200)
    assert [token["id"] for token in listed] == [kept["id"]]
    everything = call(client, "GET", f"{TOKENS.format('ann')}?includeRevoked=true", 200)
    assert {token["id"]: token["state"] for token in everything} == {
        kept["id"]: "active", revoked["id"]: "revoked"}
    # a revoked value never comes back
    answer = client.post(TOKENS.format("ann"), json={"token": revoked["token"]}, headers=ADMIN)
    assert answer.status_code == 409
    call(client, "GET", "/sources/", 401, headers=auth(revoked["token"]))


def test_an_expired_token_is_refused(client: Any, monkeypatch: Any) -> None:
    clock = Clock(monkeypatch)
    token = issue(client, "ann", expires_in_days=1)
    headers = auth(token["token"])
    call(client, "GET", "/user/", 200, headers=headers)
    clock.advance(hours=23)
    call(client, "GET", "/user/", 200, headers=headers)
    clock.advance(hours=1, seconds=1)
    answer = client.get("/sources/", headers=headers)
    assert answer.status_code == 401 and answer.get_json()["message"] == "This token has expired."
    assert call(client, "GET", token["url"], 200)["state"] == "expired"


def test_last_use_is_recorded_once_a_minute(client: Any, monkeypatch: Any) -> None:
    clock = Clock(monkeypatch)
    token = issue(client, "ann")
    headers = auth(token["token"])
    call(client, "GET", "/user/", 200, headers=headers)
    first = call(client, "GET", token["url"], 200)["last_used_on"]
    for _ in range(5):
        clock.advance(seconds=10)
        call(client, "GET", "/sources/", 200, headers=headers)
    assert call(client, "GET", token["url"], 200)["last_used_on"] == first
    clock.advance(seconds=11)  # a minute and a second after the first use
    call(client, "GET", "/sources/", 200, headers=headers)
    later = call(client, "GET", token["url"], 200)["last_used_on"]
    assert later > first and timeutil.to_datetime(later) - timeutil.to_datetime(first) \
        >= timedelta(seconds=61)


def test_deactivation_refuses_the_user_at_once_and_lets_their_exports_finish(
        app: Any, client: Any) -> None:
    ann = auth(issue(client, "ann")["token"])
    call(client, "POST", "/user/sources/", 201, headers=ann, json={"id": "Mine"})
    call(client, "POST", "/users/ann/sources/Mine/concepts/", 201, headers=ann,
         json=concept("1"))
    browser = Browser(app)
    browser.sign_in(ann["Authorization"].split()[1])
    # ann releases a version: its export is queued (built by a worker later)
    call(client, "POST", "/users/ann/sources/Mine/versions/", 201, headers=ann,
         json={"id": "v1", "released": True})
    assert client.get("/users/ann/sources/Mine/v1/export/").status_code in (204, 208)
    # only administrators deactivate, and not themselves
    call(client, "DELETE", "/users/bob/", 403, headers=ann)
    call(client, "DELETE", "/users/bob/", 401, headers={})
    call(client, "DELETE", "/users/admin/", 403)
    call(client, "DELETE", "/users/nobody/", 404)
    call(client, "DELETE", "/users/ann/", 204)
    answer = client.get("/users/ann/sources/Mine/", headers=ann)
    assert answer.status_code == 401 and answer.get_json()["message"] == \
        "This account is inactive."
    answer = browser.get("/console/imports/", status=303)
    assert "/console/sign-in" in answer.headers["Location"] and browser.session_id() is None
    assert call(client, "GET", "/users/ann/", 200)["is_active"] is False
    # what ann published stays, and the export she asked for is built
    app.extensions["termsync.jobs"].run_until_idle()
    export = client.head("/users/ann/sources/Mine/v1/export/")
    assert export.status_code == 200 and export.headers["ETag"]
    call(client, "GET", "/users/ann/sources/Mine/concepts/1/", 200)
    # reactivated, the same token works again
    call(client, "PUT", "/users/ann/reactivate/", 401, headers=ann)
    call(client, "PUT", "/users/ann/reactivate/", 403, headers=auth(issue(client, "bob")["token"]))
    call(client, "PUT", "/users/ann/reactivate/", 204)
    call(client, "GET", "/users/ann/sources/Mine/", 200, headers=ann)
    assert call(client, "GET", "/users/ann/", 200)["is_active"] is True


# --- ADMIN_TOKEN ------------------------------------------------------------------------------

def test_a_new_admin_token_revokes_the_one_before_and_a_revoked_one_never_returns(
        tmp_path: Any, caplog: Any) -> None:
    uri = f"sqlite:///{tmp_path / 'rotate.db'}"
    old, new = "old-admin-token-0123456789abcdef-x", "new-admin-token-0123456789abcdef-y"
    first = create_app(app_config(DATABASE_URI=uri, ADMIN_TOKEN=old))
    call(first.test_client(), "GET", "/user/", 200, headers=auth(old))
    listed = call(first.test_client(), "GET", TOKENS.format("admin"), 200, headers=auth(old))
    assert [(token["admin_token"], token["label"]) for token in listed] == [(True, "ADMIN_TOKEN")]
    second = create_app(app_config(DATABASE_URI=uri, ADMIN_TOKEN=new)).test_client()
    call(second, "GET", "/user/", 401, headers=auth(old))
    call(second, "GET", "/user/", 200, headers=auth(new))
    # a process started with the old value (a stale config) neither revives it nor revokes
    # the new one
    with caplog.at_level(logging.WARNING):
        stale = create_app(app_config(DATABASE_URI=uri, ADMIN_TOKEN=old)).test_client()
    assert "ADMIN_TOKEN was revoked" in caplog.text and old not in caplog.text
    call(stale, "GET", "/user/", 401, headers=auth(old))
    call(stale, "GET", "/user/", 200, headers=auth(new))
    # revoked through the API, it stays revoked at the next start with the same value
    token_id = call(stale, "GET", TOKENS.format("admin"), 200, headers=auth(new))[0]["id"]
    other = issue(stale, "admin", auth(new))
    call(stale, "DELETE", f"{TOKENS.format('admin')}{token_id}/", 204, headers=auth(new))
    again = create_app(app_config(DATABASE_URI=uri, ADMIN_TOKEN=new)).test_client()
    call(again, "GET", "/user/", 401, headers=auth(new))
    call(again, "GET", "/user/", 200, headers=auth(other["token"]))


# --- the console ------------------------------------------------------------------------------

def test_the_console_account_page_lists_issues_and_revokes_tokens(app: Any,
                                                                  client: Any) -> None:
    token = issue(client, "ann", label="first one")
    browser = Browser(app)
    browser.sign_in(token["token"])
    browser.get("/console/account/", status=303)
    page = browser.get("/console/accounts/ann/").text
    assert "first one" in page and token["prefix"] in page and token["token"] not in page
    answer = browser.post("/console/accounts/ann/tokens",
                          {"label": "for the subscriber", "expires_in_days": "30"}, status=200)
    shown = re.search(r'id="new-token".*?<code>([^<]+)</code>', answer.text, re.S)
    assert shown, answer.text
    new_token = shown.group(1)
    assert call(client, "GET", "/user/", 200, headers=auth(new_token))["username"] == "ann"
    listed = call(client, "GET", TOKENS.format("ann"), 200)
    created = next(item for item in listed if item["label"] == "for the subscriber")
    assert created["expires_on"] is not None
    assert new_token not in browser.get("/console/accounts/ann/").text  # shown once
    browser.post(f"/console/accounts/ann/tokens/{created['id']}/revoke")
    call(client, "GET", "/user/", 401, headers=auth(new_token))
    assert "was revoked" in browser.get("/console/accounts/ann/?notice=revoked").text
    # another user's page is the API's answer: 403; a bad expiry is refused
    browser.get("/console/accounts/bob/", status=403)
    browser.get("/console/accounts/", status=403)
    browser.get("/console/accounts/ann/")
    browser.post("/console/accounts/ann/tokens", {"expires_in_days": "9999"}, status=400)
    # revoking the token of this very session signs it out
    browser.get("/console/accounts/ann/")
    browser.post(f"/console/accounts/ann/tokens/{token['id']}/revoke")
    assert browser.session_id() is None or browser.get(
        "/console/imports/", status=303).headers["Location"].startswith("/console/sign-in")


def test_admins_deactivate_and_reactivate_users_in_the_console(app: Any, client: Any) -> None:
    ann = issue(client, "ann")
    session = Browser(app)
    session.sign_in(ann["token"])
    admin = Browser(app)
    admin.sign_in(ADMIN_TOKEN)
    page = admin.get("/console/accounts/").text
    assert "Deactivate ann" in page and "Deactivate admin" not in page
    admin.post("/console/accounts/ann/deactivate")
    assert "ann is deactivated" in admin.get("/console/accounts/ann/?notice=deactivated").text
    call(client, "GET", "/user/", 401, headers=auth(ann["token"]))
    session.client.get("/console/")
    assert session.client.get_cookie(SESSION_COOKIE, path="/console/") is None
    assert "Reactivate ann" in admin.get("/console/accounts/").text
    admin.post("/console/accounts/ann/reactivate")
    call(client, "GET", "/user/", 200, headers=auth(ann["token"]))


# --- the command line -------------------------------------------------------------------------

def test_the_cli_lists_issues_and_revokes_tokens_and_deactivates_users(
        tmp_path: Any, capsys: Any, monkeypatch: Any) -> None:
    from app.cli import main

    uri = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("TERMSYNC_EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setenv("TERMSYNC_IMPORT_DIR", str(tmp_path / "imports"))
    base = ["--database-uri", uri]
    assert main([*base, "create-user", "dana"]) == 0
    capsys.readouterr()
    assert main([*base, "tokens", "create", "dana", "--label", "sync",
                 "--expires-in-days", "7"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert "shown this once" in out.err and len(token) >= 43
    assert main([*base, "tokens", "create", "dana", "--value", "short"]) == 1
    assert "32" in capsys.readouterr().err
    assert main([*base, "tokens", "list", "dana"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t") == ["id", "prefix", "state", "created_on", "last_used_on",
                                    "expires_on", "label"]
    row = lines[1].split("\t")
    assert row[1] == token[:6] and row[2] == "active" and row[6] == "sync" and token not in lines[1]
    client = create_app({"DATABASE_URI": uri, "TESTING": True}).test_client()
    call(client, "GET", "/user/", 200, headers=auth(token))
    assert main([*base, "users", "deactivate", "dana"]) == 0
    call(client, "GET", "/user/", 401, headers=auth(token))
    assert main([*base, "users", "reactivate", "dana"]) == 0
    call(client, "GET", "/user/", 200, headers=auth(token))
    assert main([*base, "tokens", "revoke", "dana", row[0]]) == 0
    call(client, "GET", "/user/", 401, headers=auth(token))
    capsys.readouterr()
    assert main([*base, "tokens", "list", "dana", "--all"]) == 0
    assert "\trevoked\t" in capsys.readouterr().out
    assert main([*base, "tokens", "revoke", "dana", "nope"]) == 1
