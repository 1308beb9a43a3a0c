"""Notebook 00 (paper notes + toy model of superposition): smoke run loosely, committed full run against its claims."""
import pytest
import torch

from glassbox import findings
from glassbox.studies import superposition as sp

STEM = "00_paper_notes"
KEYS = ["tms_features_represented_dense", "tms_features_represented_sparse", "tms_pentagon_max_angle_error_deg",
        "tms_phase_diagram_agreement", "tms_phase_agreement_untrained", "tms_phase_cells_differing", "tms_phase_seeds",
        "tms_phase_same_sign_pairs", "tms_phase_differing_cells", "tms_phase_differing_cells_above_best_candidate",
        "tms_phase_loss_ratio", "tms_phase_beating_cells_less_important_feature",
        "tms_pentagon_neighbour_passes_above", "tms_phase_agreement_all_cells", "tms_phase_boundary_cells",
        "tms_phase_agreement_boundary_cells", "tms_dim_seeds", "tms_sticky_excess", "tms_near_half", "tms_sticky_share_pooled", "tms_excess_other_fractions",
        "tms_sticky_share_by_sparsity", "tms_plateau_at_1", "tms_plateau_at_half", "tms_plateau_dense", "tms_below_smallest_edge", "tms_antipodal_at_half", "tms_antipodal_summary",
        "tms_feature_count_elsewhere", "tms_densest", "tms_train_seconds", "headline"]


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    missing = [k for k in KEYS if k not in f]
    assert not missing, f"smoke run did not record {missing}"
    assert f["tms_features_represented_dense"] < f["tms_features_represented_sparse"] > 5, \
        "even 200 steps should represent more sparse features than dense ones, and more than the 5 dimensions"
    assert f["tms_pentagon_max_angle_error_deg"] < 10, "even a short run should put 5 features near a pentagon"
    assert f["tms_phase_seeds"] == 2, "smoke runs train 2 seeds per cell"
    assert all(0.25 < pooled["uniform"] < 0.8 for pooled in f["tms_sticky_share_pooled"]), \
        "the uniform baseline only depends on the range of D_i; outside this band the range is degenerate"
    assert f["tms_dim_seeds"] == 2 and [len(by) for by in f["tms_sticky_share_by_sparsity"]] == [4, 4], \
        "one share per sparsity of the smoke sweep, for each of its 2 initialisations"
    near = f["tms_near_half"]
    assert len(near["null_p99"]) == len(near["null_max"]) == 2 and all(p <= m for p, m in zip(near["null_p99"], near["null_max"])), \
        f"the null of the count near 1/2: a 99th percentile and a maximum per initialisation: {near}"
    assert "headline" in f and "s:" not in f["headline"].lower() and " s " not in f["headline"], \
        "the headline must quote no seconds"
    dense = f["tms_plateau_dense"]
    assert len(dense["inv_density"]) == 4 and len(dense["D_star"]) == len(dense["length"]) == len(dense["smooth_controls_length"]) == 2, \
        f"the denser smoke sweep: 4 sparsities, 2 new initialisations, one plateau and one set of smooth controls each: {dense}"
    assert dense["points"] == sum(dense["length"]) and f["tms_antipodal_at_half"]["hidden"] == 2, (dense, f["tms_antipodal_at_half"])
    assert len(dense["elsewhere_longest"]) == 2 and dense["points_paired"] <= dense["points"], dense
    pairs = f["tms_antipodal_at_half"]
    assert [len(r) for r in pairs["random"]] == [len(r) for r in pairs["trained"]] and f["tms_antipodal_summary"]["random_cases_paired"] == 0, \
        f"one random control per case at 1/2, and it must fail: {pairs['random']}"


def test_full_toy_model_claims():
    f = findings.load(STEM)
    assert f["tms_features_represented_dense"] == 5, \
        "dense features: the 20 -> 5 model should keep exactly the 5 most important (PCA-like); undertrained?"
    assert f["tms_features_represented_sparse"] >= 10, \
        f"at S = 0.999 far more than 5 features should be represented, got {f['tms_features_represented_sparse']}"
    assert f["tms_pentagon_max_angle_error_deg"] < 1.0, \
        f"5 sparse features in 2 dims should form a regular pentagon; worst angle is off by {f['tms_pentagon_max_angle_error_deg']} deg"


