"""Export zips and `Compress: true` snapshots, downloaded through the deployed stack, are read to
the end by Java's `ZipInputStream` (what the OpenMRS module uses), by `unzip -t` and by Python's
zipfile.

Java reads a streamed entry's data descriptor as 32-bit sizes unless the sizes pass 4 GiB, so a
zip64 descriptor on a small file fails at the end of the entry: a control zip written that way
shows the Java check would catch it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests

from app.exports.builder import _HashingWriter
from tests.conftest import concept

from .conftest import Demo

pytestmark = pytest.mark.slow

JAVA_READER = """
import java.io.*;
import java.util.zip.*;

public class ZipRead {
    public static void main(String[] args) throws Exception {
        for (String path : args) {
            try (ZipInputStream zip = new ZipInputStream(
                    new BufferedInputStream(new FileInputStream(path)))) {
                ZipEntry entry;
                byte[] buffer = new byte[65536];
                while ((entry = zip.getNextEntry()) != null) {
                    long total = 0;
                    int n;
                    while ((n = zip.read(buffer)) != -1) total += n;
                    System.out.println(entry.getName() + "\\t" + total);
                }
            }
        }
    }
}
"""


@pytest.fixture(scope="module")
def java_reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ZipRead.class compiled with the machine's javac."""
    if not (shutil.which("javac") and shutil.which("java")):
        pytest.skip("no JDK on this machine")
    directory = tmp_path_factory.mktemp("java")
    (directory / "ZipRead.java").write_text(JAVA_READER)
    subprocess.run(["javac", "ZipRead.java"], cwd=directory, check=True, timeout=120)
    return directory


def java_read(classes: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["java", "-cp", str(classes), "ZipRead", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


def check_readers(classes: Path, path: Path) -> None:
    """Java, unzip and zipfile all read every entry to the end, with the same sizes."""
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    java = java_read(classes, path)
    assert java.returncode == 0, java.stderr
    assert dict(line.split("\t") for line in java.stdout.splitlines()) == {
        name: str(size) for name, size in sizes.items()}
    if shutil.which("unzip"):
        tested = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True,
                                timeout=120, check=False)
        assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout


def download(url: str, path: Path, headers: dict[str, str] | None = None) -> Path:
    answer = requests.get(url, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.status_code
    assert answer.headers["Content-Type"] == "application/zip"
    path.write_bytes(answer.content)
    return path


def test_exports_and_snapshots_are_read_to_the_end_by_java(demo: Demo, java_reader: Path,
                                                            tmp_path: Path) -> None:
    # the demo release, and a bigger version: many deflate blocks, an entry of megabytes
    path = demo.path
    check_readers(java_reader, download(f"{demo.url}{path}v1.0/export", tmp_path / "v1.zip"))
    owner = {"owner": demo.org, "owner_type": "Organization", "source": "DemoSource"}
    demo.stack.import_lines("".join(json.dumps(dict(concept(
        f"Bulk{n}", extras={"filler": "x" * 200, "n": n}), type="Concept", **owner)) + "\n"
        for n in range(3000)))
    demo.call("POST", f"{path}versions/", 201, json={"id": "big", "released": True})
    demo.stack.wait_for_export(f"{path}big/")
    big = download(f"{demo.url}{path}big/export", tmp_path / "big.zip")
    with zipfile.ZipFile(big) as archive:
        assert archive.getinfo("export.json").file_size > 1_000_000
    check_readers(java_reader, big)
    # a snapshot as the OpenMRS module asks for it
    snapshot = download(f"{demo.url}{path.rstrip('/')}?includeConcepts=true&includeMappings=true"
                        "&includeRetired=true&limit=100000", tmp_path / "snapshot.zip",
                        headers={"Compress": "true"})
    check_readers(java_reader, snapshot)


def test_a_zip64_descriptor_below_4_gib_breaks_java(java_reader: Path, tmp_path: Path) -> None:
    """The control: what termsync wrote before (force_zip64 on a streamed entry) fails in Java."""
    path = tmp_path / "zip64.zip"
    with open(path, "wb") as raw:
        with zipfile.ZipFile(_HashingWriter(raw), "w",  # type: ignore[call-overload]
                             compression=zipfile.ZIP_DEFLATED) as archive:
            info = zipfile.ZipInfo("export.json")
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as entry:
                entry.write(b'{"concepts": []}' * 1000)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None  # Python reads it...
    java = java_read(java_reader, path)
    assert java.returncode != 0 and "invalid entry size" in java.stderr  # ...Java does not


def test_a_delta_package_is_read_to_the_end_by_java(demo: Demo, java_reader: Path,
                                                    tmp_path: Path) -> None:
    # a delta of thousands of items (many deflate blocks), then its manifest entry
    path = demo.path
    owner = {"owner": demo.org, "owner_type": "Organization", "source": "DemoSource"}
    demo.stack.import_lines("".join(json.dumps(dict(concept(
        f"Bulk{n}", extras={"filler": "x" * 200, "n": n}), type="Concept", **owner)) + "\n"
        for n in range(3000)))
    demo.call("DELETE", f"{path}concepts/Mango/?hard=true", 204)
    demo.call("POST", f"{path}versions/", 201, json={"id": "v2.0", "released": True})
    demo.stack.run_jobs()
    delta = download(f"{demo.url}{path}v2.0/export?since=v1.0", tmp_path / "delta.zip")
    with zipfile.ZipFile(delta) as archive:
        assert archive.namelist() == ["export.json", "manifest.json"]
        assert archive.getinfo("export.json").file_size > 1_000_000
    check_readers(java_reader, delta)
    java = java_read(java_reader, delta)
    assert [line.split("\t")[0] for line in java.stdout.splitlines()] == ["export.json",
                                                                           "manifest.json"]
