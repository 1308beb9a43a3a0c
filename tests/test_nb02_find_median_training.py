"""Notebook 02: the Find-Median transformer, its evaluation sets named for what they are (training families,
validation families, a test that chose nothing, lists deduplicated against training), and its checkpoint cards."""
import pytest

from glassbox import findings
from glassbox.studies import find_median
from glassbox.journal import checkpoints

STEM = "02_find_median_training"
KEYS = ["uniform_accuracy", "family_accuracy", "train_seconds", "n_params", "min_model_uniform_accuracy", "headline",
        "width_uniform_accuracy", "rank_r_median_table_accuracy", "edge_median_fraction", "training_multisets",
        "unseen_accuracy", "d32_error_rate_by_gap", "d32_error_share_by_gap", "d32_edge_median_accuracy",
        "d32_bunched_accuracy", "test_accuracy", "test_worst_family", "control_uniform_only_d32"]


def n_params(d: int, vocab: int = 50, ctx: int = 7) -> int:
    """Embeddings, two LayerNorms, Q/K/V/O with biases, unembedding with bias."""
    return (vocab + ctx) * d + 2 * 2 * d + 4 * (d * d + d) + vocab * d + vocab


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    missing = [k for k in KEYS if k not in f]
    assert not missing, f"smoke run did not record {missing}"
    assert f["n_params"] == n_params(64), "n_params should count a 1-layer attention-only model with LayerNorm, d_model 64"
    assert f["p_uniform_median_is_0"] == pytest.approx(5.3357e-6, rel=1e-3), "P(median = 0) = P(at least 4 zeros of 7)"
    assert set(f["family_accuracy"]) == set(find_median.FAMILIES), "score every family, validation ones included"
    assert f["edge_median_fraction"]["uniform"] < 0.001 < 0.05 < f["edge_median_fraction"]["training mixture"], \
        "the training mixture must put real weight on medians 0 and 49"
    assert set(f["width_uniform_accuracy"]) == {"d16", "d32", "d64", "d128"}
    ranks = f["rank_r_median_table_accuracy"]
    assert ranks["rank 63"] == 1.0 and 0.95 < ranks["rank 31"] < 1.0 and ranks["rank 15"] < ranks["rank 31"], \
        "the rank-r approximations of -|c - x| should get better with r and be exact at r = 63"
    assert f["unseen_accuracy"]["all_equal"]["unseen"] == 0, "40 smoke batches already draw all 50 all-equal lists"
    assert set(f["test_accuracy"]["d64"]) == {"uniform"} | set(find_median.TEST_FAMILIES)
    assert not set(find_median.TEST_FAMILIES) & set(find_median.FAMILIES), "test families must not be training or validation families"
    assert sum(f["d32_error_share_by_gap"].values()) == pytest.approx(1.0), "the shares of errors by gap must add up to 1"
    control = f["control_uniform_only_d32"]
    assert set(control["edge_median_accuracy"]) == {"median 0", "median 49"} and control["lists_with_median_0_or_49"] > 0, \
        "the uniform-only control must be scored on the same any_median lists as the mixture models"
    assert " s on " not in f["headline"] and "trained in" not in f["headline"], "the headline must quote no seconds"


def test_full_targets_on_all_lists_drawn():
    f = findings.load(STEM)
    assert f["uniform_accuracy"] >= 0.999, f"uniform accuracy {f['uniform_accuracy']:.4%} below the 99.9% target"
    worst = min(f["family_accuracy"], key=f["family_accuracy"].get)
    assert f["family_accuracy"][worst] >= 0.99, f"family {worst} at {f['family_accuracy'][worst]:.2%}, target 99%"
    assert f["worst_family"] == [worst, f["family_accuracy"][worst]]
    assert min(f["edge_median_accuracy"].values()) >= 0.99, "medians 0 and 49 must be answered like the rest"
    assert f["min_model_uniform_accuracy"] >= 0.999