def test_full_phase_diagram_against_the_three_candidate_approximation_and_untrained_weights():
    f = findings.load(STEM)
    assert f["tms_phase_seeds"] == 8, "8 seeds per cell (4 leave cells in local minima)"
    agree, untrained = f["tms_phase_diagram_agreement"], f["tms_phase_agreement_untrained"]
    assert agree >= 0.97, f"with 8 seeds the trained phases should match the three-candidate approximation in >= 97% of cells, got {agree}"
    assert untrained < 0.5, f"control: the same instances before training must not match the approximation, got {untrained}"
    assert f["tms_phase_cells_differing"] == round((1 - agree) * 144) == len(f["tms_phase_differing_cells"]), \
        "the differing cells must agree with the recorded agreement on the 12 x 12 grid and be listed one by one"
    for cell in f["tms_phase_differing_cells"]:
        assert {"r", "p", "trained", "approximation", "trained_loss", "best_candidate_loss"} <= set(cell), cell
    above = sum(c["trained_loss"] > c["best_candidate_loss"] for c in f["tms_phase_differing_cells"])
    assert above == f["tms_phase_differing_cells_above_best_candidate"], "the count quoted in the prose must match the listed cells"


def test_full_superposed_pairs_have_opposite_signs_while_other_seeds_show_the_check_can_fail():
    same = findings.load(STEM)["tms_phase_same_sign_pairs"]
    assert same["best seed of each cell"] == 0, f"claim: every both-kept best model is antipodal: {same}"
    assert same["all seeds"] > 0, f"control: among all seeds some keep both with the same sign (a local minimum): {same}"


def test_full_trained_models_beat_the_superposition_candidate_but_not_the_others():
    ratio = findings.load(STEM)["tms_phase_loss_ratio"]
    for phase in ("not represented", "dedicated dimension"):  # control: candidates the trained models cannot improve on
        assert ratio[phase]["cells below 0.98"] == 0 and abs(ratio[phase]["median"] - 1) < 0.01, \
            f"where the approximation says {phase!r}, trained and candidate losses should match: {ratio[phase]}"
    sup = ratio["superposition"]
    assert sup["cells below 0.98"] >= 10 and sup["min"] < 0.95, \
        f"claim: in many superposition cells the trained model beats all three candidates (not the optimum): {sup}"
    shape = findings.load(STEM)["tms_phase_beating_cells_less_important_feature"]
    assert shape["cells"] == sup["cells below 0.98"] and shape["shorter"] >= 0.8 * shape["cells"] \
        and shape["larger bias"] >= 0.8 * shape["cells"], f"claim: the winners shorten the less important feature and raise its bias: {shape}"


