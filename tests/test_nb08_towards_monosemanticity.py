"""Notebook 08: a 1-layer character LM, SAEs on its MLP, features vs neurons, splitting and steering."""
import json

import pytest

from glassbox import findings, paths
from glassbox.journal import checkpoints
from glassbox.studies import char_features

STEM = "08_towards_monosemanticity"


@pytest.mark.notebook
def test_smoke(smoke_run, smoke_dir):
    f = smoke_run(STEM)
    d_mlp = json.loads((smoke_dir / "checkpoints" / "lm1_shakespeare.json").read_text())["config"]["d_mlp"]  # 512; narrower in smoke
    for key in ["lm_test_loss", "bigram_test_loss", "loss_clean", "loss_mlp_ablated", "loss_mlp_mean_ablated", "sae_metrics",
                "untrained_sae", "stricter_ablation", "mlp_out_norms", "rule_f1", "polysemantic_example", "cover_by_cap",
                "polysemantic_control", "features_vs_neurons", "features_vs_neurons_seeds", "dashboard_latents", "feature_split",
                "split_coverage", "steering", "steering_validation", "steered_text_loss", "steered_text_broken", "headline",
                "untrained_lm_control", "second_rule_gaps", "logit_effect_check", "logit_effect_agrees", "split_vs_same_size",
                "logit_effect_bar", "cap_drop", "top_neurons", "sae_over_top_neurons", "rules_needed",
                "rules_needed_gaps", "neurons_need_more_rules_than_random", "split_cofire_gap", "untrained_neuron_density",
                "f1_vs_neurons_topk16", "rules_needed_density", "rules_matched_verdict", "split_cofire_gap_across_saes",
                "position_vs_character", "split_count_verdict", "best_rule_single_char", "untrained_lm_dd_control"]:
        assert key in f, f"smoke run did not record {key!r}"
    assert set(f["sae_metrics"]) == {"small", "large"}
    assert set(f["rule_f1"]) == {"neurons", "sae_small", "random_small", "sae_large", "random_large", "neurons_untrained", "sae_untrained_lm",
                                 "neurons_topk16", "random_untrained"}
    for name, r in f["rule_f1"].items():
        assert 0 <= r["median_f1_chance"] <= 1 and -1 <= r["median_f1_above_chance"] <= 1, f"{name}: {r}"
    assert set(f["rules_needed"]) == {"neurons", "neurons_topk16", "random_small", "sae_small", "lookup_1", "lookup_5"}
    assert f["rules_needed_density"]["neurons_topk16"] <= 16 / d_mlp + 1e-6, f"TopK-16 encoded neurons fire at most 16 of {d_mlp} per character"
    assert f["rules_matched_verdict"] in ("fewer", "more", "mixed")
    for cap, v in f["rules_needed"]["lookup_1"].items():
        assert v["mean"] == pytest.approx(1.0), f"cap {cap}: a one-character lookup unit needs one rule, even in smoke mode ({v})"
    assert f["top_neurons"]["k"] == 16
    assert len(f["features_vs_neurons_seeds"]) == 3, "features vs neurons is reported over three SAE seeds"
    assert set(f["cover_by_cap"]["neurons"]) == {"0.05", "0.1", "0.2", "0.5"}, "shares at every cap fixed beforehand"
    assert f["loss_mlp_ablated"] > f["loss_clean"], "switching the MLP off must cost loss even after a few steps"
    assert f["sae_metrics"]["small"]["l0"] <= 16, "TopK with k = 16 cannot have L0 above 16"
    assert f["rule_f1"]["neurons"]["n_live"] > 0 and f["n_rules"] > 500
    for gap in f["features_vs_neurons_seeds"]["0"]["latents"].values():
        assert gap[1] <= gap[0] <= gap[2], "a bootstrap interval must hold its estimate"
    for pair in f["second_rule_gaps"].values():
        for gap in pair.values():
            assert gap[1] <= gap[0] + 1e-9 and gap[0] <= gap[2] + 1e-9, "a bootstrap interval must hold its estimate"
    ex = f["polysemantic_example"]["cap_0.05"]
    assert ex["lifts"] == pytest.approx([t / b for t, b in zip(ex["in_top100"], ex["base_rates"])]), "lift = share of the top 100 / base rate"
    assert "4x latents" in f["headline"] and "untrained" in f["headline"] and "one LM" in f["headline"] and "above chance" in f["headline"]
    assert f["split_vs_same_size"]["n_candidates"] == f["sae_metrics"]["large"]["d_sae"], "the splitting control offers as many candidates"
    assert f["steering"]["n_directions"] >= 1 and "random directions" in f["headline"]
    assert f["steering"]["verdict"] in ("beats", "not shown", "cannot decide") and f["split_count_verdict"] in ("more", "not more", "inconclusive")
    test_full_steering_is_held_to_random_directions_of_a_like_base_rate(f)  # the verdict follows the numbers in smoke too
    test_full_an_sae_on_an_untrained_lm_gains_less_over_random_directions_than_on_the_trained_lm(f)
    test_full_splitting_count_is_counted_within_one_dictionary_and_the_verdict_follows_the_numbers(f)
    assert set(f["polysemantic_control"]["lookup_pairs"]) == {"0.05", "0.1", "0.2", "0.5"} and f["polysemantic_control"]["n_lookup_pairs"] > 1
    assert set(f["polysemantic_example"]["lookup"]) == {"cap_0.05", "cap_0.1", "cap_0.2", "cap_0.5"}
    assert f["logit_effect_agrees"] == (f["logit_effect_check"]["lift"] > f["logit_effect_bar"])


