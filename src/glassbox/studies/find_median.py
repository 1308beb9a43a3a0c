"""The Find-Median study (notebooks 02 and 03): seeded lists of integers with their median or
minimum, drawn from named families; training and measuring the list transformers; and the
idealised parts of notebook 03 (tent-shaped OV tables, uniform attention) put into a trained model."""
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import einops
import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from glassbox import checks, circuits, training
from glassbox.circuits import _check_one_layer, _replacement, _tokens
from glassbox.studies import models

# ---------------------------------------------------------------------------------------------
# Lists of integers for the Find-Median / Find-Min transformers (notebook 02).
#
# A *family* is a named recipe for lists: `family(rng, n, length, vocab) -> (n, length) int array`.
# TRAIN_FAMILIES are the ones the training mixture draws from; HELD_OUT_FAMILIES are never trained
# on and measure whether the model learned the median of ANY list or only of the lists it saw.


def _uniform(rng: np.random.Generator, n: int, length: int, vocab: int) -> np.ndarray:
    """Each value independent and uniform in 0..vocab-1."""
    return rng.integers(0, vocab, (n, length))


def _any_median(rng, n, length, vocab):
    """Median m uniform in 0..vocab-1 (so 0 and vocab-1 are as common as any); half the rest below, half above."""
    half = length // 2
    m = rng.integers(0, vocab, (n, 1))
    below = rng.integers(0, m + 1, (n, half))
    above = rng.integers(m, vocab, (n, half))
    return rng.permuted(np.concatenate([below, m, above], axis=1), axis=1)


def _few_distinct(rng, n, length, vocab):
    """Ties everywhere: every value is one of 2 or 3 values drawn at random."""
    k = rng.integers(2, 4, (n, 1))
    pool = rng.integers(0, vocab, (n, 3))
    return np.take_along_axis(pool, rng.integers(0, k, (n, length)), axis=1)


def _all_equal(rng, n, length, vocab):
    """One value repeated `length` times."""
    return np.repeat(rng.integers(0, vocab, (n, 1)), length, axis=1)


