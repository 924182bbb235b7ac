"""``vendo-sdk check``: validate a plugin package without installing it or running a server.

:func:`check` reads the package's ``pyproject.toml``, finds its ``vendo.plugins`` entry
points in the source tree (``src/`` layout or flat), then imports each entry point in a
separate Python process (the *probe*) with the package directory on ``sys.path``, an
empty working directory, a throw-away ``HOME`` and an audit hook that records network
use, process spawning and file writes made while the module is imported. The probe also
reads the plugin's hooks exactly as the kernel's plugin manager would and prints a JSON
report; the checks on hook names, signatures and capabilities run on that report here.

Every problem is one line, ``<file>[:<line>]: <problem>. <fix>``, with ``<file>`` relative
to the package directory, so the same :class:`Report` serves the command line and tests.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

import vendo
from vendo import hookspecs
from vendo.capabilities import FAMILIES
from vendo.plugins import ENTRY_POINT_GROUP

#: Seconds an entry point's import may take before the check gives up on it.
DEFAULT_TIMEOUT = 30.0

#: The capability kinds ``[tool.vendo] capabilities`` may list.
KNOWN_CAPABILITIES = (*FAMILIES, "generic")

PYPROJECT = "pyproject.toml"

# PEP 508 project names, and entry-point values as importlib.metadata parses them.
_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_ENTRY_POINT_VALUE = re.compile(r"^(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")
_TOML_ERROR_POSITION = re.compile(r"\s*\(at line (?P<line>\d+), column (?P<column>\d+)\)\s*$")
_SIDE_EFFECT_FIX = "Move it into a hook (vendo_startup) or a function."


class CheckError(Exception):
    """The check cannot even start (e.g. the path does not exist); one line for the user."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the package: where it is, what is wrong and how to fix it.

    :param file: path relative to the package directory (absolute when outside it).
    :param line: 1-based line number, when known.
    :param message: ``"<problem>. <fix>"``.
    """

    file: str
    line: int | None
    message: str

    def __post_init__(self) -> None:
        if not self.message.endswith((".", "?", "!")):  # every line ends as a sentence
            object.__setattr__(self, "message", self.message + ".")

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


@dataclass
class Report:
    """The outcome of :func:`check`: problems found and how many checks passed."""

    root: Path
    name: str | None = None
    version: str | None = None
    problems: list[Problem] = field(default_factory=list)
    passed: int = 0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """The success line: ``ok: <name> <version>: N checks passed``."""
        return f"ok: {self.name} {self.version}: {self.passed} checks passed"

    def record(self, problems: list[Problem]) -> None:
        """Account for one check: passed when it found nothing, else keep its problems."""
        if problems:
            self.problems.extend(problems)
        else:
            self.passed += 1


@dataclass
class EntryPoint:
    """A ``vendo.plugins`` entry point resolved to a file of the source tree."""

    name: str
    value: str
    module: str
    attr: str | None
    line: int | None
    import_root: Path  # the directory put on sys.path (``src/`` or the package directory)
    file: Path  # the module's source file
    own: Path  # the top-level package directory (or module file) the plugin's code lives in


def check(path: Path | str, *, timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Validate the plugin package at ``path`` (its directory, or its ``pyproject.toml``).

    Nothing is installed and no server runs; each entry point is imported once, in a
    subprocess sandboxed as described in the module docstring.

    :param timeout: seconds each entry point's import may take.
    :raises CheckError: ``path`` does not exist or is not a directory.
    """
    return _Checker(_locate(Path(path)), timeout).run()


def _locate(path: Path) -> Path:
    """The package directory named by ``path``."""
    if not path.exists():
        raise CheckError(
            f"{path}: no such file or directory (pass the plugin's directory, the one holding {PYPROJECT})"
        )
    if path.is_file():
        if path.name == PYPROJECT:
            return path.resolve().parent
        raise CheckError(f"{path}: is a file; pass the plugin's directory (the one holding {PYPROJECT})")
    return path.resolve()


