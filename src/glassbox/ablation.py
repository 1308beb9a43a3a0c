"""Switch neurons off and measure what breaks, for any `nn.Module` and any layer name.

    mean = neurons.get_activations(model, "relu1", x_train).mean(0)
    with ablation.ablate(model, "relu1", [3, 17], mean):   # mean-ablate neurons 3 and 17
        logits = model(x)
    drop = ablation.class_accuracy_drop(model, "relu1", x_test, y_test, mean)   # (class, neuron)
    pruned = ablation.ablate_in_weights(model, "relu1", [3, 17], mean, reader="fc2")   # same, in the weights

Neurons are indexed along dim 1 of the layer's output (features, or conv channels: all positions
of a channel are replaced together). `neurons` is a list or tensor of indices, or a bool mask with one
entry per neuron (its True entries are ablated).
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
           values: Float[Tensor, "neuron *spatial"] | None = None) -> Iterator[None]:
    """Inside the block, `neurons` of `layer` output `values[neurons]` (e.g. their mean; default 0)."""
    checks.indices(neurons, "neurons")
    if values is not None:
        checks.tensor(values, "values", floating=False)

    def replace(a: Tensor) -> Tensor:
        idx = _index(neurons, a.shape[1])
        if values is not None and values.shape != a.shape[1:]:
            raise ValueError(f"values must have the shape of one input's activations {tuple(a.shape[1:])}, "
                             f"got {tuple(values.shape)}; pass e.g. get_activations(...).mean(0)")
        out = a.clone()
        out[:, idx.to(a.device)] = 0.0 if values is None else values[idx.to(values.device)].to(a.device, a.dtype)
        return out

    with hooks.patch(model, {layer: replace}):
        yield


@torch.no_grad()
def class_accuracy_drop(model: nn.Module, layer: str, x: Tensor, y: Int[Tensor, "batch"],
                        values: Float[Tensor, "neuron *spatial"] | None = None, *,
                        neurons: Neurons | None = None, n_classes: int | None = None,
                        batch_size: int = 8192) -> Float[Tensor, "n_classes neuron"]:
    """Accuracy lost on each class when each neuron of `layer` alone is ablated to `values` (default 0).

    Column j is for `neurons[j]` (default: every neuron of the layer). Positive = the class needs it.
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
        with ablate(model, layer, [int(neuron)], values):
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
