"""Unit tests of glassbox.studies.regularisation on hand-made activations and a model glassbox did not build (tiny_cnn)."""
import pytest
from scipy import stats
import torch
import torch.nn.functional as F

from glassbox import hooks, neurons, training
from glassbox.studies import regularisation

LAYERS = ["features.1", "head.2"]


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.rand(64, 784), torch.randint(0, 10, (64,))


def test_dropout_loss_is_cross_entropy_at_p0_and_random_above(tiny_cnn, batch):
    x, y = batch
    plain = F.cross_entropy(tiny_cnn(x), y)
    assert regularisation.dropout_loss(LAYERS, 0.0)(tiny_cnn, batch).item() == pytest.approx(plain.item(), abs=1e-6)
    loss_fn = regularisation.dropout_loss(LAYERS, 0.5)
    with hooks.capture(tiny_cnn, "head.2") as acts:
        a, b = loss_fn(tiny_cnn, batch), loss_fn(tiny_cnn, batch)
    assert a.item() != b.item(), "dropout must draw a new mask on every call"
    zero_share = (acts["head.2"] == 0).float().mean().item()
    assert zero_share > 0.4, f"half the units should be dropped (plus the ReLU's own zeros), got {zero_share:.2f}"
    assert torch.allclose(tiny_cnn(x), tiny_cnn(x)), "the dropout hook outlived the loss"
    with pytest.raises(ValueError, match=r"\[0, 1\), got 1.0"):
        regularisation.dropout_loss(LAYERS, 1.0)


def test_l1_activation_loss_adds_the_mean_absolute_activation(tiny_cnn, batch):
    x, y = batch
    with hooks.capture(tiny_cnn, LAYERS) as acts:
        logits = tiny_cnn(x)
    expected = F.cross_entropy(logits, y) + 0.3 * (acts["features.1"].abs().mean() + acts["head.2"].abs().mean())
    loss = regularisation.l1_activation_loss(LAYERS, 0.3)(tiny_cnn, batch)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    grad_l1 = tiny_cnn.features[0].weight.grad.clone()
    tiny_cnn.zero_grad()
    F.cross_entropy(tiny_cnn(x), y).backward()
    assert not torch.allclose(grad_l1, tiny_cnn.features[0].weight.grad), \
        "the penalty must reach the weights (were the activations captured with detach=True?)"
    with pytest.raises(ValueError, match=">= 0"):
        regularisation.l1_activation_loss(LAYERS, -1.0)


def test_l1_training_makes_activations_sparser(tiny_cnn, batch):
    x, y = batch
    before = neurons.get_activations(tiny_cnn, "head.2", x).mean().item()
    training.train(tiny_cnn, training.minibatches(x, y, 32), steps=15, lr=2e-2,
                   loss_fn=regularisation.l1_activation_loss(["head.2"], 1.0))
    after = neurons.get_activations(tiny_cnn, "head.2", x).mean().item()
    assert after < 0.5 * before, f"a strong L1 penalty should shrink the activations, {before:.3f} -> {after:.3f}"


def test_dead_neurons_and_classes_per_neuron_on_known_activations():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    acts = torch.tensor([[4.0, 1, 0, 2], [2, 1, 0, 2], [0, 1, 0, 1.2], [0, 1, 0, 1.2], [0, 1, 0, 0], [0, 1, 0, 0]])
    assert regularisation.dead_neurons(acts).tolist() == [False, False, True, False]
    # class means: n0 (3, 0, 0) -> 1 class; n1 (1, 1, 1) -> 3; n2 dead -> 0; n3 (2, 1.2, 0) -> 2 at 0.5, 1 at 0.7
    assert regularisation.classes_per_neuron(acts, y).tolist() == [1, 3, 0, 2]
    assert regularisation.classes_per_neuron(acts, y, threshold=0.7).tolist() == [1, 3, 0, 1]
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        regularisation.classes_per_neuron(acts, y, threshold=0.0)


