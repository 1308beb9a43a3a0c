"""Toy models of superposition (Elhage et al., 2022, https://transformer-circuits.pub/2022/toy_model/).

n sparse features x are squeezed into m < n hidden dimensions and read back with the same matrix:

    h = W x,    x' = ReLU(W^T h + b),    loss = mean over x of sum_i I_i (x_i - x'_i)^2

Each feature is zero with probability S (its sparsity) and otherwise uniform in [0, 1]; I_i is its
importance. `ToyModel` holds many independent instances at once (W: instances x hidden x features),
so a whole sweep over sparsities, importances or seeds trains as one batched model on the CPU.

    model = ToyModel(n_features=20, n_hidden=5, n_instances=6, feature_probability=1 - S, importance=0.7 ** i)
    train_toy(model, steps=5_000)
    x, h = sample_activations(model, 4096)      # ground-truth features and hidden activations (e.g. for an SAE)
"""
import math

import einops
import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from plotly.subplots import make_subplots
from torch import Tensor, nn

from glassbox import training

Scalars = float | Tensor  # one value, or a tensor that broadcasts to (instances, features)

# Dimensionalities where features "stick" in the paper (section "Feature Dimensionality"):
# dedicated dimension, tetrahedron, triangle, antipodal pair, pentagon, square antiprism.
STICKY_FRACTIONS = (1.0, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8)
# codes 0..3 of the phase diagram; 3 (both kept with the same sign) is a local minimum, never a candidate solution
PHASES = ("not represented", "dedicated dimension", "superposition", "both, same sign")


def _per_feature(name: str, value: Scalars, n_instances: int, n_features: int) -> Float[Tensor, "instances features"]:
    """Broadcast a scalar or tensor to (instances, features), with a clear error if it does not fit."""
    t = torch.as_tensor(value, dtype=torch.float32)
    try:
        return t.expand(n_instances, n_features).clone()
    except RuntimeError:
        raise ValueError(f"{name} must be a number or broadcast to (instances, features) = ({n_instances}, {n_features}); "
                         f"got shape {tuple(t.shape)}. Give one value per feature (shape ({n_features},)) or per "
                         f"instance and feature (shape ({n_instances}, {n_features}))") from None


class ToyModel(nn.Module):
    """x' = ReLU(W^T W x + b) for `n_instances` independent models trained side by side.

    W: (instances, hidden, features), column i is feature i's direction; b: (instances, features).
    Buffers: feature_probability = 1 - S (instances, features) and importance (instances, features).
    """

    def __init__(self, n_features: int, n_hidden: int, n_instances: int = 1, *,
                 feature_probability: Scalars = 1.0, importance: Scalars = 1.0):
        super().__init__()
        for name, v in (("n_features", n_features), ("n_hidden", n_hidden), ("n_instances", n_instances)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        p = _per_feature("feature_probability", feature_probability, n_instances, n_features)
        imp = _per_feature("importance", importance, n_instances, n_features)
        if not ((p > 0) & (p <= 1)).all():
            raise ValueError(f"feature_probability (= 1 - sparsity) must lie in (0, 1], got values in "
                             f"[{p.min().item():.3g}, {p.max().item():.3g}]; a sparsity S gives probability 1 - S")
        if not (torch.isfinite(imp).all() and (imp >= 0).all()):
            raise ValueError("importance must be finite and >= 0 (it weights each feature's squared error)")
        self.n_features, self.n_hidden, self.n_instances = n_features, n_hidden, n_instances
        self.W = nn.Parameter(torch.randn(n_instances, n_hidden, n_features) * math.sqrt(2 / (n_hidden + n_features)))
        self.b = nn.Parameter(torch.zeros(n_instances, n_features))
        self.register_buffer("feature_probability", p)
        self.register_buffer("importance", imp)

    def _check(self, x: Tensor) -> None:
        want = (self.n_instances, self.n_features)
        if x.ndim != 3 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected features of shape (batch, instances, features) = (batch, {want[0]}, {want[1]}); "
                             f"got {tuple(x.shape)}. Draw them with sample_features(batch, model.feature_probability)")

    def hidden(self, x: Float[Tensor, "batch instances features"]) -> Float[Tensor, "batch instances hidden"]:
        """h = W x, the m-dimensional hidden activations."""
        self._check(x)
        return einops.einsum(self.W, x, "inst hid feat, batch inst feat -> batch inst hid")

    def forward(self, x: Float[Tensor, "batch instances features"]) -> Float[Tensor, "batch instances features"]:
        """x' = ReLU(W^T h + b)."""
        h = self.hidden(x)
        return torch.relu(einops.einsum(self.W, h, "inst hid feat, batch inst hid -> batch inst feat") + self.b)

    def loss(self, x: Float[Tensor, "batch instances features"]) -> Float[Tensor, "instances"]:
        """Importance-weighted squared error: mean over the batch of sum_i I_i (x_i - x'_i)^2, per instance."""
        return ((self(x) - x) ** 2 * self.importance).sum(-1).mean(0)


