"""``stageconfigctl`` and the web page are built on the client's public names only, so
the client's private modules can change without breaking them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.admin.conftest import REPO

ADMIN_TOOLS = [
    *sorted((REPO / "clients" / "python" / "stageconfig" / "ctl").glob("*.py")),
    *sorted((REPO / "clients" / "web" / "stageconfig_web").glob("*.py")),
]


def _imported_modules(path: Path) -> list[str]:
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
    return modules


@pytest.mark.parametrize("path", ADMIN_TOOLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_admin_tools_import_no_private_module(path: Path) -> None:
    ours = [m for m in _imported_modules(path) if m.split(".")[0].startswith("stageconfig")]
    private = [m for m in ours if any(part.startswith("_") for part in m.split("."))]
    generated = [m for m in ours if m.startswith("stageconfig_contract.v1")]
    assert private + generated == [], f"{path.name} must use public names only"


def test_every_admin_tool_module_is_checked() -> None:
    names = {p.name for p in ADMIN_TOOLS}
    assert {"__init__.py", "commands.py", "app.py", "forms.py"} <= names
