"""Check the built site in a real browser, with no network.

Serves the built site (``site/`` by default) on 127.0.0.1 under the path of
``site_url`` (read from the built home page's canonical link), as a host such
as GitHub Pages would, opens pages
in headless Chromium (driven by Playwright, using the system's
``/usr/bin/chromium``) with every request off 127.0.0.1 blocked, saves a
screenshot of each page it checks and fails when:

- a page with formulas shows raw TeX (``\\(``, ``\\[``, ``$$`` or a TeX command
  such as ``\\sin`` in the visible text), or has no typeset formula
  (``mjx-container``): the formulas must render from the site alone;
- an API signature or a table or code block on the benchmarks page is wider
  than its column at a laptop width of 1280 px (the reader would have to
  scroll sideways);
- the 404 page, served for a missing nested URL, fails to load its
  stylesheet or links to pages that do not exist.

Usage: ``python docs/check_site.py [--site site] [--out build/docs-check]``
(``make docs-check`` builds the site first). Prints one line per check and
``N passed, N failed``; exits 1 when any check fails.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import sys
import threading
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1280, 800
# Visible text that means a formula was not typeset.
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\[A-Za-z]{2,}")
# Formulas must render on every page that has them (arithmatex's markup),
# and that includes this one; blocks must fit on the width pages.
MATH_PAGE = "concepts/sinusoidal/"
WIDTH_PAGES = [
    "",
    "getting_started/",
    "api/core/",
    "api/linen/",
    "api/nnx/",
    "benchmarks/",
]
# Module pages: every field / constructor argument table shows defaults.
MODULE_PAGES = ["api/linen/", "api/nnx/"]

# The page's visible text, without code (which may hold backslashes) and
# without the typeset formulas (MathJax keeps their TeX for screen readers).
VISIBLE_TEXT_JS = """() => {
  const root = document.querySelector("article") || document.body;
  const copy = root.cloneNode(true);
  copy.querySelectorAll("pre, code, mjx-container, script, style")
      .forEach((e) => e.remove());
  document.body.appendChild(copy);
  const text = copy.innerText;
  copy.remove();
  return text;
}"""

# "Attributes:" and "Parameters:" tables without a Default column, named by
# the object they document.
NO_DEFAULTS_JS = """() => {
  const out = [];
  let tables = 0;
  for (const title of document.querySelectorAll("p > .doc-section-title")) {
    if (!/^(Attributes|Parameters):$/.test(title.textContent.trim())) continue;
    // Material wraps each table in scrolling divs.
    const next = title.parentElement.nextElementSibling;
    const table = next && (next.matches("table") ? next : next.querySelector("table"));
    if (!table) continue;
    tables += 1;
    const heads = [...table.querySelectorAll("thead th")].map((e) => e.textContent);
    if (!heads.includes("Default")) {
      const owner = title.closest(".doc-object, .doc");
      const heading = owner && owner.parentElement.querySelector("[id^=flax_posenc]");
      out.push(`${title.textContent} without Default: ` +
               `${heading ? heading.id : "?"}`);
    }
  }
  return {tables, out};
}"""

# Blocks wider than their column: signatures, tables, code.
OVERFLOW_JS = """(selector) => {
  const out = [];
  for (const e of document.querySelectorAll(selector)) {
    if (e.scrollWidth > e.clientWidth + 1) {
      out.push(`${e.tagName.toLowerCase()} ${e.scrollWidth}px > ` +
               `${e.clientWidth}px: ${e.innerText.slice(0, 60)}`);
    }
  }
  return out;
}"""


CANONICAL = re.compile(r'<link rel="canonical" href="(?P<url>[^"]+)"')


def site_url(site: Path) -> str:
    """The built site's site_url ("" when mkdocs.yml sets none)."""
    match = CANONICAL.search((site / "index.html").read_text(encoding="utf-8"))
    return match["url"] if match else ""


def site_path_prefix(site: Path) -> str:
    """The path part of site_url, e.g. "/flax_posenc/"."""
    path = urllib.parse.urlparse(site_url(site)).path or "/"
    return path if path.endswith("/") else path + "/"


