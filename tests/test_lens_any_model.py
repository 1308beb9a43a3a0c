"""glassbox.lens on the models people use, none built by glassbox: HookedTransformers and TransformerBridges
with LayerNorm, without (normalization_type=None), with LNPre and RMS, with rotary positions, with one layer,
attention-only and with MLPs; and a Hugging Face GPT-2 (random weights, built offline from a GPT2Config)
wrapped in a TransformerBridge, where every tool is checked against a computation on the HF model itself.
Tools that cannot apply (composition on one layer) must say what they need. Tensors the tools create
follow the model's dtype (float64, bfloat16)."""
import copy
import warnings

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources import build_bridge_from_module
from transformers import GPT2Config, GPT2LMHeadModel

from glassbox import lens

D_VOCAB = 17
BASE = dict(n_layers=2, d_model=24, n_heads=3, d_head=8, d_mlp=40, d_vocab=D_VOCAB, n_ctx=20, act_fn="gelu",
            normalization_type="LN", seed=3)
VARIANTS = {  # name -> config changes from BASE
    "LN": {}, "no LayerNorm": dict(normalization_type=None), "LNPre": dict(normalization_type="LNPre"),
    "RMS": dict(normalization_type="RMS"), "rotary": dict(positional_embedding_type="rotary"),
    "1 layer": dict(n_layers=1), "attention-only": dict(attn_only=True),
    "1 layer, attention-only, no LayerNorm": dict(n_layers=1, attn_only=True, normalization_type=None),
}
KINDS = ("HookedTransformer", "TransformerBridge")
CASES = [(kind, variant) for kind in KINDS for variant in VARIANTS]


def perturbed(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Non-trivial biases and LayerNorm weights (they start at 0 and 1), so that a forgotten term shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=gen).to(p.dtype))
    return model.eval()


