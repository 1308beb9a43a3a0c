"""Notebook 11: indirect object identification in a transformer trained here with three seeds; its circuit found by
path patching from ABC (every earlier head a sender at every step) on one set of sentences, its heads classed by measured
signatures, the names separated from the repetition by three more corruptions, and held on fresh sentences to Wang et
al.'s faithfulness (ranked among every circuit of its size), completeness (beyond faithfulness, against circuits of matched
faithfulness) and minimality, per seed. The smoke run loosely; the committed full run against each claim its prose makes,
each beside the same measurement on its control."""
import math
import re

import pytest

from glassbox import findings
from glassbox.journal import checkpoints, exercises
from glassbox.studies import ioi

STEM = "11_ioi"
KEYS = ["n_templates", "n_name_pairs", "accuracy", "target_status", "clean_logit_diff", "threshold", "path_patching", "classes",
        "class_names", "circuit", "circuit_names", "two_classes", "strongest_to_queries", "max_to_values", "layer2_max_to_logits",
        "corruptions", "own_names", "repetition", "signatures", "io_share_floor", "class_signatures", "n_heads", "direct_by_position",
        "layer0_reader", "faithfulness", "random_circuit_faithfulness", "among_all", "untrained_F_M", "gpt2_faithfulness",
        "completeness", "incompleteness_max", "match_band", "minimality", "minimality_outside", "minimality_summary",
        "minimality_verdict", "minimality_lookalikes", "prediction", "shortcut_rules", "chance_once_named", "heads_per_layer", "seeds",
        "targets_met", "seeds_passing", "target_verdict", "seeds_verdict", "exercise_single_head_ablation", "exercise_costliest_head",
        "exercise_top_single", "exercise_direct_heads_together", "headline", "bars", "untrained_control", "generalisation_gaps",
        "miss_is_over", "other_direct", "other_direct_text", "bar_distances", "bar_distances_text", "aab_rules", "aab_example", "aab_follows", "aab_verdict",
        "aab_last_name_repeats", "layer0_copying_text", "band_last_text", "name_mover_io_share_text", "carrier_positions_text",
        "upper_heads_text", "untrained_upper_earn", "untrained_upper_text", "upper_heads_verdict", "layer0_heads_text", "name_mover_io_share_fresh",
        "untrained_upper_signs", "slot_follows_sign", "untrained_upper_margins", "sign_bar", "null_permutations",
        "name_mover_abs_share", "io_share_max"]
HELD_OUT = "held-out templates and pairs"
SHARE = "classed share of the direct effect"  # |direct effect| of the classed carriers over that of every head past the threshold
DIRECT = ioi.CLASSES[:4]  # the classes of step 1: name mover, last-name suppressor, negative name mover, other direct


def reads(sig: dict) -> str:
    return max(("IO", "S1", "S2"), key=lambda k: sig[f"END->{k}"])


def abc(sig: dict) -> dict:
    return {k: sig[f"ABC {k}"] for k in ("END->IO", "END->S1", "END->S2")}


def check_classes_follow_their_rules(f):
    """Every class member passed its tracing step and has its class's signature with the magnitude bars (recomputed from
    recorded numbers): the slot it reads gets at least 'read min' of its attention, its copying margin is at least
    'copy min' either way, and a name mover takes at least 'IO share min' of its direct effect from reading the IO."""
    t, pp, sig, cls, b = f["threshold"], f["path_patching"], f["signatures"], f["classes"], f["bars"]
    at = lambda head, k, pre="": sig[head][f"{pre}END->{k}"] >= b["read min"]
    for head in cls["name mover"]:
        assert pp["to logits"][head] <= -t and reads(sig[head]) == "IO" and at(head, "IO") and sig[head]["copying margin"] >= b["copy min"], head
        assert sig[head]["direct from IO"] is not None and sig[head]["direct from IO"] >= b["IO share min"], head
    for head in cls["last-name suppressor"]:
        assert pp["to logits"][head] <= -t and reads(sig[head]) == "S2" and sig[head]["copying margin"] <= -b["copy min"], head
        assert reads(abc(sig[head])) == "S2" and at(head, "S2") and at(head, "S2", "ABC "), f"{head} must read the last name on ABC too"
    for head in cls["negative name mover"]:
        assert pp["to logits"][head] >= t and reads(sig[head]) == "IO" and at(head, "IO") and sig[head]["copying margin"] <= -b["copy min"], head
    for head in cls["last-name reader"]:
        assert pp["to queries"][head] <= -t and sig[head]["END->S2"] > sig[head]["END->IO"] and at(head, "S2"), head
        assert sig[head]["ABC END->S2"] > sig[head]["ABC END->IO"] and at(head, "S2", "ABC "), f"{head} must read the last name on ABC too"
    for head in cls["duplicate-token"]:
        assert pp["to values"][head] <= -t and sig[head]["S2->S1 (duplicate)"] > sig[head]["ABC S2->S1 (duplicate)"], head
        assert sig[head]["S2->S1 (duplicate)"] >= b["read min"], head
    direct = {h for h, e in pp["to logits"].items() if abs(e) >= t}
    assert direct == {h for k in DIRECT for h in cls[k]}, "every head past the threshold on the logits has a direct class"
    assert set(f["circuit"]) == {h for v in cls.values() for h in v} or len(f["circuit"]) == 1


