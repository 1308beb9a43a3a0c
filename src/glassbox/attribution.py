"""Which input pixels a prediction depends on, with captum, and a sanity check that can fail.

    attr = attribution.attribute(model, x, target, "integrated_gradients")      # shaped like x
    rho = attribution.rank_correlation(attr, attribution.attribute(attribution.randomize_weights(model), x, target, ...))

The sanity check (Adebayo et al., 2018, "Sanity Checks for Saliency Maps"): a method that explains
the *model* must give different maps once the model's weights are randomised; a map that survives
randomisation mostly reflects the input (e.g. edges of the digit), not what the network learned.

LIME and KernelSHAP fit a surrogate linear model to the model's outputs on random on/off patterns of
superpixels (non-overlapping `window` blocks; "off" is 0). They sample, so their maps carry noise: compare a
map with a rerun under another `seed` before reading a low correlation as a passed check.
"""
import copy
import warnings

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import IntegratedGradients, KernelShap, Lime, Occlusion, Saliency
from jaxtyping import Float, Int
from scipy.stats import spearmanr
from torch import Tensor, nn

from glassbox import checks

METHODS = ("integrated_gradients", "saliency", "occlusion", "lime", "kernel_shap")
SAMPLED = ("lime", "kernel_shap")  # methods whose maps depend on random samples (and so on `seed`)


def attribute(model: nn.Module, x: Float[Tensor, "batch *input"], target: int | Int[Tensor, "batch"],
              method: str, *, n_steps: int = 32, window: tuple[int, ...] = (4, 4),
              stride: tuple[int, ...] = (2, 2), n_samples: int = 200, seed: int = 0) -> Float[Tensor, "batch *input"]:
    """Attribution of the `target` logit to each input feature by a captum `method` (see METHODS).

    integrated_gradients: path integral from a black image (n_steps); saliency: |gradient|;
    occlusion: drop of the logit when a `window` patch (moved by `stride`) is set to 0; lime, kernel_shap:
    coefficients of a linear surrogate fitted on `n_samples` random on/off patterns of `window` superpixels
    (off = 0), drawn from `seed`, each pixel given its superpixel's coefficient. Runs where the model is; the
    map comes in the model's dtype (captum sums some methods in float32).
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")
    device, dtype = checks.placement(model)  # the inputs go where the model is, in its dtype (float32 if it has none)
    x = checks.tensor(x, "x", ndim=tuple(range(2, 8)), floating=False).detach().to(device, dtype)
    if isinstance(target, Tensor) and target.ndim == 1:
        checks.labels(target, "target")
        if len(target) != len(x):
            raise ValueError(f"target must hold one class per input ({len(x)}), got {len(target)}")
        target = target.to(device)
    else:
        checks.count(target, "target", 0)
    if method == "integrated_gradients":
        return IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=n_steps).detach().to(x.dtype)
    if method == "saliency":
        return Saliency(model).attribute(x.requires_grad_(True), target=target, abs=True).detach().to(x.dtype)
    if method in SAMPLED:
        if len(window) != x.ndim - 1:
            raise ValueError(f"{method} needs a superpixel window with one size per input dimension {tuple(x.shape[1:])}, "
                             f"got window {window}; e.g. window=(4, 4) for images (batch, 28, 28)")
        checks.count(n_samples, "n_samples", 2)
        mask = _superpixels(tuple(x.shape[1:]), window, x.device).expand_as(x)
        # LIME's surrogate: ridge regression (alpha 1), the default of the authors' `lime` package; captum's own default,
        # a lasso with alpha 0.01, sets every coefficient to 0 when the logits move little (a blank map, no warning)
        explainer = Lime(model, interpretable_model=SkLearnRidge(alpha=1.0)) if method == "lime" else KernelShap(model)
        with torch.random.fork_rng(), warnings.catch_warnings():
            torch.manual_seed(seed)  # the notebook's own random stream is left as it was
            warnings.filterwarnings("ignore", message="You are providing multiple inputs")  # one surrogate per input: intended
            attr = explainer.attribute(x, target=target, feature_mask=mask, baselines=0.0, n_samples=n_samples,
                                       perturbations_per_eval=n_samples)
        return attr.detach().to(x.dtype)
    if method == "occlusion":
        if len(window) != x.ndim - 1 or len(stride) != x.ndim - 1:
            raise ValueError(f"occlusion needs a window and stride with one size per input dimension {tuple(x.shape[1:])}, "
                             f"got window {window} and stride {stride}; e.g. window=(4, 4) for images (batch, 28, 28)")
        return Occlusion(model).attribute(x, sliding_window_shapes=window, strides=stride, target=target, baselines=0.0).detach().to(x.dtype)
    raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")


def _superpixels(shape: tuple[int, ...], window: tuple[int, ...], device: torch.device) -> Int[Tensor, "*input"]:
    """The id of each input feature's superpixel: non-overlapping `window` blocks, numbered in row-major order."""
    for size in window:
        checks.count(size, "window", 1)
    ids = torch.zeros(shape, dtype=torch.long, device=device)
    for dim, (n, w) in enumerate(zip(shape, window)):
        block = (torch.arange(n, device=device) // w).view([-1 if d == dim else 1 for d in range(len(shape))])
        ids = ids * -(-n // w) + block
    return ids


def randomize_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of `model` with every parameter re-drawn from its layer's default initialisation.

    Note: if `model` was built right after torch.manual_seed(seed), the copy is its exact initial state.
    """
    clone = copy.deepcopy(model)
    torch.manual_seed(seed)
    resettable = [m for m in clone.modules() if hasattr(m, "reset_parameters")]
    if not any(True for m in resettable for _ in m.parameters(recurse=False)):
        raise ValueError(f"{type(model).__name__} has no layer with reset_parameters(); nothing to randomise")
    for m in resettable:
        m.reset_parameters()
    return clone.eval()


def rank_correlation(a: Float[Tensor, "batch *input"], b: Float[Tensor, "batch *input"], absolute: bool = True) -> Float[Tensor, "batch"]:
    """Spearman rank correlation between two attribution maps, one per input (of |values| by default)."""
    checks.tensor(a, "a", ndim=tuple(range(2, 8)), floating=False)
    checks.tensor(b, "b", ndim=tuple(range(2, 8)), floating=False)
    if a.shape != b.shape:
        raise ValueError(f"attribution maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}; compare maps of the same inputs")
    a, b = a.flatten(1), b.flatten(1)
    if absolute:
        a, b = a.abs(), b.abs()
    numpy = lambda t: t.detach().cpu().numpy() if t.dtype in (torch.float32, torch.float64) else t.detach().cpu().double().numpy()  # noqa: E731
    rho = [spearmanr(numpy(u), numpy(v)).statistic for u, v in zip(a, b)]
    return torch.tensor(np.nan_to_num(rho, nan=0.0), dtype=torch.float32, device=a.device)