def build(kind: str, variant: str) -> torch.nn.Module:
    cfg = {**BASE, **VARIANTS[variant]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(HookedTransformerConfig(**cfg)) if kind == "HookedTransformer" else \
            TransformerBridge.boot_native(cfg)
    return perturbed(model)


_MODELS: dict = {}


@pytest.fixture(params=CASES, ids=[f"{k}-{v}" for k, v in CASES])
def run(request):
    """(model, tokens, logits, cache) for one kind and variant, built once per test session."""
    if request.param not in _MODELS:
        model = build(*request.param)
        tokens = torch.randint(0, D_VOCAB, (3, 12), generator=torch.Generator().manual_seed(0))
        logits, cache = model.run_with_cache(tokens)
        _MODELS[request.param] = model, tokens, logits, cache
    return _MODELS[request.param]


def target_logits(logits, tokens):
    return logits[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]


# ---- every kind and variant -------------------------------------------------------------------------

def test_logit_lens_last_row_is_the_output(run):
    model, tokens, logits, cache = run
    lensed = lens.logit_lens(model, cache)
    assert lensed.shape == (model.cfg.n_layers + 1, *logits.shape)
    torch.testing.assert_close(lensed[-1], logits, atol=1e-5, rtol=1e-5,
                               msg="the last row must be the model's logits (final LayerNorm applied, or none)")
    final = lens.unembed(model, cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"])
    torch.testing.assert_close(final, logits, atol=1e-5, rtol=1e-5)


def test_components_sum_to_the_stream_and_dla_to_the_logits(run):
    model, tokens, logits, cache = run
    parts, labels = lens.residual_components(model, cache)
    assert ("pos_embed" in labels) == (model.cfg.positional_embedding_type == "standard"), \
        "rotary positions never enter the residual stream: no pos_embed part"
    per_layer = model.cfg.n_heads + 1 + (0 if model.cfg.attn_only else 1)
    assert len(labels) == len(parts) == (2 if "pos_embed" in labels else 1) + model.cfg.n_layers * per_layer
    assert lens.component_layers(labels)[-1] == model.cfg.n_layers - 1
    torch.testing.assert_close(parts.sum(0), cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"],
                               atol=1e-4, rtol=1e-4, msg="the parts must sum to the final residual stream")
    dla = lens.direct_logit_attribution(model, cache, parts, tokens[:, 1:])
    expected = target_logits(logits, tokens) - lens.logit_bias(model)[tokens[:, 1:]]
    torch.testing.assert_close(dla.sum(0), expected, atol=1e-4, rtol=1e-4,
                               msg="DLA must sum to the target logit minus the bias (RMS weight? centring?)")


def test_head_scores_and_copying_score_run_on_every_model(run):
    model, tokens, _, cache = run
    scores = lens.head_scores(model, tokens)
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    assert all(s.shape == shape and torch.isfinite(s).all() for s in scores.values())
    torch.testing.assert_close(scores["previous-token"][0], lens.previous_token_score(cache["blocks.0.attn.hook_pattern"]))
    assert -1 <= lens.copying_score(model, model.cfg.n_layers - 1, 0) <= 1


def test_composition_and_path_patching_need_two_layers(run):
    model, tokens, logits, _ = run
    if model.cfg.n_layers == 1:
        for tool in (lambda: lens.composition_scores(model, "k"),
                     lambda: lens.path_patch_logits(model, tokens, tokens, (0, 0), (0, 1))):
            with pytest.raises(ValueError, match="needs two layers.*the model has 1 layer$"):
                tool()
        return
    assert lens.composition_scores(model, "k").shape == (model.cfg.n_heads, model.cfg.n_heads)
    torch.testing.assert_close(lens.path_patch_logits(model, tokens, tokens, (0, 1), (1, 2)), logits,
                               msg="patching with the clean run itself must change nothing")
    corrupt = tokens.roll(1, 0)
    assert not torch.allclose(lens.path_patch_logits(model, tokens, corrupt, (0, 1), (1, 2)), logits)


@pytest.mark.parametrize("variant", ["no LayerNorm", "rotary", "RMS"])
@pytest.mark.parametrize("into", ["q", "k", "v"])
def test_path_patching_matches_transformer_lens_split_inputs(variant, into):
    """TransformerLens' own per-head inputs (use_split_qkv_input) give the same patched run; with rotary positions
    the patched q/k are the ones before the rotation, as the model's hook_q/hook_k are."""
    cfg = {**BASE, **VARIANTS[variant], "use_split_qkv_input": True}
    model = perturbed(HookedTransformer(HookedTransformerConfig(**cfg)))
    clean = torch.randint(0, D_VOCAB, (3, 12), generator=torch.Generator().manual_seed(5))
    corrupt = torch.randint(0, D_VOCAB, (3, 12), generator=torch.Generator().manual_seed(6))
    _, cc = model.run_with_cache(clean)
    _, cx = model.run_with_cache(corrupt)
    delta = (cx["blocks.0.attn.hook_z"][:, :, 1] - cc["blocks.0.attn.hook_z"][:, :, 1]) @ model.W_O[0, 1]

    def split_input(x, hook):  # add the sender's change to receiver head 2's input only
        x = x.clone()
        x[:, :, 2] = x[:, :, 2] + delta
        return x
    expected = model.run_with_hooks(clean, fwd_hooks=[(f"blocks.1.hook_{into}_input", split_input)])
    ours = lens.path_patch_logits(model, clean, corrupt, (0, 1), (1, 2), into=into)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_path_patching_refuses_shortformer_positions():
    model = HookedTransformer(HookedTransformerConfig(**{**BASE, "positional_embedding_type": "shortformer"}))
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="shortformer"):
        lens.path_patch_logits(model, tokens, tokens, (0, 0), (1, 0))


# ---- a Hugging Face GPT-2 through TransformerBridge, checked against the HF model ------------------

N_LAYER, D, N_HEAD, VOCAB = 2, 32, 4, 40
DH = D // N_HEAD


@pytest.fixture(scope="module")
def gpt2():
    """(hf, bridge): a GPT-2 from its config with random weights and LayerNorms, no download, and a
    TransformerBridge around an exact copy of it. build_bridge_from_module (TransformerLens 3.9) swaps the
    wrapped model's submodules for bridge components in place (its attentions then stop answering
    output_attentions), so `hf` is kept apart as the untouched reference."""
    config = GPT2Config(n_layer=N_LAYER, n_embd=D, n_head=N_HEAD, n_positions=24, vocab_size=VOCAB, n_inner=64,
                        attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, attn_implementation="eager")
    torch.manual_seed(0)
    hf = perturbed(GPT2LMHeadModel(config))  # GPT-2 starts its biases at 0 and LayerNorms at 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = build_bridge_from_module(copy.deepcopy(hf), "GPT2LMHeadModel", hf_config=config)
    return hf, bridge


def hf_run(hf, tokens):
    """The HF model's own forward pass, opened with PyTorch hooks: logits, attention patterns, each block's
    input, each layer's concatenated head outputs z (c_proj's input) and the final LayerNorm's input."""
    seen, handles = {}, []
    for layer, block in enumerate(hf.transformer.h):
        handles.append(block.register_forward_pre_hook(lambda m, a, layer=layer: seen.__setitem__(f"in{layer}", a[0])))
        handles.append(block.attn.c_proj.register_forward_pre_hook(
            lambda m, a, layer=layer: seen.__setitem__(f"z{layer}", a[0])))
    handles.append(hf.transformer.ln_f.register_forward_pre_hook(lambda m, a: seen.__setitem__("final", a[0])))
    try:
        with torch.no_grad():
            out = hf(tokens, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    return out.logits, out.attentions, seen


@pytest.fixture(scope="module")
def gpt2_run(gpt2):
    hf, bridge = gpt2
    tokens = torch.randint(0, VOCAB, (3, 14), generator=torch.Generator().manual_seed(0))
    logits, cache = bridge.run_with_cache(tokens)
    return tokens, logits, cache, hf_run(hf, tokens)


def test_bridge_output_and_attention_patterns_are_the_hf_models(gpt2, gpt2_run):
    tokens, logits, cache, (hf_logits, hf_attn, _) = gpt2_run
    torch.testing.assert_close(logits, hf_logits)
    for layer in range(N_LAYER):
        torch.testing.assert_close(cache[f"blocks.{layer}.attn.hook_pattern"], hf_attn[layer],
                                   msg=f"layer {layer}: the bridge's pattern must be HF's output_attentions")


def test_logit_lens_is_hf_ln_f_and_lm_head_on_each_block_input(gpt2, gpt2_run):
    hf, bridge = gpt2
    tokens, _, cache, (hf_logits, _, seen) = gpt2_run
    lensed = lens.logit_lens(bridge, cache)
    with torch.no_grad():
        for layer in range(N_LAYER):
            manual = hf.lm_head(hf.transformer.ln_f(seen[f"in{layer}"]))
            torch.testing.assert_close(lensed[layer], manual, atol=1e-5, rtol=1e-5, msg=f"row {layer}")
    torch.testing.assert_close(lensed[-1], hf_logits, atol=1e-5, rtol=1e-5, msg="the last row must be HF's logits")


def test_head_outputs_and_direct_logit_attribution_match_hf(gpt2, gpt2_run):
    """Per head: z_h @ c_proj.weight[h rows], then HF's ln_f by hand with the scale of the whole final stream
    (the convention direct_logit_attribution documents): centred, divided by sqrt(var + eps), times ln_f.weight,
    read by the tied unembedding. The parts plus ln_f.bias @ W_U (+ b_U = 0) are HF's logits."""
    hf, bridge = gpt2
    tokens, _, cache, (hf_logits, _, seen) = gpt2_run
    parts, labels = lens.residual_components(bridge, cache)
    targets = tokens[:, 1:]
    dla = lens.direct_logit_attribution(bridge, cache, parts, targets)
    ln_f, W_E = hf.transformer.ln_f, hf.transformer.wte.weight
    final = seen["final"][:, :-1]
    scale = (final.var(-1, unbiased=False, keepdim=True) + ln_f.eps).sqrt()
    direction = ln_f.weight[None, None] * W_E[targets]  # batch n d_model
    with torch.no_grad():
        for layer in range(N_LAYER):
            W_O = hf.transformer.h[layer].attn.c_proj.weight  # d_model (heads x d_head) -> d_model
            for h in range(N_HEAD):
                out = seen[f"z{layer}"][..., h * DH:(h + 1) * DH] @ W_O[h * DH:(h + 1) * DH]
                i = labels.index(f"L{layer}H{h}")
                torch.testing.assert_close(parts[i], out, atol=1e-5, rtol=1e-4, msg=f"L{layer}H{h}'s output")
                x = out[:, :-1] - out[:, :-1].mean(-1, keepdim=True)
                manual = (x / scale * direction).sum(-1)
                torch.testing.assert_close(dla[i], manual, atol=1e-5, rtol=1e-4, msg=f"L{layer}H{h}'s DLA")
    bias = ln_f.bias @ W_E.T
    total = dla.sum(0) + bias[targets]
    torch.testing.assert_close(total, target_logits(hf_logits, tokens), atol=1e-4, rtol=1e-4,
                               msg="the parts plus ln_f.bias @ W_U must be HF's logit of each target")
    torch.testing.assert_close(lens.logit_bias(bridge), bias, atol=1e-5, rtol=1e-5)


def test_head_scores_match_hf_attentions_by_hand(gpt2):
    """Previous-token and prefix-matching (induction) scores on repeated random tokens, from HF's attentions
    with plain loops."""
    hf, bridge = gpt2
    length = 8
    tokens = lens.repeated_tokens(4, length, VOCAB, seed=2)
    _, hf_attn, _ = hf_run(hf, tokens)
    scores = lens.head_scores(bridge, tokens)
    n = tokens.shape[1]
    for layer in range(N_LAYER):
        a = hf_attn[layer]  # batch head q k
        prev = torch.stack([a[:, :, q, q - 1] for q in range(1, n)], -1).mean((0, -1))
        torch.testing.assert_close(scores["previous-token"][layer], prev, atol=1e-6, rtol=1e-5)
        mass, count = torch.zeros(N_HEAD), 0
        for b in range(len(tokens)):
            for q in range(n):
                keys = [k for k in range(1, q) if tokens[b, k - 1] == tokens[b, q]]
                if keys:
                    mass, count = mass + a[b, :, q, keys].sum(-1), count + 1
        torch.testing.assert_close(scores["prefix-matching"][layer], mass / count, atol=1e-6, rtol=1e-5)


def hf_heads(hf, layer):
    """W_Q, W_K, W_V [head d_model d_head] and W_O [head d_head d_model] of an HF GPT-2 layer, by hand."""
    attn = hf.transformer.h[layer].attn
    W_q, W_k, W_v = attn.c_attn.weight.split(D, dim=1)  # Conv1D: x @ weight
    per_head = lambda W: W.reshape(D, N_HEAD, DH).permute(1, 0, 2)
    return per_head(W_q), per_head(W_k), per_head(W_v), attn.c_proj.weight.reshape(N_HEAD, DH, D)


@torch.no_grad()
def test_copying_and_composition_scores_match_hf_weights(gpt2):
    hf, bridge = gpt2
    W_E = hf.transformer.wte.weight
    for layer in range(N_LAYER):
        _, _, W_V, W_O = hf_heads(hf, layer)
        for h in range(N_HEAD):
            eig = torch.linalg.eigvals(W_E @ W_V[h] @ W_O[h] @ W_E.T)
            assert lens.copying_score(bridge, layer, h) == pytest.approx((eig.sum().real / eig.abs().sum()).item(),
                                                                          rel=1e-3, abs=1e-4)
    _, _, W_V0, W_O0 = hf_heads(hf, 0)
    W_Q1, W_K1, _, _ = hf_heads(hf, 1)
    k = lens.composition_scores(bridge, "k")
    for a in range(N_HEAD):
        for b in range(N_HEAD):
            ov, qk = W_V0[a] @ W_O0[a], W_Q1[b] @ W_K1[b].T
            manual = torch.linalg.norm(qk @ ov.T) / (torch.linalg.norm(qk) * torch.linalg.norm(ov))
            assert k[a, b] == pytest.approx(manual.item(), rel=1e-4), f"K-composition L0H{a} -> L1H{b}"


@torch.no_grad()
@pytest.mark.parametrize("into", ["q", "k", "v"])
def test_path_patching_matches_a_manual_patch_of_the_hf_model(gpt2, into):
    """On HF: the sender's output change (from c_proj's inputs on both runs) added to the receiver block's input,
    through ln_1 and c_attn, replaces only the receiver head's slice of q, k or v; the rest of the clean run stays."""
    hf, bridge = gpt2
    clean = torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(5))
    corrupt = torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(6))
    (ls, hs), (lr, hr) = (0, 1), (1, 2)
    _, _, seen_clean = hf_run(hf, clean)
    _, _, seen_corrupt = hf_run(hf, corrupt)
    W_O = hf.transformer.h[ls].attn.c_proj.weight[hs * DH:(hs + 1) * DH]
    delta = (seen_corrupt[f"z{ls}"] - seen_clean[f"z{ls}"])[..., hs * DH:(hs + 1) * DH] @ W_O
    block = hf.transformer.h[lr]
    patched = block.attn.c_attn(block.ln_1(seen_clean[f"in{lr}"] + delta))
    cols = slice({"q": 0, "k": D, "v": 2 * D}[into] + hr * DH, {"q": 0, "k": D, "v": 2 * D}[into] + (hr + 1) * DH)

    ours = lens.path_patch_logits(bridge, clean, corrupt, (ls, hs), (lr, hr), into=into)
    assert_matches_a_hand_patch(ours, hf, block.attn.c_attn, cols, patched, clean)