def check_the_seeds_follow_their_rules(f):
    """Each seed's verdicts follow from its numbers, and the headline quotes them."""
    for s in f["seeds"]:
        assert s["faithful"] == ("passes" if s["faithfulness"] > s["best random"] else "fails"), s
        assert (s["n random above"] == 0) == (s["faithful"] == "passes")
        assert s["n circuits"] == math.comb(f["n_heads"], len(s["circuit"].split(", "))) and 1 <= s["rank"] <= s["n circuits"]
        assert "complete" not in s, "no per-seed completeness word: it moves between sets of fresh sentences (the review's resamples)"
        assert s["rank in band"] == 1 + s["n matched below"] and s["n in band"] == 1 + s["n matched"]
        assert s["costliest in circuit"] == (s["costliest head"] in s["circuit"].split(", "))
        assert s["costliest heads are the circuit"] == (s["costliest heads"] == s["circuit"])
        assert (f"seed {s['seed']} {s['faithfulness']:.0%}, rank {s['rank']} of {s['n circuits']}, vs {s['best random']:.0%} "
                f"({s['faithful']}") in f["headline"]
        behind = f", {s['behind best']:+.1%} from the best of the others" if s["n matched"] else ""
        assert (f"seed {s['seed']} {s['beyond faithfulness']:+.1%}, rank {s['rank in band']} of {s['n in band']} in its band"
                f"{behind}") in f["headline"]
    assert f["seeds_passing"] == {"faithful": sum(s["faithful"] == "passes" for s in f["seeds"])}
    assert not any(w in f["headline"] for w in ("ties with the best", "passes completeness", "fails completeness"))


def check_the_answer_follows_the_single_head_ranking(f):
    """Folded answer 1 is filled from the recorded single-head ablations: the costliest heads, as many as the circuit has,
    are the traced circuit or not, and the answer says which."""
    single, top = f["exercise_single_head_ablation"], f["exercise_top_single"]
    ranked = sorted(single, key=single.get)
    assert f["exercise_costliest_head"]["head"] == ranked[0] and top["n"] == len(f["circuit"])
    assert top["heads"] == ", ".join(sorted(ranked[:top["n"]])) and top["circuit"] == ", ".join(sorted(f["circuit"]))
    assert top["same"] == (top["heads"] == top["circuit"]) and top["last in"] == single[ranked[top["n"] - 1]]
    answer = findings._fill(exercises.solutions(STEM).ANSWERS[1], findings._Fields(f))
    assert ("exactly the same heads" in answer) == top["same"] and ("not the same heads" in answer) == (not top["same"]), answer
    assert top["heads"] in answer and top["circuit"] in answer


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
    own = {f"{k}, own names" for k in ("IOI", "CDD", "ABC")} | {"CDD / IOI, own names", "ABC / IOI, own names"}
    assert set(f["corruptions"]) == set(f["circuit"]) and all(set(r) == {"ABC", "ABA", "BAB", "ABA / ABC"} | own
                                                              for r in f["corruptions"].values())
    among = f["among_all"]
    assert among["faithfulness"] == pytest.approx(faith["F(C)/F(M)"], rel=1e-6) and len(among["random ranks"]) == f["random_circuit_faithfulness"]["n"]
    worst = f["incompleteness_max"]  # its shares take F(M)'s sign, which a smoke model can flip
    assert abs(among["beyond faithfulness"]) == pytest.approx(abs(worst["share of F(M)"] - worst["at K = none"]), abs=1e-9)
    check_the_seeds_follow_their_rules(f)
    check_the_upper_heads_prose_follows_the_counts(f)
    check_the_answer_follows_the_single_head_ranking(f)
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
    # the prose: some seeds meet it and some do not, so it varies with the seed; one recipe is run, so nothing about recipes
    assert 0 < f["targets_met"] < 3 and f["target_verdict"] == "it varies with the seed" and "recipe" not in f["target_verdict"]


def test_full_accuracy_far_above_the_untrained_model():
    f = findings.load(STEM)
    acc = f["accuracy"]
    assert all(s["accuracy"] > 0.8 for s in f["seeds"]) and acc[f"trained, {HELD_OUT}"]["logit diff"] > 2
    assert acc[f"untrained, {HELD_OUT}"]["accuracy"] < 0.1, "control: an untrained model answers by chance"
    assert abs(acc[f"untrained, {HELD_OUT}"]["logit diff"]) < 0.5


