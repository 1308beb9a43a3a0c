"""Notebook 09: seed 0 generalises gradually, starting as it memorises and finishing long after; the Fourier mechanism
survives interventions that could break it; the leak-free restricted measure fails on a lookup table, and its lead
over the test accuracy is no larger than on a circuit grown in lockstep (so no early warning is claimed); seed 1
does not generalise in the shorter budget; the control without weight decay stays far below, still climbing."""
import pytest
import torch

from glassbox import findings
from glassbox.studies import grokking
from glassbox.journal import checkpoints

STEM = "09_grokking"
ABLATIONS = ["model as trained", "logits: key frequencies removed", "logits: key frequencies only",
             "logits: as many other frequencies removed", "logits: key frequencies only, fitted on test pairs",
             "embedding: key frequencies removed",
             "embedding: key frequencies only", "embedding: as many other frequencies removed"]


def n_params(p: int, d: int, mlp: int) -> int:
    """Embedding and positions (3), Q/K/V/O with biases, MLP with biases, unembedding with bias; no LayerNorm."""
    vocab = p + 1
    return vocab * d + 3 * d + 4 * (d * d + d) + (d * mlp + mlp + mlp * d + d) + d * vocab + vocab


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    for key in ["headline", "final", "epoch_memorised", "key_frequencies", "ablations", "measures_at", "halfway_epoch",
                "control_final", "control_weights", "cos_fit_r2", "embedding_gini", "phase_epochs", "restricted_controls",
                "seeds", "by_seed", "small_train_fraction", "decay_per_step", "test_accuracy_rise", "bias_parameters",
                "restricted_lead", "lockstep_at_memorised", "lockstep_noise", "lockstep_lead_by_noise", "control_cos_fit_r2_key_frequencies",
                "control_test_accuracy_300_epochs_before_end", "grokked_over_memorised", "test_accuracy_when_memorised_over_chance"]:
        assert key in f, f"smoke run did not record {key!r}"
    assert f["n_params"] == n_params(13, 32, 64), "a 1-layer model without LayerNorm, smoke sizes p 13, d_model 32, d_mlp 64"
    assert f["n_pairs"] == {"train": round(0.5 * 169), "test": 169 - round(0.5 * 169)}
    assert f["epoch_memorised"] is not None, "even the smoke model should learn its 84 training pairs by heart"
    assert f["key_frequencies"] and all(1 <= k <= 6 for k in f["key_frequencies"]), "frequencies of p = 13 are 1..6"
    assert list(f["ablations"]) == ABLATIONS
    assert f["control_final"]["train_accuracy"] >= 0.99, "the control memorises too"
    assert f["control_weights"]["weight_norm"] > f["measures_at"]["end"]["weight_norm"], \
        "weight decay must leave the smaller weights"
    assert sum(f["bias_parameters"].values()) > 0, "the model's biases are counted (the authors' model has fewer)"
    assert len(f["by_seed"]) == 3 and f["seeds"]["epochs"] == 40, "three seeds over the smoke run's first SEED_EPOCHS"
    small = f["small_train_fraction"]  # exercise 4's folded answer says 'below' / 'not below' from these numbers
    assert small["comparison"] == ("below" if small["test_accuracy_at_end"] < small["this_run_test_accuracy_at_same_epoch"] else "not below")
    for name, m in f["restricted_controls"].items():
        assert 0 <= m["restricted_test_accuracy"] <= 1, f"{name}: an accuracy out of range"


def test_full_generalisation_is_late_and_gradual():
    f = findings.load(STEM)
    assert f["final"]["test_accuracy"] >= 0.99, f"test accuracy {f['final']['test_accuracy']:.2%}: the model did not generalise"
    assert f["final"]["train_accuracy"] == 1.0
    mem, half, grok = f["epoch_memorised"], f["epoch_test_half"], f["epoch_grokked"]
    assert mem is not None and half is not None and grok is not None, f"phase epochs {mem}, {half}, {grok}"
    assert mem < half < grok, "memorise, then reach 50% test accuracy, then 99%"
    assert half >= 3 * mem, f"generalisation (epoch {half}) should come long after memorisation (epoch {mem})"
    assert f["test_accuracy_when_memorised"] < 0.5
    p = checkpoints.load_card("grokking")["metrics"]["p"]
    assert f["test_accuracy_when_memorised_over_chance"] > 5 > 2 > f["measures_at"]["start"]["test_accuracy"] * p, \
        "the prose: at memorisation the model already answers several times chance (the untrained model does not)"
    assert f["grokked_over_memorised"] >= 10, "the prose: generalisation finishes many times later than memorisation"
    assert f["measures_at"]["memorised"]["test_loss"] > f["measures_at"]["start"]["test_loss"], \
        "the memorising model is confidently wrong on test pairs: its test loss is above the initial one"
    rise = f["test_accuracy_rise"]
    assert rise["epoch_90%"] - rise["epoch_10%"] >= 200 and rise["max_gain_per_100_epochs"] < 0.5, \
        f"the prose calls the rise gradual (no sharp jump): {rise}"
    # the control on which the same width measure must fail: a sharp step (what the glossary's grokking describes)
    epochs = list(range(0, 1510, 10))
    step = [0.05 if e < 900 else 1.0 for e in epochs]
    width = grokking.covered_epoch(epochs, step, mem, 0.9) - grokking.covered_epoch(epochs, step, mem, 0.1)
    gain = max(b - a for a, b in zip(step, step[10:]))
    assert width < 200 and gain >= 0.5, "a step must not pass as gradual"


