"""Switch neurons off and measure what breaks, for any `nn.Module` and any layer name.

    mean = neurons.get_activations(model, "relu1", x_train).mean(0)
    with ablation.ablate(model, "relu1", [3, 17], mean):   # mean-ablate neurons 3 and 17
        logits = model(x)
    with ablation.ablate(model, "relu1", [3, 17], resample_from=acts_train):   # resample-ablate them
        logits = model(x)
    drop = ablation.class_accuracy_drop(model, "relu1", x_test, y_test, mean)   # (class, neuron)
    pruned = ablation.ablate_in_weights(model, "relu1", [3, 17], mean, reader="fc2")   # same, in the weights

Neurons are indexed along dim 1 of the layer's output (features, or conv channels: all positions
of a channel are replaced together). `neurons` is a list or tensor of indices, or a bool mask with one
entry per neuron (its True entries are ablated).

Three choices of what replaces a neuron: 0 (zero ablation); its mean over a data set (mean ablation:
the next layer's input keeps its average over that data); its value on another, random input (resample
ablation, `resample_from`: the neuron keeps its whole distribution, only its tie to this input is cut).
"""
import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from glassbox import checks, hooks, training

Neurons = Sequence[int] | Int[Tensor, "k"] | Bool[Tensor, "neuron"]


def _index(neurons: Neurons, n_units: int) -> Tensor:
    idx = checks.indices(neurons, "neurons", n_units)
    bad = idx[(idx < 0) | (idx >= n_units)]
    if len(bad):
        raise IndexError(f"neurons {bad.tolist()} do not exist: this layer has neurons 0..{n_units - 1}")
    return idx


@contextmanager
def ablate(model: nn.Module, layer: str, neurons: Neurons,
           values: Float[Tensor, "neuron *spatial"] | None = None, *,
           resample_from: Float[Tensor, "n_ref neuron *spatial"] | None = None, seed: int = 0) -> Iterator[None]:
    """Inside the block, `neurons` of `layer` output `values[neurons]` (e.g. their mean; default 0), or with
    `resample_from` (the layer's activations on other inputs) their values on a random row of it, drawn from
    `seed` afresh for each input (resample ablation; one row per input for all `neurons` together)."""
    checks.indices(neurons, "neurons")
    if values is not None:
        checks.tensor(values, "values", floating=False)
    if resample_from is not None:
        if values is not None:
            raise ValueError("pass values (a fixed replacement) or resample_from (activations to draw from), not both")
        checks.tensor(resample_from, "resample_from", ndim=tuple(range(2, 8)), floating=False)
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on every device

    def replace(a: Tensor) -> Tensor:
        idx = _index(neurons, a.shape[1])
        if values is not None and values.shape != a.shape[1:]:
            raise ValueError(f"values must have the shape of one input's activations {tuple(a.shape[1:])}, "
                             f"got {tuple(values.shape)}; pass e.g. get_activations(...).mean(0)")
        if resample_from is not None and resample_from.shape[1:] != a.shape[1:]:
            raise ValueError(f"resample_from must hold rows shaped like one input's activations {tuple(a.shape[1:])}, "
                             f"got {tuple(resample_from.shape)}; pass e.g. get_activations(model, layer, x_train)")
        out = a.clone()
        if resample_from is not None:
            rows = torch.randint(len(resample_from), (len(a),), generator=gen).to(resample_from.device)
            out[:, idx.to(a.device)] = resample_from[rows][:, idx.to(resample_from.device)].to(a.device, a.dtype)
        else:
            out[:, idx.to(a.device)] = 0.0 if values is None else values[idx.to(values.device)].to(a.device, a.dtype)
        return out

    with hooks.patch(model, {layer: replace}):
        yield


