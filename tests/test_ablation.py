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


def test_ablate_in_weights_equals_the_hooked_ablation(tiny_cnn):
    x = torch.rand(40, 784)
    mean = neurons.get_activations(tiny_cnn, "head.2", torch.rand(50, 784)).mean(0)
    for values in (None, mean):
        with ablation.ablate(tiny_cnn, "head.2", [0, 5, 9], values):
            hooked = tiny_cnn(x)
        baked = ablation.ablate_in_weights(tiny_cnn, "head.2", [0, 5, 9], values, reader="head.3")
        assert torch.allclose(baked(x), hooked, atol=1e-5), "folding must give the hooked ablation's logits: bias += W[:, idx] @ values"
        assert not baked.head[3].weight[:, [0, 5, 9]].any(), "the ablated neurons' weight columns must be 0"
    assert not torch.equal(baked.head[3].weight, tiny_cnn.head[3].weight), "the original model must stay untouched"
    assert not tiny_cnn.head[3].weight[:, 0].eq(0).all(), "ablate_in_weights changed the model it was given"


def test_ablate_in_weights_explains_bad_input(tiny_cnn):
    with pytest.raises(TypeError, match="pass the nn.Linear that reads"):
        ablation.ablate_in_weights(tiny_cnn, "head.2", [0], reader="head.2")
    with pytest.raises(ValueError, match="one number per neuron"):
        ablation.ablate_in_weights(tiny_cnn, "head.2", [0], torch.zeros(3), reader="head.3")
    with pytest.raises(IndexError, match="0..15"):
        ablation.ablate_in_weights(tiny_cnn, "head.2", [16], reader="head.3")
    with pytest.raises(KeyError, match="no module"):
        ablation.ablate_in_weights(tiny_cnn, "head.9", [0], reader="head.3")
    no_bias = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(4, 2, bias=False))
    with pytest.raises(ValueError, match="no bias"):
        ablation.ablate_in_weights(no_bias, "0", [1], torch.ones(4), reader="1")
