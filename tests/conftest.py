"""Fixtures: an app on a fresh database (SQLite, or TEST_DATABASE_URI), clients and factories."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.store.mongo import MongoStore
from tests import ferretdb

# OCL's sample files (DemoSource export, CIEL excerpts, CSV): part of the repository.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"
ADMIN = {"Authorization": f"Token {ADMIN_TOKEN}"}
# Export and upload files of every test app go under one temporary directory, removed at exit.
FILES_ROOT = tempfile.mkdtemp(prefix="termsync-test-files-")
atexit.register(shutil.rmtree, FILES_ROOT, True)


def shared_database_uri() -> str:
    """TEST_DATABASE_URI (or TEST_MONGO_URI): a MongoDB server, mongomock://, or `ferretdb` for
    this test process's FerretDB (tests/ferretdb, started on first use); empty when unset."""
    shared = os.environ.get("TEST_DATABASE_URI") or os.environ.get("TEST_MONGO_URI") or ""
    return ferretdb.shared() if shared == "ferretdb" else shared


def test_database_uri(directory: str | None = None) -> str:
    """A fresh database for one test: the shared one (shared_database_uri) with its own database
    name, else a new SQLite file."""
    return shared_database_uri() or \
        f"sqlite:///{directory or tempfile.mkdtemp(dir=FILES_ROOT)}/termsync.db"


def mongo_database_uri() -> str:
    """A MongoDB for tests of what only that backend has (GridFS, upload chunks): the shared
    server when it is one, else an in-process mongomock."""
    shared = shared_database_uri()
    return shared if shared.startswith(("mongodb", "mongomock")) else \
        f"mongomock://{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _close_mongodb_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every MongoDB store a test opened (apps it built included), and drop the test
    databases it made on a server: a client left open is a ResourceWarning, an error here."""
    opened: list[MongoStore] = []
    opening = MongoStore.__init__

    def open_and_remember(store: MongoStore, *args: Any, **kwargs: Any) -> None:
        opening(store, *args, **kwargs)
        opened.append(store)

    monkeypatch.setattr(MongoStore, "__init__", open_and_remember)
    yield
    for store in opened:
        if store.closed:  # its owner closed it (and dropped what it had to)
            continue
        if store.db_name.startswith("termsync_test_") and not store.uri.startswith("mongomock"):
            store.drop()
        store.close()


@pytest.fixture(scope="session")
def ferretdb_uri() -> str:
    """The URI of this test process's FerretDB; the test skips, saying why, when there is none."""
    try:
        return ferretdb.shared()
    except ferretdb.FerretDBUnavailable as error:
        pytest.skip(f"FerretDB: {error}")


def app_config(**extra: Any) -> dict[str, Any]:
    """Config for a test app: its own database, an admin token, no background threads."""
    config = {"DATABASE_URI": test_database_uri(),
              "MONGO_DB": f"termsync_test_{uuid.uuid4().hex[:12]}",
              "ADMIN_TOKEN": ADMIN_TOKEN, "TESTING": True, "LOAD_DEMO": False,
              "EXPORT_DIR": tempfile.mkdtemp(dir=FILES_ROOT),
              "IMPORT_DIR": tempfile.mkdtemp(dir=FILES_ROOT)}
    config.update(extra)
    return config


def app_on_fresh_database(**extra: Any) -> Iterator[Any]:
    """An app on its own database, dropped afterwards when it is a real MongoDB."""
    application = create_app(app_config(**extra))
    yield application
    # what a test started (job threads, heartbeat, maintenance) stops before its store closes
    application.extensions["termsync.jobs"].stop()
    store = application.extensions["termsync.store"]
    store.drop()
    store.close()


@pytest.fixture
def app() -> Iterator[Any]:
    yield from app_on_fresh_database()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


# The deployed stack's page size in tests: the OpenMRS module's limit=100000 is served as this
# many, so that a few thousand items make a snapshot larger than one answer.
STACK_CONTENT_MAX_LIMIT = 1000


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The deployed stack (tests/stack.py: nginx, gunicorn with gunicorn.conf.py, `termsync
    worker`), started once and shared by the tests of a session, each in organizations of its
    own (`stack.new_org()`, `stack.demo()`)."""
    from tests.stack import Stack

    with Stack(tmp_path_factory.mktemp("stack"), settings={
            "TERMSYNC_CONTENT_MAX_LIMIT": str(STACK_CONTENT_MAX_LIMIT)}) as running:
        yield running


@pytest.fixture
def demo_app() -> Iterator[Any]:
    yield from app_on_fresh_database(LOAD_DEMO=True)


@pytest.fixture
def demo_client(demo_app: Any) -> Any:
    return demo_app.test_client()


@pytest.fixture
def make_user(client: Any) -> Callable[..., dict[str, str]]:
    """Create a user through the API; return the Authorization headers of a new token."""
    def make(username: str, *, orgs: tuple[str, ...] = ()) -> dict[str, str]:
        assert client.post("/users/", json={"username": username}, headers=ADMIN).status_code == 201
        answer = client.post(f"/users/{username}/tokens/", json={}, headers=ADMIN)
        assert answer.status_code == 201, answer.get_json()
        for org in orgs:
            assert client.put(f"/orgs/{org}/members/{username}/", headers=ADMIN).status_code == 200
        return {"Authorization": f"Token {answer.get_json()['token']}"}
    return make


def concept(concept_id: str, name: str | None = None, **fields: Any) -> dict[str, Any]:
    """A concept payload as OCL clients send it."""
    payload = {"id": concept_id, "concept_class": "Diagnosis", "datatype": "N/A",
               "names": [{"name": name or f"Concept {concept_id}", "locale": "en",
                          "locale_preferred": True, "name_type": "FULLY_SPECIFIED"}]}
    payload.update(fields)
    return payload


def mapping(from_url: str, to_url: str, map_type: str = "SAME-AS", **fields: Any) -> dict[str, Any]:
    """A mapping payload between two concept urls."""
    payload = {"map_type": map_type, "from_concept_url": from_url, "to_concept_url": to_url}
    payload.update(fields)
    return payload


@pytest.fixture
def source(client: Any) -> Callable[..., str]:
    """Create an org and a source as admin; return the source url."""
    def make(org: str = "TestOrg", source_id: str = "TestSource",
             public_access: str = "View") -> str:
        if client.get(f"/orgs/{org}/", headers=ADMIN).status_code == 404:
            assert client.post("/orgs/", json={"id": org}, headers=ADMIN).status_code == 201
        answer = client.post(f"/orgs/{org}/sources/", headers=ADMIN,
                             json={"id": source_id, "public_access": public_access})
        assert answer.status_code == 201, answer.get_json()
        return f"/orgs/{org}/sources/{source_id}/"
    return make
