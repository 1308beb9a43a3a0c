"""Notebook 10: transcoders on notebook 07's model, an attribution graph from scratch, checked by interventions."""
import re

import pytest

from glassbox import findings, paths
from glassbox.journal import checkpoints

STEM = "10_circuit_tracing"
LAYERS = ("layer0", "layer1")


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    for key in ["loss_clean", "loss_mlps_ablated", "transcoders", "untrained_transcoders", "target_met", "prompt", "graph_target",
                "graph_size", "graph_scores", "top_kept_features", "scores_over_prompts", "intervention", "graph_beats_random",
                "graph_beats_gxa_selection", "graph_predicts_better_than_gxa", "case_study", "case_direction_lowers",
                "case_study_survived", "crosscheck", "exercise_joint_ablation", "headline"]:
        assert key in f, f"smoke run did not record {key!r}"
    assert f["loss_mlps_ablated"] > f["loss_clean"], "switching both MLPs off must cost loss"
    for layer in LAYERS:
        assert f["transcoders"][layer]["l0"] <= 8 + 1e-9, "TopK with k = 8 (smoke) cannot have L0 above 8"
    assert f["prompt"].endswith(":\n"), "the graph's prompt was fixed beforehand: it ends after a speaker's name line"
    for kind in ("replacement", "completeness"):
        assert 0 <= f["graph_scores"][kind] <= 1
    assert set(f["intervention"]["mean_abs_actual"]) == {"graph", "gxa", "random"}
    assert f["graph_size"]["kept_features"] <= f["graph_size"]["features"]


def test_full_transcoders_recover_the_loss_and_untrained_ones_do_not():
    f = findings.load(STEM)
    m, control = f["transcoders"], f["untrained_transcoders"]
    assert f["loss_mlps_ablated"] > f["loss_clean"] + 0.5, "the MLPs should carry much of the model's work"
    met = m["loss_recovered"] >= 0.85 and all(m[layer]["l0"] <= 32 for layer in LAYERS)
    assert f["target_met"] == met, "the notebook's verdict on the target must follow its numbers"
    assert m["loss_recovered"] >= 0.85, f"loss recovered {m['loss_recovered']:.1%}, target >= 85%"
    assert control["loss_recovered"] < 0.5, f"untrained transcoders recover {control['loss_recovered']:.1%}: the measure would not tell them apart"
    for layer in LAYERS:
        assert m[layer]["l0"] <= 32 and m[layer]["dead_fraction"] < 0.25, f"{layer}: {m[layer]}"
        assert m[layer]["normalized_mse"] < control[layer]["normalized_mse"] - 0.3, f"{layer}: trained {m[layer]} vs untrained {control[layer]}"


def test_full_findings_equal_the_checkpoint_cards():
    f = findings.load(STEM)
    for layer in (0, 1):
        card = checkpoints.load_sae_card(f"transcoder_lm_shakespeare_l{layer}")
        for key, value in f["transcoders"][f"layer{layer}"].items():
            assert card["metrics"][key] == pytest.approx(value, abs=1e-9), f"card and findings disagree on {key}: rerun"
        assert card["config"]["model_sha256"] == checkpoints.load_card("lm_shakespeare")["weights_sha256"], "trained on another model"
        assert checkpoints.load_sae(f"transcoder_lm_shakespeare_l{layer}").cfg.k == card["config"]["k"]
        size = sum(p.stat().st_size for p in (paths.CHECKPOINT_DIR / f"transcoder_lm_shakespeare_l{layer}").iterdir())
        assert size < 2_000_000, f"transcoder {layer} is {size / 1e6:.2f} MB; keep checkpoints under 2 MB"


def test_full_graph_scores_over_prompts_beat_untrained_transcoders():
    s = findings.load(STEM)["scores_over_prompts"]
    assert s["n_prompts"] >= 30, "scores are measured over many prompts, not one"
    for kind in ("replacement", "completeness"):
        trained, untrained = s["trained"][kind], s["untrained"][kind]
        assert trained["q10"] > untrained["q90"], (f"{kind}: the trained graphs' 10th percentile {trained['q10']:.2f} should lie above the "
                                                    f"untrained graphs' 90th {untrained['q90']:.2f}")