def test_full_weight_decay_per_step_is_lr_times_weight_decay():
    d = findings.load(STEM)["decay_per_step"]
    card = checkpoints.load_card("grokking")["metrics"]
    assert d["this run (lr * weight decay)"] == pytest.approx(card["lr"] * card["weight_decay"])
    assert d["this run (lr * weight decay)"] == pytest.approx(2 * d["Nanda et al. (1e-3 * 1.0)"]), \
        "doubling the learning rate at the same weight decay doubles the decay per step"


def test_full_mechanism_is_fourier():
    f = findings.load(STEM)
    key = f["key_frequencies"]
    assert 2 <= len(key) <= 8, f"expected a few key frequencies (Nanda et al. find 5), got {key}"
    assert f["embedding_energy_on_key_frequencies"] > 0.5, "the embedding's norm should sit on the key frequencies"
    assert f["embedding_gini"]["trained"] > f["embedding_gini"]["initialisation"] + 0.2, "the embedding should be sparse in Fourier"
    assert f["neurons"]["explained_by_a_key_frequency"] > 0.5, "most live neurons should follow one key frequency"
    assert f["cos_fit_r2"]["key frequencies"] > 0.5, "cos(w(a + b - c)) over the key frequencies should explain the logits"
    assert f["cos_fit_r2"]["random frequencies (best of 20)"] < 0.1, "random frequencies must explain almost nothing"
    assert f["cos_fit_r2"]["untrained model, key frequencies"] < 0.05, "the control: the same fit on an untrained model's logits"
    assert f["control_cos_fit_r2_key_frequencies"] < f["cos_fit_r2"]["key frequencies"] - 0.3, \
        "the model trained without weight decay is explained far less by the key frequencies"


def test_full_interventions():
    a = {k: v["test_accuracy"] for k, v in findings.load(STEM)["ablations"].items()}
    assert a["logits: key frequencies removed"] < 0.1, f"removing the key frequencies should destroy accuracy: {a}"
    assert a["embedding: key frequencies removed"] < 0.1, f"... also when removed from the embedding: {a}"
    assert a["logits: key frequencies only"] >= 0.95, f"keeping only the key frequencies should keep accuracy: {a}"
    assert a["logits: key frequencies only, fitted on test pairs"] >= 0.95, \
        "... also fitted on the test pairs alone, where no training answer can leak in (the lookup table fails it: test_full_restricted_measure_...)"
    assert a["embedding: key frequencies only"] >= 0.9, f"... also in the embedding: {a}"
    assert a["logits: as many other frequencies removed"] >= 0.95, "the control: other frequencies are not needed"
    assert a["embedding: as many other frequencies removed"] >= 0.95


