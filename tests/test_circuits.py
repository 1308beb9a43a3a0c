"""glassbox.circuits on transformers glassbox did not build: randomly initialised TransformerLens bridges (built
directly with boot_native) and a HookedTransformer, with odd sizes so a swapped dimension shows."""
import math
import warnings

import pytest
import torch

from glassbox import circuits
from glassbox.studies import find_median



@pytest.fixture(autouse=True)
def no_grad():
    """These tests only read models; grad off for them alone (a module-level switch leaks into every test file)."""
    with torch.no_grad():
        yield


def bridge(n_heads: int = 1, n_layers: int = 1, seed: int = 0):
    from transformer_lens.model_bridge import TransformerBridge

    model = TransformerBridge.boot_native(dict(n_layers=n_layers, n_heads=n_heads, d_model=16, d_head=8, d_vocab=11,
                                               n_ctx=5, attn_only=True, normalization_type="LN", seed=seed, act_fn="relu"))
    for p in model.parameters():  # larger than the default init, so that attention is far from uniform
        p.normal_(0, 0.4, generator=torch.Generator().manual_seed(seed))
    return model.eval()


def hooked_transformer(n_heads: int = 2):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, n_heads=n_heads, d_model=16, d_head=8, d_vocab=11, n_ctx=5, attn_only=True,
                                  normalization_type="LN", seed=0, act_fn="relu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(cfg)
    for p in model.parameters():
        p.normal_(0, 0.4, generator=torch.Generator().manual_seed(1))
    return model.eval()


MODELS = {"bridge 1 head": lambda: bridge(1), "bridge 2 heads": lambda: bridge(2), "HookedTransformer": hooked_transformer}
TOKENS = torch.randint(0, 11, (64, 5), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_logit_components_add_up_to_the_logits(make):
    model = make()
    parts, labels = circuits.get_logit_components(model, TOKENS)
    assert parts.shape == (len(labels), len(TOKENS), 11) and labels[-1] == "bias"
    assert torch.allclose(parts.sum(0), model(TOKENS)[:, -1], atol=1e-4), \
        "components must add up to the logits: is the final LayerNorm's centring, scale or bias missing?"


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_qk_table_reproduces_the_attention_of_the_last_position(make):
    model = make()
    _, cache = model.run_with_cache(TOKENS)
    for head in range(model.cfg.n_heads):
        S = circuits.get_qk_table(model, head=head)
        assert S.shape == (11, 11, 5)
        pattern = S[TOKENS[:, -1:], TOKENS, torch.arange(5)].softmax(-1)
        assert torch.allclose(pattern, cache["blocks.0.attn.hook_pattern"][:, head, -1], atol=1e-5), \
            "QK table disagrees with the model: LN1 per (token, position)? divided by sqrt(d_head)? the right head?"
    assert pattern.std() > 0.05, "test model attends almost uniformly: the check above would be too weak"


def test_ov_table_is_what_each_value_writes():
    model = bridge(1)
    T = circuits.get_ov_table(model)
    assert T.shape == (11, 5, 11)
    parts, _ = circuits.get_logit_components(model, TOKENS)
    logits, cache = model.run_with_cache(TOKENS)
    a, s = cache["blocks.0.attn.hook_pattern"][:, 0, -1], cache["ln_final.hook_scale"][:, -1]
    for j in range(5):
        assert torch.allclose(parts[j], a[:, j:j + 1] * T[TOKENS[:, j], j] / s, atol=1e-4), \
            f"position {j}: the OV table times attention / scale must equal the value's logit contribution"


def test_pattern_hooks_replace_the_pattern():
    model = bridge(2)
    logits, cache = model.run_with_cache(TOKENS)
    own = model.run_with_hooks(TOKENS, fwd_hooks=circuits.set_pattern_hooks(cache["blocks.0.attn.hook_pattern"]))
    assert torch.allclose(own, logits, atol=1e-5), "putting the model's own pattern back must change nothing"
    uniform = model.run_with_hooks(TOKENS, fwd_hooks=circuits.set_pattern_hooks(circuits.uniform_causal_pattern(5)))
    zero_q = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_q", lambda q, hook: torch.zeros_like(q))])
    assert torch.allclose(uniform, zero_q, atol=1e-5), "a uniform pattern must equal attention with zero queries"
    assert not torch.allclose(uniform, logits, atol=1e-3)
    with pytest.raises(ValueError, match=r"pattern must be \[batch head q k\]"):
        model.run_with_hooks(TOKENS, fwd_hooks=circuits.set_pattern_hooks(torch.ones(3, 5, 5)))


def test_editing_hook_pattern_alone_does_not_reach_the_output_of_a_native_bridge():
    """Why set_pattern_hooks exists. If this fails, TransformerLens now honours hook_pattern edits: the helper still
    works, but its docstring's caveat (and the notebook's remark) can go."""
    model = bridge(1)
    logits = model(TOKENS)
    edited = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda p, hook: torch.zeros_like(p))])
    assert torch.allclose(edited, logits)


