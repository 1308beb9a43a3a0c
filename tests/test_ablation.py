"""Unit tests of glassbox.ablation on a model glassbox did not build (tiny_cnn)."""
import pytest
import torch

from glassbox import ablation, hooks, neurons, training


def manual_head(model, x, fix):
    """tiny_cnn's forward with `fix` applied to the 16 hidden units of its head."""
    h = model.head[2](model.head[1](model.head[0](model.features(x.reshape(len(x), 1, 28, 28)))))
    return model.head[3](fix(h.clone()))


def test_ablate_sets_the_chosen_neurons_and_nothing_else(tiny_cnn):
    x = torch.rand(5, 784)
    mean = neurons.get_activations(tiny_cnn, "head.2", torch.rand(20, 784)).mean(0)

    def fix(h):
        h[:, [1, 3]] = mean[[1, 3]]
        return h

    with ablation.ablate(tiny_cnn, "head.2", [1, 3], mean):
        got = tiny_cnn(x)
    assert torch.allclose(got, manual_head(tiny_cnn, x, fix), atol=1e-6), "ablated the wrong neurons or used the wrong values?"
    with ablation.ablate(tiny_cnn, "head.2", torch.tensor([2])):
        zeroed = tiny_cnn(x)
    assert torch.allclose(zeroed, manual_head(tiny_cnn, x, lambda h: h.index_fill_(1, torch.tensor([2]), 0.0)), atol=1e-6), \
        "values=None must zero-ablate"
    assert torch.allclose(tiny_cnn(x), manual_head(tiny_cnn, x, lambda h: h), atol=1e-6), "the ablation outlived its block"


def test_ablate_a_conv_channel_replaces_all_its_positions(tiny_cnn):
    x = torch.rand(4, 784)
    mean = neurons.get_activations(tiny_cnn, "features.1", torch.rand(20, 784)).mean(0)  # (4, 12, 12)
    with ablation.ablate(tiny_cnn, "features.1", [2], mean), hooks.capture(tiny_cnn, "features.1") as acts:
        tiny_cnn(x)
    assert torch.allclose(acts["features.1"][:, 2], mean[2].expand(4, 12, 12)), "every position of the channel must be replaced"
    assert not torch.allclose(acts["features.1"][:, 1], mean[1].expand(4, 12, 12))


def test_ablate_errors_name_the_problem(tiny_cnn):
    x = torch.rand(2, 784)
    with pytest.raises(IndexError, match=r"\[16\].*0..15"), ablation.ablate(tiny_cnn, "head.2", [0, 16]):
        tiny_cnn(x)
    with pytest.raises(ValueError, match=r"shape of one input's activations \(16,\)"), \
            ablation.ablate(tiny_cnn, "head.2", [0], torch.zeros(8)):
        tiny_cnn(x)
    assert not tiny_cnn.head[2]._forward_hooks, "a failed ablation left its hook behind"


def test_class_accuracy_drop_matches_a_manual_loop(tiny_cnn):
    torch.manual_seed(1)
    x = torch.rand(200, 784)
    y = training.predict(tiny_cnn, x).argmax(-1)  # base accuracy 1 on every class present
    mean = neurons.get_activations(tiny_cnn, "head.2", x).mean(0)
    drop = ablation.class_accuracy_drop(tiny_cnn, "head.2", x, y, mean)
    assert drop.shape == (10, 16)
    for j in (0, 7):
        with ablation.ablate(tiny_cnn, "head.2", [j], mean):
            acc = training.per_class_accuracy(tiny_cnn(x), y, 10)
        present = torch.bincount(y, minlength=10) > 0
        assert torch.allclose(drop[present, j], 1 - acc[present]), f"column {j} is not the accuracy lost by ablating neuron {j}"
    some = ablation.class_accuracy_drop(tiny_cnn, "head.2", x, y, mean, neurons=[7, 0])
    assert torch.equal(some, drop[:, [7, 0]]), "column j must belong to neurons[j]"


def test_flip_rate_counts_predictions_of_the_target(tiny_cnn):
    x = torch.rand(30, 784)
    values = torch.zeros(16)
    with ablation.ablate(tiny_cnn, "head.2", range(16), values):
        pred = tiny_cnn(x).argmax(-1)
    target = int(pred[0])
    assert ablation.flip_rate(tiny_cnn, "head.2", x, target, range(16), values) == 1.0, \
        "with every hidden unit fixed the output is constant, so every input goes to one class"
    assert ablation.flip_rate(tiny_cnn, "head.2", x, (target + 1) % 10, range(16), values) == 0.0
