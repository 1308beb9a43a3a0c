"""Figures. `show(fig)` displays a plotly figure interactively and, in full runs, also as a static
PNG so the notebook reads on GitHub (which runs no JavaScript). Add plotting functions by concept
below; each returns a figure and leaves showing it to the caller."""
import json
import shutil
import warnings

import plotly.graph_objects as go

from glassbox import notebook

PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _browser() -> str | None:
    """Chromium or Chrome for kaleido's static export, if one is installed."""
    return next(filter(None, (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome"))), None)


def show(fig: go.Figure, *, static: bool = True, width: int = 900, height: int | None = None) -> None:
    """Display `fig`: interactive plotly JSON plus a PNG copy (full runs, when a browser is installed)."""
    from IPython.display import display

    run = notebook.current()
    if notebook.in_colab() or not static or (run is not None and run.smoke) or _browser() is None:
        if static and _browser() is None and not notebook.in_colab():
            warnings.warn("no Chromium found: figure shown without its static PNG (apt-get install chromium)")
        fig.show()
        return
    png = fig.to_image(format="png", width=width, height=height or fig.layout.height or 500)
    display({PLOTLY_MIME: json.loads(fig.to_json()), "image/png": png}, raw=True)


# circuitsvis views that draw with no internet. A circuitsvis function (e.g.
# `circuitsvis.attention.attention_heads(attention=pattern, tokens=tokens)`) returns HTML that
# imports its JavaScript from a CDN (or, offline, inlines the 1.3 MB bundle into every view).
# `show_circuitsvis(view)` instead puts the bundle, gzipped (~0.5 MB), into the first view of the
# kernel only; later views reuse it. The rendered journal swaps the bundle for one local file.
CIRCUITSVIS_BUNDLE_CLASS = "circuitsvis-bundle"  # <script> holding the bundle (render.py strips it)
_circuitsvis_bundle_shown = False


def circuitsvis_bundle() -> str:
    """circuitsvis's browser bundle (defines the global `CircuitsVis`), safe to inline in a <script>."""
    from pathlib import Path

    import circuitsvis

    js = (Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js").read_text(encoding="utf-8")
    return js.replace("</script", "<\\/script")


def _parse_circuitsvis(view) -> tuple[str, str, str]:
    """(element name, props as JSON, CDN URL) of a view returned by a circuitsvis function."""
    import re

    match = re.search(r'import \{ render, (\w+) \} from "([^"]+)";\s*render\(\s*"[^"]*",\s*\w+,\s*(.*)\)\s*</script>\s*$',
                      getattr(view, "cdn_src", ""), re.S)
    if match is None:
        raise TypeError("show_circuitsvis expects what a circuitsvis function returns, e.g. "
                        f"circuitsvis.attention.attention_heads(attention=..., tokens=...); got {type(view).__name__}")
    name, url, props = match.groups()
    return name, props.strip(), url


def circuitsvis_html(view, *, bundle: bool) -> str:
    """HTML that draws `view` (a circuitsvis result) from a global `CircuitsVis`, carrying the bundle if asked."""
    import base64
    import gzip
    import uuid

    name, props, url = _parse_circuitsvis(view)
    div = f"circuits-vis-{uuid.uuid4().hex[:12]}"
    head = ""
    if bundle:  # unzipped in the browser, then run as a classic script so `CircuitsVis` is global
        packed = base64.b64encode(gzip.compress(circuitsvis_bundle().encode(), 9, mtime=0)).decode()
        head = (f'<script class="{CIRCUITSVIS_BUNDLE_CLASS}">window.CircuitsVisReady = window.CircuitsVisReady || '
                f'(async () => {{ const zipped = Uint8Array.from(atob("{packed}"), c => c.charCodeAt(0)); '
                'const js = await new Response(new Blob([zipped]).stream().pipeThrough(new DecompressionStream("gzip"))).text(); '
                'const s = document.createElement("script"); s.textContent = js; document.head.appendChild(s); '
                "return window.CircuitsVis; })();</script>\n")
    props_js = props.replace("</", "<\\/")
    return head + f"""<div id="{div}" class="circuitsvis-view" style="margin: 15px 0;"></div>
<script>(async () => {{
  const el = document.getElementById("{div}");
  try {{  // the bundle: loaded by the page, carried by an earlier view, or (online only) the CDN
    for (let i = 0; i < 30 && !window.CircuitsVis && !window.CircuitsVisReady; i++) await new Promise(r => setTimeout(r, 100));
    const cv = window.CircuitsVis || (window.CircuitsVisReady && await window.CircuitsVisReady) || await import("{url}");
    cv.render("{div}", cv["{name}"], {props_js});
  }} catch (err) {{
    el.className += " circuitsvis-error";
    el.textContent = "circuitsvis view not drawn (" + err + "). Offline it needs the bundle carried by the "
      + "notebook's first view: rerun the notebook from the top (and trust it in JupyterLab).";
    console.error(err);
  }}
}})();</script>"""


def show_circuitsvis(view, *, bundle: bool | None = None) -> None:
    """Display a circuitsvis view so it draws offline (in JupyterLab and the rendered journal).

    `view` is what a circuitsvis function returns, e.g.
    `viz.show_circuitsvis(circuitsvis.attention.attention_heads(attention=pattern, tokens=tokens))`
    with `pattern` [head_index dest_pos src_pos]. The first view of a kernel carries the bundle
    (~0.5 MB, gzipped); pass bundle=True to force it. In Colab (each output in its own frame) the
    view loads circuitsvis from its CDN. GitHub runs no JavaScript: show the pattern that matters
    also as a plotly heatmap with `show(px.imshow(...))`, which keeps a static PNG.
    """
    global _circuitsvis_bundle_shown
    from IPython.display import display

    if bundle is None:
        bundle = not notebook.in_colab() and not _circuitsvis_bundle_shown
    html = circuitsvis_html(view, bundle=bundle)
    _circuitsvis_bundle_shown |= bundle
    name = _parse_circuitsvis(view)[0]
    display({"text/html": html,
             "text/plain": f"<circuitsvis {name} view: interactive, drawn in JupyterLab, Colab and the rendered journal>"},
            raw=True)
