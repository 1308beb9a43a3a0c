"""glassbox.patching on models glassbox did not build: HookedTransformers made from a config, attention-only
and with MLPs. Path patching is checked against Wang et al.'s own recipe written out here (freeze every head
but the senders, record the receivers' inputs, patch them into a clean run); mean ablation against sums by hand."""
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from glassbox import patching


def _model(attn_only=True, seed=0):
    cfg = HookedTransformerConfig(n_layers=3, n_heads=3, d_model=24, d_head=8, d_mlp=32, d_vocab=17, n_ctx=9, act_fn="gelu",
                                  attn_only=attn_only, normalization_type="LN", seed=seed)
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():  # non-zero biases so that forgetting one shows
        for name, p in model.named_parameters():
            if name.split(".")[-1].startswith("b_"):
                p.normal_(0, 0.1)
    return model


def _tokens(seed, n=5):
    return torch.randint(0, 17, (n, 9), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _wang(model, clean, corrupt, senders, receivers, into, positions=None):
    """Path patching as Wang et al. describe it: senders corrupt, every other head (and MLP) frozen at clean."""
    _, c = model.run_with_cache(clean)
    _, x = model.run_with_cache(corrupt)
    freeze = []
    for layer in range(model.cfg.n_layers):
        def z_hook(z, hook, layer=layer):
            z = c[hook.name].clone()
            for ls, hs in senders:
                if ls == layer:
                    z[:, :, hs] = x[hook.name][:, :, hs]
            return z
        freeze.append((f"blocks.{layer}.attn.hook_z", z_hook))
        if not model.cfg.attn_only:
            freeze.append((f"blocks.{layer}.hook_mlp_out", lambda a, hook: c[hook.name]))
    recorded = {}
    keep = [(f"blocks.{layer}.attn.hook_{into}", lambda a, hook: recorded.__setitem__(hook.name, a.clone()))
            for layer in {layer for layer, _ in receivers or []}]
    logits = model.run_with_hooks(clean, fwd_hooks=freeze + keep)
    if receivers is None:
        if positions is None:
            return logits
        out = model(clean)
        rows = torch.arange(len(clean))
        out[rows, positions] = logits[rows, positions]
        return out

    def patch(a, hook):
        a = a.clone()
        for layer, h in receivers:
            if hook.name == f"blocks.{layer}.attn.hook_{into}":
                if positions is None:
                    a[:, :, h] = recorded[hook.name][:, :, h]
                else:
                    rows = torch.arange(len(a))
                    a[rows, positions, h] = recorded[hook.name][rows, positions, h]
        return a
    return model.run_with_hooks(clean, fwd_hooks=[(name, patch) for name in recorded])


@pytest.mark.parametrize("into", ["q", "k", "v"])
def test_path_patch_matches_wangs_recipe_with_several_senders_and_receiver_layers(into):
    model = _model()
    clean, corrupt = _tokens(0), _tokens(1)
    senders, receivers = [(0, 1), (1, 2), (0, 0)], [(1, 0), (2, 1), (2, 2)]
    got = patching.path_patch(model, clean, corrupt, senders, receivers, into=into)
    want = _wang(model, clean, corrupt, senders, receivers, into)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert not torch.allclose(got, model(clean), atol=1e-3), "control: the patch must change the output"


def test_path_patch_at_positions_and_to_the_logits():
    model = _model()
    clean, corrupt = _tokens(2), _tokens(3)
    pos = torch.tensor([8, 3, 5, 8, 1])
    got = patching.path_patch(model, clean, corrupt, [(0, 2), (1, 1)], [(2, 0)], into="q", positions=pos)
    assert torch.allclose(got, _wang(model, clean, corrupt, [(0, 2), (1, 1)], [(2, 0)], "q", pos), atol=1e-4)
    to_logits = patching.path_patch(model, clean, corrupt, [(2, 0), (1, 1)], None, positions=pos)
    assert torch.allclose(to_logits, _wang(model, clean, corrupt, [(2, 0), (1, 1)], None, None, pos), atol=1e-4)
    assert torch.allclose(patching.path_patch(model, clean, corrupt, [(2, 0), (1, 1)]),
                          _wang(model, clean, corrupt, [(2, 0), (1, 1)], None, None), atol=1e-4)


def test_path_patch_with_mlps_is_the_direct_path_wang_with_mlps_frozen():
    model = _model(attn_only=False)
    clean, corrupt = _tokens(4), _tokens(5)
    got = patching.path_patch(model, clean, corrupt, [(0, 1)], [(2, 0), (1, 2)], into="k")
    assert torch.allclose(got, _wang(model, clean, corrupt, [(0, 1)], [(2, 0), (1, 2)], "k"), atol=1e-4)


def test_path_patch_with_the_same_input_changes_nothing():
    model = _model()
    clean = _tokens(6)
    assert torch.allclose(patching.path_patch(model, clean, clean, [(0, 0), (1, 1)], [(2, 2)], "v"), model(clean), atol=1e-5)


def test_path_patch_refuses_bad_input():
    model = _model()
    clean, corrupt = _tokens(0), _tokens(1)
    with pytest.raises(ValueError, match="senders is empty"):
        patching.path_patch(model, clean, corrupt, [], [(2, 0)])
    with pytest.raises(ValueError, match="comes before a receiver"):
        patching.path_patch(model, clean, corrupt, [(2, 0)], [(1, 0)])
    with pytest.raises(ValueError, match="into must be"):
        patching.path_patch(model, clean, corrupt, [(0, 0)], [(1, 0)], into="z")
    with pytest.raises(ValueError, match="one shape"):
        patching.path_patch(model, clean, corrupt[:3], [(0, 0)], [(1, 0)])
    with pytest.raises(ValueError, match="positions"):
        patching.path_patch(model, clean, corrupt, [(0, 0)], [(1, 0)], positions=torch.tensor([1, 2]))
    with pytest.raises((ValueError, IndexError), match="head"):
        patching.path_patch(model, clean, corrupt, [(0, 7)], [(1, 0)])


def test_group_means_are_per_group_means():
    model = _model()
    ref, groups = _tokens(7, n=6), torch.tensor([0, 1, 0, 2, 1, 0])
    means = patching.group_means(model, ref, groups)
    _, cache = model.run_with_cache(ref)
    z = cache["blocks.1.attn.hook_z"]
    assert torch.allclose(means[1][0], z[[0, 2, 5]].mean(0), atol=1e-6)
    assert torch.allclose(means[1][2], z[3], atol=1e-6)
    assert torch.allclose(patching.group_means(model, ref)[2][0], cache["blocks.2.attn.hook_z"].mean(0), atol=1e-6)


@torch.no_grad()
def test_everything_ablated_leaves_embeddings_plus_mean_head_outputs():
    model = _model()
    tokens, ref = _tokens(8), _tokens(9, n=20)
    means = patching.group_means(model, ref)
    resid = model.embed(tokens) + model.pos_embed(tokens)
    for layer in range(3):
        resid = resid + torch.einsum("phd,hdm->pm", means[layer][0], model.W_O[layer]) + model.b_O[layer]
    want = model.unembed(model.ln_final(resid))
    metric = lambda logits: logits[:, -1, 3].mean()
    assert patching.performance(model, tokens, metric, [], means) == pytest.approx(metric(want).item(), abs=1e-4)
    assert patching.performance(model, tokens, metric, patching.all_heads(model), means) == pytest.approx(metric(model(tokens)).item(), abs=1e-5)
    assert patching.performance(model, tokens, metric, None, means) == pytest.approx(metric(model(tokens)).item(), abs=1e-5)


def test_the_three_criteria_on_known_answers():
    model = _model()
    with torch.no_grad():
        model.blocks[1].attn.W_O[2] = 0  # a dead head: it belongs in no minimal circuit
        assert model.W_O[1, 2].abs().max() == 0
    tokens, ref = _tokens(10, n=8), _tokens(11, n=8)
    means = patching.group_means(model, ref)
    metric = lambda logits: (logits[:, -1, 3] - logits[:, -1, 5]).mean()
    everything = patching.all_heads(model)
    f = patching.faithfulness(model, tokens, metric, everything, means)
    assert f["F(C)/F(M)"] == pytest.approx(1.0, abs=1e-4) and f["|F(M)-F(C)|/F(M)"] == pytest.approx(0.0, abs=1e-4)
    part = patching.faithfulness(model, tokens, metric, [(0, 0)], means)
    assert abs(part["F(C)"] - part["F(M)"]) > 1e-3, "control: one head alone is not the whole model"
    comp = patching.completeness(model, tokens, metric, everything, {"L0": [(0, 0), (0, 1), (0, 2)], "none": []}, means)
    assert all(row["incompleteness"] == pytest.approx(0.0, abs=1e-4) for row in comp.values()), "C = M is complete"
    mini = patching.minimality(model, tokens, metric, everything, {(1, 2): [[(0, 0)]], (2, 0): [[(1, 0)]]}, means)
    assert mini[(1, 2)]["score"] == pytest.approx(0.0, abs=1e-5), "a head that writes nothing matters for no K"
    assert mini[(2, 0)]["score"] > 1e-3, "control: a live head matters"
    with pytest.raises(ValueError, match="not inside the circuit"):
        patching.completeness(model, tokens, metric, [(0, 0)], {"bad": [(1, 1)]}, means)
    with pytest.raises(ValueError, match="groups"):
        patching.performance(model, tokens, metric, [], means, torch.tensor([0, 1]))


def test_path_effects_are_single_sender_path_patches_as_shares():
    model = _model()
    clean, corrupt = _tokens(12), _tokens(13)
    metric = lambda logits: (logits[:, -1, 3] - logits[:, -1, 5]).mean()
    base = metric(model(clean)).item()
    receivers = [(1, 0), (2, 1)]
    got = patching.path_effects(model, clean, corrupt, metric, patching.all_heads(model), receivers, into="v")
    assert set(got) == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)}, "layer-2 heads have no receiver after them"
    for (layer, h), share in got.items():
        later = [r for r in receivers if r[0] > layer]
        want = (metric(_wang(model, clean, corrupt, [(layer, h)], later, "v")).item() - base) / abs(base)
        assert share == pytest.approx(want, abs=1e-4)
    assert got[(1, 0)] == pytest.approx((metric(_wang(model, clean, corrupt, [(1, 0)], [(2, 1)], "v")).item() - base) / abs(base), abs=1e-4), \
        "a receiver is also a sender, into the receivers after it"
    assert any(abs(s) > 1e-3 for s in got.values()), "control: some path moves the metric"
    same = patching.path_effects(model, clean, clean, metric, [(0, 0), (1, 1)], None)
    assert all(abs(s) < 1e-5 for s in same.values()), "the same input on both sides moves nothing"
    with pytest.raises(ValueError, match="non-zero"):
        patching.path_effects(model, clean, corrupt, lambda logits: logits[:, -1, 3].mean() * 0, [(0, 0)])


