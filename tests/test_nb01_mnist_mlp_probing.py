"""Notebook 01 (MNIST MLP probing): the smoke run, loosely, and the committed full run against its claims
and the checkpoint card."""
import pytest

from glassbox import findings
from glassbox.journal import checkpoints
from glassbox.studies import mnist_mlp

STEM = "01_mnist_mlp_probing"
KEYS = ["test_accuracy", "train_seconds", "probe_accuracy", "attribution_sanity", "attribution_passes", "dead_neurons",
        "dead_neuron_init_corr", "dead_neuron_wrong_seed_corr", "weight_smoothness", "mean_class_selectivity_random",
        "has_loop_share_by_digit", "has_loop_conditional", "has_loop_within_digit", "has_loop_within_digit_pooled",
        "has_loop_seeds", "has_loop_seeds_text", "has_loop_shuffled_control", "has_loop_shuffled_text", "has_loop_points_text", "has_loop_largest_pooled_gap", "n_seeds", "twin_verdict_relu2", "has_loop_probe_C", "has_loop_conditional_C", "seeds", "seeds_summary", "attribution_null_abs_rho", "top_ablation_drop", "ablation_by_method", "ablation_control_logit_top_drop",
        "live_neuron_zero_share_median", "top_ablation_neuron_values", "shuffled_label_twin", "intervention_flip_rate",
        "intervention_control_flip_rate", "intervention_curve", "intervention_example_prediction", "headline", "points_text", "has_loop_9s_later_seeds", "ablation_points_text"]
METHODS = {"integrated_gradients", "saliency", "occlusion", "lime", "kernel_shap"}
CONCEPTS = {"digit", "has_loop", "thick_stroke", "leans_right"}
FEATURES = {"pixels", "relu1", "relu2", "out", "random relu1", "random relu2", "random out"}


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    assert not [k for k in KEYS if k not in f], f"smoke run did not record {[k for k in KEYS if k not in f]}"
    assert f["test_accuracy"] > 0.8, "150 smoke steps should already reach > 80%: is the training loop broken?"
    assert set(f["probe_accuracy"]) == CONCEPTS
    assert all(FEATURES <= set(acc) for acc in f["probe_accuracy"].values()), "a probe baseline is missing"
    assert f["probe_accuracy"]["digit"]["relu2"] > 0.7, "even a briefly trained MLP's relu2 should carry the digit"
    assert f["has_loop_share_by_digit"][1] < 0.05 and f["has_loop_share_by_digit"][8] > 0.8, \
        "a 1 has no hole and an 8 has two: is count_holes or the per-digit share broken?"
    assert "1" not in f["has_loop_within_digit"], "no probe can be fitted inside a digit whose label is constant"
    assert f["intervention_flip_rate"] > f["intervention_control_flip_rate"], "chosen neurons should flip more than random ones"
    assert " s of training" not in f["headline"], "the headline must quote no seconds"
    assert set(f["attribution_sanity"]) == METHODS, "every attribution method goes through the sanity checks"
    assert all({"random weights", "shuffled labels", "repeat"} <= set(row) for row in f["attribution_sanity"].values())
    assert all(row["repeat"] == 1.0 for m, row in f["attribution_sanity"].items() if m not in ("lime", "kernel_shap")), \
        "a deterministic method must give the same map twice"
    assert set(f["ablation_by_method"]) == {"mean", "zero", "resample"}
    assert f["ablation_control_logit_top_drop"] > 0.5, "ablating one logit must cost its class most of its accuracy"
    assert abs(f["weight_smoothness"]["initial relu1"]) < 0.1, "initial weights are noise: neighbours uncorrelated"


def test_full_findings_meet_the_targets_and_match_the_checkpoint():
    f = findings.load(STEM)
    card = checkpoints.load_card("mnist_mlp")
    assert f["test_accuracy"] == card["metrics"]["test_accuracy"], \
        "the notebook's test accuracy differs from the card: rerun the notebook after retraining (or vice versa)"
    assert f["test_accuracy"] >= 0.98, f"target: >= 98.0% test accuracy, got {f['test_accuracy']:.2%}"
    assert f["train_seconds"] == card["train_seconds"], "the recorded training time must be the card's"


