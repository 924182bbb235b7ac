"""Plugins stay plugins: the code of every first-party plugin imports the kernel only through
``vendo`` (its public surface), never a kernel module (``vendo.billing.machine``...), and
never another plugin's package. Migrations, which describe tables with the kernel's column
types, may import ``vendo.db``."""

from __future__ import annotations

import ast
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_plugin_code_imports_only_the_kernels_public_api_and_its_own_package() -> None:
    packages = {src.name for plugin in PLUGINS.iterdir() for src in (plugin / "src").glob("vendo_*")}
    assert len(packages) >= 9
    problems = []
    for plugin in sorted(PLUGINS.iterdir()):
        for source in sorted((plugin / "src").rglob("*.py")):
            own = source.relative_to(plugin / "src").parts[0]
            migration = "migrations" in source.parts
            for line, module in _imports(source):
                top = module.split(".")[0]
                where = f"{source.relative_to(PLUGINS)}:{line}: {module}"
                if top == "vendo" and module != "vendo" and not (migration and module == "vendo.db"):
                    problems.append(f"{where} (a kernel module: import from `vendo`)")
                elif top in packages and top != own and top != "vendo_sdk":
                    problems.append(f"{where} (another plugin's package)")
    assert problems == []
