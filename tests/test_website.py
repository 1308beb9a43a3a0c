"""The rendered journal in a real browser (headless Debian Chromium driven by Playwright).

The journal is rendered from the committed notebooks plus a small fixture notebook (a plotly figure
through `viz.show`, circuitsvis views through `viz.show_circuitsvis` and circuitsvis's own HTML)
into a temporary folder and served from 127.0.0.1. Every page must load with no JavaScript error and
no request leaving the machine, draw every plotly figure and fill every circuitsvis view. A
screenshot of each page goes to build/screenshots/<page>.png for a person to look at.

A second, hostile fixture notebook carries script in what it recorded (findings, headline, a Markdown
output) and in its figures (plotly title, labels and layout.height; circuitsvis tokens): rendered by
the real renderer, its pages must show that text and run none of it (no `window.__pwned`, no dialog).
"""
import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import nbformat
import pytest

from glassbox import paths
from glassbox.journal import catalogue, exercises

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # no host but this one resolves
SCREENSHOTS = paths.ROOT / "build" / "screenshots"
FIXTURE = "99_website_fixture"
NOTEBOOKS = catalogue.notebooks()
PAGES = ["index", "glossary", "library", *(nb.stem for nb in NOTEBOOKS), FIXTURE]

FIXTURE_CELLS = [
    ("md", f"# 99 · Website fixture\n\n[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
           f"(https://colab.research.google.com/github/glassbox-journal/journal/blob/main/notebooks/{FIXTURE}.ipynb)\n\n"
           "Math in markdown: $W_{OV} = W_V W_O$ and $$\\sum_i x_i^2.$$"),
    ("code", "import sys\nif 'google.colab' in sys.modules:  # stands for the Colab setup cell\n    pass"),
    ("md", "## A first section\n\nThe [residual stream](GLOSSARY.md#residual-stream) is defined in the glossary."),
    ("code", "import plotly.express as px\nfrom glassbox import viz\n"
             "viz.show(px.line(x=[0, 1, 2], y=[1, 3, 2], title='a plotly figure (with its static PNG)'))"),
    ("code", "import circuitsvis as cv\nimport torch\nfrom IPython.display import HTML, display\n"
             "attn = torch.softmax(torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0)), -1)\n"
             "viz.show_circuitsvis(cv.attention.attention_heads(attention=attn, tokens=list('abcd')))  # carries the bundle\n"
             "viz.show_circuitsvis(cv.attention.attention_pattern(tokens=list('abcd'), attention=attn[0]))"),
    ("code", "display(HTML(str(cv.attention.attention_pattern(tokens=list('abcd'), attention=attn[1]))))  # CDN form\n"
             "cv.attention.attention_heads(attention=attn, tokens=list('abcd'))  # circuitsvis's own HTML"),
    ("code", "from IPython.display import Markdown\nimport plotly.graph_objects as go\n"
             "display(Markdown('A Markdown output, typeset: $k = 8$'))\n"
             "display(HTML('<table><tr><td>a generated sample: ND$By$Xv</td></tr></table>'))\n"
             "print('printed: ND$By$Xv')\n"
             "viz.show(go.Figure(go.Bar(x=[1, 2, 3], marker=dict(color=[0, 0.5, 1], colorscale='Viridis'))))"),
]


def expected_figures(nb: Path) -> tuple[int, int]:
    """(plotly figures, circuitsvis views) among a notebook's outputs: what its page must draw."""
    outputs = [o.get("data", {}) for c in nbformat.read(nb, as_version=4).cells for o in c.get("outputs", [])]
    plotly = sum("application/vnd.plotly.v1+json" in d for d in outputs)
    views = sum(len(re.findall(r'<div id="circuits-vis-', d.get("text/html", ""))) for d in outputs)
    return plotly, views