def test_full_classes_and_the_differences_from_gpt2():
    f = findings.load(STEM)
    check_classes_follow_their_rules(f)
    t, cls, pp = f["threshold"], f["classes"], f["path_patching"]
    layer = lambda head: int(head[1])
    # the prose: name movers in layer 1, steered by layer-0 last-name readers that have direct paths too
    assert cls["name mover"] and all(layer(h) == 1 for h in cls["name mover"]), cls["name mover"]
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
    nm, lr = cs["name mover"], cs["last-name reader"]
    # name movers prefer the IO over S1 on IOI; on ABC (the control, no repeated name) the preference must vanish
    assert nm["END->IO"] - nm["END->S1"] > 0.1 and nm["END->IO"] > nm["END->S2"]
    assert abs(nm["ABC END->IO"] - nm["ABC END->S1"]) < 0.3 * (nm["END->IO"] - nm["END->S1"])
    assert nm["copying margin"] > 0
    # last-name readers look at S2 on IOI and on ABC alike ("whether or not it repeats")
    assert lr["END->S2"] > lr["END->IO"] and lr["ABC END->S2"] > lr["ABC END->IO"]
    # the matched control: the lookalikes are exactly the other heads with the same signature, with the margins printed
    others = [h for h in sig if h not in cls["name mover"]]
    b = f["bars"]
    same = [h for h in others if reads(sig[h]) == "IO" and sig[h]["END->IO"] >= b["read min"] and sig[h]["copying margin"] >= b["copy min"]]
    assert nm["n lookalikes"] == len(same) > 0 and nm["lookalikes"] == (", ".join(same) or "none")
    margin = lambda h: sorted((sig[h][f"END->{k}"] for k in ("IO", "S1", "S2")), reverse=True)
    assert nm["lookalike margins"] == ", ".join(f"{h} {margin(h)[0] - margin(h)[1]:.2f}" for h in same)
    mean = lambda heads, key: sum(sig[h][key] for h in heads) / len(heads)
    assert nm["END->IO"] == pytest.approx(mean(cls["name mover"], "END->IO"), abs=1e-9)
    # the share of a direct effect read from the IO exists only above the floor (a ratio over ~0 is noise); n/a below it
    floor = f["io_share_floor"]
    assert floor == pytest.approx(f["threshold"] * abs(f["clean_logit_diff"]), rel=1e-9)
    for head, parts in f["direct_by_position"].items():
        total = sum(parts.values())
        assert sig[head]["direct from IO"] == (None if total < floor else pytest.approx(parts["IO"] / total, rel=1e-6)), head
    assert any(v["direct from IO"] is None for v in sig.values()), "control: the heads with a small direct effect get no share"
    shares = [sig[h]["direct from IO"] for h in cls["name mover"] if sig[h]["direct from IO"] is not None]
    assert nm["IO share"] == (f"{sum(shares) / len(shares):.0%}" if shares else "n/a")


def test_full_names_or_repetition_the_heads_follow_the_last_names_slot_not_the_names():
    """ABA (same names, the IO repeated) moves every head's path more than ABC, BAB (names swapped, S still repeated) is the
    control. CDD (new names, S repeated) removes the clean names as ABC does, so on the clean names' metric both read as
    'everything removed' (the check the review found empty); scored on each set's own names, CDD keeps every head's
    contribution and ABC removes it, while the untrained model (the control) shows no such difference."""
    f = findings.load(STEM)
    c, r, t, w = f["corruptions"], f["repetition"], f["threshold"], f["own_names"]
    assert set(c) == set(f["circuit"]) and r["n circuit"] == len(c)
    for head, row in c.items():
        assert row["ABC"] == pytest.approx(f["path_patching"]["to logits"][head], abs=1e-12)
    ratios = [v["ABA / ABC"] for v in c.values() if v["ABA / ABC"] is not None]
    assert r["ABA / ABC min"] == pytest.approx(min(ratios)) and r["ABA / ABC max"] == pytest.approx(max(ratios))
    assert r["ABA / ABC min"] > 1.3, "moving the repetition with the names kept moves every head more than ABC does"
    assert r["max |BAB|"] == pytest.approx(max(abs(v["BAB"]) for v in c.values()), abs=1e-12)
    assert r["max |BAB|"] < t, "control: moving the names between slots, with the repetition kept, moves no head much"
    follow = [h for h, v in c.items() if v["ABA"] <= -t and abs(v["BAB"]) < t]
    assert r["follow"] == ", ".join(follow) and r["n follow"] == len(follow) == len(c)
    # the clean names' metric cannot tell CDD from ABC: both remove about all of it
    assert abs(w["trained"]["ABC, clean names"] + 1) < 0.1 and abs(w["trained"]["CDD, clean names"] + 1) < 0.1
    assert abs(w["trained"]["ABC, clean names"] - w["trained"]["CDD, clean names"]) < 0.05
    # on their own names the whole model answers CDD as it answers IOI, and has no preference on ABC; the untrained one has none
    own = w["trained"]
    assert own["CDD, own names"] > 0.75 * own["IOI, own names"] > 2 and abs(own["ABC, own names"]) < 0.1 * own["IOI, own names"]
    u = w["untrained"]
    assert abs(u["CDD, own names"] - u["ABC, own names"]) < 0.5 and abs(u["IOI, own names"]) < 0.5, "control: no separation untrained"
    # each circuit head: CDD keeps its contribution, ABC removes it (the prose's ranges)
    cdd = [v["CDD / IOI, own names"] for v in c.values()]
    abc_ = [v["ABC / IOI, own names"] for v in c.values()]
    assert None not in cdd + abc_, "every circuit head writes enough on its own names to give a ratio"
    assert r["CDD / IOI min"] == pytest.approx(min(cdd)) and r["CDD / IOI max"] == pytest.approx(max(cdd))
    assert r["max |ABC / IOI|"] == pytest.approx(max(map(abs, abc_)))
    assert 0.75 < r["CDD / IOI min"] and r["CDD / IOI max"] < 1.34 and r["max |ABC / IOI|"] < 0.25


def test_full_a_layer0_head_reads_the_io_more_than_s1_on_average_by_the_softmax():
    f = findings.load(STEM)
    r = f["layer0_reader"]
    assert r["head"].startswith("L0") and r["head"] in f["circuit"]
    assert r["IOI"]["S1"] < 0.5 * r["ABC"]["S1"], "S1 loses its attention when its name comes back at S2"
    assert r["IOI"]["S2"] > r["ABC"]["S2"], "... and S2 takes it"
    part = r["direct from"]
    assert part["IO"] > 0 and part["IO"] > 3 * abs(part["S2"]) and part["IO"] > 3 * abs(part["S1"]), part
    assert part == f["direct_by_position"][r["head"]]


