"""Notebook 09: the model groks, the Fourier mechanism survives interventions that could break it, the
progress measures move before the test accuracy, and the control without weight decay does not grok."""
import pytest
import torch

from glassbox import findings
from glassbox.studies import grokking
from glassbox.journal import checkpoints

STEM = "09_grokking"
ABLATIONS = ["model as trained", "logits: key frequencies removed", "logits: key frequencies only",
             "logits: as many other frequencies removed", "embedding: key frequencies removed",
             "embedding: key frequencies only", "embedding: as many other frequencies removed"]


def n_params(p: int, d: int, mlp: int) -> int:
    """Embedding and positions (3), Q/K/V/O with biases, MLP with biases, unembedding with bias; no LayerNorm."""
    vocab = p + 1
    return vocab * d + 3 * d + 4 * (d * d + d) + (d * mlp + mlp + mlp * d + d) + d * vocab + vocab


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    for key in ["headline", "final", "epoch_memorised", "key_frequencies", "ablations", "measures_at", "halfway_epoch",
                "control_final", "control_weights", "cos_fit_r2", "embedding_gini"]:
        assert key in f, f"smoke run did not record {key!r}"
    assert f["n_params"] == n_params(13, 32, 64), "a 1-layer model without LayerNorm, smoke sizes p 13, d_model 32, d_mlp 64"
    assert f["n_pairs"] == {"train": round(0.5 * 169), "test": 169 - round(0.5 * 169)}
    assert f["epoch_memorised"] is not None, "even the smoke model should learn its 84 training pairs by heart"
    assert f["key_frequencies"] and all(1 <= k <= 6 for k in f["key_frequencies"]), "frequencies of p = 13 are 1..6"
    assert list(f["ablations"]) == ABLATIONS
    assert f["control_final"]["train_accuracy"] >= 0.99, "the control memorises too"
    assert f["control_weights"]["weight_norm"] > f["measures_at"]["end"]["weight_norm"], \
        "weight decay must leave the smaller weights"


def test_full_grokking_happens_late():
    f = findings.load(STEM)
    assert f["final"]["test_accuracy"] >= 0.99, f"test accuracy {f['final']['test_accuracy']:.2%}: the model did not grok"
    assert f["final"]["train_accuracy"] == 1.0
    mem, half, grok = f["epoch_memorised"], f["epoch_test_half"], f["epoch_grokked"]
    assert mem is not None and half is not None and grok is not None, f"phase epochs {mem}, {half}, {grok}"
    assert mem < half < grok, "memorise, then reach 50% test accuracy, then 99%"
    assert half >= 3 * mem, f"generalisation (epoch {half}) should come long after memorisation (epoch {mem})"
    assert f["test_accuracy_when_memorised"] < 0.5
    assert f["measures_at"]["memorised"]["test_loss"] > f["measures_at"]["start"]["test_loss"], \
        "the memorising model is confidently wrong on test pairs: its test loss is above the initial one"


def test_full_mechanism_is_fourier():
    f = findings.load(STEM)
    key = f["key_frequencies"]
    assert 2 <= len(key) <= 8, f"expected a few key frequencies (Nanda et al. find 5), got {key}"
    assert f["embedding_energy_on_key_frequencies"] > 0.5, "the embedding's norm should sit on the key frequencies"
    assert f["embedding_gini"]["trained"] > f["embedding_gini"]["initialisation"] + 0.2, "the embedding should be sparse in Fourier"
    assert f["neurons"]["explained_by_a_key_frequency"] > 0.5, "most live neurons should follow one key frequency"
    assert f["cos_fit_r2"]["key frequencies"] > 0.5, "cos(w(a + b - c)) over the key frequencies should explain the logits"
    assert f["cos_fit_r2"]["random frequencies (best of 20)"] < 0.1, "random frequencies must explain almost nothing"


