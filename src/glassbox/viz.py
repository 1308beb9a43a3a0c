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