def test_full_model_learned_more_than_bigrams():
    f = findings.load(STEM)
    assert f["lm_test_loss"] < f["bigram_test_loss"] - 0.3, \
        f"test loss {f['lm_test_loss']:.3f} should beat the bigram table ({f['bigram_test_loss']:.3f}) clearly"
    assert f["loss_mlp_ablated"] > f["loss_clean"] + 0.5, "the MLP should carry much of the model's work"
    card = checkpoints.load_card("lm1_shakespeare")
    assert card["metrics"]["test_loss"] == pytest.approx(f["lm_test_loss"], abs=1e-9), "findings and checkpoint card disagree: rerun"
    assert card["config"]["n_layers"] == 1 and card["config"]["d_mlp"] == 512 and card["config"]["act_fn"] == "relu"
    assert (paths.CHECKPOINT_DIR / "lm1_shakespeare.pt").stat().st_size < 2_000_000, "checkpoints stay under 2 MB"


def test_full_saes_recover_the_loss_and_an_untrained_sae_does_not():
    f = findings.load(STEM)
    for baseline in ("loss_mlp_ablated", "loss_mlp_mean_ablated"):
        assert f[baseline] > f["loss_clean"] + 0.5, f"{baseline} {f[baseline]:.3f} should cost clearly more than clean {f['loss_clean']:.3f}"
    stricter = "zero" if f["loss_mlp_ablated"] < f["loss_mlp_mean_ablated"] else "mean"
    assert f["stricter_ablation"] == stricter, "the stricter baseline is the ablation that hurts less (the smaller gap to recover)"
    if stricter == "zero":  # the notebook then quotes the mean output's norm as larger than the rest of the residual stream
        norms = f["mlp_out_norms"]
        assert norms["mean_output"] > norms["rest_of_residual"], f"the prose says the mean output is larger: {norms}"
    for size, m in f["sae_metrics"].items():
        assert m["loss_recovered_strict"] == pytest.approx(min(m["loss_recovered"], m["loss_recovered_vs_mean_ablation"]), abs=1e-9)
        assert m["loss_recovered_strict"] >= 0.9, f"{size} dictionary: loss recovered {m['loss_recovered_strict']:.1%} vs the stricter baseline, target >= 90%"
        assert m["extra_nats_per_char"] == pytest.approx(m["spliced_loss"] - f["loss_clean"], abs=1e-9)
        assert m["dead_fraction"] < 0.25, f"{size} dictionary: {m['dead_fraction']:.1%} dead latents"
    control = f["untrained_sae"]
    assert control["loss_recovered"] < 0.5 and control["loss_recovered_vs_mean_ablation"] < 0.5 and control["loss_recovered_strict"] < 0.5, \
        f"an untrained SAE should recover little, got {control['loss_recovered_strict']:.1%}: the measure would not tell trained from untrained"
    assert f["sae_metrics"]["large"]["d_sae"] == 4 * f["sae_metrics"]["small"]["d_sae"] == 2048


def test_full_saes_beat_the_layers_own_largest_neurons_at_the_same_l0():
    """The baseline that does something: each character's 16 largest neurons kept, the rest zeroed (no training). It recovers much
    of the loss by itself; the SAEs must recover clearly more, and the untrained SAE (the control) must fall below it."""
    f = findings.load(STEM)
    top = f["top_neurons"]
    assert top["k"] == 16 and top["loss_recovered"] > 0.5, f"the largest neurons alone should recover much of the loss: {top}"
    for size, m in f["sae_metrics"].items():
        over = m["loss_recovered_strict"] - top["loss_recovered_strict"]
        assert f["sae_over_top_neurons"][size] == pytest.approx(over, abs=1e-9)
        assert over > 0.03, f"{size} SAE recovers {m['loss_recovered_strict']:.1%}, the 16 largest neurons {top['loss_recovered_strict']:.1%}"
    assert f["untrained_sae"]["loss_recovered_strict"] < top["loss_recovered_strict"] - 0.3, "the untrained SAE must fail against the baseline"
    assert "the 16 largest neurons kept" in f["headline"]


def test_full_latents_beat_neurons_and_random_directions_on_every_seed():
    """Above chance, 1x latents beat the neurons on every SAE seed, and beat random directions encoded the same TopK way (the
    control that isolates the learned directions). Random directions themselves are above the neurons on F1 above chance (the
    TopK encoding alone, as the headline says) but not on the top-100 share."""
    f = findings.load(STEM)
    seeds = f["features_vs_neurons_seeds"]
    assert len(seeds) == 3
    for seed, g in seeds.items():
        for measure in ("f1_above_chance_gap", "top100_share_gap"):
            for tag in ("latents", "latents_minus_random"):
                est, lo, hi = g[tag][measure]
                assert lo > 0, f"seed {seed}: {tag}, {measure} {est:+.3f} [{lo:+.3f}, {hi:+.3f}] should lie above 0"
        r_est, r_lo, r_hi = g["random"]["top100_share_gap"]
        assert r_lo <= 0, f"seed {seed}: random directions beat neurons on the top-100 share too ({r_est:+.3f} [{r_lo:+.3f}, {r_hi:+.3f}])"
    rg = f["features_vs_neurons"]["small"]["median_f1_above_chance"]["random_gap_ci"]
    assert rg[1] > 0 and "above the neurons with the TopK encoding alone" in f["headline"], f"random minus neurons above chance: {rg}"
    assert "ahead of both on all 3 SAE seeds" in f["headline"]
    r = f["rule_f1"]
    assert r["random_large"]["n_live"] > 1000 and r["sae_large"]["n_live"] > 1000, "both large dictionaries need many live units"


