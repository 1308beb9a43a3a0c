"""MNIST, the journal's digits (notebooks 01 and 04-06): the data set from data/mnist.npz (offline,
checksummed), and concepts computed from a digit's pixels (closed loops, stroke thickness, slant)
for probing."""
import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int
from scipy import ndimage
from torch import Tensor, nn

from glassbox import attribution, checks, training
from glassbox.journal import paths


def _check_images(images: Tensor, name: str = "images") -> None:
    if isinstance(images, Tensor) and images.ndim != 3:
        raise ValueError(f"expected a batch of images (batch, height, width) with pixels in [0, 1], got shape "
                         f"{tuple(images.shape)}; reshape flat images with x.reshape(-1, 28, 28)")
    checks.tensor(images, name, floating=False)
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"{name} must hold pixels in [0, 1], got values in [{images.min():.3g}, {images.max():.3g}]; "
                         "for 0..255 pixels pass images / 255")


def count_holes(images: Float[Tensor, "batch h w"], threshold: float = 0.5, min_area: int = 2) -> Int[Tensor, "batch"]:
    """Number of enclosed background regions (of at least `min_area` pixels) in each image.

    Background is 4-connected (so ink touching diagonally closes a loop); a region is a hole when
    it does not touch the image border.
    """
    _check_images(images)
    counts = []
    for img in (images < threshold).numpy():
        labels, n = ndimage.label(img)  # default structure: 4-connectivity
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        counts.append(sum(1 for i in range(1, n + 1) if i not in border and areas[i] >= min_area))
    return torch.tensor(counts)


def stroke_thickness(images: Float[Tensor, "batch h w"], threshold: float = 0.5) -> Float[Tensor, "batch"]:
    """Mean stroke width in pixels: ink area / half its perimeter (a w x L stroke gives ~w)."""
    _check_images(images)
    ink = (images >= threshold).float()
    padded = torch.nn.functional.pad(ink, (1, 1, 1, 1))
    perimeter = padded.diff(dim=1).abs().sum((1, 2)) + padded.diff(dim=2).abs().sum((1, 2))
    return ink.sum((1, 2)) / (perimeter / 2).clamp(min=1)


def slant(images: Float[Tensor, "batch h w"]) -> Float[Tensor, "batch"]:
    """Horizontal shift per row going up, from ink-weighted moments: > 0 leans right, 0 upright."""
    _check_images(images)
    h, w = images.shape[1:]
    rows = torch.arange(h, dtype=images.dtype)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=images.dtype)[None, :].expand(h, w)
    mass = images.sum((1, 2)).clamp(min=1e-6)
    mean_r = (images * rows).sum((1, 2)) / mass
    mean_c = (images * cols).sum((1, 2)) / mass
    dr, dc = rows - mean_r[:, None, None], cols - mean_c[:, None, None]
    cov = (images * dr * dc).sum((1, 2)) / mass
    var_r = (images * dr**2).sum((1, 2)) / mass
    return -cov / var_r.clamp(min=1e-6)  # rows grow downwards, so leaning right = negative row-col covariance


def binary_labels(images: Float[Tensor, "batch h w"], reference: Float[Tensor, "ref h w"] | None = None) -> dict[str, Int[Tensor, "batch"]]:
    """The concepts as 0/1 labels for probes: has_loop (a hole), thick_stroke and leans_right (above
    the median of `reference`, e.g. the probes' training images; default: `images` themselves)."""
    _check_images(images)
    if reference is not None:
        _check_images(reference, "reference")
    reference = images if reference is None else reference
    return {"has_loop": (count_holes(images) > 0).long(),
            "thick_stroke": (stroke_thickness(images) > stroke_thickness(reference).median()).long(),
            "leans_right": (slant(images) > slant(reference).median()).long()}

def weight_correlation(a: Float[Tensor, "neuron d_in"], b: Float[Tensor, "neuron d_in"]) -> Float[Tensor, "neuron"]:
    """Per neuron (row): the Pearson correlation of its input weights in `a` with those in `b`."""
    checks.tensor(a, "a", ndim=2)
    checks.tensor(b, "b", ndim=2)
    a, b = a.detach(), b.detach()
    return torch.nn.functional.cosine_similarity(a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True))


