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


def linear_model() -> torch.nn.Sequential:
    """out = relu(x)[0] - relu(x)[1] + 0 * relu(x)[2], so which neuron is ablated, and to what, decides the class."""
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]))
        model[2].bias.zero_()
    return model.eval()


def test_class_accuracy_drop_uses_the_values_and_n_classes_on_a_hand_built_model():
    model = linear_model()
    x = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [3.0, 0.5, 0.0]])
    y = torch.tensor([0, 1, 0])  # all correct
    zero = ablation.class_accuracy_drop(model, "1", x, y)
    # zeroing neuron 0 sends every input to class 1 (class 0 loses all), zeroing neuron 1 sends all to class 0
    assert torch.equal(zero, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])), "rows are classes, columns neurons"
    high = torch.tensor([0.0, 5.0, 0.0])
    held = ablation.class_accuracy_drop(model, "1", x, y, high, neurons=[1])
    assert torch.equal(held, torch.tensor([[1.0], [0.0]])), "neuron 1 held at 5 must send everything to class 1"
    wide = ablation.class_accuracy_drop(model, "1", x, y, neurons=[2], n_classes=4)
    assert wide.shape == (4, 1) and not wide.any(), "n_classes sets the rows; neuron 2 is read by nothing"


def test_ablate_refuses_negative_neurons():
    model = linear_model()
    with pytest.raises(IndexError, match=r"neurons \[-1\] do not exist"), ablation.ablate(model, "1", [-1]):
        model(torch.ones(1, 3))
    with pytest.raises(IndexError, match=r"\[-1\]"):
        ablation.ablate_in_weights(model, "1", [-1], reader="2")


def test_flip_rate_is_the_share_sent_to_the_target():
    model = linear_model()
    x = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    values = torch.tensor([0.0, 2.5, 0.0])
    # neuron 1 held at 2.5: class 1 wins where x0 < 2.5, i.e. inputs 0, 1 and 3 of 4
    assert ablation.flip_rate(model, "1", x, 1, [1], values) == 0.75
    assert ablation.flip_rate(model, "1", x, 0, [1], values) == 0.25


@pytest.mark.parametrize("values", [None, torch.tensor([0.5, -1.0, 2.0, 3.0])])
def test_ablate_in_weights_finds_the_reader_past_nested_blocks_and_elementwise_layers(values):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()), torch.nn.Dropout(0.0),
                                torch.nn.Linear(4, 2)).eval()
    x = torch.randn(5, 3)
    with ablation.ablate(model, "0", [1, 3], values):
        hooked = model(x)
    assert torch.allclose(ablation.ablate_in_weights(model, "0", [1, 3], values, reader="2")(x), hooked, atol=1e-6)
    with pytest.raises(ValueError, match="does not read '0'"):
        ablation.ablate_in_weights(model, "0", [1], reader="0.0")
    stack = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))  # a Linear read by the next Linear
    with ablation.ablate(stack, "0", [2]):
        hooked = stack(x)
    assert torch.allclose(ablation.ablate_in_weights(stack, "0", [2], reader="1")(x), hooked, atol=1e-6)


def test_resample_ablation_gives_each_input_a_row_of_the_reference(tiny_cnn):
    """Resample ablation: each input's ablated neurons take their values from one random row of
    `resample_from` (the same row for all of them), the other neurons keep theirs, and the draw is the seed's."""
    x = torch.rand(6, 784)
    reference = torch.arange(40.0).reshape(20, 2).repeat(1, 8)  # 20 rows of 16 units, every row different
    with ablation.ablate(tiny_cnn, "head.2", [1, 3], resample_from=reference, seed=4), hooks.capture(tiny_cnn, "head.2") as acts:
        tiny_cnn(x)
    got = acts["head.2"]
    rows = [int(torch.nonzero((reference[:, [1, 3]] == got[i, [1, 3]]).all(1))[0, 0]) for i in range(6)]  # the row each input got
    assert len(set(rows)) > 1, "every input drew the same row: the draw must be per input"
    untouched = neurons.get_activations(tiny_cnn, "head.2", x)
    assert torch.equal(got[:, [0, 2, 4]], untouched[:, [0, 2, 4]]), "neurons not named must keep their values"
    with ablation.ablate(tiny_cnn, "head.2", [1, 3], resample_from=reference, seed=4), hooks.capture(tiny_cnn, "head.2") as again:
        tiny_cnn(x)
    assert torch.equal(again["head.2"], got), "the same seed must draw the same rows"


def test_resample_from_a_constant_reference_is_mean_ablation_and_bad_references_are_refused(tiny_cnn):
    """A differential check: when every reference row holds the same values, resampling from it is ablating to them."""
    torch.manual_seed(2)
    x = torch.rand(300, 784)
    y = training.predict(tiny_cnn, x).argmax(-1)
    mean = neurons.get_activations(tiny_cnn, "head.2", x).mean(0)
    resampled = ablation.class_accuracy_drop(tiny_cnn, "head.2", x, y, resample_from=mean.expand(7, 16), neurons=[0, 5, 9])
    assert torch.allclose(resampled, ablation.class_accuracy_drop(tiny_cnn, "head.2", x, y, mean, neurons=[0, 5, 9]))
    with pytest.raises(ValueError, match="not both"), ablation.ablate(tiny_cnn, "head.2", [0], mean, resample_from=mean[None]):
        pass
    with pytest.raises(ValueError, match=r"rows shaped like one input's activations \(16,\)"), \
            ablation.ablate(tiny_cnn, "head.2", [0], resample_from=torch.zeros(5, 8)):
        tiny_cnn(x[:2])
    with pytest.raises(ValueError, match="resample_from"), ablation.ablate(tiny_cnn, "head.2", [0], resample_from=torch.full((5, 16), float("nan"))):
        pass