def test_full_chance_level_is_what_made_neurons_look_good_and_the_4x_latents_beat_them_above_chance():
    """F1 rewards dense units: the neurons' shuffled-character F1 is high, the sparse units' near zero. Above chance the 4x
    latents are above the neurons (raw F1 had them below); random directions of the same count (the control) stay below the latents."""
    f = findings.load(STEM)
    r = f["rule_f1"]
    assert r["neurons"]["median_f1_chance"] > 0.2 and r["neurons_untrained"]["median_f1_chance"] > 0.4, "dense units score by chance"
    for name in ("sae_small", "sae_large", "random_small", "random_large", "sae_untrained_lm", "random_untrained"):
        assert r[name]["median_f1_chance"] < 0.05, f"{name}: sparse units should score almost nothing by chance ({r[name]['median_f1_chance']:.2f})"
    est, lo, hi = f["features_vs_neurons"]["large"]["median_f1_above_chance"]["latents_gap_ci"]
    assert lo > 0, f"the notebook says the 4x latents are above the neurons above chance: {est:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    assert r["sae_large"]["median_f1"] < r["neurons"]["median_f1"] + 0.05, "the artefact the correction removes: raw F1 had them level or below"
    assert r["sae_large"]["median_f1_above_chance"] > r["random_large"]["median_f1_above_chance"] + 0.05, "the control: random directions"
    assert ", above the neurons (" in f["headline"]


def test_full_an_sae_on_an_untrained_lm_gains_less_over_random_directions_than_on_the_trained_lm(f=None):
    """The paper's control: an SAE trained the same way on an untrained copy of the LM. Read as they are, the untrained LM's neurons
    are mostly window position (which no character rule names), so the control removes each position's mean before the SAE; the
    position check must see position in the raw untrained neurons (its control) and not in the trained ones nor in the control SAE.
    Any basis reads the untrained activations less well, so the control SAE is held to its own floor, random directions (TopK-16)
    on the same activations: the claim is the difference of differences (untrained SAE - its random) - (trained SAE - its random)
    below zero; its control, the same difference between two reseeded SAEs on the trained LM, must straddle zero. The prose
    computes its verdict from both intervals; the headline carries the numbers (checked in smoke too). The kind of latent: the control SAE's best rules are mostly the current character
    alone (the paper's "many single-token features"), the trained SAE's mostly not."""
    full = f is None
    f = f or findings.load(STEM)
    u, pos, one = f["untrained_lm_control"], f["position_vs_character"], f["best_rule_single_char"]
    dd, ctrl = u["dd"], f["untrained_lm_dd_control"]
    gu, gt = u["untrained_sae_minus_untrained_random"][0], u["sae_minus_random"][0]
    assert dd[0] == pytest.approx(gu - gt, abs=1e-5) and dd[1] <= dd[0] <= dd[2] and ctrl[1] <= ctrl[0] <= ctrl[2]
    assert f"gains {gu:+.2f} over them there vs {gt:+.2f} on the trained LM (difference {dd[0]:+.2f} [{dd[1]:+.2f}, {dd[2]:+.2f}]" in f["headline"]
    assert f"current character alone for {one['sae_untrained_lm']:.0%} of its latents vs {one['sae_small']:.0%}" in f["headline"]
    more = one["random_untrained"] > one["sae_untrained_lm"]  # the prose's word follows the numbers
    assert f"(random directions on the same untrained activations: {one['random_untrained']:.0%}, {'more' if more else 'not more'}" in f["headline"]
    if not full:
        return
    assert pos["neurons_untrained"]["share_position_over_character"] > 0.5, f"the raw untrained neurons must be mostly position: {pos}"
    assert pos["neurons"]["share_position_over_character"] < 0.1 and pos["sae_small"]["share_position_over_character"] < 0.1, \
        f"the trained LM's units are about characters, not position: {pos}"
    assert pos["sae_untrained_lm"]["share_position_over_character"] < 0.3, f"position must not dominate the control SAE: {pos}"
    est, lo, hi = u["untrained_sae_minus_sae"]
    assert hi < -0.2, f"the control SAE scores below the trained SAE: {est:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    r = f["rule_f1"]
    assert r["random_untrained"]["median_f1_above_chance"] < r["random_small"]["median_f1_above_chance"], \
        "the prose: random directions read the untrained activations less well than the trained ones"
    assert dd[2] < 0, f"the SAE should gain less over random directions on the untrained LM: {dd}"
    assert ctrl[1] < 0 < ctrl[2], f"the control, two reseeded SAEs on the trained LM, must not differ: {ctrl}"
    assert one["sae_untrained_lm"] > 0.5 > one["sae_small"], f"single-character best rules: {one}"
    assert one["random_untrained"] > one["sae_untrained_lm"], f"the prose: random directions on the untrained activations are more single-character than the SAE: {one}"
    assert f["rule_f1"]["sae_untrained_lm"]["n_live"] > 400, "the control SAE must have live latents to score"
    est, lo, hi = u["untrained_minus_trained_neurons"]
    assert hi < 0, f"above chance, untrained neurons should fall below trained ones: {est:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    assert f["untrained_neuron_density"] > 0.3, "the untrained neurons fire on much of the text: why their raw F1 was high"
    assert "below the SAE on the trained LM" in f["headline"]


