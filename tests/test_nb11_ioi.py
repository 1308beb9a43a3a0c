"""Notebook 11: indirect object identification in a transformer trained here with three seeds; its circuit found by
path patching from ABC (every earlier head a sender at every step) on one set of sentences, its heads classed by measured
signatures, the names separated from the repetition by three more corruptions, and held on fresh sentences to Wang et
al.'s faithfulness, completeness and minimality, per seed. The smoke run loosely; the committed full run against each
claim its prose makes, each beside the same measurement on its control."""
import re

import pytest

from glassbox import findings
from glassbox.journal import checkpoints
from glassbox.studies import ioi

STEM = "11_ioi"
KEYS = ["n_templates", "n_name_pairs", "accuracy", "target_status", "clean_logit_diff", "threshold", "path_patching", "classes",
        "class_names", "circuit", "circuit_names", "two_classes", "strongest_to_queries", "max_to_values", "layer2_max_to_logits",
        "corruptions", "repetition",
        "signatures", "class_signatures", "n_heads", "direct_by_position", "layer0_reader", "faithfulness",
        "random_circuit_faithfulness", "untrained_F_M", "gpt2_faithfulness", "completeness", "incompleteness_max",
        "random_circuit_incompleteness", "minimality", "minimality_outside", "minimality_summary", "minimality_verdict",
        "prediction", "shortcut_rules", "chance_once_named", "seeds", "targets_met", "seeds_passing", "target_verdict",
        "seeds_verdict",
        "exercise_single_head_ablation", "exercise_costliest_head", "exercise_direct_heads_together", "headline"]
HELD_OUT = "held-out templates and pairs"
DIRECT = ("name mover", "partial name mover", "S suppressor", "negative name mover", "other direct")


def reads(sig: dict) -> str:
    return max(("IO", "S1", "S2"), key=lambda k: sig[f"END->{k}"])


def check_classes_follow_their_rules(f):
    """Every class member passed its tracing step and has its class's signature (recomputed from recorded numbers)."""
    t, pp, sig, cls = f["threshold"], f["path_patching"], f["signatures"], f["classes"]
    for head in cls["name mover"]:
        assert pp["to logits"][head] <= -t and reads(sig[head]) == "IO" and sig[head]["copying margin"] > 0, head
        assert sig[head]["direct from IO"] >= 0.5, f"{head} moves most of its effect from elsewhere: a partial name mover"
    for head in cls["partial name mover"]:
        assert pp["to logits"][head] <= -t and reads(sig[head]) == "IO" and sig[head]["copying margin"] > 0, head
        assert sig[head]["direct from IO"] < 0.5, head
    for head in cls["S suppressor"]:
        assert pp["to logits"][head] <= -t and reads(sig[head]) != "IO" and sig[head]["copying margin"] < 0, head
    for head in cls["negative name mover"]:
        assert pp["to logits"][head] >= t and reads(sig[head]) == "IO" and sig[head]["copying margin"] < 0, head
    for head in cls["last-name reader"]:
        assert pp["to queries"][head] <= -t and sig[head]["END->S2"] > sig[head]["END->IO"], head
        assert sig[head]["ABC END->S2"] > sig[head]["ABC END->IO"], f"{head} must read the last name on ABC too"
    for head in cls["duplicate-token"]:
        assert pp["to values"][head] <= -t and sig[head]["S2->S1 (duplicate)"] > sig[head]["ABC S2->S1 (duplicate)"], head
    direct = {h for h, e in pp["to logits"].items() if abs(e) >= t}
    assert direct == {h for k in DIRECT for h in cls[k]}, "every head past the threshold on the logits has a direct class"
    assert set(f["circuit"]) == {h for v in cls.values() for h in v} or len(f["circuit"]) == 1


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    missing = [k for k in KEYS if k not in f]
    assert not missing, f"smoke run did not record {missing}"
    assert f["n_templates"] == {"train": 30, "held-out": 6}
    assert f["n_name_pairs"]["train"] + f["n_name_pairs"]["held-out"] == 30 * 29
    assert list(f["classes"]) == list(ioi.CLASSES) and f["circuit"], "the circuit keeps at least the strongest direct head"
    check_classes_follow_their_rules(f)
    faith = f["faithfulness"]
    assert faith["F(C)/F(M)"] == pytest.approx(faith["F(C)"] / faith["F(M)"], rel=1e-6)
    assert len(f["completeness"]) == 2 ** len(f["circuit"]) == f["incompleteness_max"]["n subsets"] + 1, "every subset K is tried"
    assert f["incompleteness_max"]["K"] != "none", "the largest gap is taken over the non-empty K"
    assert set(f["corruptions"]) == set(f["circuit"]) and all(set(r) == {"ABC", "CDD", "ABA", "BAB", "ABA / ABC"}
                                                              for r in f["corruptions"].values())
    for s in f["seeds"]:
        assert s["faithful"] == ("passes" if s["faithfulness"] > s["best random"] else "fails")
        assert s["complete"] == ("passes" if s["incompleteness"] < s["random min incompleteness"] else "fails")
        assert f"seed {s['seed']} {s['faithfulness']:.0%} vs {s['best random']:.0%} ({s['faithful']})" in f["headline"]
    assert len(f["minimality_outside"]) == f["n_heads"] - len(f["circuit"]), "every head outside the circuit is a control"
    assert len(f["exercise_single_head_ablation"]) == f["n_heads"] == 12
    assert len(f["seeds"]) == 3 and [s["seed"] for s in f["seeds"]] == [0, 1, 2]
    assert all(s["target"] == ("met" if s["accuracy"] >= 0.99 else "missed") for s in f["seeds"])
    assert f["target_status"] == ("met" if f["accuracy"][f"trained, {HELD_OUT}"]["accuracy"] >= 0.99 else "missed")
    assert all(v == pytest.approx(1.0) for rule in f["shortcut_rules"].values() for v in rule.values()), \
        "in every set S is the last name, so both shortcut rules answer every sentence"
    assert not re.search(r"\d\s*(s|sec|seconds|min|minutes)\b", f["headline"]), "the headline must not quote wall-clock time"