def test_full_faithfulness_ranked_among_every_circuit_of_its_size():
    """The claim: the traced circuit is among the most faithful of all circuits of its size. The control: the random
    circuits, ranked the same way, are not."""
    f = findings.load(STEM)
    faith, rand, among = f["faithfulness"], f["random_circuit_faithfulness"], f["among_all"]
    assert faith["F(C)/F(M)"] > rand["max"], f"circuit {faith['F(C)/F(M)']:.3f} vs the best random circuit {rand['max']:.3f}"
    assert rand["n"] >= 20 and among["random best faithfulness"] == pytest.approx(rand["max"], rel=1e-9)
    assert among["n circuits"] == math.comb(f["n_heads"], len(f["circuit"])) and among["faithfulness"] == pytest.approx(faith["F(C)/F(M)"])
    assert among["rank"] <= max(1, 0.05 * among["n circuits"]), f"rank {among['rank']} of {among['n circuits']}"
    assert among["random median rank"] > 0.25 * among["n circuits"], "control: random circuits of the same size rank low"
    assert all(r > among["rank"] for r in among["random ranks"])
    assert abs(f["untrained_F_M"]) < 0.5, "control: the untrained model has no logit difference to recover"
    assert abs(faith["F(empty)"]) < faith["F(C)"], "with every head ablated the logit difference must fall"
    assert faith["F(M)"] != pytest.approx(f["clean_logit_diff"], rel=1e-6), "scored on other sentences than the traced ones"


def test_full_completeness_beyond_faithfulness_against_circuits_of_matched_faithfulness():
    """The largest gap mostly re-measures faithfulness (Spearman over all circuits of the size); the gap beyond it is held
    against the circuits of matched faithfulness and reported as a rank in that band, with no pass or fail word (a review's
    three fresh sets moved seed 0's word between 'ties' and 'fails' while its rank stayed 2). No random-circuit 'control':
    a rank makes no claim for one to refute, and the random circuits' bands are of other sizes (a review's finding)."""
    f = findings.load(STEM)
    worst, comp, among = f["incompleteness_max"], f["completeness"], f["among_all"]
    assert worst["n subsets"] + 1 == len(comp) == 2 ** len(f["circuit"]) and worst["K"] != "none"
    assert worst["share of F(M)"] == pytest.approx(max(v["share of F(M)"] for k, v in comp.items() if k != "none"), rel=1e-9)
    assert worst["at K = none"] == pytest.approx(1 - f["faithfulness"]["F(C)/F(M)"], abs=1e-6), "K = none is faithfulness"
    assert among["largest gap"] == pytest.approx(worst["share of F(M)"], rel=1e-6)
    assert among["beyond faithfulness"] == pytest.approx(worst["share of F(M)"] - worst["at K = none"], abs=1e-9)
    assert among["spearman largest gap"] > 0.9, "the prose: held against random circuits the largest gap tests faithfulness again"
    assert f["match_band"] == pytest.approx(0.1)
    assert among["n matched"] >= 5, f"too few circuits of matched faithfulness to judge against: {among}"
    assert among["rank in band"] == 1 + among["n matched below"] and among["n in band"] == 1 + among["n matched"]
    assert among["behind best"] == pytest.approx(among["beyond faithfulness"] - among["matched min"], abs=1e-12)
    assert (among["beyond faithfulness"] < among["matched min"]) == (among["rank in band"] == 1), among
    last = [str(s["seed"]) for s in f["seeds"] if s["rank in band"] == s["n in band"] > 1]
    assert (f["band_last_text"] == "no seed ranks last in its band") == (not last), f["band_last_text"]
    assert all(f"{n} rank" in f["band_last_text"] or f" {n} " in f["band_last_text"] for n in last), "the words follow the ranks"
    assert "tie_band" not in f, "no tie band: it was set with seed 0's margin in view"


def test_full_each_seed_ranked_and_a_failing_seed_explained():
    """Not a pinned pass/pass/fail: each verdict follows from its numbers, each seed's rank is in the headline, and the
    prose's explanation holds for every seed that fails: the trace missed its costliest single head, whose direct path
    lies inside the threshold, and the costliest single heads, as many as its circuit has, are more faithful than the
    traced circuit. The control: where the circuit holds its costliest heads (seed 0), the trace fails nothing."""
    f = findings.load(STEM)
    seeds, t = f["seeds"], f["threshold"]
    check_the_seeds_follow_their_rules(f)
    assert seeds[0]["faithfulness"] == pytest.approx(f["faithfulness"]["F(C)/F(M)"], rel=1e-9)
    assert seeds[0]["best random"] == pytest.approx(f["random_circuit_faithfulness"]["max"], rel=1e-9)
    assert seeds[0]["rank"] == f["among_all"]["rank"] and seeds[0]["rank in band"] == f["among_all"]["rank in band"]
    assert seeds[0]["beyond faithfulness"] == pytest.approx(f["among_all"]["beyond faithfulness"], abs=1e-9)
    for s in seeds:
        if s["faithful"] == "fails":
            assert not s["costliest in circuit"] and abs(s["costliest direct path"]) < t, s
            assert s["costliest heads rank"] < s["rank"] and s["costliest heads faithfulness"] > s["faithfulness"], s
            assert s["costliest |direct path|"] == pytest.approx(abs(s["costliest direct path"]))
            assert (f"the trace misses {s['costliest head']}, the costliest single head, whose direct path moves the logit "
                    f"difference by {s['costliest |direct path|']:.1%}, under the {t:.0%} threshold") in f["headline"]
    assert seeds[0]["costliest heads are the circuit"] and seeds[0]["faithful"] == "passes", "control"


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
    # ... and some of the heads that pass are section 4's name-mover lookalikes, with direct paths below the threshold
    look = f["class_signatures"]["name mover"]["lookalikes"].split(", ")
    assert list(f["minimality_lookalikes"]) == [h for h in passing if h in look] and f["minimality_lookalikes"]
    for h, v in f["minimality_lookalikes"].items():
        assert abs(v["direct path"]) < f["threshold"] and v["share of F(M)"] >= m["bar"]
        assert v["direct path"] == f["path_patching"]["to logits"][h]


