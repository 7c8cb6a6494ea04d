"""The web console through the Flask test client: sign-in and sessions, CSRF on every form, rights
as in the API, and every page (the browser run is tests/app/test_console_browser.py)."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.console.web import CSRF_COOKIE, SESSION_COOKIE
from tests.conftest import ADMIN, ADMIN_TOKEN, app_config, concept, mapping

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEMO = "/console/orgs/DemoOrg/sources/DemoSource/"
BASE = "/orgs/TestOrg/sources/TestSource/"
SECRET = "/orgs/Secret/sources/Hidden/"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A test client that signs in and posts forms as the console's pages do."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.page = ""

    def _seen(self, answer: Any) -> None:
        answer.get_data()  # read and close streamed bodies (export files, CSS)
        answer.close()
        if answer.mimetype == "text/html" and not 300 <= answer.status_code < 400:
            self.page = answer.text

    def get(self, url: str, status: int = 200, **kwargs: Any) -> Any:
        answer = self.client.get(url, **kwargs)
        self._seen(answer)
        assert answer.status_code == status, (url, answer.status_code, answer.text[:2000])
        return answer

    def csrf(self) -> str:
        found = CSRF.search(self.page)
        assert found, "the page has no form"
        return found.group(1)

    def post(self, url: str, data: dict[str, Any] | None = None, status: int = 303,
             csrf: bool = True, **kwargs: Any) -> Any:
        form = dict(data or {})
        if csrf:
            form["csrf_token"] = self.csrf()
        answer = self.client.post(url, data=form, **kwargs)
        self._seen(answer)
        assert answer.status_code == status, (url, answer.status_code, answer.text[:2000])
        return answer

    def sign_in(self, token: str, status: int = 303) -> Any:
        """Sign in through the form, then open the page it leads to."""
        self.get("/console/sign-in")
        answer = self.post("/console/sign-in", {"token": token}, status=status)
        if status == 303:
            self.get(answer.headers["Location"])
        return answer

    def session_id(self) -> str | None:
        cookie = self.client.get_cookie(SESSION_COOKIE, path="/console/")
        return cookie.value if cookie else None


@pytest.fixture
def browser(demo_app: Any) -> Browser:
    return Browser(demo_app)


def new_user(app: Any, username: str, orgs: tuple[str, ...] = ()) -> str:
    """A user of this app (with org memberships); returns a token of theirs."""
    client = app.test_client()
    assert client.post("/users/", json={"username": username}, headers=ADMIN).status_code == 201
    answer = client.post(f"/users/{username}/tokens/", json={}, headers=ADMIN)
    assert answer.status_code == 201, answer.get_json()
    for org in orgs:
        assert client.put(f"/orgs/{org}/members/{username}/", headers=ADMIN).status_code == 200
    return str(answer.get_json()["token"])


def text(html: str) -> str:
    """The page's text without tags, whitespace folded (for assertions on what people read)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# --- landing page, sign-in, sessions --------------------------------------------------------

def test_root_is_a_page_for_browsers_and_still_404_for_api_clients(client: Any) -> None:
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'href="/console/"' in page.text and 'href="/api/docs"' in page.text
    for accept in (None, "*/*", "application/json"):
        answer = client.get("/", headers={"Accept": accept} if accept else {})
        assert answer.status_code == 404 and answer.get_json()["code"] == 404
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        answer = client.open("/", method=method, headers={"Accept": "text/html"})
        assert answer.status_code == 404 and answer.get_json()["code"] == 404


