"""glassbox.transcoders on a tiny TransformerLens model with LayerNorm that glassbox did not build.

The differential test: every edge of the hand-written, batched attribution graph equals the Jacobian that autograd
computes through TransformerLens's own forward pass, with the attention patterns and LayerNorm scales frozen by hooks
and the transcoders' features fed in as leaves."""
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from glassbox import transcoders as T

D_VOCAB, POS = 11, 7


@pytest.fixture(scope="module")
def tiny():
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_mlp=32, d_vocab=D_VOCAB,
                                  act_fn="gelu", normalization_type="LN", seed=0)
    model = HookedTransformer(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4 + (1.0 if p.ndim == 1 and p.shape[0] == 16 else 0.0) * 0)
        for name, p in model.named_parameters():
            if name.endswith(".w"):  # LayerNorm gains near 1
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
    model.eval()
    tcs = {}
    for layer in range(2):
        tc = T.make_transcoder(16, 24, 4, layer=layer, seed=layer)
        with torch.no_grad():
            tc.b_enc.copy_(0.3 * torch.randn(24, generator=gen))
            tc.b_dec.copy_(0.1 * torch.randn(16, generator=gen))
        tcs[layer] = tc
    tokens = torch.randint(0, D_VOCAB, (POS,), generator=gen)
    return model, tcs, tokens


FROZEN = lambda n: "attn.hook_pattern" in n or n.endswith("hook_scale")


def frozen_function(model, tcs, tokens, target, freeze=FROZEN):
    """The frozen replacement model as a function of (embeddings, features of each layer, errors of each layer), built
    from TransformerLens hooks: the hooks `freeze` names (default: patterns and scales) replaced by their clean values,
    each MLP by decoder(leaf) + leaf."""
    _, cache = model.run_with_cache(tokens[None], names_filter=freeze)
    frozen = [(n, lambda x, hook, v=v: v) for n, v in cache.items()]

    def f(emb, f0, f1, e0, e1):
        leaves, xs = {0: (f0, e0), 1: (f1, e1)}, {}
        hooks = frozen + [("blocks.0.hook_resid_pre", lambda x, hook: emb[None])]
        for l, tc in tcs.items():
            hooks.append((T.IN_HOOK.format(layer=l), lambda x, hook, l=l: xs.__setitem__(l, x) or x))
            hooks.append((T.OUT_HOOK.format(layer=l), lambda x, hook, l=l, tc=tc: (leaves[l][0] @ tc.W_dec + tc.b_dec + leaves[l][1])[None]))
        logits = model.run_with_hooks(tokens[None], fwd_hooks=hooks)
        pres = [xs[l][0] @ tcs[l].W_enc + tcs[l].b_enc for l in range(2)]
        return torch.cat([pres[0].flatten(), pres[1].flatten(), T.demeaned_logit(logits[0, -1], target)[None]])
    return f


def jacobian_edges(model, tcs, tokens, graph, freeze=FROZEN):
    """The graph's adjacency as autograd computes it through `frozen_function` (edges: Jacobian times source value), and
    the function's values at the clean point (feature pre-activations, then the demeaned logit)."""
    _, cache = model.run_with_cache(tokens[None])
    emb = cache["blocks.0.hook_resid_pre"][0]
    fs = [tcs[l].encode(cache[T.IN_HOOK.format(layer=l)][0]).detach() for l in range(2)]
    es = [(cache[T.OUT_HOOK.format(layer=l)][0] - tcs[l].decode(fs[l])).detach() for l in range(2)]
    f = frozen_function(model, tcs, tokens, graph.target, freeze)
    inputs = (emb.detach(), fs[0], fs[1], es[0], es[1])
    with torch.no_grad():
        values = f(*inputs)
    n_tc = tcs[0].cfg.d_sae
    out_rows = [int(l * POS * n_tc + p * n_tc + j) for l, p, j in graph.features.tolist()] + [len(values) - 1]
    # only the rows of the graph's nodes (one backward pass each), not every transcoder latent's
    J = torch.autograd.functional.jacobian(lambda *x: f(*x)[out_rows], inputs)  # tuple over inputs of (n_nodes, *input_shape)
    expected = torch.zeros_like(graph.adjacency)
    for r, node in enumerate(list(range(graph.n_features)) + [graph.logit_index]):
        for s, (l, p, j) in enumerate(graph.features.tolist()):
            expected[node, s] = J[1 + l][r, p, j] * fs[l][p, j]
        for l in range(2):
            for p in range(POS):
                expected[node, graph.error_index(l, p)] = J[3 + l][r, p] @ es[l][p]
        for p in range(POS):
            expected[node, graph.embedding_index(p)] = J[0][r, p] @ emb[p]
    return expected, values[out_rows]


