"""The documentation site reads with no network (fast; no mkdocs, no browser).

`make docs-check` proves it in headless Chromium; these tests catch the usual
ways of breaking it (a CDN script, web fonts, no site_url) in `make test`.
mkdocs.yml and pyproject.toml are read as text: the test extra has no PyYAML.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = (ROOT / "mkdocs.yml").read_text()


def _block(name: str) -> str:
    """The lines of a top-level mkdocs.yml key, up to the next top-level key."""
    match = re.search(rf"^{name}:.*?(?=^\S|\Z)", MKDOCS, re.MULTILINE | re.DOTALL)
    return match.group(0) if match else ""


def test_site_loads_no_script_or_style_from_outside():
    for key in ("extra_javascript", "extra_css"):
        remote = re.findall(r"https?://\S+", _block(key))
        assert not remote, f"{key} loads from the network: {remote}"


def test_theme_uses_no_web_fonts():
    # Material loads Google Fonts unless told not to.
    assert re.search(r"^\s+font:\s*false\s*$", _block("theme"), re.MULTILINE)


def test_mathjax_ships_with_the_site():
    hooks = _block("hooks")
    assert "docs/hooks.py" in hooks
    assert "javascripts/mathjax/tex-svg.js" in _block("extra_javascript")
    hook = (ROOT / "docs" / "hooks.py").read_text()
    assert 'MATHJAX_URI = "javascripts/mathjax/tex-svg.js"' in hook
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"django-static-mathjax==[\d.]+"', pyproject)


def test_site_url_is_set_for_the_404_page():
    assert re.search(r"^site_url:\s*https?://\S+/\s*$", MKDOCS, re.MULTILINE)
