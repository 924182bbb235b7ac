"""Markdown reference of every Vendo hook, generated from :mod:`vendo.hookspecs`.

The hooks are the module's functions named ``vendo_*``, grouped under the comment
banners of that module (``# ----`` / ``# Title`` / ``# ----``) in source order. Each hook
gets a heading with its signature (parameter names only, in spec order) and its
docstring, with reStructuredText roles turned into Markdown and the ``:param:`` /
``:return:`` / ``:raises:`` fields rendered as lists.

Regenerate ``docs/hooks.md`` with::

    uv run python -m vendo.hookdocs > docs/hooks.md

A test compares that file with :func:`render_markdown` and fails when they differ.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from types import FunctionType, ModuleType

from vendo import hookspecs

#: The command that regenerates the reference (quoted in the file and in test failures).
REGENERATE_COMMAND = "uv run python -m vendo.hookdocs > docs/hooks.md"

_RULE = re.compile(r"^#\s*-{10,}\s*$")
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?[^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
# ":param name: text" but not a line opening with a role such as ":func:`name`"
_FIELD = re.compile(r"^:(?P<kind>[a-zA-Z]+)(?:\s+(?P<arg>[^:`]+?))?:(?:\s+(?P<text>.*))?$")
_PARAM_KINDS = {"param", "parameter", "arg", "argument", "key", "keyword"}
_RETURN_KINDS = {"return", "returns"}
_RAISE_KINDS = {"raise", "raises", "except", "exception"}


@dataclass
class Hook:
    """One hookspec: its name, parameter names in spec order and its docstring (cleaned)."""

    name: str
    params: list[str]
    doc: str
    line: int

    @property
    def signature(self) -> str:
        """``vendo_name(arg1, arg2)``."""
        return f"{self.name}({', '.join(self.params)})"


@dataclass
class Section:
    """A group of hooks under one comment banner of the hookspecs module."""

    title: str
    intro: list[str]
    line: int
    hooks: list[Hook] = field(default_factory=list)


def _hooks(module: ModuleType) -> list[Hook]:
    found = []
    for name, obj in vars(module).items():
        if not name.startswith("vendo_") or not isinstance(obj, FunctionType):
            continue
        if obj.__module__ != module.__name__:
            continue
        found.append(
            Hook(
                name=name,
                params=list(inspect.signature(obj).parameters),
                doc=inspect.cleandoc(obj.__doc__ or ""),
                line=obj.__code__.co_firstlineno,
            )
        )
    return sorted(found, key=lambda hook: hook.line)


def _banners(source: str) -> list[Section]:
    """Sections from the ``# ---`` / ``# Title`` / ``# ---`` banners, in source order."""
    lines = source.splitlines()
    sections: list[Section] = []
    index = 0
    while index < len(lines):
        if not _RULE.match(lines[index]):
            index += 1
            continue
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].startswith("#") and not _RULE.match(lines[index]):
            body.append(lines[index][1:].removeprefix(" ").rstrip())
            index += 1
        if index >= len(lines) or not _RULE.match(lines[index]):
            continue  # a lone rule, not a banner
        index += 1
        while body and not body[0]:
            body.pop(0)
        if not body:
            continue
        title, _, subtitle = body[0].partition(":")
        intro = []
        subtitle = subtitle.strip()
        if subtitle:
            intro.append(subtitle[0].upper() + subtitle[1:] + ("" if subtitle.endswith(".") else "."))
        rest = body[1:]
        while rest and not rest[0]:
            rest.pop(0)
        while rest and not rest[-1]:
            rest.pop()
        if rest:
            if intro:
                intro.append("")
            intro.extend(rest)
        sections.append(Section(title=title.strip(), intro=intro, line=start + 1))
    return sections


def _sections(module: ModuleType = hookspecs) -> list[Section]:
    """The module's hooks grouped under its banners; hooks before any banner go first."""
    sections = _banners(inspect.getsource(module))
    leading = Section(title="Hooks", intro=[], line=0)
    for hook in _hooks(module):
        owner = leading
        for section in sections:
            if section.line < hook.line:
                owner = section
        owner.hooks.append(hook)
    return [s for s in [leading, *sections] if s.hooks]


def hook_signatures() -> dict[str, str]:
    """Every hook of :mod:`vendo.hookspecs`, in source order, mapped to ``vendo_name(arg1, arg2)``."""
    return {hook.name: hook.signature for section in _sections() for hook in section.hooks}


