"""The core knows no transport: every module of ``stageconfig_server`` outside ``rpc/``
(and the composition roots ``app.py`` and ``__main__.py``) imports neither ``grpc`` nor
the generated ``stageconfig_contract.v1`` messages.

The check runs in a fresh interpreter (a subprocess: nothing the test session loaded
can hide an import). It imports the core modules one after another and looks at
``sys.modules`` after each; it stops at the first module that loads a forbidden one.
While no forbidden module is loaded, importing the next module loads one exactly when a
fresh interpreter importing that module alone would, so one interpreter answers for
every module at the price of one (a subprocess per module costs a minute: the provider
SDKs and SQLAlchemy are slow to import). An allow-listed module, which does load the
transport, gets an interpreter of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import stageconfig_server

PACKAGE_DIR = Path(stageconfig_server.__file__).parent

COMPOSITION_ROOTS = {"stageconfig_server.app", "stageconfig_server.__main__"}
"""They assemble the core with the transport, so they import both."""

NOT_IMPORTABLE = {"stageconfig_server.db.migrations.env"}
"""Alembic's env script runs only inside an alembic migration context."""

ALLOWED = {
    # The offline commands (import-env, rotate-keys) open storage with
    # ``app.open_storage``, and app.py is the composition root: the transport comes
    # with it. Moving open_storage into a core module removes this entry.
    "stageconfig_server.maintenance": "reuses app.open_storage",
}
"""Core modules that still reach the transport, each with the reason."""


def _core_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        in_rpc = name == "stageconfig_server.rpc" or name.startswith("stageconfig_server.rpc.")
        if in_rpc or name in COMPOSITION_ROOTS | NOT_IMPORTABLE:
            continue
        names.append(name)
    return names


CORE_MODULES = _core_modules()

_PROBE = """
import importlib, json, sys

def forbidden():
    return sorted(
        n for n in sys.modules
        if n.split(".")[0].startswith("grpc")
        or n == "stageconfig_contract.v1" or n.startswith("stageconfig_contract.v1.")
    )

found = {}
for module in sys.argv[1:]:
    importlib.import_module(module)
    found[module] = forbidden()
    if found[module]:
        break  # later results would be tainted by this module's imports
print(json.dumps(found))
"""


def _probe(modules: list[str]) -> dict[str, list[str]]:
    """module → the forbidden modules loaded once it was imported (see the docstring)."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, list[str]] = json.loads(result.stdout)
    return found


def test_the_core_is_found() -> None:
    assert {
        "stageconfig_server.broadcast",
        "stageconfig_server.health",
        "stageconfig_server.metrics",
        "stageconfig_server.service",
        "stageconfig_server.providers.base",
    } <= set(CORE_MODULES)
    assert not any(m.startswith("stageconfig_server.rpc") for m in CORE_MODULES)


def test_the_core_imports_no_transport() -> None:
    found = _probe([m for m in CORE_MODULES if m not in ALLOWED])
    culprits = {m: loaded[:5] for m, loaded in found.items() if loaded}
    assert culprits == {}


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_the_allow_list_is_still_needed(module: str) -> None:
    found = _probe([module])
    assert found[module], f"{module} no longer loads the transport: drop it from ALLOWED"


def test_the_probe_sees_the_transport() -> None:
    # The check must be able to fail: the transport itself is caught.
    found = _probe(["stageconfig_server.errors", "stageconfig_server.rpc.status"])
    assert found["stageconfig_server.errors"] == []
    assert "grpc" in found["stageconfig_server.rpc.status"]