def execute_fixture(path: Path) -> None:
    """Write the fixture notebook to `path`, then execute it in a kernel and write it again, executed."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell(s) if kind == "md" else nbformat.v4.new_code_cell(s) for kind, s in FIXTURE_CELLS]
    nbformat.write(nb, path)
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    paths.atomic_write_text(path, nbformat.writes(nb))  # the renderer may be reading the unexecuted copy


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, or a skip that says how to install it (a failure where CI requires it)."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "Playwright for Python is not installed (make setup installs it from requirements.txt)"
    if CHROMIUM is None:
        missing = "Chromium is not installed: `apt-get install chromium` (Debian/Ubuntu) to run the website's browser test"
    if missing:
        if os.environ.get("JOURNAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{missing}; JOURNAL_REQUIRE_BROWSER=1 (set by .ci/run) forbids skipping it")
        pytest.skip(missing)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(browser, tmp_path_factory):
    """The journal (committed notebooks + fixture) rendered and served from 127.0.0.1: (base URL, notebooks)."""
    from glassbox.journal import render

    fixture = tmp_path_factory.mktemp("fixture") / f"{FIXTURE}.ipynb"
    running = threading.Thread(target=execute_fixture, args=(fixture,))
    running.start()
    while not fixture.exists() and running.is_alive():
        running.join(0.05)
    out, copies = tmp_path_factory.mktemp("journal"), tmp_path_factory.mktemp("notebooks")
    for nb in NOTEBOOKS:  # a snapshot: the page and the figures it must draw come from the same file
        shutil.copyfile(nb, copies / nb.name)
    nbs = [copies / nb.name for nb in NOTEBOOKS] + [fixture]
    render.render_journal(nbs, out)  # meanwhile the kernel runs the fixture; its page is rendered again below
    running.join()
    assert nbformat.read(fixture, as_version=4).cells[3].execution_count, "the fixture notebook did not execute"
    render.render_notebook(fixture, out, nbs[-2] if NOTEBOOKS else None, None)

    base, server = serve(out)
    yield base, {nb.stem: nb for nb in nbs}, out
    server.shutdown()


def serve(folder: Path) -> tuple[str, http.server.ThreadingHTTPServer]:
    """Serve `folder` from 127.0.0.1 in a thread: (base URL, server to shut down)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


DRAWN = """() => ({
  plotly: [...document.querySelectorAll('.plotly-figure')].map(d => d.querySelector('.main-svg') !== null),
  views: [...document.querySelectorAll('[id^="circuits-vis-"]')].map(d =>
    !d.classList.contains('circuitsvis-error') && [...d.children].some(c => c.tagName !== 'SCRIPT')
    && d.getBoundingClientRect().height > 20),
})"""


# Console messages a page may log. The false warning plotly.js gave (a colour-scale value read as a colour)
# is dropped by the page itself (render.PLOTLY_SCRIPTS), so it needs no entry here. Allowed: headless
# Chromium's software WebGL reports "GPU stall due to ReadPixels" when a WebGL figure (page 10) is drawn:
# a note from the browser's GL driver about its own speed, not from the page, and no reader sees it.
CONSOLE_ALLOWED: tuple[re.Pattern, ...] = (re.compile(r"^\[\.WebGL-[0-9a-fx]+\]GL Driver Message \(OpenGL, Performance, "),)


def console_problem(kind: str, text: str) -> bool:
    """Whether a console message fails the page: any error or warning (`console.warn`, and plotly.js's
    `console.trace("WARN:", ...)`), unless `CONSOLE_ALLOWED` names it."""
    bad = kind in ("error", "warning", "assert") or text.startswith("WARN:")
    return bad and not any(p.search(text) for p in CONSOLE_ALLOWED)


def watch_console(page, problems: list[str]) -> None:
    """Append to `problems` every console message that fails a page (`console_problem`) and every JavaScript error."""
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if console_problem(m.type, m.text) else None)
    page.on("pageerror", lambda err: problems.append(f"JavaScript error: {err}"))


