"""Notebook 06: interpretability-guided pruning and regularisation. Smoke run (loose) and the committed
full run's findings against the claims the notebook makes."""
import pytest

from glassbox import checkpoints, findings

STEM = "06_interpretability_guided_training"
METHODS = ("ablation", "attribution", "magnitude", "random")
RECIPES = ("none", "weight_decay", "dropout", "l1")
TABLE_KEYS = {"accuracy", "selectivity", "dead", "classes_per_neuron", "one_class_fraction"}


def check_shapes(f: dict) -> None:
    """What both runs must hold: the issue's keys, sane ranges, the checkpoint's own accuracy."""
    for key in ("prune_fraction_at_1pt_drop", "regulariser_table", "headline", "guided_margin_at_1pt", "guided_margin_acc_at_60",
                "fine_tuned_accuracy", "probe_accuracy", "attribution_prune_fraction_by_recipe"):
        assert key in f, f"finding {key!r} missing"
    assert set(f["prune_fraction_at_1pt_drop"]) == set(METHODS)
    assert all(0.0 <= v <= 1.0 for v in f["prune_fraction_at_1pt_drop"].values()), "a fraction of neurons lies in [0, 1]"
    assert set(f["regulariser_table"]) == set(RECIPES)
    for name, row in f["regulariser_table"].items():
        assert set(row) == TABLE_KEYS, f"{name}: table columns {sorted(row)}"
        assert 0.0 <= row["selectivity"] <= 1.0 and 0.0 <= row["accuracy"] <= 1.0 and 0 <= row["dead"] <= 192, name
        assert 1.0 <= row["classes_per_neuron"] <= 10.0, f"{name}: a live neuron answers to 1..10 digits"
    card = checkpoints.load_card("mnist_mlp")
    assert f["checkpoint_test_accuracy"] == card["metrics"]["test_accuracy"], "the committed checkpoint must score what its card says"
    assert isinstance(f["reproduces_checkpoint"], bool)


def test_smoke(smoke_run):
    f = smoke_run(STEM)
    check_shapes(f)
    assert len(f["base_accuracy_seeds"]) >= 2, "bands need two or more seeds, also in the smoke run"
    assert all(a > 0.5 for a in f["base_accuracy_seeds"]), "150 training steps should already reach > 50% on MNIST"


@pytest.fixture(scope="module")
def full():
    return findings.load(STEM)


def test_full_run_keys_and_checkpoint(full):
    check_shapes(full)
    assert full["reproduces_checkpoint"] is True, "seed 0 of the plain recipe must rebuild checkpoints/mnist_mlp bit for bit"
    assert full["base_accuracy_seeds"][0] == checkpoints.load_card("mnist_mlp")["metrics"]["test_accuracy"]
    assert len(full["base_accuracy_seeds"]) >= 3, "the issue asks for at least 3 seeds per curve"
    assert all(len(v) >= 3 for v in full["prune_fraction_at_1pt_drop_seeds"].values())


def test_guided_pruning_beats_both_baselines(full):
    p = full["prune_fraction_at_1pt_drop"]
    assert p["ablation"] > p["magnitude"] > p["random"], f"claimed order ablation > magnitude > random, got {p}"
    assert p["ablation"] - p["random"] >= 0.15, "guided pruning should remove far more neurons than random at 1 point"
    margin = full["guided_margin_at_1pt"]["ablation"]
    assert margin["min"] > 0, f"ablation must beat the better baseline on every seed (claimed), got {margin}"
    half = full["guided_margin_acc_at_half"]["ablation"]
    assert half["min"] > 0.02, f"with half of each layer removed ablation keeps > 2 points more on every seed, got {half}"
    acc = full["accuracy_at_half_removed"]
    assert acc["ablation"] > acc["attribution"] > acc["magnitude"] > acc["random"], f"claimed ordering at 50%: {acc}"