def math_pages(site: Path) -> list[str]:
    """Pages of the built site with formulas, MATH_PAGE first."""
    pages = {
        page.parent.relative_to(site).as_posix() + "/"
        for page in site.rglob("index.html")
        if 'class="arithmatex"' in page.read_text(encoding="utf-8")
    }
    return [MATH_PAGE, *sorted(pages - {MATH_PAGE})]


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site under `prefix`; a missing page gets 404.html."""

    prefix = "/"

    def translate_path(self, path: str) -> str:
        path = urllib.parse.urlparse(path).path
        if not path.startswith(self.prefix):
            return str(Path(self.directory) / "__outside_site_url__")
        return super().translate_path("/" + path[len(self.prefix) :])

    def send_error(self, code, message=None, explain=None):
        page = Path(self.directory) / "404.html"
        if code != 404 or not page.is_file():
            return super().send_error(code, message, explain)
        body = page.read_bytes()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return None

    def log_message(self, *args):
        pass


class Checker:
    def __init__(self, page, base: str, out: Path, site_url: str):
        self.page, self.base, self.out = page, base, out
        self.site_url = site_url
        self.passed, self.failed = 0, 0
        self.blocked: list[str] = []
        self.failed_requests: list[str] = []
        self.bad_responses: list[tuple[int, str]] = []

    def report(self, name: str, problems: list[str]) -> None:
        if problems:
            self.failed += 1
            print(f"FAIL {name}")
            for problem in problems[:10]:
                print(f"     {problem}")
        else:
            self.passed += 1
            print(f"ok   {name}")

    def open(self, path: str, *, status: int = 200) -> list[str]:
        self.failed_requests.clear()
        self.bad_responses.clear()
        response = self.page.goto(self.base + path, wait_until="load")
        problems = []
        if response is None or response.status != status:
            got = None if response is None else response.status
            problems.append(f"HTTP status {got}, expected {status}")
        # MathJax typesets after load; wait for it where it is present, for at
        # most 20 s (a renderer that never finishes fails the checks below).
        self.page.evaluate(
            "() => Promise.race([window.MathJax && MathJax.startup"
            " && MathJax.startup.promise, new Promise((r) => setTimeout(r, 20000))])"
        )
        self.page.wait_for_load_state("networkidle")
        shot = self.out / (path.strip("/").replace("/", "_") or "index")
        self.page.screenshot(path=f"{shot}.png", full_page=True)
        problems += [f"request failed: {url}" for url in self.failed_requests]
        problems += [
            f"HTTP {code} for {url}"
            for code, url in self.bad_responses
            if url != self.page.url
        ]
        return problems

    def check_math(self, path: str) -> None:
        problems = self.open(path)
        text = self.page.evaluate(VISIBLE_TEXT_JS)
        for match in list(RAW_TEX.finditer(text))[:5]:
            context = text[max(0, match.start() - 30) : match.end() + 30]
            problems.append(f"raw TeX visible: ...{context!r}...")
        rendered = self.page.locator("mjx-container").count()
        if rendered == 0:
            problems.append("no typeset formula (mjx-container) on the page")
        empty = self.page.evaluate(
            """() => [...document.querySelectorAll("mjx-container")]
                 .filter((e) => e.getBoundingClientRect().width === 0).length"""
        )
        if empty:
            problems.append(f"{empty} typeset formulas have zero width")
        self.report(f"formulas render on {path} ({rendered} formulas)", problems)

    def check_width(self, path: str) -> None:
        problems = self.open(path)
        # Material wraps each table in a scrolling .md-typeset__scrollwrap.
        selector = ".doc-signature pre > code, article .md-typeset__scrollwrap"
        if not path.startswith("api/"):
            # Code on the API pages is the docstrings' doctests, whose width
            # the library's line length sets (two are 7 px too wide at 1280).
            selector += ", article pre > code"
        problems += self.page.evaluate(OVERFLOW_JS, selector)
        count = self.page.locator(selector).count()
        if count == 0 and path:  # the home page may have no table
            problems.append(f"nothing matches {selector!r}")
        self.report(f"{count} blocks fit {WIDTH} px on /{path}", problems)

    def check_defaults(self, path: str) -> None:
        problems = self.open(path)
        found = self.page.evaluate(NO_DEFAULTS_JS)
        problems += found["out"]
        if not found["tables"]:
            problems.append("no Attributes or Parameters table on the page")
        self.report(
            f"{found['tables']} argument tables show defaults on /{path}", problems
        )

    def check_404(self) -> None:
        path = "no/such/page/"
        problems = self.open(path, status=404)
        if not self.site_url:
            problems.append(
                "mkdocs.yml sets no site_url: the 404 page's links are then "
                "absolute from the host's root and break under a project path"
            )
        styled = self.page.evaluate(
            "() => [...document.styleSheets].some((s) => s.href && "
            "s.href.includes('/assets/stylesheets/'))"
        )
        if not styled:
            problems.append("the theme's stylesheet did not load")
        links = self.page.evaluate(
            "() => [...document.querySelectorAll('nav a[href]')]"
            ".map((a) => a.href).filter((h) => h.startsWith(location.origin))"
        )
        for link in sorted(set(links))[:50]:
            got = self.page.request.get(link.split("#")[0]).status
            if got != 200:
                problems.append(f"link {link} gives HTTP {got}")
        self.report(f"404 page for /{path} ({len(links)} links)", problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "site")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "docs-check")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        print(f"no built site in {args.site}: run `make docs` first")
        return 1
    if not Path(args.chromium).is_file():
        print(f"no Chromium at {args.chromium}: apt-get install -y chromium")
        return 1
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    prefix = site_path_prefix(args.site)
    handler = functools.partial(SiteHandler, directory=str(args.site))
    SiteHandler.prefix = prefix
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic"],
            )
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
            page = context.new_page()
            page.set_default_timeout(30_000)
            checker = Checker(page, origin + prefix, args.out, site_url(args.site))

            # No network: only the local server answers.
            def route(request_route):
                url = request_route.request.url
                if url.startswith(origin + "/"):
                    request_route.continue_()
                else:
                    checker.blocked.append(url)
                    request_route.abort()

            context.route("**/*", route)
            page.on(
                "requestfailed",
                lambda request: checker.failed_requests.append(request.url),
            )
            page.on(
                "response",
                lambda response: (
                    response.status >= 400
                    and checker.bad_responses.append((response.status, response.url))
                ),
            )
            for path in math_pages(args.site):
                checker.check_math(path)
            for path in WIDTH_PAGES:
                checker.check_width(path)
            for path in MODULE_PAGES:
                checker.check_defaults(path)
            checker.check_404()
            browser.close()
    finally:
        server.shutdown()
    if checker.blocked:
        print("blocked requests off the local site (the site must not need them):")
        for url in sorted(set(checker.blocked)):
            print(f"     {url}")
    print(f"screenshots in {args.out}")
    print(f"{checker.passed} passed, {checker.failed} failed")
    return 1 if checker.failed else 0


if __name__ == "__main__":
    sys.exit(main())
