"""glassbox.lens on models glassbox did not build: random HookedTransformers of other shapes, checked
against TransformerLens' own machinery and against hand-made attention patterns (off-by-one, axes)."""
import math

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from glassbox import lens, lm


def random_model(attn_only: bool = False, n_layers: int = 3, split_qkv: bool = False) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=24, n_heads=3, d_head=8, d_mlp=40, d_vocab=17,
                                  n_ctx=20, act_fn="gelu", attn_only=attn_only, normalization_type="LN", seed=3,
                                  use_split_qkv_input=split_qkv)
    model = HookedTransformer(cfg)
    with torch.no_grad():  # non-trivial biases and LayerNorm weights, so that a forgotten term shows
        for name, p in model.named_parameters():
            if name.endswith(("b_Q", "b_K", "b_V", "b_O", "b_U", ".w", ".b", "b_in", "b_out")):
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def run():
    model = random_model()
    tokens = torch.randint(0, 17, (4, 15), generator=torch.Generator().manual_seed(0))
    logits, cache = model.run_with_cache(tokens)
    return model, tokens, logits, cache


def test_logit_lens_last_layer_is_the_output_and_first_is_embeddings(run):
    model, tokens, logits, cache = run
    lensed = lens.logit_lens(model, cache)
    assert lensed.shape == (model.cfg.n_layers + 1, *logits.shape), "one row per layer input plus the final stream"
    torch.testing.assert_close(lensed[-1], logits, msg="the last row must be the model's own logits")
    embed_only = model.unembed(model.ln_final(model.embed(tokens) + model.pos_embed(tokens)))
    torch.testing.assert_close(lensed[0], embed_only, msg="row 0 must read the embeddings (no layer yet)")