def test_full_dead_neurons_learned_then_died():
    f = findings.load(STEM)
    assert f["dead_neurons"] == {"relu1": 20, "relu2": 6}
    lo, hi = f["dead_neuron_init_corr"]["relu1"]
    assert 0.3 < lo <= hi < 0.95, f"claim: dead relu1 neurons moved from init but kept part of it ({lo}..{hi})"
    assert lo > f["live_neuron_init_corr_median"]["relu1"], "claim: dead neurons moved less than the typical live one"
    for layer, (wlo, whi) in f["dead_neuron_wrong_seed_corr"].items():  # the control: another seed's initial weights
        assert -0.25 < wlo <= whi < 0.25, f"control: with the wrong initial weights the correlation must be near 0 ({layer})"
        assert f["dead_neuron_init_corr"][layer][0] > whi + 0.3, f"the right initial weights must beat the wrong ones ({layer})"
    s = f["weight_smoothness"]
    assert s["live relu1"] > s["dead relu1"] + 0.2 > s["initial relu1"] + 0.2, f"claim: live smooth, dead less, init noise: {s}"


def test_full_selectivity_beats_the_random_init_twin():
    f = findings.load(STEM)
    trained, rnd = f["mean_class_selectivity"], f["mean_class_selectivity_random"]
    assert all(trained[n] > rnd[n] + 0.1 for n in trained), f"claim: training makes neurons more selective: {trained} vs {rnd}"
    assert all(rnd[n] > 0.2 for n in rnd), f"claim: a random ReLU layer is already far from 0: {rnd}"


def test_full_probes_show_what_each_layer_makes_linear():
    f = findings.load(STEM)
    p, s = f["probe_accuracy"], f["seeds_summary"]
    digit = p["digit"]
    assert digit["relu2"] > digit["pixels"] + 0.05, "training should make the digit more linear than the pixels"
    assert digit["relu2"] > digit["random relu2"] + 0.1, "the random-init baseline should not read the digit as well"
    assert p["has_loop"]["relu2"] > max(p["has_loop"]["pixels"], p["has_loop"]["random relu2"]) + 0.05
    assert f["n_seeds"] == len(f["seeds"]) == 5 and s["test_accuracy"][0] > 0.975, f"five trained networks: {s['test_accuracy']}"
    for concept in ("thick_stroke", "leans_right"):  # the fall with depth is the architecture's: the random twin shows it too
        assert s["falls_with_depth"][concept] == {"trained": True, "random": True}, f"claim: both networks fall with depth ({concept})"
    gap, twins = s["trained_minus_twins"], {}
    for concept in ("thick_stroke", "leans_right"):  # trained minus the mean of 5 twins per seed, a t interval over the seeds
        per_run = [round(r["concepts"][concept]["relu2"] - sum(t := r["twin_concepts"][concept]["relu2"]) / len(t), 4) for r in f["seeds"].values()]
        twins[concept] = mnist_mlp.t_interval(per_run) | {"per run": per_run, "twins": 5}
        assert gap[concept]["relu2"] == twins[concept], f"{concept}: the recorded interval does not follow the seeds: {gap[concept]}"
        assert f["twin_verdict_relu2"][concept] == mnist_mlp.twin_verdict(twins[concept]), \
            f"the prose's verdict must follow the interval: {f['twin_verdict_relu2']} vs {twins[concept]}"
    assert twins["leans_right"]["interval"][0] > 0 and f["twin_verdict_relu2"]["leans_right"] == "above", \
        f"control: the same measurement finds training keeping more slant at relu2: {twins['leans_right']}"
    for concept in ("thick_stroke", "leans_right"):  # differences of accuracies: quoted in points
        assert f["points_text"][f"twins {concept}"] == mnist_mlp.points(twins[concept]["mean"]) and \
            f["points_text"][f"twins {concept} interval"] == mnist_mlp.points(*twins[concept]["interval"]), concept
        assert all(f["points_text"][f"one twin {concept} {n}"] == mnist_mlp.points(*r) for n, r in s["trained_minus_random"][concept].items())
    one = s["trained_minus_random"]["leans_right"]
    assert one["relu1"][0] > 0 and one["relu2"][0] > 0, f"claim: training keeps more slant than the one twin at relu1 and relu2 in every seed: {one}"
    assert p["leans_right"]["pixels"] > p["leans_right"]["relu2"] > p["leans_right"]["out"]


