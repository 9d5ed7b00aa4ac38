"""The core does no I/O: it imports no socket, asyncio, database or clock module."""

from __future__ import annotations

import ast
from pathlib import Path

import syncline.core

FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "threading",
    "multiprocessing",
    "subprocess",
    "time",
    "psycopg",
    "psycopg_pool",
    "redis",
    "picows",
    "websockets",
    "uvicorn",
    "fastapi",
    "starlette",
    "httpx",
    "sqlalchemy",
    "alembic",
    "os",
}
CORE = Path(next(iter(syncline.core.__path__)))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_import_nothing_that_does_io() -> None:
    modules = sorted(CORE.rglob("*.py"))
    assert modules, "the core has modules"
    offenders = {str(p.relative_to(CORE)): sorted(_imports(p) & FORBIDDEN) for p in modules}
    assert {name: bad for name, bad in offenders.items() if bad} == {}
