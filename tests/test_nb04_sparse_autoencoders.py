"""Notebook 04 (sparse autoencoders): the smoke run, loosely; the committed full run against the
issue's targets; the committed SAE checkpoints against their cards and the findings."""
import pytest
import torch

from glassbox import checkpoints, data, findings, sae

STEM = "04_sparse_autoencoders"
KEYS = ["toy_mmcs", "mnist_sae_l0", "mnist_sae_fvu", "mnist_sae_dead_fraction", "mnist_sae_spliced_accuracy",
        "median_sae_fvu", "median_sae_spliced_accuracy", "purity_sae_vs_neurons", "feature_ablation_effect",
        "feature_ablation_control", "sae_train_seconds", "headline"]
SAES = ["sae_toy_topk", "sae_mnist_relu1", "sae_mnist_relu2", "sae_median_resid"]


def fraction(x) -> bool:
    return 0 <= x <= 1


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    assert not [k for k in KEYS if k not in f], f"smoke run did not record {[k for k in KEYS if k not in f]}"
    assert -1 <= f["toy_mmcs"] <= 1 and f["mnist_sae_l0"] > 0 and f["mnist_sae_fvu"] >= 0 and f["median_sae_fvu"] >= 0
    assert all(map(fraction, [f["mnist_sae_dead_fraction"], f["mnist_sae_spliced_accuracy"], f["median_sae_spliced_accuracy"]]))
    assert set(f["purity_sae_vs_neurons"]) == {"relu1", "relu2"}
    assert all(fraction(p) for layer in f["purity_sae_vs_neurons"].values() for p in layer.values())
    assert 0 <= f["feature_ablation_effect"]["digit"] <= 9 and fraction(f["feature_ablation_effect"]["clamp_flip_rate"])
    assert f["feature_ablation_control"]["n_latents"] > 0
    assert f["sae_train_seconds"]["total"] > 0


def test_full_findings_meet_the_targets():
    f = findings.load(STEM)
    assert f["toy_mmcs"] >= 0.95, f"target: the toy SAE recovers the true features with MMCS >= 0.95, got {f['toy_mmcs']:.3f}"
    assert f["toy_mmcs"] > f["toy_mmcs_by_sae"]["topk_untrained"] + 0.2, "recovery must beat the untrained decoder by far"
    assert f["mnist_sae_spliced_accuracy"] >= f["mnist_clean_accuracy"] - 0.01, \
        "target: the MNIST MLP with the relu1 SAE spliced in stays within 1 point of the clean model"
    assert f["mnist_sae_l0"] < 64 and f["mnist_sae_fvu"] < 0.1 and f["mnist_sae_dead_fraction"] < 0.1, \
        "the chosen relu1 SAE should be sparse (L0 < half of 128 neurons), faithful (FVU < 0.1) and mostly alive"
    sweep = {r["sae"]: r for r in f["mnist_sae_sweep"]}
    topk = sorted((r for r in sweep.values() if r["architecture"] == "topk"), key=lambda r: r["l0"])
    assert all(a["fvu"] > b["fvu"] for a, b in zip(topk, topk[1:])), "the frontier: a larger k must reconstruct better"
    assert f["median_sae_spliced_accuracy"] >= f["median_clean_accuracy"] - 0.02, "the median SAE must keep the model's accuracy"
    assert f["median_sae_fvu"] < 0.1


def test_full_feature_intervention_beats_its_control():
    f = findings.load(STEM)
    effect, control = f["feature_ablation_effect"], f["feature_ablation_control"]
    assert control["n_latents"] == 20
    assert effect["target_drop"] > 2 * control["target_drop"] and effect["target_drop"] > 0.03, \
        "switching off the chosen latent must hurt its digit far more than a random latent hurts its own"
    assert effect["max_other_change"] < 0.01, "switching off the chosen latent must leave the other digits alone"
    assert control["target_drop_median"] < 0.005, "a typical random latent should not move its digit on its own"
    assert effect["clamp_flip_rate"] > 0.3 > 0.1 > control["clamp_flip_rate"], \
        "clamping the chosen latent on must turn many other digits into its digit; random latents on average must not"


def test_full_findings_equal_the_committed_sae_cards():
    f = findings.load(STEM)
    cards = {name: checkpoints.load_sae_card(name) for name in SAES}
    relu1 = cards["sae_mnist_relu1"]["metrics"]
    assert relu1 == {"l0": f["mnist_sae_l0"], "fvu": f["mnist_sae_fvu"], "dead_fraction": f["mnist_sae_dead_fraction"],
                     "spliced_accuracy": f["mnist_sae_spliced_accuracy"]}, "rerun the notebook: findings and card differ"
    assert cards["sae_median_resid"]["metrics"]["fvu"] == f["median_sae_fvu"]
    assert cards["sae_median_resid"]["metrics"]["spliced_accuracy"] == f["median_sae_spliced_accuracy"]
    assert cards["sae_toy_topk"]["metrics"]["mmcs"] == f["toy_mmcs"]
    assert cards["sae_mnist_relu2"]["metrics"] == f["mnist_relu2_sae"]
    seconds = f["sae_train_seconds"]
    assert cards["sae_mnist_relu1"]["train_seconds"] == round(seconds["mnist_relu1"], 2)
    assert seconds["total"] < 180, "SAE training should take well under the 6-minute notebook budget"


@pytest.mark.parametrize("name, model", [("sae_mnist_relu1", "mnist_mlp"), ("sae_mnist_relu2", "mnist_mlp"),
                                         ("sae_median_resid", "median")])
def test_committed_saes_belong_to_the_committed_models(name, model):
    assert checkpoints.load_sae_card(name)["config"]["model_sha256"] == checkpoints.load_card(model)["weights_sha256"], \
        f"{model} was retrained after {name} was: rerun notebooks/04_sparse_autoencoders.ipynb (make journal)"


def test_committed_relu1_sae_reproduces_its_card():
    """Differential: load the committed SAE, recompute its metrics from scratch, compare with the card."""
    card = checkpoints.load_sae_card("sae_mnist_relu1")
    trained = checkpoints.load_sae("sae_mnist_relu1")
    mlp, mnist = checkpoints.load_model("mnist_mlp"), data.load_mnist()
    with torch.no_grad():
        metrics = sae.evaluate_sae(trained, sae.collect_activations(mlp, "relu1", mnist.x_test))
    metrics["spliced_accuracy"] = sae.spliced_accuracy(mlp, "relu1", trained, mnist.x_test, mnist.y_test)
    assert metrics == pytest.approx(card["metrics"], abs=1e-5), "the committed SAE does not reproduce its card"
    assert card["hook_name"] == "relu1" and card["model_name"] == "mnist_mlp"
