"""The website's library page, built from the code: for each tool module at the top of glassbox, the
first paragraph of its docstring, every public function and class with its signature as Python reads
it (jaxtyping shapes kept) and the first paragraph of its docstring, and one short example; then the
journal's studies, one line each, with links to the notebooks that use them.

The examples live here, in `EXAMPLES`, and nowhere else: the page shows them and
tests/test_library_page.py runs each one (every example builds its own tiny model, states what it
produces with `assert`, and runs in a second or two on the CPU). Everything taken from the code or
the notebooks is escaped with `html.escape` before it reaches the page.
"""
import ast
import html
import importlib
import inspect
import re
from pathlib import Path

import glassbox

TOOLS = ("checks", "hooks", "neurons", "probes", "attribution", "ablation", "lens", "circuits", "patching", "sae",
         "transcoders", "training", "lm", "fourier", "viz")
ICON = '<link rel="icon" href="data:,">'  # as on the other pages: no favicon.ico request

# One example per tool module. Each builds its own model and checks what it says with `assert`.
EXAMPLES: dict[str, str] = {
    "checks": '''\
import torch
from glassbox import checks

acts = checks.tensor(torch.randn(8, 16), "acts", ndim=2)   # returned as it came when it is what was asked for
try:
    checks.tensor(torch.tensor([[1.0, float("nan")]]), "acts", ndim=2)
except ValueError as err:
    message = str(err)
assert "acts" in message                                    # the error names the argument
assert checks.index(-1, "layer", 4, negative=True) == -1
''',
    "hooks": '''\
import torch
from torch import nn
from glassbox import hooks

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))   # children are named "0", "1", "2"
x = torch.randn(5, 4)
with hooks.capture(model, ["0", "1"]) as acts:
    logits = model(x)
assert acts["1"].shape == (5, 8) and torch.equal(acts["1"], acts["0"].relu())
with hooks.patch(model, {"1": lambda a: a * 0}):                     # the hidden layer switched off
    patched = model(x)
assert torch.allclose(patched, model[2].bias.expand(5, 3))            # only the last bias is left
''',
    "neurons": '''\
import torch
from torch import nn
from glassbox import neurons

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
x, y = torch.randn(60, 4), torch.arange(60) % 3
acts = neurons.get_activations(model, "1", x)              # (60, 6): the ReLU's output
means = neurons.class_means(acts, y, n_classes=3)          # (3, 6)
selectivity = neurons.class_selectivity(acts, y, n_classes=3)
top = neurons.top_activating(acts, neuron=2, k=5)          # the 5 inputs that drive neuron 2 most
assert means.shape == (3, 6) and selectivity.shape == (6,)
assert acts[top, 2].tolist() == sorted(acts[:, 2].tolist(), reverse=True)[:5]
''',
    "probes": '''\
import torch
from torch import nn
from glassbox import probes

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
x = torch.randn(400, 4)
concept = (x[:, 0] > 0).long()                             # something to read from the hidden layer
features = probes.get_features(model, ["1"], x)["1"]       # (400, 32)
probe = probes.fit_probe(features[:300], concept[:300], features[300:], concept[300:])
assert probe.accuracy > 0.85 and probe.chance < 0.6        # linearly readable, even at random weights
''',
    "attribution": '''\
import torch
from torch import nn
from glassbox import attribution

torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))      # a linear model on 4 x 4 "images"
x = torch.randn(2, 4, 4)
ig = attribution.attribute(model, x, target=1, method="integrated_gradients")
assert ig.shape == x.shape                                 # one score per pixel
expected = x * model[1].weight[1].reshape(4, 4)            # linear model: IG from a black image is x * w
assert torch.allclose(ig, expected, atol=1e-4)
assert torch.allclose(attribution.rank_correlation(ig, expected), torch.ones(2))
''',
    "ablation": '''\
import torch
from torch import nn
from glassbox import ablation

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
x = torch.randn(200, 4)
y = model(x).argmax(-1)                                    # the model's own answers: accuracy 1
with ablation.ablate(model, "1", [0, 1, 2]):               # neurons 0..2 of the ReLU output 0
    ablated = model(x)
drop = ablation.class_accuracy_drop(model, "1", x, y, n_classes=2)   # (2 classes, 8 neurons)
assert drop.shape == (2, 8) and drop.min() >= 0
assert not torch.equal(ablated, model(x))
''',
    "lens": '''\
import torch
from transformer_lens.model_bridge import TransformerBridge
from glassbox import lens

torch.manual_seed(0)
model = TransformerBridge.boot_native(dict(n_layers=2, n_heads=2, d_model=16, d_head=8, d_mlp=32, d_vocab=12,
                                           n_ctx=10, act_fn="gelu"))   # random weights; any TransformerLens model
tokens = torch.randint(0, 12, (2, 10))
logits, cache = model.run_with_cache(tokens)
by_layer = lens.logit_lens(model, cache)                   # (3, 2, 10, 12): before each layer, and after the last
assert torch.allclose(by_layer[-1], logits, atol=1e-4)     # the last read is the model's output
parts, labels = lens.residual_components(model, cache)     # embed, pos_embed, each head, b_O, each MLP
dla = lens.direct_logit_attribution(model, cache, parts, tokens)     # (component, batch, pos)
target_logits = logits.gather(-1, tokens[..., None])[..., 0]
assert torch.allclose(dla.sum(0) + lens.logit_bias(model)[tokens], target_logits, atol=1e-3)
assert lens.head_scores(model, tokens)["previous-token"].shape == (2, 2)   # (layer, head)
''',
    "circuits": '''\
import torch
from transformer_lens.model_bridge import TransformerBridge
from glassbox import circuits

torch.manual_seed(0)
model = TransformerBridge.boot_native(dict(n_layers=1, n_heads=1, d_model=16, d_head=8, d_vocab=11, n_ctx=5,
                                           attn_only=True))  # a 1-layer attention-only transformer
tokens = torch.randint(0, 11, (3, 5))
ov = circuits.get_ov_table(model)                          # (token, position, logit)
assert ov.shape == (11, 5, 11)
parts, labels = circuits.get_logit_components(model, tokens)   # the last position's logits, split exactly
assert torch.allclose(parts.sum(0), model(tokens)[:, -1], atol=1e-4)
''',
    "sae": '''\
import torch
from torch import nn
from glassbox import sae

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
x = torch.randn(1024, 8)
acts = sae.collect_activations(model, "1", x)              # (1024, 32)
trained, seconds = sae.train_sae(sae.make_sae("topk", 32, 64, k=8), acts, n_samples=4096, batch_size=64, lr=3e-2)
metrics = sae.evaluate_sae(trained, acts)                  # l0, fvu, dead_fraction
assert metrics["l0"] <= 8 and metrics["fvu"] < 0.5         # 8 latents of 64 explain most of the variance
with sae.splice(model, "1", trained):                      # the reconstruction replaces the ReLU's output
    spliced = model(x)
assert spliced.shape == (1024, 4)
''',
    "training": '''\
import torch
from torch import nn
from glassbox import training

training.set_seed(0)
x = torch.randn(512, 2)
y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()                  # XOR of two signs: needs the hidden layer
model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))
history = training.train(model, training.minibatches(x, y, 64), steps=200, lr=3e-2, eval_every=50)
assert training.accuracy(model, x, y) > 0.9
assert len(history.records) >= 4                           # loss logged every 50 steps
''',
    "lm": '''\
import torch
from torch import nn
from glassbox import lm, training

training.set_seed(0)
tokens = torch.arange(400) % 7                             # a "text" in which each token follows from the last
model = nn.Sequential(nn.Embedding(7, 16), nn.Linear(16, 7))   # any (batch, pos) -> (batch, pos, d_vocab) model
training.train(model, lm.windows(tokens, batch_size=16, n_ctx=8), steps=100, lr=5e-2, loss_fn=lm.next_token_loss)
assert lm.evaluate_loss(model, tokens, n_ctx=8) < 0.1      # nats per token (uniform guessing: 1.95)
assert lm.sample(model, torch.tensor([3]), n_new=5, n_ctx=8, temperature=0).tolist() == [3, 4, 5, 6, 0, 1]
''',
    "patching": '''\
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from glassbox import patching

cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=6, d_head=4, n_heads=2, d_vocab=10, attn_only=True, seed=0)
model = HookedTransformer(cfg)
clean, corrupt = torch.randint(0, 10, (8, 6)), torch.randint(0, 10, (8, 6))
same = patching.path_patch(model, clean, clean, senders=[(0, 1)], receivers=[(1, 0)], into="q")
assert torch.allclose(same, model(clean), atol=1e-5)      # patching in the clean run's own values changes nothing
metric = lambda logits: logits[:, -1, 0].mean().item()     # any scalar of the logits
means = patching.group_means(model, corrupt)                # every head's mean output over a reference set
f = patching.faithfulness(model, clean, metric, [(1, 0), (1, 1)], means)
assert set(f) >= {"F(M)", "F(C)", "F(empty)"}
''',
    "transcoders": '''\
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from glassbox import transcoders

cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_mlp=32, d_vocab=11, act_fn="gelu",
                              normalization_type="LN", seed=0)
model = HookedTransformer(cfg)
tcs = {layer: transcoders.make_transcoder(16, 24, 4, layer=layer, seed=layer) for layer in range(2)}  # untrained, for shape
graph = transcoders.attribution_graph(model, tcs, torch.tensor([1, 2, 3, 4, 5]))   # one prompt, its last logit
pruned = transcoders.prune(graph)                                               # the nodes carrying most influence
assert graph.adjacency.shape == (graph.n_features + 2 * 5 + 5 + 1,) * 2 and pruned.nodes[graph.logit_index]
assert 0 <= transcoders.graph_scores(graph)["replacement"] <= 1
''',
    "fourier": '''\
import math
import torch
from glassbox import fourier

p = 7
basis = fourier.basis(p)                                   # (7, 7): one real Fourier function per row
assert torch.allclose(basis @ basis.T, torch.eye(p), atol=1e-5)
wave = torch.cos(2 * math.pi * 3 * torch.arange(p) / p)     # frequency 3
norms = fourier.frequency_norms(basis @ wave)              # (4,): const, 1, 2, 3
assert norms.argmax() == 3 and fourier.names(p)[:3] == ["const", "cos 1", "sin 1"]
''',
    "viz": '''\
import torch
from torch import nn
from glassbox import viz

torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
x = torch.randn(1, 4, 4)
graph = viz.get_neuron_graph(model, x)                     # activations per layer, weight x activation per edge
assert [len(a) for a in graph.activations] == [16, 8, 3]
figure = viz.neuron_graph(model, x)                        # a plotly figure; viz.show(figure) displays it
assert len(figure.data) > 0
''',
}


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line ('' when there is none)."""
    paragraph = inspect.cleandoc(doc or "").split("\n\n")[0]
    return " ".join(paragraph.split())


def own_docstring(obj) -> str | None:
    """`obj`'s own docstring: None when it has none (a dataclass's generated `Name(field: type, ...)` is not one)."""
    doc = obj.__doc__ if "__doc__" in vars(obj) or not inspect.isclass(obj) else None
    if inspect.isclass(obj) and doc and doc.startswith(f"{obj.__name__}("):
        return None
    return doc if doc and doc.strip() else None


def annotation_text(annotation) -> str:
    """An annotation as code writes it: `Float[Tensor, "batch d"]`, `nn.Module`, `Iterator[Tensor]`, `int | None`."""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    text = re.sub(r"\btorch\.nn\.modules\.[\w.]+\.(\w+)", r"nn.\1", text)
    text = re.sub(r"\b(?!nn\.)(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", text)  # module paths: collections.abc.Iterator
    return text.replace("'", '"')


class _Shown:
    """Stands in for an annotation inside `inspect.Signature`, which prints it by its repr."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def signature(obj) -> str:
    """`name(parameters) -> return`, annotations as `annotation_text` writes them, defaults by their repr."""
    sig = inspect.signature(obj)
    params = [p.replace(annotation=_Shown(annotation_text(p.annotation))) if p.annotation is not p.empty else p
              for p in sig.parameters.values()]
    returns = sig.return_annotation
    returns = _Shown(annotation_text(returns)) if returns is not sig.empty and not inspect.isclass(obj) else sig.empty
    return obj.__name__ + str(sig.replace(parameters=params, return_annotation=returns))


