"""``vendo-sdk check``: each test writes a plugin package into ``tmp_path`` and checks it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vendo
from vendo_sdk.checker import CheckError, Report, check

PYPROJECT = """\
[project]
name = "vendo-tool-weather"
version = "0.1.0"
description = "Weather forecasts as a Vendo tool."
license = "Apache-2.0"
dependencies = ["vendo>=0.1,<0.2"]

[project.entry-points."vendo.plugins"]
tool-weather = "vendo_tool_weather"

[tool.vendo]
capabilities = ["tool"]
"""

INIT = '''\
"""Weather forecasts as a Vendo tool."""

from vendo import hookimpl

vendo_api = ">=1.0,<2"


class WeatherTool:
    name = "weather"
    description = "Today's weather in a city."
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}

    def run(self, arguments):
        return {"city": arguments["city"], "sky": "clear"}


@hookimpl
def vendo_register_tools(register, settings):
    register("weather", WeatherTool())
'''


def write_plugin(root: Path, *, pyproject: str = PYPROJECT, init: str = INIT, layout: str = "src") -> Path:
    """Write a plugin package (``src`` or ``flat`` layout) under ``root`` and return its directory."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    package = (root / "src" if layout == "src" else root) / "vendo_tool_weather"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(init, encoding="utf-8")
    tests = root / "tests"
    tests.mkdir()
    (tests / "test_weather.py").write_text("def test_nothing():\n    pass\n", encoding="utf-8")
    return root


def line_of(source: str, text: str) -> int:
    """1-based number of the first line of ``source`` containing ``text``."""
    return next(n for n, line in enumerate(source.splitlines(), 1) if text in line)


def lines(report: Report) -> list[str]:
    return [str(problem) for problem in report.problems]


def only_problem(report: Report) -> str:
    assert len(report.problems) == 1, lines(report)
    return str(report.problems[0])


INIT_PATH = "src/vendo_tool_weather/__init__.py"


# -- good packages -----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["src", "flat"])
def test_good_package_passes(tmp_path: Path, layout: str) -> None:
    plugin = write_plugin(tmp_path / "vendo-tool-weather", layout=layout)

    report = check(plugin)

    assert report.ok, lines(report)
    assert report.summary() == f"ok: vendo-tool-weather 0.1.0: {report.passed} checks passed"
    assert report.passed >= 15
    assert not list(plugin.rglob("__pycache__")), "the import must not write bytecode into the package"


def test_pyproject_path_is_accepted_too(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path / "p")
    assert check(plugin / "pyproject.toml").ok


def test_dynamic_version_and_installed_metadata_at_import(tmp_path: Path) -> None:
    """The package is not installed, yet importlib.metadata sees it as if it were."""
    pyproject = PYPROJECT.replace('version = "0.1.0"', 'dynamic = ["version"]')
    init = INIT + '\nfrom importlib.metadata import version\n\n__version__ = version("vendo-tool-weather")\n'
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject, init=init))
    assert report.ok, lines(report)
    assert report.version == "(dynamic version)"


# -- pyproject.toml --------------------------------------------------------------------------


def test_missing_path_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(CheckError, match="no such file or directory"):
        check(tmp_path / "nowhere")


def test_missing_pyproject(tmp_path: Path) -> None:
    report = check(tmp_path)
    assert only_problem(report).startswith("pyproject.toml: not found in ")


def test_malformed_pyproject_reports_the_line(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('license = "Apache-2.0"', "license Apache-2.0")
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject))
    problem = only_problem(report)
    assert problem.startswith(f"pyproject.toml:{line_of(pyproject, 'license Apache')}: invalid TOML: ")
    assert problem.endswith("Fix the syntax (see https://toml.io).")


@pytest.mark.parametrize(
    ("removed", "expected"),
    [
        ('description = "Weather forecasts as a Vendo tool."\n', "[project] description is missing"),
        ('license = "Apache-2.0"\n', "[project] license is missing"),
        ('[tool.vendo]\ncapabilities = ["tool"]\n', "[tool.vendo] capabilities is missing"),
    ],
)
def test_missing_metadata_is_reported(tmp_path: Path, removed: str, expected: str) -> None:
    pyproject = PYPROJECT.replace(removed, "")
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject))
    assert any(expected in line for line in lines(report)), lines(report)
    assert all(line.startswith("pyproject.toml") for line in lines(report))