def test_every_subset_and_the_shared_cache():
    circuit = [(1, 0), (0, 2), (2, 1)]
    subsets = patching.all_subsets(circuit)
    assert len(subsets) == 8 and subsets[0] == [] and sorted(subsets[-1]) == sorted(circuit)
    assert len({tuple(sorted(k)) for k in subsets}) == 8
    with pytest.raises(ValueError, match="max_heads"):
        patching.all_subsets([(0, h) for h in range(3)] + [(1, h) for h in range(3)], max_heads=5)
    model = _model()
    tokens, ref = _tokens(14, n=8), _tokens(15, n=8)
    means = patching.group_means(model, ref)
    metric = lambda logits: (logits[:, -1, 3] - logits[:, -1, 5]).mean()
    cache = {}
    comp = patching.completeness(model, tokens, metric, circuit, None, means, cache=cache)
    assert len(comp) == 8 and "none" in comp and "L0H2 L1H0 L2H1" in comp
    explicit = patching.completeness(model, tokens, metric, circuit, {"L0H2 L2H1": [(0, 2), (2, 1)]}, means)
    assert comp["L0H2 L2H1"] == pytest.approx(explicit["L0H2 L2H1"], abs=1e-6)
    assert cache[frozenset(circuit)] == pytest.approx(patching.performance(model, tokens, metric, circuit, means), abs=1e-6)
    n = len(cache)
    mini = patching.minimality(model, tokens, metric, circuit, None, means, cache=cache)
    assert len(cache) == n, "minimality over the circuit's subsets needs nothing completeness did not compute"
    by_hand = patching.minimality(model, tokens, metric, circuit, {v: patching.all_subsets([h for h in circuit if h != v])
                                                                  for v in circuit}, means)
    assert all(mini[v]["score"] == pytest.approx(by_hand[v]["score"], abs=1e-6) for v in circuit)
    with pytest.raises(ValueError, match="not in the circuit"):
        patching.minimality(model, tokens, metric, circuit, {(1, 1): [[]]}, means)