def public_api(module) -> list[tuple[str, str, str]]:
    """(name, signature, docstring summary) of every public function and class defined in `module`, in source order."""
    return [(name, signature(obj), summary(own_docstring(obj))) for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__]


def tool_modules() -> dict[str, object]:
    """The tool modules at the top of glassbox, imported, in `TOOLS` order."""
    return {name: importlib.import_module(f"glassbox.{name}") for name in TOOLS}


def studies() -> dict[str, str]:
    """Each study module of glassbox.studies and its one line: the line of the package docstring's table, else
    the first paragraph of its own docstring. Read from the source (the machinery does not import the studies)."""
    folder = Path(glassbox.__file__).parent / "studies"
    table = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    lines = dict(m.groups() for m in re.finditer(r"^\s+([a-z_]\w*)\s{2,}(\S.*)$", table, re.M))
    return {path.stem: lines.get(path.stem) or summary(ast.get_docstring(ast.parse(path.read_text())))
            for path in sorted(folder.glob("*.py")) if path.stem != "__init__"}


STUDY_IMPORT = re.compile(r"from\s+glassbox\.studies\s+import\s+\(?([\w\s,]+?)\)?\s*(?:#.*)?$|glassbox\.studies\.(\w+)", re.M)


def studies_used(notebook: Path) -> set[str]:
    """The study modules a notebook's code cells import (`from glassbox.studies import a, b as c` or `glassbox.studies.a`)."""
    import nbformat

    code = "\n".join(c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")
    used = set()
    for names, dotted in STUDY_IMPORT.findall(code):
        used |= {dotted} if dotted else {part.split()[0] for part in names.split(",") if part.strip()}
    return used


def prose(text: str) -> str:
    """Docstring text as HTML: escaped, then `code` in backticks set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def module_section(name: str, module) -> str:
    """One tool module: its docstring's first paragraph, its example, and its public API."""
    api = "".join(f'<dt id="{html.escape(f"{name}.{fn}")}"><code>{html.escape(sig)}</code></dt>'
                  f"<dd>{prose(doc) if doc else '<em>(no docstring)</em>'}</dd>"
                  for fn, sig, doc in public_api(module))
    example = EXAMPLES.get(name, "")
    shown = f'<p class="example-label">Example</p><pre class="example"><code>{html.escape(example)}</code></pre>' if example else ""
    return (f'<section id="{html.escape(name)}"><h2><code>glassbox.{html.escape(name)}</code></h2>'
            f"<p>{prose(summary(module.__doc__))}</p>{shown}<dl class=\"api\">{api}</dl></section>")


def study_item(name: str, line: str, nbs: list[Path], used: dict[Path, set[str]], title) -> str:
    """One study: its line and links to the rendered notebooks that use it."""
    links = ", ".join(f'<a href="{html.escape(f"{nb.stem}.html")}">{html.escape(title(nb))}</a>'
                      for nb in nbs if name in used[nb])
    return (f'<li id="{html.escape(f"studies.{name}")}"><code>glassbox.studies.{html.escape(name)}</code>: '
            f"{html.escape(line)}{f'. Used in: {links}' if links else ''}</li>")


LIBRARY_CSS = """
body.library dl.api dt { margin-top: 1rem; } body.library dl.api dd { margin: .2rem 0 0 1.2rem; color: #1f2328; }
body.library dl.api code, body.library pre.example { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .85rem; }
body.library pre.example { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 4px; padding: .6rem .8rem; }
body.library p.example-label { font-size: .85rem; color: #57606a; margin: 1rem 0 .2rem; }
body.library section { border-top: 1px solid #d0d7de; margin-top: 2rem; }
body.library :target { background: #fff8c5; }
"""


def library_page(nbs: list[Path]) -> str:
    """The library page: glassbox's tools with their public API and an example each, then the studies."""
    from glassbox.journal.catalogue import title

    modules = tool_modules()
    contents = " · ".join(f'<a href="#{html.escape(n)}">{html.escape(n)}</a>' for n in modules)
    sections = "".join(module_section(n, m) for n, m in modules.items())
    used = {nb: studies_used(nb) for nb in nbs}
    items = "".join(study_item(n, line, nbs, used, title) for n, line in studies().items())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>The library · The interpretability journal</title>
{ICON}<link rel="stylesheet" href="journal.css"><style>{LIBRARY_CSS}</style></head><body class="index library">
<nav class="journal"><span></span><span><a href="index.html">journal index</a> · <a href="glossary.html">glossary</a></span><span></span></nav>
<h1>glassbox: the library</h1>
<p>The tools the notebooks use, for any PyTorch model: an <code>nn.Module</code> of your own, a TransformerLens
model, or a Hugging Face model wrapped by TransformerLens's <code>TransformerBridge</code>. Install with
<code>pip install -e .</code> from a clone of the repository and import what you need, e.g.
<code>from glassbox import hooks</code>. Each module below opens with an example that builds its own tiny
model (the tests run every one), then lists each public function and class with its signature (tensor shapes
as jaxtyping annotations) and the first line of its docstring. This page is generated from the code.</p>
<p>Modules: {contents}</p>
{sections}
<section id="studies"><h2>The journal's experiments: <code>glassbox.studies</code></h2>
<p>What the notebooks share beyond the tools: one module per study, each used by the notebooks linked.</p>
<ul class="studies">{items}</ul></section>
</body></html>"""
