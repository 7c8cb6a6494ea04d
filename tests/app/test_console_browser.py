"""The console in a real browser: Chromium headless (Debian's chromium and chromium-driver, through
selenium) against `termsync serve` on loopback.

The server is a web-only process (no job threads), as in production next to `termsync worker`
processes; this test process is the worker: it runs the real job loop on the same SQLite
database, with a gate in the middle of the import and of the export build so that the browser
deterministically sees both while they run. The browser polls the page on its own timer; the
test only ever waits for conditions (WebDriverWait, or the gate saying the job has paused).

The run signs in, uploads sample_ocldev.jsonl, watches the job move and reach FINISHED, releases
a version, watches its export go from building to ready, downloads it (sha256 = ETag), browses to
a concept and its mappings; every page passes an accessibility check of the basics, and every
step leaves a screenshot in the test's temporary directory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import selectors
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from app import create_app
from app.jobs import JobContext
from app.model import Job
from tests.conftest import ADMIN, ADMIN_TOKEN, app_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
A11Y_CHECK = (Path(__file__).parent / "a11y_check.js").read_text()
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
DEADLINE = 30.0  # seconds any awaited condition may take
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1280,1024")


class Server:
    """`termsync serve` in a subprocess: the web process, with no job threads of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        env = {key: value for key, value in os.environ.items() if not key.startswith("TERMSYNC_")}
        env.update(self.settings())
        self.log = (root / "server.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log)
        self.url = self._announced_url()

    def settings(self) -> dict[str, str]:
        return {"TERMSYNC_DATABASE_URI": f"sqlite:///{self.root / 'termsync.db'}",
                "TERMSYNC_EXPORT_DIR": str(self.root / "exports"),
                "TERMSYNC_IMPORT_DIR": str(self.root / "imports"),
                "TERMSYNC_ADMIN_TOKEN": ADMIN_TOKEN, "TERMSYNC_BACKGROUND_WORKERS": "0",
                "TERMSYNC_CONSOLE_POLL_SECONDS": "0.25", "TERMSYNC_LOG_LEVEL": "WARNING",
                "TERMSYNC_ACCESS_LOG": "false"}

    def _announced_url(self) -> str:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        try:
            if not selector.select(DEADLINE):
                raise AssertionError(f"the server did not start in {DEADLINE}s")
            line = self.process.stdout.readline().decode()
        finally:
            selector.close()
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert found, f"unexpected first line from the server: {line!r}"
        return found.group(0)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(DEADLINE)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


class Gate:
    """Pauses a job at a chosen point until the test opens it."""

    def __init__(self, kind: str, when: Callable[[Job, dict[str, Any]], bool]) -> None:
        self.kind = kind
        self.when = when  # (job, progress) -> pause here?
        self.paused = threading.Event()
        self.opened = threading.Event()

    def check(self, job: Job, progress: dict[str, Any] | None) -> None:
        if progress is not None and not self.opened.is_set() and self.when(job, progress):
            self.paused.set()
            assert self.opened.wait(DEADLINE * 2), "the test never opened the gate"

    def open(self) -> None:
        self.opened.set()


class GatedContext(JobContext):
    """A job context whose heartbeats go through the gates once they are recorded. (Heartbeats,
    not save_progress: an import saves its progress inside its batch's transaction, and a job
    paused there would hold SQLite's write lock and show nothing.)"""

    gates: list[Gate]

    def heartbeat(self, progress: dict[str, Any] | None = None) -> None:
        super().heartbeat(progress)
        for gate in self.gates:
            if gate.kind == self.job.kind:
                gate.check(self.job, progress)


class Worker:
    """The job runner: the real worker loop, in this process, on the server's database."""

    def __init__(self, server: Server) -> None:
        settings = {key.removeprefix("TERMSYNC_"): value for key, value in server.settings().items()}
        settings.update(IMPORT_BATCH_SIZE=10, EXPORT_HEARTBEAT_ITEMS=5, JOB_POLL_SECONDS=0.05)
        self.app = create_app(app_config(**settings))
        self.gates: list[Gate] = []
        workers = self.app.extensions["termsync.jobs"]
        for kind, handler in list(workers.handlers.items()):
            workers.handlers[kind] = self._gated(handler)
        self.workers = workers

    def _gated(self, handler: Callable[[JobContext], Any]) -> Callable[[JobContext], Any]:
        def run(context: JobContext) -> Any:
            gated = GatedContext(context.queue, context.job, context.worker_id,
                                 context.lease_seconds)
            gated.gates = self.gates
            return handler(gated)
        return run

    def gate(self, kind: str, when: Callable[[Job, dict[str, Any]], bool]) -> Gate:
        gate = Gate(kind, when)
        self.gates.append(gate)
        return gate

    def start(self) -> None:
        self.workers.start(1)

    def stop(self) -> None:
        for gate in self.gates:
            gate.open()
        self.workers.stop()
        self.app.extensions["termsync.store"].close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Server, Worker]]:
    server = Server(tmp_path)
    worker = Worker(server)
    try:
        yield server, worker
    finally:
        worker.stop()
        server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(DEADLINE)
    try:
        yield driver
    finally:
        driver.quit()