def test_ablate_hooks():
    model = bridge(1)
    _, cache = model.run_with_cache(TOKENS)
    v = cache["blocks.0.attn.hook_v"]
    zero = model.run_with_hooks(TOKENS, fwd_hooks=circuits.ablate_hooks("blocks.0.attn.hook_v", "zero", v))
    by_hand = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_v", lambda a, hook: a * 0)])
    assert torch.allclose(zero, by_hand)
    seen = {}
    keep = ("blocks.0.attn.hook_v", lambda a, hook: seen.setdefault("v", a))
    model.run_with_hooks(TOKENS, fwd_hooks=circuits.ablate_hooks("blocks.0.attn.hook_v", "mean", v, dim=1) + [keep])
    assert torch.allclose(seen["v"], v.mean(1, keepdim=True).expand_as(v)), "mean along dim 1 = mean over positions"
    resampled = model.run_with_hooks(TOKENS, fwd_hooks=circuits.ablate_hooks("blocks.0.attn.hook_pattern", "resample",
                                                                             cache["blocks.0.attn.hook_pattern"], seed=3))
    perm = torch.randperm(len(TOKENS), generator=torch.Generator().manual_seed(3))
    pattern = cache["blocks.0.attn.hook_pattern"][perm]
    assert torch.allclose(resampled, model.run_with_hooks(TOKENS, fwd_hooks=circuits.set_pattern_hooks(pattern)))
    with pytest.raises(ValueError, match="how must be one of"):
        circuits.ablate_hooks("blocks.0.attn.hook_v", "random", v)
    with pytest.raises(ValueError, match="pass the clean activation of the same lists"):
        model.run_with_hooks(TOKENS[:10], fwd_hooks=circuits.ablate_hooks("blocks.0.attn.hook_v", "zero", v))


def test_patch_by_position_restores_exactly_the_changed_position():
    model = bridge(1)
    corrupt = TOKENS.clone()
    corrupt[:, 2] = (corrupt[:, 2] + 5) % 11
    _, clean_cache = model.run_with_cache(TOKENS)
    metric = lambda logits: logits[:, -1].sum()
    grid = circuits.patch_by_position(model, corrupt, clean_cache, ["hook_embed", "blocks.0.attn.hook_k"], metric)
    clean, dirty = metric(model(TOKENS)), metric(model(corrupt))
    assert grid.shape == (2, 5)
    assert torch.isclose(grid[0, 2], clean, rtol=1e-4), "patching the clean embedding of the changed token = clean run"
    assert torch.allclose(grid[0, [0, 1, 3, 4]], dirty.expand(4), rtol=1e-4), "unchanged positions: patching is a no-op"
    with pytest.raises(ValueError, match="clean cache holds"):
        circuits.patch_by_position(model, corrupt[:3], clean_cache, ["hook_embed"], metric)


def test_tent_fit_recovers_a_planted_tent_and_rejects_bad_input():
    torch.manual_seed(0)
    table = find_median.tent_table(20, c=3.0, bonus=5.0) + torch.randn(20, 1) * 10 + torch.randn(20, 20) * 0.01
    fit = find_median.fit_tent(table, bonus=True)
    assert fit.c == pytest.approx(3.0, abs=0.01) and fit.bonus == pytest.approx(5.0, abs=0.05) and fit.r2 > 0.999
    plain = find_median.fit_tent(table)
    assert plain.bonus == 0 and plain.r2 < fit.r2, "without the bonus feature the fit must be worse on a bonus table"
    assert find_median.fit_tent(torch.randn(20, 20)).r2 < 0.05, "noise is not a tent"
    with pytest.raises(ValueError, match="square"):
        find_median.fit_tent(torch.zeros(3, 4))


def test_averaging_tent_model_computes_the_median_of_any_list():
    model = find_median.AveragingModel(find_median.tent_table(50))
    for family in find_median.FAMILIES:
        tokens, medians = find_median.make_median_data(2000, family=family, seed=1)
        assert torch.equal(model(tokens)[:, -1].argmax(-1), medians), f"argmax of summed tents != median on {family}"
    with pytest.raises(TypeError, match="expected int tokens"):
        model(torch.zeros(2, 7))


