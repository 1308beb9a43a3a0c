"""Notebook 11: indirect object identification in a transformer trained here; its circuit found by path patching
from ABC and held to Wang et al.'s faithfulness, completeness and minimality. The smoke run loosely; the committed
full run against each claim its prose makes, each beside the same measurement on its control."""
import re

import pytest

from glassbox import findings
from glassbox.journal import checkpoints

STEM = "11_ioi"
KEYS = ["n_templates", "n_name_pairs", "accuracy", "target_status", "clean_logit_diff", "threshold", "path_patching", "classes",
        "circuit", "signatures", "untrained_signatures_max", "signatures_by_class", "name_mover_summary", "faithfulness",
        "random_circuit_faithfulness", "untrained_F_M", "completeness", "incompleteness_max_share",
        "incompleteness_max_share_without_name_movers", "minimality", "minimality_min_share", "minimality_control",
        "prediction", "strongest_to_queries", "strongest_layer0_to_logits", "layer2_max_to_logits", "exercise_single_head_ablation", "exercise_costliest_head", "exercise_name_movers_together", "headline"]
HELD_OUT = "held-out templates and pairs"
CLASSES = ["name mover", "S-inhibition", "duplicate-token", "induction"]


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    missing = [k for k in KEYS if k not in f]
    assert not missing, f"smoke run did not record {missing}"
    assert f["n_templates"] == {"train": 30, "held-out": 6}
    assert f["n_name_pairs"]["train"] + f["n_name_pairs"]["held-out"] == 30 * 29
    assert list(f["classes"]) == CLASSES and f["circuit"], "the circuit keeps at least the strongest head of step 1"
    assert f["untrained_signatures_max"]["copying top-1"] < 0.5, "an untrained OV circuit copies no name"
    faith = f["faithfulness"]
    assert faith["F(C)/F(M)"] == pytest.approx(faith["F(C)"] / faith["F(M)"], rel=1e-6)
    assert len(f["exercise_single_head_ablation"]) == 12
    assert f["target_status"] == ("met" if f["accuracy"][f"trained, {HELD_OUT}"]["accuracy"] >= 0.99 else "missed")
    assert not re.search(r"\d\s*(s|sec|seconds|min|minutes)\b", f["headline"]), "the headline must not quote wall-clock time"


def test_full_findings_are_for_the_committed_checkpoint():
    f, card = findings.load(STEM), checkpoints.load_card("ioi_3l")
    assert card["metrics"]["held_out_accuracy"] == pytest.approx(f["accuracy"][f"trained, {HELD_OUT}"]["accuracy"], abs=1e-6)
    assert card["config"]["n_layers"] == 3 and card["config"]["attn_only"], "the notebook says 3 layers, attention-only"


@pytest.mark.xfail(strict=True, reason="target missed in the committed run (accuracy and target_status are in the findings): "
                   "1,000 steps on templates with middle fillers; remove this mark once a run meets it")
def test_full_accuracy_meets_the_99_percent_target():
    f = findings.load(STEM)
    assert f["accuracy"][f"trained, {HELD_OUT}"]["accuracy"] >= 0.99, f"held-out accuracy {f['accuracy'][f'trained, {HELD_OUT}']}"


def test_full_accuracy_far_above_the_untrained_model_and_the_missed_target_is_said():
    f = findings.load(STEM)
    acc = f["accuracy"]
    assert acc[f"trained, {HELD_OUT}"]["accuracy"] > 0.8 and acc[f"trained, {HELD_OUT}"]["logit diff"] > 2
    assert acc[f"untrained, {HELD_OUT}"]["accuracy"] < 0.1, "control: an untrained model answers by chance"
    assert abs(acc[f"untrained, {HELD_OUT}"]["logit diff"]) < 0.5
    assert f"target 99% {f['target_status']}" in f["headline"], "the headline must say whether the target was met"


def test_full_classes_pass_the_threshold_and_the_differences_from_gpt2_hold():
    f = findings.load(STEM)
    t, pp, cls = f["threshold"], f["path_patching"], f["classes"]
    for head in cls["name mover"]:
        assert pp["to logits"][head] <= -t, f"name mover {head} moves the logit difference by only {pp['to logits'][head]:.3f}"
    for head in cls["S-inhibition"]:
        assert pp["to name movers' queries"][head] <= -t
    for head in cls["duplicate-token"] + cls["induction"]:
        assert pp["to S-inhibition values"][head] <= -t
    # the prose: answer-carrying heads in layers 0 and 1, nothing past the threshold on the queries, layer 2 small
    assert cls["name mover"] and all(h[1] in "01" for h in cls["name mover"]), cls["name mover"]
    assert not cls["S-inhibition"] and f["strongest_to_queries"]["effect"] > -t
    assert f["layer2_max_to_logits"] < t
    assert f["strongest_layer0_to_logits"]["effect"] <= -t
    assert f["strongest_layer0_to_logits"]["head"] in cls["name mover"]


