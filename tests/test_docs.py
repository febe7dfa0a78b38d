"""The documentation site: code blocks run, API pages and images are complete.

Needs only pytest and the project itself (no mkdocs, no PyYAML): the nav of
mkdocs.yml is read with a regular expression.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")  # before any page imports matplotlib

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

# A fenced block, possibly indented (inside an admonition or a list item); the
# closing fence has the same indentation as the opening one.
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*\n"
    r"(?P<body>.*?)"
    r"^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?(?P<src>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_IMAGE = re.compile(r"<img\b[^>]*\bsrc=[\"'](?P<src>[^\"']+)[\"']", re.IGNORECASE)
API_ENTRY = re.compile(r"^:::[ \t]+(?P<name>\S+)", re.MULTILINE)
NAV_PAGE = re.compile(r"^\s*-\s+(?:[^:\n]+:\s+)?(?P<page>\S+\.md)\s*$")


def _page_id(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, dedented body)`` of every fenced block, in order."""
    return [
        (m["lang"].lower(), textwrap.dedent(m["body"])) for m in FENCE.finditer(text)
    ]


def _without_code(text: str) -> str:
    return FENCE.sub("", text)


# A content tab (pymdownx.tabbed): `=== "linen"`; its blocks are indented below.
TAB = re.compile(r'^[ \t]*===[ \t]+"(?P<label>[^"]+)"[ \t]*$')


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _tab_of(text: str, start: int, indent: int) -> str | None:
    """The label of the content tab holding the line at `start`, or None.

    Walks up the lines before it to the first one indented less (the block's
    parent), then to that one's parent, and so on, until a tab header or the
    page's top level.
    """
    for line in reversed(text[:start].splitlines()):
        if not line.strip() or _indent(line) >= indent:
            continue
        match = TAB.match(line)
        if match:
            return match["label"]
        indent = _indent(line)
        if indent == 0:
            return None
    return None


def _python_blocks(text: str) -> list[tuple[str | None, str]]:
    """``(tab label or None, dedented body)`` of every ```python block, in order."""
    return [
        (_tab_of(text, m.start(), len(m["indent"])), textwrap.dedent(m["body"]))
        for m in FENCE.finditer(text)
        if m["lang"].lower() == "python"
    ]


def _reader_paths(text: str) -> dict[str, list[str]]:
    """The blocks a reader copies, by path: the blocks outside content tabs
    plus those of one tab ("linen", "NNX"), in page order; "all" on a page
    without tabs."""
    blocks = _python_blocks(text)
    labels = list(dict.fromkeys(label for label, _ in blocks if label is not None))
    if not labels:
        return {"all": [body for _, body in blocks]} if blocks else {}
    return {
        label: [body for tab, body in blocks if tab in (None, label)]
        for label in labels
    }


READER_PATHS = [
    pytest.param(page, path, id=f"{_page_id(page)}[{path}]")
    for page in PAGES
    for path in _reader_paths(page.read_text())
]


def test_reader_paths_split_tabs():
    page = textwrap.dedent(
        """\
        ```python
        a = 1
        ```

        === "linen"

            ```python
            b = 2
            ```

            !!! note

                ```python
                c = 3
                ```

        === "NNX"

            ```python
            d = 4
            ```

        ```python
        e = 5
        ```
        """
    )
    assert _reader_paths(page) == {
        "linen": ["a = 1\n", "b = 2\n", "c = 3\n", "e = 5\n"],
        "NNX": ["a = 1\n", "d = 4\n", "e = 5\n"],
    }
    assert _reader_paths("```python\nx = 1\n```\n") == {"all": ["x = 1\n"]}


# Pages that set up devices of their own (XLA_FLAGS, before jax is
# imported) run in a Python process of their own, as a reader runs them.
OWN_PROCESS = {"sharding.md"}


def run_reader_path(page_id: str, path: str) -> None:
    """Runs one reader path of a page in order in one fresh namespace.

    Each ``# Prints: X`` line must be in what its block printed.
    """
    blocks = _reader_paths((DOCS / page_id).read_text())[path]
    # A real, registered module: dataclasses (and so Flax modules) defined in a
    # block look their module up in sys.modules.
    module = types.ModuleType("_docs_page_" + re.sub(r"\W", "_", f"{page_id}_{path}"))
    sys.modules[module.__name__] = module
    try:
        for i, body in enumerate(blocks):
            where = f"{page_id}[{path} python block {i}]"
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(body, where, "exec"), module.__dict__)
            sys.stdout.write(printed.getvalue())
            for text in _announced_prints(body):
                assert text in printed.getvalue(), (
                    f"{where} says it prints {text!r}; "
                    f"it printed {printed.getvalue()!r}"
                )
    finally:
        del sys.modules[module.__name__]
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")