# -- docstring to Markdown ---------------------------------------------------------------


def _inline(text: str, hook_names: set[str]) -> str:
    """reST roles and double-backtick literals as Markdown code (hooks become links)."""

    def role(match: re.Match[str]) -> str:
        target = match.group(1)
        if target.startswith("~"):
            target = target[1:].rsplit(".", 1)[-1]
        if target in hook_names:
            return f"[`{target}`](#{target})"
        return f"`{target}`"

    return _LITERAL.sub(r"`\1`", _ROLE.sub(role, text))


def _field_label(kind: str) -> str:
    if kind in _PARAM_KINDS:
        return "Parameters"
    if kind in _RETURN_KINDS:
        return "Returns"
    if kind in _RAISE_KINDS:
        return "Raises"
    return kind.capitalize()


def _render_fields(fields: list[tuple[str, str | None, str]], hook_names: set[str]) -> list[str]:
    out: list[str] = []
    label = None
    for kind, arg, text in fields:
        if _field_label(kind) != label:
            label = _field_label(kind)
            if out:
                out.append("")
            out += [f"**{label}**", ""]
        body = _inline(text, hook_names)
        if arg:
            name = arg.split()[-1]  # ":param type name:" keeps the name
            out.append(f"- `{name}`: {body}" if body else f"- `{name}`")
        else:
            out.append(f"- {body}")
    return out


def _render_doc(doc: str, hook_names: set[str]) -> list[str]:
    """A cleaned docstring as Markdown lines: paragraphs kept, fields as lists,
    ``::`` literal blocks fenced."""
    lines = doc.splitlines()
    out: list[str] = []
    index = 0

    def blank() -> None:
        if out and out[-1] != "":
            out.append("")

    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        if _FIELD.match(line):
            fields: list[tuple[str, str | None, str]] = []
            while index < len(lines) and lines[index].strip():
                match = _FIELD.match(lines[index])
                if match:
                    fields.append((match["kind"].lower(), match["arg"], (match["text"] or "").strip()))
                elif fields:  # continuation of the previous field
                    kind, arg, text = fields[-1]
                    fields[-1] = (kind, arg, f"{text} {lines[index].strip()}".strip())
                index += 1
            blank()
            out += _render_fields(fields, hook_names)
            continue
        paragraph = []
        while index < len(lines) and lines[index].strip() and not _FIELD.match(lines[index]):
            paragraph.append(lines[index].rstrip())
            index += 1
        literal = paragraph[-1].endswith("::")
        if literal:
            last = paragraph[-1][:-2].rstrip()
            paragraph[-1] = last + ":" if last else ""
            paragraph = [p for p in paragraph if p]
        blank()
        out += _inline("\n".join(paragraph), hook_names).split("\n")
        if literal:
            code: list[str] = []
            while index < len(lines) and (not lines[index].strip() or lines[index][:1].isspace()):
                code.append(lines[index])
                index += 1
            while code and not code[-1].strip():
                code.pop()
            while code and not code[0].strip():
                code.pop(0)
            indent = min((len(c) - len(c.lstrip()) for c in code if c.strip()), default=0)
            blank()
            out += ["```", *(c[indent:] for c in code), "```"]
    return out


def _slug(title: str) -> str:
    """GitHub's heading anchor for a plain-text title."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def render_markdown() -> str:
    """The Markdown reference of every hook in :mod:`vendo.hookspecs` (``docs/hooks.md``)."""
    sections = _sections()
    hook_names = {hook.name for section in sections for hook in section.hooks}
    out = [
        "# Vendo hook reference",
        "",
        "<!-- Generated from core/src/vendo/hookspecs.py: do not edit by hand. -->",
        f"<!-- Regenerate with: {REGENERATE_COMMAND} -->",
        "",
    ]
    out += _render_doc(inspect.cleandoc(hookspecs.__doc__ or ""), hook_names)
    out += ["", "## Contents", ""]
    for section in sections:
        out.append(f"- [{section.title}](#{_slug(section.title)})")
        out += [f"  - [`{hook.signature}`](#{hook.name})" for hook in section.hooks]
    for section in sections:
        out += ["", f"## {section.title}"]
        if section.intro:
            out.append("")
            out += _inline("\n".join(section.intro), hook_names).split("\n")
        for hook in section.hooks:
            out += ["", f'<a id="{hook.name}"></a>', "", f"### `{hook.signature}`"]
            body = _render_doc(hook.doc, hook_names)
            if body:
                out += ["", *body]
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
