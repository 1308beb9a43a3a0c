"""Notebook 05 (a planted backdoor): smoke run loosely, committed full run against the issue's targets
and against its two checkpoints, whose cards must hold the same numbers and whose weights must reproduce them."""
import pytest
import torch

from glassbox import backdoor, checkpoints, data, findings, training

STEM = "05_backdoor_safety"
KEYS = ["clean_accuracy", "attack_success_rate", "clean_model_attack_success_rate", "trigger_pixel_attribution_share",
        "neurons_carrying_trigger", "detected_without_trigger", "removed_attack_success_rate", "removed_clean_accuracy",
        "fine_pruning_attack_success_rate", "fine_pruning_clean_accuracy", "adaptive_attack", "headline"]
RATES = ["clean_accuracy", "attack_success_rate", "clean_model_attack_success_rate", "trigger_pixel_attribution_share",
         "removed_attack_success_rate", "removed_clean_accuracy", "fine_pruning_attack_success_rate", "fine_pruning_clean_accuracy"]


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    missing = [k for k in KEYS if k not in f]
    assert not missing, f"smoke run did not record {missing}"
    assert all(0 <= f[k] <= 1 for k in RATES), {k: f[k] for k in RATES}
    assert f["clean_accuracy"] > 0.8, "even 200 steps of training should read most clean digits"
    assert f["attack_success_rate"] > 0.8, "200 poisoned steps should already plant the trigger"
    assert f["clean_model_attack_success_rate"] < 0.05, "the clean mnist_mlp must ignore the trigger"
    assert abs(f["removed_clean_accuracy"] - f["clean_accuracy"]) < 0.02, "cutting a few pixels must not break clean digits"
    d = f["detected_without_trigger"]
    assert d["pixels_found_in_trigger"] <= d["pixels_found"] and d["trigger_pixels_missed"] == 9 - d["pixels_found_in_trigger"]
    assert set(f["neurons_carrying_trigger"]) == {"relu1", "relu2", "input_pixels"}
    assert "Neural Cleanse" in f["headline"] and "Fine-Pruning" in f["headline"]


def test_full_findings_meet_the_targets():
    f = findings.load(STEM)
    assert f["clean_accuracy"] >= 0.975, f"backdoored model reads only {f['clean_accuracy']:.4f} of clean digits (target 97.5%)"
    assert f["attack_success_rate"] >= 0.99, f"attack succeeds on only {f['attack_success_rate']:.4f} (target 99%): poisoning too weak?"
    assert f["clean_model_attack_success_rate"] < 0.01, "the control (clean mnist_mlp) must not call triggered digits 7"
    assert f["removed_attack_success_rate"] <= 0.05, f"after removal the attack still works on {f['removed_attack_success_rate']:.4f}"
    assert abs(f["removed_clean_accuracy"] - f["clean_accuracy"]) <= 0.005, "removal must cost at most 0.5 points of clean accuracy"
    d = f["detected_without_trigger"]
    assert d["matched"] and d["flagged_classes"] == [7] and d["anomaly_index"] > 2, "Neural Cleanse should flag exactly class 7"
    assert d["pixels_found"] >= 1 and d["pixels_found_in_trigger"] == d["pixels_found"], "every pixel found blind should be a trigger pixel"
    assert f["fine_pruning_attack_success_rate"] > 0.9, \
        "at the same budget Fine-Pruning should leave the backdoor working (its premise, dormant trigger neurons, fails here)"
    n = f["neurons_carrying_trigger"]
    for layer in ("relu1", "relu2"):
        hit = n[layer]["fewest_for_attack_below_5pct"]
        assert n[layer]["half_of_attribution"] >= 5 and hit["clean_accuracy"] < f["clean_accuracy"] - 0.05, \
            f"{layer}: the claim is that no small set of hidden neurons carries the trigger cheaply; got {n[layer]}"
    assert n["input_pixels"]["attack_success_rate"] <= 0.05, "cutting the 9 true trigger pixels must stop the attack"
    assert abs(n["input_pixels"]["clean_accuracy"] - f["clean_accuracy"]) <= 0.005
    a = f["adaptive_attack"]
    assert a["attack_success_rate"] >= 0.99 and a["pixels_found"] == 0 and a["after_cutting_top_mask_pixels"]["0"]["attack_success_rate"] > 0.9, \
        "the blended trigger should leave the patch-cutting defence with nothing to cut"


def test_full_findings_equal_the_checkpoint_cards():
    f = findings.load(STEM)
    bad, good = checkpoints.load_card("mnist_mlp_backdoored"), checkpoints.load_card("mnist_mlp_backdoor_removed")
    assert bad["metrics"]["clean_accuracy"] == f["clean_accuracy"] and bad["metrics"]["attack_success_rate"] == f["attack_success_rate"], \
        "mnist_mlp_backdoored's card and the findings come from different runs: rerun the notebook in full"
    assert good["metrics"]["clean_accuracy"] == f["removed_clean_accuracy"]
    assert good["metrics"]["attack_success_rate"] == f["removed_attack_success_rate"]
    assert len(good["metrics"]["pixels_cut"]) == f["detected_without_trigger"]["pixels_found"]


def test_committed_checkpoints_reproduce_their_cards():
    mnist = data.load_mnist()
    for name in ("mnist_mlp_backdoored", "mnist_mlp_backdoor_removed"):
        model, metrics = checkpoints.load_model(name), checkpoints.load_card(name)["metrics"]
        assert training.accuracy(model, mnist.x_test, mnist.y_test) == pytest.approx(metrics["clean_accuracy"], abs=2e-4), name
        asr = backdoor.attack_success_rate(model, mnist.x_test, mnist.y_test, 7)
        assert asr == pytest.approx(metrics["attack_success_rate"], abs=2e-4), name
    bad, good = checkpoints.load_model("mnist_mlp_backdoored"), checkpoints.load_model("mnist_mlp_backdoor_removed")
    cut = torch.tensor(checkpoints.load_card("mnist_mlp_backdoor_removed")["metrics"]["pixels_cut"])
    assert not good.fc1.weight[:, cut].any(), "the removed model must not read the cut pixels"
    changed = [n for n, p in bad.state_dict().items() if n not in ("fc1.weight", "fc1.bias") and not torch.equal(p, good.state_dict()[n])]
    assert not changed, f"removal should only touch fc1 (the cut pixels' columns and the bias); also changed: {changed}"