def test_full_loops_conditional_test():
    f = findings.load(STEM)
    c, pooled = f["has_loop_conditional"], f["has_loop_within_digit_pooled"]
    assert set(f["has_loop_conditional_C"].values()) <= {0.01, 0.1, 1.0} and set(f["has_loop_probe_C"].values()) <= {0.01, 0.1, 1.0}
    per_seed = {s: r["conditional"]["accuracy"] for s, r in f["seeds"].items()}  # the conditional test on every seed
    assert per_seed[str(min(map(int, per_seed)))] == c and len(per_seed) == f["n_seeds"] == 5, "the seed quoted first is the notebook's model"
    cs, text = f["seeds_summary"]["conditional"], f["points_text"]
    margin = lambda a, x, others: round(a[f"digit label + {x}"] - max(a[f"digit label + {o}"] for o in others), 4)
    m = [margin(a, "relu2", ("random relu2", "pixels")) for a in per_seed.values()]
    assert cs["relu2 minus best control"] == [min(m), max(m)] and text["conditional relu2 margin"] == mnist_mlp.points(min(m), max(m))
    for k, (lo, hi) in cs["gain over label"].items():
        g = [round(a[k] - a["digit label"], 4) for a in per_seed.values()]
        assert [lo, hi] == [min(g), max(g)] and text[f"conditional {k[14:]} gain"] == mnist_mlp.points(lo, hi), k
    bar = 0.005  # half a point, fixed before the test (the gain control's bar): the claim must clear it, the same statistic on the null must not
    assert min(m) > bar, f"claim: in every seed, beside the label, one readout finds more of the loop in relu2 than in either control, by > {bar}: {per_seed}"
    shuffled, stext = f["has_loop_shuffled_control"], f["has_loop_shuffled_text"]  # has_loop permuted within each digit on the training split, same C
    rows = shuffled["per permutation"]
    gains, nulls = [r["gain"] for r in rows], [margin(r, "relu2", ("random relu2", "pixels")) for r in rows]
    assert gains and shuffled["max gain"] == max(gains) < bar, \
        f"control: with the drawing's information shuffled away, the same measurement finds relu2 adding under half a point: {shuffled}"
    assert [r["margin"] for r in rows] == nulls and shuffled["max margin"] == max(nulls) < bar, \
        f"control: with the drawing's information shuffled away, relu2's margin over its best control stays under the claim's bar: {shuffled}"
    assert all(r["digit label + pixels"] < r["digit label + relu2"] for r in rows), f"the prose: the pixel probe loses more to the shuffle: {rows}"
    assert stext["gains"] == mnist_mlp.points(min(gains), max(gains)) and stext["permutations"] == len(gains) and stext["bar"] == mnist_mlp.points(bar)
    assert (stext["true verdict"], stext["null verdict"]) == ("clears", "under"), f"the prose's words follow the bar: {stext}"
    assert stext["margins"] == mnist_mlp.points(min(nulls), max(nulls)) and stext["true margin"] == mnist_mlp.points(margin(c, "relu2", ("random relu2", "pixels")))
    rvp = [margin(a, "random relu2", ("pixels",)) for a in per_seed.values()]  # an observation quoted in the prose, not a control
    assert cs["random relu2 minus pixels"] == [min(rvp), max(rvp)] and cs["random relu2 ahead of pixels"] == sum(g > 0 for g in rvp)
    assert cs["random relu2 minus pixels interval"] == mnist_mlp.t_interval(rvp) and text["conditional random relu2 minus pixels"] == mnist_mlp.points(min(rvp), max(rvp))
    assert text["conditional random relu2 minus pixels interval"] == mnist_mlp.points(*cs["random relu2 minus pixels interval"]["interval"])
    assert cs["random relu2 vs pixels"] == mnist_mlp.twin_verdict(cs["random relu2 minus pixels interval"]), "the prose's word follows the interval"
    assert pooled["relu2"] > pooled["majority"] + 0.01, f"within digits relu2 beats the majority: {pooled}"
    loops = f["has_loop_seeds"]
    lo, hi = loops["pooled relu2 minus pixels"]  # claim: inside digits the pixels read the loop as well as relu2, in every seed
    assert -0.01 < lo <= hi < 0.01, f"claim: relu2 and pixels within a point of each other, pooled, in every seed: {loops['pooled']}"
    assert loops["pooled random relu2 minus pixels"][1] < -0.01, f"control: the measurement tells a weaker feature set apart: {loops['pooled']}"
    assert loops["gap > 0 in every run"] == [9], f"claim: only the 9s lean towards relu2 in every seed: {loops}"
    assert [int(d) for d, (lo, hi) in loops["relu2 gap range"].items() if lo > 0] == loops["gap > 0 in every run"], \
        f"the recorded gap ranges and the digits positive in every seed must agree: {loops}"
    pooled_seeds, tested = loops["pooled over seeds"], loops["tested"]
    blind0 = [int(d) for d, v in f["has_loop_within_digit"].items() if v["gaps"]["relu2"]["interval"][0] == v["gaps"]["relu2"]["interval"][1]]
    assert set(blind0) <= set(loops["untested"]) and sorted(tested + loops["untested"]) == [int(d) for d in loops["relu2 gap range"]], \
        f"untested: the digits where in some seed relu2 and its best control answer alike on every image (seed 0: {blind0}): {loops}"
    for label, rows in pooled_seeds.items():  # each tested digit's mean gap over seeds, one-sided t bounds Bonferroni-corrected over them
        assert [int(d) for d in rows] == tested, f"both comparisons are tested on the same digits: {label}"
        for d, row in rows.items():
            assert row == mnist_mlp.t_interval(row["per run"], tests=len(tested), sides=1) | {"per run": row["per run"]} and len(row["per run"]) == 5
    rule = {k: [int(d) for d, row in pooled_seeds[label].items() if cond(row["interval"])] for k, label, cond in (
        ("reliably above", "relu2", lambda i: i[0] > 0), ("reliably below", "relu2", lambda i: i[1] < 0),
        ("random relu2 reliably above pixels", "random relu2", lambda i: i[0] > 0),
        ("pixels reliably above random relu2", "random relu2", lambda i: i[1] < 0))}
    for k, digits in rule.items():  # whichever way each verdict goes, the prose's digits follow the bounds
        assert loops[k] == digits and f["has_loop_seeds_text"][k] == mnist_mlp.digit_list(digits), f"{k}: {pooled_seeds}"
    assert all(row["tests"] == len(tested) and row["sides"] == 1 for rows in pooled_seeds.values() for row in rows.values()) and \
        f["has_loop_largest_pooled_gap"]["tests"] == len(tested), "the correction counts the digits of the one family reported: 'ahead?', one-sided, per tested digit"
    rows = {int(d): row for d, row in pooled_seeds["relu2"].items()}  # 'behind' is quoted as an unplanned observation with its bound
    assert f["has_loop_seeds_text"]["reliably below, unplanned"] == mnist_mlp.bound_list(rule["reliably below"], rows, 1)
    later = f["has_loop_9s_later_seeds"]  # the seeds trained after the 9s were singled out on seeds 0-2
    assert list(later) == ["3", "4"] and [later[s] for s in later] == rows[9]["per run"][3:], f"the record's per-seed gaps: {later}"
    assert f["has_loop_seeds_text"]["9s on later seeds"] == mnist_mlp.seeds_text({int(s): g for s, g in later.items()})
    top = max(tested, key=lambda d: pooled_seeds["relu2"][str(d)]["mean"])
    assert f["has_loop_largest_pooled_gap"] == {"digit": top} | pooled_seeds["relu2"][str(top)], "the quoted largest gain is the largest"
    assert rule["pixels reliably above random relu2"], \
        f"positive control: the same rule names the digits where the pixels read loops better than the random-init relu2: {pooled_seeds['random relu2']}"
    assert rule["random relu2 reliably above pixels"] == [], \
        f"control: the same test never finds the random-init relu2 reliably ahead of the pixels: {pooled_seeds['random relu2']}"
    w0 = f["has_loop_within_digit"]  # the quoted counts and standard errors cover this seed's digits
    assert loops["digit n range"][0] <= min(v["n"] for v in w0.values()) and max(v["n"] for v in w0.values()) <= loops["digit n range"][1]
    se0 = [(v["gaps"]["relu2"]["interval"][1] - v["gaps"]["relu2"]["interval"][0]) / 3.92 for d, v in w0.items() if int(d) in tested]
    assert loops["gap se range"][0] <= min(se0) + 1e-4 and max(se0) <= loops["gap se range"][1] + 1e-4, (se0, loops["gap se range"])
    assert f"{loops['gap se range'][0]:.1%}" != "0.0%", f"over the tested digits no interval has zero width: no quoted standard error reads 0.0%: {loops['gap se range']}"
    assert f["has_loop_seeds_text"]["gap > 0 in every run"] == mnist_mlp.digit_list([9], {9: loops["relu2 gap range"]["9"]})
    w = f["has_loop_within_digit"]
    assert all(lo <= v["gaps"]["relu2"]["gap"] <= hi for v in w.values() for lo, hi in [v["gaps"]["relu2"]["interval"]])
    share = f["has_loop_share_by_digit"]
    assert share[1] == 0 and 0.2 < share[2] < 0.4 and share[0] < 0.9 and share[9] < 0.8, f"claim: the label is noisy: {share}"