def test_full_sentences_never_trained_are_an_observation_beside_chance_and_the_shortcuts():
    f = findings.load(STEM)
    p, u = f["prediction"]["trained"], f["prediction"]["untrained"]
    assert 0.5 < p["three times: accuracy"] < f["accuracy"][f"trained, {HELD_OUT}"]["accuracy"] and u["three times: accuracy"] < 0.1
    assert f["chance_once_named"] == pytest.approx(2 / 3)
    assert p["three names: a once-named name"] > f["chance_once_named"] + 0.2 and p["three names: the repeated name"] < 0.05
    assert u["three names: any name"] < 0.1, "control: the untrained model does not output names"
    assert all(v == pytest.approx(1.0) for rule in f["shortcut_rules"].values() for v in rule.values()), \
        "the prose says both shortcut rules answer every sentence of the three sets"


def test_full_where_the_rules_disagree_every_seed_avoids_the_last_name():
    """AAB (the IO's name twice, a new name once and last): 'not the last name' parts from 'least-mentioned' and from 'avoid
    any repeated name' (a detector of any repeated name, Wang et al.'s duplicate-token reading): each rule gives its own
    answer on every sentence, the new row differing from 'not the last name' (its control); the untrained model answers
    neither; each seed's verdict follows its numbers, and every seed follows 'not the last name', unlike the two rules that
    answer B. A detector of the last name's repeat is the same function as 'not the last name' (an identity, stated in
    ioi.shortcut_answers' docstring, not a recorded row), and on AAB it has nothing to detect: no AAB sentence's last name
    repeats an earlier one (every IOI sentence's does: the control), so the verdict says AAB cannot separate them."""
    f = findings.load(STEM)
    r = f["aab_rules"]
    assert r["not the last name"]["not the last name"] == pytest.approx(1.0) and r["not the last name"]["the once-named name"] == 0
    assert r["least-mentioned"]["the once-named name"] == pytest.approx(1.0) and r["least-mentioned"]["not the last name"] == 0
    assert r["avoid any repeated name"]["the once-named name"] == pytest.approx(1.0) and r["avoid any repeated name"]["not the last name"] == 0, \
        "control: a detector of any repeated name flags A on AAB and answers B, unlike 'not the last name'"
    assert set(r) == {"not the last name", "least-mentioned", "avoid any repeated name"}, "no row for a rule that is the same function as another"
    rep = f["aab_last_name_repeats"]
    assert rep["AAB"] == 0 and rep["IOI"] == pytest.approx(1.0), "control: on IOI the last name always repeats an earlier one"
    u = f["prediction"]["untrained"]
    assert u["AAB: not the last name"] < 0.1 and u["AAB: the once-named name"] < 0.1, "control: the untrained model answers no name"
    follows = lambda p: "not the last name" if p["AAB: not the last name"] > p["AAB: the once-named name"] else "the once-named name"
    assert f["aab_follows"] == follows(f["prediction"]["trained"])
    assert f["seeds"][0]["AAB: not the last name"] == pytest.approx(f["prediction"]["trained"]["AAB: not the last name"])
    assert {follows(s) for s in f["seeds"]} == {"not the last name"} and f["aab_verdict"].startswith("every seed answers the name that is not last")
    assert "unlike counting mentions and unlike avoiding any repeated name" in f["aab_verdict"], f["aab_verdict"]
    assert "cannot separate 'not the last name' from a detector of the last name's repeat" in f["aab_verdict"]
    assert "duplicate detector" not in f["aab_verdict"] and "S-inhibition" not in f["aab_verdict"], "AAB shows no duplicate detection"
    assert "not by detecting" not in f["aab_verdict"] and "repeated one" not in f["aab_verdict"], "AAB cannot rule the repetition out"
    assert all(s["AAB: not the last name"] > 0.9 and s["AAB: the once-named name"] < 0.05 for s in f["seeds"])


