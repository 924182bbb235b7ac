"""``vendo-sdk new``: write a complete plugin package that installs and passes its own tests."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"

#: Kinds offered by ``--kind`` and the capability family each fills.
KINDS = {
    "auth": "auth",
    "billing": "billing",
    "license": "license",
    "ai": "ai",
    "knowledge": "knowledge",
    "tool": "tool",
    "vector_store": "vector_store",
    "counters": "counters",
    "generic": "generic",
}

#: The word a kind's package names start with, when it is not the kind itself (package and
#: entry-point names use ``-``, never ``_``): ``vendo-vector-<name>``.
PREFIXES = {"vector_store": "vector"}

SUMMARIES = {
    "auth": "Authenticates requests bearing static tokens, stored hashed.",
    "billing": "A no-payment billing provider backed by a local ledger, with signed webhooks.",
    "license": "License keys signed with HMAC-SHA256: issue, verify, revoke, activate.",
    "ai": "A local, deterministic AI provider: echo chat, streaming and hashed embeddings.",
    "knowledge": "Reads the text and Markdown files of a directory as knowledge documents.",
    "tool": "A tool counting the words, lines and characters of a text.",
    "vector_store": "A vector store in a SQLite file: cosine similarity by namespace, brute force.",
    "counters": "A counter store in a SQLite file, atomic across threads and processes.",
    "generic": "A plugin with a route, an event subscriber and a command.",
}

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class ScaffoldError(ValueError):
    """A bad name, kind or target directory; nothing was written."""


@dataclass(frozen=True)
class Names:
    """Every spelling of a plugin's name."""

    name: str  # weather
    kind: str  # tool
    dist: str  # vendo-tool-weather
    module: str  # vendo_tool_weather
    plugin: str  # tool-weather (the entry point name)
    cls: str  # Weather

    @property
    def env_prefix(self) -> str:
        """``VENDO_TOOL_WEATHER__``: the prefix of the plugin's settings in the environment."""
        return "VENDO_" + self.plugin.upper().replace("-", "_") + "__"


def names_for(name: str, kind: str) -> Names:
    """Derive the distribution, module, entry-point and class names.

    :raises ScaffoldError: an unknown kind or a name that is not lowercase words joined by ``-``.
    """
    if kind not in KINDS:
        raise ScaffoldError(f"unknown kind '{kind}': choose one of {', '.join(KINDS)}")
    short = name.removeprefix("vendo-")
    prefix = PREFIXES.get(kind, kind)
    if kind != "generic":
        short = short.removeprefix(f"{prefix}-")
    if not _NAME.match(short) or len(short) > 40:
        raise ScaffoldError(
            f"invalid plugin name '{name}': use lowercase letters and digits in words joined by '-', "
            "starting with a letter, at most 40 characters (e.g. 'weather' or 'acme-weather')"
        )
    plugin = short if kind == "generic" else f"{prefix}-{short}"
    dist = f"vendo-{plugin}"
    return Names(
        name=short.replace("-", "_"),
        kind=kind,
        dist=dist,
        module=dist.replace("-", "_"),
        plugin=plugin,
        cls="".join(part.capitalize() for part in short.split("-")),
    )


def _render(template: Path, names: Names) -> str:
    text = template.read_text()
    usage = (TEMPLATES / names.kind / "usage.md.tmpl").read_text()
    replacements = {
        "__USAGE__": usage,
        "__SUMMARY__": SUMMARIES[names.kind],
        "__DIST__": names.dist,
        "__MODULE__": names.module,
        "__PLUGIN__": names.plugin,
        "__FAMILY__": KINDS[names.kind],
        "__ENVPREFIX__": names.env_prefix,
        "__CLASS__": names.cls,
        "__NAME__": names.name,
    }
    for token, value in replacements.items():  # __USAGE__ first: it holds other tokens
        text = text.replace(token, value)
    return text


def new_plugin(name: str, kind: str, directory: Path | None = None) -> tuple[Names, Path]:
    """Write a plugin package; return its names and directory.

    :param directory: where the package goes (default ``./<distribution name>``); it must not
        exist or be empty.
    :raises ScaffoldError: bad name or kind, or a non-empty target; nothing is written then.
    """
    names = names_for(name, kind)
    target = Path(directory) if directory is not None else Path.cwd() / names.dist
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not empty: choose another --dir")
    files = {
        "pyproject.toml": TEMPLATES / "common" / "pyproject.toml.tmpl",
        "README.md": TEMPLATES / "common" / "README.md.tmpl",
        f"src/{names.module}/__init__.py": TEMPLATES / kind / "plugin.py.tmpl",
        f"tests/test_{names.name}.py": TEMPLATES / kind / "test_plugin.py.tmpl",
    }
    staging = Path(tempfile.mkdtemp(prefix="vendo-sdk-", dir=target.parent if target.parent.exists() else None))
    try:
        for relative, template in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_render(template, names))
        if target.exists():
            target.rmdir()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(target))
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return names, target
