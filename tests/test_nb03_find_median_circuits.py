"""Notebook 03 (how the median transformer works): smoke run loosely; the committed full run against the issue's
targets and against every number its markdown states."""
import math

import pytest

from glassbox import checkpoints, findings

STEM = "03_find_median_circuits"
KEYS = ["attention_entropy_last_pos", "ov_fit_r2", "idealised_model_agreement", "ablation_accuracy",
        "error_prediction_precision", "error_prediction_recall", "headline", "qk_variance_share", "bonus_test",
        "dla", "bias_test", "patching", "error_prediction", "hypothesis_ablations", "min_model", "slope_vs_attention"]
ABLATIONS = ["none", "attention pattern: zero", "attention pattern: mean", "attention pattern: resample",
             "attention pattern: uniform", "positional embeddings: zero", "positional embeddings: mean",
             "positional embeddings: resample", "LayerNorm-1 scale: mean", "LayerNorm-1 scale: resample",
             "final LayerNorm scale: mean", "final LayerNorm scale: resample"]
HYPOTHESIS = "hypothesis (key-only attention)"


def near(value: float, claim: float, tol: float, what: str) -> None:
    assert abs(value - claim) <= tol, f"{what} = {value}, but the notebook's markdown says {claim}: rerun or update the text"


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    missing = [k for k in KEYS if k not in f]
    assert not missing, f"smoke run did not record {missing}"
    assert 1.9 < f["attention_entropy_last_pos"] <= math.log(7), "the median model's attention should be near uniform"
    assert f["ov_fit_r2"] > 0.9, "the OV table should be tent-shaped whatever the sample size (it uses no data)"
    assert f["idealised_model_agreement"] > 0.95
    assert set(f["ablation_accuracy"]) == set(ABLATIONS)
    assert all(0 <= a <= 1 for a in f["ablation_accuracy"].values())
    assert f["ablation_accuracy"]["attention pattern: zero"] < 0.3, "without the head's output the model cannot work"
    assert f["patching"]["changed at 2"]["v at changed position"] > 0.9
    assert 0 <= f["error_prediction_precision"] <= 1 and 0 <= f["error_prediction_recall"] <= 1
    assert f["min_model"]["attention_entropy_last_pos"] < 0.5, "the min model should attend sharply"


def test_full_findings_are_for_the_committed_checkpoint():
    f, card = findings.load(STEM), checkpoints.load_card("median")
    assert f["checkpoint_sha256"] == card["weights_sha256"][:16], \
        "checkpoints/median.pt changed since notebook 03 ran: rerun it (make journal) and recheck its text"
    assert f["d_model"] == card["config"]["d_model"]
    assert abs(f["model_uniform_accuracy"] - card["metrics"]["uniform_accuracy"]) < 0.001, \
        "accuracy on fresh uniform lists should match notebook 02's card"


def test_full_attention_and_qk_claims():
    f = findings.load(STEM)
    near(f["attention_entropy_last_pos"], 1.9425, 0.00005, "entropy of the last row")
    assert f["attention_entropy_last_pos"] >= 0.995 * math.log(7), "claim: attention is almost uniform"
    assert f["attention_entropy_uniform"] == round(math.log(7), 4)
    share = f["qk_variance_share"]
    near(share["query token"], 0.001, 0.0005, "query token share")
    near(share["key token"], 0.434, 0.001, "key token share")
    near(share["key position"], 0.459, 0.001, "key position share")
    near(share["interactions"], 0.106, 0.001, "interactions share")
    near(f["qk_max_weight_ratio"], 1.742, 0.001, "largest weight ratio")
    assert f["attention_by_position"][-1] > max(f["attention_by_position"][:-1]), "claim: the last position gets more"
    near(f["attention_by_value"]["max"], 0.1533, 0.0001, "most attention by value")
    s = f["slope_vs_attention"]
    near(s["corr_slope_key_score"], -0.709, 0.001, "slope vs key score correlation")
    near(s["slope_spread"], 0.116, 0.001, "slope spread")
    near(s["slope_times_attention_spread"], 0.085, 0.001, "slope x attention spread")
    near(s["slope_min"], 239, 1, "flattest tent")
    near(s["slope_max"], 351, 1, "steepest tent")


