"""Notebook 05 (a planted backdoor): smoke run loosely, committed full run against the claims it makes
and against its two checkpoints, whose cards must hold the same numbers and whose weights must reproduce them."""
import pytest
import torch

from glassbox import findings, training
from glassbox.studies import backdoor, mnist_mlp
from glassbox.journal import checkpoints

STEM = "05_backdoor_safety"
KEYS = ["clean_accuracy", "attack_success_rate", "clean_model_attack_success_rate", "trigger_pixel_attribution_share",
        "neurons_carrying_trigger", "neuron_removal_cost", "best_single_neuron_attack_success_rate", "detected_without_trigger",
        "neural_cleanse_checks", "neural_cleanse_false_positives", "neural_cleanse_backdoors_matched",
        "removed_attack_success_rate", "removed_clean_accuracy", "fine_pruning_budget", "fine_pruning_table",
        "fine_pruning_sweep", "fine_pruning_attack_success_rate", "fine_pruning_clean_accuracy",
        "fine_pruning_lowest_attack_within_margin", "adaptive_attack", "headline", "clean_model_trigger_pixel_attribution_share",
        "pixel_removal_control", "pixel_removal_cost", "all_neurons_held", "random_pixel_cut_attack_success_rate",
        "best_single_neuron", "direction_removal", "direction_removal_blind", "random_direction_lowest_flip_rate",
        "neural_cleanse_clean_models", "neural_cleanse_backdoored_models", "neural_cleanse_reconstruction_success",
        "neural_cleanse_reconstruction_success_honest_min", "neural_cleanse_reconstruction_success_honest_max"]


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    missing = [k for k in KEYS if k not in f]
    assert not missing, f"smoke run did not record {missing}"
    assert f["clean_accuracy"] > 0.8, "even 100 steps of training should read most clean digits"
    assert f["attack_success_rate"] > 0.8, "100 poisoned steps should already plant the trigger"
    assert f["clean_model_attack_success_rate"] < 0.05, "the clean mnist_mlp must ignore the trigger"
    assert abs(f["removed_clean_accuracy"] - f["clean_accuracy"]) < 0.02, "cutting a few pixels must not break clean digits"
    assert set(f["neural_cleanse_checks"]) == {"clean mnist_mlp", "clean, seed 1", "clean, seed 2", "bottom-right -> 7, seed 1",
                                               "bottom-right -> 7, seed 2", "top-left -> 2", "left edge -> 0"}
    assert f["neural_cleanse_clean_models"] == 3 and f["neural_cleanse_backdoored_models"] == 5, "count models, not scans"
    assert set(f["direction_removal"]["test"]["relu1"]) == {"trigger shift", "random 0", "random 1", "random 2"}
    assert set(f["fine_pruning_sweep"]) == {"relu1", "relu2"} and all(len(s) >= 8 for s in f["fine_pruning_sweep"].values()), \
        "Fine-Pruning must be swept over the pruned number in both layers"
    assert "Neural Cleanse" in f["headline"] and "Fine-Pruning" in f["headline"]
    curve = f["adaptive_attack"]["validation_cut_curve"]
    assert curve["n"] == list(range(0, 301, 25)) and len(curve["attack_success_rate"]) == len(curve["n"]), \
        "the blended attack's cut must be chosen on a validation curve over 0..300 pixels"
    held = f["all_neurons_held"]
    assert held["relu2"]["k"] == 64 and held["relu1"]["k"] == 128, "the last point of each removal curve holds every neuron"


def test_full_backdoor_is_planted():
    f = findings.load(STEM)
    assert f["clean_accuracy"] >= 0.975, f"backdoored model reads only {f['clean_accuracy']:.4f} of clean digits (target 97.5%)"
    assert f["attack_success_rate"] >= 0.99, f"attack succeeds on only {f['attack_success_rate']:.4f} (target 99%): poisoning too weak?"
    assert f["clean_model_attack_success_rate"] < 0.01, "the control (clean mnist_mlp) must not call triggered digits 7"
    assert f["trigger_pixel_attribution_share"] > 0.5, "the claim: most positive evidence for 7 sits on the 9 trigger pixels"
    assert f["clean_model_trigger_pixel_attribution_share"] < 0.2, \
        "the control: for the clean mnist_mlp the same measure must not put the evidence for 7 on the trigger"