class _Checker:
    """Runs the checks on one package, filling a :class:`Report` as it goes."""

    def __init__(self, root: Path, timeout: float) -> None:
        self.root = root
        self.timeout = timeout
        self.report = Report(root=root)
        self.toml = _TomlIndex("")
        self.pyproject: dict[str, Any] = {}
        self._trees: dict[Path, ast.Module | None] = {}

    # -- driver -------------------------------------------------------------------

    def run(self) -> Report:
        """Run every check whose prerequisites hold; see the module docstring."""
        if not self._load_pyproject():
            return self.report
        self._check_metadata()
        capabilities = self._check_capabilities_declared()
        entry_points = self._check_entry_points()
        self._check_kernel_dependency()
        implemented: set[str] = set()
        all_loaded = bool(entry_points) and len(entry_points) == len(self._entry_point_table())
        for entry_point in entry_points:
            hooks = self._check_import(entry_point)
            if hooks is None:
                all_loaded = False
            else:
                implemented |= hooks
        if all_loaded and capabilities is not None:
            self.report.record(self._capability_hooks(capabilities, implemented))
        return self.report

    # -- helpers ------------------------------------------------------------------

    def _problem(self, file: Path | str, line: int | None, message: str) -> Problem:
        """A problem located in ``file`` (shown relative to the package directory)."""
        if isinstance(file, Path):
            try:
                file = file.resolve().relative_to(self.root).as_posix()
            except ValueError:
                file = str(file)
        return Problem(file, line, message)

    def _pyproject_problem(self, *key: str, message: str) -> Problem:
        """A problem in pyproject.toml at ``key`` (or its nearest table present)."""
        return Problem(PYPROJECT, self.toml.line(*key), message)

    @property
    def _project(self) -> dict[str, Any]:
        project = self.pyproject.get("project")
        return project if isinstance(project, dict) else {}

    def _dynamic(self) -> set[str]:
        dynamic = self._project.get("dynamic")
        return {str(item) for item in dynamic} if isinstance(dynamic, list) else set()

    def _entry_point_table(self) -> dict[str, Any]:
        groups = self._project.get("entry-points")
        table = groups.get(ENTRY_POINT_GROUP) if isinstance(groups, dict) else None
        return table if isinstance(table, dict) else {}

    def _dist_info(self) -> dict[str, str]:
        """A minimal ``.dist-info`` (relative path -> content) describing the package as if
        installed: name, version and its ``vendo.plugins`` entry points."""
        name = self.report.name or self.root.name
        version = self.report.version if self.report.version and self.report.version[0].isdigit() else "0.0.0"
        directory = f"{canonicalize_name(name).replace('-', '_')}-{version}.dist-info"
        entries = "".join(f"{key} = {value}\n" for key, value in self._entry_point_table().items()
                          if isinstance(value, str))
        return {
            f"{directory}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
            f"{directory}/entry_points.txt": f"[{ENTRY_POINT_GROUP}]\n{entries}",
        }

    def _tree(self, file: Path) -> ast.Module | None:
        """The parsed source of ``file`` (cached; ``None`` when it cannot be parsed)."""
        if file not in self._trees:
            try:
                self._trees[file] = ast.parse(file.read_bytes(), filename=str(file))
            except (OSError, SyntaxError, ValueError):
                self._trees[file] = None
        return self._trees[file]

    # -- 1. pyproject.toml ----------------------------------------------------------

    def _load_pyproject(self) -> bool:
        """Check 1: the package holds a pyproject.toml that parses. False stops the check."""
        file = self.root / PYPROJECT
        if not file.is_file():
            self.report.record([Problem(PYPROJECT, None, f"not found in {self.root}. "
                                        f"Pass the plugin's directory, or create it with `vendo-sdk new`")])
            return False
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.report.record([Problem(PYPROJECT, None, f"cannot be read ({exc}). Save it as UTF-8 text")])
            return False
        try:
            self.pyproject = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            position = _TOML_ERROR_POSITION.search(message)
            line = int(position["line"]) if position else None
            if position:
                message = f"{message[: position.start()]} (column {position['column']})"
            fix = "Fix the syntax (see https://toml.io)"
            self.report.record([Problem(PYPROJECT, line, f"invalid TOML: {message}. {fix}")])
            return False
        self.toml = _TomlIndex(text)
        if not isinstance(self.pyproject.get("project"), dict):
            self.report.record([Problem(PYPROJECT, None, "has no [project] table. "
                                        "Add one with name, version, description, license and dependencies")])
            return False
        self.report.record([])
        return True

    # -- 2. metadata ------------------------------------------------------------------

    def _check_metadata(self) -> None:
        """Check 2: name, version, description and license are present and sensible."""
        project, dynamic = self._project, self._dynamic()

        name = project.get("name")
        problems = []
        if not isinstance(name, str) or not name.strip():
            problems.append(self._pyproject_problem("project", "name", message=(
                '[project] name is missing. Add name = "vendo-<kind>-<name>"')))
        elif not _NAME.match(name):
            problems.append(self._pyproject_problem("project", "name", message=(
                f"[project] name {name!r} is not a valid project name. "
                "Use letters, digits, '-', '_' and '.', starting and ending with a letter or digit")))
        else:
            self.report.name = name
        self.report.record(problems)

        version = project.get("version")
        problems = []
        if "version" in dynamic and version is None:
            self.report.version = "(dynamic version)"
        elif not isinstance(version, str) or not version.strip():
            problems.append(self._pyproject_problem("project", "version", message=(
                '[project] version is missing. Add version = "0.1.0" (or list "version" in dynamic)')))
        else:
            try:
                Version(version)
                self.report.version = version
            except InvalidVersion:
                problems.append(self._pyproject_problem("project", "version", message=(
                    f"[project] version {version!r} is not a valid version. Use a PEP 440 version such as \"0.1.0\"")))
        self.report.record(problems)

        description = project.get("description")
        problems = []
        if "description" in dynamic and description is None:
            pass
        elif not isinstance(description, str) or not description.strip():
            problems.append(self._pyproject_problem("project", "description", message=(
                "[project] description is missing (the one-line summary shown in catalogs). "
                'Add description = "<what the plugin does, in one line>"')))
        elif "\n" in description.strip():
            problems.append(self._pyproject_problem("project", "description", message=(
                "[project] description spans several lines. Keep it to one line; put the rest in readme")))
        self.report.record(problems)

        self.report.record(self._license_problems(project.get("license"), "license" in dynamic))

    def _license_problems(self, license: Any, dynamic: bool) -> list[Problem]:
        """Check 2 (license): an SPDX expression, or a table with non-empty text or an existing file."""
        if license is None and dynamic:
            return []
        if isinstance(license, str) and license.strip():
            return []
        if isinstance(license, dict):
            text, file = license.get("text"), license.get("file")
            if isinstance(text, str) and text.strip():
                return []
            if isinstance(file, str) and file.strip():
                if (self.root / file).is_file():
                    return []
                return [self._pyproject_problem("project", "license", message=(
                    f"[project] license file {file!r} does not exist. Create it, or write license = \"Apache-2.0\""))]
        return [self._pyproject_problem("project", "license", message=(
            '[project] license is missing. Add license = "Apache-2.0" (an SPDX expression)'))]

    def _check_capabilities_declared(self) -> list[str] | None:
        """Check 2 (capabilities): ``[tool.vendo] capabilities`` lists known kinds.

        :return: the known kinds declared, or ``None`` when the declaration is unusable.
        """
        tool = self.pyproject.get("tool")
        table = tool.get("vendo") if isinstance(tool, dict) else None
        declared = table.get("capabilities") if isinstance(table, dict) else None
        kinds = ", ".join(KNOWN_CAPABILITIES)
        key = ("tool", "vendo", "capabilities")
        if declared is None:
            self.report.record([self._pyproject_problem(*key, message=(
                "[tool.vendo] capabilities is missing. "
                f'Add capabilities = ["<kind>"] under [tool.vendo] (kinds: {kinds})'))])
            return None
        if not isinstance(declared, list) or not declared or not all(isinstance(k, str) for k in declared):
            self.report.record([self._pyproject_problem(*key, message=(
                "[tool.vendo] capabilities must be a non-empty list of strings. "
                f'Write e.g. capabilities = ["tool"] (kinds: {kinds})'))])
            return None
        problems = []
        for kind in declared:
            if kind not in KNOWN_CAPABILITIES:
                close = difflib.get_close_matches(kind, KNOWN_CAPABILITIES, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(self._pyproject_problem(*key, message=(
                    f"unknown capability {kind!r}{hint}. Use one of: {kinds}")))
        self.report.record(problems)
        return [kind for kind in declared if kind in KNOWN_CAPABILITIES]

    # -- 3. entry points --------------------------------------------------------------

    def _check_entry_points(self) -> list[EntryPoint]:
        """Check 3: at least one ``vendo.plugins`` entry point, each found in the source tree."""
        table = self._entry_point_table()
        if not table:
            groups = self._project.get("entry-points")
            hint = ""
            if isinstance(groups, dict) and isinstance(groups.get("vendo"), dict) and "plugins" in groups["vendo"]:
                hint = f' (the group name needs quotes: [project.entry-points."{ENTRY_POINT_GROUP}"])'
            self.report.record([self._pyproject_problem("project", "entry-points", message=(
                f"no entry point in group {ENTRY_POINT_GROUP}{hint}. "
                f'Add [project.entry-points."{ENTRY_POINT_GROUP}"] with a line such as my-plugin = "my_plugin"'))])
            return []
        self.report.record([])
        resolved = []
        for name, value in table.items():
            entry_point, problem = self._resolve_entry_point(name, value)
            self.report.record([problem] if problem else [])
            if entry_point is not None:
                resolved.append(entry_point)
        return resolved

    def _resolve_entry_point(self, name: str, value: Any) -> tuple[EntryPoint | None, Problem | None]:
        """Find the file an entry point's ``module[:attr]`` names under ``src/`` or the package root."""
        key = ("project", "entry-points", ENTRY_POINT_GROUP, name)
        match = _ENTRY_POINT_VALUE.match(value.strip()) if isinstance(value, str) else None
        if match is None:
            return None, self._pyproject_problem(*key, message=(
                f"entry point {name!r} has an invalid value {value!r}. "
                'Write "package.module" or "package.module:attr"'))
        module, attr = match["module"], match["attr"]
        parts = module.split(".")
        for base in (self.root / "src", self.root):
            top_dir, top_file = base / parts[0], base / f"{parts[0]}.py"
            if len(parts) == 1 and top_file.is_file() and not top_dir.is_dir():
                candidates, own = [top_file], top_file
            else:
                target = base.joinpath(*parts)
                candidates, own = [target / "__init__.py", target.with_suffix(".py")], top_dir
            for file in candidates:
                if file.is_file():
                    entry = EntryPoint(name, value, module, attr, self.toml.line(*key), base.resolve(),
                                       file.resolve(), own.resolve())
                    return entry, None
        expected = "/".join(parts)
        return None, self._pyproject_problem(*key, message=(
            f"entry point {name!r} names module {module}, which is in neither src/ nor the package directory. "
            f"Fix the entry point, or create src/{expected}/__init__.py (or {expected}.py)"))

    # -- 4. kernel range ----------------------------------------------------------------

    def _check_kernel_dependency(self) -> None:
        """Check 4: a ``vendo`` dependency whose range contains this kernel's version."""
        kernel = vendo.__version__
        wanted = f"vendo{_suggested_range(kernel)}"
        key = ("project", "dependencies")
        if "dependencies" in self._dynamic():
            self.report.record([self._pyproject_problem(*key, message=(
                "[project] dependencies are dynamic, so the vendo range cannot be checked. "
                f'List them in pyproject.toml, including "{wanted}"'))])
            return
        dependencies = self._project.get("dependencies", [])
        if not isinstance(dependencies, list):
            self.report.record([self._pyproject_problem(*key, message=(
                f'[project] dependencies must be a list of strings. Write dependencies = ["{wanted}"]'))])
            return
        problems, found = [], None
        for raw in dependencies:
            try:
                requirement = Requirement(str(raw))
            except InvalidRequirement as exc:
                problems.append(Problem(PYPROJECT, self.toml.value_line(str(raw), *key),
                                        f"invalid dependency {raw!r}: {exc}. Use PEP 508 syntax, e.g. \"{wanted}\""))
                continue
            if found is None and canonicalize_name(requirement.name) == "vendo":
                found = (str(raw), requirement)
        if found is None:
            problems.append(self._pyproject_problem(*key, message=(
                f'no dependency on vendo. Add "{wanted}" to [project] dependencies')))
        elif not found[1].specifier.contains(kernel, prereleases=True):
            problems.append(Problem(PYPROJECT, self.toml.value_line(found[0], *key), (
                f"dependency {found[0]!r} excludes this kernel (vendo {kernel}). "
                f'Use a range that contains it, e.g. "{wanted}"')))
        self.report.record(problems)

    # -- 5, 6. import probe, vendo_api, hooks ---------------------------------------------

    def _check_import(self, entry_point: EntryPoint) -> set[str] | None:
        """Checks 4 (vendo_api), 5 (import) and 6 (hooks) for one entry point.

        :return: the hook names it implements, or ``None`` when it could not be loaded.
        """
        result, failure = _probe(entry_point, self._dist_info(), self.timeout)
        if failure is not None:
            self.report.record([self._problem(entry_point.file, None, failure)])
            return None
        error = result.get("error")
        events = result.get("events", [])
        self.report.record([self._side_effect_problem(entry_point, event) for event in events])
        if error is not None:
            self.report.record([self._import_problem(entry_point, error)])
            return None
        self.report.record([])
        self.report.record(self._api_problems(entry_point, result.get("api")))
        hooks = result.get("hooks", [])
        self.report.record(self._hook_name_problems(entry_point, hooks))
        known = [hook for hook in hooks if hook["hook"] in _SPECS]
        self.report.record([p for hook in known for p in self._signature_problems(entry_point, hook)])
        self.report.record([self._hook_problem(entry_point, hook, (
            f"{hook['hook']} is a hook wrapper ({hook['wrapper']}=True), which the kernel refuses. "
            f"Remove {hook['wrapper']}=True and make it a plain hook"))
            for hook in known if hook.get("wrapper")])
        return {hook["hook"] for hook in known}

    def _side_effect_problem(self, entry_point: EntryPoint, event: dict[str, Any]) -> Problem:
        detail = f" {event['detail']}" if event.get("detail") else ""
        file = Path(event["file"]) if event.get("file") else entry_point.file
        return self._problem(file, event.get("line"), (
            f"{entry_point.module}: import has a side effect: {event['event']}{detail}. {_SIDE_EFFECT_FIX}"))

    def _import_problem(self, entry_point: EntryPoint, error: dict[str, Any]) -> Problem:
        """One line for an import that raised (or an attribute the entry point names but lacks)."""
        if error.get("kind") == "attr":
            return self._pyproject_problem("project", "entry-points", ENTRY_POINT_GROUP, entry_point.name, message=(
                f"entry point {entry_point.name!r} names {entry_point.attr}, "
                f"which {entry_point.module} does not define. Define it, or fix the entry point"))
        if error.get("kind") == "shadowed":
            return self._problem(entry_point.file, None, (
                f"importing {entry_point.module} loads {error['message']} instead of this package, "
                "because that name is already taken. Rename the package"))
        file = Path(error["file"]) if error.get("file") else entry_point.file
        missing = error.get("missing")
        if missing and not _is_own_module(missing, entry_point):
            fix = f"Install {missing.split('.')[0]} in this environment and list it in [project] dependencies"
        else:
            fix = "Fix the error: the kernel imports the plugin exactly like this, before any hook runs"
        return self._problem(file, error.get("line"), (
            f"importing {entry_point.module} raises {error['type']}: {error['message']}. {fix}"))

    def _api_problems(self, entry_point: EntryPoint, api: dict[str, Any] | None) -> list[Problem]:
        """Check 4 (vendo_api): the declared API range contains this kernel's API version."""
        if not api or not api.get("problem"):
            return []
        line = self._assignment_line(entry_point.file, "vendo_api")
        wanted = _suggested_range(vendo.API_VERSION)
        return [self._problem(entry_point.file, line, (
            f"vendo_api: {api['problem']}. "
            f'Declare a range containing {vendo.API_VERSION}, e.g. vendo_api = "{wanted}"'))]

    def _hook_problem(self, entry_point: EntryPoint, hook: dict[str, Any], message: str) -> Problem:
        """A problem located at a hook implementation's ``def`` line (else the entry point's file)."""
        file, first = hook.get("file"), hook.get("line")
        if not file or not Path(file).is_file():
            return self._problem(entry_point.file, None, message)
        line = self._definition_line(Path(file), first) if first else None
        return self._problem(Path(file), line, message)

    def _hook_name_problems(self, entry_point: EntryPoint, hooks: list[dict[str, Any]]) -> list[Problem]:
        """Check 6 (names): every ``vendo_*`` routine is a hookspec of the kernel."""
        problems = []
        for hook in hooks:
            name = hook["hook"]
            if name in _SPECS:
                continue
            close = difflib.get_close_matches(name, list(_SPECS), n=1)
            if close:
                message = f"{name} is not a Vendo hook (did you mean {close[0]}?). Rename it"
            else:
                message = (f"{name} is not a Vendo hook. Rename it to a hook listed by `vendo-sdk hooks`, "
                           "or drop the vendo_ prefix if it is a helper")
            problems.append(self._hook_problem(entry_point, hook, message))
        return problems

    def _signature_problems(self, entry_point: EntryPoint, hook: dict[str, Any]) -> list[Problem]:
        """Check 6 (signatures): parameters the kernel can pass, passed the way pluggy passes them."""
        name = hook["hook"]
        spec = _SPECS[name]
        available = ", ".join(spec["params"]) or "none"
        problems = []
        for param in [*hook.get("args", []), *hook.get("defaulted", []), *hook.get("kwonly", [])]:
            if param not in spec["params"]:
                close = difflib.get_close_matches(param, spec["params"], n=1)
                fix = f"Rename it to {close[0]}" if close else "Remove it or use one of those"
                problems.append(self._hook_problem(entry_point, hook, (
                    f"parameter {param!r} is not offered by {name} (available: {available}). {fix}")))
        for param in hook.get("defaulted", []):
            if param in spec["params"]:
                problems.append(self._hook_problem(entry_point, hook, (
                    f"parameter {param!r} of {name} has a default value, so the kernel never passes it. "
                    "Remove the default")))
        for param in hook.get("kwonly", []):
            if param in spec["params"]:
                problems.append(self._hook_problem(entry_point, hook, (
                    f"parameter {param!r} of {name} is keyword-only, so the kernel never passes it. "
                    "Make it a regular parameter (before any *)")))
        for param in hook.get("variadic", []):
            problems.append(self._hook_problem(entry_point, hook, (
                f"{param} of {name} receives nothing: the kernel passes only named parameters. "
                f"Name the parameters you need (available: {available})")))
        if hook.get("async") and not spec["may_be_async"]:
            problems.append(self._hook_problem(entry_point, hook, (
                f"{name} is async, but the kernel calls it synchronously and never awaits it. Make it a plain def")))
        return problems

    def _definition_line(self, file: Path, first_line: int) -> int:
        """The ``def`` line of the function whose code starts at ``first_line`` (its first decorator)."""
        tree = self._tree(file)
        if tree is not None:
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    if first_line in (start, node.lineno):
                        return node.lineno
        return first_line

    def _assignment_line(self, file: Path, name: str) -> int | None:
        """The line of the first assignment to ``name`` in ``file``."""
        tree = self._tree(file)
        if tree is None:
            return None
        lines = []
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else [])
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                lines.append(node.lineno)
        return min(lines) if lines else None

    # -- 7. capabilities ------------------------------------------------------------------

    def _capability_hooks(self, declared: list[str], implemented: set[str]) -> list[Problem]:
        """Check 7: each declared capability's register hook is implemented, and vice versa."""
        key = ("tool", "vendo", "capabilities")
        problems = []
        for kind in declared:
            if kind != "generic" and FAMILIES[kind].hook not in implemented:
                hook = FAMILIES[kind].hook
                problems.append(self._pyproject_problem(*key, message=(
                    f"declares capability {kind!r} but no entry point implements {hook}. "
                    f"Implement {hook}, or remove {kind!r} from [tool.vendo] capabilities")))
        for kind, family in FAMILIES.items():
            if family.hook in implemented and kind not in declared:
                problems.append(self._pyproject_problem(*key, message=(
                    f"implements {family.hook} but does not declare capability {kind!r}. "
                    f"Add {kind!r} to [tool.vendo] capabilities")))
        return problems


