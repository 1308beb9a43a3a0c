"""Render executed notebooks as a static HTML journal that works offline.

Plotly figures are stored in the notebooks as JSON (mime type application/vnd.plotly.v1+json);
here each becomes a <div> drawn by a local copy of plotly.min.js. circuitsvis views (from
`viz.show_circuitsvis`, or a circuitsvis function's own HTML, inlined or from its CDN) draw from
one local copy of circuitsvis's bundle, and math from a local MathJax (jupyter-server-mathjax):
no page fetches anything from the internet.
"""
import html
import importlib.util
import json
import re
import shutil
from pathlib import Path

import nbformat

from glassbox.journal.catalogue import headline, title

PLOTLY_MIME = "application/vnd.plotly.v1+json"
CV_BUNDLE_SCRIPT = re.compile(r'<script class="circuitsvis-bundle">.*?</script>\n?', re.S)  # viz.show_circuitsvis
CV_INLINED = re.compile(r'"use strict";var CircuitsVis=.*?//# sourceMappingURL=iife\.js\.map', re.S)  # circuitsvis offline
CV_CDN_IMPORT = re.compile(r'import \{ render, (\w+) \} from "https://unpkg\.com/circuitsvis@[^"]*";')  # circuitsvis online
COLAB_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(([^)\s]+)\)")
ICON = '<link rel="icon" href="data:,">'  # no favicon.ico request (a 404 in the console)
MATHJAX_CONFIG = "MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"

# nbconvert's lab template without require.js and mermaid (unused here, and from a CDN), with our
# nav and style. MathJax is jupyter-server-mathjax's MathJax 2, which ships the STIX-Web fonts only;
# its blank probe font is `url(about:blank)`, which Chromium refuses with a console error, so it
# becomes a local() name here.
TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block html_head_js_mermaidjs %}{% endblock %}
{% block html_head_js_mathjax %}{% if resources.journal.mathjax %}{{ super() }}
<script type="text/x-mathjax-config">MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], webFont: "STIX-Web",
  imageFont: null, preferredFont: null, styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank')"}}}});
</script>{% endif %}{% endblock %}
{% block html_head_css %}{{ resources.journal.head }}{% endblock %}
{% block body_header %}{{ super() }}{{ resources.journal.nav }}{% endblock %}
{% block body_footer %}{{ resources.journal.nav }}{{ super() }}{% endblock %}
"""

PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; background: #fff; }
body.index, body.jp-Notebook { max-width: 1000px; margin: 0 auto; padding: 0 1.5rem 3rem; line-height: 1.55; }
body.jp-Notebook { --jp-content-font-size1: 15px; --jp-content-font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
a { color: #0b5cad; text-decoration: none; } a:hover { text-decoration: underline; }
nav.journal { display: flex; justify-content: space-between; gap: 1rem; padding: .7rem 0; margin: 0 0 1rem;
  border-bottom: 1px solid #d0d7de; font-size: .95rem; }
main > nav.journal:last-child { margin-top: 2rem; border-top: 1px solid #d0d7de; border-bottom: none; }
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
.jp-Cell { padding: .3rem 0; }
.jp-InputArea-editor { overflow-x: auto; }  /* long code lines scroll instead of being cut */
.jp-RenderedHTMLCommon h1 { font-size: 2rem; margin-top: .5rem; }
.jp-RenderedImage img, .jp-OutputArea-output img { max-width: 100%; height: auto; }
.plotly-figure { width: 100%; }
a.colab { display: inline-block; padding: .1rem .6rem; border: 1px solid #e8a600; border-radius: 4px;
  background: #fff8e1; color: #3c3c3c; font-size: .85rem; }
table.findings { border-collapse: collapse; width: 100%; margin: 1.5rem 0; }
table.findings th, table.findings td { text-align: left; vertical-align: top; padding: .55rem .7rem; border-bottom: 1px solid #d0d7de; }
table.findings th { background: #f6f8fa; }
footer { color: #57606a; font-size: .9rem; margin-top: 2rem; }
"""


def plotly_html(figure: dict, div_id: str) -> str:
    """A div and a script that draw one plotly figure with the page's local plotly.min.js."""
    payload = json.dumps({"data": figure.get("data", []), "layout": figure.get("layout", {})}).replace("</", "<\\/")
    height = figure.get("layout", {}).get("height") or 450
    return (f'<div id="{div_id}" class="plotly-figure" style="width:100%;height:{height}px"></div>'
            f'<script>Plotly.newPlot("{div_id}", ...(p => [p.data, p.layout])({payload}), {{responsive: true}});</script>')


def inline_plotly(nb: nbformat.NotebookNode, stem: str) -> int:
    """Replace plotly JSON outputs by HTML that draws them; returns how many were replaced."""
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data:
                data["text/html"] = plotly_html(data.pop(PLOTLY_MIME), f"{stem}-fig{count}")
                data.pop("image/png", None)  # the static copy is for GitHub; the page draws the live figure
                count += 1
    return count


def localise_circuitsvis(nb: nbformat.NotebookNode) -> int:
    """Make circuitsvis views draw from the page's circuitsvis.js; returns how many views there are."""
    views = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "circuits-vis-" in data.get("text/html", ""):
                page = CV_INLINED.sub("", CV_BUNDLE_SCRIPT.sub("", data["text/html"]))
                data["text/html"] = CV_CDN_IMPORT.sub(r"const { render, \1 } = window.CircuitsVis;", page)
                views += data["text/html"].count('id="circuits-vis-')
    return views