def test_full_findings_are_for_the_committed_checkpoints():
    f = findings.load(STEM)
    card = checkpoints.load_card("ioi_3l")
    assert card["metrics"]["held_out_accuracy"] == pytest.approx(f["accuracy"][f"trained, {HELD_OUT}"]["accuracy"], abs=1e-6)
    assert card["config"]["n_layers"] == 3 and card["config"]["attn_only"], "the notebook says 3 layers, attention-only"
    for s in f["seeds"][1:]:
        other = checkpoints.load_card(f"ioi_3l_seed{s['seed']}")
        assert other["seed"] == s["seed"] and other["metrics"]["held_out_accuracy"] == pytest.approx(s["accuracy"], abs=1e-6)


def test_full_the_99_percent_target_is_reported_per_seed():
    """The target is per run: reported for each seed (no xfail hiding a miss), and the prose's verdict follows."""
    f = findings.load(STEM)
    seeds = f["seeds"]
    assert seeds[0]["accuracy"] == pytest.approx(f["accuracy"][f"trained, {HELD_OUT}"]["accuracy"], abs=1e-9)
    assert [s["target"] for s in seeds] == ["met" if s["accuracy"] >= 0.99 else "missed" for s in seeds]
    assert f["targets_met"] == sum(s["target"] == "met" for s in seeds)
    assert f"met on {f['targets_met']} of 3 seeds" in f["headline"]
    # the prose: some seeds meet it and some do not, so it is the seed, not the recipe
    assert 0 < f["targets_met"] < 3 and f["target_verdict"].startswith("whether a run meets it depends on the seed")


def test_full_accuracy_far_above_the_untrained_model():
    f = findings.load(STEM)
    acc = f["accuracy"]
    assert all(s["accuracy"] > 0.8 for s in f["seeds"]) and acc[f"trained, {HELD_OUT}"]["logit diff"] > 2
    assert acc[f"untrained, {HELD_OUT}"]["accuracy"] < 0.1, "control: an untrained model answers by chance"
    assert abs(acc[f"untrained, {HELD_OUT}"]["logit diff"]) < 0.5


