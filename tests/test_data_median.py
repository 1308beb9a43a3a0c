"""The list generator of the Find-Median task: deterministic, correct medians, honest families, clear errors."""
import numpy as np
import pytest
import torch

from glassbox.studies import find_median, mnist_mlp

SHAPES = [(7, 50), (3, 2), (5, 3), (9, 100), (11, 7)]


@pytest.mark.parametrize("family", list(find_median.FAMILIES))
def test_same_seed_same_lists_other_seed_other_lists(family):
    a = find_median.make_lists(500, family=family, seed=3)
    assert torch.equal(a, find_median.make_lists(500, family=family, seed=3)), f"{family}: the same seed must give the same lists"
    assert not torch.equal(a, find_median.make_lists(500, family=family, seed=4)), f"{family}: another seed gave the same lists"
    assert a.dtype == torch.int64 and a.shape == (500, 7)


@pytest.mark.parametrize("length,vocab", SHAPES)
@pytest.mark.parametrize("family", list(find_median.FAMILIES))
def test_medians_agree_with_numpy_and_values_stay_in_the_vocabulary(family, length, vocab):
    if family in ("consecutive", "spaced") and vocab < length:
        with pytest.raises(ValueError, match=f"needs vocab >= length.*vocab={vocab}, length={length}"):
            find_median.make_lists(10, length=length, vocab=vocab, family=family)
        return
    tokens, medians = find_median.make_median_data(400, length=length, vocab=vocab, family=family, seed=1)
    assert tokens.shape == (400, length) and medians.shape == (400,)
    assert tokens.min() >= 0 and tokens.max() < vocab, f"{family} made values outside 0..{vocab - 1}"
    expected = np.median(tokens.numpy(), axis=1)
    assert np.array_equal(medians.numpy(), expected), "the median must be the middle of the sorted list"


def test_min_targets_agree_with_numpy():
    tokens = find_median.make_lists(300, family="uniform", seed=2)
    assert np.array_equal(find_median.list_targets(tokens, "min").numpy(), tokens.numpy().min(axis=1))


def test_families_are_what_their_names_say():
    n, v = 2000, 50
    get = lambda f: find_median.make_lists(n, vocab=v, family=f, seed=5)
    med = lambda t: find_median.list_targets(t)
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
    assert set(find_median.TRAIN_WEIGHTS) <= set(find_median.TRAIN_FAMILIES)
    assert not set(find_median.TRAIN_FAMILIES) & set(find_median.HELD_OUT_FAMILIES)
    assert len(find_median.HELD_OUT_FAMILIES) >= 4, "evaluate on several families the model never trained on"


def test_mixture_follows_its_weights_and_batches_are_fresh():
    tokens, family = find_median.make_mixture(20_000, {"uniform": 3, "all_equal": 1}, seed=0)
    assert tokens.shape == (20_000, 7) and abs(family.float().mean().item() - 0.25) < 0.02
    assert (tokens[family == 1] == tokens[family == 1][:, :1]).all(), "family index must match the lists it labels"
    batches = find_median.list_batches(64, {"uniform": 1}, task="min", seed=1)
    (x1, y1), (x2, y2) = next(batches), next(batches)
    assert not torch.equal(x1, x2), "every batch must hold new lists"
    assert torch.equal(y1, x1.min(dim=1).values)
    again = next(find_median.list_batches(64, {"uniform": 1}, task="min", seed=1))[0]
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
        find_median.make_lists(args.pop("n"), **args)


def test_bad_tokens_and_weights_say_what_to_do():
    with pytest.raises(TypeError, match=r"integer torch tensor.*got torch.float32.*\.long\(\)"):
        find_median.list_targets(torch.rand(4, 7))
    with pytest.raises(TypeError, match="integer torch tensor"):
        find_median.list_targets(np.zeros((4, 7), dtype=int))
    with pytest.raises(ValueError, match=r"shape \(batch, length\), got \(7,\)"):
        find_median.list_targets(torch.arange(7))
    with pytest.raises(ValueError, match="length must be odd"):
        find_median.list_targets(torch.zeros(4, 6, dtype=torch.long))
    with pytest.raises(KeyError, match="unknown task 'max'; tasks: median, min"):
        find_median.list_targets(torch.zeros(4, 7, dtype=torch.long), "max")
    with pytest.raises(ValueError, match="weights must map family names"):
        find_median.make_mixture(10, {"uniform": 1, "nope": 1})
    with pytest.raises(ValueError, match="non-negative"):
        find_median.make_mixture(10, {"uniform": -1})


