"""The layering of the code, read from its imports with `ast` (docs/architecture.md, Layers):

- no import cycle among the modules of `app/` (imports inside functions count: they run too);
- `sync/` imports nothing from `app/` (a subscriber installs and runs without the server);
- no module of `app/` outside `app/store/` imports a database driver (`pymongo`, `bson`,
  `gridfs`, `sqlite3`, `mongomock`), reads a store's database handle (`store.db`) or builds a
  MongoDB query: every query, and every file kept in the database (GridFS, import uploads),
  belongs to the store;
- `mongomock` is imported by the MongoDB store alone, lazily, for `mongomock://` (tests);
- every repository of a `Store` has one owner (the domain, or the feature whose data it holds),
  and no module outside its owner and `create_app` (which hands each feature what it owns)
  reaches it; nothing reads a `.repos` or a `Domain`'s store (there is none).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = ("pymongo", "bson", "gridfs", "mongomock", "sqlite3")
# A MongoDB operator or aggregation stage as a string: "$set", "$gt", "$match", ... ("$ref" is
# JSON Schema's, in the OpenAPI document).
MONGO_OPERATOR = re.compile(r"^\$(?!ref$)[A-Za-z]")
# An expression that names a store: `store`, `self.store`, `app.extensions["termsync.store"]`.
STORE_EXPRESSION = re.compile(r"store'?\]?$")


def module_name(path: Path) -> str:
    """`app/api/common.py` -> `app.api.common`; `app/api/__init__.py` -> `app.api`."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: str) -> dict[str, Path]:
    """Every module of a top-level package, by its dotted name."""
    return {module_name(path): path for path in sorted((ROOT / package).rglob("*.py"))}


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (never imported at run time)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for branch in node.orelse:
                yield from ast.walk(branch)
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules a module imports, absolute; `from pkg import sub` names `pkg.sub` when `sub`
    is a module, so a package is not blamed for what its submodules import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                found.add(submodule if submodule in known else origin)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    found = modules(package)
    known = set(found)
    return {name: {imported for imported in imports_of(name, path, known) if imported in known}
            for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions_and_relative_ones() -> None:
    graph = import_graph("app")
    assert "app.api" in graph["app"]  # create_app imports the features inside the function
    assert "app.domain.errors" in graph["app.api.common"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_app() -> None:
    assert cycles(import_graph("app")) == []


def test_sync_imports_nothing_from_app() -> None:
    known = set(modules("app"))
    offenders = {name: sorted(m for m in imports_of(name, path, known)
                              if m == "app" or m.startswith("app."))
                 for name, path in modules("sync").items()}
    assert len(offenders) > 10
    assert {name: found for name, found in offenders.items() if found} == {}


def outside_the_store() -> dict[str, Path]:
    """The modules of `app/` above the storage boundary."""
    return {name: path for name, path in modules("app").items()
            if not (name == "app.store" or name.startswith("app.store."))}


def test_only_the_store_imports_a_database_driver() -> None:
    known = set(modules("app"))
    checked = outside_the_store()
    offenders = {}
    for name, path in checked.items():
        drivers = sorted(m for m in imports_of(name, path, known) if m.split(".")[0] in DRIVERS)
        if drivers:
            offenders[name] = drivers
    assert len(checked) > 50 and "app.exports.storage" in checked
    assert offenders == {}


def test_mongomock_is_imported_by_the_mongodb_store_alone_and_lazily() -> None:
    known = set(modules("app"))
    importers = sorted(name for name, path in modules("app").items()
                       if "mongomock" in imports_of(name, path, known))
    assert importers == ["app.store.mongo"]
    tree = ast.parse((ROOT / "app" / "store" / "mongo" / "__init__.py").read_text())
    top_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert not any("mongomock" in ast.unparse(node) for node in top_level)


def test_nothing_outside_the_store_reads_its_database_handle() -> None:
    offenders = {}
    for name, path in outside_the_store().items():
        found = sorted({ast.unparse(node) for node in ast.walk(ast.parse(path.read_text()))
                        if isinstance(node, ast.Attribute) and node.attr in ("db", "client")
                        and STORE_EXPRESSION.search(ast.unparse(node.value))})
        if found:
            offenders[name] = found
    assert STORE_EXPRESSION.search("app.extensions['termsync.store']")
    assert offenders == {}


def test_nothing_outside_the_store_builds_a_mongodb_query() -> None:
    offenders = {}
    for name, path in outside_the_store().items():
        operators = sorted({node.value for node in ast.walk(ast.parse(path.read_text()))
                            if isinstance(node, ast.Constant) and isinstance(node.value, str)
                            and MONGO_OPERATOR.match(node.value)})
        if operators:
            offenders[name] = operators
    assert MONGO_OPERATOR.match("$set") and not MONGO_OPERATOR.match("$ref")
    assert offenders == {}


# The owner of every repository of a Store: the domain (content and accounts, read and written
# through its rights) or the one feature whose data it holds. `app` is `create_app`, which hands
# each feature the repositories it owns.
OWNERS = {
    "app.domain": {"users", "orgs", "sources", "versions", "items", "references",
                   "collection_entries"},
    "app.jobs": {"jobs"},
    "app.exports": {"exports"},
    "app.imports": {"import_results", "import_keys"},
    "app.ops": {"leases", "heartbeats", "rate_counters"},
    "app.console": {"console_sessions"},
    "app.webhooks": {"webhooks", "webhook_deliveries"},
}


def repository_reaches(source: str, repositories: set[str]) -> set[str]:
    """The `<a store>.<repository>` expressions of a module's code."""
    return {ast.unparse(node) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and node.attr in repositories
            and STORE_EXPRESSION.search(ast.unparse(node.value))}


def test_every_repository_has_one_owner() -> None:
    from app.store.interfaces import Store

    owned = [name for names in OWNERS.values() for name in names]
    assert sorted(owned) == sorted(set(owned))
    assert set(owned) == set(Store.__annotations__)


def test_a_feature_reaches_only_the_repositories_it_owns() -> None:
    repositories = {name for names in OWNERS.values() for name in names}
    offenders = {}
    for name, path in outside_the_store().items():
        allowed = set().union(*(names for owner, names in OWNERS.items()
                                if name == owner or name.startswith(owner + ".")))
        if name == "app":
            allowed = repositories
        found = sorted(reach for reach in repository_reaches(path.read_text(), repositories)
                       if reach.rsplit(".", 1)[1] not in allowed)
        if found:
            offenders[name] = found
    assert repository_reaches("x = self.domain.content.store.jobs.get(1)", repositories) == {
        "self.domain.content.store.jobs"}
    assert repository_reaches("store = app.extensions['termsync.store']; store.exports",
                              repositories) == {"store.exports"}
    assert offenders == {}


def test_nothing_reads_repos_or_a_domains_store() -> None:
    offenders = {}
    for name, path in modules("app").items():
        if name == "app.store" or name.startswith("app.store."):
            continue
        found = sorted({ast.unparse(node) for node in ast.walk(ast.parse(path.read_text()))
                        if isinstance(node, ast.Attribute) and (
                            node.attr == "repos" or (node.attr == "store" and re.search(
                                r"domain\)?$|\['termsync'\]$", ast.unparse(node.value))))})
        if found:
            offenders[name] = found
    assert offenders == {}


def test_the_model_stands_above_everything_else() -> None:
    """The model's words and records import nothing else of the app: storage, the domain and
    the features speak them, never the other way round."""
    graph = import_graph("app")
    model = {name for name in graph if name == "app.model" or name.startswith("app.model.")}
    outside = {name: sorted(m for m in graph[name] if m not in model) for name in model}
    assert model and {name: found for name, found in outside.items() if found} == {}
    assert "app.model" in graph["app.store.interfaces.content"]
