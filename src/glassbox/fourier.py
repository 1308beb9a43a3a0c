"""The discrete Fourier basis of the integers mod p, as real cosines and sines, and what it measures.

Row 0 of `basis(p)` is the constant 1/sqrt(p); rows 2k-1 and 2k are cos(2 pi k x / p) and
sin(2 pi k x / p) for frequency k = 1 .. p // 2, each scaled to unit norm (for even p the last
frequency, p / 2, has a cosine only: its sine is zero at every integer). The rows are orthonormal,
so `basis(p) @ v` is v in Fourier coordinates and `basis(p).T @ coefficients` brings it back.
Frequency k means k turns around the circle of p numbers: the period is p / k.
"""
import math

import torch
from jaxtyping import Float
from torch import Tensor

from glassbox import checks


def n_frequencies(p: int) -> int:
    """Number of frequencies, the constant (frequency 0) included: p // 2 + 1."""
    return p // 2 + 1


def basis(p: int) -> Float[Tensor, "p p"]:
    """Orthonormal real Fourier basis of functions on 0..p-1, one basis function per row."""
    if p < 2:
        raise ValueError(f"p must be at least 2, got {p}")
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows.append(torch.cos(2 * math.pi * k * x / p))
        if 2 * k != p:
            rows.append(torch.sin(2 * math.pi * k * x / p))
    b = torch.stack(rows)
    return (b / b.norm(dim=1, keepdim=True)).float()


def names(p: int) -> list[str]:
    """A label for each row of `basis(p)`: "const", "cos 1", "sin 1", ..."""
    out = ["const"]
    for k in range(1, p // 2 + 1):
        out += [f"cos {k}"] + ([f"sin {k}"] if 2 * k != p else [])
    return out


def row_frequency(p: int) -> Tensor:
    """The frequency of each row of `basis(p)`: 0, 1, 1, 2, 2, ..."""
    return torch.tensor([0] + [k for k in range(1, p // 2 + 1) for _ in range(1 if 2 * k == p else 2)])


def frequency_norms(coefficients: Float[Tensor, "p *rest"]) -> Float[Tensor, "n_freq"]:
    """Norm of each frequency (its cosine and sine rows, and every other axis, together) of a tensor
    whose first axis is already in Fourier coordinates (e.g. `basis(p) @ W_E`)."""
    p = checks.tensor(coefficients, "coefficients", ndim=tuple(range(1, 8)), floating=False).shape[0]
    sq = coefficients.reshape(p, -1).pow(2).sum(1)
    device = coefficients.device
    return torch.zeros(n_frequencies(p), device=device).index_add_(0, row_frequency(p).to(device), sq.float()).sqrt()


def embedding_frequency_norms(W_E: Float[Tensor, "p d_model"]) -> Float[Tensor, "n_freq"]:
    """Norm of each frequency of an embedding matrix over the p input numbers (rows = tokens 0..p-1)."""
    checks.tensor(W_E, "W_E", ndim=2, floating=False)
    return frequency_norms(basis(len(W_E)).to(W_E.device) @ W_E.float())


def sum_directions(p: int, freqs: list[int]) -> Float[Tensor, "2k p*p"]:
    """Orthonormal functions cos(w k (a + b)) and sin(w k (a + b)) over the p x p grid of (a, b),
    flattened a-major (index a * p + b), for each frequency k in `freqs` (w = 2 pi / p)."""
    a = torch.arange(p, dtype=torch.float64)
    s = (a[:, None] + a[None, :]).reshape(-1)
    rows = []
    if not freqs:
        return torch.zeros(0, p * p)
    for k in freqs:
        if not 1 <= k <= p // 2:
            raise ValueError(f"frequency {k} is outside 1..{p // 2} for p = {p}")
        rows.append(torch.cos(2 * math.pi * k * s / p))
        if 2 * k != p:
            rows.append(torch.sin(2 * math.pi * k * s / p))
    d = torch.stack(rows)
    return (d / d.norm(dim=1, keepdim=True)).float()


def project_sum_frequencies(table: Float[Tensor, "p*p ..."], p: int, freqs: list[int]) -> Float[Tensor, "p*p ..."]:
    """The part of a table over the (a, b) grid (first axis, a-major) that varies as cos or sin of
    w k (a + b) for the given frequencies; every other axis (e.g. the output class) is kept apart."""
    checks.tensor(table, "table", floating=False)
    if table.ndim == 0 or table.shape[0] != p * p:
        raise ValueError(f"table must have p * p = {p * p} rows (the (a, b) grid, a-major) on its first axis, got shape "
                         f"{tuple(table.shape)}")
    d = sum_directions(p, freqs).to(table.device)
    flat = table.reshape(p * p, -1).float()
    return (d.T @ (d @ flat)).reshape(table.shape)


def cos_logit_table(p: int, freq: int) -> Float[Tensor, "p*p p"]:
    """cos(w k (a + b - c)) for every (a, b) (rows, a-major) and every answer c (columns)."""
    a = torch.arange(p, dtype=torch.float64)
    s = (a[:, None] + a[None, :]).reshape(-1)
    return torch.cos(2 * math.pi * freq * (s[:, None] - a[None, :]) / p).float()


def gini(x: Float[Tensor, "n"]) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, (n-1)/n when one holds everything."""
    checks.tensor(x, "x", floating=False, nonempty=False)
    if (x < 0).any():
        raise ValueError(f"x must be non-negative (e.g. norms), got a minimum of {x.min().item():.3g}")
    x = x.double().flatten().sort().values
    n = len(x)
    if n == 0 or x.sum() <= 0:
        raise ValueError(f"gini needs at least one positive value in x, got {n} values summing to {x.sum().item():.3g}")
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))