def _suggested_range(version: str) -> str:
    """A compatible range for ``version``: same minor while 0.x, same major from 1.0."""
    v = Version(version)
    if v.major == 0:
        return f">={v.major}.{v.minor},<{v.major}.{v.minor + 1}"
    return f">={v.major}.{v.minor},<{v.major + 1}"


def _is_own_module(module: str, entry_point: EntryPoint) -> bool:
    """Whether ``module`` belongs to the plugin's own top-level package."""
    top = entry_point.module.split(".")[0]
    return module == top or module.startswith(f"{top}.")


def _hookspecs() -> dict[str, dict[str, Any]]:
    """Every hookspec: its parameters and whether the kernel awaits it (``hookspecs.ASYNC_HOOKS``)."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    specs = {}
    for name, function in vars(hookspecs).items():
        if name.startswith("vendo_") and getattr(function, marker, None) is not None:
            specs[name] = {
                "params": list(inspect.signature(function).parameters),
                "may_be_async": name in hookspecs.ASYNC_HOOKS,
            }
    return specs


_SPECS = _hookspecs()


class _TomlIndex:
    """Line numbers of the tables and keys of a TOML text, for messages (tomllib gives none).

    A line-based scan: good for the tables and ``key = value`` lines of a pyproject.toml,
    not a TOML parser (the text is known to parse when it is used).
    """

    _HEADER = re.compile(r"^\s*\[\[?\s*([\w\-\"'. ]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([\w\-\"'. ]+?)\s*=(?!=)")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.entries: list[tuple[tuple[str, ...], int]] = []
        table: tuple[str, ...] = ()
        for number, line in enumerate(self.lines, 1):
            header = self._HEADER.match(line)
            if header:
                table = _split_key(header.group(1))
                self.entries.append((table, number))
                continue
            key = self._KEY.match(line)
            if key:
                self.entries.append((table + _split_key(key.group(1)), number))

    def line(self, *path: str) -> int | None:
        """The line defining ``path``, else that of its nearest ancestor present, else None."""
        for size in range(len(path), 0, -1):
            for full, number in self.entries:
                if full[:size] == path[:size] and len(full) >= size:
                    return number
        return None

    def value_line(self, value: str, *path: str) -> int | None:
        """The line holding the string ``value`` at or after ``path``'s line (an array item)."""
        start = self.line(*path) or 1
        for number in range(start, len(self.lines) + 1):
            text = self.lines[number - 1]
            if f'"{value}"' in text or f"'{value}'" in text:
                return number
        return start if self.entries else None


