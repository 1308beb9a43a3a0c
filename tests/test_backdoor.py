"""Unit tests of glassbox.backdoor, on a hand-built backdoored network glassbox did not build
(`planted`: its answers are known exactly) and on tiny_cnn."""
import pytest
import torch
from torch import nn

from glassbox import backdoor, models, training

WHITE = (backdoor.apply_trigger(torch.zeros(1, 28, 28))[0] > 0).flatten()  # the 5 white trigger pixels


@pytest.fixture
def planted() -> nn.Module:
    """Flatten -> Linear(784, 2) -> ReLU -> Linear(2, 10). Hidden 0 sums the 5 white trigger pixels
    (0 on digits that leave the corner blank) and votes 7; hidden 1 sums all pixels and votes 3."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 2), nn.ReLU(), nn.Linear(2, 10))
    with torch.no_grad():
        model[1].weight.zero_(), model[1].bias.zero_(), model[3].weight.zero_(), model[3].bias.zero_()
        model[1].weight[0, WHITE] = 1.0
        model[1].weight[1] = 1.0 / 100
        model[3].weight[7, 0] = 10.0
        model[3].weight[3, 1] = 1.0
    return model.eval()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is several times faster than two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def digits(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Random 'digits' in [0, 1] with the bottom-right 6x6 corner blank, as in MNIST."""
    x = torch.rand(n, 28, 28, generator=torch.Generator().manual_seed(seed))
    x[:, 22:, 22:] = 0
    return x


def test_apply_trigger_writes_the_checkerboard_in_both_layouts_and_nothing_else():
    x = digits(5)
    out = backdoor.apply_trigger(x)
    assert out.shape == x.shape and out is not x
    assert torch.equal(out[:, 24:27, 24:27], backdoor.TRIGGER.expand(5, 3, 3)), "the 3x3 corner must hold the trigger"
    outside = ~backdoor.trigger_mask()
    assert torch.equal(out[:, outside], x[:, outside]), "pixels outside the trigger must not change"
    flat = backdoor.apply_trigger(x.reshape(5, 784))
    assert flat.shape == (5, 784) and torch.equal(flat, out.reshape(5, 784)), "the flat layout must give the same pixels"
    assert backdoor.trigger_mask().sum() == 9 and WHITE.sum() == 5
    assert torch.equal(x, digits(5)), "apply_trigger changed its input in place"


@pytest.mark.parametrize("bad, error, match", [
    ([[0.0] * 784], TypeError, "torch tensor"),
    (torch.zeros(2, 28, 28, dtype=torch.uint8), TypeError, r"images.float\(\) / 255"),
    (torch.zeros(28, 28), ValueError, r"image\[None\]"),
    (torch.zeros(2, 1, 28, 28), ValueError, r"\(batch, 28, 28\) or \(batch, 784\)"),
    (torch.zeros(2, 100), ValueError, r"got \(2, 100\)"),
    (torch.full((2, 784), 2.0), ValueError, "before normalising"),
])
def test_apply_trigger_explains_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        backdoor.apply_trigger(bad)


def test_poison_stamps_and_relabels_exactly_the_chosen_fraction():
    x, y = digits(200), torch.arange(200) % 10
    xp, yp, idx = backdoor.poison(x, y, target=7, fraction=0.1, seed=3)
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert (yp[idx] == 7).all() and torch.equal(xp[idx], backdoor.apply_trigger(x[idx]))
    rest = torch.ones(200, dtype=torch.bool).index_fill_(0, idx, False)
    assert torch.equal(xp[rest], x[rest]) and torch.equal(yp[rest], y[rest]), "unpoisoned images must be untouched"
    assert torch.equal(idx, backdoor.poison(x, y, target=7, fraction=0.1, seed=3)[2]), "same seed, same images"
    first_batch = next(training.minibatches(x, y, 20, seed=3))[1]
    assert not (first_batch == 7).all() or (y == 7).sum() >= 20, \
        "poisoned indices coincide with minibatches' order for the same seed: every early batch would be all poison"


