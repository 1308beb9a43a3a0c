"""Notebook 01 (MNIST MLP probing): the smoke run, loosely, and the committed full run against the
issue's targets and the checkpoint card."""
import pytest

from glassbox import checkpoints, findings

STEM = "01_mnist_mlp_probing"
KEYS = ["test_accuracy", "train_seconds", "probe_accuracy", "attribution_sanity_rank_correlation",
        "top_ablation_drop", "intervention_flip_rate", "intervention_control_flip_rate", "headline"]
CONCEPTS = {"digit", "has_loop", "thick_stroke", "leans_right"}
FEATURES = {"pixels", "relu1", "relu2", "out", "random relu1", "random relu2", "random out"}


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    assert not [k for k in KEYS if k not in f], f"smoke run did not record {[k for k in KEYS if k not in f]}"
    assert 0.8 < f["test_accuracy"] <= 1, "150 smoke steps should already reach > 80%: is the training loop broken?"
    assert set(f["probe_accuracy"]) == CONCEPTS
    assert all(FEATURES <= set(acc) for acc in f["probe_accuracy"].values()), "a probe baseline is missing"
    assert all(0 <= a <= 1 for acc in f["probe_accuracy"].values() for a in acc.values())
    assert f["probe_accuracy"]["digit"]["relu2"] > 0.7, "even a briefly trained MLP's relu2 should carry the digit"
    assert all(-1 <= r <= 1 for r in f["attribution_sanity_rank_correlation"].values())
    assert 0 <= f["intervention_control_flip_rate"] <= f["intervention_flip_rate"] <= 1
    assert 0 < f["top_ablation_drop"] < 0.5


def test_full_findings_meet_the_targets_and_match_the_checkpoint():
    f = findings.load(STEM)
    card = checkpoints.load_card("mnist_mlp")
    assert f["test_accuracy"] == card["metrics"]["test_accuracy"], \
        "the notebook's test accuracy differs from the card: rerun the notebook after retraining (or vice versa)"
    assert f["test_accuracy"] >= 0.98, f"target: >= 98.0% test accuracy, got {f['test_accuracy']:.2%}"
    assert f["train_seconds"] == card["train_seconds"] < 20, "target: training under 20 s (see make bench)"


def test_full_probes_show_what_each_layer_makes_linear():
    p = findings.load(STEM)["probe_accuracy"]
    digit = p["digit"]
    assert digit["relu2"] > digit["pixels"] + 0.05, "training should make the digit more linear than the pixels"
    assert digit["relu2"] > digit["random relu2"] + 0.1, "the random-init baseline should not read the digit as well"
    assert p["has_loop"]["relu2"] > max(p["has_loop"]["pixels"], p["has_loop"]["random relu2"]) + 0.05
    assert abs(p["has_loop"]["relu2"] - p["has_loop"]["digit label"]) < 0.03, \
        "the notebook claims loops are readable about as well as the digit label predicts them"
    thick = p["thick_stroke"]
    assert thick["relu1"] > thick["relu2"] + 0.05 > thick["out"] + 0.05, "the notebook claims thickness fades with depth"
    assert thick["relu2"] < thick["random relu2"], "the notebook claims training sheds thickness below the random baseline"
    assert p["leans_right"]["pixels"] > p["leans_right"]["relu2"] > p["leans_right"]["out"]


def test_full_attribution_passes_the_randomisation_check_only_on_signed_maps():
    f = findings.load(STEM)
    signed, absolute = f["attribution_sanity_rank_correlation"], f["attribution_sanity_rank_correlation_abs"]
    assert set(signed) == {"integrated_gradients", "saliency", "occlusion"}
    assert all(abs(r) < 0.1 for r in signed.values()), f"signed maps should not survive weight randomisation: {signed}"
    assert absolute["integrated_gradients"] > 0.9 and absolute["occlusion"] > 0.85, \
        "the notebook claims |IG| and |occlusion| stay correlated through randomisation (zero on black pixels)"
    assert abs(absolute["saliency"]) < 0.1


def test_full_ablation_and_intervention():
    f = findings.load(STEM)
    assert 0.01 < f["top_ablation_drop"] < 0.1, "the notebook claims no single neuron is essential (largest drop < 10 points)"
    assert f["ablation_cells_within_half_point"] > 0.9
    assert f["intervention_flip_rate"] >= 0.9, "10 chosen relu2 neurons should flip >= 90% of 3s into 8s"
    assert f["intervention_control_flip_rate"] <= 0.05, "random neurons with the same budget should rarely flip"
    curve = f["intervention_curve"]
    assert curve["10"][0] == f["intervention_flip_rate"] and curve["1"][0] < 0.05, "one neuron alone must not suffice"
    assert all(chosen >= random for chosen, random in curve.values())