def visit(browser, base: str, page_name: str) -> tuple[dict, list[str]]:
    """Load one page; returns what drew and every problem seen (errors, failed or outside requests)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    watch_console(page, problems)
    page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else
            problems.append(f"fetched from outside the machine (the journal must work offline): {r.url}"))
    page.goto(f"{base}/{page_name}.html", wait_until="load", timeout=30_000)
    try:  # plotly draws synchronously; circuitsvis (React) and MathJax a moment later
        page.wait_for_function(f"() => {{ const d = ({DRAWN})(); return d.views.every(Boolean) && d.plotly.every(Boolean); }}",
                               timeout=15_000)
    except Exception:  # reported below, figure by figure
        pass
    page.evaluate("() => window.MathJax && MathJax.Hub ? new Promise(done => MathJax.Hub.Queue(done)) : null")
    page.wait_for_timeout(1000 if page.locator('[id^="circuits-vis-"]').count() else 0)  # circuitsvis charts animate in
    drawn = page.evaluate(DRAWN)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{page_name}.png"), full_page=True)
    page.close()
    return drawn, problems


@pytest.mark.parametrize("page_name", PAGES)
def test_page_draws_every_figure_offline_without_errors(browser, site, page_name):
    base, nbs, out = site
    drawn, problems = visit(browser, base, page_name)
    assert not problems, f"{page_name}.html: " + "\n".join(problems)
    if page_name == "index":
        links = set(re.findall(r'href="([^"#]+\.html)"', (out / "index.html").read_text()))
        assert links == {f"{stem}.html" for stem in nbs} | {"glossary.html", "library.html"}, \
            "the index must link every notebook page, the glossary and the library"
        return
    if page_name in ("glossary", "library"):
        return
    plotly, views = expected_figures(nbs[page_name])
    assert len(drawn["plotly"]) == plotly, f"{page_name}: {plotly} plotly figures in the notebook, {len(drawn['plotly'])} on the page"
    assert all(drawn["plotly"]), f"{page_name}: plotly figures {[i for i, ok in enumerate(drawn['plotly']) if not ok]} did not draw (no .main-svg)"
    assert len(drawn["views"]) == views, f"{page_name}: {views} circuitsvis views in the notebook, {len(drawn['views'])} on the page"
    assert all(drawn["views"]), f"{page_name}: circuitsvis views {[i for i, ok in enumerate(drawn['views']) if not ok]} stayed empty"


def test_fixture_page_is_light_and_navigable(site):
    base, nbs, out = site
    assert expected_figures(nbs[FIXTURE]) == (2, 4), "the fixture notebook should hold 2 plotly figures and 4 circuitsvis views"
    page = (out / f"{FIXTURE}.html").read_text()
    assert "var CircuitsVis=" not in page and "circuitsvis-bundle" not in page, \
        "inlined circuitsvis bundles must be replaced by the page's one circuitsvis.js"
    assert not re.search(r'<script[^>]+src="https?:|from "https?:', page), "a page must not load scripts from a CDN"
    assert not re.search(r'<img[^>]+src="data:image/png', page), "where the page draws the live plotly figure it drops the static PNG"
    assert len(page) < 1_500_000, f"fixture page is {len(page) / 1e6:.1f} MB: bundles are meant to be shared files"
    stems = list(nbs)
    for prev, stem in zip(stems, stems[1:]):  # previous / next links, both ways
        assert f'href="{stem}.html"' in (out / f"{prev}.html").read_text(), f"{prev} must link to the next page {stem}"
        assert f'href="{prev}.html"' in (out / f"{stem}.html").read_text(), f"{stem} must link to the previous page {prev}"


def test_notebook_outputs_draw_offline_on_their_own(browser, site):
    """What `viz.show_circuitsvis` put in the notebook (before the website swaps bundles) draws offline."""
    base, nbs, out = site
    cell = nbformat.read(nbs[FIXTURE], as_version=4).cells[4]
    htmls = [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]
    assert len(htmls) == 2 and len(htmls[0]) < 700_000 and len(htmls[1]) < 50_000, \
        f"the first view of a kernel carries the gzipped bundle once, later ones none: sizes {[len(h) for h in htmls]}"
    (out / "notebook_outputs.html").write_text("<!doctype html><html><head><meta charset='utf-8'>"
                                               "<link rel='icon' href='data:,'></head><body>"
                                               + "\n".join(htmls) + "</body></html>", encoding="utf-8")
    drawn, problems = visit(browser, base, "notebook_outputs")
    assert not problems, "\n".join(problems)
    assert len(drawn["views"]) == 2 and all(drawn["views"]), f"circuitsvis views drawn from the notebook's bundle: {drawn['views']}"


def test_code_toggle_hides_code_and_the_contents_follow_the_reader(browser, site):
    base, nbs, out = site
    page = browser.new_page(viewport={"width": 1500, "height": 700})
    page.goto(f"{base}/{NOTEBOOKS[0].stem if NOTEBOOKS else FIXTURE}.html", wait_until="load")
    code = page.locator(".jp-CodeCell .jp-Cell-inputWrapper").first
    assert code.is_visible(), "code is shown by default"
    prose = page.locator(".celltag_source-hidden").first
    assert not prose.locator(".jp-Cell-inputWrapper").is_visible() and prose.locator(".jp-OutputArea").is_visible(), \
        "a cell that writes prose (findings.markdown) shows its text, not its source"
    page.click("#toggle-code")
    assert not code.is_visible() and page.locator("#toggle-code").inner_text() == "Show code", "the toggle must hide code"
    page.reload(wait_until="load")
    assert not code.is_visible(), "the choice is remembered across pages"
    page.click("#toggle-code")
    assert code.is_visible()
    links = page.locator("nav.toc a")
    heads = page.locator(".jp-MarkdownCell h1[id], .jp-MarkdownCell h2[id], .jp-MarkdownCell h3[id]")
    assert links.count() == heads.count() >= 3, f"one contents link per heading: {links.count()} vs {heads.count()}"
    middle = heads.count() // 2  # the last headings sit too near the end of the page to reach the top
    links.nth(middle).click()
    page.wait_for_timeout(300)
    top = heads.nth(middle).evaluate("h => h.getBoundingClientRect().top")
    assert page.evaluate("window.scrollY") > 500 and -5 < top < 100, f"the link must scroll its heading into view (top {top})"
    assert "current" in (links.nth(middle).get_attribute("class") or ""), "the contents must follow the reader"
    page.close()


def test_math_is_typeset_in_the_prose_only(browser, site):
    """A generated text sample with two `$` in it (an HTML table, a print) stays text; Markdown is typeset."""
    base, nbs, out = site
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{base}/{FIXTURE}.html", wait_until="load")
    page.evaluate("() => new Promise(done => MathJax.Hub.Queue(done))")
    typeset = page.evaluate("""() => [...document.querySelectorAll('script[type^="math/tex"]')].map(s =>
      [s.closest('.jp-MarkdownCell') ? 'cell' : s.closest('.jp-RenderedMarkdown') ? 'markdown output' : 'other', s.textContent])""")
    text = page.inner_text("body")
    page.close()
    assert ["markdown output", "k = 8"] in typeset and ["cell", "W_{OV} = W_V W_O"] in typeset, typeset
    assert all(where != "other" for where, _ in typeset), f"MathJax typeset outside the prose: {typeset}"
    assert "a generated sample: ND$By$Xv" in text and "printed: ND$By$Xv" in text, "text samples must stay text"


# The first page at a laptop's and a small phone's width, and the heaviest page (07: heatmaps, circuitsvis views)
# at the phone's; the fixture page where there are no notebooks.
FIRST = NOTEBOOKS[0].stem if NOTEBOOKS else FIXTURE
HEAVIEST = next((nb.stem for nb in NOTEBOOKS if nb.stem.startswith("07")), FIRST)
TOGGLE_CASES = [(FIRST, 1366, 768), (FIRST, 360, 740), (HEAVIEST, 360, 740)]


@pytest.mark.parametrize("stem, width, height", TOGGLE_CASES)
def test_contents_and_code_toggle_at_laptop_and_phone_widths(browser, site, width, height, stem):
    base, nbs, out = site
    page = browser.new_page(viewport={"width": width, "height": height})
    problems: list[str] = []
    watch_console(page, problems)
    page.goto(f"{base}/{stem}.html", wait_until="load")
    page.evaluate("() => localStorage.removeItem('journal-hide-code')")
    page.reload(wait_until="load")
    wide = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert wide[0] <= wide[1], f"the page scrolls sideways at {width} px: {wide[0]} px wide"
    code = page.locator(".jp-CodeCell .jp-Cell-inputWrapper").first
    toggle, menu = page.locator("#toggle-code"), page.locator("#toggle-contents")
    assert toggle.is_visible() and menu.is_visible(), "the code toggle and the contents button are on screen"
    toggle.click()
    assert not code.is_visible() and toggle.inner_text() == "Show code", "the toggle must hide code"
    toggle.click()
    assert code.is_visible()
    links = page.locator("nav.toc a")
    assert links.count() >= 3 and not links.first.is_visible(), "the contents are folded until asked for"
    page.screenshot(path=str(SCREENSHOTS / f"{stem}-{width}.png"))
    menu.click()
    assert links.first.is_visible() and menu.get_attribute("aria-expanded") == "true", "the button opens the contents"
    page.screenshot(path=str(SCREENSHOTS / f"{stem}-{width}-contents.png"))
    heads = page.locator(".jp-MarkdownCell h1[id], .jp-MarkdownCell h2[id], .jp-MarkdownCell h3[id]")
    middle = heads.count() // 2
    links.nth(middle).click()
    page.wait_for_timeout(300)
    top = heads.nth(middle).evaluate("h => h.getBoundingClientRect().top")
    bar = page.locator("nav.toc").evaluate("n => n.getBoundingClientRect().bottom")
    assert page.evaluate("window.scrollY") > 500 and bar - 5 < top < height / 2, \
        f"the link must bring its heading into view below the bar (heading top {top}, bar bottom {bar})"
    assert not links.first.is_visible(), "following a link folds the contents away"
    assert toggle.is_visible(), "the toggle stays on screen while reading"
    page.close()
    assert not problems, f"{stem}.html at {width} px: " + "\n".join(problems)


@pytest.mark.skipif(not NOTEBOOKS, reason="no committed notebook")
def test_exercise_answers_and_hints_are_folded_until_opened(browser, site):
    """Issue 28: on every page each Answer and Hint is a closed <details> whose text is not on screen, and
    no exercise's solution is shown (the code cells hold stubs)."""
    base, nbs, out = site
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    for nb in NOTEBOOKS:
        page.goto(f"{base}/{nb.stem}.html", wait_until="load")
        folds = page.locator("details")
        summaries = folds.locator("summary").all_inner_texts()
        assert "Answer" in summaries and "Hint" in summaries, f"{nb.stem}: no folded Answer or Hint on the page"
        opened = folds.evaluate_all("ds => ds.filter(d => d.open).length")
        assert opened == 0, f"{nb.stem}: {opened} folds are open when the page loads"
        hidden = folds.evaluate_all("ds => ds.every(d => [...d.children].filter(c => c.tagName !== 'SUMMARY')"
                                    ".every(c => !c.checkVisibility()))")
        assert hidden, f"{nb.stem}: a fold shows its text before it is opened"
        converted = exercises.solutions_path(nb.stem).is_file()  # issue 28 lands notebook by notebook
        assert not converted or page.locator("text=# SOLUTION").count() == 0, f"{nb.stem}: a solution is on the page"
        answer = folds.filter(has=page.locator("summary", has_text="Answer")).first
        answer.locator("summary").click()
        assert answer.evaluate("d => d.open"), f"{nb.stem}: clicking Answer opens it"
    page.close()