@pytest.mark.parametrize("kwargs, match", [({"fraction": 0.0}, r"in \(0, 1\)"), ({"fraction": 1.5}, r"in \(0, 1\)"),
                                           ({"target": 10}, r"0\.\.9")])
def test_poison_explains_bad_input(kwargs, match):
    args = {"target": 7, "fraction": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        backdoor.poison(digits(20), torch.arange(20) % 10, **args)


def test_attack_success_rate_counts_triggered_non_target_digits(planted):
    x, y = digits(50), torch.arange(50) % 10
    assert backdoor.attack_success_rate(planted, x, y, 7) == 1.0, "the planted model calls every triggered digit 7"
    assert backdoor.attack_success_rate(planted, x, y, 7, trigger=lambda t: t) == 0.0, "without a trigger it says 3"
    with pytest.raises(ValueError, match="target class"):
        backdoor.attack_success_rate(planted, x, torch.full((50,), 7), 7)


def test_neuron_views_find_the_planted_trigger_neuron(planted):
    x, y = digits(40), torch.arange(40) % 10
    shift = backdoor.trigger_activation_shift(planted, "2", x)
    assert torch.allclose(shift, torch.tensor([5.0, 5 / 100])), "hidden 0 rises by the 5 white pixels, hidden 1 by 5/100"
    attr = backdoor.trigger_attribution(planted, "2", x, 7)
    assert torch.allclose(attr, torch.tensor([50.0, 0.0])), "attribution = shift x d logit7 / d a = 5 x 10 for hidden 0"
    assert backdoor.single_neuron_ablation_asr(planted, "2", x, y, 7).tolist() == [0.0, 1.0], \
        "ablating hidden 0 must stop the attack, ablating hidden 1 must not"
    curve = backdoor.removal_curve(planted, "2", torch.tensor([0, 1]), [0, 1, 2], x, y, 7)
    assert curve["attack_success_rate"] == [1.0, 0.0, 0.0] and curve["k"] == [0, 1, 2]
    assert backdoor.fewest_neurons(curve) == {"k": 1, "clean_accuracy": curve["clean_accuracy"][1], "attack_success_rate": 0.0}
    assert backdoor.fewest_neurons({"k": [0], "clean_accuracy": [1.0], "attack_success_rate": [0.5]}) is None
    assert backdoor.fine_pruning_order(planted, "2", x).tolist() == [0, 1], "hidden 0 is dormant on clean digits"
    assert not any(p.grad is not None for p in planted.parameters()), "the neuron views must not leave gradients on the model"


def test_neuron_views_run_on_a_model_glassbox_did_not_build(tiny_cnn):
    x, y = digits(20), torch.arange(20) % 10
    assert backdoor.trigger_activation_shift(tiny_cnn, "features.1", x).shape == (4,), "conv channels: one number each"
    assert backdoor.trigger_attribution(tiny_cnn, "head.2", x, 7).shape == (16,)
    assert backdoor.single_neuron_ablation_asr(tiny_cnn, "head.2", x, y, 7).shape == (16,)
    assert len(backdoor.removal_curve(tiny_cnn, "head.2", torch.arange(16), [0, 16], x, y, 7)["k"]) == 2


def test_neurons_for_share_and_anomaly_index_on_known_numbers():
    assert backdoor.neurons_for_share(torch.tensor([4.0, 3, 2, 1, -5]), 0.5) == 2, "4 + 3 >= half of 10 after 2 neurons"
    assert backdoor.neurons_for_share(torch.tensor([1.0, 1, 1, 1]), 1.0) == 4
    with pytest.raises(ValueError, match="positive"):
        backdoor.neurons_for_share(torch.tensor([-1.0, 0.0]))
    a = backdoor.anomaly_index(torch.tensor([10.0, 11, 9, 10, 2]))
    assert torch.allclose(a, torch.tensor([0.0, -1, 1, 0, 8]) / 1.4826), "anomaly = (median - x) / (1.4826 * MAD)"


def test_reconstruct_trigger_finds_the_planted_pixels_without_touching_the_model(planted):
    before = [p.clone() for p in planted.parameters()]
    mask, pattern = backdoor.reconstruct_trigger(planted, digits(256), 7, steps=150, batch_size=64)
    assert mask.shape == pattern.shape == (28, 28) and 0 <= mask.min() and mask.max() <= 1
    share = mask.flatten()[WHITE].sum() / mask.sum()
    assert share > 0.5, f"only {share:.2f} of the mask is on the 5 trigger pixels: is the L1 penalty on the mask?"
    assert backdoor.attack_success_rate(planted, digits(50, 1), torch.arange(50) % 10, 7,
                                        trigger=backdoor.stamp(mask, pattern)) > 0.9
    assert all(torch.equal(a, b) for a, b in zip(before, planted.parameters())), "reconstruction changed the model"
    assert all(p.grad is None for p in planted.parameters()), "reconstruction left gradients on the model"


def test_scan_classes_flags_the_backdoored_class():
    """A linear model: class c != 7 reads its own band of 56 pixels, class 7 also reads the 5 white trigger pixels hard."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        model[1].weight.zero_(), model[1].bias.zero_()
        for c in range(10):
            model[1].weight[c, c * 56:(c + 1) * 56] = 0.1
        model[1].weight[7, WHITE] = 10.0
    scan = backdoor.scan_classes(model, digits(128), digits(40, 1), torch.arange(40) % 10, steps=80)
    assert scan.masks.shape == scan.patterns.shape == (10, 28, 28) and scan.mask_l1.shape == (10,)
    assert int(scan.mask_l1.argmin()) == 7 and scan.flagged == [7], f"mask sizes {scan.mask_l1.tolist()}"
    assert torch.allclose(scan.anomaly, backdoor.anomaly_index(scan.mask_l1)) and scan.seconds > 0
    assert scan.attack_success[7] > 0.9, "the reconstructed trigger of the flagged class must work"


def test_cut_pixels_removes_the_trigger_and_keeps_clean_outputs(planted):
    x, y = digits(30), torch.arange(30) % 10
    cut = backdoor.cut_pixels(planted, WHITE.nonzero().flatten(), digits(100, 2), layer="0", reader="1")
    assert torch.allclose(cut(x), planted(x)), "blank corner pixels sit at their clean mean: clean outputs must not move"
    assert backdoor.attack_success_rate(cut, x, y, 7) == 0.0 and backdoor.attack_success_rate(planted, x, y, 7) == 1.0


def test_fine_prune_removes_dormant_neurons_and_keeps_them_removed(planted):
    x, y = digits(64), torch.full((64,), 3)
    pruned = backdoor.fine_prune(planted, "2", 1, x, y, reader="3", steps=0)
    assert backdoor.attack_success_rate(pruned, x, torch.arange(64) % 10, 7) == 0.0, \
        "here the trigger neuron is the dormant one, so Fine-Pruning must remove it"
    tuned = backdoor.fine_prune(planted, "2", 1, x, y, reader="3", steps=5, batch_size=16)
    assert not tuned[3].weight[:, 0].any(), "the pruned neuron must stay cut after fine-tuning"
    assert not torch.equal(tuned[3].weight[:, 1], planted[3].weight[:, 1]), "fine-tuning must train the rest"


def test_stamp_and_blend_keep_pixels_in_range_and_layout():
    x = digits(4)
    blend = backdoor.blend_trigger(0.1, seed=0)
    out = blend(x.reshape(4, 784))
    assert out.shape == (4, 784) and 0 <= out.min() and out.max() <= 1
    noise = torch.rand(28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.reshape(4, 28, 28), 0.9 * x + 0.1 * noise), "blend = (1 - alpha) x + alpha noise"
    with pytest.raises(ValueError, match="before normalising"):
        blend(x * 3)


def test_train_backdoored_is_reproducible_from_its_seed():
    x, y = digits(300), torch.arange(300) % 10
    cfg = backdoor.BackdoorConfig(steps=15, batch_size=32)
    a, history = backdoor.train_backdoored(x, y, cfg, seed=1)
    b, _ = backdoor.train_backdoored(x, y, cfg, seed=1)
    assert isinstance(a, models.MLP) and history.records, "train_backdoored must return the MLP and its history"
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())), "same seed must give the same weights"