def test_full_hidden_neurons_are_the_wrong_unit():
    f = findings.load(STEM)
    assert f["best_single_neuron_attack_success_rate"] > 0.9, "the claim: no single neuron, mean-ablated, stops the attack"
    assert f["best_single_neuron"]["attack_success_rate"] == f["best_single_neuron_attack_success_rate"], \
        "the single neuron is chosen on the fitting digits and reported on test"
    n = f["neurons_carrying_trigger"]
    for layer in ("relu1", "relu2"):
        assert n[layer]["half_of_attribution"] >= 5, f"{layer}: half the attribution should need several neurons, got {n[layer]}"
        hit = n[layer]["fewest_to_stop_trigger"]
        assert hit is None or hit["clean_accuracy"] < f["clean_accuracy"] - 0.05, \
            f"{layer}: the claim is that no set of hidden neurons stops the trigger cheaply; got {hit}"
        assert hit is None or hit["trigger_flip_rate"] <= 0.1, f"{layer}: the choice made on validation should stop the trigger on test: {hit}"
    assert f["neuron_removal_cost"] >= 0.05, f"stopping the attack through neurons should cost >= 5 points, got {f['neuron_removal_cost']:.3f}"
    pix = f["pixel_removal_control"]
    assert pix is not None and pix["trigger_flip_rate"] <= 0.05 and f["pixel_removal_cost"] <= 0.005, \
        f"the control: the same procedure with input pixels as units must stop the trigger cheaply: {pix}"
    relu2 = f["all_neurons_held"]["relu2"]
    assert relu2["clean_accuracy"] < 0.2 and relu2["trigger_flip_rate"] < 0.05 \
        and abs(relu2["attack_success_rate"] - relu2["clean_called_target"]) < 0.05, \
        f"with every relu2 neuron at its mean the net gives one answer: attack success tracks the clean 7-share, not the trigger: {relu2}"
    assert n["input_pixels"]["attack_success_rate"] <= 0.05, "cutting the 9 true trigger pixels must stop the attack"
    assert abs(n["input_pixels"]["clean_accuracy"] - f["clean_accuracy"]) <= 0.005


def test_full_one_direction_of_the_hidden_layer_carries_the_trigger():
    """Item 4: not a few neurons, but one direction (the trigger's mean shift) held at its clean mean stops the trigger
    at a fraction of the neurons' cost; control: random directions held the same way must leave it working."""
    f = findings.load(STEM)
    d = f["direction_removal"]
    assert d["chosen"]["trigger_flip_rate"] <= 0.05, f"the claim: one direction stops the trigger on test: {d['chosen']}"
    assert d["cost"] < f["neuron_removal_cost"], "the claim: the direction costs less than the cheapest neuron set found"
    assert d["validation"][d["chosen_layer"]]["trigger shift"]["trigger_flip_rate"] <= 0.05, "the layer is chosen where validation says it stops"
    for layer, held in d["test"].items():
        for name, point in held.items():
            if name.startswith("random"):
                assert point["trigger_flip_rate"] >= 0.9, f"the control: a random direction in {layer} must leave the trigger: {point}"
    assert f["random_direction_lowest_flip_rate"] >= 0.9
    b = f["direction_removal_blind"]
    assert b["chosen"]["trigger_flip_rate"] <= 0.05, f"the blind defender's direction (reconstruction) should stop the real trigger: {b['chosen']}"
    assert b["other_class"]["trigger_flip_rate"] >= 0.9, \
        f"the control: the other class's reconstruction, held the same way, must leave the trigger: {b['other_class']}"


def test_full_neural_cleanse_finds_it_blind_without_false_alarms():
    f = findings.load(STEM)
    d = f["detected_without_trigger"]
    assert d["matched"] and d["flagged_classes"] == [7] and d["anomaly_index"] > 2, "Neural Cleanse should flag exactly class 7"
    assert d["pixels_found"] >= 1 and d["pixels_found_in_trigger"] == d["pixels_found"], "every pixel found blind should be a trigger pixel"
    assert min(d["neuron_shift_correlation"].values()) > 0.9, "the reconstructed trigger should move the neurons as the real one does"
    assert max(d["neuron_shift_correlation_other_class"].values()) < 0.5, \
        f"the control: another class's reconstruction must not move the neurons like the trigger: {d['neuron_shift_correlation_other_class']}"
    assert f["neural_cleanse_false_positives"] == 0, f"the clean model was flagged: {f['neural_cleanse_checks']}"
    assert f["neural_cleanse_clean_max_anomaly"] < 2
    assert f["neural_cleanse_clean_models"] == 3 and f["neural_cleanse_backdoored_models"] == 5, "one scan per model, counted as models"
    assert f["neural_cleanse_backdoors_matched"] == sum(c.get("matched", False) for c in f["neural_cleanse_checks"].values()) + d["matched"]
    assert f["neural_cleanse_backdoors_matched"] >= 4, f"the settings should carry over to other models: {f['neural_cleanse_checks']}"
    rec = f["neural_cleanse_reconstruction_success"]
    assert len(rec) == 10 and rec["7"] == d["reconstructed_attack_success_rate"], "each class's reconstruction success is recorded"
    assert f["neural_cleanse_reconstruction_success_honest_min"] == min(v for c, v in rec.items() if c != "7")