def test_class_profile_scales_and_orders_live_neurons():
    y = torch.tensor([0, 1, 2])
    acts = torch.tensor([[0.0, 1, 0, 4], [2, 1, 0, 0], [0, 1, 0, 0]])  # favourites: 1, (tie) 0, dead, 0
    profile = regularisation.class_profile(acts, y)
    assert profile.shape == (3, 3), "dead neurons must be left out"
    assert torch.allclose(profile.max(0).values, torch.ones(3)), "each column scaled to a top of 1"
    assert profile.argmax(0).tolist() == [0, 0, 1], "columns sorted by favourite class"
    assert profile[:, 0].sum() < profile[:, 1].sum(), "within a class, the most selective neuron first"


def test_neuron_report_on_a_model_glassbox_did_not_build(tiny_cnn, batch):
    x, y = batch
    report = regularisation.neuron_report(tiny_cnn, LAYERS, x, y)
    acts = neurons.get_activations(tiny_cnn, "head.2", x)
    live = ~regularisation.dead_neurons(acts)
    conv = neurons.get_activations(tiny_cnn, "features.1", x)
    n_dead = int(regularisation.dead_neurons(conv).sum() + (~live).sum())
    assert report["dead"] == n_dead
    sel = torch.cat([neurons.class_selectivity(conv, y)[~regularisation.dead_neurons(conv)], neurons.class_selectivity(acts, y)[live]])
    assert report["selectivity"] == pytest.approx(sel.mean().item(), abs=1e-6), "selectivity is averaged over live neurons only"
    with torch.no_grad():
        tiny_cnn.head[1].bias.fill_(-1e6)  # every unit of head.2 dead
    with pytest.raises(ValueError, match="every neuron of \\['head.2'\\] is dead"):
        regularisation.neuron_report(tiny_cnn, ["head.2"], x, y)


def test_neuron_report_pools_live_neurons_of_every_layer_on_known_activations():
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.ReLU(), torch.nn.Identity())
    y = torch.tensor([0, 1, 2, 2])
    # layer "1" (after the ReLU) sees relu(x); layer "2" the same; x is chosen so the class means are known
    x = torch.tensor([[3.0, 1.0, -1.0, 0.0], [0.0, 1.0, -1.0, 0.0], [0.0, 0.6, -2.0, 5.0], [0.0, 0.2, -1.0, 5.0]])
    # class means: n0 (3, 0, 0): 1 class; n1 (1, 1, 0.4): 2 classes at 0.5, 3 at 0.3; n2 dead; n3 (0, 0, 5): 1 class
    report = regularisation.neuron_report(model, ["1"], x, y)
    assert report["dead"] == 1
    assert report["classes_per_neuron"] == pytest.approx(4 / 3) and report["one_class_fraction"] == pytest.approx(2 / 3)
    sel = torch.tensor([1.0, 0.3 / 1.7, 1.0])  # (top - rest) / (top + rest) of the live neurons
    assert report["selectivity"] == pytest.approx(sel.mean().item(), abs=1e-6), "selectivity is averaged over live neurons"
    strict = regularisation.neuron_report(model, ["1"], x, y, threshold=0.3)
    assert strict["classes_per_neuron"] == pytest.approx(5 / 3), "threshold must reach classes_per_neuron"
    both = regularisation.neuron_report(model, ["1", "2"], x, y)
    assert both["dead"] == 2 and both["classes_per_neuron"] == pytest.approx(4 / 3), "layers are pooled"


def test_thresholds_at_the_edges_and_n_classes():
    y = torch.tensor([0, 1, 2])
    acts = torch.tensor([[0.5, 0.2], [0.5, 0.1], [0.25, 0.0]])
    assert regularisation.classes_per_neuron(acts, y, threshold=1.0).tolist() == [2, 1], \
        "threshold 1 counts the classes tied with the top (>=, not >)"
    with pytest.raises(ValueError, match=r"in \(0, 1\]; got 1.5"):
        regularisation.classes_per_neuron(acts, y, threshold=1.5)
    profile = regularisation.class_profile(acts, y, n_classes=4)
    assert profile.shape == (4, 2) and not profile[3].any(), "n_classes sets the rows; an absent class is 0"
    assert torch.allclose(profile.max(0).values, torch.ones(2)), "columns scaled to a top of 1, also when below 1"
    assert torch.allclose(profile.T, torch.tensor([[1.0, 0.5, 0.0, 0.0], [1.0, 1.0, 0.5, 0.0]])), \
        "both prefer class 0: the one with the smaller summed profile (the more selective) first"
    wide = torch.tensor([[0.0, 1.0, 0.0, 0.0, 3.0], [1.0, 0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]])
    order = regularisation.class_profile(wide, y).argmax(0).tolist()
    assert order == [0, 0, 1, 1, 2], "every live neuron kept and sorted by favourite class (more neurons than classes)"