def test_local_slopes_of_a_tent_are_its_slope():
    assert torch.allclose(find_median.get_local_slopes(find_median.tent_table(12, c=2.5), window=3), torch.full((12,), 2.5))
    with pytest.raises(ValueError, match="window >= 1"):
        find_median.get_local_slopes(torch.zeros(4, 4), window=0)


@pytest.mark.parametrize("task", ["median", "min"])
def test_flip_pairs_change_one_value_and_the_answer(task):
    tokens = find_median.make_lists(500, seed=2)
    corrupt = find_median.make_flip_pairs(tokens, 3, 50, task=task, seed=0)
    changed = find_median.list_targets(corrupt, task) != find_median.list_targets(tokens, task)
    trials = tokens[:, None].repeat(1, 50, 1)
    trials[:, :, 3] = torch.arange(50)
    possible = (find_median.list_targets(trials.reshape(-1, 7), task).reshape(500, 50) != find_median.list_targets(tokens, task)[:, None]).any(1)
    assert torch.equal(changed, possible), "every list whose answer one value at position 3 can move must be moved"
    assert possible.float().mean() > 0.85
    assert torch.equal((corrupt != tokens).sum(1), changed.long()), "exactly the changed lists differ, at one place"
    assert torch.equal((corrupt != tokens).nonzero()[:, 1].unique(), torch.tensor([3]))


def test_attention_statistics():
    assert torch.allclose(circuits.get_attention_entropy(torch.full((2, 7), 1 / 7)), torch.full((2,), math.log(7)))
    assert circuits.get_attention_entropy(torch.eye(4)).abs().max() < 1e-6
    values, tokens = torch.tensor([[0.2, 0.4], [0.6, 0.8]]), torch.tensor([[1, 2], [1, 1]])
    mean = circuits.mean_by_token(values, tokens, 4)
    assert torch.allclose(mean[1:3], torch.tensor([(0.2 + 0.6 + 0.8) / 3, 0.4])) and mean[[0, 3]].isnan().all()
    with pytest.raises(ValueError, match="same shape"):
        circuits.mean_by_token(values, tokens[:1], 4)


def test_clear_errors_for_models_the_tables_do_not_fit(tiny_cnn):
    with pytest.raises(TypeError, match="expected a TransformerLens model"):
        circuits.get_ov_table(tiny_cnn)
    with pytest.raises(ValueError, match="1-layer attention-only"):
        circuits.get_qk_table(bridge(1, n_layers=2))


def test_ov_table_of_each_head_with_two_heads():
    model = bridge(2)
    tables = [circuits.get_ov_table(model, head=h) for h in range(2)]
    assert not torch.allclose(tables[0], tables[1]), "head must select the head's W_V and W_O"
    parts, _ = circuits.get_logit_components(model, TOKENS)
    _, cache = model.run_with_cache(TOKENS)
    a, s = cache["blocks.0.attn.hook_pattern"][:, :, -1], cache["ln_final.hook_scale"][:, -1]
    for j in range(5):
        written = sum(a[:, h, j:j + 1] * tables[h][TOKENS[:, j], j] for h in range(2)) / s
        assert torch.allclose(parts[j], written, atol=1e-4), f"position {j}: the heads' OV tables must add up to the value part"


def test_tables_and_components_at_an_earlier_position():
    model = bridge(2)
    logits, cache = model.run_with_cache(TOKENS)
    parts, labels = circuits.get_logit_components(model, TOKENS, pos=2)
    assert torch.allclose(parts.sum(0), logits[:, 2], atol=1e-4), "pos picks the position whose logits are split"
    with pytest.raises(ValueError, match="1-layer attention-only"):
        circuits.get_logit_components(bridge(1, n_layers=2), TOKENS)
    S = circuits.get_qk_table(model, head=1, query_pos=2)
    q, k = cache["blocks.0.attn.hook_q"][:, 2, 1], cache["blocks.0.attn.hook_k"][:, :3, 1]  # batch (pos) d_head
    scores = torch.einsum("bd,bkd->bk", q, k) / math.sqrt(model.cfg.d_head)
    assert torch.allclose(S[TOKENS[:, 2:3], TOKENS[:, :3], torch.arange(3)], scores, atol=1e-4), \
        "the table holds the raw scores (key bias included), not only scores up to a softmax-invariant shift"
    pattern = S[TOKENS[:, 2:3], TOKENS[:, :3], torch.arange(3)].softmax(-1)  # keys 0..2: the causal mask
    assert torch.allclose(pattern, cache["blocks.0.attn.hook_pattern"][:, 1, 2, :3], atol=1e-5), \
        "query_pos picks the query position (keys after it are masked by the model)"
    assert torch.equal(circuits.predict_last(model, TOKENS), logits[:, -1].argmax(-1))
    zero_v = [("blocks.0.attn.hook_v", lambda v, hook: v * 0)]
    assert torch.equal(circuits.predict_last(model, TOKENS, zero_v), model.run_with_hooks(TOKENS, fwd_hooks=zero_v)[:, -1].argmax(-1))


