"""MkDocs hooks: bundle the MathJax renderer with the site.

The formulas on the concept and API pages are typeset in the browser by
MathJax 3. Instead of loading it from a CDN (which leaves raw TeX on screen
for a reader without network), the site ships its own copy: the single-file
`es5/tex-svg.js` component (fonts inlined as SVG paths, no other file to
fetch) from the PyPI package `django-static-mathjax`: MathJax 3.2.2's
components as static files, with no dependencies, pinned in the `docs` extra of
`pyproject.toml`. `make docs` installs that extra, so a fresh clone needs
nothing but pip; `mkdocs serve` serves the same file.
"""

from __future__ import annotations

import importlib.resources

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

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