def test_full_name_mover_signatures_beat_the_untrained_model():
    f = findings.load(STEM)
    nm, untrained = f["name_mover_summary"], f["untrained_signatures_max"]
    assert nm["END->IO"] > 2 * untrained["END->IO"], f"name movers attend to the IO {nm['END->IO']:.3f}, untrained {untrained['END->IO']:.3f}"
    assert nm["copying top-1"] > 2 * untrained["copying top-1"], f"copying {nm['copying top-1']:.3f} vs untrained {untrained['copying top-1']:.3f}"
    sig = f["signatures"]
    for key in ("END->IO", "copying top-1"):
        mean = sum(sig[h][key] for h in f["classes"]["name mover"]) / len(f["classes"]["name mover"])
        assert nm[key] == pytest.approx(mean, abs=1e-6), "the summary is the name movers' mean"


def test_full_faithfulness_beats_every_random_circuit_of_the_same_size():
    f = findings.load(STEM)
    faith, rand = f["faithfulness"], f["random_circuit_faithfulness"]
    assert faith["F(C)/F(M)"] > rand["max"], f"circuit {faith['F(C)/F(M)']:.3f} vs the best random circuit {rand['max']:.3f}"
    assert rand["n"] >= 20
    assert abs(f["untrained_F_M"]) < 0.5, "control: the untrained model has no logit difference to recover"
    assert abs(faith["F(empty)"]) < faith["F(C)"], "with every head ablated the logit difference must fall"


def test_full_completeness_against_the_circuit_without_its_name_movers():
    f = findings.load(STEM)
    worst, control = f["incompleteness_max_share"], f["incompleteness_max_share_without_name_movers"]
    assert worst < control, f"the circuit's largest incompleteness {worst:.3f} should be below the control's {control:.3f}"
    comp = f["completeness"]
    assert worst == pytest.approx(max(v["share of F(M)"] for v in comp.values()), rel=1e-6)


def test_full_minimality_every_head_matters_a_head_from_outside_does_not():
    f = findings.load(STEM)
    assert f["minimality_min_share"] >= f["min_share"], f"a circuit head matters by only {f['minimality_min_share']:.3f} of F(M)"
    assert f["minimality_control"]["share of F(M)"] < f["min_share"], f"control {f['minimality_control']}: a head from outside passes"


def test_full_prediction_on_sentences_never_trained():
    f = findings.load(STEM)
    p, u = f["prediction"]["trained"], f["prediction"]["untrained"]
    # three mentions: far above chance (1/30) and the untrained model, below the same sentences with two (the prose says both)
    assert 0.5 < p["three times: accuracy"] < f["accuracy"][f"trained, {HELD_OUT}"]["accuracy"] and u["three times: accuracy"] < 0.1
    assert p["three names: a once-named name"] >= 0.9 and p["three names: the repeated name"] < 0.05
    assert u["three names: a once-named name"] < 0.5, "control: an untrained model rarely names one of the two"


def test_full_headline_quotes_the_findings():
    f = findings.load(STEM)
    h = f["headline"]
    assert f"{f['accuracy'][f'trained, {HELD_OUT}']['accuracy']:.1%}" in h
    assert f"{f['faithfulness']['F(C)/F(M)']:.0%}" in h and f"{f['random_circuit_faithfulness']['max']:.0%}" in h


WRONG_ANSWERS = {"my_logit_diff": [
    ("def my_logit_diff(logits, io, s):\n    rows = torch.arange(len(io))\n    return logits[:, -1][rows, s] - logits[:, -1][rows, io]",
     "sign is flipped"),
    ("def my_logit_diff(logits, io, s):\n    rows = torch.arange(len(io))\n    return logits[:, 0][rows, io] - logits[:, 0][rows, s]",
     "position 0"),
    ("def my_logit_diff(logits, io, s):\n    p, rows = logits[:, -1].softmax(-1), torch.arange(len(io))\n    return p[rows, io] - p[rows, s]",
     "difference of probabilities"),
    ("def my_logit_diff(logits, io, s):\n    return logits[:, -1, io] - logits[:, -1, s]", "one number per sentence"),
]}


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)