def _median_at_edge(rng, n, length, vocab):
    """Median 0 or vocab-1: a majority of the list sits at one end, the rest anywhere."""
    at_edge = np.arange(length) < rng.integers(length // 2 + 1, length + 1, (n, 1))
    edge = np.where(rng.random((n, 1)) < 0.5, 0, vocab - 1)
    x = np.where(at_edge, edge, rng.integers(0, vocab, (n, length)))
    return rng.permuted(x, axis=1)


def _bands(rng, n, length, vocab) -> tuple[np.ndarray, np.ndarray]:
    """A value near 0 and one near vocab-1 for every position (band width 1..vocab//10)."""
    width = rng.integers(1, max(vocab // 10, 1) + 1, (n, 1))
    low = (rng.random((n, length)) * width).astype(np.int64)
    return low, vocab - 1 - (rng.random((n, length)) * width).astype(np.int64)


def _ends_and_middle(rng, n, length, vocab):
    """Half the values bunched near 0, half near vocab-1, and one anywhere: that one is the median."""
    low, high = _bands(rng, n, length, vocab)
    half = length // 2
    x = np.concatenate([low[:, :half], high[:, :half], rng.integers(0, vocab, (n, 1))], axis=1)
    return rng.permuted(x, axis=1)


def _two_ends(rng, n, length, vocab):
    """Every value bunched near 0 or near vocab-1 (each side with probability 1/2)."""
    low, high = _bands(rng, n, length, vocab)
    return np.where(rng.random((n, length)) < 0.5, low, high)


def _sorted(rng, n, length, vocab):
    """Uniform values in ascending order."""
    return np.sort(_uniform(rng, n, length, vocab), axis=1)


def _narrow(rng, n, length, vocab):
    """All values inside a random window of width 2..8: small gaps and many near-ties."""
    width = rng.integers(2, min(8, vocab) + 1, (n, 1))
    start = rng.integers(0, vocab - width + 1)
    return start + (rng.random((n, length)) * width).astype(np.int64)


def _descending(rng, n, length, vocab):
    """Uniform values in descending order."""
    return _sorted(rng, n, length, vocab)[:, ::-1].copy()


def _consecutive(rng, n, length, vocab):
    """A run of consecutive integers (a, a+1, ...), shuffled: every gap is 1. Needs vocab >= length."""
    start = rng.integers(0, max(vocab - length, 0) + 1, (n, 1))
    return rng.permuted(np.minimum(start + np.arange(length), vocab - 1), axis=1)


def _spaced(rng, n, length, vocab):
    """An arithmetic progression a, a+d, ..., a+(length-1)d with the widest steps that fit, shuffled."""
    step = rng.integers(1, max((vocab - 1) // (length - 1), 1) + 1, (n, 1))
    start = rng.integers(0, np.maximum(vocab - step * (length - 1), 1))
    return rng.permuted(np.minimum(start + step * np.arange(length), vocab - 1), axis=1)


def _outlier(rng, n, length, vocab):
    """All but one value in a window of width 5; the last value at 0 or vocab-1."""
    x = _narrow(rng, n, length, vocab)
    x[:, 0] = np.where(rng.random(n) < 0.5, 0, vocab - 1)
    return rng.permuted(x, axis=1)


def _pairs(rng, n, length, vocab):
    """Values come in equal pairs (plus one single value), shuffled."""
    pool = rng.integers(0, vocab, (n, (length + 1) // 2))
    return rng.permuted(np.repeat(pool, 2, axis=1)[:, :length], axis=1)


def _clipped_gaussian(rng, n, length, vocab):
    """Rounded normal values (centre anywhere, spread 2..vocab/2), clipped to 0..vocab-1: piles at the ends."""
    centre = rng.uniform(-0.2, 1.2, (n, 1)) * (vocab - 1)
    spread = rng.uniform(2, max(vocab / 2, 2), (n, 1))
    return np.rint(rng.normal(centre, spread, (n, length))).clip(0, vocab - 1).astype(np.int64)


TRAIN_FAMILIES = {
    "uniform": _uniform, "any_median": _any_median, "few_distinct": _few_distinct, "all_equal": _all_equal,
    "median_at_edge": _median_at_edge, "ends_and_middle": _ends_and_middle, "two_ends": _two_ends,
    "sorted": _sorted, "narrow": _narrow,
}
HELD_OUT_FAMILIES = {
    "descending": _descending, "consecutive": _consecutive, "spaced": _spaced, "outlier": _outlier,
    "pairs": _pairs, "clipped_gaussian": _clipped_gaussian,
}
FAMILIES = TRAIN_FAMILIES | HELD_OUT_FAMILIES
# The training mixture: uniform lists for the typical case, medians spread evenly over 0..vocab-1, and
# extra weight on the lists with near-ties around the median (narrow, ends_and_middle).
TRAIN_WEIGHTS = {"uniform": 3, "any_median": 3, "few_distinct": 1, "all_equal": 0.3, "median_at_edge": 1,
                 "ends_and_middle": 2, "two_ends": 1, "sorted": 0.3, "narrow": 2}
TASKS = ("median", "min")


def _check_int(name: str, value, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        example = {"n": 1000, "length": 7, "vocab": 50}.get(name, 0)
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}); pass e.g. {name}={example}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_list_shape(length: int, vocab: int) -> None:
    """Raise a clear error unless `length` is an odd int >= 3 and `vocab` an int >= 2."""
    _check_int("length", length, 3)
    if length % 2 == 0:
        raise ValueError(f"length must be odd so the median is one of the list's values, got {length}; "
                         f"use {length - 1} or {length + 1}")
    _check_int("vocab", vocab, 2)


def make_lists(n: int, *, length: int = 7, vocab: int = 50, family: str = "uniform",
               seed: int = 0) -> Int[Tensor, "n length"]:
    """`n` lists of `length` ints in 0..vocab-1 drawn from `family` (see FAMILIES); same seed, same lists."""
    _check_int("n", n, 0)
    check_list_shape(length, vocab)
    _check_int("seed", seed, 0)
    if family not in FAMILIES:
        raise KeyError(f"unknown list family {family!r}; families: {', '.join(FAMILIES)}")
    if family in ("consecutive", "spaced") and vocab < length:
        raise ValueError(f"the {family!r} family needs vocab >= length (distinct values), got vocab={vocab}, "
                         f"length={length}")
    x = FAMILIES[family](np.random.default_rng(seed), n, length, vocab)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))


def list_targets(tokens: Int[Tensor, "batch length"], task: str = "median") -> Int[Tensor, "batch"]:
    """The answer for each list: its median (middle of the sorted list) or its minimum."""
    if not isinstance(tokens, Tensor) or tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"tokens must be an integer torch tensor (batch, length), got "
                        f"{getattr(tokens, 'dtype', type(tokens).__name__)}; convert with .long()")
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (batch, length), got {tuple(tokens.shape)}")
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if task == "min":
        return tokens.min(dim=1).values
    check_list_shape(tokens.shape[1], 2)
    return tokens.sort(dim=1).values[:, tokens.shape[1] // 2]


def make_median_data(n: int, *, length: int = 7, vocab: int = 50, family: str = "uniform",
                     seed: int = 0) -> tuple[Int[Tensor, "n length"], Int[Tensor, "n"]]:
    """`n` lists from `family` and their medians."""
    tokens = make_lists(n, length=length, vocab=vocab, family=family, seed=seed)
    return tokens, list_targets(tokens, "median")


def make_mixture(n: int, weights: dict[str, float], *, length: int = 7, vocab: int = 50,
                 seed: int = 0) -> tuple[Int[Tensor, "n length"], Int[Tensor, "n"]]:
    """`n` lists drawn from several families in proportion to `weights`, shuffled; also each list's family index."""
    _check_int("n", n, 0)
    unknown = set(weights) - set(FAMILIES)
    if unknown or not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
        raise ValueError(f"weights must map family names ({', '.join(FAMILIES)}) to non-negative "
                         f"numbers, at least one positive; got {weights}")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.array(list(weights.values()), dtype=float) / sum(weights.values()))
    parts = [make_lists(int(c), length=length, vocab=vocab, family=f, seed=int(rng.integers(2**31)))
             for f, c in zip(weights, counts)]
    order = torch.from_numpy(rng.permutation(n))
    family = torch.repeat_interleave(torch.arange(len(weights)), torch.from_numpy(counts))
    return torch.cat(parts)[order], family[order]


def list_batches(batch_size: int, weights: dict[str, float], *, task: str = "median", length: int = 7,
                 vocab: int = 50, seed: int = 0) -> Iterator[tuple[Int[Tensor, "batch length"], Int[Tensor, "batch"]]]:
    """Endless fresh batches (tokens, answers) from the mixture `weights`: no list is seen twice on purpose."""
    for step in itertools.count():
        tokens, _ = make_mixture(batch_size, weights, length=length, vocab=vocab, seed=seed * 1_000_003 + step)
        yield tokens, list_targets(tokens, task)


# ---------------------------------------------------------------------------------------------
# Which lists did training see? A list's multiset (its values, ignoring order) as one integer, the training
# stream replayed, and three families kept as a test set that chose nothing (not part of FAMILIES).

def multiset_keys(tokens: Int[Tensor, "batch length"], vocab: int = 50) -> Int[Tensor, "batch"]:
    """One integer per list that ignores the order of its values: the sorted list read as a base-`vocab` number."""
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (batch, length), got {tuple(tokens.shape)}")
    if vocab ** tokens.shape[1] >= 2**63:
        raise ValueError(f"vocab {vocab} ** length {tokens.shape[1]} does not fit an int64 key")
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= vocab):
        raise ValueError(f"token values must lie in 0..{vocab - 1}, got {int(tokens.min())}..{int(tokens.max())}")
    powers = vocab ** torch.arange(tokens.shape[1] - 1, -1, -1, dtype=torch.int64)
    return (tokens.sort(dim=1).values.long() * powers).sum(1)


def seen_multisets(steps: int, batch_size: int, weights: dict[str, float], *, seed: int = 0, length: int = 7,
                   vocab: int = 50) -> np.ndarray:
    """The sorted, unique multiset keys of every list that `list_batches(batch_size, weights, seed=seed)` yields
    in its first `steps` batches: exactly what a model trained on that stream has seen (in some order)."""
    _check_int("steps", steps, 0)
    stream = list_batches(batch_size, weights, length=length, vocab=vocab, seed=seed)
    keys = [multiset_keys(next(stream)[0], vocab).numpy() for _ in range(steps)]
    return np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)


def unseen(tokens: Int[Tensor, "batch length"], seen: np.ndarray, vocab: int = 50) -> Tensor:
    """Boolean mask of the lists whose multiset is not in `seen` (from `seen_multisets`)."""
    return torch.from_numpy(~np.isin(multiset_keys(tokens, vocab).numpy(), seen))


def _skewed(rng, n, length, vocab):
    """Values piled towards one end (vocab * u**3), mirrored for half of the lists."""
    x = np.floor(vocab * rng.random((n, length)) ** 3).astype(np.int64).clip(0, vocab - 1)
    return np.where(rng.random((n, 1)) < 0.5, vocab - 1 - x, x)


def _two_clusters(rng, n, length, vocab):
    """Two tight clusters (values within 2 of a centre) at random centres, 3 or 4 values in the first."""
    centres = rng.integers(0, vocab, (n, 2))
    first = np.arange(length)[None, :] < rng.integers(3, 5, (n, 1))
    x = np.where(first, centres[:, :1], centres[:, 1:]) + rng.integers(-2, 3, (n, length))
    return rng.permuted(x.clip(0, vocab - 1), axis=1)


def _window(rng, n, length, vocab):
    """Uniform inside a random window 10 to 30 wide (between `narrow` and `uniform`)."""
    width = rng.integers(min(10, vocab), min(30, vocab) + 1, (n, 1))
    start = rng.integers(0, vocab - width + 1)
    return start + (rng.random((n, length)) * width).astype(np.int64)


TEST_FAMILIES = {"skewed": _skewed, "two_clusters": _two_clusters, "window": _window}


def make_test_lists(n: int, *, family: str, length: int = 7, vocab: int = 50, seed: int = 0) -> Int[Tensor, "n length"]:
    """`n` lists from one of TEST_FAMILIES: families used for nothing but a final test (notebook 02)."""
    _check_int("n", n, 0)
    check_list_shape(length, vocab)
    _check_int("seed", seed, 0)
    if family not in TEST_FAMILIES:
        raise KeyError(f"unknown test family {family!r}; test families: {', '.join(TEST_FAMILIES)}")
    x = TEST_FAMILIES[family](np.random.default_rng(seed), n, length, vocab)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))