def test_full_the_class_rules_name_no_head_of_the_untrained_model():
    """The control of the trace: the untrained model's is refused (its logit difference is below the floor). The control
    of the bars: they come from the untrained model of SEED, so none of its own heads could clear them (a review found
    that check empty); held to untrained models of other inits, on the fresh sentences, the rules with the bars class
    none of their heads, while the same rules without the bars (argmax and sign alone) class most of them, the part
    that can fail. The trained model's classes are not empty."""
    f = findings.load(STEM)
    u, b = f["untrained_control"], f["bars"]
    assert abs(u["clean logit diff"]) < b["min logit diff"] and u["traced"] is False
    inits = [int(s) for s in u["inits"].split(", ")]
    assert inits and 0 not in inits and u["n heads"] == f["n_heads"] * len(inits), "held-out inits, every head of each"
    assert u["n named with the bars"] == 0 and u["named with the bars"] == "none", u["named with the bars"]
    assert u["n named without the bars"] > u["n heads"] // 2, "without the bars the rules class most untrained heads"
    assert abs(f["clean_logit_diff"]) >= b["min logit diff"] and any(f["classes"][k] for k in ("name mover", "last-name reader"))


def test_full_a_name_mover_reads_the_io_and_writes_mostly_from_it():
    """The attention and copying bars come from the untrained model by the rule stated in cell 2 ('factor' times its
    largest value), not from a trained head; every direct head that carries the answer is a name mover exactly when it
    clears all three bars (reads the IO most, attention and copying margin, the IO share 'mostly'), and the distances
    to the bars the prose prints are the recorded numbers. Not pinned to a head: the class follows the bars. The control:
    at least one direct head fails a bar and is other direct."""
    f = findings.load(STEM)
    sig, cls, b, od, pp, d = f["signatures"], f["classes"], f["bars"], f["other_direct"], f["path_patching"]["to logits"], f["bar_distances"]
    assert b["read min"] == pytest.approx(b["factor"] * b["control max attention"], rel=1e-9) and b["factor"] > 1
    assert b["copy min"] == pytest.approx(b["factor"] * b["control max |margin|"], rel=1e-9)
    clears = lambda h: (reads(sig[h]) == "IO" and sig[h]["END->IO"] >= b["read min"] and sig[h]["copying margin"] >= b["copy min"]
                        and sig[h]["direct from IO"] is not None and sig[h]["direct from IO"] >= b["IO share min"])
    carrying = [h for h in cls["name mover"] + cls["other direct"] if pp[h] < 0]
    assert sorted(h for h in carrying if clears(h)) == cls["name mover"] and cls["name mover"], "the class follows the bars"
    assert any(not clears(h) for h in cls["other direct"]), "control: a direct head that fails a bar is not a name mover"
    assert set(d) == set(cls["name mover"]) | set(cls["other direct"])
    for h, v in d.items():
        assert v["attention to the IO"] == pytest.approx(sig[h]["END->IO"] - b["read min"], abs=1e-9)
        assert v["copying margin"] == pytest.approx(sig[h]["copying margin"] - b["copy min"], abs=1e-9)
        io = sig[h]["direct from IO"]
        assert v["IO share"] == (None if io is None else pytest.approx(io - b["IO share min"], abs=1e-9))
        assert h in f["bar_distances_text"]
    assert set(od) == set(cls["other direct"])
    for h in cls["name mover"]:  # the Findings bullet and the headline say how far above the convention it lies
        fresh = f["name_mover_io_share_fresh"][h]  # the same share on the fresh sentences, beside the one it was classed on
        text = (f"{h} ({sig[h]['direct from IO']:.0%} of its net direct effect from the IO on the sentences it was classed on (the IO part over "
                f"the net direct effect: negative parts net out; it can exceed 100%), {100 * d[h]['IO share']:.1f} "
                f"points above the {b['IO share min']:.0%} convention; {'n/a' if fresh is None else f'{fresh:.0%}'} on fresh ones")
        assert text in f["name_mover_io_share_text"] and f["name_mover_io_share_text"] in f["headline"], f["name_mover_io_share_text"]
        a, parts = f["name_mover_abs_share"][h], f["direct_by_position"][h]  # by |parts|: a negative part does not raise the IO's share
        assert a["classed on"]["IO"] == pytest.approx(abs(parts["IO"]) / sum(map(abs, parts.values())))
        assert 0.45 <= a["fresh"]["IO"] < 0.5 <= a["classed on"]["IO"] + 0.01 < sig[h]["direct from IO"], "the net share sits higher"
        assert 0.4 <= min(a[k]["rest"] for k in a) and max(a[k]["rest"] for k in a) < 0.5, "nearly half from positions that are not names"
        assert (f"by absolute parts {a['classed on']['IO']:.0%} and {a['fresh']['IO']:.0%}, and nearly half of what it writes "
                f"({a['classed on']['rest']:.0%}, {a['fresh']['rest']:.0%}; their parts net out, so position by position at least as much) from "
                f"positions that are not names)") in f["headline"]
    top = f["io_share_max"]  # the control of the naming: a net share past 100%
    assert top["share"] == max(r["direct from IO"] for r in sig.values() if r["direct from IO"] is not None) > 1


def test_full_the_first_seed_misses_over_name_pairs_not_templates():
    f = findings.load(STEM)
    acc, g = f["accuracy"], f["generalisation_gaps"]
    a = lambda name, split: acc[f"{name}, {split}"]["accuracy"]
    for name in ("trained", "untrained"):
        assert g[name]["name pairs"] == pytest.approx(a(name, "trained templates and pairs") - a(name, "trained templates, held-out pairs"))
        assert g[name]["templates"] == pytest.approx(a(name, "trained templates, held-out pairs") - a(name, HELD_OUT))
    assert f["miss_is_over"] == ("name pairs" if g["trained"]["name pairs"] > g["trained"]["templates"] else "templates")
    assert a("trained", "trained templates and pairs") >= 0.99 and f["miss_is_over"] == "name pairs"
    assert abs(g["untrained"]["name pairs"]) < 0.05 and abs(g["untrained"]["templates"]) < 0.05, "control: nothing to lose untrained"