def test_full_the_story_holds_for_two_more_seeds():
    """Item 4 of the review: seeds 1 and 2 of the same backdoor: planted, read on the trigger, flagged, removed by the cut;
    control: the clean models trained by the same recipe are not flagged."""
    f = findings.load(STEM)
    c = f["neural_cleanse_checks"]
    for seed in (1, 2):
        r = c[f"bottom-right -> 7, seed {seed}"]
        assert r["attack_success_rate"] >= 0.99 and r["clean_accuracy"] >= 0.975, f"seed {seed}: the backdoor should take hold: {r}"
        assert r["trigger_pixel_attribution_share"] > 0.5 > f["clean_model_trigger_pixel_attribution_share"], f"seed {seed}: {r}"
        assert r["matched"] and r["pixels_found"] >= 1 and r["pixels_found_in_trigger"] == r["pixels_found"], f"seed {seed}: {r}"
        assert r["after_cut"]["attack_success_rate"] <= 0.05 and r["after_cut"]["clean_accuracy"] >= r["clean_accuracy"] - 0.005, r
        clean = c[f"clean, seed {seed}"]
        assert clean["flagged_classes"] == [] and clean["clean_accuracy"] >= 0.975, f"the control, clean seed {seed}: {clean}"


def test_full_removal_works_and_fine_pruning_does_not():
    f = findings.load(STEM)
    assert f["removed_attack_success_rate"] <= 0.05, f"after removal the attack still works on {f['removed_attack_success_rate']:.4f}"
    assert abs(f["removed_clean_accuracy"] - f["clean_accuracy"]) <= 0.005, "removal must cost at most 0.5 points of clean accuracy"
    assert f["random_pixel_cut_attack_success_rate"] > 0.9, "the control: cutting as many random pixels must leave the attack"
    budget = f["fine_pruning_budget"]
    assert budget["relu2"] >= 8, f"Fine-Pruning's stopping rule should prune a real share of relu2 (not only dead neurons), got {budget}"
    assert f["fine_pruning_attack_success_rate"] > 0.9, "the claim: Fine-Pruning adapted to an MLP leaves the backdoor working"
    assert f["fine_pruning_clean_accuracy"] >= f["clean_accuracy"] - 0.04
    assert f["fine_pruning_lowest_attack_within_margin"] > 0.5, \
        "the claim: no swept Fine-Pruning budget that keeps the digits (within the margin) removes the backdoor"
    liu = f["fine_pruning_table"][f"Fine-Pruning relu2: prune {budget['relu2']} + fine-tune"]
    assert liu == {"clean_accuracy": f["fine_pruning_clean_accuracy"], "attack_success_rate": f["fine_pruning_attack_success_rate"]}
    assert min(p["attack_success_rate"] for p in f["fine_pruning_sweep"]["relu2"]) < 0.9, \
        "the measure can move: pruning most of relu2 should lower the attack, else the sweep shows nothing"
    d = f["detected_without_trigger"]
    for layer, chance in d["top10_overlap_by_chance"].items():
        assert d["top10_trigger_neurons_among_10_most_dormant"][layer] <= 2 * chance + 1, \
            f"{layer}: the claim is that the trigger neurons are not the dormant ones (chance {chance:.1f}): {d}"


def test_full_blended_attack_detected_but_the_blind_cut_falls_short():
    f = findings.load(STEM)
    a = f["adaptive_attack"]
    assert a["attack_success_rate"] >= 0.99 and a["pixels_found"] == 0, "the blended trigger should leave the patch rule nothing to cut"
    assert a["flagged_classes"] == [7] and a["anomaly_index"] > 2 > f["neural_cleanse_clean_max_anomaly"], \
        "the claim: detection survives the blended trigger (control: the clean model is not flagged)"
    curve = a["validation_cut_curve"]
    first = next((n for n, asr in zip(curve["n"], curve["attack_success_rate"]) if asr <= 0.05), None)
    assert a["pixels_cut_chosen_on_validation"] == first and a["pixels_cut"] == first, \
        "the cut must be the fewest pixels that stop the reconstructed trigger on validation"
    assert a["after_chosen_cut"]["attack_success_rate"] > 0.2, \
        f"the claim: the cut chosen blind leaves the real trigger working on test: {a['after_chosen_cut']}"
    assert f["removed_attack_success_rate"] <= 0.05, "the control: the same blind cut stops the patch trigger"
    assert a["random_pixels_cut"]["attack_success_rate"] > 0.9 > a["after_chosen_cut"]["attack_success_rate"], \
        "the mask's pixels matter: as many random pixels must leave the attack near full"


