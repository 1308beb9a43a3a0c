"""Issue 27, the TransformerLens side: glassbox.lens, circuits, lm and hooks refuse bad input with a message
naming the argument, the value and what to do, or handle it correctly (bfloat16, float64). Models are tiny
random ones built offline: the journal's TransformerBridge (boot_native) and a HookedTransformer from a config."""
import copy
import math

import pytest
import torch
from torch import nn
from transformer_lens import HookedTransformer, HookedTransformerConfig

from glassbox import circuits, hooks, lens, lm
from glassbox.studies import find_median, models

CONFIG = {"n_layers": 2, "n_heads": 2, "d_model": 16, "d_head": 8, "d_mlp": 32, "d_vocab": 11, "n_ctx": 12}


def hooked() -> HookedTransformer:
    cfg = HookedTransformerConfig(act_fn="gelu", normalization_type="LN", seed=1, **CONFIG)
    return HookedTransformer(cfg).eval()


@pytest.fixture(scope="module")
def bridge():
    return models.build_transformer(CONFIG).eval()


@pytest.fixture(scope="module")
def run(bridge):
    tokens = torch.randint(0, 11, (3, 10), generator=torch.Generator().manual_seed(0))
    _, cache = bridge.run_with_cache(tokens)
    return bridge, tokens, cache


@pytest.fixture(scope="module")
def median():
    return models.build_attn_only_transformer({}).eval()  # 1 layer, 1 head, d_vocab 50, n_ctx 7


# ---- lens: models, layers, heads -----------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda m: lens.logit_lens(m, {}), lambda m: lens.residual_components(m, {}), lambda m: lens.logit_bias(m),
    lambda m: lens.copying_score(m, 0, 0), lambda m: lens.composition_scores(m, "k"), lambda m: lens.W_OV(m, 0),
    lambda m: lens.head_scores(m, torch.zeros(1, 4, dtype=torch.long)), lambda m: lens.random_composition_scores(m),
    lambda m: lens.path_patch_logits(m, torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long), (0, 0), (1, 0)),
    lambda m: circuits.get_W_U_eff(m), lambda m: circuits.predict_last(m, torch.zeros(1, 4, dtype=torch.long))])
def test_lens_refuses_a_model_that_is_not_a_transformer_lens_model(call):
    with pytest.raises(TypeError, match="model must be a TransformerLens model.*got Sequential"):
        call(nn.Sequential(nn.Linear(3, 3)))


@pytest.mark.parametrize("call, message", [
    (lambda m: lens.copying_score(m, 5, 0), r"layer must be in 0\.\.1 \(the model has 2 layers\), got 5"),
    (lambda m: lens.copying_score(m, 0, 2), r"head must be in 0\.\.1 \(each layer has 2 heads\), got 2"),
    (lambda m: lens.copying_score(m, -1, 0), r"layer must be in 0\.\.1 .*got -1; negative indices do not wrap"),
    (lambda m: lens.copying_score(m, 0.0, 0), r"layer must be an int, got 0\.0"),
    (lambda m: lens.head_outputs(m, {}, 2), r"layer must be in 0\.\.1"),
    (lambda m: lens.path_patch_logits(m, *[torch.zeros(2, 5, dtype=torch.long)] * 2, (0, 5), (1, 0)),
     r"sender's head must be in 0\.\.1 \(each layer has 2 heads\), got 5"),
    (lambda m: lens.path_patch_logits(m, *[torch.zeros(2, 5, dtype=torch.long)] * 2, (0, 0), (5, 0)),
     r"receiver's layer must be in 0\.\.1 \(the model has 2 layers\), got 5"),
    (lambda m: lens.path_patch_logits(m, *[torch.zeros(2, 5, dtype=torch.long)] * 2, (0, 0), []), "receiver is an empty list"),
    (lambda m: lens.head_ablation_hooks([(7, 0)], model=m), r"heads\[0\]'s layer must be in 0\.\.1 .*got 7"),
    (lambda m: lens.head_ablation_hooks([(0, 0), (1, -1)]), r"heads\[1\]'s head must be an int >= 0, got -1"),
    (lambda m: lens.head_ablation_hooks([(0, 1.5)]), r"heads\[0\]'s head must be an int >= 0, got 1\.5"),
    (lambda m: lens.head_ablation_hooks([0, 1]), r"heads must be a list of \(layer, head\) pairs"),
])
@pytest.mark.parametrize("build", ["bridge", "hooked"])
def test_out_of_range_layers_and_heads_are_refused(call, message, build, bridge):
    with pytest.raises((ValueError, TypeError), match=message):
        call(bridge if build == "bridge" else hooked())


