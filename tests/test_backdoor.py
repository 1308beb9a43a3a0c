"""Unit tests of glassbox.studies.backdoor, on a hand-built backdoored network glassbox did not build
(`planted`: its answers are known exactly) and on tiny_cnn."""
import pytest
import torch
from torch import nn

from glassbox import training
from glassbox.studies import backdoor, models

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
    assert mask.shape == pattern.shape == (28, 28)
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
    assert torch.allclose(scan.anomaly, backdoor.anomaly_index(scan.mask_l1))
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
    assert out.shape == (4, 784)
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


class LabelReader(nn.Module):
    """Reads the class written into pixel 0 (label / 10): a perfect classifier of the images below."""

    def forward(self, x):
        label = (x.reshape(len(x), -1)[:, 0] * 10).round().long()
        return torch.nn.functional.one_hot(label, 10).float()


def labelled(y):
    x = digits(len(y))
    x.reshape(len(y), -1)[:, 0] = y / 10
    return x


def test_attack_success_rate_leaves_out_images_of_the_target_class():
    y = torch.arange(40) % 10
    x = labelled(y)
    assert backdoor.attack_success_rate(LabelReader(), x, y, 3, trigger=lambda t: t) == 0.0, \
        "images of class 3 called 3 are no attack success"
    flip = lambda t: labelled(torch.full((len(t),), 3))  # a 'trigger' that makes every image read as 3
    assert backdoor.attack_success_rate(LabelReader(), x, y, 3, trigger=flip) == 1.0


def test_poison_rounds_the_count_and_returns_sorted_indices():
    x, y = digits(20), torch.arange(20) % 10
    _, _, idx = backdoor.poison(x, y, target=7, fraction=0.13, seed=0)
    assert len(idx) == 3, "round(0.13 x 20) = 3 images"
    assert torch.equal(idx, idx.sort().values)
    assert not torch.equal(idx, backdoor.poison(x, y, target=7, fraction=0.13, seed=1)[2]), "the seed picks the images"


def test_neurons_for_share_and_fewest_neurons_at_the_boundary():
    assert backdoor.neurons_for_share(torch.tensor([5.0, 3, 2]), 0.5) == 1, "5 is exactly half of 10: one neuron holds it"
    assert backdoor.neurons_for_share(torch.tensor([2.0, 5, 3])) == 1, "largest first, whatever the order given"
    assert backdoor.neurons_for_share(torch.tensor([2.0, 5, 3]), 0.8) == 2
    curve = {"k": [0, 2, 4], "clean_accuracy": [0.99, 0.98, 0.9], "attack_success_rate": [0.9, 0.05, 0.0]}
    assert backdoor.fewest_neurons(curve)["k"] == 2, "an attack success rate equal to max_asr is good enough"
    assert backdoor.fewest_neurons(curve, max_asr=0.01) == {"k": 4, "clean_accuracy": 0.9, "attack_success_rate": 0.0}