def test_attention_scale_follows_the_config():
    from types import SimpleNamespace as NS

    def model(**cfg):  # a stand-in that passes checks.transformer_lens_model (a cfg with n_layers, run_with_cache)
        return NS(cfg=NS(n_layers=1, **cfg), run_with_cache=None)

    assert circuits.get_attn_scale(model(d_head=16)) == 4.0
    assert circuits.get_attn_scale(model(d_head=16, use_attn_scale=True, attn_scale=2.5)) == 2.5
    assert circuits.get_attn_scale(model(d_head=16, use_attn_scale=True, attn_scale=-1.0)) == 4.0
    assert circuits.get_attn_scale(model(d_head=16, use_attn_scale=False, attn_scale=2.5)) == 1.0
    assert circuits.get_attn_scale(model(d_head=16, use_attn_scale=True, attn_scale=0.0)) == 4.0, "0 means unset"
    with pytest.raises(TypeError, match="TransformerLens model"):
        circuits.get_attn_scale(NS(d_head=16))  # no cfg
    with pytest.raises(TypeError, match="expected a TransformerLens model"):
        circuits.get_ov_table(NS(cfg=NS(n_layers=1, attn_only=True)))  # a cfg but no W_E


def test_small_tables_and_patterns_by_hand():
    assert torch.equal(find_median.tent_table(3, c=2.0, bonus=1.0), torch.tensor([[1.0, -2, -4], [-2, 1, -2], [-4, -2, 1]]))
    assert torch.allclose(circuits.uniform_causal_pattern(3), torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]))
    scores = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    p = circuits.last_query_pattern(scores, n_heads=2)
    assert p.shape == (2, 2, 3, 3) and torch.allclose(p[:, :, :2], circuits.uniform_causal_pattern(3)[:2].expand(2, 2, 2, 3))
    assert torch.allclose(p[0, 1, -1], scores[0].softmax(-1)) and torch.allclose(p[1, 0, -1], torch.full((3,), 1 / 3))
    table = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])
    out = find_median.AveragingModel(table)(torch.tensor([[0, 1, 2]]))
    assert torch.allclose(out[0], torch.tensor([[1.0, 0.0], [0.5, 1.5], [1.0, 5 / 3]])), "position p: mean of rows 0..p"


def brute_force_local_slopes(table, window):
    n = len(table)
    out = []
    for x in range(n):
        steps = [abs(table[x, m + 1] - table[x, m]) for m in range(n - 1) if abs(m - x) < window or abs(m + 1 - x) < window]
        out.append(sum(steps) / len(steps))
    return torch.tensor(out)


@pytest.mark.parametrize("window", [1, 2, 4])
def test_local_slopes_match_a_loop_over_steps_near_the_diagonal(window):
    table = torch.randn(7, 7, generator=torch.Generator().manual_seed(window))
    assert torch.allclose(find_median.get_local_slopes(table, window), brute_force_local_slopes(table, window), atol=1e-6)