# ---- other Hugging Face architectures through TransformerBridge --------------------------------------

def hf_llama(n_kv_heads: int = N_HEAD):
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=D, intermediate_size=64, num_hidden_layers=N_LAYER,
                         num_attention_heads=N_HEAD, num_key_value_heads=n_kv_heads, max_position_embeddings=24,
                         attn_implementation="eager")
    return LlamaForCausalLM(config), "LlamaForCausalLM"


def hf_neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    config = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=D, intermediate_size=64, num_hidden_layers=N_LAYER,
                           num_attention_heads=N_HEAD, max_position_embeddings=24, attn_implementation="eager")
    return GPTNeoXForCausalLM(config), "GPTNeoXForCausalLM"


ARCHITECTURES = {"Llama (RMS, rotary, no biases, gated MLP)": hf_llama,
                 "GPT-NeoX (rotary, parallel attention and MLP)": hf_neox}


@pytest.fixture(scope="module", params=list(ARCHITECTURES), ids=["llama", "neox"])
def other_hf(request):
    """(hf, bridge, tokens): an untouched HF model from its config (random weights, perturbed norms and biases)
    and a bridge around a copy of it."""
    torch.manual_seed(0)
    hf, architecture = ARCHITECTURES[request.param]()
    hf = perturbed(hf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = build_bridge_from_module(copy.deepcopy(hf), architecture, hf_config=hf.config)
    return hf, bridge, torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_lens_on_other_hf_architectures_matches_the_hf_model(other_hf):
    """Logit lens, components and DLA, attention patterns and path patching on bridges whose positions are
    rotary, whose norm is RMS or whose attention has no biases, against the HF model's own outputs."""
    hf, bridge, tokens = other_hf
    out = hf(tokens, output_attentions=True)
    logits, cache = bridge.run_with_cache(tokens)
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lens.logit_lens(bridge, cache)[-1], out.logits, atol=1e-5, rtol=1e-5)
    for layer in range(N_LAYER):
        torch.testing.assert_close(cache[f"blocks.{layer}.attn.hook_pattern"], out.attentions[layer])
    parts, labels = lens.residual_components(bridge, cache)
    assert "pos_embed" not in labels, "rotary positions never enter the residual stream"
    torch.testing.assert_close(parts.sum(0), cache[f"blocks.{N_LAYER - 1}.hook_resid_post"], atol=1e-5, rtol=1e-4)
    dla = lens.direct_logit_attribution(bridge, cache, parts, tokens[:, 1:])
    torch.testing.assert_close(dla.sum(0) + lens.logit_bias(bridge)[tokens[:, 1:]], target_logits(out.logits, tokens),
                               atol=1e-4, rtol=1e-4, msg="DLA plus the bias must be HF's logit of each target")
    torch.testing.assert_close(lens.path_patch_logits(bridge, tokens, tokens, (0, 1), (1, 2)), out.logits,
                               atol=1e-5, rtol=1e-5)
    assert lens.head_scores(bridge, tokens)["previous-token"].shape == (N_LAYER, N_HEAD)