def sample_features(batch_size: int, feature_probability: Float[Tensor, "instances features"],
                    generator: torch.Generator | None = None) -> Float[Tensor, "batch instances features"]:
    """Features that are 0 with probability 1 - p and otherwise uniform in [0, 1], independently.

    One uniform u per entry does both: the feature is on when u < p, and then u / p is uniform in [0, 1].
    """
    p = feature_probability
    device = generator.device if generator is not None else p.device  # drawn where the generator is, then moved
    u = torch.rand(batch_size, *p.shape, generator=generator, device=device).to(p.device, p.dtype)
    return torch.where(u < p, u / p, torch.zeros((), device=p.device))


def sample_activations(model: ToyModel, batch_size: int, *, generator: torch.Generator | None = None,
                       ) -> tuple[Float[Tensor, "batch instances features"], Float[Tensor, "batch instances hidden"]]:
    """Ground-truth sparse features x, drawn with the model's feature probabilities, and hidden h = W x.

    The true feature directions in hidden space are the columns of `model.W` (instances, hidden, features).
    """
    with torch.no_grad():
        x = sample_features(batch_size, model.feature_probability, generator)
        return x, model.hidden(x)


def train_toy(model: ToyModel, *, steps: int, batch_size: int = 1024, lr: float = 1e-3, seed: int = 0,
              threads: int | None = 1, desc: str = "toy model", device: str | torch.device | None = None) -> training.History:
    """Train every instance at once with Adam and a cosine decay on fresh samples; logs the summed loss.
    `device` (default: the model's) is where it trains; samples are drawn on the CPU (the same on every device).

    `threads=1` by default: the tensors are small, and on a shared 2-core CPU two threads spin-wait for
    each other (we measured a step 8x slower under load). None keeps torch's setting.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    gen = torch.Generator().manual_seed(seed)

    def batches():
        while True:
            x = sample_features(batch_size, model.feature_probability, gen)
            yield x, x

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        if device is not None:
            model.to(device)
        return training.train(model, batches(), steps=steps, lr=lr, loss_fn=lambda m, b: m.loss(b[0]).sum(),
                              eval_every=max(steps // 10, 1), desc=desc, device=device)
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def evaluate_loss(model: ToyModel, n_samples: int = 65_536, seed: int = 1234) -> Float[Tensor, "instances"]:
    """Per-instance loss on `n_samples` fresh samples (in chunks, so memory stays small)."""
    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, min(n_samples, 2 ** 22 // (model.n_instances * model.n_features)))
    fp = model.feature_probability
    total, done = torch.zeros(model.n_instances, device=fp.device, dtype=fp.dtype), 0
    while done < n_samples:
        k = min(chunk, n_samples - done)
        total += model.loss(sample_features(k, model.feature_probability, gen)) * k
        done += k
    return total / n_samples


def best_of_seeds(losses: Float[Tensor, "instances"], n_seeds: int) -> Int[Tensor, "conditions"]:
    """Instances laid out as (seed, condition): the index of the lowest-loss seed of each condition."""
    if losses.ndim != 1 or len(losses) % n_seeds:
        raise ValueError(f"expected one loss per instance, n_seeds x conditions of them; got shape {tuple(losses.shape)} "
                         f"with n_seeds={n_seeds}")
    n_cond = len(losses) // n_seeds
    return losses.reshape(n_seeds, n_cond).argmin(0) * n_cond + torch.arange(n_cond)


# ---- geometry of the learned features -------------------------------------------------------------

def feature_norms(W: Float[Tensor, "instances hidden features"]) -> Float[Tensor, "instances features"]:
    """||W_i||: about 1 for a represented feature, about 0 for a dropped one."""
    return W.norm(dim=-2)


def superposition(W: Float[Tensor, "instances hidden features"]) -> Float[Tensor, "instances features"]:
    """sum_{j != i} (W_i_hat . W_j)^2: how much the other features project onto feature i's direction."""
    unit = W / W.norm(dim=-2, keepdim=True).clamp(min=1e-8)
    overlap = einops.einsum(unit, W, "inst hid i, inst hid j -> inst i j") ** 2
    return overlap.sum(-1) - overlap.diagonal(dim1=-2, dim2=-1)


