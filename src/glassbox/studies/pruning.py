"""Remove hidden neurons from any `nn.Module`, chosen by how much the model needs them.

    scores = {"relu1": pruning.ablation_scores(model, "relu1", x, y), ...}     # one score per neuron
    removed = pruning.lowest(scores, 0.5)                                         # half of each layer
    with pruning.remove(model, removed):
        acc = training.accuracy(model, x_test, y_test)

Removing a neuron sets its output to 0 (`ablation.ablate` with no values), which computes exactly
what the network would with that neuron's weights deleted. Four ways to score a neuron, least
needed first:
- ablation: the loss gained when the neuron alone is removed (measured, one forward pass each);
- ablation_abs: the mean over inputs of |change of that input's loss| when the neuron alone is removed
  (like ablation, but a neuron that helps some inputs and hurts others still counts as needed);
- attribution: mean |activation x d loss / d activation| (captum; the first-order Taylor estimate
  of the same loss change, Molchanov et al., 2017, "Pruning Convolutional Neural Networks for
  Resource Efficient Inference"), one backward pass for all neurons;
- activation: the neuron's mean activation on the data (a data-aware baseline that reads no gradient
  and no ablation: it removes dead and rarely-firing neurons first);
- magnitude: the L2 norm of the neuron's incoming weights, times that of its outgoing weights when the
  layer reading it is given (a baseline that never looks at data);
- random: a seeded random number (the baseline every method must beat).
"""
import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from captum.attr import LayerGradientXActivation
from jaxtyping import Float, Int
from plotly.colors import qualitative
from scipy.stats import spearmanr
from torch import Tensor, nn

from glassbox import ablation, checks, hooks, neurons, training

METHODS = ("ablation", "ablation_abs", "attribution", "activation", "magnitude", "random")
COLORS = qualitative.D3
Scores = Mapping[str, Float[Tensor, "neuron"]]
Removed = Mapping[str, Int[Tensor, "k"] | Sequence[int]]


@contextmanager
def remove(model: nn.Module, removed: Removed) -> Iterator[None]:
    """Inside the block, the neurons `removed[layer]` of each layer output 0 (deleted)."""
    with ExitStack() as stack:
        for layer, neurons in removed.items():
            stack.enter_context(ablation.ablate(model, layer, neurons))
        yield


@torch.no_grad()
def absolute_ablation_scores(model: nn.Module, layer: str, x: Tensor, y: Int[Tensor, "batch"],
                             batch_size: int = 8192) -> Float[Tensor, "neuron"]:
    """Mean over inputs of |change in that input's cross-entropy| when each neuron of `layer` alone is removed."""
    device = training.model_device(model, x)
    y = y.to(device)
    base = F.cross_entropy(training.predict(model, x, batch_size), y, reduction="none")
    with hooks.capture(model, layer) as acts:
        model(x[:1].to(device))
    scores = []
    for neuron in range(acts[layer].shape[1]):
        with ablation.ablate(model, layer, [neuron]):
            scores.append((F.cross_entropy(training.predict(model, x, batch_size), y, reduction="none") - base).abs().mean().item())
    return torch.tensor(scores)


@torch.no_grad()
def ablation_scores(model: nn.Module, layer: str, x: Tensor, y: Int[Tensor, "batch"],
                    batch_size: int = 8192) -> Float[Tensor, "neuron"]:
    """Cross-entropy gained on (x, y) when each neuron of `layer` alone is removed (zero-ablated)."""
    device = training.model_device(model, x)
    y = y.to(device)
    base = F.cross_entropy(training.predict(model, x, batch_size), y).item()
    with hooks.capture(model, layer) as acts:
        model(x[:1].to(device))
    scores = []
    for neuron in range(acts[layer].shape[1]):
        with ablation.ablate(model, layer, [neuron]):
            scores.append(F.cross_entropy(training.predict(model, x, batch_size), y).item() - base)
    return torch.tensor(scores)