def test_full_lists_unseen_in_training():
    f = findings.load(STEM)
    u = f["unseen_accuracy"]
    assert f["training_multisets"] > 2_000_000, "2,500 batches of 2,048 lists hold millions of distinct multisets"
    assert u["headline uniform"]["unseen"] > 0.95 * u["headline uniform"]["n"] and u["headline uniform"]["accuracy"] >= 0.999, \
        "claim: nearly all uniform lists are new, and the model answers them"
    assert u["all_equal"]["unseen"] == 0 and u["consecutive"]["unseen"] == 0, "claim: every all-equal and consecutive multiset was seen"
    for fam in ("median_at_edge", "ends_and_middle", "two_ends", "narrow"):
        assert u[fam]["unseen"] < 0.05 * u[fam]["n"], f"claim: {fam} is nearly all seen in training: {u[fam]}"
    for fam in ("spaced", "outlier", "pairs"):
        assert u[fam]["unseen"] > 0.5 * u[fam]["n"] and u[fam]["accuracy"] >= 0.999, f"claim: {fam} is mostly new and answered: {u[fam]}"


def test_full_test_set_that_chose_nothing():
    f = findings.load(STEM)
    t = f["test_accuracy"]["d64"]
    assert t["uniform"]["accuracy"] >= 0.999, f"unseen uniform test lists: {t['uniform']}"
    assert t["two_clusters"]["accuracy"] < 0.99, "the notebook reports that two tight clusters miss the 99% target"
    assert f["test_worst_family"] == ["two_clusters", t["two_clusters"]["accuracy"]]
    assert all(t[fam]["unseen"] > 0.5 * t[fam]["n"] for fam in t), "the test counts unseen lists, most of them new"
    t32 = f["test_accuracy"]["d32"]
    assert all(t32[fam]["accuracy"] < t[fam]["accuracy"] for fam in t), "the 32-wide model should do worse on every test set"


def test_full_what_the_mixture_and_the_width_did():
    f = findings.load(STEM)
    widths = f["width_uniform_accuracy"]
    assert widths["d64"] == f["uniform_accuracy"] and widths["d16"] < widths["d32"] < widths["d64"], \
        "accuracy should rise with d_model under the same recipe"
    assert min(f["d32_edge_median_accuracy"].values()) >= 0.99 and min(f["d32_bunched_accuracy"].values()) >= 0.99, \
        "claim: with our mixture the 32-wide model already answers the edges and the bunched families"
    control = f["control_uniform_only_d32"]  # same width, recipe and seed, uniform lists only
    assert max(control["edge_median_accuracy"].values()) < 0.5, \
        f"the control trained on uniform lists only must fail at medians 0 and 49, or the mixture fixed nothing: {control}"
    assert control["predicted_0_or_49"] < 0.5 * control["lists_with_median_0_or_49"], \
        f"the control should rarely answer 0 or 49 at all: {control}"
    assert min(control["bunched_accuracy"].values()) < 0.9 < min(f["d32_bunched_accuracy"].values()), \
        f"claim: the mixture, not the width, answers lists bunched at both ends: control {control['bunched_accuracy']}"
    assert widths["d32"] < 0.99 <= 0.999 <= widths["d64"], "claim: width fixed the precision on uniform lists"


def test_full_where_the_32_wide_model_errs():
    f = findings.load(STEM)
    assert f["d32_errors_off_by_one"] > 0.9, "the 32-wide model's errors were expected to be off by one"
    rate, share = f["d32_error_rate_by_gap"], f["d32_error_share_by_gap"]
    assert rate["gap 1"] == max(rate.values()), f"claim: the error rate is highest at gap 1: {rate}"
    assert share["gap 1"] < 0.6 and share["gap 3"] > 0.25, f"claim: the errors are not confined to gap 1: {share}"
    ranks = f["rank_r_median_table_accuracy"]
    assert abs(ranks["rank 31"] - f["width_uniform_accuracy"]["d32"]) < 0.01, "claim: rank 31 ~ the 32-wide model"


