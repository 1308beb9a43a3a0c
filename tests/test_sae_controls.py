"""glassbox.studies.sae_controls: the controls notebook 04 holds its SAEs to, on a small model built here."""
import pytest
import torch
from torch import nn

from glassbox import sae, training
from glassbox.studies import sae_controls


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.relu1, self.fc2 = nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3)

    def forward(self, x):
        return self.fc2(self.relu1(self.fc1(x)))


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = TinyMLP().eval()
    x = torch.randn(300, 6)
    with torch.no_grad():
        y = model(x).argmax(-1)  # the model's own answers: clean accuracy 1
    return model, x, y


def test_keep_largest_keeps_each_rows_k_largest():
    f = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 5.0, 4.0, 6.0]])
    assert torch.equal(sae_controls.keep_largest(2)(f), torch.tensor([[3.0, 0.0, 2.0, 0.0], [0.0, 5.0, 0.0, 6.0]]))
    with pytest.raises(ValueError, match="at least 5 units"):
        sae_controls.keep_largest(5)(f)
    with pytest.raises(ValueError, match="k"):
        sae_controls.keep_largest(0)


def test_largest_neurons_all_units_is_the_layer_and_fewer_cost_accuracy(setup):
    model, x, y = setup
    whole = sae_controls.largest_neurons(model, "relu1", x, y, 12)
    assert whole["fvu"] == 0 and whole["spliced_accuracy"] == 1.0
    one = sae_controls.largest_neurons(model, "relu1", x, y, 1)
    assert one["l0"] <= 1 and one["fvu"] > 0
    acts = sae.collect_activations(model, "relu1", x)
    assert one["fvu"] == pytest.approx(sae.fvu(acts, sae_controls.keep_largest(1)(acts)))  # differential: the same cut by hand
    with torch.no_grad():
        by_hand = (model.fc2(sae_controls.keep_largest(1)(model.relu1(model.fc1(x)))).argmax(-1) == y).float().mean().item()
    assert one["spliced_accuracy"] == pytest.approx(by_hand)


def test_best_on_validation_chooses_on_validation_and_reports_on_report(setup):
    model, x, y = setup
    targets = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(1))
    val, report = (x[:150], y[:150]), (x[150:], y[150:])
    best, drops = sae_controls.best_on_validation(model, "relu1", None, targets, val, report, n_classes=3)
    assert torch.equal(drops["validation"], sae.switch_off_drops(model, "relu1", None, targets, *val, 3))
    j = int(drops["validation"].argmax())
    assert best["unit"] == j and best["digit"] == int(targets[j]) and best["n_units"] == 12
    assert best["report_drop"] == drops["report"][j].item(), "the report number must come from the report split"
    assert best["rank_on_report"] == int((drops["report"] > drops["report"][j]).sum()) + 1
    with pytest.raises(ValueError, match="pair"):
        sae_controls.best_on_validation(model, "relu1", None, targets, val, (x,), n_classes=3)


@pytest.fixture
def tiny_sae(setup):
    model, x, _ = setup
    return sae.to_inference(sae.make_sae("topk", 12, 24, k=3, model_name="tiny", hook_name="relu1"))


def test_random_error_accuracy_is_the_model_when_the_error_is_zero_and_costs_when_it_is_huge(setup, tiny_sae):
    model, x, y = setup
    zero = lambda f: f * 0  # every latent off: the error is the whole activation minus b_dec
    base = sae_controls.random_error_accuracy(model, "relu1", tiny_sae, x, y, seed=0, edit=zero)
    assert 0 <= base < 1, "an error as long as the whole activation, in a random direction, must cost accuracy"
    again = sae_controls.random_error_accuracy(model, "relu1", tiny_sae, x, y, seed=0, edit=zero)
    assert base == again, "the same seed gives the same draws"
    keep_all = lambda f: f * 0 + 1e9  # nonsense latents: a huge error
    assert sae_controls.random_error_accuracy(model, "relu1", tiny_sae, x, y, seed=0, edit=keep_all) < 0.8


def test_random_direction_drops_removes_the_latents_length(setup, tiny_sae):
    model, x, y = setup
    acts = sae.collect_activations(model, "relu1", x)
    j = int(sae.encode(tiny_sae, acts).sum(0).argmax())
    out = sae_controls.random_direction_drops(model, "relu1", tiny_sae, j, 0, x, y, n_classes=3, n_draws=4)
    assert len(out["drops"]) == 4 and out["max"] == max(out["drops"])
    mine = sae.collect_activations(model, "relu1", x[y == 0])
    by_hand = (sae.encode(tiny_sae, mine)[:, j:j + 1] * tiny_sae.W_dec[j].detach()).norm(dim=1).mean().item()
    assert out["removed_length"] == pytest.approx(by_hand) and out["activation_length"] == pytest.approx(mine.norm(dim=1).mean().item())