def test_glossary_links_resolve_on_every_page(site):
    base, nbs, out = site
    glossary = (out / "glossary.html").read_text()
    anchors = set(re.findall(r'<dt id="([^"]+)"', glossary))
    assert len(anchors) >= 30, "the glossary page lists its entries"
    for page in out.glob("*.html"):
        wanted = set(re.findall(r'href="glossary\.html#([^"]+)"', page.read_text()))
        assert wanted <= anchors, f"{page.name} links to missing glossary entries {sorted(wanted - anchors)}"
        assert "GLOSSARY.md" not in page.read_text(), f"{page.name}: a link to GLOSSARY.md was not rewritten"
    assert 'href="glossary.html#residual-stream"' in (out / f"{FIXTURE}.html").read_text()
    index = (out / "index.html").read_text()
    assert index.count('<li><a href="') == len(nbs) and 'href="glossary.html"' in index, "the index shows the reading path"


# A notebook whose data carries script: a string recorded and quoted by `findings.markdown`, the same
# string as a headline, in a Markdown output made without findings.markdown (as before it escaped),
# in a plotly figure (title, labels, and a layout.height that would close the div's style attribute)
# and in circuitsvis tokens. The page must show it as text and run none of it.
HOSTILE_STEM = "98_hostile_fixture"
PWN = "window.__pwned=1"
HOSTILE = " ".join([f"<script>{PWN}</script>", f'<img src=x onerror="{PWN}">', '<img src=x onerror="alert(1)">',
                    f'</script><svg onload="{PWN}">', f"<!--<script>{PWN}</script>", f"[click](javascript:{PWN})",
                    f'`<b onmouseover="{PWN}">`'])