def test_full_classes_and_the_differences_from_gpt2():
    f = findings.load(STEM)
    check_classes_follow_their_rules(f)
    t, cls, pp, sig = f["threshold"], f["classes"], f["path_patching"], f["signatures"]
    layer = lambda head: int(head[1])
    # the prose: name movers (one of them partial) in layer 1, steered by layer-0 last-name readers that have direct paths too
    movers = cls["name mover"] + cls["partial name mover"]
    assert cls["name mover"] and cls["partial name mover"] and all(layer(h) == 1 for h in movers), movers
    assert all(sig[h]["direct from IO"] >= 0.5 for h in cls["name mover"]), "control: the full name movers read the IO"
    assert all(sig[h]["direct from IO"] < 0.5 for h in cls["partial name mover"])
    assert cls["last-name reader"] and all(layer(h) == 0 for h in cls["last-name reader"]), cls["last-name reader"]
    assert set(cls["last-name reader"]) <= {h for k in DIRECT for h in cls[k]}, "the last-name readers carry the answer directly too"
    assert f["two_classes"] == ", ".join(sorted(cls["last-name reader"]))
    assert f["strongest_to_queries"]["effect"] <= -t and f["strongest_to_queries"]["head"] in cls["last-name reader"]
    # nothing past the threshold into the values, so no duplicate-token or induction heads; layer 2 small
    assert f["max_to_values"] > -t and not cls["duplicate-token"] and not cls["induction"]
    assert f["max_to_values"] == pytest.approx(min(pp["to values"].values()), abs=1e-12)
    assert f["layer2_max_to_logits"] < t


def test_full_signatures_against_the_other_heads_and_the_abc_control():
    f = findings.load(STEM)
    sig, cs, cls = f["signatures"], f["class_signatures"], f["classes"]
    nm, pnm, lr = cs["name mover"], cs["partial name mover"], cs["last-name reader"]
    # name movers prefer the IO over S1 on IOI; on ABC (the control, no repeated name) the preference must vanish
    assert nm["END->IO"] - nm["END->S1"] > 0.1 and nm["END->IO"] > nm["END->S2"]
    assert abs(nm["ABC END->IO"] - nm["ABC END->S1"]) < 0.3 * (nm["END->IO"] - nm["END->S1"])
    assert nm["copying margin"] > 0 and pnm["copying margin"] > 0
    assert nm["direct from IO"] >= 0.5 > pnm["direct from IO"], "the partial name mover's effect comes mostly from elsewhere"
    # last-name readers look at S2 on IOI and on ABC alike ("whether or not it repeats")
    assert lr["END->S2"] > lr["END->IO"] and lr["ABC END->S2"] > lr["ABC END->IO"]
    # the matched control: the lookalikes are exactly the other heads with the same signature
    others = [h for h in sig if h not in cls["name mover"]]
    same = [h for h in others if reads(sig[h]) == "IO" and sig[h]["copying margin"] > 0 and sig[h]["direct from IO"] >= 0.5]
    assert nm["n lookalikes"] == len(same) and nm["lookalikes"] == (", ".join(same) or "none")
    mean = lambda heads, key: sum(sig[h][key] for h in heads) / len(heads)
    assert nm["END->IO"] == pytest.approx(mean(cls["name mover"], "END->IO"), abs=1e-9)


def test_full_abc_changes_the_names_and_the_repetition_and_the_heads_follow_the_name_at_s2():
    """ABC removes the names and the repetition at once: CDD (new names, repetition kept) must do what ABC does, ABA
    (same names, the IO repeated) more, and BAB (same names swapped between slots, S still repeated) is the control."""
    f = findings.load(STEM)
    c, r, t = f["corruptions"], f["repetition"], f["threshold"]
    assert set(c) == set(f["circuit"]) and r["n circuit"] == len(c)
    for head, row in c.items():
        assert row["ABC"] == pytest.approx(f["path_patching"]["to logits"][head], abs=1e-12)
    assert r["max |CDD - ABC|"] == pytest.approx(max(abs(v["CDD"] - v["ABC"]) for v in c.values()), abs=1e-12)
    assert r["max |CDD - ABC|"] < t / 2, "new names with the repetition kept should do what ABC does"
    ratios = [v["ABA / ABC"] for v in c.values() if v["ABA / ABC"] is not None]
    assert r["ABA / ABC min"] == pytest.approx(min(ratios)) and r["ABA / ABC max"] == pytest.approx(max(ratios))
    assert r["ABA / ABC min"] > 1.3, "moving the repetition with the names kept moves every head more than ABC does"
    assert r["max |BAB|"] == pytest.approx(max(abs(v["BAB"]) for v in c.values()), abs=1e-12)
    assert r["max |BAB|"] < t, "control: moving the names between slots, with the repetition kept, moves no head much"
    follow = [h for h, v in c.items() if v["ABA"] <= -t and abs(v["BAB"]) < t]
    assert r["follow"] == ", ".join(follow) and r["n follow"] == len(follow) == len(c)


