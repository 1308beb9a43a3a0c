"""Render executed notebooks as a static HTML journal that works offline.

Plotly figures are stored in the notebooks as JSON (mime type application/vnd.plotly.v1+json);
here each becomes a <div> drawn by a local copy of plotly.min.js. circuitsvis views (from
`viz.show_circuitsvis`, or a circuitsvis function's own HTML, inlined or from its CDN) draw from
one local copy of circuitsvis's bundle, and math from a local MathJax (jupyter-server-mathjax):
no page fetches anything from the internet.

What a notebook recorded is data, not page: values a figure or a view carries, written into a
<script>, are JSON with `<`, `>` and `&` escaped (`script_json`), so no string can end the script or
open a comment; a figure's height is used only if it is a positive number; Markdown outputs (such as
`findings.markdown`'s, whose values are escaped where they are filled in) pass an allowlist of tags
and attributes (`clean_markdown_output`): no script, event handler or javascript: link survives.
"""
import hashlib
import html
import importlib.util
import json
import math
import re
import shutil
from pathlib import Path

import nbformat

from glassbox.journal import paths
from glassbox.journal.catalogue import headline, title

PLOTLY_MIME = "application/vnd.plotly.v1+json"
CV_BUNDLE_SCRIPT = re.compile(r'<script class="circuitsvis-bundle">.*?</script>\n?', re.S)  # viz.show_circuitsvis
CV_INLINED = re.compile(r'"use strict";var CircuitsVis=.*?//# sourceMappingURL=iife\.js\.map', re.S)  # circuitsvis offline
CV_CDN_IMPORT = re.compile(r'import \{ render, (\w+) \} from "https://unpkg\.com/circuitsvis@[^"]*";')  # circuitsvis online
# A view's props (JSON, so on one line): circuitsvis's own `render(\n "circuits-vis-…",\n Name,\n {props}\n)`,
# or viz.show_circuitsvis's `cv.render("circuits-vis-…", cv["Name"], {props});`
CV_PROPS = re.compile(r'(render\(\s*"circuits-vis-[\w-]+",\s*[\w.]+,[ \t]*\n[ \t]*)([^\n]*)(?=\n[ \t]*\))'
                      r'|(^[ \t]*cv\.render\("circuits-vis-[\w-]+", cv\["\w+"\], )([^\n]*)(?=\);[ \t]*$)', re.M)
COLAB_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(([^)\s]+)\)")
# circuitsvis draws a view in one long task (07's attention heads: seconds); drawn once the page has
# loaded, its text and figures show first. All three forms of view call CircuitsVis.render.
CIRCUITSVIS_SCRIPTS = """<script src="circuitsvis.js"></script><script>window.CircuitsVis = (cv => { const loaded = new Promise(done =>
  addEventListener("load", () => setTimeout(done, 50)));
  const failed = (id, err) => { const el = document.getElementById(id); console.error(err);
    if (el) { el.className += " circuitsvis-error"; el.textContent = "circuitsvis view not drawn (" + err + ")"; } };
  return {...cv, render: (id, ...rest) => loaded.then(() => cv.render(id, ...rest)).catch(err => failed(id, err))}; })(CircuitsVis);
</script>"""
ICON = '<link rel="icon" href="data:,">'  # no favicon.ico request (a 404 in the console)
MATHJAX_CONFIG = "MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
GLOSSARY_LINK = re.compile(r'href="(?:\./)?GLOSSARY\.md#')  # notebooks link terms to notebooks/GLOSSARY.md
GLOSSARY_ANCHOR = re.compile(r'<a id="[\w-]+"></a>\s*')  # an entry's explicit anchor in GLOSSARY.md (for JupyterLab)
# plotly.js 4.1.1 asks for the opacity of each bar's colour-scale value (a number) before the colour scale
# maps it to a colour, and logs "Invalid color specifier: number 0.5" (or the array's name when the value
# is 0) for every bar; the bars are drawn in the right colours. Only that false warning is dropped.
PLOTLY_SCRIPTS = r"""<script>(trace => { console.trace = (...args) => args[0] === "WARN:"
  && /^Invalid color specifier: (number |\w*Array\(\d+\)\.)/.test(args[1]) ? undefined : trace.apply(console, args); })(console.trace);
</script><script src="plotly.min.js"></script>"""