def test_full_the_names_or_repetition_test_cannot_tell_the_repetition_from_the_last_name_slot():
    """The control the review built: a lookup rule that lowers the last-name slot's name, scored as the heads are, gives
    CDD what it gives IOI and ABC nothing: the same pattern as the circuit, so the prose says the test cannot tell."""
    f = findings.load(STEM)
    look, r = f["own_names"]["last-name lookup"], f["repetition"]
    assert look["IOI, own names"] == pytest.approx(1.0) and look["CDD, own names"] == pytest.approx(1.0) and look["ABC, own names"] == 0
    assert 0.75 < r["CDD / IOI min"] and abs(look["CDD, own names"] / look["IOI, own names"] - 1) < 0.25
    assert r["max |ABC / IOI|"] < 0.25 and abs(look["ABC, own names"]) < 0.25, "the lookup rule passes the circuit's test"


def check_the_upper_heads_prose_follows_the_counts(f):
    """The prose's name-slot counts, its count of heads that get more from the positions that are not names, the copying
    signs (trained, layer 0 and the untrained control), the slot-follows-sign totals and the verdict (signs counted above the
    untrained |margin|, layer by layer) are the recorded counts and margins, whichever way they come out (the smoke run's too)."""
    seeds, untrained = f["seeds"], f["untrained_upper_earn"]
    counted = lambda c: ", ".join(f"{c[k]} of {c['n']} from {k}" for k in ("IO", "S1", "S2") if c[k])
    assert f["upper_heads_text"] == "; ".join(f"seed {s['seed']} {counted(u := s['upper heads earn from'])} ({u['rest larger']} of them get more from positions that are not names)"
                                              for s in seeds)
    assert f["layer0_heads_text"] == "; ".join(f"seed {s['seed']} {(c := s['layer-0 head signs'])['copy']} of {c['n']} copy, "
                                               f"{counted(s['layer-0 heads earn from'])}" for s in seeds)
    assert f["untrained_upper_text"] == "; ".join(f"init {c['init']} {counted(c)}" for c in untrained)
    signs = f["untrained_upper_signs"]
    assert [c["init"] for c in signs] == [c["init"] for c in untrained], "the sign control is the same untrained inits"
    assert f["slot_follows_sign"] == ioi.sign_totals([s[k] for s in seeds for k in ("upper head signs", "layer-0 head signs")], signs)
    inits, half = f["untrained_upper_margins"], len(f["untrained_upper_margins"]) // 2
    assert len({c["init"] for c in inits}) == len(inits) == 2 * half and all(
        set(c["margins"]) == set(c["nulls"]) == set(s["upper head signs"]["margins"]) for c in inits for s in seeds), "distinct inits, the same heads"
    assert f["sign_bar"] == ioi.sign_bar(inits[:half], inits[half:]), "the rule from the first half of the inits, its control the second"
    assert f["upper_heads_verdict"] == ioi.sign_verdict([s["upper head signs"] for s in seeds], f["sign_bar"], [s["seed"] for s in seeds])
    assert all(s["upper head signs"]["n"] == s["upper heads earn from"]["n"] for s in seeds), "the signs are counted on the same heads"
    assert all(s["upper heads earn from"]["rest larger"] <= s["upper heads earn from"]["n"] for s in seeds)
    assert all("of its net direct effect" in t or "below the floor" in t for t in f["other_direct_text"].split("; ") if t != "none")