def test_full_ov_claims():
    f = findings.load(STEM)
    assert f["ov_fit_r2"] >= 0.95, f"the tent explains only {f['ov_fit_r2']} of the OV table"
    near(f["ov_fit_r2"], 0.969, 0.0005, "tent fit R2")
    near(f["ov_fit"]["r2_last_position"], 0.874, 0.0005, "tent fit R2 at the last position")
    near(f["ov_fit"]["with_bonus"]["bonus_over_c"], 2.2, 0.05, "fitted bonus / c")
    near(f["ov_naive_vs_exact_corr"], 0.916, 0.0005, "textbook vs exact OV correlation")
    b = f["bonus_test"]
    assert b["tent"] == {"uniform": 1.0, "few_distinct": 1.0, "pairs": 1.0}, "the idealised tent must compute medians exactly"
    near(b["tent + fitted bonus"]["uniform"], 0.975, 0.0005, "tent+bonus on uniform lists")
    near(b["tent + fitted bonus"]["few_distinct"], 0.977, 0.0005, "tent+bonus on few_distinct")
    near(b["trained model"]["uniform"], 0.9998, 0.00005, "trained model on uniform (bonus test)")
    near(b["trained model"]["few_distinct"], 0.9993, 0.00005, "trained model on few_distinct (bonus test)")
    assert all(b["trained model"][k] - b["tent + fitted bonus"][k] > 0.004 for k in b["tent"]), \
        "claim: a bonus of the fitted size makes the idealised model worse than the trained one on every set"


def test_full_dla_and_bias_claims():
    f = findings.load(STEM)
    d = f["dla"]
    for j in range(6):
        near(d[f"value {j}"]["correct"], 22, 0.5, f"value {j} logit to the correct answer")
        near(d[f"value {j}"]["margin"], 0.9, 0.05, f"value {j} margin")
    near(d["value 6"]["margin"], 0.775, 0.0005, "last position's value margin")
    near(d["direct token"]["margin"], 0.12, 0.0005, "direct path margin")
    near(d["direct position"]["margin"], 0.11, 0.0015, "position embedding margin")
    near(d["b_O"]["margin"], 0.18, 0.0055, "b_O margin")
    near(d["bias"]["correct"], -22.8, 0.05, "bias to correct")
    near(d["bias"]["margin"], -0.54, 0.005, "bias margin")
    v = f["last_position_vote"]
    near(v["value 6 + direct token"], 0.895, 0.0005, "value 6 + direct")
    near(v["mean of values 0-5"], 0.919, 0.0005, "mean of the other votes")
    t = f["bias_test"]
    near(t["column_residual_vs_bias_corr"], -0.876, 0.0005, "bias vs the tent's column residual")
    without = t["accuracy_without_bias_by_median"]
    near(without["0-4"], 0.093, 0.0005, "edge medians without bias")
    near(without["45-49"], 0.098, 0.0005, "edge medians without bias")
    assert without["20-24"] == 1.0 and min(t["accuracy_by_median"].values()) >= 0.999, "claim: 100% in every bin with the bias"


def test_full_ablation_claims():
    a = findings.load(STEM)["ablation_accuracy"]
    assert set(a) == set(ABLATIONS)
    claims = {"attention pattern: zero": 0.136, "attention pattern: mean": 0.9994, "attention pattern: resample": 0.9974,
              "attention pattern: uniform": 0.9974, "positional embeddings: zero": 0.929, "positional embeddings: mean": 0.979,
              "positional embeddings: resample": 0.949, "LayerNorm-1 scale: mean": 0.9988, "LayerNorm-1 scale: resample": 0.9948,
              "final LayerNorm scale: mean": 0.9897, "final LayerNorm scale: resample": 0.9779}
    for name, claim in claims.items():
        near(a[name], claim, 0.0005, name)
    assert all(a["none"] - a[f"attention pattern: {h}"] <= 0.0025 for h in ("mean", "resample", "uniform")), \
        "claim: any averaging pattern costs at most 0.25 points"


def test_full_patching_claims():
    p = findings.load(STEM)["patching"]
    two, six = p["changed at 2"], p["changed at 6"]
    assert two["v at changed position"] > 0.99 and two["embed at changed position"] > 0.99 and two["z at last position"] > 0.99
    assert abs(two["k at changed position"]) < 0.01 and abs(two["q at last position"]) < 0.01, "keys and queries carry nothing"
    assert two["largest at other positions"] < 0.01 and six["largest at other positions"] < 0.01
    near(six["v at changed position"], 0.805, 0.0005, "value share when the last number changes")
    near(six["q at last position"], 0.07, 0.005, "query share when the last number changes")
    near(six["resid_post at last position"], 1.0, 0.005, "resid_post restores everything")