def _split_key(text: str) -> tuple[str, ...]:
    """``project.entry-points."vendo.plugins"`` -> ``("project", "entry-points", "vendo.plugins")``."""
    parts, current, quote = [], "", None
    for char in text:
        if quote:
            if char == quote:
                quote = None
            else:
                current += char
        elif char in "\"'":
            quote = char
        elif char == ".":
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return tuple(parts)


# -- the probe ---------------------------------------------------------------------------

#: Source of the subprocess importing one entry point. argv[1] is a JSON object: ``path``
#: (prepended to sys.path), ``module``, ``attr``, ``own`` (where the plugin's code lives).
#: It prints one JSON object on its original stdout (the plugin's own prints go to stderr):
#: ``events`` (side effects during the import), ``error``, ``api`` and ``hooks``.
_PROBE_SOURCE = r'''
import json, os, sys

config = json.loads(sys.argv[1])
report_fd = os.dup(1)  # the report's channel; the plugin's prints go to stderr
os.dup2(2, 1)
sys.dont_write_bytecode = True
sys.path[0:0] = config["path"]

import importlib, inspect, threading, traceback
import pluggy
from vendo.plugins import check_api, new_plugin_manager

OWN = config["own"]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Watched events -> indexes of the arguments shown; the more specific events come first
# (when one source line raises several, the first listed here is reported).
EVENTS = {
    "urllib.Request": (0, 3), "http.client.connect": (1, 2), "ftplib.connect": (1, 2),
    "smtplib.connect": (1, 2), "imaplib.open": (1, 2), "poplib.connect": (1, 2),
    "socket.connect": (1,), "socket.bind": (1,), "socket.sendto": (1,),
    "socket.getaddrinfo": (0, 1), "socket.gethostbyname": (0,), "socket.gethostbyaddr": (0,),
    "subprocess.Popen": (1,), "os.system": (0,), "os.posix_spawn": (1,), "os.exec": (1,),
    "os.spawn": (2,), "os.fork": (), "os.forkpty": (), "os.kill": (0, 1), "os.startfile": (0,),
    "pty.spawn": (0,), "webbrowser.open": (0,), "threading.Thread.start": (0,),
    "shutil.rmtree": (0,), "shutil.move": (0, 1), "shutil.copytree": (0, 1),
    "shutil.copyfile": (0, 1), "shutil.copymode": (0, 1), "shutil.copystat": (0, 1),
    "shutil.chown": (0,), "shutil.make_archive": (0,), "shutil.unpack_archive": (0, 1),
    "tempfile.mkstemp": (0,), "tempfile.mkdtemp": (0,), "sqlite3.connect": (0,),
    "os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,),
    "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.link": (0, 1),
    "os.symlink": (0, 1), "os.utime": (0,), "os.mkfifo": (0,), "os.mknod": (0,), "open": (0,),
}
RANK = {name: rank for rank, name in enumerate(EVENTS)}
recording = False
events = []


def is_own(filename):
    filename = os.path.realpath(filename) if filename and not filename.startswith("<") else ""
    return any(filename == own or filename.startswith(own + os.sep) for own in OWN)


def own_location(frame):
    """The innermost frame running the plugin's own code: (file, line)."""
    while frame is not None:
        if is_own(frame.f_code.co_filename):
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back
    return None, None


def show(value):
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    elif isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def describe(event, args):
    """The detail shown for an event, or None when it is not a side effect."""
    if event == "open":
        path, mode, flags = args
        writes = (flags & WRITE_FLAGS) if isinstance(flags, int) else any(c in (mode or "") for c in "wax+")
        if isinstance(path, int) or not writes:
            return None
        return show(path) + " for writing"
    if event == "sqlite3.connect" and str(args[0]) in ("", ":memory:"):
        return None
    return " ".join(show(args[i]) for i in EVENTS[event] if i < len(args) and args[i] is not None)


def record(event, detail, frame):
    file, line = own_location(frame)
    events.append({"event": event, "detail": detail, "file": file, "line": line})


def audit(event, args):
    """The audit hook: record watched events while the entry point is being imported."""
    if not recording or event not in EVENTS:
        return
    try:
        detail = describe(event, args)
        if detail is not None:
            record(event, detail, sys._getframe(1))
    except Exception:  # an audit hook must never break the audited operation
        pass


original_start = threading.Thread.start


def start(self, *args, **kwargs):
    """Thread.start, recording threads started by the import (threads raise no audit event)."""
    if recording:
        record("threading.Thread.start", show(self.name), sys._getframe(1))
    return original_start(self, *args, **kwargs)


def dedupe(found):
    """One event per source line (the most specific), at most 20."""
    best = {}
    for event in found:
        key = (event["file"], event["line"]) if event["file"] else (event["event"], event["detail"])
        if key not in best or RANK[event["event"]] < RANK[best[key]["event"]]:
            best[key] = event
    return list(best.values())[:20]


def describe_error(exc):
    text = str(exc).strip().splitlines()
    error = {"type": type(exc).__name__, "message": text[0] if text else "(no message)", "file": None, "line": None}
    if isinstance(exc, ImportError) and exc.name:
        error["missing"] = exc.name
    if isinstance(exc, SyntaxError) and exc.filename and is_own(exc.filename):
        error["file"], error["line"] = exc.filename, exc.lineno
        return error
    for frame, line in traceback.walk_tb(exc.__traceback__):
        if is_own(frame.f_code.co_filename):
            error["file"], error["line"] = frame.f_code.co_filename, line
    return error


def describe_hooks(obj):
    """Hook implementations as the kernel's plugin manager finds them on ``obj``."""
    pm = new_plugin_manager()
    hooks = []
    for name in dir(obj):
        try:
            opts = pm.parse_hookimpl_opts(obj, name)
        except Exception:
            continue
        if opts is None:
            continue
        method = getattr(obj, name)
        impl = pluggy.HookImpl(obj, "probe", method, opts)
        hook = {"attr": name, "hook": opts.get("specname") or name, "args": list(impl.argnames),
                "defaulted": list(impl.kwargnames), "kwonly": [], "variadic": [],
                "wrapper": "wrapper" if opts.get("wrapper") else ("hookwrapper" if opts.get("hookwrapper") else None),
                "async": inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method),
                "file": None, "line": None}
        try:
            for param in inspect.signature(method).parameters.values():
                if param.kind is param.KEYWORD_ONLY:
                    hook["kwonly"].append(param.name)
                elif param.kind is param.VAR_POSITIONAL:
                    hook["variadic"].append("*" + param.name)
                elif param.kind is param.VAR_KEYWORD:
                    hook["variadic"].append("**" + param.name)
        except (TypeError, ValueError):
            pass
        code = getattr(inspect.unwrap(getattr(method, "__func__", method)), "__code__", None)
        if code is not None:
            hook["file"], hook["line"] = code.co_filename, code.co_firstlineno
        hooks.append(hook)
    return hooks


def main():
    global recording
    report = {"events": [], "error": None, "api": None, "hooks": []}
    sys.addaudithook(audit)
    threading.Thread.start = start
    recording = True
    try:
        module = importlib.import_module(config["module"])
    except BaseException as exc:
        recording = False
        report["error"] = describe_error(exc)
        module = None
    recording = False
    report["events"] = dedupe(events)
    if module is not None:
        file = getattr(module, "__file__", None) or ""
        if not is_own(file):
            report["error"] = {"kind": "shadowed", "type": "", "message": file or repr(module)}
            return report
        obj = module
        try:
            for part in config["attr"].split(".") if config["attr"] else []:
                obj = getattr(obj, part)
        except AttributeError as exc:
            report["error"] = {"kind": "attr", "type": "AttributeError", "message": str(exc)}
            return report
        declared, problem = check_api(obj)
        report["api"] = {"declared": declared, "problem": problem}
        report["hooks"] = describe_hooks(obj)
    return report


report = main()
sys.stdout.flush()
sys.stderr.flush()
with os.fdopen(report_fd, "w") as out:
    out.write(json.dumps(report))
os._exit(0)
'''