def test_full_three_seeds_and_the_last_name_suppressors():
    """Seeds 1 and 2 carry the answer with last-name suppressors. The prose: they attend to the last name's slot whether
    or not it repeats (on ABC nearly as much as on IOI) and never to S1, which holds the same name: not copy suppression.
    The control: seed 0's name movers, which attend to the IO because S repeats, lose most of it on ABC."""
    f = findings.load(STEM)
    seeds = f["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1, 2]
    assert seeds[0]["classes"] == f["class_names"]
    # over ALL layer-1/2 heads, classed or not: the name slot each earns most from (seed 0 every one from the IO, seeds 1-2
    # every one from S2); the controls: untrained models, whose upper heads split over the slots, and each seed's layer 0
    layers = sorted({l for s in seeds for l in s["answer layers"]})
    assert [ioi.one_position(s["upper heads earn from"]) for s in seeds] == ["IO", "S2", "S2"]
    assert all(s["upper heads earn from"]["n"] == 8 for s in seeds) and layers == [1], "the prose: they differ in layer 1"
    untrained = f["untrained_upper_earn"]
    assert len(untrained) >= 2 and all(c["n"] == 8 and ioi.one_position(c) is None and max(c[k] for k in ("IO", "S1", "S2")) < c["n"]
                                       for c in untrained), "control: no untrained model has one name slot for all its upper heads"
    # the slot follows each head's OV copying sign (34 of 36 trained heads on the committed checkpoints): no head whose
    # slot does not has a |margin| above its own null (`ioi.copying_null`, the margin its weights' scale alone reaches)
    follow, bar = f["slot_follows_sign"], f["sign_bar"]
    assert follow["off above null"] == 0 and follow["trained"] > follow["trained n"] / 2, "the slot follows the sign but within the nulls"
    # the verdict: in every seed at least bar['need'] upper heads are above their own nulls, all of one sign (4, 3 and 5 on
    # the committed checkpoints); the rule is one more than any of 50 untrained inits has, and its control, 50 other
    # untrained inits, must fail it
    one_sign = lambda a: min(a["copy"], a["suppress"]) == 0 and a["copy"] + a["suppress"] >= bar["need"]
    assert bar["bar inits"] >= 50 and bar["control inits"] >= 50 and bar["need"] >= 2 and f["null_permutations"] >= 1000
    assert all(one_sign(ioi.above_null(s["upper head signs"])) for s in seeds), "one sign above the nulls, every seed"
    assert "of one sign in every seed" in f["upper_heads_verdict"]
    assert bar["control passing"] == 0, "control: no other untrained init passes the rule"
    low = [(ioi.one_position(s["layer-0 heads earn from"]), s["layer-0 head signs"]["copy"]) for s in seeds]  # layer 0 copies, so reads the IO
    assert low == [("IO", 4)] * 3 and all(s["layer-0 heads earn from"]["n"] == 4 for s in seeds), "layer 0: every head copies in every seed"
    # the name slot is not where most of an upper head's direct effect comes from: 13 of 24 on the committed checkpoints
    # (6, 4, 3; seed 2's L2H1 by 0.0003), so the test asserts only that it happens in every seed and not to every head
    assert all(0 < s["upper heads earn from"]["rest larger"] < s["upper heads earn from"]["n"] for s in seeds)
    check_the_upper_heads_prose_follows_the_counts(f)
    shares = ", ".join(f"{s[SHARE]:.0%}" for s in seeds)
    assert f["seeds_verdict"] == (f"The classed heads that carry the answer ({shares} of the direct effect past the threshold, by seed) differ in "
                                  f"kind from seed to seed, in layer {layers[0]}")
    pp, t = f["path_patching"]["to logits"], f["threshold"]
    assert seeds[0][SHARE] == pytest.approx(sum(abs(pp[h]) for h in seeds[0]["carriers by position"]) / sum(abs(e) for e in pp.values() if abs(e) >= t))
    assert all(0 < s[SHARE] <= 1 + 1e-9 for s in seeds) and " and ".join(f"{s[SHARE]:.0%}" for s in seeds[1:]) in f["headline"]
    assert f["carrier_positions_text"] == "; ".join(f"seed {s['seed']} {h} ({r['class']}) {r['IO']:+.2f} from the IO, {r['S2']:+.2f} from S2"
                                                    for s in seeds for h, r in s["carriers by position"].items())
    assert f["layer0_copying_text"] == "; ".join(f"seed {s['seed']} {s['layer-0 copying direct heads']}" for s in seeds)
    if seeds[1]["classes"]["other direct"] != seeds[2]["classes"]["other direct"]:
        assert seeds[1]["answer kind"] == seeds[2]["answer kind"], "an other direct head does not change the kind"
    assert all(s["classes"]["last-name suppressor"] != "none" and s["classes"]["name mover"] == "none" for s in seeds[1:])
    for s in seeds[1:]:
        a = s["suppressor attention"]
        assert a["END->S2"] > 0.5 and a["ABC END->S2"] > 0.6 * a["END->S2"] and a["END->S1"] < 0.05, s["seed"]
        n_class = len(s["classes"]["last-name suppressor"].split(", "))
        assert n_class < s["suppressor signatures in layer 1"] <= f["heads_per_layer"], "the signature alone does not pick them out"
    nm = f["class_signatures"]["name mover"]
    assert nm["ABC END->IO"] < 0.6 * nm["END->IO"], "control: a head that attends because S repeats loses it on ABC"
    assert seeds[0]["suppressor attention"] == {"END->S2": None, "ABC END->S2": None, "END->S1": None}


def test_full_the_folded_answer_follows_the_single_head_ranking():
    """Folded answer 1 says what this run shows: the costliest single heads, as many as the circuit has, are the traced
    circuit; the lesson about backup heads is kept as a caveat for larger models."""
    f = findings.load(STEM)
    check_the_answer_follows_the_single_head_ranking(f)
    assert f["exercise_top_single"]["same"] and f["exercise_costliest_head"]["head"] in f["circuit"]
    assert f["exercise_top_single"]["last in"] < f["exercise_top_single"]["next"]


def test_full_headline_quotes_the_findings():
    f = findings.load(STEM)
    h = f["headline"]
    assert f"{f['accuracy'][f'trained, {HELD_OUT}']['accuracy']:.1%}" in h
    assert all(f"{s['accuracy']:.1%}" in h for s in f["seeds"])
    assert f"{f['faithfulness']['F(C)/F(M)']:.0%}" in h and f"{f['random_circuit_faithfulness']['max']:.0%}" in h
    assert f"rank {f['among_all']['rank']} of {f['among_all']['n circuits']}" in h
    assert all(f"seed {s['seed']} " in h and f"({s['faithful']}" in h for s in f["seeds"])
    assert "last-name readers" in h and "S-inhibition" not in h and "partial" not in h and "S suppressor" not in h
    assert "not copy suppression" in h and "passes completeness" not in h and "the classed heads that carry the answer" in h
    assert f["aab_verdict"] in h and f"{f['miss_is_over']}" in h


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
