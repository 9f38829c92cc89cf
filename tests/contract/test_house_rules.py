"""The house rules the code keeps: rooms a newcomer can read in one sitting.

Every hand-written module of the server, the Python client and the web page opens with
a docstring saying what it owns, stays under about 400 lines, and holds no class over
about 300 (generated stubs and migrations aside).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = (
    REPO / "server" / "stageconfig_server",
    REPO / "clients" / "python" / "stageconfig",
    REPO / "clients" / "python" / "stageconfig_contract",
    REPO / "clients" / "web" / "stageconfig_web",
)
MAX_MODULE_LINES = 420
MAX_CLASS_LINES = 320


def _modules() -> list[Path]:
    found = []
    for root in ROOTS:
        for path in sorted(root.rglob("*.py")):
            parts = set(path.relative_to(REPO).parts)
            if "v1" in parts or "migrations" in parts:
                continue  # generated stubs, Alembic revisions
            found.append(path)
    return found


def _offences(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    where = path.relative_to(REPO)
    found = []
    if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
        found.append(f"{where}: {lines} lines (split it by reason to change)")
    if text.strip() and not ast.get_docstring(tree):
        found.append(f"{where}: no docstring saying what the module owns")
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > MAX_CLASS_LINES:
                found.append(f"{where}: class {node.name} has {size} lines")
    return found


def test_every_module_is_a_room() -> None:
    modules = _modules()
    assert len(modules) > 60, "the rule must see the code"
    offences = [o for path in modules for o in _offences(path)]
    assert offences == []
