"""The package table: which part of ``authserver`` may import which. Imports only go down; the sandbox
stands apart. Every import counts (also those inside functions and under ``TYPE_CHECKING``).

    entry     cli, __main__, app  -> anything below (cli loads the sandbox lazily)
    process   server              -> http, config, infra, core, errors
    http      http                -> wiring, config, identity, revocation, infra, storage, core, errors
    root      wiring              -> config, identity, revocation, infra, storage, core, errors
    settings  config              -> core, errors
    adapters  identity            -> revocation, infra, storage, core, errors
              revocation          -> infra, storage, core, errors
              infra               -> core, errors
              storage             -> errors
    domain    core                -> errors (no framework, driver or network client; no environment)
    leaf      errors              -> nothing of ours
    side      sandbox             -> core, errors and the shared HTTP helpers
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "authserver"

ADAPTERS = {"identity", "revocation", "infra", "storage"}
#: part -> the parts it may import (a part is a top-level module or package of ``authserver``).
TABLE: dict[str, set[str]] = {
    "__init__": set(),
    "errors": set(),
    "core": {"errors"},
    "storage": {"errors"},
    "infra": {"core", "errors"},
    "revocation": {"infra", "storage", "core", "errors"},
    "identity": {"revocation", "infra", "storage", "core", "errors"},
    "config": {"core", "errors"},
    "wiring": {"config", *ADAPTERS, "core", "errors"},
    "http": {"wiring", "config", *ADAPTERS, "core", "errors"},
    "server": {"http", "config", "infra", "core", "errors"},
    "cli": {"server", "http", "wiring", "config", *ADAPTERS, "core", "errors", "sandbox", "__init__"},
    "app": {"http"},
    "__main__": {"cli"},
    "sandbox": {"core", "errors", "http"},
}
#: The HTTP helpers the sandbox shares with the service (nothing else of ``http`` is open to it).
SHARED_HTTP = {"authserver.http.middleware", "authserver.http.responses", "authserver.http.bodies"}
#: Declared exceptions to the table: none.
EXCEPTIONS: set[tuple[str, str]] = set()

FORBIDDEN_IN_CORE = (
    "starlette",
    "uvicorn",
    "httpx",
    "redis",
    "psycopg",
    "psycopg_pool",
    "limits",
    "coredis",
    "sqlite3",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(module: str) -> Iterator[str]:
    """The modules of ours that ``module`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "authserver")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "authserver":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in MODULES else base


def graph() -> dict[str, set[str]]:
    return {m: {i for i in imports_of(m) if i != m} for m in MODULES}


def test_every_part_of_the_package_is_in_the_table() -> None:
    assert {part_of(m) for m in MODULES} <= set(TABLE)


def test_imports_follow_the_package_table() -> None:
    breaches = []
    for module, imported in graph().items():
        mine = part_of(module)
        for target in imported:
            theirs = part_of(target)
            if theirs == mine or (module, target) in EXCEPTIONS:
                continue
            allowed = theirs in TABLE[mine]
            if mine == "sandbox" and theirs == "http":
                allowed = target in SHARED_HTTP
            if not allowed:
                breaches.append(f"{module} -> {target}")
    assert not breaches, "imports against the package table:\n" + "\n".join(sorted(breaches))


def test_the_table_itself_has_no_cycle() -> None:
    assert not cycles({part: deps - {part} for part, deps in TABLE.items()})


def test_no_module_import_cycles() -> None:
    # a package's __init__ importing its own submodules is how packages re-export: not a cycle of code
    edges = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")} for m, ts in graph().items()}
    assert not cycles(edges), cycles(edges)


def test_no_package_import_cycles() -> None:
    packages: dict[str, set[str]] = {}
    for module, imported in graph().items():
        here = module.rpartition(".")[0] if MODULES[module].name != "__init__.py" else module
        for target in imported:
            there = target if MODULES[target].name == "__init__.py" else target.rpartition(".")[0]
            if not (here.startswith(there) or there.startswith(here)):
                packages.setdefault(here, set()).add(there)
    assert not cycles(packages), cycles(packages)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


CORE = sorted(m for m in MODULES if part_of(m) == "core")


@pytest.mark.parametrize("module", CORE)
def test_the_pure_core_imports_no_framework_server_driver_or_network_client(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module)
    forbidden = {name for name in imported if name.split(".")[0] in FORBIDDEN_IN_CORE}
    assert not forbidden, f"{module} imports {sorted(forbidden)}"


@pytest.mark.parametrize("module", CORE)
def test_the_pure_core_reads_no_environment(module: str) -> None:
    assert not reads_environment(ast.parse(MODULES[module].read_text(encoding="utf-8"))), module


def reads_environment(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in ("environ", "getenv") for a in node.names)
        ):
            return True
    return False


#: Who reads the process environment besides config, and why.
ENVIRONMENT_READERS = {
    # PROMETHEUS_MULTIPROC_DIR is prometheus-client's own setting: `serve` exports it for the workers it starts
    "authserver.infra.metrics",
}


def test_only_config_reads_the_environment() -> None:
    readers = {m for m in MODULES if reads_environment(ast.parse(MODULES[m].read_text(encoding="utf-8")))}
    assert readers == {"authserver.config"} | ENVIRONMENT_READERS


def test_all_sql_lives_in_storage() -> None:
    for module, path in MODULES.items():
        if part_of(module) == "storage":
            continue
        text = path.read_text(encoding="utf-8").upper()
        for statement in ("SELECT ", "INSERT INTO", "DELETE FROM", "UPDATE USERS", "CREATE TABLE"):
            assert statement not in text, f"{module} has SQL ({statement.strip()})"


#: The longest a function may be (its ``def`` line to its last); data tables are module constants, not functions.
MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {length} lines")
    assert not long, long