def test_full_verifications_meet_the_targets():
    f = findings.load(STEM)
    assert f["idealised_model_agreement"] >= 0.99, f"target: the hand-built model agrees on >= 99%, got {f['idealised_model_agreement']}"
    near(f["idealised_model_agreement"], 0.99986, 0.000005, "idealised agreement")
    assert f["idealised_model_accuracy"] == 1.0, "the exact tent average is the median, always"
    e = f["error_prediction"]
    h, u = e[HYPOTHESIS], e["uniform attention"]
    assert (f["error_prediction_precision"], f["error_prediction_recall"]) == (h["precision"], h["recall"])
    assert (h["predicted_errors"], h["actual_errors"], h["hits"]) == (27, 21, 17), "the markdown states 27 predicted, 21 actual, 17 hits"
    near(h["precision"], 0.63, 0.005, "error precision")
    near(h["recall"], 0.81, 0.005, "error recall")
    assert h["families_with_errors"] == e["families_with_errors"] == ["uniform", "few_distinct", "sorted", "descending", "clipped_gaussian"]
    assert u["predicted_errors"] == 541 and u["precision"] < 0.05, "claim: uniform attention predicts far too many errors"
    assert f["error_anatomy"] == {"n": 21, "off_by_at_most_3": 21, "answer_is_a_value_repeated_3_times": 12}, f["error_anatomy"]
    ab, none = f["hypothesis_ablations"], f["ablation_accuracy"]["none"]
    assert all(none - acc < 0.001 for acc in ab["unused"].values()), f"target: removing the unused costs < 0.1 points: {ab['unused']}"
    near(none - ab["unused"]["both"], 0.00008, 0.00001, "cost of removing both unused parts (0.008 points)")
    ess = ab["essential"]
    near(ess["value vectors (zeroed)"], 0.136, 0.0005, "values zeroed")
    near(ess["averaging (last position attends only to itself)"], 0.162, 0.0005, "no averaging")
    near(ess["output bias (ln_final.b and b_U removed)"], 0.794, 0.0005, "bias removed")
    assert max(ess.values()) < 0.8, "removing an essential part must cost at least 20 points"


def test_full_widths_use_the_same_algorithm():
    w = findings.load(STEM)["widths"]
    assert set(w) == {"16", "32", "64", "128"}
    for d, c in w.items():
        assert c["attention_entropy_last_pos"] >= 1.939 and c["ov_fit_r2"] >= 0.907, f"d_model {d}: {c}"
        assert c["idealised_model_agreement"] == c["accuracy"], "the hand-built model is always right, so agreement = accuracy"
        card = checkpoints.load_card("median" if d == "64" else f"median_d{d}")
        assert abs(c["accuracy"] - card["metrics"]["uniform_accuracy"]) < 0.01, \
            f"d_model {d}: {c['accuracy']} here, {card['metrics']['uniform_accuracy']} on its card: a different checkpoint?"
    near(w["16"]["accuracy"], 0.8335, 0.00005, "16-wide accuracy")
    near(w["16"]["ov_fit_r2"], 0.966, 0.0005, "16-wide tent R2")
    near(w["32"]["ov_fit_r2"], 0.988, 0.0005, "32-wide tent R2")
    near(w["128"]["ov_fit_r2"], 0.907, 0.0005, "128-wide tent R2")
    assert w["128"]["accuracy"] == 1.0


def test_full_min_contrast_and_headline():
    f = findings.load(STEM)
    m = f["min_model"]
    near(m["attention_entropy_last_pos"], 0.120, 0.0005, "min model entropy")
    near(m["attention_on_minimum"], 0.94, 0.005, "min model attention on the minimum")
    assert m["ov_rows_peaking_at_own_token"] == 1.0 and f["median_ov_rows_peaking_at_own_token"] == 1.0
    near(m["ov_tent_fit_r2"], 0.022, 0.0005, "min model tent R2")
    for got, claim in zip(m["attention_by_value_0_10_20"], [0.93, 0.23, 0.05]):
        near(got, claim, 0.005, "min model attention to the values 0, 10, 20")
    assert m["accuracy"] >= 0.999
    assert "0.969" in f["headline"] and "99.986%" in f["headline"] and "0.63" in f["headline"], f["headline"]
