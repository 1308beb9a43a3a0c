"""find_median.multiset_keys / seen_multisets / unseen / make_test_lists and find_median.unseen_accuracy: which lists a
model trained on a stream has seen, order ignored, and the families kept for a final test."""
import numpy as np
import pytest
import torch

from glassbox import training
from glassbox.studies import find_median, models


def test_multiset_keys_ignore_order_and_tell_multisets_apart():
    a = torch.tensor([[3, 1, 2], [2, 3, 1], [1, 1, 2], [1, 2, 2], [0, 0, 0]])
    k = find_median.multiset_keys(a, vocab=4)
    assert k[0] == k[1], "the same values in another order must give the same key"
    assert len({int(k[0]), int(k[2]), int(k[3]), int(k[4])}) == 4, "different multisets must give different keys"
    assert int(k[0]) == 1 * 16 + 2 * 4 + 3, "the sorted list read as a base-vocab number"
    with pytest.raises(ValueError, match="0..3"):
        find_median.multiset_keys(torch.tensor([[4, 0, 1]]), vocab=4)


def test_seen_multisets_replays_exactly_the_training_stream():
    stream = find_median.list_batches(32, find_median.TRAIN_WEIGHTS, seed=3)
    batches = [next(stream)[0] for _ in range(5)]
    seen = find_median.seen_multisets(5, 32, find_median.TRAIN_WEIGHTS, seed=3)
    expected = np.unique(find_median.multiset_keys(torch.cat(batches)).numpy())
    assert np.array_equal(seen, expected), "seen_multisets must hold the keys of the first `steps` batches, no more"
    later = next(stream)[0]
    assert not find_median.unseen(torch.cat(batches), seen).any(), "every trained list counts as seen"
    assert find_median.unseen(later, seen).sum() > 0, "a later batch holds lists the first five did not"
    shuffled = torch.stack([b[torch.randperm(7, generator=torch.Generator().manual_seed(0))] for b in batches[0]])
    assert not find_median.unseen(shuffled, seen).any(), "a seen list in another order is seen"


def test_test_families_are_new_and_valid():
    assert not set(find_median.TEST_FAMILIES) & set(find_median.FAMILIES)
    for f in find_median.TEST_FAMILIES:
        x = find_median.make_test_lists(500, family=f, seed=1)
        assert x.shape == (500, 7) and x.min() >= 0 and x.max() <= 49, f
        assert torch.equal(x, find_median.make_test_lists(500, family=f, seed=1)), "same seed, same lists"
    two = find_median.make_test_lists(500, family="two_clusters", seed=1).sort(1).values
    assert ((two[:, 3:] - two[:, 3:4]).abs().max(1).values <= 4).float().mean() > 0.2, "clusters are tight"
    window = find_median.make_test_lists(500, family="window", seed=1)
    spread = window.max(1).values - window.min(1).values
    assert spread.max() <= 29 and spread.float().mean() > 5, "values inside a window at most 30 wide"
    with pytest.raises(KeyError, match="test families"):
        find_median.make_test_lists(10, family="uniform")


def test_unseen_accuracy_counts_only_new_lists():
    model = models.build("attn_only_transformer", {"d_model": 16, "d_head": 16, "seed": 0}).eval()
    x = find_median.make_lists(200, seed=5)
    seen = np.unique(find_median.multiset_keys(x[:150]).numpy())
    out = find_median.unseen_accuracy(model, x, seen)
    assert out["n"] == 200 and out["unseen"] == int(find_median.unseen(x, seen).sum()) <= 50
    net = models.LastPosition(model)
    kept = x[find_median.unseen(x, seen)]
    assert out["accuracy"] == pytest.approx(training.accuracy(net, kept, find_median.list_targets(kept)))
    assert find_median.unseen_accuracy(model, x[:150], seen) == {"n": 150, "unseen": 0, "accuracy": None}