def test_l1_penalty_is_on_absolute_values_and_zero_strength_is_plain_cross_entropy():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Identity())
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randint(0, 4, (8,))
    acts = model[0](x)
    assert (acts < 0).any()
    loss = regularisation.l1_activation_loss(["1"], 0.5)(model, (x, y))
    assert loss.item() == pytest.approx((F.cross_entropy(acts, y) + 0.5 * acts.abs().mean()).item(), abs=1e-6)
    plain = regularisation.l1_activation_loss(["1"], 0.0)(model, (x, y))
    assert plain.item() == pytest.approx(F.cross_entropy(acts, y).item(), abs=1e-6), "strength 0 is allowed"


def test_within_class_auc_reads_only_what_lies_beyond_the_class():
    classes = torch.tensor([0] * 6 + [1] * 6)
    labels = torch.tensor([0, 0, 0, 1, 1, 1] * 2)
    beyond = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.6, 0.7] * 2)  # separates the label inside each class
    by_class = classes.float() * 5  # knows the class, nothing else
    tied = torch.zeros(12)  # a ReLU that never fires: every pair is a tie
    acts = torch.stack([beyond, -beyond, by_class, tied], 1)
    auc = regularisation.within_class_auc(acts, labels, classes)
    assert torch.allclose(auc, torch.tensor([1.0, 0.0, 0.5, 0.5])), f"pairs of the same class only, ties count 1/2; got {auc.tolist()}"
    mixed = torch.tensor([0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0])  # class 1 has no positives: adds no pairs
    assert regularisation.within_class_auc(acts[:, :1], mixed, classes).item() == pytest.approx(6 / 9), "3 x 3 pairs of class 0"
    with pytest.raises(ValueError, match="no class holds both"):
        regularisation.within_class_auc(acts, torch.zeros(12, dtype=torch.long), classes)


def test_best_concept_neuron_chooses_on_validation_and_shuffling_removes_the_signal():
    gen = torch.Generator().manual_seed(0)
    classes = torch.randint(0, 3, (600,), generator=gen)
    labels = torch.randint(0, 2, (600,), generator=gen)
    acts = torch.rand(600, 5, generator=gen)
    acts[:, 3] = -labels.float() + 0.3 * torch.rand(600, generator=gen)  # neuron 3 reads the label, with a negative sign
    val, test = slice(0, 300), slice(300, 600)
    got = regularisation.best_concept_neuron(acts[val], labels[val], classes[val], acts[test], labels[test], classes[test])
    assert got["neuron"] == 3 and got["auc_test"] > 0.95, f"the reading neuron, oriented by its validation sign: {got}"
    shuffled = regularisation.shuffle_within_class(labels, classes, seed=1)
    assert all(int(shuffled[classes == c].sum()) == int(labels[classes == c].sum()) for c in range(3)), "same counts per class"
    control = regularisation.best_concept_neuron(acts[val], shuffled[val], classes[val], acts[test], shuffled[test], classes[test])
    assert abs(control["auc_test"] - 0.5) < 0.1, f"shuffled labels leave nothing to read: {control}"


def test_selectivity_spearman_finds_a_score_that_follows_selectivity(tiny_cnn, batch):
    x, y = batch
    acts = neurons.get_activations(tiny_cnn, "head.2", x)
    sel = neurons.class_selectivity(acts, y)
    rho = regularisation.selectivity_spearman(tiny_cnn, ["head.2"], {"head.2": sel}, x, y)
    assert rho == pytest.approx(1.0), "a score equal to the selectivity ranks the live neurons identically"
    assert regularisation.selectivity_spearman(tiny_cnn, ["head.2"], {"head.2": -sel}, x, y) == pytest.approx(-1.0)