def test_full_restricted_measure_fails_on_controls_and_leads_no_more_than_a_lockstep_circuit():
    f = findings.load(STEM)
    m, half, c = f["measures_at"], f["epoch_test_half"], f["restricted_controls"]
    mem = m["memorised"]
    assert mem["restricted_test_accuracy"] > mem["test_accuracy"] + 0.15, \
        "at memorisation the key frequencies of the test logits alone should answer far more test pairs than the model"
    lookup = c["lookup table"]
    assert lookup["restricted_test_accuracy"] < lookup["test_accuracy"] + 0.05 and lookup["restricted_test_accuracy"] < 0.1, \
        f"the control: a lookup table must not 'generalise' on the leak-free measure: {lookup}"
    assert lookup["restricted_test_accuracy_all_pairs_projection"] > 0.3, \
        "the all-pairs projection should leak memorised answers (else the control shows nothing)"
    decoy = c["model at memorisation, as many other frequencies"]
    assert decoy["restricted_test_accuracy"] < mem["restricted_test_accuracy"] - 0.15, \
        "other frequencies of the same test logits must answer far fewer pairs"
    lead = f["restricted_lead"]
    model, lock = lead["model"], lead["lockstep control"]
    assert model["test_accuracy_50%"] == half == lock["test_accuracy_50%"], \
        f"the lockstep control is matched: its test accuracy passes 50% at the model's epoch {half}: {lead}"
    assert model["lead"] > 0 and lock["lead"] > 0, "a denoised test loss leads the raw accuracy on both"
    assert model["lead"] <= lock["lead"], \
        f"the prose says the model's lead is no larger than the lockstep control's (no early warning shown): {lead}"
    assert lock["restricted_loss_90%"] < lock["test_accuracy_50%"], "the prose: the 'circuit formed' rule fires early on the control too"
    by_noise = f["lockstep_lead_by_noise"]
    assert by_noise["0.25 x"] <= by_noise["0.5 x"] <= lock["lead"] <= by_noise["2 x"], \
        f"the prose: the control's lead grows with the noise the measure removes: {by_noise}, matched {lock['lead']}"
    assert model["restricted_loss_halfway_log_scale"] > half and lock["restricted_loss_halfway_log_scale"] > half, \
        f"the prose: on a log scale both half-way points come after the test accuracy's 50%: {lead}"
    h = f["halfway_epoch"]
    assert min(h["excluded_loss"], h["embedding_gini"], h["weight_norm"]) >= half, f"the prose: the other measures are half-way later: {h}"
    weak = f["lockstep_at_memorised"]
    assert weak["restricted_test_accuracy"] > weak["test_accuracy"] + 0.15, \
        "the caveat: a weak circuit under noise also has a key-frequency part that answers far more than the model"


def test_full_phases_come_from_the_measures():
    f = findings.load(STEM)
    e, m = f["phase_epochs"], f["measures_at"]
    assert e["memorised"] == f["epoch_memorised"] < e["circuit_formed"] < e["cleaned_up"], f"phase epochs {e}"
    assert m["cleaned_up"]["embedding_gini"] > m["circuit_formed"]["embedding_gini"] > m["memorised"]["embedding_gini"], \
        "the embedding grows sparser in the Fourier basis through both later phases"
    assert m["circuit_formed"]["test_accuracy"] > m["memorised"]["test_accuracy"] + 0.1, \
        "the prose says the test accuracy is not flat during circuit formation"


def test_full_three_seeds():
    f = findings.load(STEM)
    runs = f["by_seed"]
    assert len(runs) == 3
    memorised = [r["epoch_memorised"] for r in runs.values()]
    assert None not in memorised and max(memorised) - min(memorised) <= 60, f"memorisation epochs {memorised}"
    for name, r in runs.items():
        assert r["at_end"]["test_accuracy"] > r["at_memorised"]["test_accuracy"] + 0.05, f"{name}: the test accuracy climbs after memorisation"
        lookup = r["lookup_table"]
        assert lookup["restricted_test_accuracy"] < 0.1 < lookup["restricted_test_accuracy_all_pairs_projection"], \
            f"{name}: the lookup table fails the leak-free measure and passes the leaky one: {lookup}"


def test_full_seed_one_does_not_generalise_in_the_shorter_budget():
    f = findings.load(STEM)
    s, runs = f["seeds"], f["by_seed"]
    assert s["seeds"] == [0, 1, 2]
    gain = dict(zip(s["seeds"], s["test_accuracy_gain_last_300_epochs"]))
    one = runs["seed 1"]
    assert one["at_end"]["test_accuracy"] < 0.5 and not one["key_frequencies_found"], f"the prose: seed 1 stays below 50%: {one}"
    assert gain[1] < 0.05 and gain[1] < gain[0] / 3, f"the prose: seed 1 has nearly stopped climbing, unlike seed 0: {gain}"
    assert runs["seed 2"]["at_end"]["test_accuracy"] > 0.5, "the prose: seed 2 goes through the first part of the story"