def tidy_for_the_web(nb: nbformat.NotebookNode) -> None:
    """Drop the Colab setup cell (a no-op outside Colab) and turn the badge image into a plain link."""
    nb.cells = [c for i, c in enumerate(nb.cells) if not (i == 1 and c.cell_type == "code" and "google.colab" in c.source)]
    if nb.cells and nb.cells[0].cell_type == "markdown":
        nb.cells[0].source = COLAB_BADGE.sub(r'<a class="colab" href="\1">Open in Colab</a>', nb.cells[0].source)


def tidy_streams(nb: nbformat.NotebookNode) -> None:
    """Merge consecutive prints, keep only a progress bar's last state, drop what is left blank."""
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    CoalesceStreamsPreprocessor().preprocess(nb, {})
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = [o for o in cell.outputs if o.output_type != "stream" or o.text.strip()]


def nav(prev: Path | None, nxt: Path | None) -> str:
    """Previous / index / next links for a notebook page, named by the notebooks' titles."""
    left = f'<a href="{prev.stem}.html">&larr; {html.escape(title(prev))}</a>' if prev else '<span></span>'
    right = f'<a href="{nxt.stem}.html">{html.escape(title(nxt))} &rarr;</a>' if nxt else '<span></span>'
    return f'<nav class="journal">{left}<a href="index.html">journal index</a>{right}</nav>'


def exporter():
    """nbconvert's HTML exporter with the lab template, our additions, and the local MathJax."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file="journal.html.j2",
                        extra_loaders=[DictLoader({"journal.html.j2": TEMPLATE})],
                        mathjax_url=f"mathjax/{MATHJAX_CONFIG}")


def render_notebook(path: Path, out: Path, prev: Path | None, nxt: Path | None, mathjax: bool = True,
                    html_exporter=None) -> Path:
    """Render one notebook to `out/<stem>.html`."""
    nb = nbformat.read(path, as_version=4)
    tidy_for_the_web(nb)
    tidy_streams(nb)
    scripts = '<script src="plotly.min.js"></script>' if inline_plotly(nb, path.stem) else ""
    if localise_circuitsvis(nb):
        scripts += '<script src="circuitsvis.js"></script>'
    head = f'{ICON}<link rel="stylesheet" href="journal.css">{scripts}'
    resources = {"metadata": {"name": path.stem}, "journal": {"head": head, "nav": nav(prev, nxt), "mathjax": mathjax}}
    body, _ = (html_exporter or exporter()).from_notebook_node(nb, resources=resources)
    target = out / f"{path.stem}.html"
    target.write_text(body, encoding="utf-8")
    return target


def colab_link(nb: Path) -> str:
    """The notebook's "Open in Colab" address, from the badge in its title cell ('' without one)."""
    found = COLAB_BADGE.search("".join(json.loads(nb.read_text())["cells"][0]["source"]))
    return found.group(1) if found else ""


def colab_cell(nb: Path) -> str:
    """An "Open in Colab" link for the index table ('' when the notebook has no badge)."""
    link = colab_link(nb)
    return f'<a class="colab" href="{html.escape(link)}">Colab</a>' if link else ""


def index_page(nbs: list[Path]) -> str:
    """The journal's front page: what it is, and each notebook in order with its headline finding."""
    rows = "".join(
        f'<tr><td><a href="{nb.stem}.html">{html.escape(title(nb))}</a></td>'
        f"<td>{html.escape(headline(nb.stem) or '(not run yet)')}</td>"
        f"<td>{colab_cell(nb)}</td></tr>" for nb in nbs)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>The interpretability journal</title>
{ICON}<link rel="stylesheet" href="journal.css"></head><body class="index">
<h1>The interpretability journal</h1>
<p>Numbered experiments that open up small neural networks we train ourselves: an MNIST MLP, a
one-layer transformer that outputs the median of a list, toy models of superposition and sparse
autoencoders. Each entry states a question, runs the experiment, and records its findings as numbers
that the test suite checks. Read them in order; every figure is interactive, and each notebook opens
in Colab to be rerun.</p>
<table class="findings"><thead><tr><th>notebook</th><th>what it found</th><th></th></tr></thead>
<tbody>{rows}</tbody></table>
<footer>Rendered from the executed notebooks by <code>make journal</code>; works offline.</footer>
</body></html>"""


def copy_assets(out: Path) -> bool:
    """Copy the page assets (style, plotly, circuitsvis, MathJax) into `out`; False when MathJax is missing."""
    import circuitsvis
    import plotly

    (out / "journal.css").write_text(PAGE_CSS)
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", out / "plotly.min.js")
    shutil.copyfile(Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js", out / "circuitsvis.js")
    spec = importlib.util.find_spec("jupyter_server_mathjax")  # located, not imported (it pulls in jupyter_server)
    if spec is None or not spec.submodule_search_locations:
        return False
    shutil.copytree(Path(spec.submodule_search_locations[0]) / "static", out / "mathjax", dirs_exist_ok=True)
    return True


def render_journal(nbs: list[Path], out: Path) -> Path:
    """Render all notebooks and the index into `out`; returns the index path."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("[0-9][0-9]_*.html"):  # pages of notebooks renamed or removed since
        stale.unlink()
    mathjax = copy_assets(out)
    html_exporter = exporter()
    for i, nb in enumerate(nbs):
        render_notebook(nb, out, nbs[i - 1] if i else None, nbs[i + 1] if i + 1 < len(nbs) else None,
                        mathjax, html_exporter)
    index = out / "index.html"
    index.write_text(index_page(nbs), encoding="utf-8")
    return index
