"""The hook reference (docs/hooks.md) stays in step with vendo.hookspecs, every hookspec
is documented, and every hook is implemented by at least one test plugin."""

from __future__ import annotations

import difflib
import inspect
import re
from pathlib import Path

from vendo import hookspecs
from vendo.hookdocs import REGENERATE_COMMAND, hook_signatures, render_markdown
from vendo.plugins import new_plugin_manager

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "hooks.md"
TEST_DIRS = [ROOT / "core" / "tests", ROOT / "tests"]
THIS_FILE = Path(__file__).resolve()


def _specs() -> dict[str, object]:
    """Every ``vendo_*`` function of vendo.hookspecs."""
    return {
        name: obj
        for name, obj in vars(hookspecs).items()
        if name.startswith("vendo_") and inspect.isfunction(obj) and obj.__module__ == hookspecs.__name__
    }


def _pluggy_signatures() -> dict[str, str]:
    """Hook signatures as pluggy sees them once the specs are added to a manager."""
    pm = new_plugin_manager()
    signatures = {}
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        spec = getattr(caller, "spec", None)
        if name.startswith("vendo_") and spec is not None:
            signatures[name] = f"{name}({', '.join(spec.argnames)})"
    return signatures


def test_docs_match_the_hookspecs() -> None:
    expected = render_markdown()
    how = f"docs/hooks.md is out of date with vendo.hookspecs: regenerate it with `{REGENERATE_COMMAND}`"
    assert DOCS.exists(), f"{DOCS} is missing: generate it with `{REGENERATE_COMMAND}`"
    actual = DOCS.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    actual.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "docs/hooks.md",
                    "render_markdown()",
                )
            )[:60]
        )
        raise AssertionError(f"{how}\n{diff}")


def test_every_hook_signature_is_in_the_docs() -> None:
    signatures = _pluggy_signatures()
    assert set(signatures) == set(_specs()), "pluggy's specs and the vendo_* functions of hookspecs differ"
    assert hook_signatures() == signatures
    text = DOCS.read_text(encoding="utf-8")
    missing = [signature for signature in signatures.values() if signature not in text]
    assert not missing, f"signatures missing from docs/hooks.md (run `{REGENERATE_COMMAND}`): {missing}"


def test_every_hookspec_documents_its_parameters() -> None:
    problems = []
    for name, spec in _specs().items():
        doc = inspect.getdoc(spec) or ""
        if not doc.strip():
            problems.append(f"{name}: no docstring")
            continue
        documented = re.findall(r"^\s*:param\s+(?:[^:\s]+\s+)?(\w+):", doc, flags=re.MULTILINE)
        params = list(inspect.signature(spec).parameters)
        for param in params:
            if param not in documented:
                problems.append(f"{name}: no ':param {param}:' line")
        for param in documented:
            if param not in params:
                problems.append(f"{name}: ':param {param}:' documents a parameter the hook does not have")
    assert not problems, "hookspec docstrings incomplete:\n" + "\n".join(problems)


def test_every_hook_is_implemented_by_a_test() -> None:
    sources = [
        path.read_text(encoding="utf-8", errors="replace")
        for directory in TEST_DIRS
        if directory.is_dir()
        for path in sorted(directory.rglob("*.py"))
        if path.resolve() != THIS_FILE and "__pycache__" not in path.parts
    ]
    untested = [
        name
        for name in _specs()
        if not any(re.search(rf"^\s*(?:async\s+)?def\s+{name}\s*\(", text, flags=re.MULTILINE) for text in sources)
    ]
    assert not untested, (
        "hooks no test implements (add a test plugin with `def <hook>(` under core/tests/ or tests/): "
        + ", ".join(untested)
    )