def test_head_ablation_checks_heads_against_the_means_and_the_activation(run):
    model, tokens, cache = run
    means = lens.mean_z(cache, 2)
    with pytest.raises(ValueError, match=r"heads\[0\] = \(7, 0\) names layer 7, but means holds layers \[0, 1\]"):
        lens.head_ablation_hooks([(7, 0)], means)
    with pytest.raises(ValueError, match=r"heads\[0\]'s head must be in 0\.\.1 \(means\[0\] holds 2 heads\), got 5"):
        lens.head_ablation_hooks([(0, 5)], means)
    with pytest.raises(ValueError, match=r"heads: layer 0 has 2 heads and 10 positions; asked for heads \[5\]"):
        model.run_with_hooks(tokens, fwd_hooks=lens.head_ablation_hooks([(0, 5)]))  # zero ablation, no model given
    assert lens.head_ablation_hooks([]) == [], "ablating no heads is a valid baseline: no hooks"


def test_mismatched_tokens_are_refused(run):
    model, tokens, cache = run
    pattern = cache["blocks.0.attn.hook_pattern"]
    with pytest.raises(ValueError, match=r"tokens has shape \(2, 10\), pattern \(3, 2, 10, 10\): pass the tokens"):
        lens.prefix_matching_score(pattern, tokens[:2])
    parts, _ = lens.residual_components(model, cache)
    with pytest.raises(ValueError, match=r"targets has shape \(2, 9\), but components hold 3 sequences of 10 positions"):
        lens.direct_logit_attribution(model, cache, parts, tokens[:2, 1:])
    with pytest.raises(ValueError, match=r"targets has shape \(3, 20\)"):
        lens.direct_logit_attribution(model, cache, parts, torch.zeros(3, 20, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets must be token ids in 0\.\.10, got values from -1"):
        lens.direct_logit_attribution(model, cache, parts, tokens[:, 1:] - 1)
    with pytest.raises(ValueError, match=r"clean \(3, 10\) and corrupt \(3, 9\) must have the same shape"):
        lens.path_patch_logits(model, tokens, tokens[:, :9], (0, 0), (1, 0))
    with pytest.raises(ValueError, match=r"tokens has 13 positions, more than the model's context n_ctx=12"):
        lens.head_scores(model, torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"cache lacks 'ln_final.hook_scale'"):
        _, partial = model.run_with_cache(tokens, names_filter=lambda n: "hook_scale" not in n)
        lens.direct_logit_attribution(model, partial, parts, tokens[:, 1:])


@pytest.mark.parametrize("build", ["bridge", "hooked"])
def test_head_scores_and_copying_score_follow_bfloat16_and_float64(build, bridge):
    model = bridge if build == "bridge" else hooked()
    tokens = lens.repeated_tokens(4, 6, 11, seed=1)
    want = lens.head_scores(model, tokens)
    for dtype, atol in ((torch.bfloat16, 0.03), (torch.float64, 1e-5)):
        other = copy.deepcopy(model).to(dtype)
        got = lens.head_scores(other, tokens)
        for name in want:
            assert got[name].dtype == dtype, f"{name}: the scores must follow the model's dtype"
            torch.testing.assert_close(got[name].float(), want[name], atol=atol * (1 + want[name].abs().max().item()),
                                       rtol=0, msg=f"{dtype} {name} differs from float32")
        for layer, head in ((0, 0), (1, 1)):
            assert lens.copying_score(other, layer, head) == pytest.approx(lens.copying_score(model, layer, head), abs=atol * 3)


def test_direct_logit_attribution_and_logit_components_follow_bfloat16(bridge, median):
    """A bfloat16 bridge caches its LayerNorm scales in float32: the attributions must still follow the model."""
    tokens = lens.repeated_tokens(3, 5, 11, seed=0)
    want = {}
    for model in (bridge, copy.deepcopy(bridge).to(torch.bfloat16)):
        _, cache = model.run_with_cache(tokens)
        dla = lens.direct_logit_attribution(model, cache, lens.residual_components(model, cache)[0], tokens[:, 1:])
        assert dla.dtype == model.W_U.dtype
        want.setdefault("dla", dla)
    torch.testing.assert_close(dla.float(), want["dla"], atol=0.05 * want["dla"].abs().max().item(), rtol=0)
    lists = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(0))
    parts, _ = circuits.get_logit_components(copy.deepcopy(median).to(torch.bfloat16), lists)
    assert parts.dtype == torch.bfloat16


def test_previous_token_score_refuses_a_pattern_without_a_batch_dimension(run):
    _, _, cache = run
    pattern = cache["blocks.0.attn.hook_pattern"]
    for score in (lens.previous_token_score, lens.current_token_score, lens.first_token_score, lens.mean_attention_distance):
        with pytest.raises(ValueError, match=r"pattern must be an attention pattern \[batch head q k\], got shape "
                                             r"\(2, 10, 10\); for one sequence pass pattern\[None\]"):
            score(pattern[0])
        assert score(pattern[0][None]).shape == (2,), "one sequence as a batch of one: one score per head"
    with pytest.raises(ValueError, match=r"q = k >= 2 positions"):
        lens.previous_token_score(pattern[:, :, :1, :1])


@pytest.mark.parametrize("layers, message", [
    ((1, 1), r"layer_a \(the writer, 1\) must come before layer_b \(the reader, 1\)"),
    ((1, 0), r"layer_a \(the writer, 1\) must come before layer_b \(the reader, 0\)"),
    ((-1, 0), r"layer_a must be in 0\.\.1 \(the model has 2 layers\), got -1; negative indices do not wrap"),
    ((0, 2), r"layer_b must be in 0\.\.1")])
def test_composition_scores_refuse_a_reader_not_after_the_writer(bridge, layers, message):
    with pytest.raises(ValueError, match=message):
        lens.composition_scores(bridge, "k", *layers)
    assert lens.composition_scores(bridge, "k", 0, 1).shape == (2, 2)


def test_copy_losses_refuse_a_length_that_does_not_fit_the_losses():
    losses = torch.rand(4, 11)  # repeated_tokens(4, 6): 12 tokens, 11 losses
    with pytest.raises(ValueError, match=r"losses has 11 positions; per_token_loss of repeated_tokens\(n, length=8\) "
                                         r"has 2 \* length - 1 = 15"):
        lens.copy_losses(losses, 8)
    with pytest.raises(ValueError, match="length must be an int >= 2, got 1"):
        lens.copy_losses(losses, 1)
    assert lens.copy_losses(losses, 6) == (pytest.approx(losses[:, :5].mean().item()), pytest.approx(losses[:, 6:].mean().item()))


def test_per_token_loss_and_repeated_tokens_refuse_what_does_not_fit():
    logits = torch.randn(2, 5, 7)
    with pytest.raises(ValueError, match=r"tokens must be token ids in 0\.\.6, got values from 9 to 9"):
        lens.per_token_loss(logits, torch.full((2, 5), 9))
    with pytest.raises(ValueError, match=r"tokens \(2, 4\) must be the \[batch pos\]"):
        lens.per_token_loss(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="d_vocab must be an int >= 1, got 0"):
        lens.repeated_tokens(2, 3, 0)


def test_component_layers_refuses_labels_residual_components_does_not_make(run):
    model, _, cache = run
    labels = lens.residual_components(model, cache)[1]
    assert lens.component_layers(labels)[:4] == [-1, -1, 0, 0]
    with pytest.raises(ValueError, match=r"labels must be those residual_components returns .*got \['Layer 0'\]"):
        lens.component_layers(labels + ["Layer 0"])


def test_classify_heads_refuses_nan_scores_and_mismatched_shapes():
    scores = {k: torch.zeros(2, 3) for k in ("previous-token", "first-token", "current-token")}
    with pytest.raises(ValueError, match="induction holds 1 NaN"):
        lens.classify_heads(scores, torch.tensor([[0.5, float("nan"), 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"scores\['first-token'\] has shape \(2, 2\), induction \(2, 3\)"):
        lens.classify_heads(scores | {"first-token": torch.zeros(2, 2)}, torch.zeros(2, 3))


# ---- hooks ---------------------------------------------------------------------------------------------

@pytest.fixture
def small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


@pytest.mark.parametrize("fix, error, message", [
    (lambda a: 3.0, TypeError, r"the patch at '1' returned a float, not a tensor; it must return the new output, a tensor of shape \(2, 4\)"),
    (lambda a: None, TypeError, r"the patch at '1' returned a NoneType, not a tensor"),
    (lambda a: a[:, :2], ValueError, r"patch at '1' returned shape \(2, 2\), expected \(2, 4\)"),
    (lambda a: a > 0, TypeError, r"the patch at '1' returned torch.bool values for a torch.float32 output"),
    (torch.ones(3), ValueError, r"patches\['1'\] has shape \(3,\), which does not broadcast to the output of '1', \(2, 4\)"),
    (torch.tensor([1.0, float("nan"), 0.0, 0.0]), ValueError, r"patches\['1'\] holds 1 NaN"),
    ("zero", TypeError, r"patches\['1'\] must be a function of the output or a tensor, got str")])
def test_patch_names_the_module_and_the_shapes(small, fix, error, message):
    with pytest.raises(error, match=message):
        with hooks.patch(small, {"1": fix}):
            small(torch.randn(2, 3))
    assert not small[1]._forward_hooks, "a failed patch left its hook behind"


def test_patch_casts_a_float64_result_to_the_models_dtype(small):
    x = torch.randn(2, 3)
    with hooks.patch(small, {"1": lambda a: a.double() * 2}):
        out = small(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, small[2](small[1](small[0](x)) * 2))


class _Counts(nn.Module):
    def forward(self, x):
        return {"n": len(x)}


def test_capture_and_patch_refuse_a_module_whose_output_holds_no_tensor():
    # a tuple or dict output is read through its first tensor (tests/test_any_model.py); one with none is refused
    model = nn.Sequential()
    model.add_module("count", _Counts())
    for context in (hooks.capture(model, "count"), hooks.patch(model, {"count": lambda a: a})):
        with pytest.raises(TypeError, match=r"module 'count' returns dict\{n: int\}, which holds no tensor; "
                                            "hook a submodule"), context:
            model(torch.randn(2, 5, 3))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got dict"):
        hooks.get_module({}, "x")


# ---- lm ------------------------------------------------------------------------------------------------

def test_lm_generators_refuse_bad_arguments_when_called_not_when_first_drawn():
    with pytest.raises(ValueError, match=r"tokens holds 5 tokens, fewer than one window of n_ctx \+ 1 = 9"):
        lm.windows(torch.arange(5), 4, 8)
    with pytest.raises(ValueError, match=r"need 1 <= min_period <= max_period <= n_ctx, got 5, 3, 10"):
        lm.periodic_batches(4, 10, 7, 5, 3)
    assert next(lm.windows(torch.arange(20), 4, 8)).shape == (4, 9)


def test_ngram_loss_refuses_tokens_outside_the_vocabulary_and_empty_validation():
    train = torch.tensor([0, 1, 2, 1, 0])
    with pytest.raises(ValueError, match=r"train must be token ids in 0\.\.2, got values from 0 to 5"):
        lm.ngram_loss(torch.tensor([0, 5, 1]), train, 3, 1)  # bincount would silently grow the vocabulary
    with pytest.raises(ValueError, match=r"val is empty"):
        lm.ngram_loss(train, train[:0], 3, 1)
    with pytest.raises(ValueError, match="val must hold at least 2 tokens for a bigram model, got 1"):
        lm.ngram_loss(train, train[:1], 3, 2)


class Uniform(nn.Module):
    def forward(self, x):
        return torch.zeros(*x.shape, 5)


def test_lm_evaluation_and_sampling_refuse_bad_arguments():
    tokens = torch.arange(40) % 5
    with pytest.raises(ValueError, match="n_windows must be an int >= 1, got 0"):
        lm.evaluate_loss(Uniform(), tokens, 8, n_windows=0)
    assert lm.evaluate_loss(Uniform(), tokens, 8) == pytest.approx(math.log(5))
    with pytest.raises(ValueError, match=r"temperature must be >= 0, got nan"):
        lm.sample(Uniform(), tokens[:3], 2, 8, temperature=float("nan"))
    with pytest.raises(ValueError, match=r"window holds token 7, but the model has 5 logits"):
        lm.next_token_loss(Uniform(), torch.tensor([[1, 7, 2]]))
    with pytest.raises(ValueError, match=r"model must map tokens \(1, 2\) to logits \[batch pos d_vocab\], got \(1, 5\)"):
        lm.next_token_loss(lambda x: torch.zeros(1, 5), torch.tensor([[1, 2, 2]]))


def test_repeated_span_losses_refuse_empty_and_misplaced_spans():
    tokens = torch.arange(60) % 5
    with pytest.raises(ValueError, match="spans is empty"):
        lm.repeated_span_losses(Uniform(), tokens, [], n_ctx=20)
    with pytest.raises(ValueError, match=r"spans\[0\] = \(0, 2, 30, 4\) does not fit"):
        lm.repeated_span_losses(Uniform(), tokens, [(0, 2, 30, 4)], n_ctx=20)
    losses = lm.repeated_span_losses(Uniform(), tokens, [(0, 2, 12, 4)], n_ctx=20)
    torch.testing.assert_close(losses, torch.full((2, 1), math.log(5)))


# ---- circuits (1-layer attention-only) ------------------------------------------------------------------

def test_circuits_refuse_heads_positions_and_tokens_out_of_range(median):
    with pytest.raises(ValueError, match=r"head must be in 0\.\.0 \(the model has 1 heads\), got 1"):
        circuits.get_ov_table(median, head=1)
    with pytest.raises(ValueError, match=r"query_pos must be in -7\.\.6 \(n_ctx = 7\), got 7"):
        circuits.get_qk_table(median, query_pos=7)
    tokens = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"tokens must be token ids in 0\.\.49, got values from \d+ to 50"):
        circuits.get_logit_components(median, torch.cat([tokens[:, :6], torch.full((4, 1), 50)], 1))
    with pytest.raises(ValueError, match=r"position must be in -7\.\.6"):
        find_median.make_flip_pairs(tokens, 7, 50)
    with pytest.raises(ValueError, match=r"tokens must be in 0\.\.49 \(the table's rows\), got values from 50 to 50"):
        find_median.AveragingModel(find_median.tent_table(50))(torch.full((1, 3), 50))


def test_circuits_refuse_nan_and_parts_that_do_not_fit(median):
    tokens = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="values holds 1 NaN"):
        circuits.mean_by_token(torch.tensor([[0.5, float("nan")]]), torch.tensor([[1, 2]]), 3)
    terms = find_median.get_last_position_terms(median, tokens)
    with pytest.raises(ValueError, match=r"pattern has shape \(5,\), but replaces a part of shape \(4, 7\)"):
        find_median.assemble_logits(terms, pattern=torch.full((5,), 0.2))
    with pytest.raises(ValueError, match=r"ov has shape \(7, 50\), but replaces a part of shape \(4, 7, 50\)"):
        find_median.assemble_logits(terms, ov=terms.ov[0])
    torch.testing.assert_close(find_median.assemble_logits(terms, pattern=torch.full((7,), 1 / 7)).shape, torch.Size([4, 50]))
    logits = find_median.assemble_logits(terms)
    with pytest.raises(ValueError, match=r"answers must be token ids in 0\.\.49"):
        find_median.logit_fit(logits, logits, torch.full((4,), 60))
    with pytest.raises(ValueError, match=r"metric must return one number per run, got a tensor of shape \(4,\)"):
        _, cache = median.run_with_cache(tokens)
        circuits.patch_by_position(median, tokens, cache, ["blocks.0.attn.hook_v"], lambda lg: lg[:, -1, 0])


# ---- the property: NaN, empty and wrong-rank input is refused, naming the argument -------------------------

SLICED = lambda want, kind: want[None] if kind == "one rank more" else want[0]  # leading dims are batch dims
SAME = lambda want, kind: want  # a tensor that broadcasts to the same thing


def _cases():
    """(id, call(x), a valid x, the argument's name, None or, where one rank more or less is valid input too,
    the result it must give from the valid x's result)."""
    torch.manual_seed(0)
    model = models.build_transformer(CONFIG).eval()
    tokens = torch.randint(0, 11, (3, 10))
    _, cache = model.run_with_cache(tokens)
    pattern, parts = cache["blocks.0.attn.hook_pattern"], lens.residual_components(model, cache)[0]
    logits, seq = model(tokens), torch.arange(60) % 11
    median = models.build_attn_only_transformer({}).eval()
    lists = torch.randint(0, 50, (4, 7))
    terms = find_median.get_last_position_terms(median, lists)
    fixed = torch.ones(4)

    def patched(x):
        small = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        with hooks.patch(small, {"1": x}):
            return small(torch.ones(2, 3))
    return [
        ("unembed", lambda x: lens.unembed(model, x), cache["blocks.1.hook_resid_post"], "resid", SLICED),
        ("dla components", lambda x: lens.direct_logit_attribution(model, cache, x, tokens[:, 1:]), parts, "components", None),
        ("dla targets", lambda x: lens.direct_logit_attribution(model, cache, parts, x), tokens[:, 1:], "targets", None),
        ("previous_token_score", lens.previous_token_score, pattern, "pattern", None),
        ("current_token_score", lens.current_token_score, pattern, "pattern", None),
        ("first_token_score", lens.first_token_score, pattern, "pattern", None),
        ("mean_attention_distance", lens.mean_attention_distance, pattern, "pattern", None),
        ("induction_targets", lens.induction_targets, tokens, "tokens", None),
        ("prefix pattern", lambda x: lens.prefix_matching_score(x, tokens), pattern, "pattern", None),
        ("prefix tokens", lambda x: lens.prefix_matching_score(pattern, x), tokens, "tokens", None),
        ("composition_score", lambda x: lens.composition_score(x, lens.W_QK(model, 1)), lens.W_OV(model, 0)[:, None], "W_A", SLICED),
        ("per_token_loss logits", lambda x: lens.per_token_loss(x, tokens), logits, "logits", None),
        ("per_token_loss tokens", lambda x: lens.per_token_loss(logits, x), tokens, "tokens", None),
        ("copy_losses", lambda x: lens.copy_losses(x, 5), torch.rand(3, 9), "losses", None),
        ("classify_heads", lambda x: lens.classify_heads({k: torch.zeros(2, 2) for k in (
            "previous-token", "first-token", "current-token")}, x), torch.zeros(2, 2), "induction", None),
        ("head_scores", lambda x: lens.head_scores(model, x), tokens, "tokens", None),
        ("path_patch clean", lambda x: lens.path_patch_logits(model, x, tokens, (0, 0), (1, 0)), tokens, "clean", None),
        ("windows", lambda x: lm.windows(x, 2, 8), seq, "tokens", None),
        ("next_token_loss", lambda x: lm.next_token_loss(model, x), tokens, "window", None),
        ("evaluate_loss", lambda x: lm.evaluate_loss(model, x, 8), seq, "tokens", None),
        ("sample", lambda x: lm.sample(model, x, 2, 8), seq[:4], "prompt", None),
        ("ngram_loss", lambda x: lm.ngram_loss(seq, x, 11, 2), seq, "val", None),
        ("repeated_span_losses", lambda x: lm.repeated_span_losses(model, x, [(0, 1, 5, 3)], 8), seq, "tokens", None),
        ("hooks.patch", patched, fixed, "patches['1']", SAME),
        ("attention_entropy", circuits.get_attention_entropy, pattern, "pattern", SLICED),
        ("set_pattern_hooks", lambda x: model.run_with_hooks(tokens, fwd_hooks=circuits.set_pattern_hooks(x)), pattern, "pattern", None),
        ("last_query_pattern", circuits.last_query_pattern, torch.randn(4, 7), "scores", None),
        ("ablate_hooks", lambda x: circuits.ablate_hooks("blocks.0.attn.hook_v", "mean", x), torch.randn(3, 10, 2, 8), "reference", SLICED),
        ("fit_tent", find_median.fit_tent, find_median.tent_table(9), "table", None),
        ("get_local_slopes", find_median.get_local_slopes, find_median.tent_table(9), "table", None),
        ("AveragingModel", find_median.AveragingModel, find_median.tent_table(9), "table", None),
        ("get_logit_components", lambda x: circuits.get_logit_components(median, x), lists, "tokens", None),
        ("make_flip_pairs", lambda x: find_median.make_flip_pairs(x, 0, 50), lists, "tokens", None),
        ("tent_rows", lambda x: find_median.tent_rows(terms, x, 1.0), lists, "tokens", None),
        ("logit_fit", lambda x: find_median.logit_fit(x, terms.direct, lists[:, 0]), terms.direct, "logits", None),
    ]


CASES = _cases()


def _bad(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "nan":
        x = x.clone().float() if not x.is_floating_point() else x.clone()
        x.view(-1)[0] = float("nan")
        return x
    return {"empty": x[:0], "one rank less": x[0], "one rank more": x[None]}[kind]


@pytest.mark.parametrize("kind", ["nan", "empty", "one rank less", "one rank more"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_nan_empty_and_wrong_rank_input_is_refused_naming_the_argument(case, kind):
    _, call, x, name, expect = case
    if expect is not None and kind.startswith("one rank"):  # valid input too: the result must follow the valid one's
        want, got = call(x), call(_bad(x, kind))
        if isinstance(want, torch.Tensor):
            torch.testing.assert_close(got, expect(want, kind))
        return
    with pytest.raises((ValueError, TypeError)) as err:
        out = call(_bad(x, kind))
        if hasattr(out, "__next__"):
            next(out)
    assert name in str(err.value), f"the message must name {name!r}: {err.value}"