def test_unknown_capability_gets_a_suggestion(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('capabilities = ["tool"]', 'capabilities = ["tool", "biling"]')
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject))
    assert only_problem(report) == (
        f"pyproject.toml:{line_of(pyproject, 'capabilities =')}: unknown capability 'biling' "
        "(did you mean billing?). Use one of: auth, billing, license, ai, knowledge, vector_store, tool, counters, notifier, generic."
    )


# -- entry points ----------------------------------------------------------------------------


def test_entry_point_to_a_missing_module(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('tool-weather = "vendo_tool_weather"', 'tool-weather = "vendo_tool_wether"')
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject))
    problem = only_problem(report)
    assert problem.startswith(
        f"pyproject.toml:{line_of(pyproject, 'tool-weather =')}: entry point 'tool-weather' names module "
        "vendo_tool_wether, which is in neither src/ nor the package directory."
    )


def test_entry_point_to_a_missing_attribute(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('"vendo_tool_weather"', '"vendo_tool_weather:plugin"')
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject))
    assert "names plugin, which vendo_tool_weather does not define" in only_problem(report)


def test_no_entry_point(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('[project.entry-points."vendo.plugins"]\ntool-weather = "vendo_tool_weather"\n', "")
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject))
    assert "no entry point in group vendo.plugins" in only_problem(report)


def test_import_that_raises(tmp_path: Path) -> None:
    init = INIT + '\nraise RuntimeError("WEATHER_API_KEY is not set")\n'
    report = check(write_plugin(tmp_path / "p", init=init))
    assert only_problem(report).startswith(
        f"{INIT_PATH}:{line_of(init, 'raise RuntimeError')}: importing vendo_tool_weather raises "
        "RuntimeError: WEATHER_API_KEY is not set. "
    )


# -- hooks ------------------------------------------------------------------------------------


def test_misspelled_hook_gets_a_suggestion_and_its_def_line(tmp_path: Path) -> None:
    init = INIT + "\n\n@hookimpl\ndef vendo_startupp(kernel):\n    pass\n"
    report = check(write_plugin(tmp_path / "p", init=init))
    assert only_problem(report) == (
        f"{INIT_PATH}:{line_of(init, 'def vendo_startupp')}: vendo_startupp is not a Vendo hook "
        "(did you mean vendo_startup?). Rename it."
    )


def test_extra_parameter(tmp_path: Path) -> None:
    init = INIT.replace("def vendo_register_tools(register, settings):", "def vendo_register_tools(register, foo):")
    report = check(write_plugin(tmp_path / "p", init=init))
    assert only_problem(report) == (
        f"{INIT_PATH}:{line_of(init, 'def vendo_register_tools')}: parameter 'foo' is not offered by "
        "vendo_register_tools (available: register, kernel, settings). Remove it or use one of those."
    )


def test_parameter_with_a_default_is_never_passed(tmp_path: Path) -> None:
    init = INIT.replace("(register, settings):", "(register, settings=None):")
    report = check(write_plugin(tmp_path / "p", init=init))
    assert "parameter 'settings' of vendo_register_tools has a default value" in only_problem(report)


def test_async_hook_that_the_kernel_does_not_await(tmp_path: Path) -> None:
    init = INIT.replace("def vendo_register_tools", "async def vendo_register_tools")
    report = check(write_plugin(tmp_path / "p", init=init))
    assert "vendo_register_tools is async, but the kernel calls it synchronously" in only_problem(report)


def test_async_startup_is_fine(tmp_path: Path) -> None:
    init = INIT + "\n\n@hookimpl\nasync def vendo_startup(kernel, settings):\n    pass\n"
    assert check(write_plugin(tmp_path / "p", init=init)).ok


def test_hookwrapper_is_refused(tmp_path: Path) -> None:
    init = INIT + "\n\n@hookimpl(hookwrapper=True)\ndef vendo_startup(kernel):\n    yield\n"
    report = check(write_plugin(tmp_path / "p", init=init))
    assert only_problem(report).startswith(
        f"{INIT_PATH}:{line_of(init, 'def vendo_startup')}: vendo_startup is a hook wrapper (hookwrapper=True), "
        "which the kernel refuses."
    )