def _probe(entry_point: EntryPoint, dist_info: dict[str, str], timeout: float) -> tuple[dict[str, Any], str | None]:
    """Import ``entry_point`` in a sandboxed subprocess and return its JSON report.

    The package is not installed: its import root is prepended to ``sys.path``, and a
    throw-away ``.dist-info`` directory makes ``importlib.metadata`` see it as if it were
    (name, version, entry points), so ``version("my-plugin")`` at import works as installed.

    :param dist_info: file name -> content of the ``.dist-info`` directory (see :meth:`_Checker._dist_info`).
    :return: ``(report, None)``, or ``({}, failure message)`` when the probe gave no report.
    """
    with tempfile.TemporaryDirectory(prefix="vendo-check-", ignore_cleanup_errors=True) as scratch:
        work, home, meta = (Path(scratch) / part for part in ("work", "home", "meta"))
        for directory in (work, home, meta):
            directory.mkdir()
        for relative, content in dist_info.items():
            (meta / relative).parent.mkdir(parents=True, exist_ok=True)
            (meta / relative).write_text(content, encoding="utf-8")
        config = {
            "path": [str(entry_point.import_root), str(meta)],
            "module": entry_point.module,
            "attr": entry_point.attr,
            "own": [os.path.realpath(entry_point.own)],
        }
        env = {**os.environ, "HOME": str(home), "USERPROFILE": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("PYTHONSTARTUP", None)
        process = subprocess.Popen(
            [sys.executable, "-B", "-c", _PROBE_SOURCE, json.dumps(config)],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.communicate()
            return {}, (f"importing {entry_point.module} did not finish within {timeout:g} s. "
                        "Import-time code must not block (network, loops, input()); "
                        "move it into a hook (vendo_startup)")
        finally:
            _kill_group(process.pid)  # anything the import left running in the background
    try:
        return json.loads(stdout), None
    except ValueError:
        lines = stderr.decode(errors="replace").strip().splitlines()
        last = f": {lines[-1]}" if lines else ""
        return {}, (f"importing {entry_point.module} ended the process (exit code {process.returncode}){last}. "
                    "Do not exit or abort at import time")


def _kill_group(pid: int) -> None:
    """Kill the probe's process group (the probe and whatever its import spawned)."""
    if hasattr(os, "killpg"):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