def test_full_at_one_half_all_features_sit_in_orthogonal_antipodal_pairs_and_random_unit_vectors_do_not():
    """The claim: wherever D* is within 0.015 of 1/2, every represented feature has an opposite partner, the m pairs lie
    on orthogonal axes and the features' mean D_i is within 0.01 of 1/2. (2m represented only restates D* ~ 1/2.)
    Control: 2m random unit vectors in the same m dimensions (D* = 1/2 exactly), one per case, must fail the same check."""
    f = findings.load(STEM)
    pairs, summary, m = f["tms_antipodal_at_half"], f["tms_antipodal_summary"], f["tms_antipodal_at_half"]["hidden"]
    assert m == 10 and f["tms_dim_seeds"] == len(pairs["trained"]) >= 3, "the claim must hold over at least 3 initialisations"
    check = lambda a: (a["represented"] == a["with_partner"] > 0 and a["pairs"] == m and a["pair_axes_max_cos"] is not None
                       and a["pair_axes_max_cos"] < 0.05 and abs(a["D_i_mean"] - 0.5) <= 0.01)
    assert all(len(row) >= 1 for row in pairs["trained"]), f"D* must reach 1/2 in every initialisation: {pairs['D_star']}"
    assert all(check(a) for row in pairs["trained"] for a in row), f"claim: orthogonal antipodal pairs at 1/2: {pairs['trained']}"
    assert summary["cases"] == summary["cases_paired"] == sum(f["tms_plateau_at_half"]), summary
    assert [len(r) for r in pairs["random"]] == [len(r) for r in pairs["trained"]], "one control per case"
    assert not any(check(a) for row in pairs["random"] for a in row), f"control: random unit vectors must fail: {pairs['random']}"
    assert all(abs(a["D_star"] - 0.5) <= 1e-3 for row in pairs["random"] for a in row), "the control has D* = 1/2 too"
    assert summary["random_cases_paired"] == 0 and summary["random_with_partner_max"] == 0, summary
    assert summary["hidden"] == m and summary["paired_features"] == 2 * m, "the prose quotes m and 2m from the summary"
    assert summary["represented"] == [2 * m], "the prose says 2m are represented at 1/2"
    assert all(abs(d - 0.5) <= 0.015 for row in pairs["D_star"] for d in row), pairs["D_star"]
    assert len(set.intersection(*map(set, pairs["inv_density"]))) >= 2, \
        f"the prose says D* is at 1/2 at the same two sparsities at least in every initialisation: {pairs['inv_density']}"
    controls = [c for c in pairs["denser"] if c is not None]
    assert controls and all(c["with_partner"] >= c["represented"] - 1 for c in controls), f"the prose: pairs are common there too: {controls}"
    lo, hi = summary["untrained_D_star"]
    assert 0.45 < lo <= hi < 0.7 and abs(summary["init_D_star"] - 0.55) < 1e-6, f"the prose: untrained D* near 0.55: {summary}"


def test_full_d_star_holds_still_at_one_half_longer_than_at_any_other_level():
    """The claim: on the denser grid D* stays within 0.015 of 1/2 and moves at most 0.01 over at least 4 neighbouring
    sparsities, with the features in orthogonal pairs at each. Control: the longest still run of the same curve at any
    level at least 0.03 from 1/2 (recomputed here from the recorded D*, and as recorded) is shorter."""
    dense = findings.load(STEM)["tms_plateau_dense"]
    x = torch.tensor(dense["inv_density"])
    assert len(x) == 16 and x[0] == pytest.approx(1.8, abs=0.01) and x[-1] == pytest.approx(5.0, abs=0.01)
    for d, length, elsewhere, span in zip(dense["D_star"], dense["length"], dense["elsewhere_longest"], dense["D_star_range"]):
        d = torch.tensor(d)
        assert length >= 4, f"claim: a plateau of at least 4 sparsities at 1/2: {d.tolist()}"
        # recomputed from the recorded D* (rounded to 3 decimals, which can move one point across an edge)
        assert abs(sp.plateau_at(d, 0.5)[1] - length) <= 1, f"the recorded plateau must be the measure's: {length}, {d.tolist()}"
        assert span[1] - span[0] <= 0.01 + 1e-9 and abs(sum(span) / 2 - 0.5) <= 0.015, span
        again = sp.still_run_elsewhere(d, 0.5)
        assert abs(again - elsewhere) <= 1, f"the recorded control must be the measure's: {elsewhere}, {again}"
        assert length > max(again, elsewhere) + 1, f"control: a still run elsewhere as long as the plateau: {length}, {again}, {elsewhere}"
        assert d[0] > 0.55 and d[-1] < 0.45, f"the grid must reach past the plateau on both sides: {d.tolist()}"
    assert dense["points"] == sum(dense["length"]) == dense["points_paired"], f"claim: orthogonal pairs all along the plateau: {dense}"
    assert all(step > 0.01 for step in dense["smooth_mean_step"]), f"the prose: smooth curves fall more than 0.01 a step: {dense}"


