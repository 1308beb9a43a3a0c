"""Unit tests of glassbox.neurons on a model glassbox did not build (tiny_cnn) and on hand-made activations."""
import pytest
import torch

from glassbox import hooks, neurons


def test_get_activations_matches_one_capture_in_batches(tiny_cnn):
    x = torch.rand(10, 28, 28)
    with hooks.capture(tiny_cnn, "features.1") as acts:
        tiny_cnn(x)
    got = neurons.get_activations(tiny_cnn, "features.1", x, batch_size=3)
    assert got.shape == (10, 4, 12, 12) and torch.allclose(got, acts["features.1"]), "batches joined in the wrong order?"
    assert not got.requires_grad


def test_class_means_and_selectivity_on_known_activations():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    acts = torch.tensor([[4.0, 1, 0], [2, 1, 0], [0, 1, 3], [0, 1, 3], [0, 1, 0], [0, 1, 0]])
    means = neurons.class_means(acts, y)
    assert torch.allclose(means[:, 0], torch.tensor([3.0, 0, 0])), "class means must average within each class"
    sel = neurons.class_selectivity(acts, y)
    assert sel[0] == pytest.approx(1.0, abs=1e-6), "a neuron firing for one class only has selectivity 1"
    assert sel[1] == pytest.approx(0.0, abs=1e-6), "a neuron firing alike for all classes has selectivity 0"
    # neuron 2: class means (0, 3, 0): mu_max 3, mu_rest 0 -> 1
    assert sel[2] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="differ in length"):
        neurons.class_means(acts, y[:3])


def test_conv_channels_are_averaged_over_positions(tiny_cnn):
    x = torch.rand(8, 784)
    acts = neurons.get_activations(tiny_cnn, "features.1", x)
    y = torch.arange(8) % 2
    means = neurons.class_means(acts, y, n_classes=2)
    assert means.shape == (2, 4)
    assert torch.allclose(means[1], acts[1::2].mean((0, 2, 3)), atol=1e-6), "channel means must average batch and positions"
    assert neurons.class_selectivity(acts, y).shape == (4,)


def test_top_activating_returns_the_largest_first(tiny_cnn):
    acts = neurons.get_activations(tiny_cnn, "head.2", torch.rand(50, 784))
    top = neurons.top_activating(acts, 5, k=4)
    assert torch.equal(top, acts[:, 5].argsort(descending=True)[:4]), "top_activating must sort by activation, largest first"
    with pytest.raises(IndexError, match="0..15"):
        neurons.top_activating(acts, 16)
    with pytest.raises(ValueError, match="batch dimension"):
        neurons.per_neuron(acts[0, 0])


def test_selectivity_is_a_ratio_of_top_and_rest_on_a_hand_computed_case():
    y = torch.tensor([0, 1, 2, 2])
    acts = torch.tensor([[4.0], [1.0], [0.0], [2.0]])  # class means 4, 1, 1: top 4, rest 1
    assert neurons.class_selectivity(acts, y)[0] == pytest.approx(3 / 5, abs=1e-6), "(mu_max - mu_rest) / (mu_max + mu_rest)"
    assert neurons.class_selectivity(acts, y, eps=1.0)[0] == pytest.approx(3 / 6), "eps is added to the denominator"
    # a fourth, absent class has mean 0 and counts among the rest: rest = (1 + 1 + 0) / 3
    assert neurons.class_selectivity(acts, y, n_classes=4)[0] == pytest.approx((4 - 2 / 3) / (4 + 2 / 3), abs=1e-6)


def test_class_means_give_zero_for_an_absent_class_and_average_extra_dims():
    y = torch.tensor([0, 0, 2])
    acts = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    means = neurons.class_means(acts, y, n_classes=4)
    assert torch.equal(means, torch.tensor([[2.0, 3.0], [0.0, 0.0], [5.0, 6.0], [0.0, 0.0]])), \
        "rows are classes 0..n_classes-1, an absent class is 0 (not NaN), columns are neurons"
    seq = torch.arange(12.0).reshape(2, 3, 2)  # (batch, neuron, position)
    assert torch.equal(neurons.per_neuron(seq), seq.mean(-1)), "any trailing dims are averaged, also a single one"
    with pytest.raises(ValueError, match="batch dimension"):
        neurons.per_neuron(torch.ones(5))


def test_top_activating_takes_k_and_clips_it_to_the_batch():
    acts = torch.tensor([[0.0, 3.0], [1.0, 1.0], [5.0, 2.0], [2.0, 0.0]])
    assert neurons.top_activating(acts, 0, k=2).tolist() == [2, 3]
    assert neurons.top_activating(acts, 1, k=3).tolist() == [0, 2, 1]
    assert neurons.top_activating(acts, 1, k=10).tolist() == [0, 2, 1, 3], "k larger than the batch gives every input"
    with pytest.raises(IndexError, match="neuron -1 does not exist"):
        neurons.top_activating(acts, -1)
