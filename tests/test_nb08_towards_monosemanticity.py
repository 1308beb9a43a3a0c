"""Notebook 08: a 1-layer character LM, SAEs on its MLP, features vs neurons, splitting and steering."""
import pytest

from glassbox import findings, paths
from glassbox.journal import checkpoints

STEM = "08_towards_monosemanticity"


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    for key in ["lm_test_loss", "bigram_test_loss", "loss_clean", "loss_mlp_ablated", "sae_metrics", "rule_f1",
                "polysemantic_example", "dashboard_latents", "feature_split", "steering", "headline"]:
        assert key in f, f"smoke run did not record {key!r}"
    assert set(f["sae_metrics"]) == {"small", "large"}
    assert set(f["rule_f1"]) == {"neurons", "sae_small", "random_small", "sae_large", "random_large"}
    assert f["loss_mlp_ablated"] > f["loss_clean"], "switching the MLP off must cost loss even after a few steps"
    assert f["sae_metrics"]["small"]["l0"] <= 16, "TopK with k = 16 cannot have L0 above 16"
    assert f["rule_f1"]["neurons"]["n_live"] > 0 and f["n_rules"] > 500


def test_full_model_learned_more_than_bigrams():
    f = findings.load(STEM)
    assert f["lm_test_loss"] < f["bigram_test_loss"] - 0.3, \
        f"test loss {f['lm_test_loss']:.3f} should beat the bigram table ({f['bigram_test_loss']:.3f}) clearly"
    assert f["loss_mlp_ablated"] > f["loss_clean"] + 0.5, "the MLP should carry much of the model's work"
    card = checkpoints.load_card("lm1_shakespeare")
    assert card["metrics"]["test_loss"] == f["lm_test_loss"], "findings and checkpoint card disagree: rerun the notebook"
    assert card["config"]["n_layers"] == 1 and card["config"]["d_mlp"] == 512 and card["config"]["act_fn"] == "relu"
    assert (paths.CHECKPOINT_DIR / "lm1_shakespeare.pt").stat().st_size < 2_000_000, "checkpoints stay under 2 MB"


def test_full_saes_meet_the_loss_recovered_target():
    f = findings.load(STEM)
    for size, m in f["sae_metrics"].items():
        assert m["l0"] <= 20, f"{size} dictionary: L0 {m['l0']:.1f} above 20"
        assert m["loss_recovered"] >= 0.9, f"{size} dictionary: loss recovered {m['loss_recovered']:.1%}, target >= 90%"
        assert m["dead_fraction"] < 0.25, f"{size} dictionary: {m['dead_fraction']:.1%} dead latents"
    assert f["sae_metrics"]["large"]["d_sae"] == 4 * f["sae_metrics"]["small"]["d_sae"] == 2048
    assert f["loss_recovered_target"]["met"] is True


def test_full_features_are_explained_by_rules_better_than_neurons_and_random_directions():
    f = findings.load(STEM)["rule_f1"]
    for metric in ("median_f1", "median_top100_rule_share"):  # like for like: 512 latents vs 512 neurons vs 512 random directions
        latents, neurons, random = f["sae_small"][metric], f["neurons"][metric], f["random_small"][metric]
        assert latents > neurons + 0.05, f"{metric}: 1x SAE latents {latents:.3f} should beat neurons {neurons:.3f}"
        assert latents > random + 0.05, f"{metric}: 1x SAE latents {latents:.3f} should beat random directions {random:.3f}"
    large = f["sae_large"]["median_top100_rule_share"]
    assert large > max(f["neurons"]["median_top100_rule_share"], f["random_large"]["median_top100_rule_share"]), \
        "the 4x dictionary's latents should be covered by one rule at the top more than neurons and random directions"
    assert f["random_large"]["n_live"] > 1000 and f["sae_large"]["n_live"] > 1000, "both dictionaries need many live units"
    verdict = findings.load(STEM)["features_vs_neurons"]
    assert verdict["small"]["median_f1"]["latents_beat_both"] is True, "the recorded verdict must match the numbers"


def test_full_polysemantic_neuron_and_splitting():
    f = findings.load(STEM)
    ex = f["polysemantic_example"]
    assert ex["shares"][0] < 0.5 and len(set(ex["rules"])) >= 2, "the example neuron should need several rules"
    assert f["neuron_top_rule_share_median"] < f["rule_f1"]["sae_large"]["median_top100_rule_share"]
    assert f["feature_split"]["n_children"] >= 2, "the shown small-dictionary latent should split into 2+ children"


def test_full_steering_beats_random_latents_of_the_same_norm():
    s = findings.load(STEM)["steering"]
    assert s["steered_rate"] > s["base_rate"] + 0.05, f"steering moved its characters only {s['base_rate']:.1%} -> {s['steered_rate']:.1%}"
    assert s["steered_rate"] > s["random_rate_max"], "a random latent of the same norm produced the feature's characters as often"
    dose = findings.load(STEM)["steering_dose"]
    assert dose["0"] == s["base_rate"] and dose["4"] > dose["0.5"], "a larger push should produce the characters more often"


WRONG_ANSWERS = ("my_loss_recovered", [
    ("def my_loss_recovered(clean, spliced, ablated):\n    return (spliced - clean) / (ablated - clean)", "NOT recovered"),
    ("def my_loss_recovered(clean, spliced, ablated):\n    return (ablated - spliced) / ablated", "divide by ablated - clean"),
])


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)
