"""The repository stands alone: nothing refers outside it, its docs link to its own contract
(docs/api.md) and to files that exist, and `.ci/run` runs the README's test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
           ".hypothesis", "var", "node_modules"}
TEXT = {".py", ".md", ".toml", ".cfg", ".ini", ".txt", ".sh", ".yml", ".yaml", ".json", ".html"}
# Built from parts, so that this file does not name what it looks for.
OUTSIDE = re.compile("|".join([re.escape("../" + "shared"), re.escape("/work/" + "shared"),
                               r"DESIGN\.md"]))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
FENCE = re.compile(r"```sh\n(.*?)```", re.DOTALL)


def repository_files() -> list[Path]:
    """Text files of the repository as a copy of it holds them (no virtualenv, no caches)."""
    files = []
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        if any(part in SKIPPED or part.endswith(".egg-info") for part in parts):
            continue
        if path.is_file() and (path.suffix in TEXT or path.parent.name == ".ci"):
            files.append(path)
    return files


def readme_test_command() -> str:
    """The README's command that runs the whole test suite."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("Run the whole test suite"):]
    match = FENCE.search(section)
    assert match, "the README's test command is in a ```sh block"
    (command,) = match.group(1).strip().splitlines()
    return command


def test_nothing_refers_outside_the_repository() -> None:
    files = repository_files()
    assert any(path.name == "conftest.py" for path in files) and len(files) > 100
    offenders = {str(path.relative_to(ROOT)): sorted(set(OUTSIDE.findall(path.read_text())))
                 for path in files}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_readme_and_docs_link_to_the_contract_and_to_files_that_exist() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = {}
    for document in documents:
        text = document.read_text()
        if document.name != "api.md":
            assert "api.md" in text, f"{document.name} does not link to docs/api.md"
        missing = [target for target in LINK.findall(text) if "://" not in target
                   and not (document.parent / target).exists()]
        if missing:
            broken[str(document.relative_to(ROOT))] = missing
    assert broken == {}


def test_ci_runs_the_readme_test_command_verbatim_in_a_copy_alone() -> None:
    command = readme_test_command()
    assert command.endswith("python -m pytest")
    script = (ROOT / ".ci" / "run").read_text()
    lines = script.rstrip().splitlines()
    assert command in lines
    # after it only comments and the second run of the HTTP suite on FerretDB
    after = [line for line in lines[lines.index(command) + 1:] if not line.startswith("#")]
    assert all(line.startswith("TEST_DATABASE_URI=ferretdb .venv/bin/python -m pytest ")
               for line in after), after
    assert "mktemp -d" in script and "git ls-files" in script