def test_residual_components_sum_to_the_stream_and_match_transformer_lens(run):
    model, _, _, cache = run
    parts, labels = lens.residual_components(model, cache)
    assert len(labels) == len(parts) == 2 + model.cfg.n_layers * (model.cfg.n_heads + 2)
    torch.testing.assert_close(parts.sum(0), cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"], atol=1e-4, rtol=1e-4)
    heads_tl, labels_tl = cache.stack_head_results(layer=-1, return_labels=True)  # TL computes per-head results itself
    ours = torch.stack([parts[labels.index(label)] for label in labels_tl])
    torch.testing.assert_close(ours, heads_tl, atol=1e-5, rtol=1e-4, msg="per-head outputs differ from TL's: head axis?")
    assert lens.component_layers(labels)[:3] == [-1, -1, 0] and lens.component_layers(labels)[-1] == 2


def test_direct_logit_attribution_sums_to_the_target_logits(run):
    model, tokens, logits, cache = run
    parts, _ = lens.residual_components(model, cache)
    targets = tokens[:, 1:]
    dla = lens.direct_logit_attribution(model, cache, parts, targets)
    assert dla.shape == (len(parts), *targets.shape)
    expected = logits[:, :-1].gather(-1, targets[..., None])[..., 0] - lens.logit_bias(model)[targets]
    torch.testing.assert_close(dla.sum(0), expected, atol=1e-4, rtol=1e-4,
                               msg="components must sum to each target logit (minus the bias): position or axis mixed up?")
    rel = lens.direct_logit_attribution(model, cache, parts, targets, relative=True)
    centred, bias = logits[:, :-1] - logits[:, :-1].mean(-1, keepdim=True), lens.logit_bias(model)
    expected = centred.gather(-1, targets[..., None])[..., 0] - (bias - bias.mean())[targets]
    torch.testing.assert_close(rel.sum(0), expected, atol=1e-4, rtol=1e-4, msg="relative DLA: target minus mean logit")


def hand_patterns(n: int = 6) -> torch.Tensor:
    """Heads: 0 attends to the previous token, 1 to itself, 2 to position 0."""
    eye = torch.eye(n)
    prev = torch.zeros(n, n)
    prev[0, 0] = 1
    prev[torch.arange(1, n), torch.arange(n - 1)] = 1
    first = torch.zeros(n, n)
    first[:, 0] = 1
    return torch.stack([prev, eye, first])[None].expand(2, -1, -1, -1)


def test_pattern_scores_on_hand_made_heads():
    p = hand_patterns()
    torch.testing.assert_close(lens.previous_token_score(p), torch.tensor([1.0, 0.0, 0.2]))  # position 1 looks at 0
    torch.testing.assert_close(lens.current_token_score(p), torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(lens.first_token_score(p), torch.tensor([0.2, 0.0, 1.0]))
    torch.testing.assert_close(lens.mean_attention_distance(p), torch.tensor([5 / 6, 0.0, 2.5]))


def test_prefix_matching_score_is_one_for_an_induction_pattern_only():
    tokens = lens.repeated_tokens(3, 5, 1000, seed=1)  # large vocabulary: no accidental repeats
    n = tokens.shape[1]
    induction = torch.zeros(n, n)
    induction[:5, 0] = 1
    induction[torch.arange(5, n), torch.arange(1, 6)] = 1  # query 5 + i (token r_i) -> key i + 1 (after r_i)
    patterns = torch.stack([induction, hand_patterns(n)[0, 0]])[None].expand(3, -1, -1, -1)
    score = lens.prefix_matching_score(patterns, tokens)
    assert score[0] == pytest.approx(1.0), "an exact induction head must score 1 (off by one in induction_targets?)"
    assert score[1] == pytest.approx(0.0), "a previous-token head must score 0 on repeated random tokens"
    targets = lens.induction_targets(tokens)
    assert targets[0, 5, 1] == 1 and targets[0, 5, 0] == 0 and targets[0, 4].sum() == 0


def test_composition_scores_match_a_loop_and_find_a_planted_k_composition():
    model = random_model(attn_only=True, n_layers=2)
    ov, qk = lens.W_OV(model, 0), lens.W_QK(model, 1)
    k = lens.composition_scores(model, "k")
    for a in range(3):
        for b in range(3):
            direct = torch.linalg.norm(qk[b] @ ov[a].T) / (torch.linalg.norm(qk[b]) * torch.linalg.norm(ov[a]))
            assert k[a, b] == pytest.approx(direct.item(), rel=1e-4), f"K-composition of L0H{a} -> L1H{b} wrong"
    with torch.no_grad():  # make L1H2's keys read exactly what L0H1 writes (model.W_K is a stacked copy)
        model.blocks[1].attn.W_K[2] = model.blocks[0].attn.W_O[1].T
    k = lens.composition_scores(model, "k")
    assert k.argmax().item() == 1 * 3 + 2, f"planted pair (writer L0H1, reader L1H2) not the top score: {k}"
    assert k[1, 2] > 2 * lens.composition_baseline(model), "the planted composition should beat random matrices"
    random_scores = lens.random_composition_scores(model, n=50)
    assert random_scores.shape == (50,) and k[1, 2] > random_scores.max()
    q, v = lens.composition_scores(model, "q"), lens.composition_scores(model, "v")
    assert q.shape == v.shape == (3, 3)
    with pytest.raises(ValueError):
        lens.composition_scores(model, "x")


def test_path_patching_matches_transformer_lens_split_inputs():
    model = random_model(attn_only=True, n_layers=2, split_qkv=True)
    clean = torch.randint(0, 17, (3, 12), generator=torch.Generator().manual_seed(5))
    corrupt = torch.randint(0, 17, (3, 12), generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(lens.path_patch_logits(model, clean, clean, (0, 1), (1, 2)), model(clean),
                               msg="patching with the clean run itself must change nothing")
    _, cc = model.run_with_cache(clean)
    _, cx = model.run_with_cache(corrupt)
    delta = (cx["blocks.0.attn.hook_z"][:, :, 1] - cc["blocks.0.attn.hook_z"][:, :, 1]) @ model.W_O[0, 1]

    def k_input(x, hook):  # TL's own per-head key input: add the sender's change for receiver head 2 only
        x = x.clone()
        x[:, :, 2] = x[:, :, 2] + delta
        return x
    expected = model.run_with_hooks(clean, fwd_hooks=[("blocks.1.hook_k_input", k_input)])
    ours = lens.path_patch_logits(model, clean, corrupt, (0, 1), (1, 2), into="k")
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ours, model(clean)), "a real corruption should change the logits"
    torch.testing.assert_close(lens.path_patch_logits(model, clean, corrupt, (0, 1), [(1, 2)], into="k"), ours)

    def k_input_both(x, hook):  # receivers 0 and 2 together
        x = x.clone()
        x[:, :, [0, 2]] = x[:, :, [0, 2]] + delta[:, :, None]
        return x
    both = model.run_with_hooks(clean, fwd_hooks=[("blocks.1.hook_k_input", k_input_both)])
    torch.testing.assert_close(lens.path_patch_logits(model, clean, corrupt, (0, 1), [(1, 0), (1, 2)], into="k"), both,
                               atol=1e-4, rtol=1e-4, msg="a list of receivers must be patched together")
    with pytest.raises(ValueError):
        lens.path_patch_logits(model, clean, corrupt, (1, 0), (0, 1))


def test_head_ablation_changes_only_the_chosen_heads():
    model = random_model(attn_only=True, n_layers=2)
    tokens = torch.randint(0, 17, (2, 10))
    seen = {}
    hooks = lens.head_ablation_hooks([(0, 1)])
    model.run_with_hooks(tokens, fwd_hooks=hooks + [("blocks.0.attn.hook_z", lambda z, hook: seen.setdefault("z", z))])
    _, cache = model.run_with_cache(tokens)
    assert seen["z"][:, :, 1].abs().max() == 0, "head 1 of layer 0 should be zeroed"
    torch.testing.assert_close(seen["z"][:, :, [0, 2]], cache["blocks.0.attn.hook_z"][:, :, [0, 2]])
    means = lens.mean_z(cache, 2)
    assert means[0].shape == (10, 3, 8)
    out = model.run_with_hooks(tokens[:1], fwd_hooks=lens.head_ablation_hooks([(1, 0), (1, 2)], means))
    assert out.shape == (1, 10, 17)


def test_copy_losses_and_repeated_tokens():
    tokens = lens.repeated_tokens(4, 6, 50, seed=2)
    assert tokens.shape == (4, 12) and torch.equal(tokens[:, :6], tokens[:, 6:])
    losses = torch.arange(11.0)[None].expand(4, -1)  # loss i predicts token i + 1
    first, second = lens.copy_losses(losses, 6)
    assert first == pytest.approx(2.0), "first copy: losses 0..4 (tokens 1..5)"
    assert second == pytest.approx(8.0), "second copy: losses 6..10 (tokens 7..11), not the boundary token 6"


def test_copying_score_is_one_for_an_identity_ov_circuit():
    model = random_model(attn_only=True, n_layers=1)
    with torch.no_grad():
        model.blocks[0].attn.W_V[0] = torch.eye(24)[:, :8]
        model.blocks[0].attn.W_O[0] = torch.eye(24)[:8]
        model.unembed.W_U.copy_(model.embed.W_E.T)
    assert lens.copying_score(model, 0, 0) == pytest.approx(1.0, abs=1e-4)
    with torch.no_grad():
        model.blocks[0].attn.W_O[0] = -model.blocks[0].attn.W_O[0]
    assert lens.copying_score(model, 0, 0) == pytest.approx(-1.0, abs=1e-4)


def test_ngram_baselines_and_periodic_batches():
    gen = torch.Generator().manual_seed(0)
    uniform = torch.randint(0, 8, (20_000,), generator=gen)
    assert lm.ngram_loss(uniform, uniform, 8, 1) == pytest.approx(math.log(8), abs=0.01)
    cycle = torch.arange(20_000) % 8  # each token fixes the next: the bigram loss is near 0, the unigram log 8
    assert lm.ngram_loss(cycle, cycle, 8, 2) < 0.01 < math.log(8) - 0.01 < lm.ngram_loss(cycle, cycle, 8, 1)
    batch = next(lm.periodic_batches(16, 30, 50, 3, 9, seed=1))
    assert batch.shape == (16, 31)
    periods = [min(p for p in range(3, 10) if torch.equal(row[p:], row[:-p])) for row in batch]
    assert len(set(periods)) > 1, "periods should vary between sequences"


def test_repeated_word_spans_and_losses():
    text = "Then ROMEO spoke. And ROMEO left; then Juliet, who loved ROMEO."
    spans = lm.repeated_word_spans(text, n_ctx=41, min_len=4)
    assert [(f, s, n) for _, f, s, n in spans] == [(5, 22, 5), (22, 57, 5)], spans  # "Then"/"then" differ in case
    assert all(s + n - w <= 41 for w, _, s, n in spans)
    chars = sorted(set(text))
    tokens = torch.tensor([chars.index(c) for c in text])

    class Oracle(torch.nn.Module):  # knows the text: predicts every next character perfectly
        def forward(self, x):
            out = torch.full((*x.shape, len(chars)), -30.0)
            for b in range(len(x)):
                start = next(i for i in range(len(tokens)) if torch.equal(tokens[i: i + x.shape[1]], x[b]))
                nxt = tokens[start + 1: start + x.shape[1] + 1]
                out[b, torch.arange(len(nxt)), nxt] = 30.0
            return out
    losses = lm.repeated_span_losses(Oracle(), tokens, spans, n_ctx=41)
    assert losses.shape == (2, 2) and losses.max() < 1e-3, "indices off by one: the oracle's loss must be ~0"


def test_head_scores_are_per_layer_and_head_and_classes_follow_the_rules():
    model = random_model(attn_only=True, n_layers=2)
    tokens = lens.repeated_tokens(4, 9, 17, seed=3)
    scores = lens.head_scores(model, tokens)
    _, cache = model.run_with_cache(tokens)
    for layer in range(2):
        p = cache[f"blocks.{layer}.attn.hook_pattern"]
        torch.testing.assert_close(scores["previous-token"][layer], lens.previous_token_score(p))
        torch.testing.assert_close(scores["prefix-matching"][layer], lens.prefix_matching_score(p, tokens))
    fake = {k: torch.zeros(2, 3) for k in ("previous-token", "first-token", "current-token")}
    fake["previous-token"][0, 1] = 0.9
    fake["first-token"][1, 0] = 0.6
    fake["current-token"][0, 2] = 0.3  # below the threshold
    induction = torch.zeros(2, 3)
    induction[1, 2] = 0.9
    assert lens.classify_heads(fake, induction) == [["mixed", "previous-token", "mixed"],
                                                    ["first-token", "mixed", "induction"]]