def test_full_a_feature_count_beats_a_uniform_spread_at_one_half_and_elsewhere_too():
    """Observed, and stated as no evidence of stickiness: the count near 1/2 beats the uniform bar, and so do windows
    that touch no fraction (features of one sparsity share nearly the same D_i)."""
    f = findings.load(STEM)
    near, elsewhere = f["tms_near_half"], f["tms_feature_count_elsewhere"]
    assert near["null_draws"] == 10_000 and len(near["null_p99"]) == len(near["observed"]), near
    assert all(o > p for o, p in zip(near["observed"], near["null_p99"])), f"observed: above the uniform bar at 1/2, {near}"
    assert all(n >= 1 for n in elsewhere["above_bar"]), f"the prose says windows away from the fractions beat their bar too: {elsewhere}"


def test_full_the_pooled_share_is_not_the_evidence():
    pooled = findings.load(STEM)["tms_sticky_share_pooled"]
    assert all(p["features"] > 100 for p in pooled), "the share must be over all represented features of the sweep"
    f = findings.load(STEM)
    other, near = f["tms_excess_other_fractions"], f["tms_near_half"]
    for o, p, observed, uniform in zip(other, pooled, near["observed"], near["uniform"]):
        assert o < 0, f"observed: the fractions other than 1/2 together hold fewer features than a uniform spread: {other}"
        # each feature counts for its nearest fraction, so the pooled excess is the excess at 1/2 plus the others' (an identity)
        assert (p["share"] - p["uniform"]) * p["features"] == pytest.approx(observed - uniform + o, abs=1.0), (pooled, near, other)
    assert f["tms_sticky_excess"][0]["2/3"]["observed"] < f["tms_sticky_excess"][0]["2/3"]["uniform"], "2/3 holds fewer than uniform"
    assert f["tms_below_smallest_edge"] == pytest.approx(0.345), "the prose names the edge the code counts below"
    assert all(0.3 < p["below_smallest"] < 0.7 for p in pooled), f"about half fall below 0.345 at the sparsest settings: {pooled}"
    for by in f["tms_sticky_share_by_sparsity"]:
        assert max(s for s in by[2:9] if s is not None) >= 0.9 and by[-1] < 0.2, f"claim: high mid-sweep, low at the sparsest: {by}"


def test_full_dense_d_star_of_one_is_total_norm_not_one_dimension_each():
    dense = findings.load(STEM)["tms_densest"]
    assert all(abs(v - 10) < 1 for v in dense["squared_frobenius"]), f"D* ~ 1 means ||W||_F^2 ~ m = 10: {dense}"
    assert all(n < 10 for n in dense["features_above_half"]), f"claim: fewer than 10 features get a norm above 0.5: {dense}"
    assert all(0.7 < lo <= hi < 1.1 for lo, hi in dense["gram_eigenvalues"]), f"claim: W W^T is close to a projection: {dense}"
    assert all(hi > 1.5 for lo, hi in dense["gram_eigenvalues_untrained"]), f"control: untrained W W^T is not: {dense}"


def test_full_pentagon_bias_cuts_off_only_small_interference():
    above = findings.load(STEM)["tms_pentagon_neighbour_passes_above"]
    assert 0.4 < above < 0.9, f"the prose says interference passes the ReLU once the active feature exceeds {above}"


def test_full_phase_agreement_on_boundary_cells_beats_the_baselines():
    f = findings.load(STEM)
    edge, every = f["tms_phase_agreement_boundary_cells"], f["tms_phase_agreement_all_cells"]
    assert every["trained"] == f["tms_phase_diagram_agreement"], "the two records of the agreement must match"
    assert every["always_superposition"] > 0.7 and every["simple_rule"] > 0.85, \
        f"the prose says answers that need no training already agree in most cells: {every}"
    assert f["tms_phase_boundary_cells"] >= 15, "enough boundary cells to count"
    assert edge["trained"] >= edge["simple_rule"] + 0.15 and edge["trained"] >= 0.8, \
        f"claim: on boundary cells training beats the simple rule: {edge}"
    for control in ("untrained", "always_superposition", "simple_rule"):
        assert edge[control] < 0.8, f"control {control!r} must fail the same bar on boundary cells: {edge}"