def test_full_attribution_sanity_checks_say_which_methods_pass():
    f = findings.load(STEM)
    table, passes = f["attribution_sanity"], f["attribution_passes"]
    assert set(table) == METHODS
    for method, row in table.items():  # the recorded verdicts follow the stated rule
        assert passes[method] == [c for c in ("random weights", "shuffled labels") if abs(row[c]) < 0.1 and row["repeat"] > 0.5]
    both = {m for m, p in passes.items() if len(p) == 2}
    assert both == {"integrated_gradients", "occlusion", "lime", "kernel_shap"}, f"claim: these four pass both checks: {passes}"
    assert passes["saliency"] == ["random weights"] and table["saliency"]["shuffled labels"] > 0.15, \
        "claim: saliency fails the label check (a network trained on shuffled labels shares part of its map)"
    assert all(0.5 < table[m]["repeat"] < 0.9 for m in ("lime", "kernel_shap")), "claim: the sampled maps rerun only roughly"
    assert f["shuffled_label_twin"]["fits_its_labels"] > 0.95 and f["shuffled_label_twin"]["test_accuracy"] < 0.15, \
        "the label control must have memorised its shuffled labels and learned no digit"
    absolute = {m: row["random weights abs"] for m, row in table.items()}
    assert absolute["integrated_gradients"] > 0.9 and absolute["occlusion"] > 0.85, \
        "the notebook claims |IG| and |occlusion| stay correlated through randomisation (zero on black pixels)"
    assert abs(absolute["saliency"]) < 0.1
    assert f["n_attribution"] == {"exact": 100, "sampled": 60, "surrogate_samples": 500}
    null = f["attribution_null_abs_rho"]
    for method, row in table.items():  # the signed check's mean could hide sign-flipping agreement; mean |rho| against its null
        lo, hi = row["random weights interval"]
        assert lo <= row["random weights"] <= hi and row["random weights |rho|"] >= abs(row["random weights"]) - 1e-3
        if method in both:
            assert row["random weights |rho|"] < null[method] + 0.1, f"{method}: |rho| with the random net must stay near its null"