def attribution_scores(model: nn.Module, layer: str, x: Tensor, y: Int[Tensor, "batch"],
                       batch_size: int = 2048) -> Float[Tensor, "neuron"]:
    """Mean over inputs of |sum over positions of activation x d loss / d activation| per neuron."""
    per_input_loss = lambda inputs, labels: F.cross_entropy(model(inputs), labels, reduction="none")
    method = LayerGradientXActivation(per_input_loss, hooks.get_module(model, layer))
    total, device = None, training.model_device(model, x)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        attr = method.attribute(xb.to(device), additional_forward_args=(yb.to(device),)).detach()
        part = attr.flatten(2).sum(-1).abs().sum(0) if attr.ndim > 2 else attr.abs().sum(0)
        total = part if total is None else total + part
    return total / len(x)


def magnitude_scores(model: nn.Module, weight_layer: str) -> Float[Tensor, "neuron"]:
    """L2 norm of each output unit's incoming weights in `weight_layer` (a Linear or Conv module)."""
    module = hooks.get_module(model, weight_layer)
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor) or weight.ndim < 2:
        raise TypeError(f"{weight_layer!r} is a {type(module).__name__} without a (out, in, ...) weight; pass the "
                        "Linear or Conv layer that feeds the neurons (e.g. 'fc1' for 'relu1')")
    return weight.detach().flatten(1).norm(dim=1)


def outgoing_norms(model: nn.Module, reader: str) -> Float[Tensor, "neuron"]:
    """L2 norm of each input unit's outgoing weights in `reader` (the nn.Linear that reads the neurons): its columns."""
    module = hooks.get_module(model, reader)
    if not isinstance(module, nn.Linear):
        raise TypeError(f"{reader!r} is a {type(module).__name__}; pass the nn.Linear that reads the neurons (e.g. 'fc2' for 'relu1')")
    return module.weight.detach().norm(dim=0)


@torch.no_grad()
def activation_scores(model: nn.Module, layer: str, x: Tensor, batch_size: int = 8192) -> Float[Tensor, "neuron"]:
    """Mean activation of each neuron of `layer` on `x` (over inputs and any spatial positions)."""
    total, device = None, training.model_device(model, x)
    for xb in x.split(batch_size):
        with hooks.capture(model, layer) as acts:
            model(xb.to(device))
        a = acts[layer]
        part = (a.flatten(2).mean(-1) if a.ndim > 2 else a).sum(0)
        total = part if total is None else total + part
    return total / len(x)


def random_scores(n_neurons: int, seed: int) -> Float[Tensor, "neuron"]:
    """A seeded random score per neuron: removing the lowest removes a random subset."""
    return torch.rand(n_neurons, generator=torch.Generator().manual_seed(seed))


def score_neurons(model: nn.Module, method: str, weight_layers: Mapping[str, str], x: Tensor,
                  y: Int[Tensor, "batch"], seed: int = 0, readers: Mapping[str, str] | None = None) -> dict[str, Float[Tensor, "neuron"]]:
    """Scores of every neuron of each layer in `weight_layers` ({activation layer: layer holding its
    incoming weights}, e.g. {"relu1": "fc1"}) by one of METHODS; (x, y) are the scoring data.
    `readers` ({activation layer: the nn.Linear reading it}) makes magnitude incoming x outgoing norm."""
    if method not in METHODS:
        raise ValueError(f"unknown scoring method {method!r}; choose one of {METHODS}")
    _check_layers(model, weight_layers, readers, checks.tensor(x, "x", floating=False))
    if method == "ablation":
        return {layer: ablation_scores(model, layer, x, y) for layer in weight_layers}
    if method == "ablation_abs":
        return {layer: absolute_ablation_scores(model, layer, x, y) for layer in weight_layers}
    if method == "attribution":
        return {layer: attribution_scores(model, layer, x, y) for layer in weight_layers}
    if method == "activation":
        return {layer: activation_scores(model, layer, x) for layer in weight_layers}
    magnitude = {layer: magnitude_scores(model, w) for layer, w in weight_layers.items()}
    if readers is not None:
        magnitude = {layer: m * outgoing_norms(model, readers[layer]) for layer, m in magnitude.items()}
    if method == "magnitude":
        return magnitude
    return {layer: random_scores(len(m), seed + i) for i, (layer, m) in enumerate(magnitude.items())}