def test_full_headline_quotes_the_findings():
    f = findings.load(STEM)
    h = f["headline"]
    for text in (f"keep {f['tms_features_represented_dense']} when dense", f"{f['tms_features_represented_sparse']} at S=0.999",
                 f"within {f['tms_pentagon_max_angle_error_deg']:.2f} deg", f"best of {f['tms_phase_seeds']} seeds",
                 f"three-candidate approximation in {f['tms_phase_diagram_agreement']:.0%} of cells",
                 f"({f['tms_phase_agreement_untrained']:.0%} before training)",
                 f"{f['tms_phase_agreement_boundary_cells']['trained']:.0%} of boundary cells",
                 f"({f['tms_antipodal_summary']['cases_paired']} of {f['tms_antipodal_summary']['cases']} cases; ",
                 f"D* = 1/2 too: {f['tms_antipodal_summary']['random_cases_paired']} of {f['tms_antipodal_summary']['cases']})",
                 f"over {min(f['tms_plateau_dense']['length'])} to {max(f['tms_plateau_dense']['length'])} neighbouring sparsities",
                 f"(at any other level: at most {max(f['tms_plateau_dense']['elsewhere_longest'])})"):
        assert text in h, f"the headline should quote {text!r}: {h}"


WRONG_ANSWERS = {"my_feature_dimensionality": [
    ("def my_feature_dimensionality(W):\n    dots = W.transpose(1, 2) @ W\n"  # W_i . W_j, W_i not normalised
     "    return W.norm(dim=1) ** 2 / (dots ** 2).sum(-1)",
     "not normalised"),
    ("def my_feature_dimensionality(W):\n    unit = W / W.norm(dim=1, keepdim=True)\n"  # overlaps not squared
     "    return W.norm(dim=1) ** 2 / (unit.transpose(1, 2) @ W).sum(-1)",
     "square each overlap"),
    ("def my_feature_dimensionality(W):\n    unit = W / W.norm(dim=1, keepdim=True)\n"  # the sum skips j = i
     "    overlaps = (unit.transpose(1, 2) @ W) ** 2\n"
     "    return W.norm(dim=1) ** 2 / (overlaps.sum(-1) - overlaps.diagonal(dim1=1, dim2=2))",
     "keep j = i"),
    ("def my_feature_dimensionality(W):\n    unit = W / W.norm(dim=2, keepdim=True)\n"  # normalised over the features axis
     "    return W.norm(dim=1) ** 2 / ((unit.transpose(1, 2) @ W) ** 2).sum(-1)",
     "normalise over the hidden axis (1)"),
], "my_toy_loss": [
    ("def my_toy_loss(model, x):\n    return ((x - model(x)) ** 2).sum(-1).mean(0)", "importance is missing"),
    ("def my_toy_loss(model, x):\n    return (model.importance * (x - model(x)) ** 2).mean(-1).mean(0)", "averaged over the features"),
    ("def my_toy_loss(model, x):\n    return (model.importance * (x - model(x)) ** 2).sum(-1).sum(0)", "summed over the batch"),
]}


def test_full_exercise_a_quarter_of_the_training_already_makes_the_pentagon():
    """Exercise 4's answer quotes these; the measure must be able to fail: an untrained 5-in-2 model is no pentagon."""
    e = findings.load(STEM)["exercise_short_pentagon"]
    assert e["full"]["steps"] == 4 * e["quarter"]["steps"] and e["full"]["max_angle_error_deg"] < 0.5
    assert e["quarter"]["max_angle_error_deg"] < 1.0 and e["quarter"]["instances"] == 4
    torch.manual_seed(0)
    untrained = sp.ToyModel(5, 2, 4, feature_probability=0.05)
    angles = sp.neighbour_angles(untrained.W.detach()[0])
    assert (angles - 72).abs().max() > 5, "control: random weights must not pass as a pentagon"


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)


def test_full_exercise_a_linear_toy_model_keeps_one_feature_per_dimension():
    f = findings.load(STEM)
    linear = f["exercise_linear_toy"]
    assert linear["represented"] == 5, f"without a ReLU the best solution is PCA's, 5 features in 5 dims; got {linear['represented']}"
    assert linear["largest_superposition"] < 0.01, f"the kept features should be orthogonal, overlap {linear['largest_superposition']}"
    assert f["tms_features_represented_sparse"] > linear["represented"], "the answer contrasts it with the ReLU model's superposition"