def train_list_model(
    task: str = "median",
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weights: dict[str, float] | None = None,
    config: dict | None = None,
    seed: int = 0,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every: int = 200,
    warmup: int = 100,
    betas: tuple[float, float] = (0.9, 0.98),
    clip_grad: float | None = 1.0,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, training.History]:
    """Build an attention-only transformer and training.train it to output the median (or min) of a list at the last position.

    Fresh lists every step from the mixture `weights` (default `TRAIN_WEIGHTS`); `config` overrides
    `models.AttnOnlyConfig`. `device` (default: the CPU, where the model is built) is where it trains; the
    lists are drawn on the CPU and moved there. Returns the trained model (eval mode, on `device`) and its history.
    """

    model = models.build("attn_only_transformer", {"seed": seed} | (config or {}))
    cfg = model.cfg
    batches = list_batches(batch_size, weights or TRAIN_WEIGHTS, task=task, length=cfg.n_ctx,
                                vocab=cfg.d_vocab, seed=seed)
    history = training.train(models.LastPosition(model), batches, steps=steps, lr=lr, evaluate=evaluate,
                    eval_every=eval_every, warmup=warmup, desc=f"training.train {task}", betas=betas, clip_grad=clip_grad,
                    device=device)
    return model.eval(), history


def list_accuracy(model: nn.Module, task: str = "median", *, n_uniform: int = 100_000, n_family: int = 20_000,
                  seed: int = 0) -> dict:
    """Accuracy of a list model's last-position answer on `n_uniform` fresh uniform lists and on `n_family`
    lists of every family in `FAMILIES` (trained-on and held-out): {"uniform_accuracy", "family_accuracy"}."""

    cfg = model.cfg
    net = models.LastPosition(model)

    def score(family: str, n: int, offset: int) -> float:
        tokens = make_lists(n, length=cfg.n_ctx, vocab=cfg.d_vocab, family=family, seed=seed + offset)
        return training.accuracy(net, tokens, list_targets(tokens, task))

    return {"uniform_accuracy": score("uniform", n_uniform, 1),
            "family_accuracy": {f: score(f, n_family, 2) for f in FAMILIES}}