@pytest.mark.parametrize(("page", "path"), READER_PATHS)
def test_python_blocks_run(page, path, tmp_path, monkeypatch):
    """Every reader path of a page runs in order in one fresh namespace.

    A page with linen and NNX tabs is read two ways: the blocks outside the
    tabs with the linen tab's, or with the NNX tab's; each must run without
    the other tab. A ``# Prints: X`` line says what the block prints.
    """
    monkeypatch.chdir(tmp_path)  # files a block writes go nowhere near the repo
    if _page_id(page) not in OWN_PROCESS:
        run_reader_path(_page_id(page), path)
        return
    program = (
        "from tests.test_docs import run_reader_path; "
        f"run_reader_path({_page_id(page)!r}, {path!r})"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def _announced_prints(block: str) -> list[str]:
    """What a block's ``# Prints: X`` lines say it prints."""
    return re.findall(r"^\s*#\s*Prints:\s*(\S.*?)\s*$", block, re.M)


def _expected_prints(block: str) -> list[str]:
    """What a block says it prints: ``print(...)  # X`` or a ``# Prints: X`` line."""
    trailing = re.findall(r"^\s*print\(.*\)[ \t]*#[ \t]*(\S.*?)\s*$", block, re.M)
    return trailing + _announced_prints(block)


def test_expected_prints_are_found():
    block = "x = 1\nprint(x)  # 1\n# Prints: a b\nprint('a', 'b')\nprint(2)\n"
    assert _expected_prints(block) == ["1", "a b"]


def test_readme_python_blocks_print_what_they_say(tmp_path, monkeypatch, capsys):
    """Each README ```python block runs, prints, and prints what its comments say."""
    blocks = [
        body
        for lang, body in _fenced_blocks((ROOT / "README.md").read_text())
        if lang == "python"
    ]
    assert blocks
    monkeypatch.chdir(tmp_path)
    for i, body in enumerate(blocks):
        module = types.ModuleType(f"_readme_block_{i}")
        monkeypatch.setitem(sys.modules, module.__name__, module)
        exec(compile(body, f"README.md[python block {i}]", "exec"), module.__dict__)
        printed = capsys.readouterr().out
        assert printed.strip(), f"README python block {i} prints nothing"
        expected = _expected_prints(body)
        assert expected, f"README python block {i} does not say what it prints"
        for text in expected:
            assert text in printed, (
                f"README python block {i} says it prints {text!r}; "
                f"it printed {printed!r}"
            )


def _api_entries() -> list[str]:
    entries = []
    for page in sorted((DOCS / "api").glob("*.md")):
        entries += [m["name"] for m in API_ENTRY.finditer(page.read_text())]
    return entries


def test_api_reference_covers_every_public_name():
    import flax_posenc
    import flax_posenc.linen
    import flax_posenc.nnx

    public = [f"flax_posenc.{n}" for n in flax_posenc.__all__]
    public += [f"flax_posenc.linen.{n}" for n in flax_posenc.linen.__all__]
    public += [f"flax_posenc.nnx.{n}" for n in flax_posenc.nnx.__all__]
    entries = _api_entries()
    missing = sorted(set(public) - set(entries))
    stale = sorted(set(entries) - set(public))
    duplicated = sorted({e for e in entries if entries.count(e) > 1})
    assert not missing, f"public names without a '::: ' entry in docs/api: {missing}"
    assert not stale, f"'::: ' entries that are not public names: {stale}"
    assert not duplicated, f"names documented more than once: {duplicated}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_images_exist(page):
    text = _without_code(page.read_text())
    sources = [m["src"] for m in IMAGE.finditer(text)]
    sources += [m["src"] for m in HTML_IMAGE.finditer(text)]
    missing = []
    for src in sources:
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.IGNORECASE):  # http:, data:
            continue
        path = src.split("#", 1)[0].split("?", 1)[0]
        if not (page.parent / path).is_file():
            missing.append(src)
    assert not missing, f"{_page_id(page)} references missing images: {missing}"


def test_nav_pages_exist():
    nav = []
    for line in (ROOT / "mkdocs.yml").read_text().splitlines():
        match = NAV_PAGE.match(line)
        if match:
            nav.append(match["page"])
    assert nav, "no .md pages found in the nav of mkdocs.yml"
    missing = [page for page in nav if not (DOCS / page).is_file()]
    assert not missing, f"pages in the mkdocs.yml nav that do not exist: {missing}"