def feature_dimensionality(W: Float[Tensor, "instances hidden features"]) -> Float[Tensor, "instances features"]:
    """D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2: the fraction of a dimension feature i gets (0 if dropped)."""
    unit = W / W.norm(dim=-2, keepdim=True).clamp(min=1e-8)
    denom = (einops.einsum(unit, W, "inst hid i, inst hid j -> inst i j") ** 2).sum(-1)
    return W.norm(dim=-2) ** 2 / denom.clamp(min=1e-12)


def dimensions_per_feature(W: Float[Tensor, "instances hidden features"]) -> Float[Tensor, "instances"]:
    """D* = m / ||W||_F^2: hidden dimensions per (norm-weighted) represented feature."""
    return W.shape[-2] / (W ** 2).sum((-2, -1))


def count_represented(W: Float[Tensor, "instances hidden features"], threshold: float = 0.5) -> Int[Tensor, "instances"]:
    """How many features have ||W_i|| > threshold."""
    return (feature_norms(W) > threshold).sum(-1)


def neighbour_angles(W: Float[Tensor, "2 features"]) -> Float[Tensor, "features"]:
    """Angles (degrees) between neighbouring feature directions in a 2-d hidden space, going round the circle."""
    if W.ndim != 2 or W.shape[0] != 2:
        raise ValueError(f"expected one instance's W with a 2-d hidden space, shape (2, features); got {tuple(W.shape)}")
    theta = torch.sort(torch.atan2(W[1], W[0])).values
    gaps = torch.diff(torch.cat([theta, theta[:1] + 2 * math.pi]))
    return torch.rad2deg(gaps)


# ---- the phase change: one extra feature, one hidden dimension ------------------------------------

def phase_sweep(relative_importance: Float[Tensor, "R"], density: Float[Tensor, "P"], n_seeds: int = 1,
                ) -> tuple[Float[Tensor, "instances 2"], Float[Tensor, "instances 2"]]:
    """Importance and feature probability for the n=2, m=1 phase diagram, instances laid out (seed, R, P).

    Feature 0 has importance 1, feature 1 (the "extra" feature) importance r; both have density p.
    """
    r, p = torch.meshgrid(relative_importance.float(), density.float(), indexing="ij")
    importance = torch.stack([torch.ones_like(r), r], -1).reshape(-1, 2).repeat(n_seeds, 1)
    probability = torch.stack([p, p], -1).reshape(-1, 2).repeat(n_seeds, 1)
    return importance, probability


def classify_phase(W: Float[Tensor, "instances 1 2"], threshold: float = 0.5) -> Int[Tensor, "instances"]:
    """Phase of the extra feature (index 1): 0 not represented, 1 dedicated dimension, 2 superposition (both
    norms > threshold, opposite signs: the antipodal pair the ReLU can filter), 3 both kept with the same sign."""
    if W.ndim != 3 or W.shape[1:] != (1, 2):
        raise ValueError(f"expected W of a 2-feature, 1-dimension model, shape (instances, 1, 2); got {tuple(W.shape)}")
    norms = feature_norms(W)
    extra, first = norms[:, 1] > threshold, norms[:, 0] > threshold
    opposite = W[:, 0, 0] * W[:, 0, 1] < 0
    return torch.where(~extra, 0, torch.where(first, torch.where(opposite, 2, 3), 1))