def test_every_edge_equals_the_autograd_jacobian_of_the_frozen_replacement_model(tiny):
    model, tcs, tokens = tiny
    graph = T.attribution_graph(model, tcs, tokens)
    expected, values = jacobian_edges(model, tcs, tokens, graph)
    assert graph.n_features > 10 and (expected.abs() > 1e-3).sum() > 50, "the tiny graph should have many non-zero edges"
    assert torch.allclose(graph.adjacency, expected, atol=1e-5, rtol=1e-4), \
        f"edges differ from the Jacobian by up to {(graph.adjacency - expected).abs().max():.2e}"
    chunked = T.attribution_graph(model, tcs, tokens, chunk=5)  # targets in chunks, each on its prefix of positions
    assert torch.allclose(chunked.adjacency, graph.adjacency, atol=1e-6), "chunking the targets must not change the edges"
    # the frozen model at the clean values gives the graph's node values (feature pre-activations and the logit)
    node_values = lambda v: torch.cat([v[: graph.n_features], v[-1:]])  # features' pre-activations and the logit
    assert torch.allclose(node_values(graph.values), values, atol=1e-5)
    # controls: the Jacobian with the attention patterns live, the LayerNorm scales live, or both, is another matrix,
    # and the graph's edges must not match it (so the comparison above tests the freezing, not only the weights)
    for live, freeze in (("patterns", lambda n: FROZEN(n) and "attn" not in n), ("scales", lambda n: FROZEN(n) and "scale" not in n),
                         ("patterns and scales", lambda n: False)):
        other, same_values = jacobian_edges(model, tcs, tokens, graph, freeze=freeze)
        assert torch.allclose(node_values(graph.values), same_values, atol=1e-5), "what is frozen at its clean value moves nothing"
        gap = (graph.adjacency - other).abs().max()
        assert gap > 1e-2, f"with the {live} live the Jacobian should differ from the graph's edges, differs by only {gap:.2e}"


def test_the_spliced_model_with_fixed_errors_is_the_clean_model_and_ablation_moves_it(tiny):
    model, tcs, tokens = tiny
    errors = T.errors_of(model, tcs, tokens[None])
    clean = model(tokens[None])
    spliced = model.run_with_hooks(tokens[None], fwd_hooks=T.splice_hooks(tcs, errors=errors))
    assert torch.allclose(clean, spliced, atol=1e-5)
    without_errors = model.run_with_hooks(tokens[None], fwd_hooks=T.splice_hooks(tcs))
    assert not torch.allclose(clean, without_errors, atol=1e-3), "untrained transcoders without errors should change the output"
    graph = T.attribution_graph(model, tcs, tokens)
    effects = T.ablation_effects(model, tcs, tokens, graph.target, graph.features)
    assert effects.shape == (graph.n_features,) and effects.abs().max() > 1e-3


def test_gradient_x_activation_and_total_effects_match_small_ablations(tiny):
    """For a tiny push (scale a feature by 1 - eps), the live effect / eps equals gradient x activation; the graph's
    total effect equals it too once attention and LayerNorm are frozen, so on this model they need not agree: check the
    graph only against its own frozen linearisation (the sum over paths), computed here by brute force."""
    model, tcs, tokens = tiny
    graph = T.attribution_graph(model, tcs, tokens)
    gxa = T.gradient_x_activation(model, tcs, tokens, graph.target, graph.features)
    errors = T.errors_of(model, tcs, tokens[None])
    eps = 1e-3
    base = T.demeaned_logit(model.run_with_hooks(tokens[None], fwd_hooks=T.splice_hooks(tcs, errors=errors))[0, -1], graph.target)
    for s in range(min(6, graph.n_features)):
        l, p, j = graph.features[s].tolist()
        mask = {l: torch.ones(1, POS, tcs[l].cfg.d_sae)}
        mask[l][0, p, j] = 1 - eps
        moved = T.demeaned_logit(model.run_with_hooks(tokens[None], fwd_hooks=T.splice_hooks(tcs, errors=errors, masks=mask))[0, -1], graph.target)
        assert ((moved - base) / eps).item() == pytest.approx(gxa[s].item(), abs=2e-3, rel=2e-2)
    # total effects = -a * (direct + paths through features): the path sum by hand on this two-layer graph
    A, a, n_f = graph.adjacency, graph.activations, graph.n_features
    M = A[:, :n_f] / a
    by_hand = -a * (M[-1] + M[-1] @ M[:n_f] + M[-1] @ M[:n_f] @ M[:n_f])
    assert torch.allclose(T.total_effects(graph), by_hand, atol=1e-6)