def test_full_logit_effect_is_judged_against_random_directions_and_neurons(f=None):
    """The first dashboard latent's lift is held to a bar set by the controls (the 95th percentile of random directions' and
    neurons' own lifts); whether it clears the bar depends on which latent the run picks (it differs between CPUs), so the
    sentence follows the numbers. The control units chosen as the latent was (best fit F1) must stay below the bar; the claim
    about latents in general is a median gap with a bootstrap interval; mismatched pairs must fail."""
    f = f or findings.load(STEM)
    c = f["logit_effect_check"]
    assert c["chars"] == f["dashboard_first_promotes"] and c["lift"] == pytest.approx(c["rate_where_fires"] / c["base_rate"], rel=1e-4)
    assert f["logit_effect_bar"] == pytest.approx(max(c["q95_lift"]["random_directions"], c["q95_lift"]["neurons"]))
    assert f["logit_effect_agrees"] == (c["lift"] > f["logit_effect_bar"]), "the sentence must follow the numbers"
    assert c["share_over_2"]["random_directions"] > 0.05, "random directions clear 2x often: the old fixed 2x bar could not fail"
    assert max(c["best_fit_unit_lift"].values()) <= f["logit_effect_bar"], \
        f"the notebook says the controls chosen as the latent was stay below the bar {f['logit_effect_bar']:.2f}x: {c['best_fit_unit_lift']}"
    for g in ("random_directions", "neurons"):
        est, lo, hi = c[f"latents_minus_{g}"]
        assert lo > 0, f"the notebook says the typical latent's lift beats {g}': {est:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    assert c["shuffled_median_lift"] < 1, f"mismatched latent/characters pairs must not predict what follows ({c['shuffled_median_lift']:.2f}x)"
    assert c["n_units"]["random_directions"] > 1000 and c["n_units"]["neurons"] > 400


def test_full_one_rule_covers_latents_more_than_neurons_at_every_cap():
    by_cap = findings.load(STEM)["cover_by_cap"]
    for cap in ("0.05", "0.1", "0.2", "0.5"):
        neurons, latents, random = (by_cap[n][cap]["median_top_share"] for n in ("neurons", "sae_small", "random_small"))
        assert latents > neurons + 0.1, f"cap {cap}: 1x latents' best rule covers {latents:.0%}, neurons' {neurons:.0%}"
        assert not random > neurons + 0.1, f"cap {cap}: random directions ({random:.0%}) also beat neurons: the gap is the search's"


def test_full_at_matched_sparsity_neurons_need_fewer_rules_than_random_directions_and_lookups_calibrate_the_count():
    """Rules to cover 80% of a unit's firings sampled across its whole activation range. The controls: a one-character lookup
    unit needs one rule, a five-character lookup unit several, at every cap. The comparison of neurons with random directions is
    made at matched sparsity (neurons TopK-16 encoded, as sparse as the random TopK directions): there the neurons need fewer rules at
    every cap. The raw neurons, far denser, need more: the unmatched comparison has the opposite sign, which is why the match matters."""
    f = findings.load(STEM)
    rn, gaps, dens = f["rules_needed"], f["rules_needed_gaps"], f["rules_needed_density"]
    assert dens["neurons_topk16"] == pytest.approx(dens["random_small"], rel=0.1), f"the match: densities {dens}"
    assert dens["neurons"] > 3 * dens["random_small"], f"raw neurons are far denser than the random TopK directions: {dens}"
    for cap in ("0.05", "0.1", "0.2", "0.5"):
        assert rn["lookup_1"][cap]["mean"] == pytest.approx(1.0), f"cap {cap}: {rn['lookup_1'][cap]}"
        assert rn["lookup_5"][cap]["mean"] >= 2.5, f"cap {cap}: five unrelated characters must need several rules: {rn['lookup_5'][cap]}"
        est, lo, hi = gaps["neurons_topk16_minus_random"][cap]
        assert est == pytest.approx(rn["neurons_topk16"][cap]["mean"] - rn["random_small"][cap]["mean"], abs=1e-6)
        assert hi < 0, f"cap {cap}: at matched sparsity neurons minus random directions {est:+.2f} [{lo:+.2f}, {hi:+.2f}]: the notebook says fewer"
        raw = gaps["neurons_minus_random"][cap]
        assert raw[1] > 0, f"cap {cap}: the unmatched comparison (raw neurons) should have the opposite sign: {raw}"
        assert gaps["latents_minus_neurons"][cap][2] < 0, f"cap {cap}: the 1x latents should need fewer rules than neurons"
        assert rn["neurons"][cap]["n_units"] >= 500 and rn["neurons_topk16"][cap]["n_units"] >= 256
    assert f["rules_matched_verdict"] == "fewer" and f["neurons_need_more_rules_than_random"]
    assert "at the same sparsity neurons need fewer rules than random directions at every cap" in f["headline"]
    assert "need more: the raw count follows density" in f["headline"]