def theoretical_loss(relative_importance: Float[Tensor, "..."], density: Float[Tensor, "..."],
                     ) -> Float[Tensor, "... 3"]:
    """Expected loss of three hand-picked candidate solutions of the n=2, m=1 model (our derivation).

    A three-candidate approximation, not the optimum: a trained model can beat the superposition candidate
    (shorter weights and a positive bias on the less important feature lower its loss further).

    With v = p/3 - p^2/4 the variance of a feature of density p:
    - not represented, W = [1, 0], b = [0, p/2]: feature 0 exact, feature 1 predicted by its mean: r v
    - dedicated,       W = [0, 1], b = [p/2, 0]: the same with the roles swapped:               v
    - superposition,   W = [1, -1], b = 0: exact unless both are on (probability p^2); then the
      smaller one, m, is lost from both outputs, E[m^2] = 1/6:                                    p^2 (1 + r) / 6
    """
    r, p = torch.broadcast_tensors(torch.as_tensor(relative_importance, dtype=torch.float64),
                                   torch.as_tensor(density, dtype=torch.float64))
    v = p / 3 - p ** 2 / 4
    return torch.stack([r * v, v, p ** 2 * (1 + r) / 6], -1)


def theoretical_phase(relative_importance: Float[Tensor, "..."], density: Float[Tensor, "..."]) -> Int[Tensor, "..."]:
    """The candidate with the lowest expected loss: 0 not represented, 1 dedicated, 2 superposition."""
    return theoretical_loss(relative_importance, density).argmin(-1)


def simple_phase_rule(relative_importance: Float[Tensor, "..."], density: Float[Tensor, "..."]) -> Int[Tensor, "..."]:
    """A baseline that needs no losses: superposition (2) unless the features are dense (p > 0.5); dense, the
    extra feature is dropped (0) when r < 1 and takes the dimension (1) otherwise."""
    r, p = torch.broadcast_tensors(torch.as_tensor(relative_importance), torch.as_tensor(density))
    return torch.where(p > 0.5, torch.where(r < 1, 0, 1), 2)


def boundary_cells(phase: Int[Tensor, "R P"]) -> Tensor:
    """Bool (R, P): the cells of a phase map with a different phase in one of their 4 neighbours."""
    if phase.ndim != 2:
        raise ValueError(f"expected a 2-d phase map (R, P); got shape {tuple(phase.shape)}")
    edge = torch.zeros(phase.shape, dtype=torch.bool, device=phase.device)
    edge[1:] |= phase[1:] != phase[:-1]
    edge[:-1] |= phase[:-1] != phase[1:]
    edge[:, 1:] |= phase[:, 1:] != phase[:, :-1]
    edge[:, :-1] |= phase[:, :-1] != phase[:, 1:]
    return edge


def candidate_solutions(density: Float[Tensor, "cells"]) -> tuple[Float[Tensor, "3 cells 1 2"], Float[Tensor, "3 cells 2"]]:
    """W and b of the three candidate solutions of `theoretical_loss` (not represented, dedicated, superposition)."""
    p = torch.as_tensor(density, dtype=torch.float32).reshape(-1)
    W = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, -1.0]]]).unsqueeze(1).expand(3, len(p), 1, 2)
    zero = torch.zeros_like(p)
    b = torch.stack([torch.stack([zero, p / 2], -1), torch.stack([p / 2, zero], -1), torch.stack([zero, zero], -1)])
    return W.clone(), b