def test_full_findings_equal_the_checkpoint_cards():
    f = findings.load(STEM)
    card = checkpoints.load_card("median")
    assert card["config"]["d_model"] == 64 and f["n_params"] == n_params(64)
    assert f["uniform_accuracy"] == card["metrics"]["uniform_accuracy"], "findings and checkpoint card disagree: rerun the notebook"
    assert f["family_accuracy"] == card["metrics"]["family_accuracy"]
    assert f["train_seconds"] == pytest.approx(card["train_seconds"], abs=0.01)
    assert f["min_model_uniform_accuracy"] == checkpoints.load_card("min")["metrics"]["uniform_accuracy"]
    for d in (16, 32, 128):
        assert f["width_uniform_accuracy"][f"d{d}"] == checkpoints.load_card(f"median_d{d}")["metrics"]["uniform_accuracy"]


def test_full_headline_quotes_the_findings():
    f = findings.load(STEM)
    h, t = f["headline"], f["test_accuracy"]["d64"]
    for text in (f"{f['uniform_accuracy']:.3%} of 100k", f">= {min(f['family_accuracy'].values()):.2%}",
                 f"{t['uniform']['accuracy']:.3%}", f"{t['two_clusters']['accuracy']:.2%} of two tight clusters",
                 f"medians 0/49 {sum(f['d32_edge_median_accuracy'].values()) / 2:.1%}",
                 f"uniform lists only {sum(f['control_uniform_only_d32']['edge_median_accuracy'].values()) / 2:.1%}",
                 f"{f['width_uniform_accuracy']['d32']:.2%} uniform", f"{f['min_model_uniform_accuracy']:.3%}"):
        assert text in h, f"the headline should quote {text!r}: {h}"


def test_full_exercise_answer_the_hardest_family_of_the_32_wide_model():
    e = findings.load(STEM)["exercise_d32_hardest_family"]
    assert e["family"] == "spaced" and e["family"] in find_median.HELD_OUT_FAMILIES, \
        f"the answer explains `spaced`, a validation family, as the hardest for median_d32; got {e['family']}"
    assert e["distinct_multisets"] <= 5 and e["top_multiset_share"] > 0.5, f"the answer says a few lists, one dominant: {e}"
    ranked = sorted(e["top_multiset"])
    assert len({b - a for a, b in zip(ranked, ranked[1:])}) == 1 and ranked[1] - ranked[0] == 8, \
        f"the answer says the dominant list is a progression of step 8 (neighbours far from the median): {ranked}"
    assert e["off_by_one_share"] > 0.5


WRONG_ANSWERS = {"my_median": [
    ("def my_median(tokens):\n    return tokens.sort(dim=1).values[:, 4]", "off by one"),
    ("def my_median(tokens):\n    return tokens[:, tokens.shape[1] // 2]", "sort each list first"),
    ("def my_median(tokens):\n    return torch.stack([row.unique()[len(row.unique()) // 2] for row in tokens])",
     "dropped repeated values"),
    ("def my_median(tokens):\n    return tokens.sort(dim=1).values[:, 3:4]", "expected one median per list"),
], "my_multiset_key": [
    ("def my_multiset_key(tokens):\n    return tokens.sort(dim=1).values.long().sum(1)", "own base-50 digit"),
    ("def my_multiset_key(tokens):\n    key = torch.zeros(len(tokens), dtype=torch.int64)\n"
     "    for digit in tokens.long().T:\n        key = key * 50 + digit\n    return key", "sort each list first"),
    ("def my_multiset_key(tokens):\n    return (tokens.sort(dim=1).values.long() * 50 ** torch.arange(tokens.shape[1])).sum(1)",
     "digits are reversed"),
]}


def test_full_exercise_answer_the_model_finds_the_median_of_shorter_lists_and_an_untrained_twin_does_not():
    """Exercise 4's answer: trained on 7-number lists only, the model answers the median of the first 5 (and 3)
    numbers and, on 6, a number between the two middle ones; the untrained twin of the same shape does not."""
    e = findings.load(STEM)["exercise_shorter_lists"]
    assert e["7"]["median"] > 0.99 and e["5"]["median"] > 0.9 and e["3"]["median"] > 0.9
    assert e["6"]["between_middle_two"] > 0.9 and e["6"]["median"] is None
    assert e["untrained, 5"]["median"] < 0.2, "control: an untrained model must not find the median of 5"


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)