@torch.no_grad()
@pytest.mark.parametrize("into", ["q", "k", "v"])
def test_path_patching_matches_a_manual_patch_of_hf_llama(into):
    """Llama: rotary positions (applied after q_proj/k_proj, as after the bridge's hook_q/hook_k), RMSNorm, no
    biases. By hand on HF: the sender's change (o_proj's inputs) added to the receiver layer's input, through
    input_layernorm and q/k/v_proj, replaces only the receiver head's slice."""
    torch.manual_seed(0)
    hf, architecture = hf_llama()
    hf = perturbed(hf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = build_bridge_from_module(copy.deepcopy(hf), architecture, hf_config=hf.config)
    clean = torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(5))
    corrupt = torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(6))
    (ls, hs), (lr, hr) = (0, 1), (1, 2)
    layers = hf.model.layers

    def inputs(tokens):
        seen = {}
        handles = [layers[lr].register_forward_pre_hook(lambda m, a, kw: seen.__setitem__("in", a[0] if a else
                                                         kw["hidden_states"]), with_kwargs=True),
                   layers[ls].self_attn.o_proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("z", a[0]))]
        hf(tokens)
        for h in handles:
            h.remove()
        return seen
    seen_clean, seen_corrupt = inputs(clean), inputs(corrupt)
    W_O = layers[ls].self_attn.o_proj.weight[:, hs * DH:(hs + 1) * DH]  # nn.Linear: x @ weight.T
    delta = (seen_corrupt["z"] - seen_clean["z"])[..., hs * DH:(hs + 1) * DH] @ W_O.T
    proj = getattr(layers[lr].self_attn, f"{into}_proj")
    patched = proj(layers[lr].input_layernorm(seen_clean["in"] + delta))
    cols = slice(hr * DH, (hr + 1) * DH)

    ours = lens.path_patch_logits(bridge, clean, corrupt, (ls, hs), (lr, hr), into=into)
    assert_matches_a_hand_patch(ours, hf, proj, cols, patched, clean)


