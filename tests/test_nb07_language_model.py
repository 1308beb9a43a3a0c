"""Notebook 07: a Shakespeare language model trained here, opened up; induction heads formed and verified."""
import math
import re

import pytest

from glassbox import findings, paths
from glassbox.journal import checkpoints

STEM = "07_language_model"
LENS_LABELS = ["embeddings (before layer 0)", "after layer 0", "after layer 1 (output)"]


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    for key in ["val_loss", "unigram_val_loss", "bigram_val_loss", "lm_head_classes", "logit_lens_loss", "accumulated_dla",
                "lm_repetition", "phase_change_width_steps", "phase_change_width_exponential_control", "phase_change_by_seed",
                "k_composition", "ablation_second_copy_loss", "ablation_first_copy_loss", "path_patching_fraction",
                "induction_attention_on_target", "induction_repetition", "untrained_max_prefix_matching", "circuit_checks",
                "target_status", "budget_status", "lm_head_ablation_cost", "k_composition_hint", "previous_token_other_head",
                "exercise_previous_token_ablation", "exercise_logit_lens_second_copy", "exercise_patching_positions", "headline"]:
        assert key in f, f"smoke run did not record {key!r}"
    ex = f["exercise_previous_token_ablation"]  # the folded answer says 'more than' / 'no more than' from these numbers
    assert ex["comparison"] == ("more than" if ex["previous-token head"] > ex["costlier layer-1 head alone"] else "no more than")
    patched = f["exercise_patching_positions"]
    assert patched["the character after the earlier copy"] == patched["query position"] - 32 + 1, "the position after the earlier copy"
    for layer in ("embeddings", "layer 1"):
        assert 0 <= patched[f"{layer}: best position"] <= patched["query position"], f"{layer}: a position up to the query's"
    assert f["n_characters"] == 1_115_394 and f["d_vocab"] == 65, "Tiny Shakespeare has 1,115,394 characters, 65 distinct"
    assert f["bigram_val_loss"] < f["unigram_val_loss"] < math.log(65), "counting baselines: bigram < unigram < uniform"
    assert len(f["lm_head_classes"]) == 8, "2 layers x 4 heads must each get a class"
    assert list(f["logit_lens_loss"]) == LENS_LABELS
    assert len(f["k_composition"]) == 2 and len(f["k_composition"][0]) == 2, "K-composition is [layer-0 head, layer-1 head]"
    assert len(f["phase_change_by_seed"]) == 3, "the induction model's headline is spread over 3 seeds"
    assert f["phase_change_width_exponential_control"] > 0, "the exponential control declines over the run"
    assert f["target_status"] in ("met", "missed")
    assert (f["target_status"] == "met") == (f["val_loss"] <= 1.55), "the target status must follow the loss"
    assert f"target 1.55 {f['target_status']}" in f["headline"], "the headline must say whether the 1.55 target was met"
    assert (f["budget_status"] == "met") == (f["train_seconds"] <= f["time_budget_seconds"]), "the budget status must follow this run's wall time"
    assert f"training budget {f['budget_status']}" in f["headline"], "the headline must say whether the time budget was met"
    assert set(f["circuit_checks"]) == {"ablation", "path patching"}, "only causal checks are counted; the K-composition hint is apart"
    assert not re.search(r"\d\s*(s|sec|seconds|min|minutes)\b", f["headline"]), "the headline must not quote wall-clock time"


