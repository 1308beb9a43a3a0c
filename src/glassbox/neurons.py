"""What single neurons respond to, for any `nn.Module`: activations by layer name, class means,
class selectivity and the inputs that activate a neuron most.

A layer's *neurons* are the entries of its output along dim 1: the features of a Linear layer
(batch, d) or the channels of a convolution (batch, channels, height, width), whose spatial
positions are averaged where one number per neuron is needed.

`layer` is any name `glassbox.hooks` takes: "relu1", an nn.Sequential child as an int (2), or one
tensor of a tuple or dict output ("lstm" or "lstm[0]" for an LSTM's output, "attn[1]" for
nn.MultiheadAttention's weights, "transformer.h.0" for a Hugging Face block). For a sequence model's
(batch, pos, d) output dim 1 is the position: pick a position first (acts[:, -1]) before reading neurons.
"""
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from glassbox import checks, hooks, training


@torch.no_grad()
def get_activations(model: nn.Module, layer: str | int, x: Tensor, batch_size: int = 4096) -> Float[Tensor, "batch *unit"]:
    """The output of module `layer` (or the tensor of it that `layer` selects) for every input in `x`, computed in
    batches without gradients.

    The model runs in eval mode for the read (no dropout, BatchNorm statistics untouched); each module's
    mode is restored afterwards. Inputs move to the model's device; the activations stay there."""
    checks.tensor(x, "x", floating=False)
    device = training.model_device(model, x)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with hooks.capture(model, layer) as acts:
            for chunk in x.split(batch_size):
                model(chunk.to(device))
    finally:
        for m, mode in modes:
            m.train(mode)
    return acts[layer]


def per_neuron(acts: Float[Tensor, "batch neuron *spatial"]) -> Float[Tensor, "batch neuron"]:
    """One number per neuron: Linear outputs unchanged, conv channels averaged over positions."""
    if isinstance(acts, Tensor) and acts.ndim < 2:
        raise ValueError(f"acts: expected activations (batch, neuron, ...), got shape {tuple(acts.shape)}; "
                         "keep the batch dimension, e.g. acts[None] for a single input")
    checks.tensor(acts, "acts", floating=False)
    return acts.flatten(2).mean(-1) if acts.ndim > 2 else acts


def class_means(acts: Float[Tensor, "batch neuron *spatial"], y: Int[Tensor, "batch"],
                n_classes: int | None = None) -> Float[Tensor, "n_classes neuron"]:
    """Mean activation of every neuron over the inputs of each class (float32, or float64 for float64 activations)."""
    acts = per_neuron(acts)
    checks.labels(y, "y", n_classes)
    if len(acts) != len(y):
        raise ValueError(f"activations and labels differ in length: {len(acts)} vs {len(y)}; pass the labels of the same inputs")
    n = n_classes or int(y.max()) + 1
    dtype = torch.promote_types(acts.dtype, torch.float32) if acts.is_floating_point() else torch.float32
    y = y.to(acts.device)
    sums = torch.zeros(n, acts.shape[1], dtype=dtype, device=acts.device).index_add_(0, y, acts.to(dtype))
    return sums / torch.bincount(y, minlength=n).clamp(min=1)[:, None]


def class_selectivity(acts: Float[Tensor, "batch neuron *spatial"], y: Int[Tensor, "batch"],
                      n_classes: int | None = None, eps: float = 1e-7) -> Float[Tensor, "neuron"]:
    """Class selectivity index (Morcos et al., 2018): (mu_max - mu_rest) / (mu_max + mu_rest).

    mu_max is the largest class-mean activation, mu_rest the mean of the other class means. 0: the
    neuron fires alike for every class; 1: it fires for one class only (non-negative activations).
    """
    means = class_means(acts, y, n_classes)
    top = means.max(0).values
    rest = (means.sum(0) - top) / (len(means) - 1)
    return (top - rest) / (top + rest + eps)


def top_activating(acts: Float[Tensor, "batch neuron *spatial"], neuron: int, k: int = 9) -> Int[Tensor, "k"]:
    """Indices of the `k` inputs on which `neuron` is most active, most active first."""
    acts = per_neuron(acts)
    if not 0 <= neuron < acts.shape[1]:
        raise IndexError(f"neuron {neuron} does not exist: this layer has neurons 0..{acts.shape[1] - 1}")
    return acts[:, neuron].topk(min(k, len(acts))).indices
