"""Unit tests of glassbox.studies.pruning on a model glassbox did not build (tiny_cnn)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glassbox import hooks, training
from glassbox.studies import pruning


@pytest.fixture
def data(tiny_cnn):
    torch.manual_seed(1)
    x = torch.rand(300, 784)
    y = training.predict(tiny_cnn, x).argmax(-1)  # the model's own answers: base accuracy 1
    y[::5] = torch.randint(0, 10, (60,))  # and some wrong labels, so the loss is not ~0
    return x, y


def delete_head_neurons(model, keep):
    """tiny_cnn with hidden units of its head not in `keep` deleted from the weights (a smaller network)."""
    fc_in, fc_out = model.head[1], model.head[3]
    small_in, small_out = nn.Linear(fc_in.in_features, len(keep)), nn.Linear(len(keep), fc_out.out_features)
    with torch.no_grad():
        small_in.weight.copy_(fc_in.weight[keep]), small_in.bias.copy_(fc_in.bias[keep])
        small_out.weight.copy_(fc_out.weight[:, keep]), small_out.bias.copy_(fc_out.bias)
    return lambda x: small_out(F.relu(small_in(model.features(x.reshape(len(x), 1, 28, 28)).flatten(1))))


def test_remove_equals_deleting_the_neurons_weights(tiny_cnn, data):
    x, _ = data
    removed = [0, 5, 9, 15]
    keep = [i for i in range(16) if i not in removed]
    with pruning.remove(tiny_cnn, {"head.2": torch.tensor(removed)}):
        got = tiny_cnn(x)
    assert torch.allclose(got, delete_head_neurons(tiny_cnn, keep)(x), atol=1e-5), \
        "removing a neuron must compute what the network computes with its weights deleted (set to 0, not to its mean)"
    assert not tiny_cnn.head[2]._forward_hooks, "remove left a hook behind"


def test_remove_several_layers_at_once(tiny_cnn, data):
    x, _ = data
    with pruning.remove(tiny_cnn, {"features.1": [1], "head.2": [3]}), hooks.capture(tiny_cnn, ["features.1", "head.2"]) as acts:
        tiny_cnn(x)
    assert (acts["features.1"][:, 1] == 0).all() and (acts["head.2"][:, 3] == 0).all(), "every listed layer must be pruned"
    assert (acts["features.1"][:, 0] != 0).any(), "only the listed channels may be zeroed"


def test_ablation_scores_are_the_loss_gained_by_removing_each_neuron(tiny_cnn, data):
    x, y = data
    scores = pruning.ablation_scores(tiny_cnn, "head.2", x, y, batch_size=64)
    assert scores.shape == (16,)
    base = F.cross_entropy(tiny_cnn(x), y)
    for j in (2, 11):
        with pruning.remove(tiny_cnn, {"head.2": [j]}):
            expected = F.cross_entropy(tiny_cnn(x), y) - base
        assert scores[j].item() == pytest.approx(expected.item(), abs=1e-5), f"score of neuron {j} is not its loss increase"
    assert pruning.ablation_scores(tiny_cnn, "features.1", x, y).shape == (4,), "conv channels are neurons too"


def test_attribution_scores_match_activation_times_gradient(tiny_cnn, data):
    x, y = data
    with hooks.capture(tiny_cnn, ["features.1", "head.2"], detach=False) as acts:
        loss = F.cross_entropy(tiny_cnn(x), y, reduction="sum")  # sum: per-input gradients
    a_conv, a_fc = acts["features.1"], acts["head.2"]
    g_conv, g_fc = torch.autograd.grad(loss, [a_conv, a_fc])
    fc = pruning.attribution_scores(tiny_cnn, "head.2", x, y, batch_size=70)
    assert torch.allclose(fc, (a_fc * g_fc).abs().mean(0), atol=1e-6), "mean over inputs of |a * dloss/da| expected"
    conv = pruning.attribution_scores(tiny_cnn, "features.1", x, y)
    assert torch.allclose(conv, (a_conv * g_conv).flatten(2).sum(-1).abs().mean(0), atol=1e-6), \
        "a channel's score sums a * dloss/da over its positions before the absolute value"


def test_magnitude_scores_are_incoming_weight_norms(tiny_cnn):
    assert torch.allclose(pruning.magnitude_scores(tiny_cnn, "head.1"), tiny_cnn.head[1].weight.norm(dim=1))
    conv = pruning.magnitude_scores(tiny_cnn, "features.0")
    assert conv.shape == (4,) and torch.allclose(conv[2], tiny_cnn.features[0].weight[2].norm())
    with pytest.raises(TypeError, match="Linear or Conv layer that feeds"):
        pruning.magnitude_scores(tiny_cnn, "head.2")


def test_score_neurons_dispatches_and_refuses_unknown_methods(tiny_cnn, data):
    x, y = data
    layers = {"features.1": "features.0", "head.2": "head.1"}
    for method in pruning.METHODS:
        s = pruning.score_neurons(tiny_cnn, method, layers, x, y, seed=3)
        assert {k: v.shape for k, v in s.items()} == {"features.1": (4,), "head.2": (16,)}, method
    r1, r2 = (pruning.score_neurons(tiny_cnn, "random", layers, x, y, seed=s)["head.2"] for s in (3, 4))
    assert not torch.equal(r1, r2), "the random order must change with the seed"
    assert torch.equal(r1, pruning.score_neurons(tiny_cnn, "random", layers, x, y, seed=3)["head.2"]), "and be reproducible"
    with pytest.raises(ValueError, match="unknown scoring method 'taylor'.*ablation"):
        pruning.score_neurons(tiny_cnn, "taylor", layers, x, y)


def test_lowest_takes_the_same_fraction_of_every_layer():
    scores = {"a": torch.tensor([5.0, 1, 3, 2]), "b": torch.arange(10.0).flip(0)}
    got = pruning.lowest(scores, 0.5)
    assert set(got["a"].tolist()) == {1, 3}, "the lowest scores go first"
    assert set(got["b"].tolist()) == {5, 6, 7, 8, 9}
    assert [len(v) for v in pruning.lowest(scores, 0.0).values()] == [0, 0]
    with pytest.raises(ValueError, match=r"in \[0, 1\].*got 1.5"):
        pruning.lowest(scores, 1.5)


def test_accuracy_curve_and_removable_fraction_agree(tiny_cnn, data):
    x, y = data
    scores = pruning.score_neurons(tiny_cnn, "magnitude", {"head.2": "head.1"}, x, y)
    fractions = [0.0, 0.25, 0.5, 0.75, 1.0]
    curve = pruning.accuracy_curve(tiny_cnn, scores, fractions, x, y)
    assert curve[0] == pytest.approx(training.accuracy(tiny_cnn, x, y)), "removing nothing must give the model's accuracy"
    constant = tiny_cnn.head[3].bias.argmax()  # every hidden unit removed: the output is the last bias
    assert curve[-1] == pytest.approx((y == constant).float().mean().item()), "removing everything leaves the bias only"
    for tol in (0.0, 0.05, 0.2, 1.0):
        expected = pruning.largest_fraction_within(fractions, curve, curve[0].item(), tol)
        assert pruning.removable_fraction(tiny_cnn, scores, fractions, x, y, tol) == expected, f"tolerance {tol}"


def test_largest_fraction_within_stops_at_the_first_failure():
    fractions = [0.0, 0.1, 0.2, 0.3, 0.4]
    accs = torch.tensor([0.98, 0.975, 0.96, 0.975, 0.5])
    assert pruning.largest_fraction_within(fractions, accs, 0.98) == 0.1, "0.2 loses 2 points: the answer is 0.1"
    assert pruning.largest_fraction_within(fractions, accs, 0.98, tolerance=0.03) == 0.3
    assert pruning.largest_fraction_within(fractions, accs, 0.999) == 0.0
    with pytest.raises(ValueError, match="one accuracy per fraction"):
        pruning.largest_fraction_within(fractions, accs[:3], 0.98)


def test_fine_tuned_accuracy_keeps_the_neurons_removed_and_the_model_intact(tiny_cnn):
    torch.manual_seed(2)
    x, removed = torch.rand(200, 784), {"head.2": list(range(8))}
    with torch.no_grad():
        tiny_cnn.head[3].weight[:, :8] *= 20  # the units we remove dominate the unpruned output
    with pruning.remove(tiny_cnn, removed):
        y = training.predict(tiny_cnn, x).argmax(-1)  # the pruned model's own answers
    unpruned = training.accuracy(tiny_cnn, x, y)
    before = [p.clone() for p in tiny_cnn.parameters()]
    got = pruning.fine_tuned_accuracy(tiny_cnn, removed, training.minibatches(x, y, 32, seed=0), x, y, steps=5, lr=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_cnn.parameters())), "fine-tuning must work on a copy"
    assert unpruned < 0.5 < got, (f"got {got:.2f}, and {unpruned:.2f} with the neurons restored: they must stay removed "
                                  "while training and while scoring")


def test_band_figure_draws_the_mean_inside_the_seed_range():
    curves = {"a": torch.tensor([[1.0, 0.5], [0.8, 0.3], [0.9, 0.4]]), "b": torch.tensor([[0.2, 0.1], [0.4, 0.3]])}
    fig = pruning.band_figure([0.0, 0.5], curves, title="t", xaxis="x", yaxis="y", hline=0.9)
    bands, lines = fig.data[0::2], fig.data[1::2]
    assert [t.name for t in lines] == ["a (n=3)", "b (n=2)"]
    assert list(lines[0].y) == pytest.approx([0.9, 0.4]), "the line is the mean over seeds"
    assert list(bands[0].y) == pytest.approx([1.0, 0.5, 0.3, 0.8]), "the band runs along the max, then back along the min"


def test_lowest_rounds_to_the_nearest_count():
    scores = {"a": torch.tensor([4.0, 0.0, 3.0, 1.0, 2.0])}
    assert pruning.lowest(scores, 0.3)["a"].tolist() == [1, 3], "round(0.3 x 5) = 2 neurons, lowest first"
    assert pruning.lowest(scores, 0.7)["a"].tolist() == [1, 3, 4, 2], "round(0.7 x 5) = 4"


def test_random_scores_differ_per_layer_as_documented(tiny_cnn, data):
    x, y = data
    s = pruning.score_neurons(tiny_cnn, "random", {"features.1": "features.0", "head.2": "head.1"}, x, y, seed=5)
    assert torch.equal(s["features.1"], pruning.random_scores(4, 5)) and torch.equal(s["head.2"], pruning.random_scores(16, 6)), \
        "layer i gets random_scores(n, seed + i)"


def test_attribution_scores_sum_over_positions_of_a_sequence_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Unflatten(1, (2, 3)), nn.Identity(), nn.Flatten(), nn.Linear(6, 4))
    x, y = torch.randn(10, 6), torch.randint(0, 4, (10,))
    with hooks.capture(model, "2", detach=False) as acts:
        loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, acts["2"])
    expected = (acts["2"] * grad).sum(-1).abs().mean(0)
    assert torch.allclose(pruning.attribution_scores(model, "2", x, y, batch_size=4), expected, atol=1e-6), \
        "(batch, neuron, position): sum a * dloss/da over positions, then |.|, then the mean over inputs"


def test_magnitude_scores_refuse_a_one_dimensional_weight():
    with pytest.raises(TypeError, match="without a \\(out, in, ...\\) weight"):
        pruning.magnitude_scores(nn.Sequential(nn.LayerNorm(4)), "0")


def test_removable_fraction_uses_its_tolerance_and_can_answer_zero():
    model = nn.Sequential(nn.Identity(), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]))
        model[2].bias.zero_()
    x, y = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [3.0, 0.5, 0.0]]), torch.tensor([0, 1, 0])
    scores = {"1": torch.tensor([1.0, 2.0, 0.0])}  # neuron 2 (read by nothing) first, then neuron 0: 2 of 3 wrong
    assert pruning.removable_fraction(model, scores, [1 / 3, 2 / 3], x, y) == 1 / 3
    assert pruning.removable_fraction(model, scores, [2 / 3], x, y) == 0.0, "the first fraction fails: 0"
    assert pruning.removable_fraction(model, scores, [1 / 3, 2 / 3], x, y, tolerance=0.7) == 2 / 3, "tolerance must be used"


def test_fine_tuned_accuracy_trains_the_pruned_copy_with_the_given_learning_rate(tiny_cnn):
    import copy

    torch.manual_seed(3)
    x = torch.rand(128, 784)
    removed = {"head.2": [0, 1, 2, 3]}
    reference = copy.deepcopy(tiny_cnn)
    with pruning.remove(reference, removed):
        y = (training.predict(reference, x).argmax(-1) + 1) % 10  # wrong everywhere, learnable by the last layer
        untrained = training.accuracy(reference, x, y)
        training.train(reference, training.minibatches(x, y, 32, seed=0), steps=15, lr=0.02)
        expected = training.accuracy(reference, x, y)
    got = pruning.fine_tuned_accuracy(tiny_cnn, removed, training.minibatches(x, y, 32, seed=0), x, y, steps=15, lr=0.02)
    assert got == expected and got > untrained + 0.05, \
        f"fine-tuned {got:.3f}, expected {expected:.3f} (a copy trained with the neurons removed), untrained {untrained:.3f}"
    slow = pruning.fine_tuned_accuracy(tiny_cnn, removed, training.minibatches(x, y, 32, seed=0), x, y, steps=15, lr=1e-4)
    assert slow < got, "lr must reach the optimiser"


def test_split_half_reliability_is_one_for_a_data_free_score_and_lower_for_a_noisy_one(tiny_cnn, data):
    x, y = data
    layers = {"head.2": "head.1"}
    assert pruning.split_half_reliability(tiny_cnn, "magnitude", layers, x, y) == pytest.approx(1.0), \
        "a score that reads no data ranks the neurons the same on both halves"
    for method in ("ablation", "ablation_abs", "attribution", "activation"):
        r = pruning.split_half_reliability(tiny_cnn, method, layers, x, y)
        assert -1 <= r <= 1 and r == r, f"{method}: a rank correlation, got {r}"
    with pytest.raises(ValueError, match="at least 4"):
        pruning.split_half_reliability(tiny_cnn, "ablation", layers, x[:3], y[:3])


def test_negatives_against_random_removes_the_negative_picks_and_as_many_live_random_ones(tiny_cnn, data, monkeypatch):
    x, y = data
    signed = {"head.2": torch.tensor([-1.0, 2.0, -0.5] + [1.0] * 13)}  # neurons 0 and 2 negative
    activity = {"head.2": torch.tensor([0.0, 1.0, 1.0] + [1.0] * 13)}  # neuron 0 dead: never drawn
    out = pruning.negatives_against_random(tiny_cnn, signed, activity, x, y, n_draws=5, seed=0)
    with pruning.remove(tiny_cnn, {"head.2": [0, 2]}):
        by_hand = training.accuracy(tiny_cnn, x, y)
    assert out["n"] == 2 and out["accuracy"] == pytest.approx(by_hand) and out["n_draws"] == 5
    assert out["random_min"] <= out["random_mean"] <= out["random_max"]
    assert "reference_accuracy" not in out
    reference = {"head.2": torch.arange(16.0).flip(0)}  # lowest: neurons 15 and 14, as many as the negatives
    with pruning.remove(tiny_cnn, {"head.2": [15, 14]}):
        lowest_two = training.accuracy(tiny_cnn, x, y)
    out = pruning.negatives_against_random(tiny_cnn, signed, activity, x, y, n_draws=2, seed=0, reference=reference)
    assert out["reference_accuracy"] == pytest.approx(lowest_two)
    removed, remove = [], pruning.remove  # which neurons each measurement removes
    monkeypatch.setattr(pruning, "remove", lambda model, picks: removed.append({k: sorted(map(int, v)) for k, v in picks.items()}) or remove(model, picks))
    pruning.negatives_against_random(tiny_cnn, signed, activity, x, y, n_draws=1, seed=0, reference={"head.2": torch.arange(16.0)})
    assert removed[1] == {"head.2": [1, 2]}, f"the reference must skip the dead neuron 0, as the random draws do, got {removed}"
    monkeypatch.undo()
    assert not tiny_cnn.head[2]._forward_hooks, "the neurons must be back after the measurement"
    with pytest.raises(ValueError, match="same layers"):
        pruning.negatives_against_random(tiny_cnn, signed, {"head.0": activity["head.2"]}, x, y)