def test_attribution_is_not_reliably_better_than_magnitude(full):
    margin = full["guided_margin_at_1pt"]["attribution"]
    assert margin["min"] < 0 < margin["max"], f"claimed: the first-order estimate wins on some seeds and loses on others, got {margin}"


def test_guided_lead_is_unreliable_at_60_percent(full):
    lead = full["guided_margin_acc_at_60"]["ablation"]
    assert lead["mean"] > 0 > lead["min"], f"claimed: ahead on average at 60% but behind on one seed, got {lead}"


def test_fine_tuning_shrinks_the_gain(full):
    before, after = full["guided_margin_acc_at_60"]["ablation"], full["guided_margin_fine_tuned_at_60"]["ablation"]
    assert 0 < after["mean"] < 0.01 < before["mean"], f"claimed: at 60% a short fine-tune shrinks the lead below 1 point, {before} -> {after}"
    assert after["max"] - after["min"] < before["max"] - before["min"], "and the seed-to-seed spread with it"
    at_80 = full["guided_margin_fine_tuned_at_80"]["ablation"]
    assert at_80["min"] > 0, f"claimed: still (slightly) ahead on every seed at 80% after fine-tuning, got {at_80}"
    ft = full["fine_tuned_accuracy"]
    assert ft["random"]["0.9"] > max(ft[m]["0.9"] for m in METHODS[:3]), "claimed: at 90% random pruning does best after fine-tuning"
    assert min(ft[m]["0.6"] for m in METHODS) > full["accuracy_at_half_removed"]["ablation"], \
        "fine-tuning at 60% must beat every un-tuned model at 50% (the fine-tune repairs)"


def test_importance_is_unrelated_to_selectivity(full):
    rho = full["importance_selectivity_spearman"]
    assert abs(rho) < 0.2, f"claimed (as Morcos et al. 2018): a neuron's importance does not follow its selectivity, rho={rho:.3f}"


def test_regulariser_readability_ordering(full):
    t = full["regulariser_table"]
    sel = {k: t[k]["selectivity"] for k in RECIPES}
    assert sel["l1"] > sel["dropout"] > sel["none"] > sel["weight_decay"], f"claimed selectivity order: {sel}"
    poly = {k: t[k]["classes_per_neuron"] for k in RECIPES}
    assert poly["l1"] < poly["dropout"] < poly["none"] < poly["weight_decay"], f"claimed polysemanticity order: {poly}"
    assert t["l1"]["one_class_fraction"] >= 2.5 * t["none"]["one_class_fraction"], "L1 should make > 2.5x more one-digit neurons"
    assert t["l1"]["dead"] > t["none"]["dead"] + 5, "the price of L1 readability includes more dead neurons"
    seeds = full["regulariser_table_seeds"]
    assert min(seeds["l1"]["one_class_fraction"]) > max(v for k in RECIPES[:3] for v in seeds[k]["one_class_fraction"]), \
        "claimed: every L1 model has more one-digit neurons than every other model"


def test_regularisers_cost_about_the_same(full):
    t = full["regulariser_table"]
    costs = {k: t["none"]["accuracy"] - t[k]["accuracy"] for k in RECIPES[1:]}
    assert all(0.002 <= c <= 0.008 for c in costs.values()), f"claimed: each regulariser costs about half a point, got {costs}"


def test_probes_do_not_tell_the_recipes_apart(full):
    for layer in ("relu1", "relu2"):
        accs = [full["probe_accuracy"][k][layer] for k in RECIPES]
        assert min(accs) > 0.93 and max(accs) - min(accs) < 0.02, f"{layer}: claimed every recipe's layer is linearly readable alike, {accs}"


def test_readable_models_also_prune_further(full):
    p = full["attribution_prune_fraction_by_recipe"]
    assert p["l1"] >= 1.5 * p["none"], f"claimed: the L1 model can lose far more neurons at 1 point, got {p}"
    assert min(full["attribution_prune_fraction_by_recipe_seeds"]["l1"]) > max(full["attribution_prune_fraction_by_recipe_seeds"]["none"])