def hostile_notebook(folder: Path) -> Path:
    """Write the hostile fixture notebook (its Markdown made by the real findings.markdown) and its findings."""
    import circuitsvis as cv
    import torch

    import glassbox
    from glassbox import viz
    from glassbox.journal import contract, findings

    with pytest.MonkeyPatch.context() as mp:  # a run staged in `folder`, forgotten afterwards
        mp.setattr(contract, "_current", None)
        mp.setenv(contract.ENV_STAGE, str(folder / "stage"))
        mp.setenv(contract.ENV_SMOKE, "1")
        glassbox.start(HOSTILE_STEM, smoke=True)
        findings.record("evil", HOSTILE)
        findings.record("headline", HOSTILE)
        prose = findings.markdown("**Recorded:** {evil}\n\nAs code: `{evil}`\n\n"
                                  "<details><summary>Answer</summary>\n\n{evil}\n</details>").data
        shutil.copytree(folder / "stage" / "findings", folder / "findings")
    figure = {"data": [{"type": "bar", "x": HOSTILE.split(" ")[:6], "y": [1, 2, 3, 4, 5, 6], "name": HOSTILE}],
              "layout": {"title": {"text": HOSTILE}, "height": f'1px" onload="{PWN}'}}
    view = cv.attention.attention_heads(attention=torch.eye(4)[None], tokens=HOSTILE.split(" ")[:4])
    out = nbformat.v4.new_output
    cells = [nbformat.v4.new_markdown_cell("# 98 · Hostile fixture\n\nRecorded data that carries script."),
             nbformat.v4.new_code_cell("findings.record('evil', EVIL)"),
             nbformat.v4.new_code_cell("findings.markdown(...)"),
             nbformat.v4.new_code_cell("display(Markdown(EVIL))  # made without findings.markdown"),
             nbformat.v4.new_code_cell("viz.show(figure)"),
             nbformat.v4.new_code_cell("viz.show_circuitsvis(view)\ndisplay(HTML(view.cdn_src))")]
    cells[1].outputs = [out("stream", name="stdout", text=f"evil = {HOSTILE!r}\n")]
    cells[2].outputs = [out("execute_result", data={"text/markdown": prose, "text/plain": "<Markdown object>"}, execution_count=2)]
    cells[3].outputs = [out("display_data", data={"text/markdown": HOSTILE})]
    cells[4].outputs = [out("display_data", data={"application/vnd.plotly.v1+json": figure, "text/plain": "Figure"})]
    cells[5].outputs = [out("display_data", data={"text/html": viz.circuitsvis_html(view, bundle=False)}),
                        out("display_data", data={"text/html": view.cdn_src})]
    path = folder / f"{HOSTILE_STEM}.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


