"""Unit tests of the defence helpers added to glassbox.studies.backdoor for notebook 05 (mean ablation, Fine-Pruning's
stopping rule, trigger placement, scan reports, choosing on validation), on a hand-built backdoored network."""
import pytest
import torch
from torch import nn

from glassbox.studies import backdoor

WHITE = (backdoor.apply_trigger(torch.zeros(1, 28, 28))[0] > 0).flatten()


@pytest.fixture
def planted() -> nn.Module:
    """Hidden 0 sums the 5 white trigger pixels and votes 7; hidden 1 sums all pixels and votes 3; hidden 2 is dead."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 3), nn.ReLU(), nn.Linear(3, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model[1].weight[0, WHITE] = 1.0
        model[1].weight[1] = 1.0 / 100
        model[1].bias[2] = -1.0
        model[3].weight[7, 0] = 10.0
        model[3].weight[3, 1] = 1.0
    return model.eval()


def digits(n: int = 64, seed: int = 0) -> torch.Tensor:
    x = torch.rand(n, 28, 28, generator=torch.Generator().manual_seed(seed))
    x[:, 22:, 22:] = 0
    return x


def test_patch_trigger_writes_the_checkerboard_where_asked():
    x = torch.zeros(2, 28, 28)
    out = backdoor.patch_trigger(1, 2)(x)
    assert torch.equal(out[0, 1:4, 2:5], backdoor.TRIGGER), "the 3x3 checkerboard should start at row 1, column 2"
    assert out.sum() == 2 * backdoor.TRIGGER.sum(), "nothing outside the patch may change"
    assert torch.equal(backdoor.patch_trigger(24, 24)(x), backdoor.apply_trigger(x)), "the default place is apply_trigger's"
    assert backdoor.patch_mask(1, 2).sum() == 9 and backdoor.patch_mask(1, 2)[1:4, 2:5].all()
    with pytest.raises(ValueError, match="0..25"):
        backdoor.patch_mask(26, 0)


def test_mean_ablation_asr_holds_each_neuron_at_the_given_value(planted):
    x, y = digits(), torch.full((64,), 3)
    values = torch.tensor([0.0, 0.5, 0.0])
    asr = backdoor.mean_ablation_asr(planted, "2", x, y, 7, values)
    assert asr.tolist() == [0.0, 1.0, 1.0], "holding the trigger neuron at 0 stops the attack; the others do not matter"
    zero = backdoor.single_neuron_ablation_asr(planted, "2", x, y, 7)
    assert torch.equal(backdoor.mean_ablation_asr(planted, "2", x, y, 7, torch.zeros(3)), zero), "values 0 = zero ablation"
    held = backdoor.mean_ablation_asr(planted, "2", x, y, 7, torch.tensor([10.0, 0.0, 0.0]))
    assert held[0] == 1.0, "holding the trigger neuron high must call every digit 7 (the value is used, not zero)"


def test_mean_removal_curve_follows_the_order(planted):
    x, y = digits(), torch.full((64,), 3)
    curve = backdoor.mean_removal_curve(planted, "2", torch.tensor([2, 0, 1]), [0, 1, 2, 3], x, y, 7, torch.zeros(3))
    assert curve["k"] == [0, 1, 2, 3]
    assert curve["attack_success_rate"] == [1.0, 1.0, 0.0, 0.0], "removing the dead neuron first changes nothing; the trigger neuron second"
    assert curve["clean_accuracy"][:3] == [1.0, 1.0, 1.0] and curve["clean_accuracy"][3] < 1.0


def test_mean_removal_curve_reads_the_same_rates_as_the_four_functions(planted):
    """The curve computes its four rates from two passes; each must equal its public function's, on mixed classes."""
    x = digits(96)
    y = torch.arange(96) % 10
    values = torch.tensor([0.0, 0.2, 0.0])
    curve = backdoor.mean_removal_curve(planted, "2", torch.tensor([1, 0, 2]), [0, 1, 2], x, y, 7, values)
    for i, k in enumerate([0, 1, 2]):
        with backdoor.ablation.ablate(planted, "2", torch.tensor([1, 0, 2])[:k], values):
            assert curve["clean_accuracy"][i] == backdoor.training.accuracy(planted, x, y)
            assert curve["attack_success_rate"][i] == backdoor.attack_success_rate(planted, x, y, 7)
            assert curve["trigger_flip_rate"][i] == backdoor.trigger_flip_rate(planted, x, y, 7)
            assert curve["clean_called_target"][i] == backdoor.called_target_rate(planted, x, y, 7)
    assert len(set(curve["attack_success_rate"])) > 1, "the control: the order must move the rates, or the check says nothing"
    with pytest.raises(ValueError, match="class index"):
        backdoor.mean_removal_curve(planted, "2", torch.tensor([0]), [0], x, y, 12, values)