def unseen_accuracy(model: nn.Module, tokens: Int[Tensor, "batch length"], seen: np.ndarray, task: str = "median") -> dict:
    """Accuracy of a list model's last-position answer on the lists of `tokens` whose multiset training never
    saw (`seen_multisets`): {"n": drawn, "unseen": kept, "accuracy": on those (None when none is left)}."""

    keep = unseen(tokens, seen, model.cfg.d_vocab)
    x = tokens[keep]
    acc = training.accuracy(models.LastPosition(model), x, list_targets(x, task)) if len(x) else None
    return {"n": len(tokens), "unseen": int(keep.sum()), "accuracy": acc}


def make_flip_pairs(tokens: Int[Tensor, "batch pos"], position: int, vocab: int, task: str = "median",
                    seed: int = 0) -> Int[Tensor, "batch pos"]:
    """Corrupted copies of `tokens`: the value at `position` redrawn, uniformly among the values that change the
    answer (median or min). Lists where no single value at `position` can change it come back unchanged."""
    checks.tokens(tokens, "tokens", d_vocab=checks.count(vocab, "vocab"))
    checks.index(position, "position", tokens.shape[1], of=f" (the lists have {tokens.shape[1]} positions)", negative=True)
    n, length = tokens.shape
    trials = tokens[:, None, :].repeat(1, vocab, 1)
    trials[:, :, position] = torch.arange(vocab)
    answers = list_targets(trials.reshape(-1, length), task).reshape(n, vocab)
    changes = answers != list_targets(tokens, task)[:, None]
    weights = changes.float() + (~changes.any(1, keepdim=True)).float() * (torch.arange(vocab) == tokens[:, [position]])
    new = torch.multinomial(weights, 1, generator=torch.Generator().manual_seed(seed))[:, 0]
    corrupt = tokens.clone()
    corrupt[:, position] = new
    return corrupt


# ---------------------------------------------------------------------------------------------
# The tent hypothesis for the median: a token x writes a logit row -c|m - x| (+ bonus at m = x).

@dataclass(frozen=True)
class TentFit:
    c: float  # slope: logit lost per unit distance |m - x|
    bonus: float  # extra logit at m = x (0 when not fitted)
    r2: float  # share of the table's variance (rows centred: a row offset changes no argmax) explained
    column_residual: Float[Tensor, "d_vocab"]  # mean misfit per output m: a preference for m the tent lacks


def tent_table(d_vocab: int, c: float = 1.0, bonus: float = 0.0) -> Float[Tensor, "d_vocab d_vocab"]:
    """The idealised OV table T[x, m] = -c|m - x| + bonus [m = x]."""
    checks.count(d_vocab, "d_vocab")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (c, bonus)):
        raise ValueError(f"c and bonus must be finite numbers, got c={c!r}, bonus={bonus!r}")
    idx = torch.arange(d_vocab, dtype=torch.float32)
    return -c * (idx[None, :] - idx[:, None]).abs() + bonus * torch.eye(d_vocab)


def fit_tent(table: Float[Tensor, "d_vocab d_vocab"], bonus: bool = False) -> TentFit:
    """Least-squares fit T[x, m] ~ r_x - c|m - x| (+ bonus [m = x]) with a free offset r_x per row."""
    if table.ndim != 2 or table.shape[0] != table.shape[1]:
        raise ValueError(f"expected a square token -> logit table [d_vocab d_vocab], got shape {tuple(table.shape)}")
    checks.tensor(table, "table")
    n = table.shape[0]
    centred = table - table.mean(1, keepdim=True)
    features = [tent_table(n, c=-1.0)] + ([torch.eye(n)] if bonus else [])
    X = torch.stack([f - f.mean(1, keepdim=True) for f in features], -1).reshape(n * n, -1)
    coef = torch.linalg.lstsq(X.double(), centred.reshape(-1, 1).double()).solution[:, 0]
    residual = centred.reshape(-1).double() - X.double() @ coef
    r2 = 1 - residual.pow(2).sum() / centred.double().pow(2).sum()
    columns = residual.reshape(n, n).mean(0).float()
    return TentFit(c=-float(coef[0]), bonus=float(coef[1]) if bonus else 0.0, r2=float(r2), column_residual=columns)


def get_local_slopes(table: Float[Tensor, "d_vocab d_vocab"], window: int = 10) -> Float[Tensor, "d_vocab"]:
    """Per row x: the mean |T[x, m+1] - T[x, m]| over the steps within `window` of m = x (a tent's c, row by row)."""
    checks.tensor(table, "table")
    n = table.shape[0] if table.ndim else 0
    if table.ndim != 2 or table.shape[1] != n or window < 1:
        raise ValueError(f"expected a square table [d_vocab d_vocab] and window >= 1, got {tuple(table.shape)}, {window}")
    steps = (table[:, 1:] - table[:, :-1]).abs()  # [x, m] for the step m -> m + 1
    idx = torch.arange(n - 1)
    near = ((idx[None, :] - torch.arange(n)[:, None]).abs() < window) | ((idx[None, :] + 1 - torch.arange(n)[:, None]).abs() < window)
    return (steps * near).sum(1) / near.sum(1)


