"""The hexagon's dependency rules, enforced so they cannot drift."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "clinvk"

DOMAIN_ALLOWED = {"msgspec", "anyio", "clinvk.domain", "clinvk.ports"}


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _third_party(name: str) -> bool:
    top = name.split(".")[0]
    return top not in sys.stdlib_module_names and top != "__future__"


def test_import_linter_contracts_hold():
    """import-linter's contracts in pyproject.toml (pure domain and ports, no entrypoint imports,
    HTTP never importing subprocess adapters) are all kept."""
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint), "--no-cache"], cwd=SRC.parents[1], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_domain_and_ports_use_only_stdlib_msgspec_anyio():
    """Domain and port modules import nothing but the stdlib, msgspec, anyio and each other."""
    offenders = []
    for ring in ("domain", "ports"):
        for path in (SRC / ring).rglob("*.py"):
            for name in _imports(path):
                if name == "subprocess" or (
                    _third_party(name)
                    and not any(name == a or name.startswith(a + ".") for a in DOMAIN_ALLOWED)
                ):
                    offenders.append(f"{path.relative_to(SRC)}: {name}")
    assert offenders == []