def test_full_1x_latents_beat_density_matched_neurons_above_chance():
    """F1 above chance is capped at 1 minus the chance level, lower for dense units. Matched for density (neurons TopK-16 encoded),
    the neurons score far more above chance than raw, and the 1x latents still lead them; the 4x latents' gap is reported as recorded,
    its side in the headline following its interval."""
    f = findings.load(STEM)
    r, g = f["rule_f1"], f["f1_vs_neurons_topk16"]
    assert r["neurons_topk16"]["median_f1_chance"] < 0.05, "density-matched neurons score almost nothing by chance"
    assert r["neurons_topk16"]["median_f1_above_chance"] > r["neurons"]["median_f1_above_chance"] + 0.1, \
        "the control on the ceiling: the same neurons, made sparse, score far higher above chance"
    est, lo, hi = g["sae_small_minus_neurons_topk16"]
    assert lo > 0, f"1x latents minus TopK-16 neurons {est:+.3f} [{lo:+.3f}, {hi:+.3f}]: the notebook says above"
    assert "1x latents above them)" in f["headline"]
    est, lo, hi = g["sae_large_minus_neurons_topk16"]
    side = "below" if hi < 0 else "above" if lo > 0 else "level with"
    assert f"and {side} the TopK-16 neurons ({est:+.2f} [{lo:+.2f}, {hi:+.2f}])" in f["headline"]


def test_full_polysemanticity_measure_flags_random_pairs_and_not_their_parts():
    """The measure must flag units built from two unrelated parts, drawn at random (lookup pairs of characters, equal mixes of
    two 1x latents), and not the parts alone; a second part with a tenth of the top 100 is missed (the 'lower bounds' sentence)."""
    c = findings.load(STEM)["polysemantic_control"]
    assert c["n_lookup_pairs"] >= 50 and c["n_latent_pairs"] >= 50, "many random pairs, none chosen to pass"
    for cap in ("0.05", "0.1", "0.2", "0.5"):
        assert c["lookup_pairs"][cap] >= 0.7 and c["lookup_singles"][cap] <= 0.05, f"cap {cap}: {c['lookup_pairs']} vs {c['lookup_singles']}"
        assert c["latent_pairs"][cap] >= 0.5 and c["latent_pairs"][cap] > c["latent_singles"][cap] + 0.3, \
            f"cap {cap}: latent pairs flagged {c['latent_pairs'][cap]:.0%}, single latents {c['latent_singles'][cap]:.0%}"
    mix = c["latent_pairs_by_mix"]
    assert mix["0.5"] == pytest.approx(c["latent_pairs"]["0.05"]), "the equal mix is the pairs above"
    assert mix["0.1"] < 0.3 < mix["0.5"], f"the notebook says a second meaning with a tenth of the top 100 is mostly missed: {mix}"


def test_full_widening_the_cap_lowers_neurons_no_more_than_lookup_pairs():
    """The cap-widening sentence is read against lookup pairs, which hold no class or position by construction."""
    f = findings.load(STEM)
    drop, by_cap, c = f["cap_drop"], f["cover_by_cap"], f["polysemantic_control"]
    assert drop["neurons"] == pytest.approx(by_cap["neurons"]["0.05"]["needs_second_rule"] - by_cap["neurons"]["0.5"]["needs_second_rule"])
    assert drop["lookup_pairs"] == pytest.approx(c["lookup_pairs"]["0.05"] - c["lookup_pairs"]["0.5"])
    assert drop["lookup_pairs"] > 0.03, "the control must show that a wide cap joins unrelated characters"
    assert drop["neurons"] <= drop["lookup_pairs"] + 0.05, \
        f"neurons fall {drop['neurons']:.2f}, lookup pairs {drop['lookup_pairs']:.2f}: the notebook says 'about as far'"


def test_full_example_neuron_verdict_and_its_lookup_control(f=None):
    """The example neuron needs two rules at 5% and one at 50% (a broad rule that takes in both patterns). The control, a lookup
    unit on its two rules with no position or context, needs two at 5% as well: needing two rules at the narrow cap is what two
    patterns with nothing behind them give. Whether the lookup also collapses to one rule at 50% depends on whether the broad rule
    holds on its characters too (a position rule did not on one machine, 'vowel' did on another), so the prose follows the numbers."""
    ex = (f or findings.load(STEM))["polysemantic_example"]
    for cap in ("0.05", "0.1", "0.2", "0.5"):
        c = ex[f"cap_{cap}"]
        assert c["needs_second_rule"] == (len(c["shares"]) > 1 and c["shares"][1] >= char_features.MIN_SECOND), "verdict and shares disagree"
        lk = ex["lookup"][f"cap_{cap}"]
        assert lk["needs_second_rule"] == (len(lk["shares"]) > 1 and lk["shares"][1] >= char_features.MIN_SECOND)
    assert ex["cap_0.05"]["needs_second_rule"] and not ex["cap_0.5"]["needs_second_rule"]
    assert ex["lookup"]["cap_0.05"]["needs_second_rule"], "the control: a lookup on two rules needs two at the narrow cap, as the neuron"
    if ex["lookup_wide_rule_share"] > 1 - char_features.MIN_SECOND:  # the broad rule holds on the lookup's top 100 too
        assert not ex["lookup"]["cap_0.5"]["needs_second_rule"], "a rule covering the lookup's top 100 leaves no room for a second"
    assert set(ex["lookup"]["cap_0.05"]["rules"]) == set(ex["cap_0.05"]["rules"][:2]), "the lookup is built on the neuron's two rules"
    assert ex["cap_0.05"]["lifts"][0] > 3, f"the example neuron's best rule should be well above its base rate, lift {ex['cap_0.05']['lifts'][0]:.1f}x"


