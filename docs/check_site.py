"""Check the built site in a real browser, with no network.

Serves the built site (``site/`` by default) on 127.0.0.1 under the path of
``site_url`` (read from the built home page's canonical link), as a host such
as GitHub Pages would, opens every page in headless Chromium (driven by
Playwright, using the system's ``/usr/bin/chromium``) with every request off
127.0.0.1 blocked, saves a screenshot of each (and of each further content
tab: ``NAME-tab2.png``) and fails when, on any page:

- a request fails, or the page needs one off the site;
- a page with formulas shows raw TeX (``\\(``, ``\\[``, ``$$`` or a TeX command
  such as ``\\sin`` in the visible text), or has no typeset formula
  (``mjx-container``): the formulas must render from the site alone;
- a table, code block or API signature is wider than its column at a laptop
  width of 1280 px (the reader would have to scroll sideways), in every
  content tab (linen and NNX);
- an inline code span (an identifier in a table, say) wraps inside a word:
  two adjacent characters of a name (letters, digits, ``_.-/``) sit on
  different lines;
- a code block's copy button covers a character of the code;
- on the module pages, an "Attributes" or "Parameters" table has no Default
  column;

and when the 404 page, served for a missing nested URL, fails to load its
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
# The first page checked: a page with formulas, so a renderer that fails
# shows at once.
FIRST_PAGE = "concepts/sinusoidal/"
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

# Blocks wider than their column: signatures, tables, code. Those in a
# hidden content tab have no width, and are checked when their tab shows.
# Each check marks what it checked (data-checked): shown again with the next
# tab, an element is not checked, nor counted, twice.
BLOCKS = (
    ".doc-signature pre > code, article .md-typeset__scrollwrap, article pre > code"
)
OVERFLOW_JS = """(selector) => {
  const out = [];
  let visible = 0;
  for (const e of document.querySelectorAll(selector)) {
    if (!e.getClientRects().length || "checked" in e.dataset) continue;
    e.dataset.checked = "";
    visible += 1;
    if (e.scrollWidth > e.clientWidth + 1) {
      // Code: its longest line; a table: its first row.
      const lines = e.innerText.split("\\n");
      const line = e.matches("code") ?
        lines.reduce((a, b) => (b.length > a.length ? b : a)) : lines[0];
      out.push(`${e.tagName.toLowerCase()} ${e.scrollWidth}px > ` +
               `${e.clientWidth}px: ${JSON.stringify(line.slice(0, 100))}`);
    }
  }
  return {count: visible, out};
}"""

# The characters of an element's text with their boxes and their line
# numbers in the text, in order.
CHARS_JS = """
function chars(element) {
  const out = [];
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  let line = 0;  // counted at the newlines of the text (a code block's lines)
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const box = range.getBoundingClientRect();
      out.push({c: node.data[i], box, line});
      if (node.data[i] === "\\n") line += 1;
    }
  }
  return out;
}
"""

# Inline code spans that wrap inside a word: between two characters of an
# identifier, a dotted name, a path or a command-line flag (letters, digits,
# "_", ".", "/", "-"), e.g. `rope_config_fr|om_hf` or `--norm-|position`.
# A break at a space, or after "=" or ",", is a line break, not a broken word.
MID_WORD_JS = (
    "() => {"
    + CHARS_JS
    + """
  const out = [];
  let spans = 0;
  for (const code of document.querySelectorAll("article code")) {
    if (code.closest("pre") || !code.getClientRects().length) continue;
    if ("checked" in code.dataset) continue;
    code.dataset.checked = "";
    spans += 1;
    if (code.getClientRects().length < 2) continue;
    const cs = chars(code);
    for (let i = 1; i < cs.length; i++) {
      const [a, b] = [cs[i - 1], cs[i]];
      if (!/[\\w.\\/-]/.test(a.c) || !/[\\w.\\/-]/.test(b.c)) continue;
      if (!a.box.width || !b.box.width) continue;
      if (b.box.top > a.box.top + a.box.height / 2) {
        const text = code.textContent;
        const where = code.closest("td, th") ? "table cell" : "text";
        out.push(`${where}: ${JSON.stringify(text.slice(0, i))} | ` +
                 `${JSON.stringify(text.slice(i))}`);
        break;
      }
    }
  }
  return {count: spans, out};
}"""
)

# Code blocks whose copy button covers a character. Material puts the button
# in a box (.md-code__nav, with a background) at the block's top right, and
# names the code it copies in data-clipboard-target.
COPY_BUTTON_JS = (
    "() => {"
    + CHARS_JS
    + """
  const out = [];
  let buttons = 0;
  for (const button of document.querySelectorAll("article [data-clipboard-target]")) {
    const b = (button.closest(".md-code__nav") || button).getBoundingClientRect();
    const code = document.querySelector(button.dataset.clipboardTarget);
    if (!b.width || !code || "checked" in button.dataset) continue;
    button.dataset.checked = "";
    buttons += 1;
    const covered = chars(code).filter(({c, box}) => !/\\s/.test(c) &&
      box.width && box.left < b.right && box.right > b.left &&
      box.top < b.bottom && box.bottom > b.top);
    if (covered.length) {
      const lines = code.textContent.split("\\n");
      const under = [...new Set(covered.map(({line}) => line))].map((line) => {
        const text = covered.filter((c) => c.line === line).map(({c}) => c).join("");
        return `${JSON.stringify(text)} of ${JSON.stringify(lines[line])}`;
      });
      out.push(`under the button: ${under.join("; ")}`);
    }
  }
  return {count: buttons, out};
}"""
)

# Shows the k-th tab of every set of content tabs that has one; returns how
# many sets changed.
SHOW_TAB_JS = """(k) => {
  let shown = 0;
  for (const set of document.querySelectorAll(".tabbed-set")) {
    const inputs = set.querySelectorAll(":scope > input");
    if (k < inputs.length) {
      inputs[k].checked = true;
      shown += 1;
    }
  }
  return shown;
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


def pages(site: Path) -> list[str]:
    """Every page of the built site, FIRST_PAGE first ("" is the home page)."""
    found = set()
    for page in site.rglob("index.html"):
        folder = page.parent.relative_to(site).as_posix()
        found.add("" if folder == "." else folder + "/")
    return [FIRST_PAGE, *sorted(found - {FIRST_PAGE})]


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
        self.screenshot(path)
        problems += [f"request failed: {url}" for url in self.failed_requests]
        problems += [
            f"HTTP {code} for {url}"
            for code, url in self.bad_responses
            if url != self.page.url
        ]
        return problems

    def screenshot(self, path: str, suffix: str = "") -> None:
        name = path.strip("/").replace("/", "_") or "index"
        self.page.screenshot(path=f"{self.out / name}{suffix}.png", full_page=True)

    def check_page(self, path: str) -> None:
        """Every check of one page, which is opened once."""
        self.report(f"/{path} loads from the site alone", self.open(path))
        if self.page.locator(".arithmatex").count():
            self.check_math(path)
        self.check_layout(path)
        if path in MODULE_PAGES:
            self.check_defaults(path)

    def check_math(self, path: str) -> None:
        problems = []
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
        self.report(f"formulas render on /{path} ({rendered} formulas)", problems)

    def check_layout(self, path: str) -> None:
        """Widths, mid-word breaks and copy buttons, with each content tab shown.

        The page shows the first tab of every set; then each further tab in
        turn (the k-th of every set that has k tabs), screenshot as
        ``NAME-tabK.png``.
        """
        checks = {
            "blocks fit {WIDTH} px": lambda: self.page.evaluate(OVERFLOW_JS, BLOCKS),
            "code spans unbroken mid-word": lambda: self.page.evaluate(MID_WORD_JS),
            "copy buttons clear of code": lambda: self.page.evaluate(COPY_BUTTON_JS),
        }
        found = {name: {"count": 0, "out": []} for name in checks}
        tab = 0
        while True:
            if tab and not self.page.evaluate(SHOW_TAB_JS, tab):
                break
            if tab:
                self.screenshot(path, f"-tab{tab + 1}")
            where = f" (tab {tab + 1})" if tab else ""
            for name, check in checks.items():
                result = check()
                found[name]["count"] += result["count"]
                found[name]["out"] += [problem + where for problem in result["out"]]
            tab += 1
        for name, result in found.items():
            label = name.format(WIDTH=WIDTH)
            self.report(f"{result['count']} {label} on /{path}", result["out"])

    def check_defaults(self, path: str) -> None:
        problems = []
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
    parser.add_argument(
        "--page",
        action="append",
        help="check only this page (e.g. porting/; repeatable) and the 404 page",
    )
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
            for path in args.page or pages(args.site):
                checker.check_page(path)
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