def test_full_ablation_and_intervention():
    f = findings.load(STEM)
    assert 0.01 < f["top_ablation_drop"] < 0.1, "the notebook claims no single neuron is essential (largest drop < 10 points)"
    assert all(v["top_drop"] < 0.1 for v in f["ablation_by_method"].values()), f"claim: under every replacement: {f['ablation_by_method']}"
    assert f["ablation_by_method"]["mean"]["top_drop"] == f["top_ablation_drop"]
    assert f["ablation_control_logit_top_drop"] > 0.9, "control: the same measurement on the logits finds an essential unit"
    assert f["ablation_points_text"] == {h: mnist_mlp.points(v["top_drop"], signed=False) for h, v in f["ablation_by_method"].items()} | \
        {"logit": mnist_mlp.points(f["ablation_control_logit_top_drop"], signed=False)}, "drops of accuracy are quoted in points"
    assert f["most_selective_relu1"]["largest_class_drop_text"] == mnist_mlp.points(f["most_selective_relu1"]["largest_class_drop"], signed=False)
    zero, top = f["live_neuron_zero_share_median"], f["top_ablation_neuron_values"]
    assert zero["relu1"] > 0.5 and top["zero_share"] > 0.7 and top["near_mean_share"] < 0.05, \
        f"claim: 0 is the common value of a ReLU neuron, its mean a rare one: {zero}, {top}"
    assert set(f["top_ablation_neuron_favourite_classes"]) == {5, 7}, "the prose says it fires most on 5s and 7s (a flat top stroke)"
    assert abs(f["top_ablation_neuron_selectivity"] - f["mean_class_selectivity"]["relu1"]) < 0.1 < \
        f["most_selective_relu1"]["selectivity"] - f["top_ablation_neuron_selectivity"], "claim: the most needed neuron is of ordinary selectivity"
    assert f["intervention_example_prediction"] == 8
    assert f["ablation_cells_within_half_point"] > 0.9
    assert f["most_selective_relu1"]["selectivity"] > 0.9 and f["most_selective_relu1"]["largest_class_drop"] < 0.01, \
        "claim: the most selective neuron is not needed (no class loses a point without it)"
    flip = f["seeds_summary"]["flip"]
    assert f["intervention_flip_rate"] >= 0.9, "for this seed, 10 chosen relu2 neurons flip >= 90% of 3s into 8s"
    assert flip["trained chosen"][0] > flip["trained random neurons"][1] + 0.3, \
        f"claim: in every seed the 10 chosen neurons flip far more 3s than 10 random ones (the prose quotes both ranges): {flip}"
    assert f["intervention_control_flip_rate"] <= 0.05 and flip["trained random neurons"][1] <= 0.05, "random neurons rarely flip"
    lift = {tag: [round(r["flip"][tag]["chosen"] - r["flip"][tag]["base"], 4) for r in f["seeds"].values()] for tag in ("trained", "random")}
    assert f["seeds_summary"]["flip_lift"] == {tag: [min(v), max(v)] for tag, v in lift.items()}, "the quoted lifts follow the seeds"
    assert f["points_text"]["flip lift trained"] == mnist_mlp.points(*f["seeds_summary"]["flip_lift"]["trained"]) and \
        f["points_text"]["flip lift random max"] == mnist_mlp.points(f["seeds_summary"]["flip_lift"]["random"][1]), "lifts are quoted in points"
    assert min(lift["trained"]) > max(lift["random"]), \
        f"control: the prose quotes the lifts over the base rate; in every seed the trained lift exceeds every random-init twin's: {lift}"
    sel = f["seeds_summary"]["selectivity_vs_need"]
    assert all(-0.35 < lo <= hi < 0.35 for k, (lo, hi) in sel.items() if k.startswith("trained")), f"claim: a weak predictor: {sel}"
    assert sel["random relu1"][1] < 0 and sel["random relu2"][1] < 0, f"the random twin's negative sign comes free: {sel}"
    curve = f["intervention_curve"]
    assert curve["k"] == [1, 2, 3, 5, 7, 10, 15, 20, 30]
    assert curve["chosen"][5] == f["intervention_flip_rate"] and curve["chosen"][0] < 0.05, "one neuron alone must not suffice"
    assert all(a >= b for a, b in zip(curve["chosen"], curve["random"])), "chosen neurons flip at least as many as random ones"