def test_sign_in_keeps_the_token_server_side(browser: Browser) -> None:
    answer = browser.sign_in("wrong-token-value", status=401)
    assert "Invalid token." in answer.text and browser.session_id() is None
    answer = browser.sign_in(ADMIN_TOKEN)
    assert answer.headers["Location"] == "/console/"
    cookie = next(value for value in answer.headers.getlist("Set-Cookie")
                  if value.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    assert "Secure" not in cookie  # plain http here; see the TLS test
    session_id = browser.session_id()
    assert session_id and ADMIN_TOKEN not in cookie
    page = browser.get("/console/")
    assert "Signed in as admin (admin)" in text(page.text)
    # the store keeps neither the session id nor the token
    store = browser.app.extensions["termsync.store"]
    assert store.console_sessions.get(session_id) is None
    stored = store.console_sessions.get(hashlib.sha256(session_id.encode()).hexdigest())
    assert stored["username"] == "admin" and ADMIN_TOKEN not in repr(stored)
    if store.kind == "sqlite":
        store.database.execute("PRAGMA wal_checkpoint(FULL)")
        raw = Path(store.path).read_bytes()
        assert ADMIN_TOKEN.encode() not in raw and session_id.encode() not in raw

    browser.post("/console/sign-out")
    assert store.console_sessions.get(stored["_id"]) is None and browser.session_id() is None
    assert "Sign in" in browser.get("/console/").text


def test_the_session_cookie_is_secure_behind_tls(demo_app: Any) -> None:
    client = demo_app.test_client()
    form = client.get("/console/sign-in", base_url="https://console.example")
    token = CSRF.search(form.text).group(1)
    answer = client.post("/console/sign-in", base_url="https://console.example",
                         data={"csrf_token": token, "token": ADMIN_TOKEN})
    assert answer.status_code == 303
    cookie = next(value for value in answer.headers.getlist("Set-Cookie")
                  if value.startswith(f"{SESSION_COOKIE}="))
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_a_revoked_account_or_an_expired_session_signs_out(demo_app: Any) -> None:
    browser = Browser(demo_app)
    browser.sign_in(new_user(demo_app, "ann"))
    assert "Signed in as ann" in text(browser.get("/console/").text)
    demo_app.extensions["termsync.store"].users.update("ann", {"is_active": False})
    answer = browser.get("/console/")
    assert "Sign in" in answer.text and browser.session_id() is None

    expiring = create_app(app_config(CONSOLE_SESSION_HOURS=1e-9))
    browser = Browser(expiring)
    browser.sign_in(ADMIN_TOKEN)
    assert "Signed in as" not in browser.get("/console/").text
    assert expiring.extensions["termsync.console"].sessions.purge() == 0  # resume deleted it


def test_sign_in_goes_back_to_the_page_asked_for_and_never_off_site(browser: Browser) -> None:
    answer = browser.get("/console/imports/", status=303)
    assert answer.headers["Location"] == "/console/sign-in?next=/console/imports/"
    browser.get(answer.headers["Location"])
    assert 'name="next" value="/console/imports/"' in browser.page
    answer = browser.post("/console/sign-in", {"token": ADMIN_TOKEN, "next": "/console/imports/"})
    assert answer.headers["Location"] == "/console/imports/"
    for target in ("https://evil.example/", "//evil.example/console/", "/console/\\evil"):
        browser.get("/console/")
        browser.post("/console/sign-out")
        browser.get("/console/sign-in")
        answer = browser.post("/console/sign-in", {"token": ADMIN_TOKEN, "next": target})
        assert answer.headers["Location"] == "/console/"


# --- CSRF --------------------------------------------------------------------------------------

def test_every_form_post_without_its_csrf_token_is_refused(browser: Browser) -> None:
    answer = browser.post("/console/sign-in", {"token": ADMIN_TOKEN}, csrf=False, status=403)
    assert "CSRF" in answer.text and browser.session_id() is None
    browser.client.set_cookie(CSRF_COOKIE, "forged", path="/console/")
    browser.post("/console/sign-in", {"token": ADMIN_TOKEN, "csrf_token": "other"}, csrf=False,
                 status=403)
    browser.sign_in(ADMIN_TOKEN)
    browser.get(DEMO)
    posts = [f"{DEMO}versions/", f"{DEMO}versions/v1.0/release", f"{DEMO}versions/v1.0/export/build",
             f"{DEMO}versions/v1.0/export/delete", "/console/imports/", "/console/sign-out"]
    for url in posts:
        browser.post(url, {"id": "v9"}, csrf=False, status=403)
        browser.post(url, {"id": "v9", "csrf_token": "not-this-session's"}, csrf=False,
                     status=403)
    assert browser.session_id() is not None  # sign-out was refused too
    assert browser.app.extensions["termsync"].content.find_version(
        "/orgs/DemoOrg/sources/DemoSource/v9/") is None
    # another session's token is no good either
    other = Browser(browser.app)
    other.sign_in(ADMIN_TOKEN)
    other.get(DEMO)
    browser.post(f"{DEMO}versions/", {"id": "v9", "csrf_token": other.csrf()}, csrf=False,
                 status=403)
    browser.get(DEMO)
    browser.post(f"{DEMO}versions/", {"id": "v9"})  # with its own token it works


# --- rights as in the API ------------------------------------------------------------------

def fill_private(client: Any) -> None:
    """Secret (a private org) with a private source whose mapping points at a public concept."""
    assert client.post("/orgs/", json={"id": "TestOrg"}, headers=ADMIN).status_code == 201
    assert client.post("/orgs/TestOrg/sources/", json={"id": "TestSource"},
                       headers=ADMIN).status_code == 201
    assert client.post(f"{BASE}concepts/", json=concept("A"), headers=ADMIN).status_code == 201
    assert client.post("/orgs/", json={"id": "Secret", "public_access": "None"},
                       headers=ADMIN).status_code == 201
    assert client.post("/orgs/Secret/sources/", json={"id": "Hidden", "public_access": "None"},
                       headers=ADMIN).status_code == 201
    assert client.post(f"{SECRET}concepts/", json=concept("X", "Secret thing"),
                       headers=ADMIN).status_code == 201
    assert client.post(f"{SECRET}mappings/", headers=ADMIN, json=mapping(
        f"{SECRET}concepts/X/", f"{BASE}concepts/A/")).status_code == 201


def test_a_private_source_is_invisible_to_anonymous_and_to_users_without_rights(
        app: Any, client: Any) -> None:
    fill_private(client)
    outsider = {"Authorization": f"Token {new_user(app, 'bob')}"}
    member = {"Authorization": f"Token {new_user(app, 'ann', orgs=('Secret',))}"}
    hidden = "/console/orgs/Secret/sources/Hidden/"
    visitors = {"anonymous": Browser(app), "bob": Browser(app), "ann": Browser(app)}
    visitors["bob"].sign_in(outsider["Authorization"].split()[1])
    visitors["ann"].sign_in(member["Authorization"].split()[1])
    for name, visitor in visitors.items():
        sees = name == "ann"
        for url in (hidden, f"{hidden}concepts/", f"{hidden}concepts/X/",
                    "/console/orgs/Secret/"):
            visitor.get(url, status=200 if sees else 404)
            assert client.get(url.replace("/console", ""),
                              headers=outsider if name == "bob" else member if sees else {}
                              ).status_code == (200 if sees else 404)
        for url in ("/console/sources/", "/console/sources/?q=hidden", "/console/orgs/",
                    "/console/orgs/?q=secret"):
            assert ("Hidden" in visitor.get(url).text or "Secret" in visitor.page) == sees, \
                (name, url)
        concept_page = visitor.get("/console/orgs/TestOrg/sources/TestSource/concepts/A/").text
        assert ("Secret/Hidden" in concept_page) == sees, name  # its mapping to A
    assert not visitors["bob"].get("/console/orgs/TestOrg/sources/TestSource/").text.count(
        "Cut version")


def test_buttons_and_actions_need_edit_rights(demo_app: Any) -> None:
    viewer = Browser(demo_app)
    viewer.sign_in(new_user(demo_app, "viewer"))
    page = viewer.get(DEMO).text
    assert "Cut version" not in page and "Delete export" not in page
    for url in (f"{DEMO}versions/", f"{DEMO}versions/v1.0/export/build",
                f"{DEMO}versions/v1.0/export/delete"):
        answer = viewer.post(url, {"id": "v2"}, status=403)
        assert "may not change source" in answer.text
        viewer.get(DEMO)
    anonymous = Browser(demo_app)
    anonymous.get(DEMO)
    assert "Cut version" not in anonymous.page
    assert anonymous.get(f"{DEMO}versions/v1.0/export.json").get_json()["state"] in (
        "PENDING", "READY")


# --- pages -----------------------------------------------------------------------------------

def test_source_page_versions_and_exports(browser: Browser) -> None:
    app = browser.app
    app.extensions["termsync.jobs"].run_until_idle()
    api = app.test_client()
    browser.sign_in(ADMIN_TOKEN)
    page = text(browser.get(DEMO).text)
    source = api.get("/orgs/DemoOrg/sources/DemoSource/").get_json()
    assert source["checksums"]["content"] in page
    assert "Since v1.0" in page and "0 created 0 updated 0 retired 0 deleted" in page
    concepts = api.get("/orgs/DemoOrg/sources/DemoSource/concepts/?limit=1").headers["num_found"]
    assert re.search(rf"\b{concepts} concepts\b", page)

    api.patch("/orgs/DemoOrg/sources/DemoSource/concepts/Apple/", json={"datatype": "Text"},
              headers=ADMIN)
    assert "0 created 1 updated" in text(browser.get(DEMO).text)
    browser.post(f"{DEMO}versions/", {"id": "v2.0", "description": "Second", "released": "on"})
    page = browser.get(f"{DEMO}?notice=released&version=v2.0").text
    assert "Version v2.0 was released; its export is queued." in page
    row = re.search(r'<tr id="version-v2.0" data-export-state="(\w+)"', page)
    assert row and row.group(1) == "PENDING"
    assert 'data-poll="/console/orgs/DemoOrg/sources/DemoSource/versions/v2.0/export.json"' in page
    assert '<noscript><meta http-equiv="refresh"' in page  # without JavaScript it reloads
    state = browser.get(f"{DEMO}versions/v2.0/export.json").get_json()
    assert state == {"state": "PENDING", "label": "queued", "detail": "", "value": 0, "max": 100,
                     "final": False}
    browser.get(f"{DEMO}versions/v2.0/export.zip", status=404)
    app.extensions["termsync.jobs"].run_until_idle()
    assert browser.get(f"{DEMO}versions/v2.0/export.json").get_json()["final"] is True
    page = browser.get(DEMO).text
    etag = re.search(r'<tr id="version-v2.0".*?<code class="etag">(\w+)</code>', page, re.S)
    assert etag and "Since v2.0" in text(page)
    download = browser.get(f"{DEMO}versions/v2.0/export.zip")
    assert download.headers["ETag"] == f'"{etag.group(1)}"'
    assert hashlib.sha256(download.data).hexdigest() == etag.group(1)
    assert api.head("/orgs/DemoOrg/sources/DemoSource/v2.0/export/").headers["ETag"] == \
        download.headers["ETag"]
    with zipfile.ZipFile(io.BytesIO(download.data)) as archive:
        assert archive.namelist() == ["export.json"]
    assert "DemoOrg_DemoSource_v2.0." in download.headers["Content-Disposition"]

    browser.post(f"{DEMO}versions/v2.0/export/delete")
    assert 'id="version-v2.0" data-export-state="NONE"' in browser.get(DEMO).text
    browser.post(f"{DEMO}versions/v2.0/export/build")
    assert 'id="version-v2.0" data-export-state="PENDING"' in browser.get(DEMO).text
    browser.post(f"{DEMO}versions/", {"id": "draft"})
    assert 'id="version-draft" data-export-state="NONE"' in browser.get(DEMO).text
    browser.post(f"{DEMO}versions/draft/release")
    assert 'id="version-draft" data-export-state="PENDING"' in browser.get(DEMO).text
    answer = browser.post(f"{DEMO}versions/", {"id": "draft"}, status=409)
    assert "already exists" in answer.text
    browser.get(DEMO)
    answer = browser.post(f"{DEMO}versions/", {"id": "HEAD"}, status=400)
    assert "reserved" in answer.text


def test_collection_pages_references_concepts_versions_and_exports(browser: Browser) -> None:
    """A collection has a source's page (counts, checksum, versions, exports and their
    actions) with its references in place of the changes, and its concepts link to their
    pages in their own sources."""
    app = browser.app
    api = app.test_client()
    assert api.post("/orgs/DemoOrg/collections/", json={"id": "Dict", "name": "Starter set"},
                    headers=ADMIN).status_code == 201
    answer = api.put("/orgs/DemoOrg/collections/Dict/references/", headers=ADMIN, json={
        "data": {"expressions": ["/orgs/DemoOrg/sources/DemoSource/concepts/Apple/",
                                 "/orgs/DemoOrg/sources/DemoSource/v1.0/concepts/Mango/"]}})
    assert answer.status_code == 200, answer.get_json()
    collection = "/console/orgs/DemoOrg/collections/Dict/"
    browser.sign_in(ADMIN_TOKEN)
    listed = text(browser.get("/console/collections/").text)
    assert "1 collection." in listed and "DemoOrg/Dict" in listed
    assert "DemoOrg/Dict" in text(browser.get("/console/orgs/DemoOrg/collections/").text)
    assert "DemoOrg/Dict" not in text(browser.get("/console/sources/").text)
    assert 'href="/console/collections/"' in browser.get("/console/").text  # navigation

    page = browser.get(collection).text
    checksum = api.get("/orgs/DemoOrg/collections/Dict/").get_json()["checksums"]["content"]
    assert checksum in page and re.search(r'id="concept-count">2<', page)
    assert "2 references at HEAD." in text(page) and "Changes since" not in page
    assert "/orgs/DemoOrg/sources/DemoSource/v1.0/concepts/Mango/" in page
    found = text(browser.get(f"{collection}?references_q=v1.0").text)
    assert "1 reference at HEAD matching “v1.0”." in found

    concepts = browser.get(f"{collection}concepts/?q=mango").text
    assert 'href="/console/orgs/DemoOrg/sources/DemoSource/concepts/Mango/"' in concepts
    assert "DemoOrg/DemoSource/Mango" in text(concepts) and "Apple" not in text(concepts)
    moved = browser.get(f"{collection}concepts/Apple/", status=303)
    assert moved.headers["Location"].endswith("/console/orgs/DemoOrg/sources/DemoSource/"
                                              "concepts/Apple/")

    browser.get(collection)
    browser.post(f"{collection}versions/", {"id": "c1", "released": "on"})
    assert 'id="version-c1" data-export-state="PENDING"' in browser.get(collection).text
    app.extensions["termsync.jobs"].run_until_idle()
    page = browser.get(collection).text
    etag = re.search(r'<tr id="version-c1".*?<code class="etag">(\w+)</code>', page, re.S)
    assert etag
    download = browser.get(f"{collection}versions/c1/export.zip")
    assert hashlib.sha256(download.data).hexdigest() == etag.group(1)
    assert api.head("/orgs/DemoOrg/collections/Dict/c1/export/").headers["ETag"] == \
        f'"{etag.group(1)}"'


def test_lists_and_searches(browser: Browser) -> None:
    assert "DemoSource" in browser.get("/console/sources/?q=demo").text
    page = text(browser.get("/console/sources/?q=zzz").text)
    assert "0 sources matching “zzz”." in page and "DemoSource" not in page
    assert "DemoOrg" in browser.get("/console/orgs/?q=demo").text
    page = text(browser.get("/console/orgs/DemoOrg/").text)
    assert "OCL Demo Organization" in page and "DemoSource" in page
    browser.get("/console/orgs/Nobody/", status=404)
    browser.get("/console/users/nobody/", status=404)


def test_concept_list_filters_and_pages(demo_app: Any) -> None:
    app = create_app(app_config(LOAD_DEMO=True, CONSOLE_PAGE_SIZE=5))
    browser = Browser(app)
    concepts = f"{DEMO}concepts/"
    page = text(browser.get(concepts).text)
    assert "Page 1 of" in page and "Next page" in page
    assert re.search(r"\b\d+ concepts\.", page)
    page = text(browser.get(f"{concepts}?q=apple").text)
    assert "1 concept match." in page and "Apple" in page
    page = text(browser.get(f"{concepts}?concept_class=Category").text)
    assert "2 concepts match." in page and "Fruit" in page and "Vegetable" in page
    page = text(browser.get(f"{concepts}?datatype=None&concept_class=Root&version=v1.0").text)
    assert "1 concept match." in page and "Food" in page
    browser.get(f"{concepts}?version=nope", status=404)
    assert "Page 2 of" in text(browser.get(f"{concepts}?page=2").text)
    browser.get(f"{concepts}?page=abc")


def test_concept_page_names_mappings_both_ways_and_history(browser: Browser) -> None:
    api = browser.app.test_client()
    api.post("/orgs/DemoOrg/sources/DemoSource/concepts/", headers=ADMIN,
             json=concept("Kiwi", "Kiwi fruit", descriptions=[
                 {"description": "A small fruit", "locale": "en"}], extras={"origin": "NZ"}))
    api.post("/orgs/DemoOrg/sources/DemoSource/mappings/", headers=ADMIN, json=mapping(
        "/orgs/DemoOrg/sources/DemoSource/concepts/Fruit/",
        "/orgs/DemoOrg/sources/DemoSource/concepts/Kiwi/", "Has Child"))
    page = browser.get(f"{DEMO}concepts/Fruit/").text
    outbound = re.search(r'<table id="mappings-outbound">.*?</table>', page, re.S).group(0)
    inbound = re.search(r'<table id="mappings-inbound">.*?</table>', page, re.S).group(0)
    assert "Apple" in outbound and "Kiwi" in outbound and "Has Child" in outbound
    assert "Food" in inbound
    assert f'href="{DEMO}concepts/Kiwi/"' in outbound
    page = text(browser.get(f"{DEMO}concepts/Kiwi/").text)
    assert "Kiwi fruit" in page and "A small fruit" in page and "origin" in page and '"NZ"' in page
    assert "live HEAD" in page
    page = browser.get(f"{DEMO}concepts/Apple/?version=v1.0").text
    assert "Apple" in page and "At</dt><dd>v1.0" in page
    history = re.search(r'<table id="history">.*?</table>', page, re.S).group(0)
    assert "v1.0" in history and "HEAD" in history
    browser.get(f"{DEMO}concepts/Kiwi/?version=v1.0", status=404)  # not in v1.0
    browser.get(f"{DEMO}concepts/Nothing/", status=404)


def test_imports_upload_job_page_results_and_report(demo_app: Any) -> None:
    browser = Browser(demo_app)
    browser.sign_in(ADMIN_TOKEN)
    browser.get("/console/imports/")
    upload = FIXTURES / "sample_ocldev.jsonl"
    answer = browser.post("/console/imports/", {
        "file": (io.BytesIO(upload.read_bytes()), "sample_ocldev.jsonl"),
        "update_if_exists": "on", "submission": "one-form"},
        content_type="multipart/form-data")
    job_url = answer.headers["Location"]
    job_id = job_url.rstrip("/").rsplit("/", 1)[1]
    page = browser.get(job_url).text
    assert "submitted" in page and f'data-poll="/console/imports/{job_id}/progress.json"' in page
    progress = browser.get(f"/console/imports/{job_id}/progress.json").get_json()
    lines = len(upload.read_bytes().splitlines())  # 64: the last line has no newline
    assert progress["state"] == "SUBMITTED" and progress["value"] == 0 and progress["max"] == lines
    # the same form posted twice is one job (its submission id is the Idempotency-Key)
    browser.get("/console/imports/")
    again = browser.post("/console/imports/", {
        "file": (io.BytesIO(upload.read_bytes()), "sample_ocldev.jsonl"),
        "update_if_exists": "on", "submission": "one-form"}, content_type="multipart/form-data")
    assert again.headers["Location"] == job_url
    demo_app.extensions["termsync.jobs"].run_until_idle()
    progress = browser.get(f"/console/imports/{job_id}/progress.json").get_json()
    assert progress["state"] == "FINISHED" and progress["value"] == progress["max"] == lines
    assert progress["final"] is True
    page = browser.get(f"{job_url}?status=all").text
    assert "finished" in page and f"{lines} lines in all" in text(page)
    assert 'data-summary="unchanged"' in page
    report = browser.get(f"/console/imports/{job_id}/report.csv")
    assert report.mimetype == "text/csv" and report.text.startswith("line,type,status,url,error")
    assert len(report.text.strip().splitlines()) == lines + 1
    assert job_id in browser.get("/console/imports/").text

    bad = b'{"type": "Concept", "id": "X"}\nnot json\n'
    browser.post("/console/imports/", {"file": (io.BytesIO(bad), "bad.jsonl"), "dry_run": "on"},
                 content_type="multipart/form-data")
    demo_app.extensions["termsync.jobs"].run_until_idle()
    bad_url = browser.client.get("/console/").text  # the home page lists the latest jobs
    bad_job = re.search(r'href="(/console/imports/\w+/)">bad.jsonl', bad_url).group(1)
    page = browser.get(bad_job).text  # failed lines by default
    assert "2 lines failed." in text(page) and "dry run" in text(page)
    rows = re.findall(r'<tr><td class="num">(\d+)</td>.*?</tr>',
                      re.search(r'<table id="results">.*?</table>', page, re.S).group(0), re.S)
    assert rows == ["1", "2"]
    assert "0 lines skipped." in text(browser.get(f"{bad_job}?status=skipped").text)

    answer = browser.post("/console/imports/", {"file": (io.BytesIO(b"PK\x03\x04"), "x.zip")},
                          content_type="multipart/form-data", status=400)
    assert "zip is not accepted yet" in answer.text
    browser.get("/console/imports/")
    answer = browser.post("/console/imports/", {"file": (io.BytesIO(b"{}"), "x.jsonl"),
                                                "owner": "DemoOrg"},
                          content_type="multipart/form-data", status=400)
    assert "both its owner and its id" in answer.text


def test_import_jobs_are_their_submitters(demo_app: Any) -> None:
    admin = Browser(demo_app)
    admin.sign_in(ADMIN_TOKEN)
    admin.get("/console/imports/")
    job_url = admin.post("/console/imports/", {"file": (io.BytesIO(b"{}\n"), "a.jsonl")},
                         content_type="multipart/form-data").headers["Location"]
    other = Browser(demo_app)
    other.sign_in(new_user(demo_app, "eve"))
    other.get(job_url, status=404)
    other.get(f"{job_url}report.csv", status=404)
    assert "a.jsonl" not in other.get("/console/imports/").text
    Browser(demo_app).get(job_url, status=303)  # anonymous: sign in first
    admin.get(job_url)
    admin.post(f"{job_url}cancel")
    assert "cancelled" in admin.get(job_url).text


def test_pages_send_security_headers_and_unknown_paths_are_pages(browser: Browser) -> None:
    answer = browser.get("/console/")
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"
    missing = browser.get("/console/no/such/page", status=404)
    assert missing.mimetype == "text/html" and "There is no console page here." in missing.text
    assert browser.get("/console/static/console.css").mimetype == "text/css"


def test_the_console_can_be_turned_off() -> None:
    app = create_app(app_config(CONSOLE_ENABLED=False))
    client = app.test_client()
    assert client.get("/console/").status_code == 404
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 404