# The table of contents (filled from the page's headings, the one being read highlighted) and the
# button that hides and shows the code, remembered across pages.
# Below 1400 px (a laptop, a half-screen window, a phone) the contents fold into a menu that a small
# bar, fixed at the top right beside the code toggle, opens and closes.
TOC = """<nav class="toc" aria-label="contents"><div class="toc-bar"><button type="button" id="toggle-contents"
  aria-expanded="false" aria-controls="toc-links">Contents</button><button type="button" id="toggle-code">Hide code</button></div>
<div class="toc-links" id="toc-links"></div></nav>
<script>document.addEventListener("DOMContentLoaded", () => {
  const toc = document.querySelector("nav.toc"), list = document.getElementById("toc-links");
  const button = document.getElementById("toggle-code"), menu = document.getElementById("toggle-contents");
  const open = wanted => { toc.classList.toggle("open", wanted); menu.setAttribute("aria-expanded", String(wanted)); };
  menu.addEventListener("click", () => open(!toc.classList.contains("open")));
  list.addEventListener("click", e => { if (e.target.closest("a")) open(false); });
  document.addEventListener("click", e => { if (!toc.contains(e.target)) open(false); });
  document.addEventListener("keydown", e => { if (e.key === "Escape") open(false); });
  const show = hidden => { document.body.classList.toggle("hide-code", hidden); button.textContent = hidden ? "Show code" : "Hide code"; };
  show(localStorage.getItem("journal-hide-code") === "1");
  button.addEventListener("click", () => { const hidden = !document.body.classList.contains("hide-code");
    localStorage.setItem("journal-hide-code", hidden ? "1" : "0"); show(hidden); });
  const heads = [...document.querySelectorAll(".jp-MarkdownCell h1[id], .jp-MarkdownCell h2[id], .jp-MarkdownCell h3[id]")];
  const links = heads.map(h => { const a = document.createElement("a"); a.href = "#" + encodeURIComponent(h.id);
    a.textContent = h.textContent.replace(/¶$/, ""); a.className = h.tagName.toLowerCase(); list.appendChild(a); return a; });
  const follow = () => { let i = heads.findLastIndex(h => h.getBoundingClientRect().top < 120); i = Math.max(i, 0);
    links.forEach((a, j) => a.classList.toggle("current", j === i)); };
  document.addEventListener("scroll", follow, {passive: true}); follow();
});</script>"""