class AveragingModel(nn.Module):
    """A hand-built 'attention-only' model: uniform causal attention over an OV table.

    logits[b, p] = mean over j <= p of table[tokens[b, j]]; with `tent_table` its argmax is the median."""

    def __init__(self, table: Float[Tensor, "d_vocab d_vocab_out"]):
        super().__init__()
        self.register_buffer("table", checks.tensor(table, "table", ndim=2).float())

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab_out"]:
        if tokens.dtype not in (torch.int64, torch.int32) or tokens.ndim != 2:
            raise TypeError(f"expected int tokens [batch pos], got {tokens.dtype} of shape {tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= len(self.table)):
            raise ValueError(f"tokens must be in 0..{len(self.table) - 1} (the table's rows), got values from "
                             f"{tokens.min().item()} to {tokens.max().item()}")
        rows = self.table[tokens]  # batch pos vocab
        return rows.cumsum(1) / torch.arange(1, tokens.shape[1] + 1, device=tokens.device)[:, None]



# ---------------------------------------------------------------------------------------------
# Putting a hypothesis into the trained network, one part at a time: the last position's logits are
# (sum_j a_j T[x_j, j] + direct) / s + bias, exactly; replace any of the parts and compare.

@dataclass(frozen=True)
class LastPositionTerms:
    pattern: Float[Tensor, "batch pos"]  # the last query's attention to each position (head 0)
    ov: Float[Tensor, "batch pos d_vocab_out"]  # what each position's token writes: T[x_j, j] (exact OV table rows)
    direct: Float[Tensor, "batch d_vocab_out"]  # skip connection: last token + last position embedding + b_O, through W_U
    scale: Float[Tensor, "batch 1"]  # the list's final-LayerNorm scale (divides everything but the bias)
    bias: Float[Tensor, "d_vocab_out"]  # ln_final.b W_U + b_U


@torch.no_grad()
def get_last_position_terms(model: nn.Module, tokens: Int[Tensor, "batch pos"]) -> LastPositionTerms:
    """The parts of a 1-layer, 1-head attention-only model's last-position logits; `assemble_logits` of them
    reproduces the model's logits exactly."""
    _check_one_layer(model)
    if model.cfg.n_heads != 1:
        raise ValueError(f"the terms are per head; this model has {model.cfg.n_heads} heads, expected 1")
    _tokens(model, tokens)
    names = ["blocks.0.attn.hook_pattern", "ln_final.hook_scale", "hook_embed", "hook_pos_embed"]
    tokens = tokens.to(checks.placement(model)[0])
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    T = circuits.get_ov_table(model)  # token pos vocab
    ov = T[tokens, torch.arange(tokens.shape[1], device=tokens.device)]  # batch pos vocab
    resid = cache["hook_embed"][:, -1] + cache["hook_pos_embed"][:, -1] + model.b_O[0]
    bias = model.b_U + (model.ln_final.b @ model.W_U if model.cfg.normalization_type == "LN" else 0)
    return LastPositionTerms(pattern=cache["blocks.0.attn.hook_pattern"][:, 0, -1], ov=ov, direct=resid @ circuits.get_W_U_eff(model),
                             scale=cache["ln_final.hook_scale"][:, -1], bias=bias)


def assemble_logits(terms: LastPositionTerms, *, pattern: Tensor | None = None, ov: Tensor | None = None,
                    direct: Tensor | None = None, bias: Tensor | None = None) -> Float[Tensor, "batch d_vocab_out"]:
    """(sum_j a_j ov_j + direct) / scale + bias, with any part replaced by the given one (broadcast to its shape)."""
    a = terms.pattern if pattern is None else _replacement(pattern, "pattern", terms.pattern.shape).expand_as(terms.pattern)
    rows = terms.ov if ov is None else _replacement(ov, "ov", terms.ov.shape, exact=True)
    d = terms.direct if direct is None else _replacement(direct, "direct", terms.direct.shape)
    b = terms.bias if bias is None else _replacement(bias, "bias", terms.bias.shape)
    return (einops.einsum(a, rows, "batch pos, batch pos vocab -> batch vocab") + d) / terms.scale + b


def tent_rows(terms: LastPositionTerms, tokens: Int[Tensor, "batch pos"], c: float,
              column: Float[Tensor, "d_vocab_out"] | None = None) -> Float[Tensor, "batch pos d_vocab_out"]:
    """The OV rows the tent hypothesis predicts: each row's own mean, plus -c|m - x| (centred), plus an optional
    preference per output m shared by all rows (e.g. a tent fit's column residual)."""
    vocab = terms.ov.shape[-1]
    checks.tokens(tokens, "tokens", d_vocab=vocab)
    if tokens.shape != terms.pattern.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} must be the lists the terms were computed on, "
                         f"{tuple(terms.pattern.shape)}")
    if column is not None:
        _replacement(column, "column", torch.Size([vocab]), exact=True)
    tent = tent_table(vocab, c=c)[tokens]  # batch pos vocab
    rows = terms.ov.mean(-1, keepdim=True) + tent - tent.mean(-1, keepdim=True)
    return rows if column is None else rows + column


def logit_fit(logits: Float[Tensor, "batch vocab"], reference: Float[Tensor, "batch vocab"],
              answers: Int[Tensor, "batch"]) -> dict[str, float]:
    """How well `logits` reproduce `reference` (the trained model's): training.accuracy and agreement of the argmax,
    mean cross-entropy, mean margin (answer minus best other logit) and its share of the reference's,
    and R^2 of the logits with each list's mean removed (a constant per list changes no probability)."""
    checks.tensor(logits, "logits", ndim=2)
    _replacement(reference, "reference", logits.shape, exact=True)
    checks.tokens(answers, "answers", ndim=1, d_vocab=logits.shape[1])
    if answers.shape != logits.shape[:1]:
        raise ValueError(f"answers must hold one class index per list, shape {tuple(logits.shape[:1])}")
    def margin(lg: Tensor) -> Tensor:
        other = lg.scatter(1, answers[:, None], -torch.inf).amax(-1)
        return lg.gather(1, answers[:, None])[:, 0] - other
    centre = lambda t: t - t.mean(-1, keepdim=True)
    residual = (centre(logits) - centre(reference)).pow(2).sum()
    return {"accuracy": (logits.argmax(-1) == answers).float().mean().item(),
            "kl": kl_from_reference(logits, reference),
            "agreement": (logits.argmax(-1) == reference.argmax(-1)).float().mean().item(),
            "loss": torch.nn.functional.cross_entropy(logits, answers).item(),
            "margin": margin(logits).mean().item(),
            "margin_kept": (margin(logits).mean() / margin(reference).mean()).item(),
            "logit_r2": (1 - residual / centre(reference).pow(2).sum()).item()}