def test_performance_table_is_performance_for_every_set_of_heads_kept():
    """Every one of the 2 ** 9 sets of a 3-layer, 3-head attention-only HookedTransformer, with groups, equals a
    mean-ablated forward pass; the control: a metric that reads a position other than the last is refused, and so is a
    model with MLPs, where head outputs do not add up through the layers."""
    model = _model()
    tokens, ref = _tokens(16, n=12), _tokens(17, n=12)
    groups = torch.tensor([0, 1] * 6)
    means = patching.group_means(model, ref, groups)
    metric = lambda logits: (logits[:, -1, 3] - logits[:, -1, 5]).mean()
    cache = {}
    table = patching.performance_table(model, tokens, metric, means, groups, cache)
    heads = patching.all_heads(model)
    assert len(table) == 2 ** 9 and cache[None] == pytest.approx(float(metric(model(tokens))), abs=1e-6)
    gen = torch.Generator().manual_seed(0)
    for _ in range(12):
        keep = [h for h in heads if torch.rand((), generator=gen) < 0.5]
        assert table[frozenset(keep)] == pytest.approx(patching.performance(model, tokens, metric, keep, means, groups), abs=1e-5)
    assert patching.performance(model, tokens, metric, [(0, 1)], means, groups, cache) == table[frozenset([(0, 1)])]
    with pytest.raises(ValueError, match="positions other than the last"):
        patching.performance_table(model, tokens, lambda logits: logits[:, 0, 3].mean(), means, groups)
    with pytest.raises(ValueError, match="attention-only"):
        patching.performance_table(_model(attn_only=False), tokens, metric, patching.group_means(_model(attn_only=False), ref), None)
    with pytest.raises(ValueError, match="max_heads"):
        patching.performance_table(model, tokens, metric, means, groups, max_heads=8)
    with pytest.raises(ValueError, match="NaN"):
        patching.performance_table(model, tokens, lambda logits: logits[:, -1, 3].mean() * float("nan"), means, groups)