def test_path_patching_into_shared_key_heads_is_refused():
    """Grouped-query attention (2 key/value heads for 4 query heads): one query head's keys cannot be patched alone."""
    torch.manual_seed(0)
    hf, architecture = hf_llama(n_kv_heads=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = build_bridge_from_module(hf, architecture, hf_config=hf.config)
    tokens = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(0))
    for into in ("k", "v"):
        with pytest.raises(ValueError, match="grouped-query"):
            lens.path_patch_logits(bridge, tokens, tokens, (0, 1), (1, 2), into=into)
    torch.testing.assert_close(lens.path_patch_logits(bridge, tokens, tokens, (0, 1), (1, 2), into="q"), bridge(tokens))


# ---- dtypes: what the tools create follows the model ------------------------------------------------

def each_tool(model, tokens):
    """The output of every lens tool that makes tensors, by name."""
    _, cache = model.run_with_cache(tokens)
    parts, _ = lens.residual_components(model, cache)
    return {
        "logit_lens": lens.logit_lens(model, cache),
        "residual_components": parts,
        "direct_logit_attribution": lens.direct_logit_attribution(model, cache, parts, tokens[:, 1:]),
        "relative DLA": lens.direct_logit_attribution(model, cache, parts, tokens[:, 1:], relative=True),
        "logit_bias": lens.logit_bias(model),
        "prefix-matching": lens.head_scores(model, tokens)["prefix-matching"],
        "composition_scores": lens.composition_scores(model, "v"),
        "random_composition_scores": lens.random_composition_scores(model, n=20),
        "path_patch_logits": lens.path_patch_logits(model, tokens, tokens.roll(1, 0), (0, 1), (1, 0), into="k"),
        "mean_z": lens.mean_z(cache, model.cfg.n_layers)[1],
    }


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-5), (torch.bfloat16, 0.1)], ids=["float64", "bfloat16"])
@pytest.mark.parametrize("source", ["HookedTransformer", "HF GPT-2 bridge"])
def test_every_tool_follows_the_models_dtype(gpt2, source, dtype, tol):
    model = build("HookedTransformer", "LN") if source == "HookedTransformer" else gpt2[1]
    tokens = lens.repeated_tokens(2, 6, model.cfg.d_vocab, seed=3)
    reference = each_tool(model, tokens)
    cast = copy.deepcopy(model).to(dtype)
    with torch.no_grad():
        outputs = each_tool(cast, tokens)
    for name, out in outputs.items():
        assert out.dtype == dtype, f"{name} came back in {out.dtype} from a {dtype} model"
        scale = reference[name].abs().max().clamp(min=1)
        torch.testing.assert_close(out.double() / scale, reference[name].double() / scale, atol=tol, rtol=0,
                                   msg=f"{name} in {dtype} drifts from float32")


def assert_matches_a_hand_patch(ours, hf, module, cols, patched, clean) -> None:
    """`ours` equals the HF model's logits on `clean` with `module`'s output columns `cols` taken from `patched`,
    and differs from the unpatched logits (a real corruption changes them)."""
    def replace(_module, _args, out):
        out = out.clone()
        out[..., cols] = patched[..., cols]
        return out
    handle = module.register_forward_hook(replace)
    try:
        manual = hf(clean).logits
    finally:
        handle.remove()
    torch.testing.assert_close(ours, manual, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(ours, hf(clean).logits), "a real corruption should change the logits"