def kl_from_reference(logits: Float[Tensor, "batch vocab"], reference: Float[Tensor, "batch vocab"]) -> float:
    """Mean KL divergence KL(softmax(reference) || softmax(logits)) over the batch, in nats: how far `logits`' answer
    distribution is from the reference model's (0 when they give the same probabilities)."""
    checks.tensor(logits, "logits", ndim=2)
    _replacement(reference, "reference", logits.shape, exact=True)
    log_p, log_q = reference.double().log_softmax(-1), logits.double().log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean().item()


def fit_slope(logits_at: Callable[[float], Float[Tensor, "batch vocab"]], reference: Float[Tensor, "batch vocab"],
              lo: float, hi: float, *, iters: int = 40) -> float:
    """The slope c in [lo, hi] whose logits `logits_at(c)` are closest to `reference` (the trained model's) in mean
    KL divergence: maximum likelihood of the trained model's answer distribution. Ternary search: with logits affine
    in c (as `tent_rows` makes them) the divergence is convex in c."""
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi) or iters < 1:
        raise ValueError(f"expected finite 0 <= lo < hi and iters >= 1, got lo={lo!r}, hi={hi!r}, iters={iters!r}")
    kl = lambda c: kl_from_reference(logits_at(c), reference)
    for _ in range(iters):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        lo, hi = (lo, b) if kl(a) <= kl(b) else (a, hi)
    return (lo + hi) / 2


PATCHING_HOOKS = ["hook_embed", "blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v", "blocks.0.attn.hook_z",
                  "blocks.0.hook_attn_out", "blocks.0.hook_resid_post"]


def patching_by_construction(changed: int, n_ctx: int, hooks: list[str] = PATCHING_HOOKS) -> Float[Tensor, "hook pos"]:
    """For a 1-layer, attention-only model whose answer is read at the last position, and lists that differ at
    position `changed` only: the fraction of the logit difference that patching each hook at each position restores
    *by construction* (0 or 1), NaN where the architecture leaves it open. A hook at a position other than `changed`
    holds the same activation in both runs, except where attention mixes positions (z, attn_out, resid_post at the
    last position); nothing at an earlier position reaches the last position except through its key and value."""
    if not 0 <= changed < n_ctx:
        raise ValueError(f"changed must be a position in 0..{n_ctx - 1}, got {changed!r}")
    unknown = set(hooks) - set(PATCHING_HOOKS)
    if unknown:
        raise ValueError(f"no rule for hooks {sorted(unknown)}; known: {PATCHING_HOOKS}")
    last, out = n_ctx - 1, torch.full((len(hooks), n_ctx), float("nan"))
    for i, name in enumerate(hooks):
        short = name.split(".")[-1]
        for p in range(n_ctx):
            if short == "hook_resid_post":
                out[i, p] = float(p == last)  # the logits read the last position's residual, all of it
            elif short == "hook_embed":
                out[i, p] = float(p == changed)  # the one thing that differs; everything flows from it
            elif short in ("hook_z", "hook_attn_out"):
                if p != last:
                    out[i, p] = 0.0  # an earlier position's head output reaches no later position
                elif changed != last:
                    out[i, p] = 1.0  # the skip connection is the same in both runs: the head carries all
            elif short == "hook_q":
                if p != last or changed != last:
                    out[i, p] = 0.0  # only the last query matters, and its token changed only if changed == last
            elif p != changed:  # hook_k, hook_v: depend on their own position's token only
                out[i, p] = 0.0
    return out


def patch_direct_path(model: nn.Module, corrupt: Int[Tensor, "batch pos"], clean: Int[Tensor, "batch pos"],
                      metric: Callable[[Tensor], Tensor], position: int = -1) -> float:
    """metric(logits) of the corrupt run with only the direct path of the clean run patched in at `position`: the
    clean-minus-corrupt input embedding (`blocks.0.hook_resid_pre`) added to the last block's output residual there,
    so it reaches the unembedding past every block while every block still reads the corrupt input."""
    model = checks.transformer_lens_model(model)
    _tokens(model, corrupt, "corrupt"), _tokens(model, clean, "clean")
    if corrupt.shape != clean.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and corrupt {tuple(corrupt.shape)} must be lists of the same shape")
    first, last = "blocks.0.hook_resid_pre", f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    device = checks.placement(model)[0]
    embedded = {}
    for name, tokens in (("clean", clean), ("corrupt", corrupt)):
        _, cache = model.run_with_cache(tokens.to(device), names_filter=lambda n: n == first)
        embedded[name] = cache[first][:, position]
    delta = embedded["clean"] - embedded["corrupt"]

    def hook(act: Tensor, hook) -> Tensor:
        act = act.clone()
        act[:, position] += delta
        return act
    value = metric(model.run_with_hooks(corrupt.to(device), fwd_hooks=[(last, hook)]))
    if isinstance(value, Tensor) and value.numel() != 1:
        raise ValueError(f"metric must return one number per run, got a tensor of shape {tuple(value.shape)}")
    return float(value)


