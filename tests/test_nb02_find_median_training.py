"""Notebook 02: the Find-Median transformer meets its targets, and its findings are its checkpoint cards."""
import pytest

from glassbox import checkpoints, data, findings

STEM = "02_find_median_training"


def n_params(d: int, vocab: int = 50, ctx: int = 7) -> int:
    """Embeddings, two LayerNorms, Q/K/V/O with biases, unembedding with bias."""
    return (vocab + ctx) * d + 2 * 2 * d + 4 * (d * d + d) + vocab * d + vocab


def test_smoke(smoke_run):
    f = smoke_run(STEM)
    for key in ["uniform_accuracy", "family_accuracy", "train_seconds", "n_params", "min_model_uniform_accuracy",
                "headline", "width_uniform_accuracy", "rank_r_median_table_accuracy", "edge_median_fraction"]:
        assert key in f, f"smoke run did not record {key!r}"
    assert f["n_params"] == n_params(64), "n_params should count a 1-layer attention-only model with LayerNorm, d_model 64"
    assert f["p_uniform_median_is_0"] == pytest.approx(5.3357e-6, rel=1e-3), "P(median = 0) = P(at least 4 zeros of 7)"
    assert set(f["family_accuracy"]) == set(data.FAMILIES), "score every family, held-out ones included"
    assert all(0 <= a <= 1 for a in f["family_accuracy"].values())
    assert f["edge_median_fraction"]["uniform"] < 0.001 < 0.05 < f["edge_median_fraction"]["training mixture"], \
        "the training mixture must put real weight on medians 0 and 49"
    assert set(f["width_uniform_accuracy"]) == {"16", "32", "64", "128"}
    ranks = f["rank_r_median_table_accuracy"]
    assert ranks["63"] == 1.0 and 0.95 < ranks["31"] < 1.0 and ranks["15"] < ranks["31"], \
        "the rank-r approximations of -|c - x| should get better with r and be exact at r = 63"


def test_full_findings():
    f = findings.load(STEM)
    assert f["uniform_accuracy"] >= 0.999, f"uniform accuracy {f['uniform_accuracy']:.4%} below the 99.9% target"
    worst = min(f["family_accuracy"], key=f["family_accuracy"].get)
    assert f["family_accuracy"][worst] >= 0.99, f"family {worst} at {f['family_accuracy'][worst]:.2%}, target 99%"
    assert set(data.HELD_OUT_FAMILIES) <= set(f["family_accuracy"]), "held-out families must be scored"
    assert min(f["edge_median_accuracy"].values()) >= 0.99, "medians 0 and 49 must be answered like the rest"
    assert f["train_seconds"] < 300, f"training took {f['train_seconds']} s, target < 300 s (was the machine busy?)"
    assert f["min_model_uniform_accuracy"] >= 0.999
    widths = f["width_uniform_accuracy"]
    assert widths["64"] == f["uniform_accuracy"] and widths["16"] < widths["32"] < widths["64"], \
        "accuracy should rise with d_model under the same recipe"
    assert f["d32_errors_off_by_one"] > 0.9, "the 32-wide model's errors were expected to be off by one"


def test_full_findings_equal_the_checkpoint_cards():
    f = findings.load(STEM)
    card = checkpoints.load_card("median")
    assert card["config"]["d_model"] == 64 and f["n_params"] == n_params(64)
    assert f["uniform_accuracy"] == card["metrics"]["uniform_accuracy"], "findings and checkpoint card disagree: rerun the notebook"
    assert f["family_accuracy"] == card["metrics"]["family_accuracy"]
    assert f["train_seconds"] == card["train_seconds"]
    assert f["min_model_uniform_accuracy"] == checkpoints.load_card("min")["metrics"]["uniform_accuracy"]
    for d in (16, 32, 128):
        assert f["width_uniform_accuracy"][str(d)] == checkpoints.load_card(f"median_d{d}")["metrics"]["uniform_accuracy"]
