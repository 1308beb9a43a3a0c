"""Data sets of the journal: MNIST from data/mnist.npz (offline, checksummed), and seeded lists of
integers with their median or minimum (the Find-Median task of notebook 02)."""
import hashlib
import itertools
from collections.abc import Iterator
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
