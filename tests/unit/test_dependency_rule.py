"""The layout rule of DESIGN.md section 2: fastapi_app -> strangler_bridge <- flask_plugin."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICE_LIBS = {"fastapi", "starlette", "rq", "redis", "uvicorn"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _violations(package: str, forbidden: set[str], allowed_in: dict[str, set[str]] | None = None) -> list[str]:
    """Imports of ``forbidden`` top-level names under ``package``; ``allowed_in`` lifts some for a sub-package."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        lifted = {name for prefix, names in (allowed_in or {}).items() if module.startswith(prefix) for name in names}
        for name in _imports(path):
            if name.split(".")[0] in forbidden - lifted:
                found.append(f"{module} imports {name}")
    return found


def test_core_imports_neither_half_anywhere() -> None:
    assert _violations("strangler_bridge", {"fastapi_app", "flask_plugin"}) == []


def test_core_imports_no_framework_but_in_its_composition_parts() -> None:
    # The CLI and the simulators compose processes and serve HTTP themselves; the rest of the core is plain Python.
    composition = {f"strangler_bridge.{part}": SERVICE_LIBS | {"flask"} for part in ("cli", "simulators")}
    assert _violations("strangler_bridge", SERVICE_LIBS | {"flask"}, allowed_in=composition) == []


def test_flask_half_imports_no_service_library_and_not_the_service() -> None:
    assert _violations("flask_plugin", SERVICE_LIBS | {"fastapi_app"}) == []


def test_service_never_imports_the_flask_half() -> None:
    assert _violations("fastapi_app", {"flask", "flask_plugin"}) == []


def test_importing_the_flask_half_loads_no_service_library() -> None:
    code = (
        "import sys, flask_plugin, strangler_bridge.contracts, strangler_bridge.flags;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(SERVICE_LIBS)!r});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