def _check_layers(model: nn.Module, weight_layers: Mapping[str, str], readers: Mapping[str, str] | None, x: Tensor) -> None:
    """Refuse a weight layer (or reader) whose number of units is not the activation layer's number of neurons."""
    for layer, weight_layer in weight_layers.items():
        width = neurons.get_activations(model, layer, x[:1]).shape[1]
        n_in = len(magnitude_scores(model, weight_layer))
        if n_in != width:
            raise ValueError(f"weight_layers[{layer!r}] = {weight_layer!r} has {n_in} output units but {layer!r} has {width} "
                             "neurons; name the layer whose weights feed it (e.g. {'relu1': 'fc1'})")
        if readers is None:
            continue
        if layer not in readers:
            raise ValueError(f"readers has no entry for {layer!r}; name the nn.Linear reading each layer of weight_layers")
        reader = readers[layer]
        if len(outgoing_norms(model, reader)) != width:
            raise ValueError(f"readers[{layer!r}] = {reader!r} reads {len(outgoing_norms(model, reader))} units but {layer!r} "
                             f"has {width} neurons; name the nn.Linear that reads it (e.g. {{'relu1': 'fc2'}})")


def lowest(scores: Scores, fraction: float) -> dict[str, Int[Tensor, "k"]]:
    """The round(fraction * n) lowest-scoring neurons of each layer (the same fraction everywhere)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1] (the share of each layer's neurons to remove), got {fraction}")
    for layer, s in scores.items():
        checks.tensor(s, f"scores[{layer!r}]", ndim=1, floating=False)
    return {layer: s.argsort()[:round(fraction * len(s))] for layer, s in scores.items()}


def accuracy_curve(model: nn.Module, scores: Scores, fractions: Sequence[float], x: Tensor,
                   y: Int[Tensor, "batch"]) -> Float[Tensor, "fraction"]:
    """Accuracy on (x, y) after removing the lowest-scoring `fraction` of every layer, for each fraction."""
    accs = []
    for fraction in fractions:
        with remove(model, lowest(scores, fraction)):
            accs.append(training.accuracy(model, x, y))
    return torch.tensor(accs)


def fine_tuned_accuracy(model: nn.Module, removed: Removed, batches: Iterator[training.Batch], x: Tensor,
                        y: Int[Tensor, "batch"], *, steps: int, lr: float) -> float:
    """Accuracy on (x, y) of a copy of `model` fine-tuned for `steps` with the `removed` neurons held at 0."""
    pruned = copy.deepcopy(model)
    with remove(pruned, removed):
        training.train(pruned, batches, steps=steps, lr=lr, desc="fine-tune")
        return training.accuracy(pruned, x, y)


def largest_fraction_within(fractions: Sequence[float], accuracies: Float[Tensor, "fraction"],
                            base: float, tolerance: float = 0.01) -> float:
    """Largest fraction up to which every accuracy stays within `tolerance` of `base` (fractions ascending)."""
    if len(fractions) != len(accuracies):
        raise ValueError(f"one accuracy per fraction expected, got {len(fractions)} fractions and {len(accuracies)} accuracies")
    best = 0.0
    for fraction, acc in zip(fractions, accuracies.tolist()):
        if acc < base - tolerance:
            break
        best = fraction
    return best


def removable_fraction(model: nn.Module, scores: Scores, fractions: Sequence[float], x: Tensor,
                       y: Int[Tensor, "batch"], tolerance: float = 0.01) -> float:
    """Largest of `fractions` (ascending) up to which removing the lowest-scoring neurons costs at most
    `tolerance` accuracy on (x, y); stops at the first fraction that costs more (cheaper than a full curve)."""
    base, best = training.accuracy(model, x, y), 0.0
    for fraction in fractions:
        with remove(model, lowest(scores, fraction)):
            if training.accuracy(model, x, y) < base - tolerance:
                break
        best = fraction
    return best


@torch.no_grad()
def negatives_against_random(model: nn.Module, signed: Scores, activity: Scores, x: Tensor, y: Int[Tensor, "batch"], *,
                             n_draws: int = 20, seed: int = 0, reference: Scores | None = None) -> dict[str, float]:
    """Accuracy on (x, y) with every neuron whose `signed` score is negative removed at once, against `n_draws` random
    sets of as many live neurons (activity > 0) per layer: are a score's negative picks cheaper than any live neurons?
    With `reference` (another score), also `reference_accuracy`: as many of its lowest-scoring *live* neurons per layer
    removed (drawn from the same population as the random sets, so dead neurons, which cost nothing, do not flatter it)."""
    checks.count(n_draws, "n_draws")
    if set(signed) != set(activity) or (reference is not None and set(reference) != set(signed)):
        raise ValueError(f"signed, activity (and reference) scores must cover the same layers, got {sorted(signed)} and {sorted(activity)}")
    negative = {layer: torch.nonzero(s < 0).flatten() for layer, s in signed.items()}
    gen, drawn, extra = torch.Generator().manual_seed(seed), [], {}
    with remove(model, negative):
        accuracy = training.accuracy(model, x, y)
    if reference is not None:
        live_first = {layer: torch.where(activity[layer] > 0, s, torch.full_like(s, float("inf"))) for layer, s in reference.items()}
        with remove(model, {layer: s.argsort(stable=True)[:len(negative[layer])] for layer, s in live_first.items()}):
            extra["reference_accuracy"] = training.accuracy(model, x, y)
    for _ in range(n_draws):
        pick = {}
        for layer, s in activity.items():
            live = torch.nonzero(s > 0).flatten()
            pick[layer] = live[torch.randperm(len(live), generator=gen)[:len(negative[layer])]]
        with remove(model, pick):
            drawn.append(training.accuracy(model, x, y))
    return {"n": sum(len(v) for v in negative.values()), "accuracy": accuracy, "random_mean": sum(drawn) / len(drawn),
            "random_min": min(drawn), "random_max": max(drawn), "n_draws": n_draws} | extra


def band_figure(x: Sequence[float], curves: Mapping[str, Float[Tensor, "seed point"]], *, title: str,
                xaxis: str, yaxis: str, hline: float | None = None) -> go.Figure:
    """One line per curve (mean over seeds) inside a band from the lowest to the highest seed."""
    fig = go.Figure()
    for i, (name, ys) in enumerate(curves.items()):
        color = COLORS[i % len(COLORS)]
        lo, hi = ys.min(0).values.tolist(), ys.max(0).values.tolist()
        fig.add_scatter(x=list(x) + list(x)[::-1], y=hi + lo[::-1], mode="lines", fill="toself", fillcolor=color, opacity=0.2,
                        line_width=0, hoverinfo="skip", showlegend=False, legendgroup=name)
        fig.add_scatter(x=list(x), y=ys.mean(0).tolist(), name=f"{name} (n={len(ys)})", line_color=color,
                        mode="lines+markers", marker_size=4, legendgroup=name)
    if hline is not None:
        fig.add_hline(y=hline, line_dash="dot", line_color="gray")
    return fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, template="plotly_white", height=450)


def split_half_reliability(model: nn.Module, method: str, weight_layers: Mapping[str, str], x: Tensor,
                           y: Int[Tensor, "batch"], readers: Mapping[str, str] | None = None) -> float:
    """Spearman rank correlation, over the neurons live on both halves, between a score computed on the first and
    on the second half of (x, y): how far the score's ranking is a property of the network rather than of the sample."""
    half = len(x) // 2
    if half < 2:
        raise ValueError(f"need at least 4 scoring inputs to split in two, got {len(x)}")
    a, b = (score_neurons(model, method, weight_layers, xs, ys, readers=readers) for xs, ys in ((x[:half], y[:half]), (x[half:], y[half:])))
    live = torch.cat([(activation_scores(model, layer, x[:half]) > 0) & (activation_scores(model, layer, x[half:]) > 0)
                      for layer in weight_layers])
    sa, sb = (torch.cat([s[layer] for layer in weight_layers]) for s in (a, b))
    return float(spearmanr(sa[live].numpy(), sb[live].numpy()).statistic)