def test_full_a_layer0_head_tells_the_io_from_s_by_the_softmax_and_reads_the_io():
    f = findings.load(STEM)
    r = f["layer0_reader"]
    assert r["head"].startswith("L0") and r["head"] in f["circuit"]
    assert r["IOI"]["S1"] < 0.5 * r["ABC"]["S1"], "S1 loses its attention when its name comes back at S2"
    assert r["IOI"]["S2"] > r["ABC"]["S2"], "... and S2 takes it"
    part = r["direct from"]
    assert part["IO"] > 0 and part["IO"] > 3 * abs(part["S2"]) and part["IO"] > 3 * abs(part["S1"]), part
    assert part == f["direct_by_position"][r["head"]]


# measured on the committed checkpoints (fresh sentences, non-empty K) before the full run that records them
EXPECTED = {"faithful": ["passes", "passes", "fails"], "complete": ["passes", "passes", "fails"]}


def test_full_faithfulness_on_fresh_sentences_against_random_circuits():
    f = findings.load(STEM)
    faith, rand = f["faithfulness"], f["random_circuit_faithfulness"]
    assert faith["F(C)/F(M)"] > rand["max"], f"circuit {faith['F(C)/F(M)']:.3f} vs the best random circuit {rand['max']:.3f}"
    assert rand["n"] >= 20
    assert abs(f["untrained_F_M"]) < 0.5, "control: the untrained model has no logit difference to recover"
    assert abs(faith["F(empty)"]) < faith["F(C)"], "with every head ablated the logit difference must fall"
    assert faith["F(M)"] != pytest.approx(f["clean_logit_diff"], rel=1e-6), "scored on other sentences than the traced ones"


def test_full_completeness_over_every_non_empty_subset_against_random_circuits():
    f = findings.load(STEM)
    worst, rand, comp = f["incompleteness_max"], f["random_circuit_incompleteness"], f["completeness"]
    assert worst["n subsets"] + 1 == len(comp) == 2 ** len(f["circuit"]) and worst["K"] != "none"
    assert worst["share of F(M)"] == pytest.approx(max(v["share of F(M)"] for k, v in comp.items() if k != "none"), rel=1e-9)
    assert worst["at K = none"] == pytest.approx(1 - f["faithfulness"]["F(C)/F(M)"], abs=1e-6), "K = none is faithfulness"
    assert rand["n"] >= 20 and 0 <= rand["n worst at K = none"] <= rand["n"]
    assert worst["share of F(M)"] < rand["min"], f"the circuit's largest gap {worst} should be below every random circuit's ({rand})"


def test_full_both_criteria_per_seed_as_the_headline_says():
    f = findings.load(STEM)
    seeds = f["seeds"]
    assert seeds[0]["faithfulness"] == pytest.approx(f["faithfulness"]["F(C)/F(M)"], rel=1e-9)
    assert seeds[0]["best random"] == pytest.approx(f["random_circuit_faithfulness"]["max"], rel=1e-9)
    assert seeds[0]["incompleteness"] == pytest.approx(f["incompleteness_max"]["share of F(M)"], rel=1e-9)
    assert seeds[0]["random min incompleteness"] == pytest.approx(f["random_circuit_incompleteness"]["min"], rel=1e-9)
    for s in seeds:
        assert s["faithful"] == ("passes" if s["faithfulness"] > s["best random"] else "fails"), s
        assert s["complete"] == ("passes" if s["incompleteness"] < s["random min incompleteness"] else "fails"), s
        assert (s["n random above"] == 0) == (s["faithful"] == "passes")
        assert (f"seed {s['seed']} {s['faithfulness']:.0%} vs {s['best random']:.0%} ({s['faithful']}), "
                f"{s['incompleteness']:.0%} vs {s['random min incompleteness']:.0%} ({s['complete']})") in f["headline"]
    assert [s["faithful"] for s in seeds] == EXPECTED["faithful"] and [s["complete"] for s in seeds] == EXPECTED["complete"]
    assert f["seeds_passing"] == {k: sum(s[k] == "passes" for s in seeds) for k in ("faithful", "complete")}


