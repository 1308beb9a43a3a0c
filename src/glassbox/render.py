"""Render executed notebooks as a static HTML journal that works offline.

Plotly figures are stored in the notebooks as JSON (mime type application/vnd.plotly.v1+json);
here each becomes a <div> drawn by a local copy of plotly.min.js, so no CDN is needed.
"""
import html
import json
import shutil
from pathlib import Path

import nbformat


PLOTLY_MIME = "application/vnd.plotly.v1+json"
PAGE_CSS = """
body { max-width: 1100px; margin: 0 auto; padding: 0 1.5rem; font-family: system-ui, sans-serif; }
nav.journal { display: flex; justify-content: space-between; padding: .8rem 0; border-bottom: 1px solid #ddd; }
table.findings { border-collapse: collapse; } table.findings td, table.findings th { border: 1px solid #ccc; padding: .3rem .6rem; }
"""


def plotly_html(figure: dict, div_id: str) -> str:
    """A div and a script that draw one plotly figure with the page's local plotly.min.js."""
    payload = json.dumps({"data": figure.get("data", []), "layout": figure.get("layout", {})})
    return (f'<div id="{div_id}" class="plotly-figure" style="width:100%;min-height:450px"></div>'
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


def nav(prev: Path | None, nxt: Path | None) -> str:
    """Previous / index / next links for a notebook page."""
    left = f'<a href="{prev.stem}.html">&larr; {prev.stem}</a>' if prev else "<span></span>"
    right = f'<a href="{nxt.stem}.html">{nxt.stem} &rarr;</a>' if nxt else "<span></span>"
    return f'<nav class="journal">{left}<a href="index.html">journal index</a>{right}</nav>'


def render_notebook(path: Path, out: Path, prev: Path | None, nxt: Path | None) -> Path:
    """Render one notebook to `out/<stem>.html`."""
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    inline_plotly(nb, path.stem)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    head_extra = f'<script src="plotly.min.js"></script><style>{PAGE_CSS}</style>'
    body = body.replace("</head>", head_extra + "</head>", 1)
    bar = nav(prev, nxt)
    body = body.replace("<main>", f"<main>{bar}", 1) if "<main>" in body else body.replace("</body>", bar + "</body>", 1)
    body = body.replace("</main>", f"{bar}</main>", 1)
    target = out / f"{path.stem}.html"
    target.write_text(body)
    return target


def index_page(nbs: list[Path]) -> str:
    """The journal's front page: what it is, and each notebook with its headline finding."""
    from glassbox.journal import headline, title

    rows = "".join(
        f'<tr><td><a href="{nb.stem}.html">{html.escape(title(nb))}</a></td>'
        f"<td>{html.escape(headline(nb.stem) or '(not run yet)')}</td></tr>" for nb in nbs)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>The interpretability journal</title>
<style>{PAGE_CSS}</style></head><body>
<h1>The interpretability journal</h1>
<p>Numbered experiments that open up small neural networks we train ourselves: an MNIST MLP, a
one-layer transformer that outputs the median of a list, toy models of superposition and sparse
autoencoders. Each entry states a question, runs the experiment, and records its findings as numbers
that the test suite checks.</p>
<table class="findings"><tr><th>notebook</th><th>what it found</th></tr>{rows}</table>
</body></html>"""


def render_journal(nbs: list[Path], out: Path) -> Path:
    """Render all notebooks and the index into `out`; returns the index path."""
    import plotly

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", out / "plotly.min.js")
    for i, nb in enumerate(nbs):
        render_notebook(nb, out, nbs[i - 1] if i else None, nbs[i + 1] if i + 1 < len(nbs) else None)
    index = out / "index.html"
    index.write_text(index_page(nbs))
    return index
