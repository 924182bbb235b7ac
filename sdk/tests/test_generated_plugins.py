"""Every kind `vendo-sdk new` offers is generated, installed and tested, as a plugin author would.

Proof for CI that the scaffold stays true: a fresh environment with the kernel and the SDK,
one package per kind, each installed and passing its own tests (its family's contract suite),
all of them listed `ok` by the kernel, and each passing `vendo-sdk check`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vendo_sdk.scaffold import KINDS, names_for


@pytest.fixture(scope="module")
def generated(venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("plugins")
    for kind in KINDS:
        venv.run(f"vendo-sdk new demo --kind {kind}", cwd=workdir)
    venv.uv_install(*[arg for kind in KINDS for arg in ("-e", str(workdir / names_for("demo", kind).dist))])
    return workdir


@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_plugin_passes_its_own_tests(venv, generated: Path, kind: str) -> None:
    package = generated / names_for("demo", kind).dist
    result = venv.run("python -m pytest -q -p no:cacheprovider", cwd=package)
    assert " passed" in result.stdout and "failed" not in result.stdout


@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_plugin_passes_the_checker(venv, generated: Path, kind: str) -> None:
    package = generated / names_for("demo", kind).dist
    result = venv.run(f"vendo-sdk check {package}", cwd=generated)
    assert result.stdout.startswith(f"ok: {names_for('demo', kind).dist} 0.1.0")


def test_kernel_lists_every_generated_plugin(venv, generated: Path) -> None:
    listed = {p["name"]: p for p in json.loads(venv.run("vendo plugins list --json", cwd=generated).stdout)}
    for kind in KINDS:
        names = names_for("demo", kind)
        assert listed[names.plugin]["status"] == "ok", listed[names.plugin]
        assert listed[names.plugin]["distribution"] == names.dist


def test_installed_entry_point_passes_the_contract(venv, generated: Path) -> None:
    """`plugin = None` makes a suite load the installed entry point, as a published plugin's CI does."""
    package = generated / names_for("demo", "tool").dist
    (package / "tests" / "test_installed.py").write_text(
        "from vendo_sdk.contracts import ToolContract\n\n"
        "class TestInstalled(ToolContract):\n"
        "    plugin = None\n"
        "    plugin_name = 'tool-demo'\n"
        "    provider_name = 'demo'\n"
        "    sample_arguments = {'text': 'a b'}\n"
    )
    result = venv.run("python -m pytest -q -p no:cacheprovider tests/test_installed.py", cwd=package)
    assert " passed" in result.stdout