def test_pruning_budget_stops_at_the_margin(planted):
    x, y = digits(), torch.full((64,), 3)
    # least active first: the dead neuron (2), the trigger neuron (0, off on clean digits), then the digit neuron (1)
    assert backdoor.pruning_budget(planted, "2", x, y, 0.5) == 2, "pruning the digit neuron drops accuracy to 0: stop before it"
    nothing_to_lose = torch.zeros(64, dtype=torch.long)  # the model never answers 0: accuracy 0 already
    assert backdoor.pruning_budget(planted, "2", x, nothing_to_lose, 0.5) == 3, "with nothing to lose, every neuron is pruned"
    with pytest.raises(ValueError, match="margin"):
        backdoor.pruning_budget(planted, "2", x, y, 4.0)


def test_cleanse_report_and_cheapest_removal():
    masks = torch.zeros(3, 28, 28)
    masks[1][backdoor.trigger_mask()] = 0.9
    masks[1, 0, 0] = 0.9
    scan = backdoor.Scan(masks, masks, torch.tensor([50.0, 5.0, 60.0]), torch.zeros(3), torch.tensor([0.0, 5.0, -0.5]), 0.0)
    r = backdoor.cleanse_report(scan, backdoor.trigger_mask(), 1)
    assert r["matched"] and r["pixels_found"] == 10 and r["pixels_found_in_trigger"] == 9 and r["most_anomalous_class"] == 1
    assert "matched" not in backdoor.cleanse_report(scan, None, None), "a clean model has no target to match"
    val = {"a": {"k": [0, 1, 2], "clean_accuracy": [1.0, 0.9, 0.8], "attack_success_rate": [1.0, 0.0, 0.0]},
           "b": {"k": [0, 1, 2], "clean_accuracy": [1.0, 0.95, 0.7], "attack_success_rate": [1.0, 0.5, 0.0]}}
    test = {"a": {"k": [0, 1, 2], "clean_accuracy": [0.99, 0.88, 0.7], "attack_success_rate": [1.0, 0.01, 0.0]},
            "b": {"k": [0, 1, 2], "clean_accuracy": [0.99, 0.9, 0.6], "attack_success_rate": [1.0, 0.4, 0.0]}}
    got = backdoor.cheapest_removal(val, test)
    assert got == {"ranking": "a", "k": 1, "clean_accuracy": 0.88, "attack_success_rate": 0.01}, \
        "choose by validation accuracy at the first k under 5% on validation, then read the test curve at that k"
    assert backdoor.cheapest_removal({"b": {"k": [0], "clean_accuracy": [1.0], "attack_success_rate": [1.0]}}, test) is None


def test_trigger_flip_rate_counts_only_what_the_trigger_changes(planted):
    x, y = digits(), torch.full((64,), 3)
    assert backdoor.trigger_flip_rate(planted, x, y, 7) == 1.0 and backdoor.called_target_rate(planted, x, y, 7) == 0.0
    always7 = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        always7[1].weight.zero_()
        always7[1].bias.zero_()
        always7[1].bias[7] = 1.0
    assert backdoor.attack_success_rate(always7, x, y, 7) == 1.0, "a model that calls everything 7 has attack success 1..."
    assert backdoor.trigger_flip_rate(always7, x, y, 7) == 0.0, "...but the trigger changes none of its answers"
    assert backdoor.called_target_rate(always7, x, y, 7) == 1.0
    with pytest.raises(ValueError, match="target class"):
        backdoor.trigger_flip_rate(planted, x, torch.full((64,), 7), 7)


def test_mean_removal_curve_tells_a_stopped_trigger_from_a_model_that_calls_everything_the_target(planted):
    x, y = digits(), torch.full((64,), 3)
    high = backdoor.mean_removal_curve(planted, "2", torch.tensor([0]), [0, 1], x, y, 7, torch.tensor([10.0, 0.0, 0.0]))
    assert high["attack_success_rate"] == [1.0, 1.0], "holding the trigger neuron high keeps the attack success at 1"
    assert high["trigger_flip_rate"] == [1.0, 0.0] and high["clean_called_target"] == [0.0, 1.0], \
        "held high, the neuron calls every clean digit 7: the trigger itself no longer changes anything"
    best = backdoor.cheapest_removal({"a": high}, {"a": high}, key="trigger_flip_rate")
    assert best == {"ranking": "a", "k": 1, "clean_accuracy": 0.0, "attack_success_rate": 1.0, "trigger_flip_rate": 0.0,
                    "clean_called_target": 1.0}
    assert backdoor.cheapest_removal({"a": high}, {"a": high}) is None, "by attack success nothing stops it"
    with pytest.raises(KeyError, match="trigger_flip"):
        backdoor.fewest_neurons({"k": [0], "attack_success_rate": [1.0]}, key="trigger_flip_rate")