def test_full_control_stays_far_below_and_is_still_climbing():
    f = findings.load(STEM)
    c = f["control_final"]
    assert c["train_accuracy"] >= 0.99, "without weight decay the model still memorises"
    assert c["test_accuracy"] < 0.5 and f["control_epoch_test_half"] is None, \
        f"the control reached {c['test_accuracy']:.1%} test accuracy: it generalised within the budget"
    assert f["control_best_test_accuracy"] == c["test_accuracy"] > f["control_test_accuracy_300_epochs_before_end"], \
        "the prose: the control is still climbing at the end"
    w = f["control_weights"]
    assert w["weight_norm"] > w["weight_norm_at_start"] > f["measures_at"]["end"]["weight_norm"]
    assert "seconds" not in f["headline"] and " s " not in f["headline"], "the headline must not quote wall-clock time"


def test_full_checkpoint_reproduces_the_findings():
    f = findings.load(STEM)
    card = checkpoints.load_card("grokking")
    assert card["metrics"]["test_accuracy"] == f["final"]["test_accuracy"], "card and findings disagree: rerun the notebook"
    metrics = card["metrics"]
    data = grokking.make_data(metrics["p"], metrics["train_fraction"], seed=card["seed"])
    model = checkpoints.load_model("grokking")
    assert card["config"]["d_vocab"] == metrics["p"] + 1
    with torch.no_grad():
        scored = grokking.evaluate(model, data)
    assert scored["test_accuracy"] == pytest.approx(f["final"]["test_accuracy"], abs=1e-6), \
        "the committed weights must give the recorded test accuracy on the same split"


WRONG_ANSWERS = {"my_frequency_norms": [
    ("def my_frequency_norms(W):\n    c = fourier.basis(W.shape[0]) @ W\n"
     "    return torch.stack([c[0].norm()] + [c[2 * k - 1 : 2 * k + 1].norm() for k in range(1, W.shape[0] // 2 + 1)]) ** 2",
     "squared norms"),
    ("def my_frequency_norms(W):\n    c = fourier.basis(W.shape[0]) @ W\n"  # frequency k stored at index k + 1
     "    return torch.stack([c[0].norm() * 0, c[0].norm()] + [c[2 * k - 1 : 2 * k + 1].norm() for k in range(1, W.shape[0] // 2)])",
     "off by one"),
    ("def my_frequency_norms(W):\n    c = fourier.basis(W.shape[0]) @ W\n"
     "    return torch.stack([c[0].norm()] + [c[2 * k - 1].norm() for k in range(1, W.shape[0] // 2 + 1)])",
     "combine both rows"),
], "my_excluded_loss": [
    ("def my_excluded_loss(logits, freqs, data):\n    d = fourier.sum_directions(data.p, freqs)\n"
     "    return torch.nn.functional.cross_entropy((logits - d.T @ (d @ logits)).double(), data.labels).item()",
     "on every pair"),
    ("def my_excluded_loss(logits, freqs, data):\n"
     "    return torch.nn.functional.cross_entropy(logits[data.train].double(), data.labels[data.train]).item()",
     "you removed nothing"),
    ("def my_excluded_loss(logits, freqs, data):\n    d = fourier.sum_directions(data.p, freqs)\n"
     "    return torch.nn.functional.cross_entropy((d.T @ (d @ logits))[data.train].double(), data.labels[data.train]).item()",
     "kept only the key frequencies"),
]}


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)


def test_full_exercise_one_frequency_alone_is_swamped_by_the_answer_means():
    f = findings.load(STEM)
    one, all_key = f["only_strongest_frequency"], f["ablations"]["logits: key frequencies only"]
    assert one["frequency"] in f["key_frequencies"]
    assert one["test_accuracy"] < 0.5 <= all_key["test_accuracy"] and one["test_loss"] > 10 * all_key["test_loss"], \
        f"exercise 1's answer: one frequency ({one}) is far worse than all key frequencies together ({all_key})"
    assert one["margin_nats"] * 10 < one["answer_mean_spread_nats"], "the answer says the means swamp the margin"
    assert one["accuracy_means_removed_amplitudes_equalised"] > one["test_accuracy"] + 0.2, \
        "the check of that cause: with the per-answer means and amplitudes equalised, one frequency should answer far more pairs"
    low, high = one["answer_amplitude_range"]
    assert high - low > 10 * one["margin_nats"], "amplitude differences dwarf the margin"


def test_full_exercise_four_fewer_pairs_generalise_later():
    f = findings.load(STEM)
    s = f["small_train_fraction"]
    assert s["train_fraction"] < 0.5 and s["epoch_memorised"] is not None
    assert s["test_accuracy_at_end"] < s["this_run_test_accuracy_at_same_epoch"], f"exercise 4's answer: {s}"
    assert s["comparison"] == "below" and s["epoch_memorised"] < f["epoch_memorised"], f"the answer says: memorised sooner, generalises less: {s}"
