"""README's "Layout" picture matches the tree, and the service's store stays the floor of its rooms."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("strangler_bridge", "fastapi_app", "flask_plugin")
#: An entry line: up to 34 columns of indentation and names, two or more spaces, the description.
ENTRY = re.compile(r"^(?P<indent> *)(?P<names>[\w./]+(?: [\w./]+)*)(?:  +\S.*)?$")


def _picture() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Layout") :]
    return section.split("```")[1]


def layout_paths() -> set[str]:
    """Every path the picture names: a name is relative to the nearest less indented folder above it."""
    paths: set[str] = set()
    parents: list[tuple[int, str]] = []
    for line in _picture().strip("\n").splitlines():
        match = ENTRY.match(line)
        if not match or len(match["indent"]) > 20 or not all(n.endswith(("/", ".py")) for n in match["names"].split()):
            continue  # a description carried over to the next line
        indent = len(match["indent"])
        while parents and parents[-1][0] >= indent:
            parents.pop()
        base = parents[-1][1] if parents else ""
        names = match["names"].split()
        for name in names:
            paths.add(base + name)
        if len(names) == 1 and names[0].endswith("/"):
            parents.append((indent, base + names[0]))
    return paths


def test_every_path_in_the_picture_exists() -> None:
    missing = sorted(p for p in layout_paths() if not (ROOT / p).exists())
    assert missing == []


def test_every_package_folder_is_in_the_picture() -> None:
    named = layout_paths()
    folders = {
        f"{init.parent.relative_to(ROOT).as_posix()}/"
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
    }
    assert sorted(folders - named) == []


def test_every_module_at_the_service_root_is_in_the_picture() -> None:
    modules = {f"fastapi_app/{p.name}" for p in (ROOT / "fastapi_app").glob("*.py") if p.name != "__init__.py"}
    assert sorted(modules - layout_paths()) == []


def test_the_store_imports_no_other_room_of_the_service() -> None:
    allowed = {"fastapi_app.store", "fastapi_app.logs", "fastapi_app.runtime"}  # runtime only for type hints
    found = []
    for path in sorted((ROOT / "fastapi_app" / "store").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fastapi_app"):
                modules = (
                    [node.module] if node.module != "fastapi_app" else [f"fastapi_app.{a.name}" for a in node.names]
                )
                found += [f"{path.name} imports {m}" for m in modules if not m.startswith(tuple(allowed))]
    assert found == []