class Steps:
    """The browser's walk: a screenshot and an accessibility check at each step."""

    def __init__(self, driver: Any, directory: Path) -> None:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.directory = directory
        # a page that reloads itself (when a build or an import ends) replaces its elements
        self.wait = WebDriverWait(driver, DEADLINE, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException))
        self.number = 0
        self.checked: list[str] = []

    def shot(self, name: str) -> Path:
        """A screenshot of the whole page (not only what the window shows)."""
        self.number += 1
        path = self.directory / f"{self.number:02d}-{name}.png"
        picture = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(picture["data"]))
        return path

    def check(self, name: str) -> None:
        """Accessibility of the page as it is now, then its screenshot."""
        problems = self.driver.execute_script(A11Y_CHECK)
        assert problems == [], (self.driver.current_url, problems)
        self.checked.append(self.driver.current_url)
        self.shot(name)

    def until(self, condition: Callable[[Any], Any], what: str) -> Any:
        return self.wait.until(condition, message=f"waiting for {what}")

    def settled(self) -> None:
        """Wait until nothing on the page is still running (no live progress left)."""
        from selenium.webdriver.common.by import By
        self.until(lambda d: d.execute_script("return document.readyState") == "complete"
                   and not d.find_elements(By.CSS_SELECTOR, "[data-poll]"),
                   "the page to settle (no build or import running)")

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def link(self, text: str) -> Any:
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.LINK_TEXT, text)

    def text(self, css: str = "main") -> str:
        return " ".join(self.find(css).text.split())