def test_full_headline_quotes_the_findings():
    f = findings.load(STEM)
    p, c, w, flip = f["probe_accuracy"], f["has_loop_conditional"], f["has_loop_within_digit_pooled"], f["seeds_summary"]["flip"]
    best = max(("random relu2", "pixels"), key=lambda n: c[f"digit label + {n}"])  # the headline quotes this seed's best control
    for text in (f"{f['test_accuracy']:.2%}", f"{p['digit']['relu2']:.1%}", f"label {c['digit label']:.1%}",
                 f"label + relu2 {c['digit label + relu2']:.1%}", f"best control label + {best} {c[f'digit label + {best}']:.1%}",
                 f"pooled {w['relu2']:.1%} vs {w['pixels']:.1%}", f"{mnist_mlp.points(-f['top_ablation_drop'])} on one class",
                 f"{flip['trained chosen'][0]:.0%}-{flip['trained chosen'][1]:.0%} of 3s", f"over {f['n_seeds']} seeds",
                 f"relu2 ahead of its best control by {f['points_text']['conditional relu2 margin']} over"):
        assert text in f["headline"], f"the headline should quote {text!r}: {f['headline']}"
    assert " only" not in f["headline"] and "information the pixels do not" not in f["headline"], "relu2 is a function of the pixels"


