"""MNIST, the journal's digits (notebooks 01 and 04-06): the data set from data/mnist.npz (offline,
checksummed), and concepts computed from a digit's pixels (closed loops, stroke thickness, slant)
for probing."""
import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy as np
import torch
from jaxtyping import Float, Int
from scipy import ndimage
from torch import Tensor

from glassbox import checks
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