def test_choose_pixel_cut_reads_the_defenders_trigger_on_validation(planted):
    x, y = digits(), torch.full((64,), 3)
    white_first = torch.cat([WHITE.nonzero().flatten(), (~WHITE).nonzero().flatten()])
    n, curve = backdoor.choose_pixel_cut(planted, white_first, [5, 0, 2], x, x, y, 7, backdoor.apply_trigger,
                                       layer="0", reader="1")
    assert curve["n"] == [0, 2, 5] and curve["attack_success_rate"] == [1.0, 1.0, 0.0], "3 white pixels still fire it; 5 cut stop it"
    assert n == 5 and curve["clean_accuracy"] == [1.0, 1.0, 1.0]
    none, _ = backdoor.choose_pixel_cut(planted, white_first, [0, 2], x, x, y, 7, backdoor.apply_trigger, layer="0", reader="1")
    assert none is None, "no n in the list stops it"


def test_trigger_attribution_reaches_a_layer_fed_by_the_input(planted):
    x = digits(8)
    scores = backdoor.trigger_attribution(planted, "0", x, 7)  # the Flatten: one unit per pixel
    assert scores.shape == (784,) and scores[WHITE].gt(0).all() and not scores[~WHITE].any(), \
        "only the white trigger pixels push logit 7 at the pixel layer"


def test_hold_direction_along_one_neuron_is_mean_ablation_of_that_neuron(planted):
    x = backdoor.apply_trigger(digits())
    values = torch.tensor([0.5, 2.0, 0.0])
    with backdoor.hold_direction(planted, "2", torch.tensor([3.0, 0.0, 0.0]), values):
        held = planted(x)
    with backdoor.ablation.ablate(planted, "2", [0], values):
        ablated = planted(x)
    assert torch.allclose(held, ablated), "a direction along one neuron must act as mean-ablating that neuron (the length is ignored)"


def test_hold_direction_fixes_the_component_along_it_and_passes_the_rest(planted):
    x = backdoor.apply_trigger(digits(16))
    u = torch.tensor([1.0, 1.0, 0.0]) / 2 ** 0.5
    values = torch.tensor([1.0, 3.0, 0.0])
    before = backdoor.neurons.get_activations(planted, "2", x)
    with backdoor.hold_direction(planted, "2", u, values):
        after = backdoor.neurons.get_activations(planted, "2", x)
    assert torch.allclose(after @ u, (values @ u).expand(16)), "the component along u must equal that of values on every input"
    rest = lambda a: a - (a @ u)[:, None] * u
    assert torch.allclose(rest(after), rest(before), atol=1e-5), "the part orthogonal to u must pass unchanged"
    with pytest.raises(ValueError, match="all zeros"):
        with backdoor.hold_direction(planted, "2", torch.zeros(3), values):
            pass
    with pytest.raises(ValueError, match="one entry per neuron"):
        with backdoor.hold_direction(planted, "2", torch.ones(4), values):
            pass


def test_direction_removal_stops_the_trigger_only_along_its_direction(planted):
    x, y = digits(), torch.full((64,), 3)
    got = backdoor.direction_removal(planted, "2", {"trigger": torch.tensor([1.0, 0, 0]), "digit": torch.tensor([0, 1.0, 0])},
                                     torch.zeros(3), x, y, 7)
    assert got["trigger"] == {"clean_accuracy": 1.0, "attack_success_rate": 0.0, "trigger_flip_rate": 0.0, "clean_called_target": 0.0}
    assert got["digit"]["trigger_flip_rate"] == 1.0 and got["digit"]["clean_accuracy"] == 0.0, \
        "held along the digit neuron the trigger still works and the digits are lost"


def test_random_directions_are_unit_and_reproducible():
    d = backdoor.random_directions(64, 3, seed=1)
    assert d.shape == (3, 64) and torch.allclose(d.norm(dim=1), torch.ones(3))
    assert torch.equal(d, backdoor.random_directions(64, 3, seed=1)) and not torch.equal(d, backdoor.random_directions(64, 3, seed=2))


def test_trigger_pixel_share_and_blind_removal_on_the_hand_built_backdoor(planted):
    x, y = digits(32), torch.full((32,), 3)
    y[0] = 0  # the scan measures every class's reconstruction on images of other classes: one image of class 0 for class 3
    assert backdoor.trigger_pixel_share(planted, x, 7, backdoor.trigger_mask()) == pytest.approx(1.0), \
        "logit 7 reads only the white trigger pixels: all its evidence sits on the trigger"
    r = backdoor.blind_removal(planted, x, x, y, 7, backdoor.trigger_mask(), trigger=backdoor.apply_trigger, steps=3,
                               layer="0", reader="1")
    assert r["clean_accuracy"] == 31 / 32 and r["attack_success_rate"] == 1.0 and r["target"] == 7
    assert set(r["after_cut"]) == {"clean_accuracy", "attack_success_rate"} and r["pixels_found"] >= 0


def test_train_clean_is_the_backdoored_recipe_without_the_poison():
    x, y = digits(512), torch.randint(0, 10, (512,), generator=torch.Generator().manual_seed(0))
    cfg = backdoor.BackdoorConfig(steps=3, batch_size=64)
    a, _ = backdoor.train_clean(x, y, cfg, seed=4)
    b, _ = backdoor.train_clean(x, y, cfg, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values())), "the same seed, the same model"