def test_influence_sums_paths_and_pruning_keeps_the_logit_and_embeddings():
    # a chain e -> f -> logit plus a direct e -> logit: normalised shares 0.5/0.5 at the logit, 1 at f
    A = torch.zeros(3, 3)  # nodes: f (0), e (1), logit (2)
    A[0, 1], A[2, 0], A[2, 1] = 2.0, 3.0, -3.0
    w = torch.tensor([0.0, 0.0, 1.0])
    assert torch.allclose(T.influence(A, w), torch.tensor([0.5, 1.0, 0.0]))
    g = T.Graph(torch.tensor([0]), 0, torch.tensor([[0, 0, 0]]), torch.tensor([1.0]), torch.zeros(4, 4), torch.zeros(4), 1)
    g.adjacency[0, 2] = 1.0  # nodes: feature, error, embedding, logit; embedding -> feature
    g.adjacency[3, 0], g.adjacency[3, 1] = 1.0, 0.01  # feature and error -> logit
    pruned = T.prune(g, node_share=0.9)
    assert pruned.nodes.tolist() == [True, False, True, True], "the weak error node goes; embeddings and the logit stay"
    assert pruned.edges[3, 0] and pruned.edges[0, 2] and not pruned.edges[3, 1]
    scores = T.graph_scores(g)
    assert 0.9 < scores["replacement"] < 1 and 0.9 < scores["completeness"] < 1
    # circuit-tracer's incoming-edge rule: a feature that feeds the logit but receives no kept edge is dropped
    h = T.Graph(torch.tensor([0]), 0, torch.tensor([[0, 0, 0], [0, 0, 1]]), torch.ones(2), torch.zeros(5, 5), torch.zeros(5), 1)
    h.adjacency[0, 3] = 1.0  # nodes: feature 0, feature 1, error, embedding, logit; embedding -> feature 0
    h.adjacency[4, 0], h.adjacency[4, 1] = 1.0, 2.0  # both features -> logit; feature 1 has no input
    pruned = T.prune(h, node_share=1.0)
    assert pruned.nodes.tolist() == [True, False, False, True, True] and pruned.node_influence[1] > pruned.node_influence[0]
    g.adjacency[3, 1] = 100.0  # the error dominates: both scores fall
    scores = T.graph_scores(g)
    assert scores["replacement"] < 0.1 and scores["completeness"] < 0.2
    # circuit-tracer's completeness also averages over the sources, each counted as wholly explained (its row is empty):
    # error 100/101 and embedding 1/101 of influence at share 1, the feature 1/101 at 1, the logit 1 at 1/101
    assert scores["completeness_circuit_tracer"] == pytest.approx(103 / 203, abs=1e-6)


def test_training_learns_a_sparse_map_and_beats_its_untrained_start():
    gen = torch.Generator().manual_seed(0)
    W_in, W_out = torch.randn(16, 64, generator=gen), torch.randn(64, 16, generator=gen) / 8

    def batches():
        while True:
            x = torch.randn(256, 16, generator=gen)
            yield x, torch.relu(x @ W_in - 2.0) @ W_out
    x, y = next(batches())
    tc = T.make_transcoder(16, 128, 8, seed=0)
    before = T.normalized_mse(y, tc(x).detach())
    result = T.train_transcoder(tc, batches(), steps=300, lr=3e-3)
    after = T.normalized_mse(y, result.transcoder(x).detach())
    assert after < 0.3 < before, f"normalised MSE {before:.3f} -> {after:.3f}"
    assert (result.transcoder.encode(x) > 0).sum(-1).max() <= 8, "TopK keeps at most k features"


def test_bad_input_is_refused_with_the_argument_named(tiny):
    model, tcs, tokens = tiny
    with pytest.raises(ValueError, match="tokens"):
        T.attribution_graph(model, tcs, tokens[None])
    with pytest.raises(ValueError, match="target"):
        T.attribution_graph(model, tcs, tokens, target=D_VOCAB)
    with pytest.raises(ValueError, match="every layer"):
        T.attribution_graph(model, {0: tcs[0]}, tokens)
    with pytest.raises(ValueError, match="k"):
        T.make_transcoder(16, 8, 9)
    with pytest.raises(TypeError, match="TransformerLens"):
        T.attribution_graph(torch.nn.Linear(2, 2), tcs, tokens)


