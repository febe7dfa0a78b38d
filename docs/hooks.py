"""MkDocs hooks: bundle the MathJax renderer with the site; keep names whole.

The formulas on the concept and API pages are typeset in the browser by
MathJax 3. Instead of loading it from a CDN (which leaves raw TeX on screen
for a reader without network), the site ships its own copy: the single-file
`es5/tex-svg.js` component (fonts inlined as SVG paths, no other file to
fetch) from the PyPI package `django-static-mathjax`: MathJax 3.2.2's
components as static files, with no dependencies, pinned in the `docs` extra of
`pyproject.toml`. `make docs` installs that extra, so a fresh clone needs
nothing but pip; `mkdocs serve` serves the same file.

Browsers may break a line after a hyphen or a slash, also inside inline code:
`--norm-position` would wrap as `--norm-` / `position`. Each name in inline
code that holds one (a flag, a path, `1e-3`) is wrapped in a
`<span class="fp-nowrap">` (docs/stylesheets/extra.css keeps it on one
line); the code still wraps at its spaces, and its text is unchanged.
"""

from __future__ import annotations

import importlib.resources
import re

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

# Where the script lands in the site; mkdocs.yml's extra_javascript names it.
MATHJAX_URI = "javascripts/mathjax/tex-svg.js"


def _mathjax_source() -> str:
    try:
        root = importlib.resources.files("mathjax")
    except ModuleNotFoundError as error:
        raise PluginError(
            "MathJax is not installed: run `pip install -e '.[docs]'` "
            "(it provides django-static-mathjax)"
        ) from error
    path = root / "static" / "mathjax" / "es5" / "tex-svg.js"
    if not path.is_file():
        raise PluginError(f"MathJax's tex-svg.js is missing at {path}")
    return str(path)


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, MATHJAX_URI, abs_src_path=_mathjax_source()))
    return files


# A code block (left alone) or an inline code span (its content: group 1).
_PRE_OR_CODE = re.compile(r"<pre\b.*?</pre>|<code>(.*?)</code>", re.DOTALL)
_TAG = re.compile(r"(<[^>]*>)")
# A name with a hyphen or slash inside: a browser could break it there.
_JOINED_NAME = re.compile(r"[\w.\-/]*[\w.][\-/][\w.\-/]*|[\-/]+[\w.][\w.\-/]*")


def _keep_names_whole(code: str) -> str:
    parts = _TAG.split(code)  # text, tag, text, ...: only text is changed
    for i in range(0, len(parts), 2):
        parts[i] = _JOINED_NAME.sub(
            lambda m: f'<span class="fp-nowrap">{m[0]}</span>', parts[i]
        )
    return "".join(parts)


def on_page_content(html: str, *, page: Page, config: MkDocsConfig, files: Files):
    return _PRE_OR_CODE.sub(
        lambda m: m[0] if m[1] is None else f"<code>{_keep_names_whole(m[1])}</code>",
        html,
    )
