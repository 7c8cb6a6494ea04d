"""Tokens and rights through HTTP: 401 without or with a bad token, 403 without the right,
404 for a private source to those who cannot see it."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN, concept


def test_wrong_or_malformed_token_is_401(client: Any, source: Any) -> None:
    url = source()
    for header in ("Token nope-nope-nope", "Basic abc", "Token "):
        answer = client.get(url, headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert "nope" not in answer.get_data(as_text=True)


def test_writes_need_a_token_then_the_right(client: Any, source: Any, make_user: Any) -> None:
    url = source()
    outsider = make_user("outsider")
    member = make_user("member", orgs=("TestOrg",))
    assert client.post(f"{url}concepts/", json=concept("1")).status_code == 401
    assert client.post(f"{url}concepts/", json=concept("1"), headers=outsider).status_code == 403
    assert client.post(f"{url}concepts/", json=concept("1"), headers=member).status_code == 201
    assert client.post(f"{url}versions/", json={"id": "v1"}, headers=outsider).status_code == 403
    assert client.delete(f"{url}concepts/1/", headers=outsider).status_code == 403


def test_edit_access_lets_any_user_write(client: Any, source: Any, make_user: Any) -> None:
    url = source("Open", "Wiki", public_access="Edit")
    someone = make_user("someone")
    assert client.post(f"{url}concepts/", json=concept("1")).status_code == 401
    assert client.post(f"{url}concepts/", json=concept("1"), headers=someone).status_code == 201
    assert client.put(url, json={"public_access": "None"}, headers=someone).status_code == 403


def test_private_source_is_404_to_outsiders_and_visible_to_members(
        client: Any, source: Any, make_user: Any) -> None:
    url = source("Secret", "Hidden", public_access="None")
    outsider = make_user("outsider")
    member = make_user("member", orgs=("Secret",))
    missing = client.get("/orgs/Secret/sources/Absent/", headers=outsider)
    for headers in ({}, outsider):
        hidden = client.get(url, headers=headers)
        assert hidden.status_code == 404
        assert hidden.get_json()["message"].replace("Hidden", "Absent") == missing.get_json()["message"]
        assert client.get(f"{url}concepts/", headers=headers).status_code == 404
        listed = client.get("/orgs/Secret/sources/", headers=headers).get_json()
        assert listed == []
    assert client.get(url, headers=member).status_code == 200
    assert client.get(url, headers=ADMIN).status_code == 200


def test_user_routes_and_tokens(client: Any, make_user: Any) -> None:
    alice = make_user("alice")
    make_user("bob")
    assert client.get("/user/").status_code == 401
    assert client.get("/user/", headers=alice).get_json()["username"] == "alice"
    assert client.post("/users/", json={"username": "x"}, headers=alice).status_code == 403
    # Alice sees bob (users are public) but may not act for him: 403, not 404 (docs/api.md, Auth)
    assert client.get("/users/bob/", headers=alice).status_code == 200
    assert client.post("/users/bob/tokens/", json={}, headers=alice).status_code == 403
    created = client.post("/user/sources/", json={"id": "Mine"}, headers=alice)
    assert created.status_code == 201
    assert created.get_json()["url"] == "/users/alice/sources/Mine/"
    assert client.get("/user/sources/Mine/", headers=alice).status_code == 200
    assert client.get("/users/alice/sources/Mine/").status_code == 200


def test_tokens_are_stored_hashed(app: Any, make_user: Any) -> None:
    headers = make_user("carol")
    token = headers["Authorization"].split()[1]
    stored = list(app.extensions["termsync.store"].users.dump())
    assert stored and all(token not in str(document) for document in stored)


def test_cli_creates_users_orgs_tokens_against_a_database(tmp_path: Any, capsys: Any,
                                                           monkeypatch: Any) -> None:
    from app.cli import main

    uri = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("TERMSYNC_EXPORT_DIR", str(tmp_path / "exports"))  # not var/ in the checkout
    monkeypatch.setenv("TERMSYNC_IMPORT_DIR", str(tmp_path / "imports"))
    assert main(["--database-uri", uri, "create-user", "dana", "--token"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["--database-uri", uri, "create-org", "Clinic", "--owner", "dana"]) == 0
    assert main(["--database-uri", uri, "create-user", "eve"]) == 0
    assert main(["--database-uri", uri, "add-member", "Clinic", "eve"]) == 0
    assert main(["--database-uri", uri, "add-member", "Nowhere", "eve"]) == 1
    from app import create_app

    app = create_app({"DATABASE_URI": uri, "TESTING": True})
    client = app.test_client()
    headers = {"Authorization": f"Token {token}"}
    assert client.get("/user/", headers=headers).get_json()["username"] == "dana"
    assert client.post("/orgs/Clinic/sources/", json={"id": "S"}, headers=headers).status_code == 201