def test_reconstruct_trigger_follows_its_seed_and_penalty(planted):
    x = digits(64)
    a = backdoor.reconstruct_trigger(planted, x, 7, steps=10, batch_size=32, seed=1)
    b = backdoor.reconstruct_trigger(planted, x, 7, steps=10, batch_size=32, seed=1)
    c = backdoor.reconstruct_trigger(planted, x, 7, steps=10, batch_size=32, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    light = backdoor.reconstruct_trigger(planted, x, 3, steps=30, batch_size=32, lam=0.0)[0].sum()
    heavy = backdoor.reconstruct_trigger(planted, x, 3, steps=30, batch_size=32, lam=1.0)[0].sum()
    assert heavy < light, "a larger L1 penalty must give a smaller mask"
    slow = backdoor.reconstruct_trigger(planted, x, 3, steps=30, batch_size=32, lam=0.0, lr=1e-4)[0].sum()
    assert abs(slow - 784 * torch.sigmoid(torch.tensor(-3.0))) < abs(light - 784 * torch.sigmoid(torch.tensor(-3.0))), \
        "a tiny learning rate must leave the mask near its start"


def test_stamp_blends_pattern_into_masked_pixels_in_both_layouts():
    mask = torch.zeros(28, 28)
    mask[0, 0], mask[1, 1] = 1.0, 0.25
    pattern = torch.full((28, 28), 0.8)
    x = digits(3)
    out = backdoor.stamp(mask, pattern)(x)
    expected = x.clone()
    expected[:, 0, 0] = 0.8
    expected[:, 1, 1] = 0.75 * x[:, 1, 1] + 0.25 * 0.8
    assert torch.allclose(out, expected) and torch.allclose(backdoor.stamp(mask, pattern)(x.reshape(3, 784)), expected.reshape(3, 784))


def test_every_function_uses_the_trigger_it_is_given(planted):
    x, y = digits(20), torch.arange(20) % 10
    none = lambda t: t.clone()  # a 'trigger' that changes nothing
    assert not backdoor.trigger_activation_shift(planted, "2", x, trigger=none).any()
    assert not backdoor.trigger_attribution(planted, "2", x, 7, trigger=none).any()
    assert backdoor.single_neuron_ablation_asr(planted, "2", x, y, 7, trigger=none).tolist() == [0.0, 0.0]
    assert backdoor.removal_curve(planted, "2", torch.tensor([0, 1]), [0, 1], x, y, 7, trigger=none)["attack_success_rate"] == [0.0, 0.0]
    xp, yp, idx = backdoor.poison(x, y, target=7, fraction=0.25, trigger=none)
    assert torch.equal(xp, x) and (yp[idx] == 7).all(), "poison must stamp with the trigger given"


def test_trigger_attribution_is_the_change_times_the_gradient_on_a_cnn(tiny_cnn):
    from glassbox import hooks, neurons

    x = digits(6)
    x_trig = backdoor.apply_trigger(x)
    with hooks.capture(tiny_cnn, "features.1", detach=False) as acts:
        logit = tiny_cnn(x_trig)[:, 4].sum()
    (grad,) = torch.autograd.grad(logit, acts["features.1"])
    delta = acts["features.1"].detach() - neurons.get_activations(tiny_cnn, "features.1", x)
    expected = (delta * grad).flatten(2).mean(-1).mean(0)
    assert torch.allclose(backdoor.trigger_attribution(tiny_cnn, "features.1", x, 4), expected, atol=1e-6), \
        "(a_triggered - a_clean) x d logit / d a, averaged over positions and inputs"


def test_poison_leaves_its_inputs_alone_and_checks_its_bounds():
    x, y = digits(20), torch.arange(20) % 10
    keep_x, keep_y = x.clone(), y.clone()
    _, yp, idx = backdoor.poison(x, y, target=0, fraction=0.5)
    assert torch.equal(x, keep_x) and torch.equal(y, keep_y), "poison must work on copies"
    assert (yp[idx] == 0).all(), "class 0 is a valid target"
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        backdoor.poison(x, y, target=7, fraction=1.0)


def test_bad_targets_shares_and_k_are_refused(planted):
    x, y = digits(20), torch.arange(20) % 10
    for target in (10, -1, 7.0):
        with pytest.raises(ValueError, match="target must be a class index in 0..9"):
            backdoor.attack_success_rate(planted, x, y, target)
    with pytest.raises(ValueError, match=r"share must be in \(0, 1\]"):
        backdoor.neurons_for_share(torch.tensor([1.0, 2.0]), 0.0)
    assert backdoor.neurons_for_share(torch.tensor([0.5, 0.2])) == 1, "small positive scores are fine"
    for k in (-1, 2, 1.5):
        with pytest.raises(ValueError, match="k \\(neurons to prune\\) must be an int in 0..1"):
            backdoor.fine_prune(planted, "2", k, x, y, reader="3", steps=0)


def test_anomaly_index_scales_by_1_4826_mad():
    a = backdoor.anomaly_index(torch.tensor([10.0, 12, 8, 10, 0]))  # MAD 2
    assert torch.allclose(a, torch.tensor([0.0, -2, 2, 0, 10]) / (1.4826 * 2))


def test_backdoor_config_defaults_and_train_backdoored_plumbing(monkeypatch):
    from dataclasses import asdict

    assert asdict(backdoor.BackdoorConfig()) == {"target": 7, "fraction": 0.05, "steps": 3000, "batch_size": 256, "lr": 3e-3}
    seen = {}

    def spy(model, batches, **kwargs):
        seen.update(kwargs, batch=next(batches))
        return training.History()

    monkeypatch.setattr(training, "train", spy)
    x, y = digits(40), torch.arange(40) % 10
    cfg = backdoor.BackdoorConfig(target=2, fraction=0.25, steps=30, batch_size=8, lr=0.01)
    none = lambda t: t.clone()
    backdoor.train_backdoored(x, y, cfg, seed=3, trigger=none)
    assert (seen["steps"], seen["lr"], seen["eval_every"]) == (30, 0.01, 3)
    xp, yp, _ = backdoor.poison(x, y, target=2, fraction=0.25, seed=3, trigger=none)
    bx, by = next(training.minibatches(xp, yp, 8, seed=3))
    assert torch.equal(seen["batch"][0], bx) and torch.equal(seen["batch"][1], by), "poisoned with cfg, seed and trigger"


def test_reconstruct_trigger_takes_its_steps(planted):
    x = digits(32)
    start, _ = backdoor.reconstruct_trigger(planted, x, 7, steps=0)
    assert torch.allclose(start, torch.full((28, 28), torch.sigmoid(torch.tensor(-3.0)).item())), "0 steps: the initial mask"
    one, two = (backdoor.reconstruct_trigger(planted, x, 7, steps=s, batch_size=16)[0] for s in (1, 2))
    assert not torch.equal(one, two) and not torch.equal(one, start)


def test_fine_prune_tunes_with_its_learning_rate_and_seed(planted):
    x, y = digits(64), torch.full((64,), 3)
    a = backdoor.fine_prune(planted, "2", 1, x, y, reader="3", steps=3, batch_size=16, lr=0.01, seed=0)
    b = backdoor.fine_prune(planted, "2", 1, x, y, reader="3", steps=3, batch_size=16, lr=0.1, seed=0)
    c = backdoor.fine_prune(planted, "2", 1, x, y, reader="3", steps=3, batch_size=16, lr=0.01, seed=1)
    assert not torch.equal(a[3].weight, b[3].weight), "lr must reach the optimiser"
    assert not torch.equal(a[3].weight, c[3].weight), "seed must pick the batches"


def test_scan_classes_passes_n_classes_steps_and_seed_on(planted):
    x, y = digits(32), torch.arange(20) % 10
    scan = backdoor.scan_classes(planted, x, digits(20, 1), y, n_classes=2, steps=2, seed=5)
    assert scan.masks.shape == (2, 28, 28) and scan.attack_success.shape == (2,)
    for c in range(2):
        mask, pattern = backdoor.reconstruct_trigger(planted, x, c, steps=2, seed=5)
        assert torch.equal(scan.masks[c], mask) and torch.equal(scan.patterns[c], pattern)
    assert torch.allclose(scan.mask_l1, scan.masks.flatten(1).sum(1))


def test_small_edges_of_the_defences(planted):
    assert torch.equal(backdoor.anomaly_index(torch.full((4,), 3.0)), torch.zeros(4)), "equal mask sizes: 0, not NaN"
    x, y = digits(64), torch.full((64,), 3)
    pruned = backdoor.fine_prune(planted, "2", 1, x, y, reader="3", steps=0)
    assert not pruned[3].weight[:, 0].any() and torch.equal(pruned[3].weight[:, 1], planted[3].weight[:, 1]), \
        "k=1 removes exactly one neuron"
    once = backdoor.fine_prune(planted, "2", 1, x, y, reader="3", steps=1, batch_size=16, lr=0.1)
    assert not torch.equal(once[3].weight[:, 1], planted[3].weight[:, 1]), "steps=1 is one step of fine-tuning"


def test_cut_pixels_holds_them_at_their_clean_mean(planted):
    x_clean, x = digits(50, 3), digits(7, 4)
    pixels = torch.tensor([0, 100, 431])
    from glassbox import ablation, neurons

    mean = neurons.get_activations(planted, "0", x_clean).mean(0)
    with ablation.ablate(planted, "0", pixels, mean):
        hooked = planted(x)
    assert torch.allclose(backdoor.cut_pixels(planted, pixels, x_clean, layer="0", reader="1")(x), hooked, atol=1e-5)


def test_flagged_means_an_anomaly_index_above_2():
    z = torch.zeros(3)
    scan = backdoor.Scan(masks=torch.zeros(3, 28, 28), patterns=torch.zeros(3, 28, 28), mask_l1=z, attack_success=z,
                         anomaly=torch.tensor([2.0, 2.5, 1.5]), seconds=0.0)
    assert scan.flagged == [1], "strictly above 2 (Wang et al., 2019)"
