"""The "Migrating your Flask app" text shows only code that runs: every block is copied from the example app."""

from __future__ import annotations

import ast
import builtins
import re
import symtable
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "legacy_app"
HEADING = "Migrating your Flask app"
#: (document, section heading or None for the whole file)
DOCS = [(ROOT / "docs" / "MIGRATING.md", None), (ROOT / "README.md", HEADING)]

_FENCE = re.compile(r"^```(?P<lang>[^\n]*)\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^(?P<level>#+)\s+(?P<title>.+?)\s*$", re.MULTILINE)


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block."""
    return [(m["lang"].strip(), m["code"]) for m in _FENCE.finditer(markdown)]


def section(markdown: str, title: str) -> str | None:
    """The text under the heading ``title``, up to the next heading of the same or a higher level."""
    headings = list(_HEADING.finditer(markdown))
    for position, match in enumerate(headings):
        if match["title"] == title:
            level = len(match["level"])
            end = next((h.start() for h in headings[position + 1 :] if len(h["level"]) <= level), len(markdown))
            return markdown[match.end() : end]
    return None


@pytest.mark.parametrize(("doc", "heading"), DOCS, ids=lambda value: getattr(value, "name", value))
def test_every_code_block_is_copied_verbatim_from_the_example_app(doc: Path, heading: str | None) -> None:
    text = doc.read_text()
    if heading is not None:
        found = section(text, heading)
        if found is None:
            pytest.skip(f"{doc.name} has no '{heading}' section yet")
        text = found
    blocks = code_blocks(text)
    assert blocks, f"{doc.name}: no code blocks found"
    python = [p.read_text() for p in EXAMPLE.rglob("*.py")]
    every = python + [p.read_text() for p in EXAMPLE.rglob("*.md")]
    missing = [
        code for lang, code in blocks if not any(code in source for source in (python if lang == "python" else every))
    ]
    assert missing == [], f"{doc.name}: blocks not found verbatim in {EXAMPLE.relative_to(ROOT)}"


def test_the_section_finder_stops_at_the_next_heading_of_its_level() -> None:
    text = "# A\n## Migrating your Flask app\nx\n### sub\ny\n## Next\nz\n"
    assert section(text, HEADING) == "\nx\n### sub\ny\n"


def _sections(markdown: str) -> list[tuple[str, str]]:
    """``(title, text)`` of every heading's own text (up to the next heading of any level)."""
    headings = list(_HEADING.finditer(markdown))
    ends = [h.start() for h in headings[1:]] + [len(markdown)]
    return [(h["title"], markdown[h.end() : end]) for h, end in zip(headings, ends, strict=True)]


def _defined_in_example() -> set[str]:
    """Names the example app's modules define themselves (functions, classes, assignments), not imports."""
    names: set[str] = set()
    for path in EXAMPLE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _free_names(code: str) -> set[str]:
    """Globals the code reads that it neither imports nor defines."""
    free: set[str] = set()
    tables = [symtable.symtable(code, "<doc>", "exec")]
    top = tables[0]
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        for sym in table.get_symbols():
            if not sym.is_referenced():
                continue
            if table is top:
                if not (sym.is_assigned() or sym.is_imported()):
                    free.add(sym.get_name())
            elif sym.is_global():
                free.add(sym.get_name())
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    return free - bound - set(dir(builtins))


@pytest.mark.parametrize(("doc", "heading"), DOCS, ids=lambda value: getattr(value, "name", value))
def test_every_block_imports_what_it_uses_and_the_imports_work(doc: Path, heading: str | None) -> None:
    """A reader can copy each section's blocks: every name comes from an import shown there, and imports."""
    text = doc.read_text()
    if heading is not None:
        text = section(text, heading) or ""
    own = _defined_in_example()
    checked = 0
    for title, body in _sections(text):
        code = "\n".join(block for lang, block in code_blocks(body) if lang == "python")
        if not code:
            continue
        tree = ast.parse(code)
        unexplained = _free_names(code) - own
        assert unexplained == set(), f"{doc.name} '{title}': used without an import: {sorted(unexplained)}"
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module = ast.Module(body=[node], type_ignores=[])
                exec(
                    compile(module, "<doc>", "exec"),
                    {"__name__": "examples.legacy_app.doc", "__package__": "examples.legacy_app"},
                )
        checked += 1
    assert checked >= 6


def test_the_flask_half_exports_the_options_its_adapters_take() -> None:
    import flask_plugin
    from strangler_bridge.contracts.jobs import ImageOptions, VideoOptions

    assert flask_plugin.ImageOptions is ImageOptions
    assert flask_plugin.VideoOptions is VideoOptions