def test_full_graph_features_matter_more_than_random_ones():
    f = findings.load(STEM)
    iv = f["intervention"]
    sel = iv["mean_abs_actual"]
    assert sel["graph"] > 3 * sel["random"], f"graph's picks {sel['graph']:.3f} vs random active features {sel['random']:.3f}"
    assert f["graph_beats_random"] == (sel["graph"] > sel["random"])
    assert f["graph_beats_gxa_selection"] == (sel["graph"] > sel["gxa"]), "the prose's verdict must follow the numbers"
    assert f["graph_predicts_better_than_gxa"] == (iv["graph"]["corr"] > iv["gradient_x_activation"]["corr"])
    assert iv["graph"]["corr"] > 0.5, f"the graph's predicted effects should track the actual ones, r = {iv['graph']['corr']:.2f}"
    assert abs(iv["graph_shuffled"]["corr"]) < 0.3, f"shuffled predictions still correlate (r = {iv['graph_shuffled']['corr']:.2f})"
    assert iv["n_pairs"] >= 100


def test_full_case_study_verdict_follows_its_preregistered_conditions():
    f = findings.load(STEM)
    cs = f["case_study"]
    est, lo, hi = cs["difference_ci"]
    assert lo <= est <= hi, "a bootstrap interval must hold its estimate"
    side = hi < 0 if f["case_direction_lowers"] else lo > 0
    survived = cs["active_share"] >= 0.5 and cs["active_share"] >= cs["active_share_other_newlines"] + 0.2 and side
    assert f["case_study_survived"] == survived, "the verdict must follow the three conditions fixed before the test"
    assert cs["n_held_out"] >= 30


def test_full_headline_quotes_no_time_and_says_the_verdicts():
    f = findings.load(STEM)
    assert not re.search(r"\d\s*(s|sec|seconds|min|minutes)\b", f["headline"]), "the headline must not quote wall-clock time"
    assert ("survived" if f["case_study_survived"] else "refuted") in f["headline"]
    joint = f["exercise_joint_ablation"]
    assert joint["n_features"] > 0


def test_notebook_speaks_in_its_own_words():
    import nbformat
    nb = nbformat.read(paths.NOTEBOOK_DIR / f"{STEM}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    hits = re.findall(r"(?i)\bthe issue\b|\bissue\s*#?\d+", text)
    assert not hits, f"the notebook refers readers to {hits}: say it in its own words"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "GLOSSARY.md" not in code, "glossary links belong in markdown cells (the website shows code cells unchanged)"


WRONG_ANSWERS = {"my_edge": [
    ("def my_edge(model, tcs, prompt, graph, s, t):\n"
     "    (_, p_s, j_s), (l_t, p_t, j_t) = graph.features[s].tolist(), graph.features[t].tolist()\n"
     "    _, cache = model.run_with_cache(prompt[None])\n"
     "    read = tcs[1].W_enc[:, j_t]\n"
     "    read = (read - read.mean()) / cache['blocks.1.ln2.hook_scale'][0, p_t]\n"
     "    return float(graph.activations[s] * tcs[0].W_dec[j_s] @ read) if p_s == p_t else 0.0",
     "through layer 1's attention heads"),
    ("def my_edge(model, tcs, prompt, graph, s, t):\n"
     "    _, cache = model.run_with_cache(prompt[None])\n"
     "    (_, p_s, j_s), (l_t, p_t, j_t) = graph.features[s].tolist(), graph.features[t].tolist()\n"
     "    write = tcs[0].W_dec[j_s]\n"
     "    read = tcs[1].W_enc[:, j_t]\n"
     "    read = (read - read.mean()) / cache['blocks.1.ln2.hook_scale'][0, p_t]\n"
     "    x = (write - write.mean()) / cache['blocks.1.ln1.hook_scale'][0, p_s] * model.blocks[1].ln1.w\n"
     "    pattern = cache['blocks.1.attn.hook_pattern'][0, :, p_t, p_s]\n"
     "    return float(sum(pattern[h] * (x @ model.W_V[1, h] @ model.W_O[1, h]) @ read for h in range(model.cfg.n_heads)))",
     "source's activation"),
]}


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)