def test_notebook_speaks_in_its_own_words():
    """Readers cannot see the tracker: the notebook says what it means instead of pointing to an issue."""
    import nbformat
    nb = nbformat.read(paths.NOTEBOOK_DIR / f"{STEM}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    hits = re.findall(r"(?i)\bthe issue\b|\bissue\s*#?\d+", text)
    assert not hits, f"the notebook refers readers to {hits}: say it in its own words"


@pytest.mark.xfail(strict=True, reason="target missed in the committed run (its val_loss and target_status are in the findings); "
                   "the learning rate and batch size are untuned (no sweep recorded); remove this mark once a run meets it")
def test_full_language_model_meets_the_target():
    f = findings.load(STEM)
    assert f["val_loss"] <= 1.55, f"validation loss {f['val_loss']:.3f} nats/char, target <= 1.55"


def test_full_target_missed_is_said():
    f = findings.load(STEM)
    if f["val_loss"] > 1.55:
        assert f["target_status"] == "missed" and "target 1.55 missed" in f["headline"], "a missed target must be said in the headline"


def test_full_time_budget_is_reported_from_this_runs_times():
    f = findings.load(STEM)
    assert f["budget_status"] == ("met" if f["train_seconds"] <= f["time_budget_seconds"] else "missed"), "budget status vs wall time"
    assert f["cpu_over_wall"] == pytest.approx(f["train_cpu_seconds"] / f["train_seconds"], rel=0.01), "the ratio is this run's"
    assert f"training budget {f['budget_status']}" in f["headline"]


def test_full_heads_matter_though_their_direct_attribution_is_small():
    f = findings.load(STEM)
    cost = f["costliest_head"]
    assert cost["ablation cost"] > 0.3, f"the costliest head's mean ablation raises the loss by only {cost['ablation cost']:.3f}"
    assert cost["ablation cost"] > 5 * f["max_head_dla"], "the ablation cost should dwarf every head's direct attribution"
    assert f["untrained_max_head_ablation_cost"] < 0.05, "control: in an untrained model no head's ablation should matter"


def test_full_language_model_learned_and_reads_out_layer_by_layer():
    f = findings.load(STEM)
    assert f["val_loss"] < 1.7, f"validation loss {f['val_loss']:.3f}: the committed run reached about 1.6"
    assert f["val_loss"] < f["bigram_val_loss"] - 0.5, "the transformer should beat the bigram baseline by a wide margin"
    lens_loss = [f["logit_lens_loss"][k] for k in LENS_LABELS]
    assert lens_loss[0] > lens_loss[1] > lens_loss[2], f"the logit lens loss should fall layer by layer: {lens_loss}"
    assert lens_loss[2] == pytest.approx(f["val_loss"], abs=0.15), "the lens's last row is the model's own output"
    acc = [f["accumulated_dla"][k] for k in LENS_LABELS]
    assert acc[0] < acc[2], f"the layers should add evidence for the right character: {acc}"


def test_full_no_induction_head_in_the_lm_against_untrained_and_induction_model():
    f = findings.load(STEM)
    lm_max, untrained = f["lm_max_prefix_matching"], f["untrained_max_prefix_matching"]
    assert lm_max < 2 * untrained, f"LM prefix-matching {lm_max:.3f} vs untrained {untrained:.3f}: 'no induction head' needs it near chance"
    assert max(f["copying_scores"].values()) > 0.5 and len(f["induction_heads"]) >= 1, "positive control: the induction model has one"


def _gain(rep, test):
    row = rep[test]
    control = [v for k, v in row.items() if k.startswith("second copy") and k != "second copy"][0]
    return control - row["second copy"]


def test_full_the_lm_copies_nothing_at_equal_context_and_the_induction_model_does():
    f = findings.load(STEM)
    for test in ("repeated names", "repeated line", "random characters"):
        lm_gain, ind_gain = _gain(f["lm_repetition"], test), _gain(f["induction_repetition"], test)
        assert abs(lm_gain) < 0.1, f"{test}: the LM gains {lm_gain:.3f} nats/char from the real first copy: it copies"
        assert ind_gain > 1.0, f"{test}: the induction model gains only {ind_gain:.3f} over the scramble control"
    names, rare = f["lm_repetition"]["repeated names"], f["lm_repetition"]["rare names"]
    assert names["distinct words"] >= 40, f"only {names['distinct words']} distinct words: the occurrences are not independent"
    assert rare["n"] >= 30 and rare["distinct words"] >= 15, f"too few words rare in training: {rare}"
    assert abs(f["lm_name_gain"]["rare names"]) < 0.1, f"the LM gains {f['lm_name_gain']['rare names']:.3f} on rare words: it copies"
    assert f["induction_name_gain"]["rare names"] > 1.0, "control: the induction model copies rare words"


def test_full_induction_model_copies_names_honestly_measured():
    f = findings.load(STEM)
    names = f["induction_repetition"]["repeated names"]
    assert names["second copy"] < f["uniform_loss"] - 2, f"second occurrence {names['second copy']:.2f} should be far below guessing"
    assert f["induction_name_gain"]["over the first occurrence"] > 2, f"gain over the first occurrence: {f['induction_name_gain']}"
    assert names["second copy, first copy scrambled"] > f["uniform_loss"], "the prose says the scramble control is worse than guessing"


def test_full_repeated_line_is_worse_at_the_seam_not_from_repetition():
    f = findings.load(STEM)
    line, seam = f["lm_repetition"]["repeated line"], f["lm_line_seam"]
    assert seam["first 3 of the second copy"] > seam["rest of the second copy"] + 0.5, f"the cost should sit at the seam: {seam}"
    assert line["second copy"] == pytest.approx(line["second copy after another first copy"], abs=0.05), "equally worse after another line"


def test_full_phase_change_is_narrower_than_a_plateau_free_exponential():
    from glassbox.studies import shakespeare
    f = findings.load(STEM)
    width, control = f["phase_change_width_steps"], f["phase_change_width_exponential_control"]
    assert width < 0.5 * control, f"20-80% of the drop takes {width:.0f} steps, an exponential half-way at the same step {control:.0f}"
    for seed, row in f["phase_change_by_seed"].items():
        assert row["width 20-80%"] < 0.5 * row["exponential control width"], f"seed {seed}: {row}"
        assert row["second / first copy"] <= 0.10, f"seed {seed}: second copy at {row['second / first copy']:.1%} of the first"
    steps = [0, 1] + list(range(21, 1000, 20)) + [1000]  # the notebook's saved steps; control: a smooth exponential of the same half
    smooth = shakespeare.exponential_decline(steps, [4.5] * (len(steps) - 1) + [0.2], f["phase_change_halfway_step"])
    assert shakespeare.drop_width(steps, smooth) > 0.5 * control, "the same measurement must fail on a plateau-free exponential"


def test_full_previous_token_head_rises_late():
    f = findings.load(STEM)
    assert f["previous_token_halfway_step"] > f["phase_change_halfway_step"], "the notebook says the previous-token score rises after the loss"
    prev = f["previous_token_score_over_training"]
    assert prev["at half drop"] < prev["final"], prev
    other = f["previous_token_other_head"]["halfway step"]
    assert other < f["phase_change_halfway_step"], f"the notebook says the other layer-0 head's score rises before the loss: {other:.0f}"


def test_full_induction_heads_form_and_are_verified():
    f = findings.load(STEM)
    assert f["second_over_first"] <= 0.10, f"second copy at {f['second_over_first']:.1%} of the first, target <= 10%"
    assert f["induction_heads"], "no head passed the induction (prefix-matching) threshold"
    prev = int(f["previous_token_head"][-1])
    for head in f["induction_heads"]:
        k = f["k_composition"][prev][int(head[-1])]
        assert k > f["composition_baseline_p95"], f"K-composition {f['previous_token_head']} -> {head} = {k:.3f}, not above random"
    ablation, first = f["ablation_summary"], f["ablation_first_copy_loss"]
    assert ablation["induction heads"] > ablation["head outside the circuit"] + 1, f"ablation: {ablation}"
    assert abs(first["induction heads"] - first["none"]) < 0.5, f"specificity: ablating the induction heads moves the first copy {first}"
    assert ablation["induction heads"] - ablation["none"] > 4 * abs(first["induction heads"] - first["none"]), "the effect is on the second copy"
    assert f["path_prev_to_induction_key"] > 0.5, f"prev-token -> induction key carries {f['path_prev_to_induction_key']:.1%}"
    assert f["path_prev_to_induction_key"] > f["path_largest_control"] + 0.2, "control paths should carry much less"
    att = f["induction_attention_on_target"]
    assert att["key path patched"] < 0.5 * att["clean"], f"under the key patch the stripe should be gone: {att}"
    assert all(f["circuit_checks"].values()), f"circuit checks: {f['circuit_checks']}"


def second_copy_lens(model, n_repeats: int = 50, repeat: int = 32, seed: int = 3) -> dict:
    """The exercise's measurement: the second copy's loss read by the logit lens before each layer and after the last,
    on the notebook's repeated random characters (seed SEED + 3, the first 50 sequences)."""
    import torch
    from glassbox import lens

    test = lens.repeated_tokens(200, repeat, model.cfg.d_vocab, seed=seed)[:n_repeats]
    with torch.no_grad():
        _, cache = model.run_with_cache(test)
        layers = lens.logit_lens(model, cache)
    return {label: lens.copy_losses(lens.per_token_loss(logits, test), repeat)[1]
            for label, logits in zip(["embeddings", "after layer 0", "after layer 1"], layers)}


def test_full_exercise_lens_is_worse_than_guessing_before_layer_1_and_an_untrained_twin_never_predicts():
    """The answer: before layer 1 the lens reads worse than guessing, after it the second copy is predicted. The
    control is the same measurement on an untrained model of the induction model's shape: worse than guessing too
    (so that half says little about training), and it never predicts the second copy."""
    from glassbox.studies import models

    f = findings.load(STEM)
    lens_loss = f["exercise_logit_lens_second_copy"]
    assert lens_loss["embeddings"] > f["uniform_loss"] and lens_loss["after layer 0"] > f["uniform_loss"], f"exercise 4's answer: {lens_loss}"
    assert lens_loss["after layer 1"] < 1.0, f"after layer 1 the second copy is predicted: {lens_loss}"
    trained = second_copy_lens(checkpoints.load_model("induction_2l"))
    for label, value in trained.items():  # the helper is the notebook's measurement (summation order may differ)
        assert value == pytest.approx(lens_loss[label], rel=1e-3), f"{label}: {value} here, {lens_loss[label]} recorded"
    untrained = second_copy_lens(models.build("transformer", checkpoints.load_card("induction_2l")["config"]))
    assert untrained["after layer 1"] > f["uniform_loss"], f"control: an untrained twin predicts no second copy {untrained}"
    assert untrained["embeddings"] > f["uniform_loss"], f"control: an untrained twin reads worse than guessing too {untrained}"


def test_full_findings_equal_the_checkpoint_cards():
    f = findings.load(STEM)
    lm_card, ind_card = checkpoints.load_card("lm_shakespeare"), checkpoints.load_card("induction_2l")
    assert lm_card["metrics"]["val_loss"] == f["val_loss"], "findings and checkpoint card disagree: rerun the notebook"
    assert lm_card["train_seconds"] == pytest.approx(f["train_seconds"], abs=0.1)
    assert ind_card["metrics"]["second_copy_loss"] == f["induction_second_copy_loss"]
    for name in ("lm_shakespeare", "induction_2l"):
        size = (paths.CHECKPOINT_DIR / f"{name}.pt").stat().st_size
        assert size < 2_000_000, f"{name}.pt is {size / 1e6:.2f} MB; keep checkpoints under 2 MB"
    assert checkpoints.load_model("induction_2l").cfg.attn_only, "the induction model is attention-only"


WRONG_ANSWERS = {"my_logit_lens": [
    ("def my_logit_lens(model, tokens):\n    _, c = model.run_with_cache(tokens)\n"
     "    resid = torch.stack([c['blocks.0.hook_resid_pre'], c['blocks.1.hook_resid_pre'], c['blocks.1.hook_resid_post']])\n"
     "    return resid @ model.W_U + model.b_U",
     "skipped the final LayerNorm"),
    ("def my_logit_lens(model, tokens):\n    _, c = model.run_with_cache(tokens)\n"
     "    return model.ln_final(torch.stack([c['blocks.0.hook_resid_post'], c['blocks.1.hook_resid_post']])) @ model.W_U + model.b_U",
     "left out the embeddings"),
    ("def my_logit_lens(model, tokens):\n    _, c = model.run_with_cache(tokens)\n"
     "    return model.ln_final(torch.stack([c['blocks.0.hook_resid_pre'], c['blocks.1.hook_resid_pre']])) @ model.W_U + model.b_U",
     "left out the output"),
    ("def my_logit_lens(model, tokens):\n    _, c = model.run_with_cache(tokens)\n"
     "    resid = torch.stack([c['blocks.0.hook_resid_pre'], c['blocks.1.hook_resid_pre'], c['blocks.1.hook_resid_post']])\n"
     "    return model.ln_final(resid) @ model.W_U",
     "bias b_U"),
], "my_patch_by_position": [
    ("def my_patch_by_position(model, clean, corrupt, hook_name, metric):\n"
     "    _, c = model.run_with_cache(corrupt)\n    out = []\n    for p in range(clean.shape[1]):\n"
     "        def patch(act, hook, p=p):\n            act = act.clone()\n            act[:, p] = c[hook_name][:, p]\n            return act\n"
     "        out.append(float(metric(model.run_with_hooks(clean, fwd_hooks=[(hook_name, patch)]))))\n    return torch.tensor(out)",
     "noising"),
    ("def my_patch_by_position(model, clean, corrupt, hook_name, metric):\n"
     "    _, c = model.run_with_cache(clean)\n    out = []\n    for p in range(clean.shape[1]):\n"
     "        def patch(act, hook, p=p):\n            act = act.clone()\n            act[:, :p + 1] = c[hook_name][:, :p + 1]\n            return act\n"
     "        out.append(float(metric(model.run_with_hooks(corrupt, fwd_hooks=[(hook_name, patch)]))))\n    return torch.tensor(out)",
     "positions 0..p at once"),
    ("def my_patch_by_position(model, clean, corrupt, hook_name, metric):\n"
     "    _, c = model.run_with_cache(clean)\n    out = []\n    for p in range(clean.shape[1]):\n"
     "        def patch(act, hook, p=p):\n            return c[hook_name]\n"
     "        out.append(float(metric(model.run_with_hooks(corrupt, fwd_hooks=[(hook_name, patch)]))))\n    return torch.tensor(out)",
     "the whole sequence at once"),
    ("def my_patch_by_position(model, clean, corrupt, hook_name, metric):\n"
     "    _, c = model.run_with_cache(clean)\n    hooks = []\n    for p in range(clean.shape[1]):\n"
     "        def patch(act, hook):\n            act = act.clone()\n            act[:, p] = c[hook_name][:, p]\n            return act\n"
     "        hooks.append(patch)\n"
     "    return torch.tensor([float(metric(model.run_with_hooks(corrupt, fwd_hooks=[(hook_name, h)]))) for h in hooks])",
     "reads p after the loop"),
], "my_path_patch_keys": [
    ("def my_path_patch_keys(model, clean, corrupt, sender, receiver):\n    (ls, hs), _ = sender, receiver\n"
     "    _, k = model.run_with_cache(corrupt)\n    z = f'blocks.{ls}.attn.hook_z'\n"
     "    def patch(act, hook):\n        act = act.clone()\n        act[:, :, hs] = k[z][:, :, hs]\n        return act\n"
     "    return model.run_with_hooks(clean, fwd_hooks=[(z, patch)])",
     "activation patching of the head"),
    ("def my_path_patch_keys(model, clean, corrupt, sender, receiver):\n"
     "    return lens.path_patch_logits(model, clean, corrupt, sender, receiver, 'q')",
     "queries"),
    ("def my_path_patch_keys(model, clean, corrupt, sender, receiver):\n"
     "    return lens.path_patch_logits(model, clean, corrupt, sender, [(receiver[0], h) for h in range(model.cfg.n_heads)], 'k')",
     "every head of layer"),
    ("def my_path_patch_keys(model, clean, corrupt, sender, receiver):\n    (ls, hs), (lr, hr) = sender, receiver\n"
     "    z, resid = f'blocks.{ls}.attn.hook_z', f'blocks.{lr}.hook_resid_pre'\n"
     "    _, c = model.run_with_cache(clean)\n    _, k = model.run_with_cache(corrupt)\n"
     "    keys = (c[resid] + (k[z][:, :, hs] - c[z][:, :, hs]) @ model.W_O[ls, hs]) @ model.W_K[lr, hr] + model.b_K[lr, hr]\n"
     "    def patch(act, hook):\n        act = act.clone()\n        act[:, :, hr] = keys\n        return act\n"
     "    return model.run_with_hooks(clean, fwd_hooks=[(f'blocks.{lr}.attn.hook_k', patch)])",
     "skipped the receiver's LayerNorm"),
], "my_k_composition": [
    ("def my_k_composition(W_OV_A, W_QK_B):\n    norm = torch.linalg.matrix_norm\n"
     "    return norm(W_OV_A @ W_QK_B) / (norm(W_QK_B) * norm(W_OV_A))",
     "Q-composition"),
    ("def my_k_composition(W_OV_A, W_QK_B):\n    norm = torch.linalg.matrix_norm\n"
     "    return norm(W_QK_B @ W_OV_A) / (norm(W_QK_B) * norm(W_OV_A))",
     "left out the transpose"),
    ("def my_k_composition(W_OV_A, W_QK_B):\n    return torch.linalg.matrix_norm(W_QK_B @ W_OV_A.T)",
     "did not divide"),
]}


@pytest.mark.notebook
def test_a_wrong_answer_fails_the_checker(checker_catches_wrong_answers):
    checker_catches_wrong_answers(STEM)


def test_full_exercise_the_previous_token_head_matters_more_than_either_induction_head():
    f = findings.load(STEM)
    alone = f["ablation_second_copy_loss"]
    prev = alone[f"{f['previous_token_head']} alone"]
    worst_induction = max(alone[f"{h} alone"] for h in f["induction_heads"])
    assert prev > worst_induction, f"exercise 1's answer: ablating {f['previous_token_head']} ({prev:.2f}) hurts more than any one induction head ({worst_induction:.2f})"


def test_full_exercise_the_previous_token_ablation_answer_says_more():
    f = findings.load(STEM)
    assert f["exercise_previous_token_ablation"]["comparison"] == "more than", f"exercise 1: {f['exercise_previous_token_ablation']}"


def test_full_exercise_patching_over_positions_finds_the_position_after_the_earlier_copy():
    """Exercise 5's answer: patching layer 1's input restores the loss at the one position the induction head reads;
    among the embeddings the same position restores only part of it (its key is built from the position before)."""
    f = findings.load(STEM)
    ex = f["exercise_patching_positions"]
    target, clean, corrupt = ex["the character after the earlier copy"], ex["clean"], ex["corrupt"]
    assert corrupt > clean + 2, f"the corrupted first copy should cost the second copy: {ex}"
    assert ex["layer 1: best position"] == target and ex["layer 1: loss there"] < clean + 0.5 * (corrupt - clean) / 4, ex
    assert ex["embeddings: best position"] == target, ex
    assert ex["embeddings: loss there"] > clean + 0.5 * (corrupt - clean), f"one embedding should restore only part: {ex}"
