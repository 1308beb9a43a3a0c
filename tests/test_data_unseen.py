"""data.multiset_keys / seen_multisets / unseen / make_test_lists and training.unseen_accuracy: which lists a
model trained on a stream has seen, order ignored, and the families kept for a final test."""
import numpy as np
import pytest
import torch

from glassbox import data, models, training


def test_multiset_keys_ignore_order_and_tell_multisets_apart():
    a = torch.tensor([[3, 1, 2], [2, 3, 1], [1, 1, 2], [1, 2, 2], [0, 0, 0]])
    k = data.multiset_keys(a, vocab=4)
    assert k[0] == k[1], "the same values in another order must give the same key"
    assert len({int(k[0]), int(k[2]), int(k[3]), int(k[4])}) == 4, "different multisets must give different keys"
    assert int(k[0]) == 1 * 16 + 2 * 4 + 3, "the sorted list read as a base-vocab number"
    with pytest.raises(ValueError, match="0..3"):
        data.multiset_keys(torch.tensor([[4, 0, 1]]), vocab=4)


def test_seen_multisets_replays_exactly_the_training_stream():
    stream = data.list_batches(32, data.TRAIN_WEIGHTS, seed=3)
    batches = [next(stream)[0] for _ in range(5)]
    seen = data.seen_multisets(5, 32, data.TRAIN_WEIGHTS, seed=3)
    expected = np.unique(data.multiset_keys(torch.cat(batches)).numpy())
    assert np.array_equal(seen, expected), "seen_multisets must hold the keys of the first `steps` batches, no more"
    later = next(stream)[0]
    assert not data.unseen(torch.cat(batches), seen).any(), "every trained list counts as seen"
    assert data.unseen(later, seen).sum() > 0, "a later batch holds lists the first five did not"
    shuffled = torch.stack([b[torch.randperm(7, generator=torch.Generator().manual_seed(0))] for b in batches[0]])
    assert not data.unseen(shuffled, seen).any(), "a seen list in another order is seen"


def test_test_families_are_new_and_valid():
    assert not set(data.TEST_FAMILIES) & set(data.FAMILIES)
    for f in data.TEST_FAMILIES:
        x = data.make_test_lists(500, family=f, seed=1)
        assert x.shape == (500, 7) and x.min() >= 0 and x.max() <= 49, f
        assert torch.equal(x, data.make_test_lists(500, family=f, seed=1)), "same seed, same lists"
    two = data.make_test_lists(500, family="two_clusters", seed=1).sort(1).values
    assert ((two[:, 3:] - two[:, 3:4]).abs().max(1).values <= 4).float().mean() > 0.2, "clusters are tight"
    window = data.make_test_lists(500, family="window", seed=1)
    spread = window.max(1).values - window.min(1).values
    assert spread.max() <= 29 and spread.float().mean() > 5, "values inside a window at most 30 wide"
    with pytest.raises(KeyError, match="test families"):
        data.make_test_lists(10, family="uniform")


def test_unseen_accuracy_counts_only_new_lists():
    model = models.build("attn_only_transformer", {"d_model": 16, "d_head": 16, "seed": 0}).eval()
    x = data.make_lists(200, seed=5)
    seen = np.unique(data.multiset_keys(x[:150]).numpy())
    out = training.unseen_accuracy(model, x, seen)
    assert out["n"] == 200 and out["unseen"] == int(data.unseen(x, seen).sum()) <= 50
    net = models.LastPosition(model)
    kept = x[data.unseen(x, seen)]
    assert out["accuracy"] == pytest.approx(training.accuracy(net, kept, data.list_targets(kept)))
    assert training.unseen_accuracy(model, x[:150], seen) == {"n": 150, "unseen": 0, "accuracy": None}