WRONG_ANSWERS = {"my_integrated_gradients": [
    ("def my_integrated_gradients(model, x, target, n_steps):\n"  # gradient x input at the image only
     "    x = x.clone().requires_grad_(True)\n"
     "    (g,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)\n"
     "    return x.detach() * g",
     "gradient x input at x alone"),
    ("def my_integrated_gradients(model, x, target, n_steps):\n"  # forgot to multiply by x - baseline
     "    alphas = (torch.arange(n_steps) + 0.5) / n_steps\n"
     "    path = (alphas.view(-1, 1, 1, 1) * x).flatten(0, 1).requires_grad_(True)\n"
     "    (g,) = torch.autograd.grad(model(path).gather(1, target.repeat(n_steps)[:, None]).sum(), path)\n"
     "    return g.reshape(n_steps, *x.shape).mean(0)",
     "multiply the averaged gradient"),
    ("def my_integrated_gradients(model, x, target, n_steps):\n"  # left Riemann sum, alpha = k / n
     "    alphas = torch.arange(n_steps) / n_steps\n"
     "    path = (alphas.view(-1, 1, 1, 1) * x).flatten(0, 1).requires_grad_(True)\n"
     "    (g,) = torch.autograd.grad(model(path).gather(1, target.repeat(n_steps)[:, None]).sum(), path)\n"
     "    return x * g.reshape(n_steps, *x.shape).mean(0)",
     "left end points"),
], "my_class_accuracy_drop": [
    ("def my_class_accuracy_drop(model, layer, neuron, x, y, value):\n"  # the hook is never removed
     "    per_class = lambda pred: torch.stack([(pred[y == k] == k).float().mean() for k in range(10)])\n"
     "    before = per_class(model(x).argmax(-1))\n"
     "    dict(model.named_modules())[layer].register_forward_hook(lambda m, i, out: out.index_fill(1, torch.tensor([neuron]), float(value)))\n"
     "    return (before - per_class(model(x).argmax(-1))).detach()",
     "your hook is still on the model"),
    ("def my_class_accuracy_drop(model, layer, neuron, x, y, value):\n"  # zero-ablates instead of patching in `value`
     "    per_class = lambda pred: torch.stack([(pred[y == k] == k).float().mean() for k in range(10)])\n"
     "    before = per_class(model(x).argmax(-1))\n"
     "    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, out: out.index_fill(1, torch.tensor([neuron]), 0.0))\n"
     "    after = per_class(model(x).argmax(-1))\n"
     "    handle.remove()\n"
     "    return (before - after).detach()",
     "you set the neuron to 0"),
], "my_probe_with_control": [
    ("def my_probe_with_control(train, labels_train, test, labels_test, C, seed):\n"  # fitted and scored on the test split
     "    from sklearn.linear_model import LogisticRegression\n"
     "    from sklearn.pipeline import make_pipeline\n"
     "    from sklearn.preprocessing import StandardScaler\n"
     "    fit = lambda y: make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300)).fit(test.double().numpy(), y.numpy())\n"
     "    shuffled = labels_test[torch.randperm(len(labels_test), generator=torch.Generator().manual_seed(seed))]\n"
     "    return {k: float(fit(y).score(test.double().numpy(), labels_test.numpy())) for k, y in (('probe', labels_test), ('control', shuffled))}",
     "fitted the probe on the test split"),
    ("def my_probe_with_control(train, labels_train, test, labels_test, C, seed):\n"  # standardises each image, not each neuron
     "    from sklearn.linear_model import LogisticRegression\n"
     "    scale = lambda f: ((f - f.mean(1, keepdim=True)) / f.std(1, keepdim=True).clamp_min(1e-6)).double().numpy()\n"
     "    fit = lambda y: LogisticRegression(C=C, max_iter=300).fit(scale(train), y.numpy())\n"
     "    shuffled = labels_train[torch.randperm(len(labels_train), generator=torch.Generator().manual_seed(seed))]\n"
     "    return {k: float(fit(y).score(scale(test), labels_test.numpy())) for k, y in (('probe', labels_train), ('control', shuffled))}",
     "wrong axis"),
    ("def my_probe_with_control(train, labels_train, test, labels_test, C, seed):\n"  # the control is the probe again
     "    from sklearn.linear_model import LogisticRegression\n"
     "    from sklearn.pipeline import make_pipeline\n"
     "    from sklearn.preprocessing import StandardScaler\n"
     "    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300)).fit(train.double().numpy(), labels_train.numpy())\n"
     "    accuracy = float(probe.score(test.double().numpy(), labels_test.numpy()))\n"
     "    return {'probe': accuracy, 'control': accuracy}",
     "your control reads the real labels"),
    ("def my_probe_with_control(train, labels_train, test, labels_test, C, seed):\n"  # no control at all
     "    from sklearn.linear_model import LogisticRegression\n"
     "    from sklearn.pipeline import make_pipeline\n"
     "    from sklearn.preprocessing import StandardScaler\n"
     "    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300)).fit(train.double().numpy(), labels_train.numpy())\n"
     "    return {'probe': float(probe.score(test.double().numpy(), labels_test.numpy()))}",
     "a probe means little without its control"),
]}


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)


def test_full_exercise_zero_ablation_costs_more_than_mean_ablation():
    e = findings.load(STEM)["exercise_zero_ablation"]
    assert e["zero_ablation_drop"] > e["mean_ablation_drop"], f"the answer says zeroing costs more: {e}"
    assert e["drops_text"] == {h: mnist_mlp.points(e[f"{h}_ablation_drop"], signed=False) for h in ("zero", "mean", "resample")}, "the answer quotes drops in points"
    assert e["mean_on_class"] > 2 * e["training_mean"], f"the neuron is evidence for its class: {e}"
    assert e["silent_on_class"] > 0.5, f"the answer says it is silent on most of the class: {e}"
    assert e["zero_share"] > 0.5, f"the answer says 0 is no unusual value for it: {e}"