# -- side effects at import --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "culprit", "event"),
    [
        (
            "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=0.5)\n"
            "except OSError:\n    pass\n",
            "create_connection",
            "socket.connect ('127.0.0.1', 9)",
        ),
        ("open('x.txt', 'w').close()\n", "open(", "open 'x.txt' for writing"),
        (
            "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'pass'])\n",
            "subprocess.run",
            "subprocess.Popen [",
        ),
    ],
    ids=["network", "file-write", "subprocess"],
)
def test_import_side_effect_is_detected(tmp_path: Path, code: str, culprit: str, event: str) -> None:
    """Each side effect is reported once, at the line that causes it (the try/except hides nothing)."""
    init = INIT + "\n" + code
    plugin = write_plugin(tmp_path / "p", init=init)
    problem = only_problem(check(plugin))
    line = line_of(init, culprit)
    assert problem.startswith(f"{INIT_PATH}:{line}: vendo_tool_weather: import has a side effect: {event}")
    assert problem.endswith("Move it into a hook (vendo_startup) or a function.")
    assert not (plugin / "x.txt").exists(), "the import runs in an empty scratch directory"


def test_side_effect_in_a_submodule_points_at_the_submodule(tmp_path: Path) -> None:
    init = INIT + "\nfrom vendo_tool_weather import cache\n"
    plugin = write_plugin(tmp_path / "p", init=init)
    (plugin / "src/vendo_tool_weather/cache.py").write_text("import os\n\nos.makedirs('cache')\n", encoding="utf-8")
    assert only_problem(check(plugin)).startswith(
        "src/vendo_tool_weather/cache.py:3: vendo_tool_weather: import has a side effect: os.mkdir 'cache'."
    )


# -- kernel and API ranges ---------------------------------------------------------------------


def test_vendo_dependency_that_excludes_this_kernel(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('"vendo>=0.1,<0.2"', '"vendo>=5"')
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject))
    assert only_problem(report).startswith(
        f"pyproject.toml:{line_of(pyproject, 'vendo>=5')}: dependency 'vendo>=5' excludes this kernel "
        f"(vendo {vendo.__version__})."
    )


def test_missing_vendo_dependency(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('dependencies = ["vendo>=0.1,<0.2"]', 'dependencies = ["httpx>=0.27"]')
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject))
    assert "no dependency on vendo" in only_problem(report)


def test_vendo_api_that_excludes_this_kernel(tmp_path: Path) -> None:
    init = INIT.replace('vendo_api = ">=1.0,<2"', 'vendo_api = ">=2"')
    report = check(write_plugin(tmp_path / "p", init=init))
    assert only_problem(report) == (
        f"{INIT_PATH}:{line_of(init, 'vendo_api =')}: vendo_api: supports vendo API >=2, but this kernel offers "
        f'API {vendo.API_VERSION}. Declare a range containing {vendo.API_VERSION}, e.g. vendo_api = ">=1.0,<2".'
    )


# -- capabilities --------------------------------------------------------------------------------


def test_declared_capability_without_its_register_hook(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('capabilities = ["tool"]', 'capabilities = ["tool", "billing"]')
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject))
    assert only_problem(report).startswith(
        f"pyproject.toml:{line_of(pyproject, 'capabilities =')}: declares capability 'billing' "
        "but no entry point implements vendo_register_billing_providers."
    )


def test_register_hook_without_its_declared_capability(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('capabilities = ["tool"]', 'capabilities = ["generic"]')
    report = check(write_plugin(tmp_path / "p", pyproject=pyproject))
    assert "implements vendo_register_tools but does not declare capability 'tool'" in only_problem(report)


# -- the command line ----------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vendo_sdk.cli", "check", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_exit_codes_and_one_line_output(tmp_path: Path) -> None:
    good = run_cli(str(write_plugin(tmp_path / "good")))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith("ok: vendo-tool-weather 0.1.0: ") and good.stdout.count("\n") == 1

    bad_init = INIT + "\n\ndef vendo_startupp(kernel):\n    pass\n"
    bad = run_cli(str(write_plugin(tmp_path / "bad", init=bad_init)))
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        f"{INIT_PATH}:{line_of(bad_init, 'def vendo_startupp')}: vendo_startupp is not a Vendo hook "
        "(did you mean vendo_startup?). Rename it."
    ]

    missing = run_cli(str(tmp_path / "nowhere"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1

    for result in (good, bad, missing):
        assert "Traceback" not in result.stderr