def test_each_family_reaches_the_edges_of_what_its_name_allows():
    n, v, L = 3000, 30, 7
    get = lambda f: find_median.make_lists(n, length=L, vocab=v, family=f, seed=7)
    u = get("uniform")
    assert u.min() == 0 and u.max() == v - 1, "uniform values cover 0..vocab-1"
    c = get("consecutive").sort(dim=1).values
    assert c[:, 0].min() == 0 and c[:, -1].max() == v - 1, "runs may start at 0 and end at vocab-1"
    s = get("spaced").sort(dim=1).values
    steps = s.diff(dim=1)
    assert (steps == steps[:, :1]).all() and steps.min() >= 1, "spaced lists are arithmetic progressions"
    assert steps.max() == (v - 1) // (L - 1) and s.max() == v - 1, "the widest step that fits is used, up to vocab-1"
    assert steps.min() == 1 and s.min() == 0, "steps from 1, starts from 0"
    nr = get("narrow")
    spread = nr.max(1).values - nr.min(1).values
    assert spread.max() == 7 and (spread == 0).float().mean() < 0.05, "narrow: all values inside a window of width 2..8"
    assert nr.min() == 0 and nr.max() == v - 1
    o = get("outlier").sort(dim=1).values
    at_end = (o[:, 0] == 0) | (o[:, -1] == v - 1)
    rest_spread = torch.minimum(o[:, -1] - o[:, 1], o[:, -2] - o[:, 0])  # without the low or the high end value
    assert at_end.all() and rest_spread.max() <= 7, "one value at an end, the rest narrow"
    assert 0.4 < (o[:, 0] == 0).float().mean() < 0.6, "the outlier sits at 0 or vocab-1, each half the time"
    t = get("two_ends")
    assert ((t < v // 10) | (t >= v - v // 10)).all() and (t == 0).any() and (t == v - 1).any()
    assert ((t > 0) & (t < v // 10)).any() and (t == v // 10 - 1).any(), "bands are 1..vocab//10 wide"
    assert ((t < v - 1) & (t >= v - v // 10)).any() and (t == v - v // 10).any(), "at the top end too"
    eq = get("all_equal")
    assert eq.min() == 0 and eq.max() == v - 1
    p = get("pairs")
    odd = torch.stack([torch.bincount(row, minlength=v) % 2 for row in p]).sum(1)
    assert (odd == 1).all() and p.min() == 0 and p.max() == v - 1, "pairs: every value an even number of times but one"
    fd = get("few_distinct").sort(dim=1).values
    distinct = (fd.diff(dim=1) != 0).sum(1) + 1
    assert set(distinct.tolist()) == {1, 2, 3}, "two or three values drawn (which may coincide)"
    assert (distinct == 1).float().mean() < 0.1 and (distinct == 2).float().mean() > 0.25 and fd.min() == 0
    g = get("clipped_gaussian")
    assert (g == 0).float().mean() > 0.05 and (g == v - 1).float().mean() > 0.05, "clipping piles values at the ends"
    e = get("median_at_edge")
    at_edge = torch.stack([(e == 0).sum(1), (e == v - 1).sum(1)]).max(0).values
    assert at_edge.min() == L // 2 + 1 and (at_edge == L).any(), "a majority (up to all) of each list sits at one end"
    a = get("any_median")
    m = find_median.list_targets(a)
    assert ((a <= m[:, None]).sum(1) >= L // 2 + 1).all() and m.min() == 0 and m.max() == v - 1


def test_median_data_mixture_and_batches_pass_their_arguments_on():
    tokens, medians = find_median.make_median_data(50, length=5, vocab=12, family="sorted", seed=9)
    assert torch.equal(tokens, find_median.make_lists(50, length=5, vocab=12, family="sorted", seed=9))
    assert torch.equal(medians, tokens[:, 2]), "sorted lists: the median is the middle column"
    mix, fam = find_median.make_mixture(300, {"uniform": 1, "sorted": 1}, length=5, vocab=12, seed=2)
    assert mix.shape == (300, 5) and mix.max() == 11, "length and vocab reach every family"
    assert (mix[fam == 1].diff(dim=1) >= 0).all() and not (mix[fam == 0].diff(dim=1) >= 0).all()
    again, _ = find_median.make_mixture(300, {"uniform": 1, "sorted": 1}, length=5, vocab=12, seed=2)
    assert torch.equal(mix, again) and not torch.equal(mix, find_median.make_mixture(300, {"uniform": 1, "sorted": 1},
                                                                                length=5, vocab=12, seed=3)[0])
    x, y = next(find_median.list_batches(40, {"uniform": 1}, length=9, vocab=20, seed=0))
    assert not torch.equal(x, next(find_median.list_batches(40, {"uniform": 1}, length=9, vocab=20, seed=1))[0]), "seed is used"
    with pytest.raises(ValueError, match="n must be >= 0"):
        find_median.make_mixture(-1, {"uniform": 1})
    with pytest.raises(TypeError, match="n must be an int"):
        find_median.make_mixture(2.5, {"uniform": 1})
    assert x.shape == (40, 9) and x.max() < 20 and torch.equal(y, x.sort(dim=1).values[:, 4]), "median task by default"


def test_list_targets_on_hand_made_lists():
    tokens = torch.tensor([[5, 1, 9], [2, 2, 0], [7, 3, 3]])
    assert find_median.list_targets(tokens).tolist() == [5, 2, 3]
    assert find_median.list_targets(tokens, "min").tolist() == [1, 0, 3]
    assert find_median.list_targets(tokens.to(torch.int32)).tolist() == [5, 2, 3]
    assert find_median.list_targets(torch.tensor([[4, 0, 3, 1, 2]])).tolist() == [2]


def test_boundaries_of_the_arguments():
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        find_median.make_lists(5, seed=-1)
    assert find_median.make_lists(5, length=7, vocab=7, family="consecutive").sort(dim=1).values[0].tolist() == list(range(7)), \
        "vocab == length is enough for a run of consecutive values"
    assert find_median.make_mixture(0, {"uniform": 1})[0].shape == (0, 7), "n = 0 is allowed"
    tokens, fam = find_median.make_mixture(50, {"uniform": 1, "sorted": 0}, seed=1)
    assert (fam == 0).all(), "a family of weight 0 is allowed and never drawn"
    with pytest.raises(ValueError, match="at least one positive"):
        find_median.make_mixture(10, {"uniform": 0})
    for weights in ({"uniform": 1, "sorted": -1}, {"uniform": 1, "sorted": -0.5}):
        with pytest.raises(ValueError, match="non-negative"):
            find_median.make_mixture(10, weights)


def test_mixture_lists_come_from_the_seed_not_only_their_order():
    a, _ = find_median.make_mixture(40, {"uniform": 1}, seed=1)
    b, _ = find_median.make_mixture(40, {"uniform": 1}, seed=2)
    assert set(map(tuple, a.tolist())) != set(map(tuple, b.tolist())), "another seed must draw other lists, not reshuffle"


def test_load_mnist_scales_pixels_to_exactly_0_1():
    m = mnist_mlp.load_mnist()
    assert m.x_train.dtype == torch.float32 and m.y_train.dtype == torch.int64
    assert m.x_train.shape == (60000, 28, 28) and m.x_test.shape == (10000, 28, 28)
    assert (m.x_train.min(), m.x_train.max(), m.x_test.max()) == (0.0, 1.0, 1.0), "pixels / 255: black 0, white exactly 1"
    assert m.x_train.mean().item() == pytest.approx(0.1307, abs=1e-4), "the pixel mean MLPConfig normalises with"
    assert sorted(m.y_test.unique().tolist()) == list(range(10))
