"""Griffe extensions that adapt the library's docstrings to the site.

`BacktickCrossrefs`: names in docstrings link to their API entries. The
library's docstrings name other public objects in plain backticks
(`` `apply_rope` ``, `` `flax_posenc.embedding_lookup` ``, `` `attend` ``),
which mkdocstrings renders as code, not as links. This extension, loaded by
mkdocstrings (mkdocs.yml), rewrites each such name that resolves to an entry
of the API reference into a cross-reference
(`` [`apply_rope`][flax_posenc.apply_rope] ``), so the reader can follow it.
A name resolves, in order, to a member of the same class, a public name of
the same package (`flax_posenc.linen`, `flax_posenc.nnx` or `flax_posenc`),
or a public name of `flax_posenc`.
Names of other projects (jax, flax) stay code: their inventories would have
to be downloaded at build time, and the site builds with no network.

`RstMath`: a reStructuredText ``.. math::`` block, which Markdown would show as
raw TeX, becomes a ``$$ ... $$`` display formula that MathJax typesets.

`BacktickCrossrefs` also turns a URL written as code (the papers' arXiv links,
in double backticks) into a link.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

DOCS = Path(__file__).resolve().parent
API_ENTRY = re.compile(r"^:::[ \t]+(?P<name>\S+)", re.MULTILINE)
# One name in single backticks (not part of a ``double`` span).
NAME = re.compile(r"(?<![`\w\[])`(?P<name>[A-Za-z_][\w.]*)`(?![`\w\]])")
PACKAGES = ("flax_posenc.linen", "flax_posenc.nnx")
# A URL in single or double backticks.
URL = re.compile(r"(?<!`)(`{1,2})(?P<url>https?://[^`\s]+)\1(?!`)")


def _api_entries() -> set[str]:
    entries = set()
    for page in sorted((DOCS / "api").glob("*.md")):
        entries |= {m["name"] for m in API_ENTRY.finditer(page.read_text())}
    return entries


def _public_package(path: str) -> str:
    for package in PACKAGES:
        if path == package or path.startswith(package + "."):
            return package
    return "flax_posenc"


class BacktickCrossrefs(griffe.Extension):
    """Turns `` `name` `` in docstrings into links to documented objects."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        entries = _api_entries()
        # Documented members of documented classes (methods, properties).
        targets = set(entries)
        for entry in entries:
            try:
                obj = pkg.modules_collection[entry]
            except KeyError:
                continue
            if obj.is_class or (obj.is_alias and obj.final_target.is_class):
                for name, member in obj.members.items():
                    if member.docstring and not re.match(r"_[^_]", name):
                        targets.add(f"{entry}.{name}")
        self._rewrite(pkg, targets, set())

    def _rewrite(self, obj: griffe.Object, targets: set[str], seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = self._link(obj, obj.docstring.value, targets)
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite(member, targets, seen)

    def _link(self, obj: griffe.Object, text: str, targets: set[str]) -> str:
        package = _public_package(obj.path)
        owner = obj if obj.is_class else obj.parent
        scopes = []
        if owner is not None and owner.is_class:
            scopes.append(f"{package}.{owner.name}")
        scopes += [package, "flax_posenc"]

        def resolve(match: re.Match) -> str:
            name = match["name"]
            candidates = [name] if name.startswith("flax_posenc.") else []
            candidates += [f"{scope}.{name}" for scope in scopes]
            for candidate in candidates:
                if candidate in targets:
                    return f"[`{name}`][{candidate}]"
            return match.group(0)

        lines, fenced = [], False
        for line in text.splitlines(keepends=True):
            stripped = line.lstrip()
            if stripped.startswith(("```", "~~~")):
                fenced = not fenced
            if fenced or stripped.startswith((">>>", "...")):
                lines.append(line)
            else:
                line = URL.sub(lambda m: f"<{m['url']}>", line)
                lines.append(NAME.sub(resolve, line))
        return "".join(lines)


# A ".. math::" directive and its indented body (up to a less indented line).
RST_MATH = re.compile(
    r"^(?P<indent>[ \t]*)\.\. math::[ \t]*\n"
    r"(?P<body>(?:(?P=indent)[ \t]+\S[^\n]*\n?|[ \t]*\n)+)",
    re.MULTILINE,
)


def _rst_math_to_display(match: re.Match) -> str:
    indent = match["indent"]
    body = match["body"].rstrip()
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    trailing = match["body"][len(match["body"].rstrip()) :]
    formula = "\n".join(f"{indent}{line}" for line in lines)
    return f"{indent}$$\n{formula}\n{indent}$$\n" + trailing.lstrip(" \t")


class RstMath(griffe.Extension):
    """Turns ``.. math::`` blocks in docstrings into ``$$`` display formulas."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._rewrite(pkg, set())

    def _rewrite(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None and ".. math::" in obj.docstring.value:
            obj.docstring.value = RST_MATH.sub(
                _rst_math_to_display, obj.docstring.value
            )
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite(member, seen)