def test_full_splitting_count_is_counted_within_one_dictionary_and_the_verdict_follows_the_numbers(f=None):
    """The control: four 1x dictionaries from other SAE seeds (2,048 candidates, as many as the 4x), matches counted within each
    one. Pooled, they count one feature learned again in several dictionaries as several matches: the pool's multi-matches must be
    mostly one per dictionary, and above every single dictionary's count (why the pool is no control). The verdict: more than some
    one of the four (more), no more than a single one (not more), in between (inconclusive)."""
    full = f is None
    f = f or findings.load(STEM)
    s, verdict = f["split_vs_same_size"], f["split_count_verdict"]
    assert s["n_candidates"] == f["sae_metrics"]["large"]["d_sae"]
    assert s["large"]["2plus"] == pytest.approx(f["split_stats"]["small_latents_with_2plus_children"], abs=1e-9)
    assert s["within_twins_2plus"][0] == pytest.approx(s["one_seed"]["2plus"], abs=1e-9)
    assert max(s["within_twins_2plus"]) <= s["any_twin_2plus"] <= s["joined"]["2plus"] + 1e-9
    expected = ("more" if s["large"]["2plus"] > s["any_twin_2plus"] else
                "not more" if s["large"]["2plus"] <= max(s["within_twins_2plus"]) else "inconclusive")
    assert verdict == expected, f"the verdict must follow the counts: {s}"
    label = {"more": "more than re-training", "not more": "not distinguishable from re-training", "inconclusive": "inconclusive"}[verdict]
    assert f"(splitting count: {label})" in f["headline"]
    if full:
        assert s["n_candidates"] == 2048
        assert s["joined_one_per_sae"] > 0.5, f"the pool's multi-matches must be mostly copies, one per dictionary ({s['joined_one_per_sae']:.0%})"
        assert s["joined"]["2plus"] > max(s["within_twins_2plus"]) + 0.2, "pooling counts copies: far above any one dictionary"


def test_full_co_firing_is_compared_within_one_dictionary_and_the_verdict_follows_the_interval(f=None):
    """Latents of one dictionary compete for its k places, so co-firing is compared within one dictionary: the 4x dictionary's
    matches against matches inside one reseeded 1x dictionary (the matched control). The headline's verdict must follow the bootstrap
    interval of that gap. Pooling matches across separate SAEs (re-learned copies, which must co-fire) is not the control: it co-fires
    more than matches within one dictionary, which is why the control must be matched."""
    f = f or findings.load(STEM)
    s, (est, lo, hi) = f["split_vs_same_size"], f["split_cofire_gap"]
    assert est == pytest.approx(s["large"]["median_cofire"] - s["one_seed"]["median_cofire"], abs=1e-5), \
        "the gap and the medians the prose shows must be one median (mean of the two middle values for an even count)"
    assert lo <= est + 1e-9 and est <= hi + 1e-9
    assert s["one_seed"]["n_families"] >= 10 and s["large"]["n_families"] >= 10, "enough families on both sides for an interval"
    across = f["split_cofire_gap_across_saes"]
    assert across[0] == pytest.approx(s["large"]["median_cofire"] - s["joined"]["median_cofire"], abs=1e-5)
    assert s["joined"]["median_cofire"] > s["one_seed"]["median_cofire"] + 0.1, "copies across SAEs co-fire more than matches within one"
    verdict = "separates" if hi < 0 else "does not separate"
    assert f"co-firing {verdict} splitting from same-size re-training" in f["headline"]
    assert hi >= 0, f"the committed run records 4x minus one reseeded 1x {est:+.2f} [{lo:+.2f}, {hi:+.2f}]: the notebook says not separated"


def test_full_children_cover_their_parents_firings_and_random_latents_do_not():
    f = findings.load(STEM)
    cov = f["split_coverage"]
    assert f["feature_split"]["n_children"] >= 2 and cov["n_families"] >= 10
    assert cov["median_covered"] > cov["median_covered_random"] + 0.2, \
        f"children cover {cov['median_covered']:.0%} of the parents' firings, random latents {cov['median_covered_random']:.0%}"
    assert cov["parent"]["covered"] > cov["parent_random_children"]["covered"], "the shown parent's children should beat random latents"


def test_full_steering_chosen_on_validation_beats_random_latents_of_the_same_norm_on_test():
    f = findings.load(STEM)
    s, v = f["steering"], f["steering_validation"]
    assert (s["latent"], s["scale"]) == (v["latent"], v["scale"]), "the test run must use the pair chosen on validation prompts"
    assert v["margins"][f"{v['latent']} x{v['scale']:g}"] == max(v["margins"].values()), "the chosen pair leads on validation"
    assert s["steered_rate"] > s["base_rate"] + 0.05, f"steering moved its characters only {s['base_rate']:.1%} -> {s['steered_rate']:.1%}"
    assert s["steered_rate"] > s["random_rate_max"], \
        f"a random latent of the same norm produced the feature's characters as often ({s['random_rate_max']:.1%} vs {s['steered_rate']:.1%})"
    assert s["random_rate_mean"] < s["base_rate"] + 0.05, "random pushes of the same norm should not produce the feature's characters"
    dose = f["steering_dose"]
    assert dose["0"] == pytest.approx(s["base_rate"]) and dose[f"{s['scale']:g}"] == pytest.approx(s["steered_rate"])
    loss = f["steered_text_loss"]
    assert f["steered_text_broken"] == (loss[f"{s['scale']:g}"] > loss["0"] + 0.5), "the notebook's verdict on the text must match its numbers"