def test_a_curator_imports_releases_downloads_and_browses(live: tuple[Server, Worker],
                                                          browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    server, worker = live
    api = requests.Session()
    answer = api.post(f"{server.url}/users/", json={"username": "curator"}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    token = api.post(f"{server.url}/users/curator/tokens/", json={}, headers=ADMIN).json()["token"]
    # Pause the import once 20 lines are in, and the v2.0 export once it has written some items.
    import_gate = worker.gate("bulk_import", lambda job, progress:
                              (progress.get("summary") or {}).get("processed", 0) >= 20)
    export_gate = worker.gate("export", lambda job, progress:
                              job.payload["version_id"] == "v2.0"
                              and 0 < progress.get("done", 0) < progress.get("total", 0))
    steps = Steps(browser, tmp_path)
    screenshots = tmp_path

    # 1. The landing page links to the console; sign in with the token.
    browser.get(f"{server.url}/")
    steps.check("landing")
    steps.link("Console").click()
    steps.until(lambda d: "termsync console" in d.title, "the console's home")
    steps.check("console-anonymous")
    steps.link("Sign in").click()
    steps.until(lambda d: "/console/sign-in" in d.current_url, "the sign-in form")
    steps.check("sign-in")
    steps.find("#token").send_keys(token)
    steps.find("form.stacked button[type=submit]").click()
    steps.until(lambda d: "Signed in as curator" in d.find_element(By.TAG_NAME, "header").text,
                "signed in")
    steps.check("signed-in")

    # 2. Upload sample_ocldev.jsonl; the job waits for a worker.
    steps.link("Imports").click()
    steps.until(lambda d: d.title.startswith("Imports"), "the imports page")
    steps.check("imports")
    steps.find("#import-file").send_keys(str(FIXTURES / "sample_ocldev.jsonl"))
    steps.find("form.stacked button[type=submit]").click()
    steps.until(lambda d: re.search(r"/console/imports/\w+/$", d.current_url), "the job page")
    assert "submitted" in steps.text("#job-state")
    steps.check("import-submitted")

    # 3. The worker starts; the page's bar moves while the job runs, then it is FINISHED.
    worker.start()
    assert import_gate.paused.wait(DEADLINE), "the import never reached its gate"
    steps.until(lambda d: steps.text("#job-state") == "running"
                and int(steps.find("#job-progress progress").get_property("value")) == 20,
                "the progress bar of the running import")
    assert steps.text("#job-progress") == "20 of 64 lines"
    steps.check("import-running")
    import_gate.open()
    steps.until(lambda d: steps.text("#job-state") == "finished", "the import to finish")
    bar = steps.find("#job-progress progress")
    assert bar.get_property("value") == bar.get_property("max") == 64
    summary = {cell.get_attribute("data-summary"): int(cell.text.replace(",", ""))
               for cell in browser.find_elements(By.CSS_SELECTOR, "#summary td")}
    assert summary["processed"] == 64 and summary["failed"] == 0 and summary["created"] > 0
    steps.check("import-finished")

    # 4. The source: counts, checksum, changes since its last release (v1.0, from the file).
    steps.link("Sources").click()
    steps.until(lambda d: d.title.startswith("Sources"), "the sources page")
    steps.check("sources")
    steps.link("DemoOrg/DemoSource").click()
    steps.until(lambda d: d.find_elements(By.ID, "checksum"), "the source page")
    steps.settled()  # the exports of the versions the file released may still be building
    head = api.get(f"{server.url}/orgs/DemoOrg/sources/DemoSource/").json()
    assert steps.text("#checksum") == head["checksums"]["content"]
    assert "Since v1.0" in steps.text()
    assert int(steps.text("#concept-count")) > 0
    steps.check("source")

    # 5. Cut v2.0 released: its export is queued, then builds (bar moving), then is ready.
    steps.find("#version-id").send_keys("v2.0")
    steps.find("#version-released").click()
    steps.find("#version-released").find_element(By.XPATH, "ancestor::form").submit()
    steps.until(lambda d: "Version v2.0 was released" in steps.text(".notice"), "the release")
    assert export_gate.paused.wait(DEADLINE), "the export never reached its gate"
    row = "#version-v2\\.0"
    steps.until(lambda d: steps.text(f"{row} .export .state") == "building"
                and int(steps.find(f"{row} progress").get_property("value")) > 0,
                "the export's progress bar while it builds")
    assert steps.text(f"{row} .export").endswith("% written")
    steps.check("export-building")
    export_gate.open()
    steps.until(lambda d: steps.find(row).get_attribute("data-export-state") == "READY",
                "the export to be ready")
    assert "ready" in steps.text(f"{row} .export")
    steps.check("export-ready")

    # 6. Download it with the browser's session: its sha256 is its ETag, as the API says.
    shown_etag = steps.text(f"{row} .etag")
    href = steps.find(f"{row} a.download").get_attribute("href")
    cookies = {cookie["name"]: cookie["value"] for cookie in browser.get_cookies()}
    download = requests.get(href, cookies=cookies, timeout=DEADLINE)
    assert download.status_code == 200 and download.headers["Content-Type"] == "application/zip"
    assert download.headers["ETag"] == f'"{shown_etag}"'
    assert hashlib.sha256(download.content).hexdigest() == shown_etag
    probe = api.head(f"{server.url}/orgs/DemoOrg/sources/DemoSource/v2.0/export/")
    assert probe.headers["ETag"] == download.headers["ETag"]
    (screenshots / "v2.0-export.zip").write_bytes(download.content)

    # 7. Browse to a concept: its names, and its mappings both ways.
    steps.link("Browse the concepts").click()
    steps.until(lambda d: d.find_elements(By.ID, "concepts"), "the concept list")
    steps.check("concepts")
    steps.find("#concepts-q").send_keys("fruit")
    steps.find("form.filters button[type=submit]").click()
    steps.until(lambda d: "q=fruit" in d.current_url, "the filtered list")
    steps.check("concepts-filtered")
    steps.link("Fruit").click()
    steps.until(lambda d: d.find_elements(By.ID, "mappings-outbound"), "the concept page")
    outbound = steps.text("#mappings-outbound")
    inbound = steps.text("#mappings-inbound")
    assert "Has Child" in outbound and "Apple" in outbound and "Papaya" in outbound
    assert "Food" in inbound
    assert "Fruit" in steps.text("#names")
    steps.check("concept")
    steps.link("Apple").click()
    steps.until(lambda d: steps.text("h1") == "Apple", "the mapped concept")
    steps.check("concept-followed")

    # 8. Signing out leaves an anonymous visitor.
    browser.find_element(By.CSS_SELECTOR, "header form button[type=submit]").click()
    steps.until(lambda d: d.find_elements(By.LINK_TEXT, "Sign in"), "signed out")
    steps.check("signed-out")

    assert len(steps.checked) == len(list(tmp_path.glob("*.png"))) == 17

    # The check finds what it looks for (a page with every fault it knows).
    browser.get("data:text/html,<title>x</title><h1>A</h1><h3>skips</h3>"
                "<input id=unlabelled><p style='color:%23999'>grey on white</p>"
                "<img src=x><table><tr><td>1</td></tr></table>")
    problems = " | ".join(browser.execute_script(A11Y_CHECK))
    for fault in ("no lang", "one <main>", "skips a level", "without a label: input#unlabelled",
                  "without alt", "without header cells", "contrast 2.85:1"):
        assert fault in problems, (fault, problems)