def test_fit_tent_column_residual_shows_a_preference_the_tent_lacks():
    n = 20
    bias = torch.tensor([1.0, -1.0] * (n // 2))  # a preference for even outputs, nearly orthogonal to a tent
    fit = find_median.fit_tent(find_median.tent_table(n, c=2.0) + bias[None, :])
    assert fit.c == pytest.approx(2.0, abs=0.05) and 0.9 < fit.r2 < 0.999
    assert torch.allclose(fit.column_residual, bias, atol=0.1), "column_residual: the mean misfit of each output column"
    assert find_median.fit_tent(find_median.tent_table(n, c=2.0)).column_residual.abs().max() < 1e-4


def test_flip_pairs_leave_unmovable_lists_alone_and_follow_the_seed():
    tokens = torch.tensor([[5, 5, 5, 5, 5, 5, 5], [1, 2, 3, 4, 5, 6, 7]])
    corrupt = find_median.make_flip_pairs(tokens, 0, 10, seed=1)
    assert torch.equal(corrupt[0], tokens[0]), "no single value at position 0 can move the median of seven 5s"
    assert corrupt[1, 0] >= 5 and torch.equal(corrupt[1, 1:], tokens[1, 1:]), "only values >= 5 at position 0 move the median"
    many = find_median.make_lists(200, seed=4)
    a, b = (find_median.make_flip_pairs(many, 2, 50, seed=s) for s in (1, 1))
    assert torch.equal(a, b) and not torch.equal(a, find_median.make_flip_pairs(many, 2, 50, seed=2))


def test_W_pos_and_the_effective_unembedding_on_stand_ins():
    from types import SimpleNamespace as NS

    W = torch.randn(5, 4)
    tl = dict(cfg=NS(n_layers=1), run_with_cache=None)  # passes checks.transformer_lens_model
    assert circuits.get_W_pos(NS(W_pos=W, **tl)) is W and circuits.get_W_pos(NS(W_pos=None, pos_embed=NS(W_pos=W), **tl)) is W
    with pytest.raises(AttributeError, match="neither .W_pos nor .pos_embed.W_pos"):
        circuits.get_W_pos(NS(**tl))
    with pytest.raises(TypeError, match="TransformerLens model"):
        circuits.get_W_pos(NS(W_pos=W))  # not a TransformerLens model
    W_U, w = torch.randn(4, 3), torch.tensor([1.0, 2.0, 0.5, -1.0])
    ln = NS(cfg=NS(normalization_type="LN", d_model=4), ln_final=NS(w=w), W_U=W_U)
    centred = W_U * w[:, None] - (W_U * w[:, None]).mean(0)
    assert torch.allclose(circuits.get_W_U_eff(ln), centred, atol=1e-6), "centre the residual, scale by ln_final.w, then W_U"


@pytest.mark.parametrize("norm", ["RMS", "RMSPre"])
def test_the_effective_unembedding_of_an_rms_model_gives_its_logits(norm):
    """RMSNorm does not centre: the effective unembedding is ln_final.w * W_U (RMS) or W_U (RMSPre), and
    (resid / ln_final's scale) @ it + b_U is the model's logits."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    model = HookedTransformer(HookedTransformerConfig(n_layers=1, n_heads=1, d_model=16, d_head=8, d_vocab=11, n_ctx=5,
                                                      attn_only=True, normalization_type=norm, act_fn="relu")).eval()
    if norm == "RMS":
        with torch.no_grad():
            model.ln_final.w.copy_(torch.rand(16) + 0.5)  # not all ones, so a skipped weight would show
    logits, cache = model.run_with_cache(TOKENS)
    resid = cache["blocks.0.hook_resid_post"] / cache["ln_final.hook_scale"]
    assert torch.allclose(resid @ circuits.get_W_U_eff(model) + model.b_U, logits, atol=1e-4), \
        f"{norm}: the effective unembedding must give the model's logits"


def test_without_a_final_layernorm_the_effective_unembedding_is_W_U():
    from transformer_lens.model_bridge import TransformerBridge

    plain = TransformerBridge.boot_native(dict(n_layers=1, n_heads=1, d_model=16, d_head=8, d_vocab=11, n_ctx=5,
                                               attn_only=True, normalization_type=None, seed=0, act_fn="relu"))
    logits, cache = plain.run_with_cache(TOKENS)
    resid = cache["blocks.0.hook_resid_post"]
    assert torch.allclose(resid @ plain.W_U + plain.b_U, logits, atol=1e-4), "(the model's own unembedding)"
    assert torch.allclose(resid @ circuits.get_W_U_eff(plain) + plain.b_U, logits, atol=1e-4), \
        "no final LayerNorm: the effective unembedding must give the model's logits"


def test_pattern_hooks_name_the_layer_they_edit():
    names = [n for n, _ in circuits.ablate_hooks("blocks.1.attn.hook_pattern", "zero", torch.zeros(2, 1, 5, 5))]
    assert names == ["blocks.1.attn.hook_v", "blocks.1.attn.hook_z"], "a layer-1 pattern must be replaced in layer 1"
    assert [n for n, _ in circuits.set_pattern_hooks(torch.eye(5), layer=2)] == ["blocks.2.attn.hook_v", "blocks.2.attn.hook_z"]


@pytest.mark.parametrize("changed", range(5))
def test_patching_cells_fixed_by_construction_are_so_on_a_random_model(changed):
    """The cells find_median.patching_by_construction calls 0 or 1 are exactly that on a random 1-layer bridge; the
    cells it leaves open are not all 0 or 1 there (so the rule does not hide a measurement)."""
    model = bridge(1, seed=3)
    clean = torch.randint(0, 11, (64, 5), generator=torch.Generator().manual_seed(0))
    corrupt = clean.clone()
    corrupt[:, changed] = (clean[:, changed] + 3) % 11
    lo, hi = model(corrupt)[:, -1], model(clean)[:, -1]
    metric = lambda lg: ((lg[:, -1] - lo) * (hi - lo)).sum() / (hi - lo).pow(2).sum()  # projection on the clean change
    _, cache = model.run_with_cache(clean)
    grid = circuits.patch_by_position(model, corrupt, cache, find_median.PATCHING_HOOKS, metric)
    fixed = find_median.patching_by_construction(changed, 5)
    known = ~fixed.isnan()
    assert torch.allclose(grid[known], fixed[known], atol=1e-4), "a cell called fixed by construction was measured otherwise"
    open_cells = grid[~known]
    assert len(open_cells) >= 2 and ((open_cells - open_cells.round()).abs() > 0.01).any(), \
        f"the open cells should be measurements, not 0/1: {open_cells.tolist()}"
    with pytest.raises(ValueError, match="changed"):
        find_median.patching_by_construction(5, 5)


def test_direct_path_patch():
    model = bridge(1, seed=3)
    clean = torch.randint(0, 11, (64, 5), generator=torch.Generator().manual_seed(0))
    metric = lambda lg: lg[:, -1].sum()
    for changed, expect_change in ((1, False), (4, True)):
        corrupt = clean.clone()
        corrupt[:, changed] = (clean[:, changed] + 3) % 11
        patched = find_median.patch_direct_path(model, corrupt, clean, metric)
        same = math.isclose(patched, metric(model(corrupt)).item(), rel_tol=1e-5)
        assert same != expect_change, f"changed at {changed}: the direct path at the last position moved={not same}"
    # with the head's output removed, the direct path is the whole model: patching it restores the clean logits
    model = hooked_transformer(1)  # its weights are parameters (a bridge's W_O is a view built on access)
    for p in (model.blocks[0].attn.W_O, model.blocks[0].attn.b_O):
        p.zero_()
    corrupt = clean.clone()
    corrupt[:, -1] = (clean[:, -1] + 3) % 11
    assert math.isclose(find_median.patch_direct_path(model, corrupt, clean, metric), metric(model(clean)).item(), rel_tol=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        find_median.patch_direct_path(model, corrupt, clean[:3], metric)


def test_fit_slope_finds_a_planted_slope_and_kl_is_zero_on_itself():
    tokens = torch.randint(0, 20, (500, 7), generator=torch.Generator().manual_seed(0))
    counts = torch.nn.functional.one_hot(tokens, 20).sum(1).float()
    tents = counts @ find_median.tent_table(20, c=1.0) / 7  # [lists logit]
    reference = 3.7 * tents
    assert find_median.kl_from_reference(reference, reference) == pytest.approx(0, abs=1e-9)
    c = find_median.fit_slope(lambda c: c * tents, reference, 0.1, 20.0)
    assert c == pytest.approx(3.7, rel=1e-3), f"the slope closest to a reference made with 3.7 should be 3.7, got {c}"
    assert find_median.kl_from_reference(2 * tents, reference) > find_median.kl_from_reference(3.5 * tents, reference) > 0
    with pytest.raises(ValueError, match="lo"):
        find_median.fit_slope(lambda c: c * tents, reference, 5.0, 1.0)


def test_patch_changed_number_on_a_random_model():
    model = bridge(1, seed=3)
    lists = torch.randint(0, 11, (64, 5), generator=torch.Generator().manual_seed(0))
    grid, direct = find_median.patch_changed_number(model, lists, 1)
    fixed = find_median.patching_by_construction(1, 5)
    known = ~fixed.isnan()
    assert grid.shape == (len(find_median.PATCHING_HOOKS), 5) and torch.allclose(grid[known], fixed[known], atol=1e-4)
    assert direct == pytest.approx(0, abs=1e-5), "an earlier position has no direct path to the last position's logits"
    grid, direct = find_median.patch_changed_number(model, lists, 4, task="min")
    assert abs(direct) > 0.01, "the last number reaches the logits directly through the skip connection"
