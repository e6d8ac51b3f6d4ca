"""Imports go one way between the web app and the worker's tasks: ``workers/`` imports ``webapp``; the web
app sends tasks by name and imports ``workers`` only to start a worker (``celery_app.load_worker_tasks``)."""

from __future__ import annotations

import ast
from pathlib import Path

WEBAPP = Path(__file__).resolve().parents[2] / "webapp"


def _imported_modules(tree: ast.AST) -> list[tuple[str, str]]:
    """``(module, enclosing function or "")`` for every import statement in ``tree``."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module, function))
            visit(child, function)

    visit(tree, "")
    return found


def test_the_web_app_imports_workers_only_to_start_a_worker():
    imports = {
        path.relative_to(WEBAPP.parent).as_posix(): _imported_modules(ast.parse(path.read_text(), str(path)))
        for path in sorted(WEBAPP.rglob("*.py"))
    }
    assert "webapp/runs/services/lifecycle.py" in imports  # the scan sees the modules that enqueue
    of_workers = sorted(
        (path, module, function)
        for path, found in imports.items()
        for module, function in found
        if module == "workers" or module.startswith("workers.")
    )
    assert of_workers == [("webapp/celery_app.py", "workers.tasks", "load_worker_tasks")]