def test_selectivity_spearman_given_a_control_removes_what_the_control_explains(tiny_cnn, batch):
    x, y = batch
    acts = neurons.get_activations(tiny_cnn, "head.2", x)
    sel, activity = neurons.class_selectivity(acts, y), acts.mean(0)
    noise = torch.rand(len(sel), generator=torch.Generator().manual_seed(0))
    live = ~regularisation.dead_neurons(acts)
    score = {"head.2": activity * (1 + noise)}  # activity plus something else
    by_hand = stats.spearmanr(torch.stack([score["head.2"][live], sel[live], activity[live]], 1).numpy()).statistic
    partial = (by_hand[0, 1] - by_hand[0, 2] * by_hand[1, 2]) / ((1 - by_hand[0, 2] ** 2) * (1 - by_hand[1, 2] ** 2)) ** 0.5
    got = regularisation.selectivity_spearman(tiny_cnn, ["head.2"], score, x, y, given={"head.2": activity})
    assert got == pytest.approx(partial) and -1 <= got <= 1
    assert regularisation.selectivity_spearman(tiny_cnn, ["head.2"], {"head.2": sel}, x, y, given={"head.2": activity}) == pytest.approx(1.0)


def test_sparsify_to_share_zeros_that_share_of_each_unit_and_keeps_the_order():
    torch.manual_seed(0)
    val, test = torch.rand(1000, 3), torch.rand(500, 3)
    sv, st = regularisation.sparsify_to_share(val, test, 0.8)
    assert (sv == 0).float().mean(0).sub(0.8).abs().max() < 0.01, "about 80% of each unit's validation values become 0"
    assert (st == 0).float().mean().item() == pytest.approx(0.8, abs=0.05), "the same thresholds carry to test"
    kept = st[:, 0] > 0
    assert torch.equal(st[kept, 0].argsort(), test[kept, 0].argsort()), "above the threshold the order is kept"
    with pytest.raises(ValueError, match="share"):
        regularisation.sparsify_to_share(val, test, 1.0)


def test_concept_aucs_reads_a_planted_unit_and_not_a_random_one():
    torch.manual_seed(0)
    classes, labels = torch.randint(0, 3, (2000,)), torch.randint(0, 2, (2000,))
    acts = torch.stack([labels + 0.5 * torch.rand(2000), torch.rand(2000)], 1)
    out = regularisation.concept_aucs(acts[:1000], acts[1000:], {"c": labels[:1000]}, {"c": labels[1000:]}, classes[:1000], classes[1000:])
    assert out["c"] > 0.95, "the planted unit reads the concept"
    out = regularisation.concept_aucs(acts[:1000, 1:], acts[1000:, 1:], {"c": labels[:1000]}, {"c": labels[1000:]}, classes[:1000], classes[1000:])
    assert abs(out["c"] - 0.5) < 0.1, "a random unit does not (1000 inputs: about 0.025 of sampling noise)"


def test_sweep_wording_groups_neighbouring_strengths_and_names_each_against_the_reference():
    sweep = {0.1: 0.220, 0.3: 0.154, 1.0: 0.095, 3.0: 0.047}
    assert regularisation.sweep_wording(sweep, 0.222, tolerance=0.01) == "unchanged at 0.1, lower at 0.3 and above"
    assert regularisation.sweep_wording(sweep, 0.222, tolerance=0.0) == "lower at 0.1 and above", "tolerance 0: any difference counts"
    middle = {"0.1": 0.30, "0.3": 0.31, "1.0": 0.22, "3.0": 0.10}  # string keys (findings read back from JSON) sort as numbers
    assert regularisation.sweep_wording(middle, 0.222, tolerance=0.01) == "higher from 0.1 to 0.3, unchanged at 1, lower at 3"
    assert regularisation.sweep_wording({0.5: 0.3}, 0.2, tolerance=0.01) == "higher at 0.5"
    with pytest.raises(ValueError, match="empty"):
        regularisation.sweep_wording({}, 0.2, tolerance=0.01)