def test_full_steering_is_held_to_random_directions_of_a_like_base_rate(f=None):
    """Does the feature's direction raise its own characters more than a random direction of the same norm raises its own? (In a
    one-layer model every push reaches the logits through the direct path, so that is the question.) Ranked on the log-odds lift
    against only the directions whose base rate is within a factor 2 of the feature's, fixed before the rerun because over all
    directions the log-odds lift falls with the base rate (rare sets score high) and the raw lift rises with it: p = (k + 1) /
    (n_matched + 1). The verdict follows the numbers: 'beats' (p < 0.05), 'not shown' (a direction as high, p >= 0.05), 'cannot
    decide' (none as high but fewer than 19 near directions). The stated verdict comes from the selection-matched reference: the
    feature against the chosen directions (below) of its base rate, since it was chosen as they were (under the null it is one of
    them), and from it alone; its rank against the unchosen first draw is reported beside it. That first-draw rank is the one a
    choice can inflate, so it is calibrated with the choice counted: in each of n_triples triples of fresh random directions, the one
    with the largest validation lead over the random latents' pushes (the feature's criterion, at its push) is ranked on test against
    the first draw's directions of its own base rate; the first-draw rank's verdict is void ('uncalibrated') only if these chosen
    directions are called features clearly more often than 5% (one-sided binomial p < 0.05 over those that could be called one), and
    the prose says 'clearly' / 'not clearly' from that p; the prose states the calibration's power (the count at which it voids,
    'only' when it did not, and how many rose above every near direction without reaching p < 0.05). Its controls: on which it must
    fire, the same chosen directions raised above every direction of the first draw (a rank biased upward); on which it must not,
    the first draw's own directions each ranked against the others of their base rate (leave one out). The stated verdict's own
    reference is checked the same way: the chosen directions each ranked against the other chosen directions of their base rate
    must not be called features clearly more often than 5% (full run), and the chosen directions raised above every chosen direction
    must be (the must-fire control); the prose labels the verdict one run (seed 0). The unchosen random latents
    of the same dictionary are ranked the same way and reported."""
    full = f is None
    f = f or findings.load(STEM)
    s = f["steering"]
    assert s["feature_own_lift"] == pytest.approx(s["steered_rate"] - s["base_rate"])
    lift = char_features.log_odds_lift
    assert s["feature_log_odds_lift"] == pytest.approx(lift(s["steered_rate"], s["base_rate"], s["n_generated"]), abs=1e-9)
    k, n, p, n_all = s["matched_at_or_above_feature"], s["n_matched"], s["rank_p"], s["n_directions"]
    assert p == pytest.approx((k + 1) / (n + 1)) and n <= n_all
    if n:
        assert (k >= 1) == (s["matched_log_odds_lift_max"] >= s["feature_log_odds_lift"])
    k_all = s["directions_at_or_above_feature"]
    assert s["rank_p_all"] == pytest.approx((k_all + 1) / (n_all + 1)) and len(s["all_as_high_base_rates"]) == k_all
    verdict = "beats" if p < 0.05 else "cannot decide" if k == 0 else "not shown"  # the unmatched-selection comparison
    cal, rl = s["calibration"], s["random_latents"]
    (pl, pb), (fl, fb) = cal["posers"], cal["first_draw"]
    assert len(fl) == n_all and len(pl) == cal["n"] == s["n_triples"] == len(cal["picked"]) == len(cal["validation_leads"])
    assert [i // 3 for i in cal["picked"]] == list(range(cal["n"])), "one direction chosen from each triple"
    again = char_features.rank_against(s["feature_log_odds_lift"], s["base_rate"], fl, fb)  # the feature is ranked against the first draw
    assert (again["matched"]["n"], again["matched"]["k"], again["all"]["k"]) == (n, k, k_all)
    for got, (lifts, bases) in ((cal, (pl, pb)), (rl, (rl["lifts"], rl["bases"]))):  # the chosen directions; the unchosen random latents
        again = char_features.calibrate_rank(lifts, bases, fl, fb)
        assert (again["k"], again["n_able"], again["n"], again["fails"]) == (got["k"], got["n_able"], got["n"], got["fails"])
        assert again["binom_p"] == pytest.approx(got["binom_p"]) and got["fails"] == (got["binom_p"] < 0.05)
        assert got["share"] == (pytest.approx(got["k"] / got["n_able"]) if got["n_able"] else None)
    assert s["rank_verdict"] == ("uncalibrated" if cal["fails"] else verdict), f"the first-draw rank's verdict: its p {p:.3f} ({k} of {n}), void if its calibration fails"
    lc, again = s["calibration_control"], char_features.calibrate_rank_loo(fl, fb)  # the control on which the calibration must not fire
    assert (lc["k"], lc["n_able"], lc["n"], lc["fails"]) == (again["k"], again["n_able"], again["n"], again["fails"]) and lc["n"] == n_all
    assert not lc["fails"], f"the calibration fires on the unchosen draw ranked against itself: {lc}"
    cm, sel = s["chosen_matched"], char_features.rank_against(s["feature_log_odds_lift"], s["base_rate"], pl, pb)  # among the chosen
    assert (cm["n"], cm["k"], cm["max"]) == (sel["matched"]["n"], sel["matched"]["k"], sel["matched_max"]) and cm["p"] == pytest.approx((cm["k"] + 1) / (cm["n"] + 1))
    chosen_verdict = "beats" if cm["p"] < 0.05 else "cannot decide" if cm["k"] == 0 else "not shown"
    assert cm["verdict"] == chosen_verdict, f"the selection-matched verdict must follow its p {cm['p']:.3f} ({cm['k']} of {cm['n']})"
    cc, again = s["chosen_control"], char_features.calibrate_rank_loo(pl, pb)  # the selection-matched reference's own control: chosen against chosen
    assert (cc["k"], cc["n_able"], cc["n"], cc["fails"]) == (again["k"], again["n_able"], again["n"], again["fails"]) and cc["n"] == cal["n"]
    assert cc["binom_p"] == pytest.approx(again["binom_p"]) and cc["fails"] == (cc["binom_p"] < 0.05)
    from scipy.stats import binom
    void_at = next((m for m in range(1, cal["n_able"] + 1) if binom.sf(m - 1, cal["n_able"], 0.05) < 0.05), None)
    ranks = [char_features.matched_rank(x, b, fl, fb) for x, b in zip(pl, pb)]
    top_unable = sum(r["verdict"] == "cannot decide" and r["n"] >= 1 for r in ranks)
    assert (cal["void_at"], cal["top_unable"]) == (void_at, top_unable), "the calibration's power, recomputed"
    stated = chosen_verdict  # the selection-matched rank alone: the calibration tests (and can void) only the first-draw rank
    assert s["verdict"] == stated and f["steering_verdict"] == stated, f"the stated verdict: {f['steering_verdict']!r}"
    label = {"beats": "this chosen latent's direction raises its own characters more than random directions chosen as it was raise theirs",
             "not shown": "not shown beyond random directions chosen as it was",
             "cannot decide": "too few chosen directions of a like base rate to decide (none as high, but so few cannot give p < 0.05)"}[stated]
    n_lat, n_push = (len({key.split(" x")[i] for key in f["steering_validation"]["margins"]}) for i in (0, 1))  # the feature's choice: latents x pushes
    share = f"{cal['share']:.0%}, " if cal["n_able"] else ""  # the prose: the share, 'clearly' / 'not clearly' and the power, from the numbers
    power = (f"it voids at {void_at} or more" if cal["fails"] else f"it voids only at {void_at} or more") if void_at else "no count of them could void it"
    assert (f"{k} as high, rank p {p:.3f} (unchosen; over all {n_all}, which rank rare sets high: {k_all}; chosen directions pass this rank {cal['k']} of "
            f"{cal['n_able']} times ({share}binomial p {cal['binom_p']:.2g}: {'clearly more often than 5%, so it is void' if cal['fails'] else 'not clearly more often than 5%'}; "
            f"with {cal['n_able']} that could be, {power}; {top_unable} more rose above every direction of their base rate without enough of them for p < 0.05; "
            f"the first draw against itself {lc['k']} of {lc['n_able']}); unchosen random latents {rl['k']} of {rl['n_able']}); against the {cm['n']} random "
            f"directions chosen as the feature was (the feature the best of {n_lat} latents x {n_push} pushes on validation, each direction the best of 3 at its push) of a like base rate, {cm['k']} as high, rank p {cm['p']:.3f} "
            f"(chosen directions against each other {cc['k']} of {cc['n_able']}, binomial p {cc['binom_p']:.2g}; one run, seed 0): {label}") in f["headline"]
    if full:
        assert n_all >= 59 and s["n_triples"] >= 40, "enough directions (first draw; chosen) that about 20 lie near the feature's base rate"
        assert cm["n"] >= 19, f"p < 0.05 must be reachable against the chosen directions of the feature's base rate: {cm['n']} (1/(n+1) >= 0.05 below 19)"
        assert s["direction_own_lift_median"] > 0.05, f"random directions raise their own characters: {s}"
        assert s["spearman_base_log_odds"] < 0 < s["spearman_base_raw_lift"], "the prose: log-odds falls with the base rate, raw lift rises"
        assert all(b < s["base_rate"] / 2 for b in s["all_as_high_base_rates"]), "the prose: on log-odds the directions as high are rare sets"
        assert 2 * rl["k"] < rl["n_able"], f"the prose: most unchosen random latents are not called a feature ({rl['k']} of {rl['n_able']})"
        raised = [x + max(fl) - min(pl) + 1.0 for x in pl]  # the control: posers biased above every first-draw direction
        assert char_features.calibrate_rank(raised, pb, fl, fb)["fails"], f"a rank biased upward must fail its calibration: {cal}"
        assert not cc["fails"], f"the chosen directions ranked against each other must not be called features clearly more often than 5%: {cc}"
        raised = [x + max(pl) - min(pl) + 1.0 for x in pl]  # its must-fire control: the chosen directions raised above every chosen direction
        assert char_features.calibrate_rank(raised, pb, pl, pb)["fails"], f"a unit biased above the chosen directions must fail their rank: {cc}"


WRONG_ANSWERS = {"my_loss_recovered": [
    ("def my_loss_recovered(clean, spliced, ablated):\n    return (spliced - clean) / (ablated - clean)", "NOT recovered"),
    ("def my_loss_recovered(clean, spliced, ablated):\n    return (ablated - spliced) / ablated", "divide by the damage, ablated - clean"),
], "my_logit_effect": [
    ("def my_logit_effect(decoder_row, W_out, ln_w, W_U):\n    r = decoder_row @ W_out\n    l = ((r - r.mean()) * ln_w) @ W_U\n"
     "    return -(l - l.mean())", "sign flipped"),
    ("def my_logit_effect(decoder_row, W_out, ln_w, W_U):\n    r = decoder_row @ W_out\n    return ((r - r.mean()) * ln_w) @ W_U",
     "centre the logits over the vocabulary"),
    ("def my_logit_effect(decoder_row, W_out, ln_w, W_U):\n    r = decoder_row @ W_out\n    l = (r - r.mean()) @ W_U\n"
     "    return l - l.mean()", "ln_final's weight"),
]}


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)