@torch.no_grad()
def patch_changed_number(model: nn.Module, tokens: Int[Tensor, "batch pos"], position: int, task: str = "median",
                         hooks: list[str] = PATCHING_HOOKS, seed: int = 0) -> tuple[Float[Tensor, "hook pos"], float]:
    """Activation patching on flip pairs: each list (clean) and a copy with the number at `position` redrawn so that
    the answer changes (corrupt; lists that cannot change are dropped). Returns the fraction of the clean-minus-corrupt
    logit difference of the two answers restored by patching each hook at each position, and by patching the direct
    path alone at the last position (`patch_direct_path`)."""
    _check_one_layer(model)
    corrupt = make_flip_pairs(tokens, position, model.cfg.d_vocab, task, seed=seed)
    changed = list_targets(corrupt, task) != list_targets(tokens, task)
    if not changed.any():
        raise ValueError(f"no list of `tokens` can change its {task} at position {position}")
    clean, corrupt = tokens[changed], corrupt[changed]
    a, b, rows = list_targets(clean, task), list_targets(corrupt, task), torch.arange(len(clean))
    logit_diff = lambda lg: (lg[rows, -1, a] - lg[rows, -1, b]).mean()
    _, clean_cache = model.run_with_cache(clean, names_filter=lambda name: name in hooks)
    lo, hi = logit_diff(model(corrupt)), logit_diff(model(clean))
    metric = lambda lg: (logit_diff(lg) - lo) / (hi - lo)
    return (circuits.patch_by_position(model, corrupt, clean_cache, hooks, metric),
            patch_direct_path(model, corrupt, clean, metric))


IDEALISATIONS = ("trained", "uniform attention", "no skip", "tents+column", "tents+bonus", "pure tents, no bias",
                 "all, formula", "all, pure tents", "all, pure tents, s at its mean", "control: tents peaked at shuffled tokens",
                 "control: lookup -c|m - median|")
SLOPE_FREE = ("trained", "uniform attention", "no skip")  # the idealisations without tents: no slope to choose


def idealised_parts(name: str, terms: LastPositionTerms, tokens: Int[Tensor, "batch pos"], c: float, fit: TentFit,
                    bonus_fit: TentFit | None = None, seed: int = 0) -> dict[str, Tensor]:
    """The parts of the last-position `terms` of `tokens` that idealisation `name` (one of `IDEALISATIONS`) replaces,
    as keyword arguments of `assemble_logits`: uniform attention, tents of slope c (with `fit`'s column term or
    without), no output bias, no skip connection; 'tents+bonus' adds `bonus_fit`'s bonus in proportion to c; the
    control peaks every tent at a shuffled token (a fixed permutation drawn from `seed`); 's at its mean' replaces each
    list's final-LayerNorm scale by the mean over `terms`; the lookup control writes -c|m - median| and nothing else
    (it knows the answer, not the list)."""
    if name not in IDEALISATIONS:
        raise ValueError(f"unknown idealisation {name!r}; expected one of {IDEALISATIONS}")
    vocab, n_ctx = terms.ov.shape[-1], terms.pattern.shape[-1]
    uniform, none = torch.full((n_ctx,), 1 / n_ctx), torch.zeros(vocab)
    tents = lambda column=None, peaks=tokens: tent_rows(terms, peaks, c, column)
    if name == "tents+bonus":
        if bonus_fit is None:
            raise ValueError("'tents+bonus' needs bonus_fit, a fit_tent(..., bonus=True)")
        one_hot = torch.nn.functional.one_hot(tokens, vocab) - 1 / vocab
        return dict(ov=tents(bonus_fit.column_residual) + bonus_fit.bonus / bonus_fit.c * c * one_hot)
    if name == "control: lookup -c|m - median|":
        lookup = tent_table(vocab, c=c)[list_targets(tokens)] * terms.scale  # divided by s again in assemble_logits
        return dict(pattern=uniform, ov=lookup[:, None].expand_as(terms.ov), bias=none, direct=none)
    if name == "all, pure tents, s at its mean":
        return dict(pattern=uniform, ov=tents() * (terms.scale / terms.scale.mean())[..., None], bias=none, direct=none)
    if name.startswith("control"):
        shuffled = torch.randperm(vocab, generator=torch.Generator().manual_seed(seed))
        return dict(pattern=uniform, ov=tents(peaks=shuffled[tokens]), bias=none, direct=none)
    return {"trained": lambda: {}, "uniform attention": lambda: dict(pattern=uniform), "no skip": lambda: dict(direct=none),
            "tents+column": lambda: dict(ov=tents(fit.column_residual)), "pure tents, no bias": lambda: dict(ov=tents(), bias=none),
            "all, formula": lambda: dict(pattern=uniform, ov=tents(fit.column_residual), direct=none),
            "all, pure tents": lambda: dict(pattern=uniform, ov=tents(), bias=none, direct=none)}[name]()


def choose_slope(name: str, terms: LastPositionTerms, tokens: Int[Tensor, "batch pos"], fit: TentFit,
                 bonus_fit: TentFit | None = None, *, hi: float | None = None, iters: int = 30) -> float:
    """The slope c in [0, hi] (default 4x the least-squares `fit.c`) for idealisation `name`, chosen on the lists
    `tokens` by `fit_slope`: the c whose spliced logits are closest to the trained ones in KL divergence. Pass
    validation lists, not the lists the result is reported on."""
    reference = assemble_logits(terms)
    at = lambda c: assemble_logits(terms, **idealised_parts(name, terms, tokens, c, fit, bonus_fit))
    return fit_slope(at, reference, 0.0, hi if hi is not None else 4 * fit.c, iters=iters)


def quadratic_table(d_vocab: int) -> Float[Tensor, "d_vocab d_vocab"]:
    """T[x, m] = -(m - x)^2: a row peaked at x whose average over a list peaks at the list's mean, not its median."""
    values = torch.arange(d_vocab, dtype=torch.float32)
    return -(values[None, :] - values[:, None]) ** 2


def fit_shape_r2(table: Float[Tensor, "d_vocab d_vocab"], shape: Float[Tensor, "d_vocab d_vocab"]) -> float:
    """R^2 of the least-squares fit table[x, m] ~ r_x + k shape[x, m], a free offset per row and one factor k."""
    checks.tensor(table, "table", ndim=2), checks.tensor(shape, "shape", ndim=2)
    if table.shape != shape.shape:
        raise ValueError(f"table {tuple(table.shape)} and shape {tuple(shape.shape)} must have the same shape")
    t, f = [(a - a.mean(1, keepdim=True)).double() for a in (table, shape)]
    k = (t * f).sum() / (f * f).sum()
    return float(1 - (t - k * f).pow(2).sum() / t.pow(2).sum())