def test_full_interventions():
    a = {k: v["test_accuracy"] for k, v in findings.load(STEM)["ablations"].items()}
    assert a["logits: key frequencies removed"] < 0.1, f"removing the key frequencies should destroy accuracy: {a}"
    assert a["embedding: key frequencies removed"] < 0.1, f"... also when removed from the embedding: {a}"
    assert a["logits: key frequencies only"] >= 0.95, f"keeping only the key frequencies should keep accuracy: {a}"
    assert a["embedding: key frequencies only"] >= 0.9, f"... also in the embedding: {a}"
    assert a["logits: as many other frequencies removed"] >= 0.95, "the control: other frequencies are not needed"
    assert a["embedding: as many other frequencies removed"] >= 0.95


def test_full_progress_measures_move_before_the_test_accuracy():
    f = findings.load(STEM)
    m, half = f["measures_at"], f["epoch_test_half"]
    assert f["halfway_epoch"]["restricted_loss"] < half, "restricted loss should be half-way down before test accuracy hits 50%"
    assert f["halfway_epoch"]["restricted_loss"] < f["halfway_epoch"]["test_loss"], "... and before the test loss is"
    assert m["memorised"]["restricted_test_accuracy"] > m["memorised"]["test_accuracy"] + 0.2, \
        "at memorisation the key frequencies alone should already answer far more test pairs than the model"
    assert m["test_half"]["restricted_loss"] < m["memorised"]["restricted_loss"] / 3, "restricted loss falls in circuit formation"
    assert m["test_half"]["restricted_loss"] < m["test_half"]["test_loss"], "the key frequencies alone already do better"
    assert m["test_half"]["excluded_loss"] > m["memorised"]["excluded_loss"], "the training answers come to rely on the key frequencies"
    assert m["grokked"]["weight_norm"] < m["test_half"]["weight_norm"] < m["memorised"]["weight_norm"], \
        "weight decay cleans up: the weights shrink after memorisation"
    assert m["grokked"]["embedding_gini"] > m["test_half"]["embedding_gini"] > m["memorised"]["embedding_gini"], \
        "the embedding grows sparser in the Fourier basis through both later phases"


def test_full_control_does_not_grok():
    f = findings.load(STEM)
    c = f["control_final"]
    assert c["train_accuracy"] >= 0.99, "without weight decay the model still memorises"
    assert c["test_accuracy"] < 0.5 and f["control_epoch_test_half"] is None, \
        f"the control reached {c['test_accuracy']:.1%} test accuracy: it grokked within the budget"
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


WRONG_ANSWERS = ("my_frequency_norms", [
    ("def my_frequency_norms(W):\n    c = fourier.basis(W.shape[0]) @ W\n"
     "    return torch.stack([c[0].norm()] + [c[2 * k - 1 : 2 * k + 1].norm() for k in range(1, W.shape[0] // 2 + 1)]) ** 2",
     "squared norms"),
    ("def my_frequency_norms(W):\n    c = fourier.basis(W.shape[0]) @ W\n"  # frequency k stored at index k + 1
     "    return torch.stack([c[0].norm() * 0, c[0].norm()] + [c[2 * k - 1 : 2 * k + 1].norm() for k in range(1, W.shape[0] // 2)])",
     "off by one"),
    ("def my_frequency_norms(W):\n    c = fourier.basis(W.shape[0]) @ W\n"
     "    return torch.stack([c[0].norm()] + [c[2 * k - 1].norm() for k in range(1, W.shape[0] // 2 + 1)])",
     "combine cos and sin"),
])


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)


def test_full_exercise_one_frequency_alone_leaves_a_margin_too_thin():
    f = findings.load(STEM)
    one, all_key = f["only_strongest_frequency"], f["ablations"]["logits: key frequencies only"]
    assert one["frequency"] in f["key_frequencies"]
    assert one["test_accuracy"] < 0.5 <= all_key["test_accuracy"] and one["test_loss"] > 10 * all_key["test_loss"], \
        f"exercise 1's answer: one frequency ({one}) is far worse than all key frequencies together ({all_key})"
