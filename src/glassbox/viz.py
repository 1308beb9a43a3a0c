"""Figures. `show(fig)` displays a plotly figure interactively and, in full runs, also as a static
PNG so the notebook reads on GitHub (which runs no JavaScript). Add plotting functions by concept
below; each returns a figure and leaves showing it to the caller."""
import itertools
import json
import shutil
import warnings
from dataclasses import dataclass

import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from glassbox import checks
from glassbox.journal import contract as notebook

PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _browser() -> str | None:
    """Chromium or Chrome for kaleido's static export, if one is installed."""
    return next(filter(None, (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome"))), None)


def _to_png(fig: go.Figure, width: int, height: int) -> bytes:
    """PNG bytes of `fig` via one kaleido browser kept running for the kernel (~0.2 s a figure, not ~3 s)."""
    import kaleido

    kaleido.start_sync_server(silence_warnings=True)  # a no-op once the server runs
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")
        return fig.to_image(format="png", width=width, height=height)


def _in_ipython() -> bool:
    """Whether an IPython shell (a notebook kernel or the IPython terminal) is running this code."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def show(fig: go.Figure, *, static: bool = True, width: int = 900, height: int | None = None) -> None:
    """Display `fig`: interactive plotly JSON plus a PNG copy (full runs, when a browser is installed);
    outside IPython (a plain script) plotly's own `fig.show()`, which opens it in a browser."""
    from IPython.display import display

    if not _in_ipython():  # display() would print the figure's JSON and PNG bytes to the terminal
        fig.show()
        return
    run = notebook.current()
    if notebook.in_colab() or not static or (run is not None and run.smoke) or _browser() is None:
        if static and _browser() is None and not notebook.in_colab():
            warnings.warn("no Chromium found: figure shown without its static PNG (apt-get install chromium)")
        fig.show()
        return
    png = _to_png(fig, width, height or fig.layout.height or 500)
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


_view_numbers = itertools.count()


def circuitsvis_html(view, *, bundle: bool) -> str:
    """HTML that draws `view` (a circuitsvis result) from a global `CircuitsVis`, carrying the bundle if asked."""
    import base64
    import gzip
    name, props, url = _parse_circuitsvis(view)
    div = f"circuits-vis-{next(_view_numbers)}"  # numbered, not random: a rerun writes the same bytes
    head = ""
    if bundle:  # unzipped in the browser, then run as a classic script so `CircuitsVis` is global
        packed = base64.b64encode(gzip.compress(circuitsvis_bundle().encode(), 9, mtime=0)).decode()
        head = (f'<script class="{CIRCUITSVIS_BUNDLE_CLASS}">window.CircuitsVisReady = window.CircuitsVisReady || '
                f'(async () => {{ const zipped = Uint8Array.from(atob("{packed}"), c => c.charCodeAt(0)); '
                'const js = await new Response(new Blob([zipped]).stream().pipeThrough(new DecompressionStream("gzip"))).text(); '
                'const s = document.createElement("script"); s.textContent = js; document.head.appendChild(s); '
                "return window.CircuitsVis; })();</script>\n")
    # JSON, whose `<`, `>` and `&` (only ever inside its strings) become \u escapes: no token can end the
    # <script> or open an HTML comment in it
    props_js = props.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
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


# ---------------------------------------------------------------------------------------------
# Neurons (notebook 01): image grids, a one-figure dashboard per neuron, the decision as a graph.

def image_grid(images, titles: list[str] | None = None, *, ncols: int = 8, diverging: bool = False,
               size: float = 1.1, suptitle: str | None = None):
    """A matplotlib grid of 2-D images (batch, h, w); diverging=True: red +, blue -, zero white."""
    import matplotlib.pyplot as plt

    images = torch.as_tensor(images).detach().float()
    if images.ndim != 3:
        raise ValueError(f"expected images (batch, height, width), got shape {tuple(images.shape)}; "
                         "reshape flat MNIST with x.reshape(-1, 28, 28)")
    checks.tensor(images, "images", ndim=3)
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if titles else 1)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            lim = images[i].abs().max().item() or 1.0
            ax.imshow(images[i].numpy(), interpolation="nearest", cmap="RdBu_r" if diverging else "gray_r",
                      **({"vmin": -lim, "vmax": lim} if diverging else {"vmin": 0, "vmax": max(lim, 1e-6)}))
            if titles:
                ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def _as_images(x: Tensor) -> Tensor:
    """Inputs as (batch, h, w) images for display: (batch, h, w), (batch, 1, h, w) or square flat."""
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    side = int(round(x[0].numel() ** 0.5))
    if x.ndim == 3 or (x.ndim == 2 and side * side == x.shape[1]):
        return x.reshape(len(x), side, -1) if x.ndim == 2 else x
    raise ValueError(f"cannot show inputs of shape {tuple(x.shape)} as images; pass (batch, h, w) or square flat images")


def neuron_dashboard(model: nn.Module, layer: str, neuron: int, x: Float[Tensor, "batch *input"],
                     y: Int[Tensor, "batch"], *, drop: Float[Tensor, "n_classes"] | None = None, k: int = 8):
    """One matplotlib figure about one neuron of any model whose inputs are images.

    Panels: the input gradient of the neuron averaged over its top-k inputs (for a first Linear
    layer, its weights); its top-k inputs; its mean activation per class (selectivity in the
    title); the distribution of its activations; the accuracy each class loses without it (`drop`).
    """
    import matplotlib.pyplot as plt

    from glassbox import hooks, neurons, training

    acts = neurons.per_neuron(neurons.get_activations(model, layer, x)).float().cpu()  # plotted: on the CPU
    top = neurons.top_activating(acts, neuron, k)
    x_top = x[top.to(x.device)].detach().to(training.model_device(model, x)).clone().requires_grad_(True)
    with hooks.capture(model, layer, detach=False) as cap:
        model(x_top)
    (grad,) = torch.autograd.grad(neurons.per_neuron(cap[layer])[:, neuron].sum(), x_top)
    y = y.cpu()
    means = neurons.class_means(acts, y)
    sel = neurons.class_selectivity(acts, y)[neuron].item()
    fig = plt.figure(figsize=(12, 5))
    outer = fig.add_gridspec(1, 2, width_ratios=[1, 3.2], wspace=0.1)
    ax = fig.add_subplot(outer[0])
    g = _as_images(grad.mean(0, keepdim=True).float().cpu())[0]
    lim = g.abs().max().item() or 1.0
    ax.imshow(g.numpy(), interpolation="nearest", cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(f"input gradient, mean over top {k}\n(red: more ink there raises it)", fontsize=8)
    ax.axis("off")
    rows = outer[1].subgridspec(2, 1, height_ratios=[1, 1.1], hspace=0.35)
    ncols = -(-k // 2)
    tops = rows[0].subgridspec(2, ncols, hspace=0.3)
    for i, (img, idx) in enumerate(zip(_as_images(x[top.to(x.device)].detach().float().cpu()), top)):
        a = fig.add_subplot(tops[i // ncols, i % ncols])
        a.imshow(img.numpy(), cmap="gray_r")
        a.set_title(f"y={int(y[idx])} a={acts[idx, neuron]:.1f}", fontsize=7)
        a.axis("off")
    charts = rows[1].subgridspec(1, 3, wspace=0.35)
    a = fig.add_subplot(charts[0])
    a.bar(range(len(means)), means[:, neuron].numpy(), color="tab:orange")
    a.set_title(f"mean activation per class\n(selectivity {sel:.2f})", fontsize=8)
    a.set_xticks(range(len(means)))
    a = fig.add_subplot(charts[1])
    a.hist(acts[:, neuron].numpy(), bins=40, color="tab:gray")
    a.set_yscale("log")
    a.set_title(f"activations, log count\n(nonzero on {(acts[:, neuron] > 0).float().mean():.0%} of inputs)", fontsize=8)
    a = fig.add_subplot(charts[2])
    if drop is not None:
        a.bar(range(len(drop)), 100 * drop.detach().float().cpu().numpy(), color="tab:red")
        a.set_xticks(range(len(drop)))
        a.set_title("class accuracy lost\nwhen mean-ablated (%)", fontsize=8)
    else:
        a.axis("off")
    fig.suptitle(f"{layer} neuron {neuron}", fontsize=11)
    return fig


LINEAR_STACK_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid,
                            nn.Identity, nn.Dropout, nn.Flatten)


@dataclass
class NeuronGraph:
    """A stack of Linear layers on one input: the units of each layer, their activations, weight x activation per edge."""

    names: list[str]  # one per layer of nodes: "input", then the name of the Linear that produced it
    activations: list[Float[Tensor, "width"]]  # node values: the input to each Linear, then the output
    contributions: list[Float[Tensor, "width_out width_in"]]  # W[j, i] * a[i]: what node i adds to node j


def _linear_stack(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The Linear layers of a model that is a stack of Linear layers, or a clear error."""
    linears, seen_linear = [], False
    for name, m in model.named_modules():
        if list(m.children()):
            continue
        if isinstance(m, nn.Linear):
            linears.append((name, m))
            seen_linear = True
        elif list(m.parameters(recurse=False)) or (seen_linear and not isinstance(m, LINEAR_STACK_ELEMENTWISE)):
            raise TypeError(
                f"neuron_graph draws stacks of nn.Linear layers with elementwise activations between them; "
                f"{type(model).__name__} has a {type(m).__name__} at {name!r}. Draw a Linear part of it instead, "
                "e.g. neuron_graph(model.head, activations_entering_the_head)")
    if not linears:
        raise TypeError(f"neuron_graph found no nn.Linear in {type(model).__name__}; it draws stacks of Linear layers")
    return linears


@torch.no_grad()
def get_neuron_graph(model: nn.Module, x: Float[Tensor, "1 *input"]) -> NeuronGraph:
    """Node values and edge contributions (weight x activation) of a Linear stack on one input."""
    from glassbox import hooks, training

    checks.tensor(x, "x", floating=False)
    linears = _linear_stack(model)
    if len(x) != 1:
        raise ValueError(f"neuron_graph explains one input: pass it with its batch dimension, e.g. x[:1] "
                         f"(got a batch of {len(x)})")
    names = [n for n, _ in linears]
    inputs: dict[str, Tensor] = {}
    handles = [m.register_forward_pre_hook(lambda mod, args, n=n: inputs.__setitem__(n, args[0].detach()))
               for n, m in linears]
    try:
        with hooks.capture(model, names[-1]) as out:
            model(x.to(training.model_device(model, x)))
    finally:
        for h in handles:
            h.remove()
    acts = [inputs[n].reshape(-1) for n in names] + [out[names[-1]].reshape(-1)]
    contributions = [m.weight * a[None, :] for (_, m), a in zip(linears, acts)]
    return NeuronGraph(names=["input", *names], activations=acts, contributions=contributions)


def neuron_graph(model: nn.Module, x: Float[Tensor, "1 *input"], *, edges_per_layer: int = 24,
                 max_nodes: int = 200, labels: list[str] | None = None) -> go.Figure:
    """The decision on one input as a graph: neurons coloured by activation, the strongest
    weight x activation edges between layers (red adds, blue subtracts). Any stack of nn.Linear."""
    g = get_neuron_graph(model, x)
    drawn = [len(a) <= max_nodes for a in g.activations]
    fig = go.Figure()
    pos = lambda layer, i: (layer, 1 - (i + 0.5) / len(g.activations[layer]))  # noqa: E731
    for layer, c in enumerate(g.contributions):
        if not (drawn[layer] and drawn[layer + 1]):
            continue
        flat = c.abs().flatten()
        top = flat.topk(min(edges_per_layer, len(flat))).indices
        scale = flat[top[0]].item() or 1.0
        for idx in top.tolist():
            j, i = divmod(idx, c.shape[1])
            (x0, y0), (x1, y1) = pos(layer, i), pos(layer + 1, j)
            value = c[j, i].item()
            fig.add_trace(go.Scatter(
                x=[x0, x1], y=[y0, y1], mode="lines", showlegend=False, hoverinfo="text",
                line={"width": 0.5 + 6 * abs(value) / scale, "color": "rgba(214,39,40,0.6)" if value > 0 else "rgba(31,119,180,0.6)"},
                text=f"{g.names[layer]}[{i}] → {g.names[layer + 1]}[{j}]: {value:+.2f}"))
    for layer, a in enumerate(g.activations):
        if not drawn[layer]:
            fig.add_annotation(x=layer, y=0.5, text=f"{g.names[layer]}<br>{len(a)} values<br>(not drawn)", showarrow=False)
            continue
        xs, ys = zip(*(pos(layer, i) for i in range(len(a))))
        lim = a.abs().max().item() or 1.0
        last = layer == len(g.activations) - 1
        text = [f"{g.names[layer]}[{i}] = {v:.2f}" for i, v in enumerate(a.tolist())]
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers+text" if last else "markers", showlegend=False, hoverinfo="text", hovertext=text,
            text=(labels or [str(i) for i in range(len(a))]) if last else None, textposition="middle right",
            marker={"size": 9 if len(a) <= 64 else 6, "color": (a / lim).tolist(), "colorscale": "RdBu_r", "cmin": -1,
                    "cmax": 1, "line": {"width": 0.5, "color": "gray"}}))
    fig.update_layout(height=650, plot_bgcolor="white", margin={"l": 20, "r": 20, "t": 50, "b": 40},
                      title=f"prediction {int(g.activations[-1].argmax())}: strongest {edges_per_layer} contributions per layer",
                      xaxis={"tickvals": list(range(len(g.names))), "showgrid": False, "zeroline": False,
                             "ticktext": ["input", *(f"{n} + activation" for n in g.names[1:-1]), f"{g.names[-1]} (outputs)"]},
                      yaxis={"visible": False})
    return fig


# ---- feature dashboards: one SAE latent (or neuron) at a glance (notebook 04) ----------------------

def feature_dashboard(acts: Float[Tensor, "n"], effect: Float[Tensor, "n_out"], labels: Int[Tensor, "n"], *,
                      k: int = 50, out_names: list[str] | None = None, title: str = "") -> go.Figure:
    """Three panels: the latent's activation histogram, the labels of its top-k inputs, and the outputs
    its decoder direction promotes (`effect`, e.g. from `sae.logit_effect`)."""
    from plotly.subplots import make_subplots

    checks.tensor(acts, "acts", ndim=1, floating=False)
    if len(acts) != len(labels):
        raise ValueError(f"one label per input expected: {len(acts)} activations, {len(labels)} labels")
    on = acts[acts != 0]
    top = labels[acts.topk(min(k, len(acts))).indices]
    names = out_names or [str(i) for i in range(len(effect))]
    fig = make_subplots(1, 3, subplot_titles=[f"activations (non-zero on {len(on) / len(acts):.1%} of inputs)",
                                              f"labels of its top {len(top)} inputs", "logit change from its direction"])
    fig.add_trace(go.Histogram(x=on.tolist(), nbinsx=40, marker_color="gray", showlegend=False), 1, 1)
    counts = torch.bincount(top, minlength=int(labels.max()) + 1)
    fig.add_trace(go.Bar(x=list(range(len(counts))), y=counts.tolist(), marker_color="orange",
                         showlegend=False), 1, 2)
    fig.add_trace(go.Bar(x=names, y=effect.tolist(), showlegend=False,
                         marker_color=["#d62728" if v < 0 else "#2ca02c" for v in effect.tolist()]), 1, 3)
    fig.update_yaxes(type="log", title_text="inputs", row=1, col=1)
    fig.update_xaxes(title_text="activation", row=1, col=1)
    fig.update_xaxes(title_text="label", dtick=1 if len(counts) <= 10 else None, row=1, col=2)
    fig.update_xaxes(title_text="output", type="category", row=1, col=3)
    fig.update_layout(title=title, height=340, margin=dict(t=70, b=50, l=50, r=20))
    return fig


def top_inputs_table(tokens: Int[Tensor, "n pos"], acts: Float[Tensor, "n"], *, k: int = 10,
                     answers: Int[Tensor, "n"] | None = None):
    """The k inputs (token lists) on which a latent is most active, most active first, as a DataFrame."""
    import pandas as pd

    checks.tensor(acts, "acts", ndim=1, floating=False, nonempty=False)
    if tokens.ndim != 2 or len(tokens) != len(acts):
        raise ValueError(f"expected tokens (n, pos) and one activation per input; got {tuple(tokens.shape)} and {tuple(acts.shape)}")
    top = acts.topk(min(k, len(acts))).indices
    table = pd.DataFrame({"activation": acts[top].numpy().round(2), "input": [" ".join(f"{t:2d}" for t in row) for row in tokens[top].tolist()]})
    if answers is not None:
        table["answer"] = answers[top].numpy()
    return table