def get_output_bias(model: nn.Module) -> Float[Tensor, "d_vocab_out"]:
    """The logits' constant part, ln_final.b W_U + b_U (what `get_last_position_terms` calls bias)."""
    _check_one_layer(model)
    return model.b_U + (model.ln_final.b @ model.W_U if model.cfg.normalization_type == "LN" else 0)


def bias_shape(bias: Float[Tensor, "d_vocab"], fit: TentFit) -> dict[str, float]:
    """Correlation of the output bias with the tent fit's column residual and with a plain U, (m - centre)^2:
    the second is the control any U-shaped bias matches."""
    checks.tensor(bias, "bias", ndim=1)
    m = torch.arange(len(bias), dtype=torch.float32)
    corr = lambda a: round(torch.corrcoef(torch.stack([bias.float(), a.float()]))[0, 1].item(), 3)
    return {"corr_column_residual": corr(fit.column_residual), "corr_quadratic": corr((m - m.mean()) ** 2)}


def slope_attention_evening(slopes: Float[Tensor, "d_vocab"], key_score: Float[Tensor, "d_vocab"], *,
                            n_shuffles: int = 2000, seed: int = 0) -> dict[str, float]:
    """Does the attention even out the tents' steepness? Relative spread (std / mean) of the slopes and of slope x
    exp(key score), their correlation, and the share of `n_shuffles` shuffles of the key scores over tokens whose
    product spreads as little as the real one (the control: attention unrelated to steepness)."""
    checks.tensor(slopes, "slopes", ndim=1), checks.tensor(key_score, "key_score", ndim=1)
    if slopes.shape != key_score.shape or n_shuffles < 1:
        raise ValueError(f"expected slopes and key_score of one shape and n_shuffles >= 1, got {tuple(slopes.shape)}, "
                         f"{tuple(key_score.shape)}, {n_shuffles}")
    spread = lambda t: (t.std() / t.mean()).item()
    weight, g = key_score.exp(), torch.Generator().manual_seed(seed)
    observed = spread(slopes * weight)
    shuffled = [spread(slopes * weight[torch.randperm(len(weight), generator=g)]) for _ in range(n_shuffles)]
    return {"corr_slope_key_score": round(torch.corrcoef(torch.stack([slopes, key_score]))[0, 1].item(), 3),
            "slope_spread": round(spread(slopes), 3), "slope_times_attention_spread": round(observed, 3),
            "shuffles_spreading_as_little": sum(v <= observed for v in shuffled) / n_shuffles}


@torch.no_grad()
def width_summary(model: nn.Module, tokens: Int[Tensor, "batch pos"], val_tokens: Int[Tensor, "batch pos"],
                  family_tokens: Int[Tensor, "batch pos"], seed: int = 0) -> dict:
    """Notebook 03's measurements for one median model: accuracy and attention entropy on `tokens`; the tent fit of
    its OV table against a quadratic; its own tents put into it, alone and with every part idealised, beside the
    lookup control (slopes chosen on `val_tokens`); the bias's shape; whether attention evens out the slopes; and
    accuracy on `family_tokens` with its own and with uniform attention."""
    medians = list_targets(tokens)
    logits, cache = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_pattern")
    table = circuits.get_ov_table(model)[:, :-1].mean(1)
    fit = fit_tent(table)
    terms, val_terms = get_last_position_terms(model, tokens), get_last_position_terms(model, val_tokens)
    fits = {}
    for kind in ("tents+column", "all, pure tents", "control: lookup -c|m - median|"):
        c = choose_slope(kind, val_terms, val_tokens, fit)
        spliced = assemble_logits(terms, **idealised_parts(kind, terms, tokens, c, fit, seed=seed))
        fits[kind] = logit_fit(spliced, logits[:, -1], medians) | {"c": c}
    family_medians, uniform = list_targets(family_tokens), circuits.uniform_causal_pattern(model.cfg.n_ctx)
    family = lambda hooks: round((circuits.predict_last(model, family_tokens, hooks) == family_medians).float().mean().item(), 4)
    together, lookup = fits["all, pure tents"], fits["control: lookup -c|m - median|"]
    return {"accuracy": round((logits[:, -1].argmax(-1) == medians).float().mean().item(), 4),
            "attention_entropy_last_pos": round(circuits.get_attention_entropy(cache["blocks.0.attn.hook_pattern"][:, 0, -1]).mean().item(), 4),
            "ov_fit_r2": round(fit.r2, 3), "quadratic_fit_r2": round(fit_shape_r2(table, quadratic_table(len(table))), 3),
            "least_squares_c": round(fit.c, 1), "tents_alone_c": round(fits["tents+column"]["c"], 1),
            "tents_alone_accuracy": round(fits["tents+column"]["accuracy"], 4), "tents_alone_kl": round(fits["tents+column"]["kl"], 4),
            "all_idealised_c": round(together["c"], 1), "all_idealised_kl": round(together["kl"], 4),
            "all_idealised_logit_r2": round(together["logit_r2"], 3), "all_idealised_margin_kept": round(together["margin_kept"], 3),
            "lookup_kl": round(lookup["kl"], 4), "lookup_logit_r2": round(lookup["logit_r2"], 3),
            "bias": bias_shape(get_output_bias(model), fit),
            "slope_vs_attention": slope_attention_evening(get_local_slopes(table), circuits.get_qk_table(model).mean((0, 2)), seed=seed),
            "family_accuracy": family([]), "family_accuracy_uniform_attention": family(circuits.set_pattern_hooks(uniform))}