def test_direction_drops_with_the_latents_own_row_equal_switching_it_off(setup, tiny_sae):
    """Given directions instead of random draws: the latent's own decoder row (any length) removes exactly f_j W_dec[j]."""
    model, x, y = setup
    acts = sae.collect_activations(model, "relu1", x)
    j = int(sae.encode(tiny_sae, acts).sum(0).argmax())
    row = tiny_sae.W_dec[j].detach()
    out = sae_controls.random_direction_drops(model, "relu1", tiny_sae, j, 0, x, y, n_classes=3, directions=torch.stack([3 * row, -row]))
    clean = (model(x).argmax(-1)[y == 0] == 0).float().mean()
    with torch.no_grad():
        off = model.fc2(acts - sae.encode(tiny_sae, acts)[:, j:j + 1] * row).argmax(-1)
    assert out["drops"][0] == pytest.approx((clean - (off[y == 0] == 0).float().mean()).item(), abs=1e-6)
    assert out["n_draws"] == 2
    with pytest.raises(ValueError, match="one per control"):
        sae_controls.random_direction_drops(model, "relu1", tiny_sae, j, 0, x, y, n_classes=3, directions=torch.zeros(2, 5))


def test_class_direction_drop_projects_out_the_class_mean_difference(setup):
    model, x, y = setup
    acts = sae.collect_activations(model, "relu1", x)
    out = sae_controls.class_direction_drop(model, "relu1", acts, y, 0, x, y, n_classes=3)
    assert 0 <= out["target_drop"] <= 1 and out["max_other_change"] >= 0
    u = torch.nn.functional.normalize(acts[y == 0].mean(0) - acts[y != 0].mean(0), dim=0)
    with torch.no_grad():
        pred = model.fc2(acts - (acts @ u).clamp(min=0)[:, None] * u).argmax(-1)
    assert out["target_drop"] == pytest.approx(1 - (pred[y == 0] == 0).float().mean().item())  # differential, by hand


def test_lookup_table_has_l0_one_and_fewer_prototypes_miss_more(setup):
    model, x, y = setup
    acts = sae.collect_activations(model, "relu1", x)
    out = sae_controls.lookup_table(model, "relu1", acts, x[:20], y[:20], n_prototypes=250)
    assert out["l0"] == 1.0 and out["fvu"] < 0.5
    few = sae_controls.lookup_table(model, "relu1", acts, x, y, n_prototypes=2)
    assert few["fvu"] > out["fvu"]


def test_correct_flags_each_input_and_mcnemar_counts_the_disagreements(setup):
    model, x, y = setup
    ok = sae_controls.correct(model, x, y)
    assert ok.dtype == torch.bool and ok.all(), "the labels are the model's own answers"
    with torch.no_grad():
        wrong = sae_controls.correct(model, x, (y + 1) % 3)
    assert not wrong.any()
    a = torch.tensor([True] * 20 + [False] * 5 + [True] * 75)
    b = torch.tensor([False] * 20 + [True] * 5 + [True] * 75)
    t = sae_controls.mcnemar(a, b)
    assert (t["a_only"], t["b_only"], t["n"]) == (20, 5, 100)
    from scipy.stats import binom
    assert t["p_value"] == pytest.approx(2 * binom.cdf(5, 25, 0.5)), "two-sided exact binomial on the 25 discordant inputs"
    assert sae_controls.mcnemar(a, a)["p_value"] == 1.0, "control: a model against itself never differs"
    assert sae_controls.mcnemar(a, b)["p_value"] == sae_controls.mcnemar(b, a)["p_value"]
    with pytest.raises(ValueError, match="same inputs"):
        sae_controls.mcnemar(a, b[:10])


def test_kmeans_directions_find_the_clusters_of_one_feature_data():
    """On data whose points each lie along one of 4 directions, k-means finds them (MMCS near 1); random directions do not."""
    gen = torch.Generator().manual_seed(0)
    true = torch.nn.functional.normalize(torch.randn(4, 10, generator=gen), dim=1)
    data = true[torch.randint(0, 4, (400,), generator=gen)] * torch.rand(400, 1, generator=gen).add(0.1)
    found = sae_controls.kmeans_directions(torch.cat([data, torch.zeros(50, 10)]), 4, seed=0)
    assert found.shape == (4, 10)
    assert sae.mean_max_cosine_similarity(true, found) > 0.99
    assert sae.mean_max_cosine_similarity(true, torch.randn(4, 10, generator=gen)) < 0.9


def test_switch_off_against_directions_chooses_on_validation_and_ranks_the_latent(setup, tiny_sae):
    model, x, y = setup
    val, report = (x[:150], y[:150]), (x[150:], y[150:])
    targets = torch.zeros(24, dtype=torch.long)
    out = sae_controls.switch_off_against_directions(model, "relu1", tiny_sae, targets, val, report, n_classes=3, n_draws=5, seed=0)
    best, _ = sae_controls.best_on_validation(model, "relu1", tiny_sae, targets, val, report, n_classes=3)
    assert out["latent"] == best
    j, latent = best["unit"], best["report_drop"]
    plain = sae_controls.random_direction_drops(model, "relu1", tiny_sae, j, 0, *report, n_classes=3, n_draws=5, seed=0)
    assert out["random_direction"]["drops"] == pytest.approx(plain["drops"]), "the same draws as random_direction_drops"
    on_val = sae_controls.random_direction_drops(model, "relu1", tiny_sae, j, 0, *val, n_classes=3, n_draws=5, seed=0)["drops"]
    chosen = out["random_chosen_on_validation"]
    assert chosen["draw"] == max(range(5), key=lambda i: on_val[i]) and chosen["report_drop"] == pytest.approx(plain["drops"][chosen["draw"]])
    others = out["other_latents"]
    assert others["rank"] == others["n_at_or_above_latent"] + 1 and others["n"] <= 23
