"""The layering the layout does not show: the pure core imports no web framework, server, network
client or database driver, and reads no environment. (Modules stay where they are for now; see the
README's layout note.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "authserver"
CORE = [f"core/{p.name}" for p in sorted((PACKAGE / "core").glob("*.py"))]
FORBIDDEN = ("starlette", "uvicorn", "httpx", "redis", "psycopg", "psycopg_pool", "limits", "coredis", "sqlite3")


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


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


@pytest.mark.parametrize("module", CORE)
def test_the_pure_core_imports_no_framework_server_driver_or_network_client(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    forbidden = {name for name in imported_modules(tree) if name.split(".")[0] in FORBIDDEN}
    assert not forbidden, f"{module} imports {sorted(forbidden)}"


@pytest.mark.parametrize("module", CORE)
def test_the_pure_core_reads_no_environment(module: str) -> None:
    assert not reads_environment(ast.parse((PACKAGE / module).read_text(encoding="utf-8"))), module


def test_the_identity_package_holds_no_sql() -> None:
    for path in sorted((PACKAGE / "identity").glob("*.py")):
        text = path.read_text(encoding="utf-8").upper()
        for statement in ("SELECT ", "INSERT INTO", "DELETE FROM", "UPDATE USERS", "CREATE TABLE"):
            assert statement not in text, f"{path.name} has SQL ({statement.strip()})"