@torch.no_grad()
def phase_losses(W: Float[Tensor, "cells 1 2"], b: Float[Tensor, "cells 2"], importance: Float[Tensor, "cells 2"],
                 probability: Float[Tensor, "cells 2"], n_samples: int = 65_536, seed: int = 1234) -> Float[Tensor, "cells 4"]:
    """Loss of a trained solution per cell and of the three candidate solutions, all on the same samples.

    Columns: trained, not represented, dedicated, superposition. The same features x feed all four, so
    their differences carry no sampling noise between them (common random numbers).
    """
    if W.ndim != 3 or W.shape[1:] != (1, 2) or b.shape != (len(W), 2):
        raise ValueError(f"expected W (cells, 1, 2) and b (cells, 2) of a 2-feature, 1-dimension model; got W "
                         f"{tuple(W.shape)}, b {tuple(b.shape)}")
    cells = len(W)
    cand_W, cand_b = candidate_solutions(probability[:, 1])
    model = ToyModel(2, 1, 4 * cells, feature_probability=probability.cpu().repeat(4, 1),
                     importance=importance.cpu().repeat(4, 1)).to(W.device)  # on W's device
    model.W.copy_(torch.cat([W, cand_W.to(W.device).reshape(-1, 1, 2)]))
    model.b.copy_(torch.cat([b, cand_b.to(W.device).reshape(-1, 2)]))
    probability = probability.to(W.device, torch.float32)
    gen, total, done = torch.Generator().manual_seed(seed), torch.zeros(4 * cells, device=W.device), 0
    chunk = max(1, min(n_samples, 2 ** 22 // (8 * cells)))
    while done < n_samples:
        k = min(chunk, n_samples - done)
        x = sample_features(k, probability, gen)  # [k cells 2], shared by the four solutions
        total += model.loss(x.repeat(1, 4, 1)) * k
        done += k
    return (total / n_samples).reshape(4, cells).T


STICKY_LABELS = ("1", "3/4", "2/3", "1/2", "2/5", "3/8")


def count_sticky(D: Float[Tensor, "..."], tolerance: float = 0.03) -> dict[str, int]:
    """How many of the given dimensionalities lie within `tolerance` of each sticky fraction (nearest one wins)."""
    dist = (D.reshape(-1, 1) - torch.tensor(STICKY_FRACTIONS)).abs()
    nearest = dist.argmin(-1)[dist.min(-1).values <= tolerance]
    return {label: int((nearest == i).sum()) for i, label in enumerate(STICKY_LABELS)}


def sticky_share(D: Float[Tensor, "..."], tolerance: float = 0.03) -> float:
    """Fraction of the given dimensionalities within `tolerance` of one of the STICKY_FRACTIONS."""
    near = (D.reshape(-1, 1) - torch.tensor(STICKY_FRACTIONS)).abs().min(-1).values <= tolerance
    return near.float().mean().item()


def sticky_share_uniform(D: Float[Tensor, "..."], tolerance: float = 0.03, n_grid: int = 100_001) -> float:
    """The `sticky_share` that dimensionalities spread uniformly over [min D, max D] would have: the
    baseline matched to the range the given features actually occupy."""
    lo, hi = D.min().item(), D.max().item()
    if not hi > lo:
        raise ValueError(f"need dimensionalities spread over a range, got min = max = {lo}")
    return sticky_share(torch.linspace(lo, hi, n_grid), tolerance)


def sticky_excess(D: Float[Tensor, "..."], tolerance: float = 0.03, n_grid: int = 100_001) -> dict[str, dict[str, float]]:
    """For each sticky fraction: how many of the given dimensionalities lie on it (`count_sticky`) and how many
    the same number spread uniformly over [min D, max D] would put there (the matched baseline)."""
    lo, hi = D.min().item(), D.max().item()
    if not hi > lo:
        raise ValueError(f"need dimensionalities spread over a range, got min = max = {lo}")
    observed, spread = count_sticky(D, tolerance), count_sticky(torch.linspace(lo, hi, n_grid), tolerance)
    return {k: {"observed": observed[k], "uniform": round(spread[k] / n_grid * D.numel(), 2)} for k in observed}


@torch.no_grad()
def uniform_count_null(D: Float[Tensor, "..."], label: str = "1/2", tolerance: float = 0.03, n_draws: int = 10_000,
                       seed: int = 0) -> Int[Tensor, "n_draws"]:
    """The null of `count_sticky(D)[label]`: for each of `n_draws` draws, as many dimensionalities as D holds,
    spread uniformly at random over [min D, max D], counted the same way (nearest fraction wins)."""
    if label not in STICKY_LABELS:
        raise ValueError(f"label must be one of {STICKY_LABELS}, got {label!r}")
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws}")
    lo, hi = D.min().item(), D.max().item()
    if not hi > lo:
        raise ValueError(f"need dimensionalities spread over a range, got min = max = {lo}")
    gen, fractions, index = torch.Generator().manual_seed(seed), torch.tensor(STICKY_FRACTIONS), STICKY_LABELS.index(label)
    counts = []
    for start in range(0, n_draws, 1000):  # chunks keep the distance tensor small
        x = lo + (hi - lo) * torch.rand(min(1000, n_draws - start), D.numel(), generator=gen)
        dist = (x[..., None] - fractions).abs()
        counts.append(((dist.argmin(-1) == index) & (dist.min(-1).values <= tolerance)).sum(-1))
    return torch.cat(counts)



def antipodal_pairs(W: Float[Tensor, "hidden features"], threshold: float = 0.5, cosine: float = -0.95) -> dict[str, int]:
    """Represented features (norm > threshold) of one instance, and how many of them have a represented partner
    pointing the opposite way (cosine below `cosine`)."""
    u = torch.nn.functional.normalize(W[:, W.norm(dim=0) > threshold], dim=0)
    return {"represented": u.shape[1], "with_partner": int(((u.T @ u) < cosine).any(1).sum())}


def plateau_at(values: Float[Tensor, "points"], level: float, near: float = 0.015, tol: float = 0.01) -> tuple[int, int]:
    """(first index, length) of the longest run of neighbouring values that all lie within `near` of `level` and
    together move at most `tol` (max - min); (-1, 0) when no value is near `level`."""
    best, v = (-1, 0), values.tolist()
    for i in range(len(v)):
        j = i
        while j < len(v) and abs(v[j] - level) <= near and max(v[i:j + 1]) - min(v[i:j + 1]) <= tol:
            j += 1
        if j - i > best[1]:
            best = (i, j - i)
    return best


def pair_arrangement(W: Float[Tensor, "hidden features"], threshold: float = 0.5, cosine: float = -0.95) -> dict:
    """How the represented features (norm > threshold) of one instance sit: how many have an opposite partner
    (cosine below `cosine`), the worst (largest) cosine of each feature to its most opposite one, how many mutual
    pairs, the largest |cosine| between the pairs' axes (0: the pairs are orthogonal; None: fewer than 2 pairs) and
    the mean, smallest and largest D_i of the represented features."""
    keep = W.norm(dim=0) > threshold
    u = torch.nn.functional.normalize(W[:, keep], dim=0)
    G = u.T @ u
    partner = G.argmin(1)
    axes = [u[:, a] - u[:, b] for a, b in enumerate(partner.tolist()) if a < b and partner[b] == a and G[a, b] < cosine]
    A = torch.nn.functional.normalize(torch.stack(axes, 1), dim=0) if axes else None
    D = feature_dimensionality(W[None])[0][keep]
    return {"represented": u.shape[1], "with_partner": int((G < cosine).any(1).sum()), "pairs": len(axes),
            "worst_partner_cosine": round(G.min(1).values.max().item(), 3) if u.shape[1] else None,
            "pair_axes_max_cos": round((A.T @ A - torch.eye(A.shape[1])).abs().max().item(), 3) if len(axes) > 1 else None,
            "D_i_mean": round(D.mean().item(), 3) if len(D) else None,
            "D_i_range": [round(D.min().item(), 3), round(D.max().item(), 3)] if len(D) else None}


def random_unit_arrangement(hidden: int, features: int, n_unit: int, seed: int) -> Float[Tensor, "hidden features"]:
    """`n_unit` random unit vectors in `hidden` dimensions, the other features zero: ||W||_F^2 = n_unit, so
    D* = hidden / n_unit exactly, with no geometry put in (the control of `pair_arrangement`)."""
    W = torch.zeros(hidden, features)
    W[:, :n_unit] = torch.nn.functional.normalize(torch.randn(hidden, n_unit, generator=torch.Generator().manual_seed(seed)), dim=0)
    return W


def still_run_elsewhere(values: Float[Tensor, "points"], level: float, away: float = 0.03, step: float = 0.005,
                        near: float = 0.015, tol: float = 0.01) -> int:
    """The longest still run (`plateau_at`, same `near` and `tol`) of the same curve at any level on a grid of
    `step` at least `away` from `level`: the control of a plateau at `level`."""
    lo, hi = min(values.tolist()), max(values.tolist())
    levels = [lo + k * step for k in range(int((hi - lo) / step) + 1)]
    return max((plateau_at(values, lv, near, tol)[1] for lv in levels if abs(lv - level) >= away), default=0)


def smooth_curves(x: Float[Tensor, "points"], first: float, last: float) -> dict[str, Float[Tensor, "points"]]:
    """Curves without a plateau through (x[0], first) and (x[-1], last): the controls of `plateau_at`
    (linear in log x, a power law, an exponential decay, a logistic in log x centred between the end points)."""
    t = (x.log() - x[0].log()) / (x[-1].log() - x[0].log())  # 0 .. 1 along the grid
    s = lambda z: torch.sigmoid(4 * (z - 0.5))  # gentle: no flat tails inside the grid
    return {"linear in log x": first + (last - first) * t,
            "power law": first * (x / x[0]) ** (math.log(last / first) / math.log(x[-1].item() / x[0].item())),
            "exponential": first + (last - first) * (1 - torch.exp(-2 * t)) / (1 - math.exp(-2)),
            "logistic in log x": first + (last - first) * (s(t) - s(torch.tensor(0.0))) / (s(torch.tensor(1.0)) - s(torch.tensor(0.0)))}

# ---- figures -------------------------------------------------------------------------------------

def plot_feature_geometry(W: Float[Tensor, "k hidden features"], b: Float[Tensor, "k features"],
                          titles: list[str]) -> go.Figure:
    """For each of k models: the W^T W matrix (top) and per-feature norm bars coloured by superposition (bottom)."""
    W, b = W.detach().cpu(), b.detach().cpu()
    k, n = W.shape[0], W.shape[-1]
    fig = make_subplots(rows=2, cols=k, subplot_titles=titles, vertical_spacing=0.08, horizontal_spacing=0.02)
    WtW = einops.einsum(W, W, "k hid i, k hid j -> k i j")
    sup, norms = superposition(W), feature_norms(W)
    frac = (sup / (sup + norms ** 2).clamp(min=1e-8)).clamp(0, 1)  # 0: orthogonal to all, 1: only shares
    for c in range(k):
        fig.add_trace(go.Heatmap(z=WtW[c].numpy(), zmin=-1, zmax=1, colorscale="RdBu", showscale=c == 0,
                                 colorbar=dict(title="W<sup>T</sup>W", len=0.45, y=0.78)), row=1, col=c + 1)
        fig.add_trace(go.Bar(y=list(range(n)), x=norms[c].numpy(), orientation="h", showlegend=False,
                             marker=dict(color=frac[c].numpy(), colorscale="Viridis", cmin=0, cmax=1,
                                         colorbar=dict(title="superposed<br>share", len=0.45, y=0.22) if c == 0 else None,
                                         showscale=c == 0)), row=2, col=c + 1)
        fig.update_yaxes(autorange="reversed", showticklabels=c == 0, row=1, col=c + 1)
        fig.update_yaxes(autorange="reversed", showticklabels=c == 0, row=2, col=c + 1)
        fig.update_xaxes(showticklabels=False, row=1, col=c + 1)
        fig.update_xaxes(range=[0, 1.3], row=2, col=c + 1)
    fig.update_yaxes(title_text="feature (most important on top)", row=2, col=1)
    fig.update_layout(height=560, margin=dict(t=50, l=60, r=20, b=40), bargap=0.15,
                      title="W<sup>T</sup>W (top) and ||W<sub>i</sub>|| coloured by how much of it is shared (bottom)")
    return fig


def plot_polygon(W: Float[Tensor, "2 features"], title: str = "") -> go.Figure:
    """The columns of a 2-d W drawn as arrows from the origin, joined in angular order."""
    W = W.detach().cpu()
    order = torch.argsort(torch.atan2(W[1], W[0]))
    ring = torch.cat([order, order[:1]])
    fig = go.Figure(go.Scatter(x=W[0, ring].numpy(), y=W[1, ring].numpy(), mode="lines",
                               line=dict(color="lightgray", dash="dot"), showlegend=False))
    for i in range(W.shape[1]):
        fig.add_trace(go.Scatter(x=[0, W[0, i].item()], y=[0, W[1, i].item()], mode="lines+markers+text",
                                 text=["", f"feature {i}"], textposition="top center", name=f"feature {i}"))
    lim = 1.3 * W.norm(dim=0).max().item()
    fig.update_layout(title=title, width=520, height=520, showlegend=False,
                      xaxis=dict(range=[-lim, lim], zeroline=True), yaxis=dict(range=[-lim, lim], scaleanchor="x"))
    return fig


def plot_phase_diagram(empirical: Int[Tensor, "R P"], theory: Int[Tensor, "R P"],
                       relative_importance: Tensor, density: Tensor) -> go.Figure:
    """Trained (left) and three-candidate (right) phase of the extra feature over importance x density."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["trained models", "three-candidate approximation (lowest-loss candidate)"],
                        horizontal_spacing=0.08)
    palette = ["#d9d9d9", "#4c78a8", "#f58518", "#e45756"]
    colors = [[edge, color] for i, color in enumerate(palette) for edge in (i / 4, (i + 1) / 4)]
    for c, z in enumerate([empirical, theory]):
        fig.add_trace(go.Heatmap(z=z.numpy(), x=density.numpy(), y=relative_importance.numpy(), zmin=-0.5, zmax=3.5,
                                 colorscale=colors, showscale=c == 0,
                                 colorbar=dict(tickvals=[0, 1, 2, 3], ticktext=list(PHASES)),
                                 hovertemplate="density %{x:.3g}<br>importance %{y:.3g}<br>phase %{z}<extra></extra>"),
                      row=1, col=c + 1)
        fig.update_xaxes(type="log", title_text="feature density 1 - S", autorange="reversed", row=1, col=c + 1)
        fig.update_yaxes(type="log", title_text="relative importance of the extra feature" if c == 0 else None,
                         row=1, col=c + 1)
    fig.update_layout(height=430, width=950, title="Phase of the extra feature in a 2-feature, 1-neuron model")
    return fig


def plot_dimensionality(inv_density: Float[Tensor, "instances"], D_star: Float[Tensor, "instances"],
                        D_features: Float[Tensor, "instances features"], norms: Float[Tensor, "instances features"],
                        threshold: float = 0.5) -> go.Figure:
    """Dimensions per feature D* against 1/(1-S), with each represented feature's D_i as a dot."""
    fig = go.Figure()
    keep = norms > threshold
    xs = inv_density.reshape(-1, 1).expand_as(D_features)[keep]
    jitter = torch.exp(0.04 * torch.randn(len(xs), generator=torch.Generator().manual_seed(0)))
    fig.add_trace(go.Scatter(x=(xs * jitter).numpy(), y=D_features[keep].numpy(), mode="markers", name="feature D<sub>i</sub>",
                             marker=dict(size=4, color="rgba(76,120,168,0.35)")))
    fig.add_trace(go.Scatter(x=inv_density.numpy(), y=D_star.numpy(), mode="lines+markers", name="model D* = m / ||W||<sub>F</sub><sup>2</sup>",
                             line=dict(color="black", width=2)))
    for f, label in zip(STICKY_FRACTIONS, STICKY_LABELS):
        fig.add_hline(y=f, line=dict(color="gray", dash="dot", width=1), annotation_text=label,
                      annotation_position="right")
    fig.update_layout(height=480, width=900, title="Dimensions per feature against 1/(1-S)",
                      xaxis=dict(type="log", title="1 / (1 - S)"), yaxis=dict(title="dimensions per feature", range=[0, 1.1]))
    return fig
