"""The list generator of the Find-Median task: deterministic, correct medians, honest families, clear errors."""
import numpy as np
import pytest
import torch

from glassbox import data

SHAPES = [(7, 50), (3, 2), (5, 3), (9, 100), (11, 7)]


@pytest.mark.parametrize("family", list(data.FAMILIES))
def test_same_seed_same_lists_other_seed_other_lists(family):
    a = data.make_lists(500, family=family, seed=3)
    assert torch.equal(a, data.make_lists(500, family=family, seed=3)), f"{family}: the same seed must give the same lists"
    assert not torch.equal(a, data.make_lists(500, family=family, seed=4)), f"{family}: another seed gave the same lists"
    assert a.dtype == torch.int64 and a.shape == (500, 7)


@pytest.mark.parametrize("length,vocab", SHAPES)
@pytest.mark.parametrize("family", list(data.FAMILIES))
def test_medians_agree_with_numpy_and_values_stay_in_the_vocabulary(family, length, vocab):
    tokens, medians = data.make_median_data(400, length=length, vocab=vocab, family=family, seed=1)
    assert tokens.shape == (400, length) and medians.shape == (400,)
    assert tokens.min() >= 0 and tokens.max() < vocab, f"{family} made values outside 0..{vocab - 1}"
    expected = np.median(tokens.numpy(), axis=1)
    assert np.array_equal(medians.numpy(), expected), "the median must be the middle of the sorted list"


def test_min_targets_agree_with_numpy():
    tokens = data.make_lists(300, family="uniform", seed=2)
    assert np.array_equal(data.list_targets(tokens, "min").numpy(), tokens.numpy().min(axis=1))


def test_families_are_what_their_names_say():
    n, v = 2000, 50
    get = lambda f: data.make_lists(n, vocab=v, family=f, seed=5)
    med = lambda t: data.list_targets(t)
    assert (get("all_equal") == get("all_equal")[:, :1]).all()
    assert set(med(get("median_at_edge")).unique().tolist()) == {0, v - 1}
    s = get("sorted")
    assert (s.diff(dim=1) >= 0).all() and (get("descending").diff(dim=1) <= 0).all()
    c = get("consecutive").sort(dim=1).values
    assert (c.diff(dim=1) == 1).all(), "consecutive lists must be runs a, a+1, ..., a+6"
    assert (get("few_distinct").sort(dim=1).values.diff(dim=1) != 0).sum(dim=1).max() <= 2, "at most 3 distinct values"
    counts = torch.bincount(med(get("any_median")), minlength=v)
    assert counts.min() > 0.3 * n / v, f"any_median must spread medians over 0..{v - 1}, smallest count {counts.min()}"
    e = get("ends_and_middle")
    assert ((e < 5) | (e >= v - 5)).sum(dim=1).min() >= 6, "ends_and_middle: all but one value in the end bands"


def test_training_mixture_never_draws_a_held_out_family():
    assert set(data.TRAIN_WEIGHTS) <= set(data.TRAIN_FAMILIES)
    assert not set(data.TRAIN_FAMILIES) & set(data.HELD_OUT_FAMILIES)
    assert len(data.HELD_OUT_FAMILIES) >= 4, "evaluate on several families the model never trained on"


def test_mixture_follows_its_weights_and_batches_are_fresh():
    tokens, family = data.make_mixture(20_000, {"uniform": 3, "all_equal": 1}, seed=0)
    assert tokens.shape == (20_000, 7) and abs(family.float().mean().item() - 0.25) < 0.02
    assert (tokens[family == 1] == tokens[family == 1][:, :1]).all(), "family index must match the lists it labels"
    batches = data.list_batches(64, {"uniform": 1}, task="min", seed=1)
    (x1, y1), (x2, y2) = next(batches), next(batches)
    assert not torch.equal(x1, x2), "every batch must hold new lists"
    assert torch.equal(y1, x1.min(dim=1).values)
    again = next(data.list_batches(64, {"uniform": 1}, task="min", seed=1))[0]
    assert torch.equal(x1, again), "the batch stream must be reproducible from its seed"


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(length=6), ValueError, r"length must be odd.*got 6.*use 5 or 7"),
    (dict(length=1), ValueError, r"length must be >= 3, got 1"),
    (dict(vocab=1), ValueError, r"vocab must be >= 2, got 1"),
    (dict(length=7.0), TypeError, r"length must be an int, got 7.0 \(float\)"),
    (dict(vocab="50"), TypeError, r"vocab must be an int, got '50' \(str\)"),
    (dict(seed=True), TypeError, r"seed must be an int, got True \(bool\)"),
    (dict(n=10.5), TypeError, r"n must be an int"),
    (dict(n=-1), ValueError, r"n must be >= 0"),
    (dict(family="gaussian"), KeyError, r"unknown list family 'gaussian'; families: uniform, any_median"),
])
def test_bad_arguments_say_what_was_expected(kwargs, error, match):
    args = dict(n=10) | kwargs
    with pytest.raises(error, match=match):
        data.make_lists(args.pop("n"), **args)


def test_bad_tokens_and_weights_say_what_to_do():
    with pytest.raises(TypeError, match=r"integer torch tensor.*got torch.float32.*\.long\(\)"):
        data.list_targets(torch.rand(4, 7))
    with pytest.raises(TypeError, match="integer torch tensor"):
        data.list_targets(np.zeros((4, 7), dtype=int))
    with pytest.raises(ValueError, match=r"shape \(batch, length\), got \(7,\)"):
        data.list_targets(torch.arange(7))
    with pytest.raises(ValueError, match="length must be odd"):
        data.list_targets(torch.zeros(4, 6, dtype=torch.long))
    with pytest.raises(KeyError, match="unknown task 'max'; tasks: median, min"):
        data.list_targets(torch.zeros(4, 7, dtype=torch.long), "max")
    with pytest.raises(ValueError, match="weights must map family names"):
        data.make_mixture(10, {"uniform": 1, "nope": 1})
    with pytest.raises(ValueError, match="non-negative"):
        data.make_mixture(10, {"uniform": -1})