def test_full_minimality_with_every_outside_head_as_the_control():
    f = findings.load(STEM)
    m, outside = f["minimality_summary"], f["minimality_outside"]
    assert m["circuit min"] == pytest.approx(min(v["share of F(M)"] for v in f["minimality"].values()), rel=1e-9)
    assert m["circuit min"] >= m["bar"], f"a circuit head matters by only {m['circuit min']:.3f} of F(M)"
    assert len(outside) == f["n_heads"] - len(f["circuit"]) and m["outside max"] == pytest.approx(max(outside.values()), rel=1e-9)
    passing = [h for h, s in outside.items() if s >= m["bar"]]
    assert m["outside passing"] == len(passing) and m["which"] == (", ".join(passing) or "none")
    # the prose: the bar does not separate the circuit from the rest in this model
    assert passing and f["minimality_verdict"].startswith("does not separate")


def test_full_sentences_never_trained_are_an_observation_beside_chance_and_the_shortcuts():
    f = findings.load(STEM)
    p, u = f["prediction"]["trained"], f["prediction"]["untrained"]
    assert 0.5 < p["three times: accuracy"] < f["accuracy"][f"trained, {HELD_OUT}"]["accuracy"] and u["three times: accuracy"] < 0.1
    assert f["chance_once_named"] == pytest.approx(2 / 3)
    assert p["three names: a once-named name"] > f["chance_once_named"] + 0.2 and p["three names: the repeated name"] < 0.05
    assert u["three names: any name"] < 0.1, "control: the untrained model does not output names"
    assert all(v == pytest.approx(1.0) for rule in f["shortcut_rules"].values() for v in rule.values()), \
        "the prose says both shortcut rules answer every sentence of the three sets"


def test_full_three_seeds():
    f = findings.load(STEM)
    seeds = f["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1, 2]
    assert seeds[0]["faithfulness"] == pytest.approx(f["faithfulness"]["F(C)/F(M)"], rel=1e-9)
    assert seeds[0]["best random"] == pytest.approx(f["random_circuit_faithfulness"]["max"], rel=1e-9)
    assert seeds[0]["classes"] == f["class_names"]
    kinds = {tuple(k for k in DIRECT if s["classes"][k] != "none") for s in seeds}
    assert f["seeds_verdict"] == ("The heads that carry the answer are of one kind in every seed" if len(kinds) == 1 else
                                  "The heads that carry the answer differ in kind from seed to seed")
    # the prose and the findings: seeds 1 and 2 carry the answer with S suppressors, seed 0 with name movers
    assert len(kinds) > 1
    assert all(s["classes"]["S suppressor"] != "none" and s["classes"]["name mover"] == "none" for s in seeds[1:])
    assert all(s["copying margin of direct heads"] < 0 for s in seeds[1:]) and seeds[0]["copying margin of direct heads"] > 0


def test_full_headline_quotes_the_findings():
    f = findings.load(STEM)
    h = f["headline"]
    assert f"{f['accuracy'][f'trained, {HELD_OUT}']['accuracy']:.1%}" in h
    assert all(f"{s['accuracy']:.1%}" in h for s in f["seeds"])
    assert f"{f['faithfulness']['F(C)/F(M)']:.0%}" in h and f"{f['random_circuit_faithfulness']['max']:.0%}" in h
    assert f"{f['incompleteness_max']['share of F(M)']:.0%}" in h and f"{f['random_circuit_incompleteness']['min']:.0%}" in h
    assert all(f"seed {s['seed']} " in h and f"({s['faithful']})" in h and f"({s['complete']})" in h for s in f["seeds"])
    assert "last-name readers" in h and "S-inhibition" not in h


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