@pytest.mark.parametrize("estimate", ["ablation_effects", "gradient_x_activation"])
def test_in_the_graphs_frozen_regime_a_top_layer_feature_moves_the_logit_as_the_graph_predicts(tiny, estimate):
    """A top-layer feature reaches the logit linearly once every pattern and LayerNorm scale is frozen: switching it off
    (ablation_effects) and attribution patching's estimate (gradient_x_activation) both equal the graph's total effect;
    live (the control) the final LayerNorm's scale moves too."""
    measure = getattr(T, estimate)
    model, tcs, tokens = tiny
    graph = T.attribution_graph(model, tcs, tokens)
    top = torch.nonzero(graph.features[:, 0] == 1).squeeze(1)
    predicted = T.total_effects(graph)[top]
    frozen = measure(model, tcs, tokens, graph.target, graph.features[top], freeze=T.frozen_names(2))
    live = measure(model, tcs, tokens, graph.target, graph.features[top])
    assert torch.allclose(frozen, predicted, atol=1e-5), f"frozen {estimate} differs from the graph by {(frozen - predicted).abs().max():.2e}"
    assert not torch.allclose(live, predicted, atol=1e-3), f"live {estimate} should differ from the frozen linearisation"
    at_last = graph.features[top, 1] == POS - 1  # at the last position only the final LayerNorm lies downstream
    final_ln = measure(model, tcs, tokens, graph.target, graph.features[top][at_last], freeze=["ln_final.hook_scale"])
    assert torch.allclose(final_ln, predicted[at_last], atol=1e-5)
    with pytest.raises(ValueError, match="freeze"):
        measure(model, tcs, tokens, graph.target, graph.features[top], freeze=["blocks.0.hook_resid_pre"])


def test_a_null_transcoder_leaves_everything_to_the_error_nodes(tiny):
    """Transcoders that never fire and write nothing: the graph has no features, and only the embeddings' direct paths
    count towards the scores (their floor)."""
    model, tcs, tokens = tiny
    null = {}
    for layer in range(2):
        tc = T.make_transcoder(16, 24, 4, layer=layer, seed=layer)
        with torch.no_grad():
            tc.W_enc.zero_()
            tc.b_enc.fill_(-1.0)
            tc.W_dec.zero_()
        null[layer] = tc
    graph = T.attribution_graph(model, null, tokens)
    assert graph.n_features == 0
    errors = T.errors_of(model, null, tokens[None])
    _, cache = model.run_with_cache(tokens[None])
    assert torch.allclose(errors[1], cache["blocks.1.hook_mlp_out"]), "every MLP output is in the error nodes"
    scores = T.graph_scores(graph)
    trained_like = T.graph_scores(T.attribution_graph(model, tcs, tokens))
    assert scores["replacement"] == pytest.approx(scores["completeness"], abs=1e-6), "with only the logit left, both are its share"
    assert 0 < scores["replacement"] < trained_like["replacement"]


@pytest.fixture(scope="module")
def tiny_bridge(tiny):
    """The tiny model's configuration as a TransformerBridge (the journal's kind of model), random weights, the same
    transcoders. On a bridge, holding `hook_pattern` is a no-op (TransformerLens 3.9)."""
    from transformer_lens.model_bridge import TransformerBridge
    _, tcs, tokens = tiny
    model = TransformerBridge.boot_native(dict(n_layers=2, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_mlp=32, d_vocab=D_VOCAB,
                                               act_fn="gelu", normalization_type="LN", seed=0))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen) if name.endswith(("ln1.weight", "ln2.weight", "ln_final.weight", ".w"))
                    else 0.4 * torch.randn(p.shape, generator=gen))
    return model.eval(), tcs, tokens


def test_on_a_bridge_total_effects_equal_the_exact_derivative_of_the_all_frozen_model_for_every_feature(tiny_bridge):
    """Every feature, layer 0 included (its paths cross attention): the graph's total effect is the gradient x activation
    of the replacement model with everything `frozen_names` names frozen, and freezing the patterns changes that
    gradient (so the equality is not one of two live runs)."""
    model, tcs, tokens = tiny_bridge
    graph = T.attribution_graph(model, tcs, tokens)
    predicted = T.total_effects(graph)
    frozen = T.gradient_x_activation(model, tcs, tokens, graph.target, graph.features, freeze=T.frozen_names(2))
    assert torch.allclose(frozen, predicted, atol=1e-5)
    scales_only = [n for n in T.frozen_names(2) if "hook_pattern" not in n]
    live_patterns = T.gradient_x_activation(model, tcs, tokens, graph.target, graph.features, freeze=scales_only)
    f0 = graph.features[:, 0] == 0
    assert (live_patterns[f0] - predicted[f0]).abs().max() > 1e-3  # control: with attention live, layer 0 differs
    small = T.ablation_effects(model, tcs, tokens, graph.target, graph.features[f0][:3], freeze=T.frozen_names(2))
    assert small.abs().max() > 0
