"""Data sets of the journal: MNIST from data/mnist.npz (offline, checksummed)."""
import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from glassbox import paths

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