@pytest.fixture(scope="module")
def hostile_site(browser, tmp_path_factory):
    """The hostile fixture rendered with the real renderer (its headline on the index) and served: (base URL, folder)."""
    from glassbox.journal import render

    folder, out = tmp_path_factory.mktemp("hostile"), tmp_path_factory.mktemp("hostile_journal")
    nb = hostile_notebook(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "FINDINGS_DIR", folder / "findings")  # the index reads the fixture's headline here
        render.render_journal([nb], out)
    (out / "control.html").write_text(f'<!doctype html><body><img src="x" onerror="{PWN}"></body>')
    base, server = serve(out)
    yield base, out
    server.shutdown()


def script_ran(browser, base: str, page_name: str) -> tuple[object, list[str], dict, str]:
    """Load a page; returns window.__pwned, the dialogs and JavaScript errors seen, what drew, and the page's text."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(f"dialog {d.type}: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda err: seen.append(f"JavaScript error: {err}"))
    page.goto(f"{base}/{page_name}.html", wait_until="load", timeout=30_000)
    try:
        page.wait_for_function(f"() => {{ const d = ({DRAWN})(); return d.views.every(Boolean) && d.plotly.every(Boolean); }}",
                               timeout=15_000)
    except Exception:  # reported by the caller
        pass
    page.mouse.move(600, 450)
    page.wait_for_timeout(1000)  # onerror / onload handlers, and circuitsvis, run after load
    pwned, drawn, text = page.evaluate("() => window.__pwned"), page.evaluate(DRAWN), page.inner_text("body")
    page.close()
    return pwned, seen, drawn, text


def test_the_check_sees_script_that_runs(browser, hostile_site):
    base, out = hostile_site
    pwned, seen, drawn, text = script_ran(browser, base, "control")
    assert pwned == 1, "an injected onerror handler runs in this browser: the checks below can fail"


@pytest.mark.parametrize("page_name", [HOSTILE_STEM, "index"])
def test_recorded_strings_and_figure_properties_run_no_script(browser, hostile_site, page_name):
    base, out = hostile_site
    pwned, seen, drawn, text = script_ran(browser, base, page_name)
    assert pwned is None and not seen, f"{page_name}.html ran injected script: window.__pwned={pwned!r}; {seen}"
    assert f"<script>{PWN}</script>" in text, "the recorded string must show as text"
    if page_name == HOSTILE_STEM:
        assert drawn == {"plotly": [True], "views": [True, True]}, f"the escaped figure and views must still draw: {drawn}"
        html = (out / f"{HOSTILE_STEM}.html").read_text()
        assert 'style="width:100%;height:450px"' in html, "a layout.height that is not a number is not written"
        assert text.count(f"<script>{PWN}</script>") >= 4, "recorded (stream), quoted twice by findings.markdown, and raw"


def test_the_console_check_fails_warnings_and_errors_only():
    """A `console.warn` of any wording fails a page, not only plotly.js's `WARN:` lines; a log or info does not."""
    assert console_problem("warning", "[Deprecation] something") and console_problem("error", "x")
    assert console_problem("trace", "WARN: Invalid color specifier") and console_problem("assert", "Assertion failed")
    assert not console_problem("log", "drawn") and not console_problem("info", "MathJax ready")
    assert not console_problem("warning", "[.WebGL-0x86400422600]GL Driver Message (OpenGL, Performance, "
                                          "GL_CLOSE_PATH_NV, High): GPU stall due to ReadPixels"), "the allowed driver note"
    assert console_problem("warning", "[.WebGL-0x1]GL Driver Message (OpenGL, Error, x): y"), "only its performance notes"