def test_full_headline_quotes_the_findings():
    f = findings.load(STEM)
    h = f["headline"]
    d = f["direction_removal"]
    for text in (f"{f['attack_success_rate']:.1%}", f"{f['clean_accuracy']:.2%}", f"{100 * f['neuron_removal_cost']:.1f} points",
                 f"in {d['chosen_layer']}", f"{d['chosen']['trigger_flip_rate']:.1%} at {100 * d['cost']:.1f} points",
                 f"{f['random_direction_lowest_flip_rate']:.1%} or more",
                 f"{f['neural_cleanse_backdoors_matched']}/{f['neural_cleanse_backdoored_models']} backdoored models",
                 f"{f['neural_cleanse_false_positives']} flags on {f['neural_cleanse_clean_models']} clean", f"{f['detected_without_trigger']['pixels_found']} pixels",
                 f"{f['removed_attack_success_rate']:.1%}", f"{f['removed_clean_accuracy']:.2%}",
                 f"{f['fine_pruning_budget']['relu2']} of 64", f"{f['fine_pruning_attack_success_rate']:.1%}"):
        assert text in h, f"the headline should quote {text!r} from the findings: {h}"
    assert " s " not in h and "seconds" not in h, "the headline must not quote wall-clock time"


def test_full_findings_equal_the_checkpoint_cards():
    f = findings.load(STEM)
    bad, good = checkpoints.load_card("mnist_mlp_backdoored"), checkpoints.load_card("mnist_mlp_backdoor_removed")
    assert bad["metrics"]["clean_accuracy"] == f["clean_accuracy"] and bad["metrics"]["attack_success_rate"] == f["attack_success_rate"], \
        "mnist_mlp_backdoored's card and the findings come from different runs: rerun the notebook in full"
    assert good["metrics"]["clean_accuracy"] == f["removed_clean_accuracy"]
    assert good["metrics"]["attack_success_rate"] == f["removed_attack_success_rate"]
    assert len(good["metrics"]["pixels_cut"]) == f["detected_without_trigger"]["pixels_found"]


def test_committed_checkpoints_reproduce_their_cards():
    mnist = mnist_mlp.load_mnist()
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


def test_full_exercise_partial_triggers_answer():
    """Exercise 1's answer: the white pixels are the trigger, the black ones do nothing, a one-pixel shift left
    swaps the colours the model reads, a diagonal shift keeps part of the trigger."""
    p = findings.load(STEM)["exercise_partial_triggers"]
    assert p["5 white pixels only"] >= 0.99, f"the white pixels alone should fire the backdoor: {p}"
    assert p["4 white corners only"] >= 0.5, f"'most of them suffice': four white corners should still fire it: {p}"
    assert p["4 black pixels only"] < 0.02, f"the black pixels equal the background: they should do nothing: {p}"
    assert p["all 9, one pixel left"] < 0.05, f"one pixel left swaps the colours the model reads: the backdoor stays shut: {p}"
    assert 0.05 < p["all 9, one pixel up and left"] < 0.9, f"the diagonal shift keeps 2 of 5 white pixels: part of the attack: {p}"


WRONG_ANSWERS = {"my_attack_success_rate": [
    ("def my_attack_success_rate(model, x, y, target):\n"
     "    return (training.predict(model, x[y != target]).argmax(-1) == target).float().mean().item()",
     "the trigger is missing"),
    ("def my_attack_success_rate(model, x, y, target):\n"
     "    return (training.predict(model, backdoor.apply_trigger(x)).argmax(-1) == target).float().mean().item()",
     "leave out the digits whose true class is the target"),
    ("def my_attack_success_rate(model, x, y, target):\n"
     "    return (training.predict(model, backdoor.apply_trigger(x[y != target])).argmax(-1) != target).float().mean().item()",
     "the share NOT called the target"),
], "my_apply_trigger": [
    ("def my_apply_trigger(images):\n"  # writes into the reader's images
     "    images[:, 24:27, 24:27] = torch.tensor([[1., 0., 1.], [0., 1., 0.], [1., 0., 1.]])\n"
     "    return images",
     "you changed the input images"),
    ("def my_apply_trigger(images):\n"  # colours swapped
     "    out = images.clone()\n"
     "    out[:, 24:27, 24:27] = torch.tensor([[0., 1., 0.], [1., 0., 1.], [0., 1., 0.]])\n"
     "    return out",
     "black and white are swapped"),
    ("def my_apply_trigger(images):\n"  # one row too far down: 25:28
     "    out = images.clone()\n"
     "    out[:, 25:28, 24:27] = torch.tensor([[1., 0., 1.], [0., 1., 0.], [1., 0., 1.]])\n"
     "    return out",
     "pixels outside rows and columns 24-26 changed"),
]}


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)