@torch.no_grad()
def class_accuracy_drop(model: nn.Module, layer: str, x: Tensor, y: Int[Tensor, "batch"],
                        values: Float[Tensor, "neuron *spatial"] | None = None, *,
                        neurons: Neurons | None = None, n_classes: int | None = None,
                        batch_size: int = 8192, resample_from: Float[Tensor, "n_ref neuron *spatial"] | None = None,
                        seed: int = 0) -> Float[Tensor, "n_classes neuron"]:
    """Accuracy lost on each class when each neuron of `layer` alone is ablated to `values` (default 0).

    Column j is for `neurons[j]` (default: every neuron of the layer). Positive = the class needs it. With
    `resample_from` (and `seed`), each neuron is resample-ablated instead (see `ablate`).
    """
    checks.tensor(x, "x", floating=False)
    logits = training.predict(model, x, batch_size)
    n = n_classes or logits.shape[-1]
    checks.labels(y, "y", n)
    base = training.per_class_accuracy(logits, y, n)
    with hooks.capture(model, layer) as acts:
        model(x[:1].to(training.model_device(model, x)))
    n_units = acts[layer].shape[1]
    neurons = range(n_units) if neurons is None else _index(neurons, n_units).tolist()
    drops = []
    for neuron in neurons:
        with ablate(model, layer, [int(neuron)], values, resample_from=resample_from, seed=seed):
            drops.append(base - training.per_class_accuracy(training.predict(model, x, batch_size), y, n))
    return torch.stack(drops, dim=1)


@torch.no_grad()
def flip_rate(model: nn.Module, layer: str, x: Tensor, target: int, neurons: Neurons,
              values: Float[Tensor, "neuron *spatial"]) -> float:
    """Fraction of `x` predicted as `target` when `neurons` of `layer` are set to `values[neurons]`."""
    checks.tensor(x, "x", floating=False)
    with ablate(model, layer, neurons, values):
        logits = training.predict(model, x)
    checks.index(target, "target", logits.shape[-1], of=" (a class of the model's outputs)")
    return (logits.argmax(-1) == target).float().mean().item()


@torch.no_grad()
def ablate_in_weights(model: nn.Module, layer: str, neurons: Neurons,
                      values: Float[Tensor, "neuron"] | None = None, *, reader: str) -> nn.Module:
    """A copy of `model` that computes what `ablate(model, layer, neurons, values)` does, with no hook.

    `reader` is the nn.Linear that reads `layer`'s output (e.g. "fc2" for "relu1"); its weight
    columns for `neurons` become 0 and `values[neurons]` (default 0) moves into its bias. Exact only
    when `reader` is the sole reader of `layer`'s output, as in a plain stack of layers.
    """
    clone = copy.deepcopy(model)
    linear = hooks.get_module(clone, reader)
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"reader {reader!r} is a {type(linear).__name__}; pass the nn.Linear that reads "
                        f"{layer!r}'s output (e.g. 'fc2' for 'relu1' in glassbox's MLP)")
    hooks.get_module(clone, layer)  # a clear error for an unknown layer name
    following = _next_linear(clone, layer)
    if following != reader:
        raise ValueError(f"reader {reader!r} does not read {layer!r}: the first nn.Linear after {layer!r} is "
                         f"{following!r}; pass that one (ablate_in_weights is exact only in a plain stack of layers)")
    idx = _index(neurons, linear.in_features)
    if values is not None:
        checks.tensor(values, "values", floating=False)
        if values.shape != (linear.in_features,):
            raise ValueError(f"values must hold one number per neuron of {layer!r} ({linear.in_features}), "
                             f"got shape {tuple(values.shape)}; pass e.g. get_activations(...).mean(0)")
        if linear.bias is None:
            raise ValueError(f"{reader!r} has no bias to fold the ablation values into; ablate to 0 (values=None)")
        idx = idx.to(linear.weight.device)
        linear.bias += linear.weight[:, idx] @ values.to(linear.weight.device, linear.weight.dtype)[idx]
    linear.weight[:, idx.to(linear.weight.device)] = 0.0
    return clone


def _next_linear(model: nn.Module, layer: str) -> str | None:
    """The name of the first nn.Linear registered after module `layer` (its reader in a plain stack)."""
    names = [name for name, _ in model.named_modules()]
    after = names[names.index(layer) + 1:]
    modules = dict(model.named_modules())
    return next((n for n in after if isinstance(modules[n], nn.Linear) and not n.startswith(layer + ".")), None)
