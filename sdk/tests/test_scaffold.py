"""`vendo-sdk new`: names, files, and bad input that writes nothing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from vendo_sdk.scaffold import KINDS, ScaffoldError, names_for, new_plugin


def sdk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vendo_sdk.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(
    ("name", "kind", "dist", "plugin", "module"),
    [
        ("weather", "tool", "vendo-tool-weather", "tool-weather", "vendo_tool_weather"),
        ("acme-weather", "tool", "vendo-tool-acme-weather", "tool-acme-weather", "vendo_tool_acme_weather"),
        ("vendo-billing-paddle", "billing", "vendo-billing-paddle", "billing-paddle", "vendo_billing_paddle"),
        ("vendo-vector-lance", "vector_store", "vendo-vector-lance", "vector-lance", "vendo_vector_lance"),
        ("sqlite", "counters", "vendo-counters-sqlite", "counters-sqlite", "vendo_counters_sqlite"),
        ("audit-log", "generic", "vendo-audit-log", "audit-log", "vendo_audit_log"),
    ],
)
def test_names(name, kind, dist, plugin, module) -> None:
    names = names_for(name, kind)
    assert (names.dist, names.plugin, names.module) == (dist, plugin, module)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_writes_a_complete_package(tmp_path: Path, kind: str) -> None:
    names, target = new_plugin("demo", kind, tmp_path / "pkg")
    project = tomllib.loads((target / "pyproject.toml").read_text())["project"]
    assert project["name"] == names.dist and project["description"] and project["license"]
    assert project["entry-points"]["vendo.plugins"] == {names.plugin: names.module}
    assert "vendo>=0.1,<0.2" in project["dependencies"]
    assert tomllib.loads((target / "pyproject.toml").read_text())["tool"]["vendo"]["capabilities"] == [KINDS[kind]]
    source = (target / "src" / names.module / "__init__.py").read_text()
    assert 'vendo_api = ">=1.0,<2"' in source
    compile(source, "plugin", "exec")
    compile((target / "tests" / f"test_demo.py").read_text(), "test", "exec")
    readme = (target / "README.md").read_text()
    assert names.dist in readme and "__" not in readme.replace("__init__", "")
    assert "__NAME__" not in source and "__CLASS__" not in source


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("new", "Bad_Name", "--kind", "tool"), "invalid plugin name 'Bad_Name'"),
        (("new", "9lives", "--kind", "tool"), "invalid plugin name '9lives'"),
        (("new", "weather", "--kind", "payments"), "unknown kind 'payments': choose one of auth, billing"),
        (("new", "weather"), "Missing option '--kind'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args, message) -> None:
    result = sdk(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_non_empty_directory_is_refused_untouched(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    result = sdk("new", "weather", "--kind", "tool", "--dir", str(target), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{target} already exists and is not empty" in result.stderr
    assert [p.name for p in target.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    with pytest.raises(ScaffoldError):
        new_plugin("weather", "tool", target)


def test_empty_directory_is_used(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    result = sdk("new", "weather", "--kind", "tool", "--dir", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (target / "pyproject.toml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_hooks_command_prints_the_reference(tmp_path: Path) -> None:
    from vendo.hookdocs import render_markdown

    result = sdk("hooks", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == render_markdown()
    assert "vendo_register_tools(register, kernel, settings)" in result.stdout