# nbconvert's lab template without require.js and mermaid (unused here, and from a CDN), with our
# nav and style. MathJax typesets the prose only: Markdown cells and Markdown outputs, not what code
# printed or drew (a generated text sample with two `$` in it stays text). MathJax is jupyter-server-mathjax's MathJax 2, which ships the STIX-Web fonts only;
# its blank probe font is `url(about:blank)`, which Chromium refuses with a console error, so it
# becomes a local() name here.
TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block html_head_js_mermaidjs %}{% endblock %}
{% block html_head_js_mathjax %}{% if resources.journal.mathjax %}{{ super() }}
<script type="text/x-mathjax-config">MathJax.Hub.Config({tex2jax: {ignoreClass: "jp-OutputArea", processClass: "jp-RenderedMarkdown"},
  "HTML-CSS": {availableFonts: [], webFont: "STIX-Web",
  imageFont: null, preferredFont: null, styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank')"}}}});
</script>{% endif %}{% endblock %}
{% block html_head_css %}{{ resources.journal.head }}{% endblock %}
{% block body_header %}{{ super() }}{{ resources.journal.nav }}{{ resources.journal.toc }}{% endblock %}
{% block body_footer %}{{ resources.journal.nav }}{{ super() }}{% endblock %}
{% block data_markdown scoped -%}
<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-OutputArea-output {{ extra_class }}" data-mime-type="text/markdown">
{{ output.data['text/markdown'] | markdown2html | clean_markdown_output }}
</div>
{%- endblock data_markdown %}
"""

# What a Markdown output may hold on the page: what Markdown itself writes, plus <details>/<summary>
# (folded answers). Anything else is dropped (its text kept); links and images only to http(s),
# mailto: or a relative address.
MARKDOWN_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
                 "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre",
                 "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
                 "th", "thead", "tr", "u", "ul"}
MARKDOWN_ATTRIBUTES = {"*": ["class", "id", "title"], "a": ["href", "title"], "img": ["src", "alt", "title", "width", "height"],
                       "details": ["open"], "ol": ["start"], "th": ["style", "align"], "td": ["style", "align"]}
DEFAULT_FIGURE_HEIGHT = 450  # px, plotly's own default
DISPLAY_DIGITS = 3  # significant digits kept of each number a circuitsvis view draws (attention weights)
# nbconvert's lab template writes JupyterLab's style sheets (about 260 KB, the same on every page) into each
# page's <head>; the page links one shared copy instead, named after its content (lab-<sha256 prefix>.css), so
# that pages whose sheets differ never share a file.
LAB_CSS = "lab-{}.css"
HEAD_STYLE = re.compile(r'[ \t]*<style type="text/css">(.*?)</style>\n?', re.S)


PAGE_CSS = """
nav.toc { position: fixed; top: 1rem; left: 1rem; width: 13rem; max-height: calc(100vh - 2rem); overflow-y: auto;
  font-size: .85rem; line-height: 1.35; border-right: 1px solid #d0d7de; padding-right: .6rem; z-index: 100; }
nav.toc #toggle-contents { display: none; }
nav.toc a { display: block; padding: .15rem .3rem; color: #57606a; border-radius: 3px; }
nav.toc a.h3 { padding-left: 1rem; }
nav.toc a.current { background: #ddf4ff; color: #0b5cad; font-weight: 600; }
nav.toc button { margin: 0 0 .6rem; font: inherit; padding: .2rem .6rem; border: 1px solid #d0d7de; border-radius: 4px;
  background: #f6f8fa; cursor: pointer; }
body.hide-code .jp-CodeCell .jp-Cell-inputWrapper, .celltag_source-hidden .jp-Cell-inputWrapper { display: none; }
.celltag_parameters .jp-Cell-inputWrapper::before, .celltag_injected-parameters .jp-Cell-inputWrapper::before {
  display: block; font-size: .8rem; color: #57606a; margin: .2rem 0; }
.celltag_parameters .jp-Cell-inputWrapper::before { content: "Parameters: the defaults (a full run)"; }
.celltag_injected-parameters .jp-Cell-inputWrapper::before {
  content: "Parameters given to this run by the journal runner (papermill), overriding the defaults above"; }
body.glossary dt { font-weight: 600; margin-top: 1.2rem; } body.glossary dd { margin-left: 1.2rem; }
body.glossary :target { background: #fff8c5; }
ol.path li { margin: .4rem 0; }
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
.jp-OutputArea-output, .jp-RenderedHTMLCommon table, .MathJax_Display { max-width: 100%; overflow-x: auto; }
.jp-RenderedHTMLCommon table { display: block; }  /* a wide table scrolls in its box, not the page */
table.findings td, table.findings th { overflow-wrap: anywhere; }  /* long words wrap on a phone */
@media (max-width: 1400px) {  /* the contents as a menu under a bar fixed at the top right */
  body.jp-Notebook { padding-top: 2.8rem; }
  html { scroll-padding-top: 3.2rem; }  /* a heading reached from the menu is not hidden under the bar */
  nav.toc { top: .4rem; left: auto; right: .4rem; width: auto; max-width: calc(100vw - .8rem); max-height: calc(100vh - .8rem);
    padding: .3rem; border: 1px solid #d0d7de; border-radius: 6px; background: #fff; box-shadow: 0 2px 8px rgba(31, 35, 40, .15); }
  nav.toc .toc-bar { display: flex; gap: .4rem; justify-content: flex-end; }
  nav.toc .toc-bar button { margin: 0; }
  nav.toc #toggle-contents { display: inline-block; }
  nav.toc .toc-links { display: none; width: min(22rem, calc(100vw - 2rem)); margin-top: .4rem; }
  nav.toc.open .toc-links { display: block; }
}
"""


def script_json(value) -> str:
    """`value` as JSON that is safe inside an HTML <script>: no `</script>`, `<!--` or `-->` can appear in it
    (`<`, `>` and `&` are written as \\u escapes, which JavaScript reads back as the same characters)."""
    return script_safe(json.dumps(value))


def figure_height(layout) -> int | float:
    """A plotly layout's height in pixels when it is a positive number, else plotly's default."""
    height = layout.get("height") if isinstance(layout, dict) else None
    if isinstance(height, (int, float)) and not isinstance(height, bool) and math.isfinite(height) and height > 0:
        return height
    return DEFAULT_FIGURE_HEIGHT


def plotly_html(figure: dict, div_id: str) -> str:
    """A div and a script that draw one plotly figure with the page's local plotly.min.js."""
    layout = figure.get("layout", {})
    payload = script_json({"data": figure.get("data", []), "layout": layout})
    return (f'<div id="{html.escape(div_id)}" class="plotly-figure" style="width:100%;height:{figure_height(layout)}px"></div>'
            f'<script>Plotly.newPlot({script_json(div_id)}, ...(p => [p.data, p.layout])({payload}), {{responsive: true}});</script>')


def clean_markdown_output(page: str) -> str:
    """A Markdown output's HTML with only `MARKDOWN_TAGS` and `MARKDOWN_ATTRIBUTES` kept (no script can run)."""
    import bleach
    from bleach.css_sanitizer import CSSSanitizer

    return bleach.clean(page, tags=MARKDOWN_TAGS, attributes=MARKDOWN_ATTRIBUTES, strip=True, strip_comments=True,
                        css_sanitizer=CSSSanitizer(allowed_css_properties=["text-align"]))


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
                page = CV_CDN_IMPORT.sub(r"const { render, \1 } = window.CircuitsVis;", page)
                data["text/html"] = CV_PROPS.sub(lambda m: (m[1] or m[3]) + script_safe(rounded_props(m[2] or m[4])), page)
                views += data["text/html"].count('id="circuits-vis-')
    return views


def rounded(value):
    """`value` (parsed JSON) with each finite float rounded to `DISPLAY_DIGITS` significant digits (whole ones as ints)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return value
        short = float(f"{value:.{DISPLAY_DIGITS}g}")
        return int(short) if short.is_integer() else short  # 0 and 1, not 0.0 and 1.0: a third of a pattern
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def rounded_props(props: str) -> str:
    """A circuitsvis view's props (JSON) with its numbers rounded for display (`rounded`): a colour and a
    hover label need 3 digits, and float32 weights written in full made page 07 weigh 1.7 MB. Props that
    are not JSON are left as they are."""
    try:
        return json.dumps(rounded(json.loads(props)), separators=(",", ":"))
    except ValueError:
        return props


def script_safe(js: str) -> str:
    """JSON or JavaScript literals made safe inside a <script> (see `script_json`): `<`, `>` and `&` only
    occur in its strings, where their \\u escapes read back the same."""
    return js.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def tidy_for_the_web(nb: nbformat.NotebookNode) -> None:
    """Drop the Colab setup cell (a no-op outside Colab) and turn the badge image into a plain link."""
    nb.cells = [c for i, c in enumerate(nb.cells) if not (i == 1 and c.cell_type == "code" and "google.colab" in c.source)]
    if nb.cells and nb.cells[0].cell_type == "markdown":
        nb.cells[0].source = COLAB_BADGE.sub(lambda m: f'<a class="colab" href="{html.escape(m[1])}">Open in Colab</a>',
                                             nb.cells[0].source)


def tidy_streams(nb: nbformat.NotebookNode) -> None:
    """Merge consecutive prints, keep only a progress bar's last state, drop what is left blank."""
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    CoalesceStreamsPreprocessor().preprocess(nb, {})
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = [o for o in cell.outputs if o.output_type != "stream" or o.text.strip()]


def writes_prose(cell: nbformat.NotebookNode) -> bool:
    """A code cell that only writes Markdown from recorded findings (`findings.markdown(...)`) or shows an
    exercise's folded answer (`exercises.answer(n)`)."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith(("findings.markdown(", "exercises.answer("))


def hide_prose_sources(nb: nbformat.NotebookNode) -> None:
    """Collapse the source of cells that write prose: `jupyter.source_hidden` for JupyterLab and the website,
    `cellView: form` for Colab. The reader wants the text they print, not the template behind it."""
    for cell in nb.cells:
        if writes_prose(cell):
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
            cell.metadata["cellView"] = "form"


def tag_hidden_sources(nb: nbformat.NotebookNode) -> None:
    """Tag each cell whose source is collapsed (`jupyter.source_hidden`) so the page hides its input too."""
    for cell in nb.cells:
        if cell.metadata.get("jupyter", {}).get("source_hidden"):
            cell.metadata["tags"] = [*cell.metadata.get("tags", []), "source-hidden"]


def page_href(nb: Path) -> str:
    """A notebook's page address, escaped for an href."""
    return html.escape(f"{nb.stem}.html")


def nav(prev: Path | None, nxt: Path | None) -> str:
    """Previous / index and library / next links for a notebook page, named by the notebooks' titles."""
    left = f'<a href="{page_href(prev)}">&larr; {html.escape(title(prev))}</a>' if prev else '<span></span>'
    right = f'<a href="{page_href(nxt)}">{html.escape(title(nxt))} &rarr;</a>' if nxt else '<span></span>'
    return (f'<nav class="journal">{left}<span><a href="index.html">journal index</a> · '
            f'<a href="library.html">the library</a></span>{right}</nav>')


def exporter():
    """nbconvert's HTML exporter with the lab template, our additions, and the local MathJax."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file="journal.html.j2",
                        extra_loaders=[DictLoader({"journal.html.j2": TEMPLATE})],
                        filters={"clean_markdown_output": clean_markdown_output},
                        mathjax_url=f"mathjax/{MATHJAX_CONFIG}")


def render_notebook(path: Path, out: Path, prev: Path | None, nxt: Path | None, mathjax: bool = True,
                    html_exporter=None) -> Path:
    """Render one notebook to `out/<stem>.html`."""
    nb = nbformat.read(path, as_version=4)
    tidy_for_the_web(nb)
    tidy_streams(nb)
    tag_hidden_sources(nb)
    scripts = PLOTLY_SCRIPTS if inline_plotly(nb, path.stem) else ""
    if localise_circuitsvis(nb):
        scripts += CIRCUITSVIS_SCRIPTS
    head = f'{ICON}<link rel="stylesheet" href="journal.css">{scripts}'
    resources = {"metadata": {"name": path.stem},
                 "journal": {"head": head, "nav": nav(prev, nxt), "toc": TOC, "mathjax": mathjax}}
    body, _ = (html_exporter or exporter()).from_notebook_node(nb, resources=resources)
    body = GLOSSARY_LINK.sub('href="glossary.html#', shared_lab_css(body, out))
    target = out / f"{path.stem}.html"
    target.write_text(body, encoding="utf-8")
    return target


def shared_lab_css(page: str, out: Path) -> str:
    """`page` with the style sheets in its <head> (nbconvert's, the same on every page) moved to one file in `out`
    named after its content (`LAB_CSS`) and linked from where the first one was, so the order of the rules is kept.
    Styles in the body (a table's own) stay where they are."""
    head_end = page.find("</head>")
    styles = list(HEAD_STYLE.finditer(page, 0, head_end)) if head_end >= 0 else []
    if not styles:
        return page
    css = "\n".join(m[1].strip() for m in styles) + "\n"
    name = LAB_CSS.format(hashlib.sha256(css.encode()).hexdigest()[:12])
    if not (out / name).is_file():  # named after its content: a file of that name already holds it
        paths.atomic_write_text(out / name, css)
    start = styles[0].start()
    return (page[:start] + f'<link rel="stylesheet" href="{name}">\n'
            + HEAD_STYLE.sub("", page[start:head_end]) + page[head_end:])


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
        f'<tr><td><a href="{page_href(nb)}">{html.escape(title(nb))}</a></td>'
        f"<td>{html.escape(headline(nb.stem) or '(not run yet)')}</td>"
        f"<td>{colab_cell(nb)}</td></tr>" for nb in nbs)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>The interpretability journal</title>
{ICON}<link rel="stylesheet" href="journal.css"></head><body class="index">
<h1>The interpretability journal</h1>
<p>Numbered experiments that open up small neural networks we train ourselves: toy models of
superposition, an MNIST MLP, a one-layer transformer that outputs the median of a list, sparse
autoencoders, a planted backdoor, character-level language models on Tiny Shakespeare, and a
transformer that groks modular addition. Each entry states a question, runs the experiment, and records its findings as numbers
that the test suite checks. Read them in order; every figure is interactive, and each notebook opens
in Colab to be rerun.</p>
<table class="findings"><thead><tr><th>notebook</th><th>what it found</th><th></th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>A reading path</h2>
<p>What each entry needs first, and what you will be able to do after it. Terms of art are defined in
the <a href="glossary.html">glossary</a>.</p>
<ol class="path">{reading_path(nbs)}</ol>
<h2>The library</h2>
<p>The tools the notebooks use work on any PyTorch model: <a href="library.html">glassbox, the library</a>
lists each module's public functions with their signatures and a short example you can run.</p>
<footer>Rendered from the executed notebooks by <code>make journal</code>; works offline.</footer>
</body></html>"""


def reading_path(nbs: list[Path]) -> str:
    """The index's list items: each notebook, the notebooks to read before it, what it teaches you to do."""
    from glassbox.journal.catalogue import READING_PATH

    items = []
    for nb in nbs:
        needs, skill = READING_PATH.get(nb.stem[:2], ((), ""))
        before = ", ".join(f'<a href="{page_href(p)}">{html.escape(p.stem[:2])}</a>' for p in nbs if p.stem[:2] in needs)
        items.append(f'<li><a href="{page_href(nb)}">{html.escape(title(nb))}</a>'
                     f'{f" (after {before})" if before else ""}: {html.escape(skill)}</li>')
    return "".join(items)


def glossary_page(markdown_text: str) -> str:
    """The glossary (notebooks/GLOSSARY.md: `### Term` headings, each followed by its definition) as a
    page whose entries carry the same anchors as on GitHub."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    from glassbox.journal.catalogue import glossary_entries

    entries = "".join(f'<dt id="{slug}">{html.escape(term)}</dt><dd>{markdown2html_mistune(GLOSSARY_ANCHOR.sub("", text))}</dd>'
                      for slug, term, text in glossary_entries(markdown_text))
    entries = re.sub(r'href="(?:\.\./)?notebooks/([0-9]{2}_[a-z0-9_]+)\.ipynb', r'href="\1.html', entries)
    entries = re.sub(r'href="([0-9]{2}_[a-z0-9_]+)\.ipynb', r'href="\1.html', entries)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Glossary · The interpretability journal</title>
{ICON}<link rel="stylesheet" href="journal.css"></head><body class="index glossary">
<nav class="journal"><span></span><span><a href="index.html">journal index</a> · <a href="library.html">the library</a></span><span></span></nav>
<h1>Glossary</h1><p>The terms of art the notebooks use, each with where it is first used.</p>
<dl>{entries}</dl></body></html>"""


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
    """Render all notebooks, the glossary, the library page and the index into `out`; returns the index path."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("[0-9][0-9]_*.html"):  # pages of notebooks renamed or removed since
        stale.unlink()
    mathjax = copy_assets(out)
    html_exporter = exporter()
    for i, nb in enumerate(nbs):
        render_notebook(nb, out, nbs[i - 1] if i else None, nbs[i + 1] if i + 1 < len(nbs) else None,
                        mathjax, html_exporter)
    from glassbox.journal import paths

    glossary = paths.NOTEBOOK_DIR / "GLOSSARY.md"
    (out / "glossary.html").write_text(glossary_page(glossary.read_text() if glossary.is_file() else ""), encoding="utf-8")
    from glassbox.journal.library import library_page

    (out / "library.html").write_text(library_page(nbs), encoding="utf-8")
    index = out / "index.html"
    index.write_text(index_page(nbs), encoding="utf-8")
    return index