def weight_smoothness(weights: Float[Tensor, "neuron h w"]) -> Float[Tensor, "neuron"]:
    """Per weight image: the Pearson correlation of each weight with its right-hand neighbour (near 0 for noise)."""
    checks.tensor(weights, "weights", ndim=3)
    left, right = weights[:, :, :-1].flatten(1), weights[:, :, 1:].flatten(1)
    left, right = left - left.mean(1, keepdim=True), right - right.mean(1, keepdim=True)
    return (left * right).sum(1) / (left.norm(dim=1) * right.norm(dim=1)).clamp(min=1e-12)


def train_shuffled_label_twin(x: Float[Tensor, "n h w"], y: Int[Tensor, "n"], build, *, steps: int, lr: float,
                              seed: int, batch_size: int = 128) -> tuple[nn.Module, float]:
    """A model from `build()` trained on `x` with `y` shuffled (Adebayo et al.'s data-randomisation control),
    and the share of those shuffled labels it fits (memorised: near 1)."""
    checks.tensor(x, "x", floating=False)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]
    training.set_seed(seed)
    twin = build()
    training.train(twin, training.minibatches(x, shuffled, batch_size, seed=seed), steps=steps, lr=lr,
                   eval_every=steps, desc="shuffled-label twin")
    return twin, training.accuracy(twin, x, shuffled)


def attribution_sanity(model: nn.Module, controls: dict[str, nn.Module], x: Float[Tensor, "batch h w"],
                       y: Int[Tensor, "batch"], methods: tuple[str, ...], **kwargs) -> dict[str, dict[str, float]]:
    """Per method: the mean Spearman correlation of `model`'s maps with each control model's, on signed maps
    (key: the control's name) and on |maps| (name + " abs"), and with its own maps from another seed ("repeat":
    1 for a deterministic method, lower for LIME and KernelSHAP). `kwargs` go to `attribution.attribute`."""
    table = {}
    for method in methods:
        mine = attribution.attribute(model, x, y, method, **kwargs)
        row = {}
        for name, control in controls.items():
            theirs = attribution.attribute(control, x, y, method, **kwargs)
            row[name] = attribution.rank_correlation(mine, theirs, absolute=False).mean().item()
            row[f"{name} abs"] = attribution.rank_correlation(mine, theirs).mean().item()
        again = (attribution.attribute(model, x, y, method, **(kwargs | {"seed": kwargs.get("seed", 0) + 1}))
                 if method in attribution.SAMPLED else mine)
        row["repeat"] = attribution.rank_correlation(mine, again, absolute=False).mean().item()
        table[method] = {k: round(v, 4) for k, v in row.items()}
    return table


MNIST_SHA256 = "094b831e432331f1f6d6829ab9bfff4551410a81e1f816c9cce482d3e9b3ba57"
REBUILD = "rebuild it with `.venv/bin/python data/make_mnist.py` from the repository root (see data/README.md)"


class MNIST(NamedTuple):
    x_train: Float[Tensor, "60000 28 28"]  # pixels in [0, 1]
    y_train: Int[Tensor, "60000"]
    x_test: Float[Tensor, "10000 28 28"]
    y_test: Int[Tensor, "10000"]


def load_mnist(path: Path | None = None) -> MNIST:
    """MNIST as float pixels in [0, 1] and int64 labels, after checking the file's sha256."""
    path = Path(path or paths.DATA_DIR / "mnist.npz")
    if not path.is_file():
        raise FileNotFoundError(f"MNIST file {path} is missing: {REBUILD}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MNIST_SHA256:
        raise ValueError(f"MNIST file {path} is corrupt or a different version (sha256 {digest[:12]}..., "
                         f"expected {MNIST_SHA256[:12]}...): {REBUILD}")
    with np.load(path) as f:
        arrays = {k: torch.from_numpy(f[k]) for k in MNIST._fields}
    return MNIST(
        x_train=arrays["x_train"].float() / 255,
        y_train=arrays["y_train"],
        x_test=arrays["x_test"].float() / 255,
        y_test=arrays["y_test"],
    )
