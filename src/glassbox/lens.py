"""Reading a TransformerLens language model: logit lens, direct logit attribution, head scores,
composition scores, and the induction toolkit (repeated sequences, in-context loss, head ablation,
path patching). Works on any TransformerLens model (`HookedTransformer` or `TransformerBridge`) with
standard hook names: nothing here assumes the journal built it. Tested with LayerNorm, LNPre, RMS and none
(normalization_type=None), standard and rotary positions, one layer or more, attention-only or with MLPs,
and on Hugging Face GPT-2, Llama (RMS, rotary, no attention biases) and GPT-NeoX models wrapped offline
(tests/test_lens_any_model.py):

    from transformer_lens.model_bridge.sources import build_bridge_from_module
    model = build_bridge_from_module(hf_model, "GPT2LMHeadModel", hf_config=hf_model.config)  # swaps hf_model's
                                                                 # submodules in place: keep a deepcopy to compare
A tool that cannot apply says what it needs: composition and path patching need two layers; path patching
refuses shortformer positions (added to queries and keys outside the residual stream) and, into keys or
values, grouped-query attention (one key/value head serves several query heads).

    _, cache = model.run_with_cache(tokens)
    logits_by_layer = logit_lens(model, cache)                  # [layer batch pos d_vocab], last = model output
    parts, labels = residual_components(model, cache)           # embed, pos, every head, b_O, MLPs: sum = resid
    dla = direct_logit_attribution(model, cache, parts, tokens[:, 1:])   # [component batch pos]
    prev = previous_token_score(cache["blocks.0.attn.hook_pattern"])     # [head]
    k_comp = composition_scores(model, "k")                     # [head_in_layer_0 head_in_layer_1] for 2 layers

Conventions (TransformerLens): row vectors, `x @ W`; W_OV = W_V @ W_O and W_QK = W_Q @ W_K^T per head.
"""
import re
from collections.abc import Callable

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from glassbox import checks

Hook = tuple[str, Callable]
Head = tuple[int, int]  # (layer, head)


# ---- checks at the boundary --------------------------------------------------------------------------

def _model(model: nn.Module, *needs: str) -> nn.Module:
    return checks.transformer_lens_model(model, needs=needs)


def _like(model: nn.Module) -> dict:
    """The device and dtype of the model's weights, for tensors a tool creates."""
    p = next(model.parameters(), None)
    return dict(device=p.device, dtype=p.dtype) if p is not None else dict(device="cpu", dtype=torch.get_default_dtype())


def _layer(model: nn.Module, layer: int, name: str = "layer") -> int:
    n = model.cfg.n_layers
    return checks.index(layer, name, n, of=f" (the model has {n} layers)")


def _head_index(model: nn.Module, head: int, name: str = "head") -> int:
    n = model.cfg.n_heads
    return checks.index(head, name, n, of=f" (each layer has {n} heads)")


def _head(model: nn.Module, pair: Head, name: str) -> Head:
    """A (layer, head) pair of `model`, both in range."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{name} must be a (layer, head) pair, got {pair!r}")
    return _layer(model, pair[0], f"{name}'s layer"), _head_index(model, pair[1], f"{name}'s head")


def _two_layers(model: nn.Module, tool: str) -> None:
    """Refuse a model with fewer than two layers for a tool that needs a writer layer and a later reader."""
    n = model.cfg.n_layers
    if n < 2:
        raise ValueError(f"{tool} needs two layers (a head in an earlier layer writes, a head in a later layer "
                         f"reads); the model has {n} layer{'s' if n != 1 else ''}")


def _normalization(model: nn.Module) -> str | None:
    """The final normalization's type: "LN", "LNPre", "RMS", "RMSPre" or None (no final LayerNorm)."""
    return getattr(model.cfg, "normalization_type", None)


def _adds_positions(model: nn.Module) -> bool:
    """Whether the model adds a position embedding to the residual stream (not rotary, shortformer or alibi)."""
    return getattr(model.cfg, "positional_embedding_type", "standard") == "standard"


def _bias(model: nn.Module, name: str) -> Tensor | None:
    """A stacked bias of the model (b_O, b_Q, b_K, b_V), or None where it has none: a TransformerBridge around a
    model without attention biases (e.g. Llama) cannot stack them and raises a TypeError."""
    try:
        return getattr(model, name)
    except (AttributeError, TypeError):
        return None


def _cached(cache, name: str, ndim: int | None = None) -> Tensor:
    """cache[name], checked: a non-empty finite floating tensor (of `ndim` dimensions when given), named by its key."""
    try:
        value = cache[name]
    except KeyError:
        raise ValueError(f"cache lacks {name!r}; cache it: model.run_with_cache(tokens) without a names_filter "
                         "that drops it") from None
    return checks.tensor(value, f"cache[{name!r}]", ndim=ndim)


def _pattern(pattern: Tensor, name: str = "pattern") -> Tensor:
    """`pattern` if it is a finite attention pattern [batch head q k] with q = k >= 2."""
    if isinstance(pattern, Tensor) and pattern.ndim != 4:
        hint = f"; for one sequence pass {name}[None]" if pattern.ndim == 3 else ""
        raise ValueError(f"{name} must be an attention pattern [batch head q k], got shape {tuple(pattern.shape)}{hint}")
    checks.tensor(pattern, name)
    if pattern.shape[-1] != pattern.shape[-2] or pattern.shape[-1] < 2:
        raise ValueError(f"{name} must be [batch head q k] with q = k >= 2 positions (scores are over positions "
                         f"1..end), got shape {tuple(pattern.shape)}")
    return pattern


# ---- the residual stream, layer by layer -----------------------------------------------------------

def accumulated_resid(cache, n_layers: int) -> tuple[Float[Tensor, "layer batch pos d_model"], list[str]]:
    """The residual stream before each layer and after the last: n_layers + 1 snapshots, with labels."""
    checks.count(n_layers, "n_layers")
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]
    labels = [f"before layer {layer}" for layer in range(n_layers)] + ["final"]
    return torch.stack([_cached(cache, name) for name in names]), labels


def unembed(model: nn.Module, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Logits of a residual-stream vector: the final LayerNorm (recomputed on `resid`; none when the model has
    none, normalization_type=None), W_U and b_U."""
    _model(model, "W_U", "b_U")
    if _normalization(model) is not None:
        _model(model, "ln_final")
    checks.tensor(resid, "resid")
    if resid.ndim == 0 or resid.shape[-1] != model.cfg.d_model:
        raise ValueError(f"resid must end in d_model = {model.cfg.d_model}, got shape {tuple(resid.shape)}: "
                         "pass residual-stream vectors of this model")
    normed = model.ln_final(resid) if _normalization(model) is not None else resid
    return normed @ model.W_U + model.b_U


@torch.no_grad()
def logit_lens(model: nn.Module, cache) -> Float[Tensor, "layer batch pos d_vocab"]:
    """Logit lens: each snapshot of the residual stream read with the model's own unembedding, as if the
    remaining layers were skipped. The last row is exactly the model's output."""
    resid, _ = accumulated_resid(cache, _model(model, "W_U").cfg.n_layers)
    return unembed(model, resid)


def head_outputs(model: nn.Module, cache, layer: int) -> Float[Tensor, "batch pos head d_model"]:
    """What each head of `layer` writes into the residual stream (z @ W_O, without the shared b_O)."""
    layer = _layer(_model(model, "W_O"), layer)
    return einops.einsum(_cached(cache, f"blocks.{layer}.attn.hook_z", 4), model.W_O[layer],
                         "batch pos head d_head, head d_head d_model -> batch pos head d_model")


@torch.no_grad()
def residual_components(model: nn.Module, cache) -> tuple[Float[Tensor, "component batch pos d_model"], list[str]]:
    """The final residual stream split into what wrote it: token and position embeddings, then per layer
    every head (L{l}H{h}), the attention bias b_O (L{l} b_O) and the MLP (L{l} MLP). They sum to it exactly.
    A model whose positions never enter the residual stream (rotary, shortformer, alibi) has no pos_embed part,
    one without attention output biases (b_O None, e.g. Llama through TransformerBridge) no b_O parts."""
    b_O = _bias(_model(model, "W_O"), "b_O")
    parts, labels = [_cached(cache, "hook_embed")], ["embed"]
    if _adds_positions(model):
        parts, labels = parts + [_cached(cache, "hook_pos_embed")], labels + ["pos_embed"]
    for layer in range(model.cfg.n_layers):
        heads = head_outputs(model, cache, layer)
        parts += list(heads.unbind(2))
        labels += [f"L{layer}H{h}" for h in range(model.cfg.n_heads)]
        if b_O is not None:
            parts, labels = parts + [b_O[layer].expand_as(parts[0])], labels + [f"L{layer} b_O"]
        if not model.cfg.attn_only:
            parts.append(_cached(cache, f"blocks.{layer}.hook_mlp_out"))
            labels.append(f"L{layer} MLP")
    return torch.stack(parts), labels


_LABEL = re.compile(r"embed|pos_embed|L\d+(H\d+| b_O| MLP)")


def component_layers(labels: list[str]) -> list[int]:
    """The layer of each component label of `residual_components` (-1 for the embeddings)."""
    bad = [label for label in labels if not (isinstance(label, str) and _LABEL.fullmatch(label))]
    if bad:
        raise ValueError(f"labels must be those residual_components returns ('embed', 'L0H1', 'L0 b_O', 'L0 MLP'), "
                         f"got {bad[:3]}")
    return [int(label[1:].split("H")[0].split(" ")[0]) if label.startswith("L") else -1 for label in labels]


@torch.no_grad()
def direct_logit_attribution(model: nn.Module, cache, components: Float[Tensor, "component batch pos d_model"],
                             targets: Int[Tensor, "batch n"], relative: bool = False) -> Float[Tensor, "component batch n"]:
    """Each component's direct effect on the logit of `targets` (the first n positions), with the final
    LayerNorm's centring and its scale taken from the cache (the scale of the whole stream, so the parts
    sum to the centred-stream logit): logit = sum over components + logit_bias. `relative`: the effect
    on the target's logit minus the mean logit (what softmax sees); the bias then loses its mean too.
    LN and LNPre centre the stream, RMS and RMSPre do not; LN and RMS multiply by ln_final.w."""
    _model(model, "W_U")
    if isinstance(components, Tensor) and (components.ndim != 4 or components.shape[-1] != model.cfg.d_model):
        raise ValueError(f"components must be [component batch pos d_model = {model.cfg.d_model}] (from "
                         f"residual_components), got shape {tuple(components.shape)}")
    checks.tensor(components, "components")
    checks.tokens(targets, "targets", d_vocab=model.W_U.shape[-1])
    (_, batch, pos, _), n = components.shape, targets.shape[1]
    if targets.shape[0] != batch or n > pos:
        raise ValueError(f"targets has shape {tuple(targets.shape)}, but components hold {batch} sequences of {pos} "
                         "positions: pass at most one target per position of the cached run, e.g. tokens[:, 1:]")
    x = components[:, :, :n]
    norm = _normalization(model)
    x = x - x.mean(-1, keepdim=True) if norm in ("LN", "LNPre") else x
    scale = _cached(cache, "ln_final.hook_scale")[:, :n].to(x.dtype) if norm is not None else 1.0
    ones = torch.ones(model.cfg.d_model, dtype=model.W_U.dtype, device=model.W_U.device)
    w = model.ln_final.w if norm in ("LN", "RMS") else ones
    W_U = model.W_U - model.W_U.mean(1, keepdim=True) if relative else model.W_U
    directions = (w[:, None] * W_U)[:, targets.to(W_U.device)]  # d_model batch n
    return einops.einsum(x / scale, directions, "comp batch n d_model, d_model batch n -> comp batch n")


def logit_bias(model: nn.Module) -> Float[Tensor, "d_vocab"]:
    """The part of every logit that no component writes: ln_final.b @ W_U + b_U."""
    has_bias = _normalization(_model(model, "W_U", "b_U")) == "LN"
    return model.b_U + (model.ln_final.b @ model.W_U if has_bias else 0)


# ---- attention head scores from patterns ------------------------------------------------------------

def previous_token_score(pattern: Float[Tensor, "batch head q k"]) -> Float[Tensor, "head"]:
    """Mean attention from each position to the one just before it (positions 1..end)."""
    return _pattern(pattern).diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, -1))


def current_token_score(pattern: Float[Tensor, "batch head q k"]) -> Float[Tensor, "head"]:
    """Mean attention from each position to itself (positions 1..end; position 0 has no choice)."""
    return _pattern(pattern).diagonal(dim1=-2, dim2=-1)[..., 1:].mean((0, -1))


def first_token_score(pattern: Float[Tensor, "batch head q k"]) -> Float[Tensor, "head"]:
    """Mean attention to position 0 (a 'resting' position) from positions 1..end."""
    return _pattern(pattern)[..., 1:, 0].mean((0, -1))


def induction_targets(tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch q k"]:
    """1 where key k (< q... and >= 1) follows an earlier copy of the query's token: tokens[k - 1] == tokens[q]."""
    checks.tokens(tokens, "tokens")
    same = tokens[:, :, None] == tokens[:, None, :]  # batch q k: tokens[q] == tokens[k]
    shifted = torch.zeros_like(same)
    shifted[:, :, 1:] = same[:, :, :-1]  # tokens[q] == tokens[k - 1]
    causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool, device=tokens.device).tril(-1)  # k < q
    return (shifted & causal).float()


def prefix_matching_score(pattern: Float[Tensor, "batch head q k"], tokens: Int[Tensor, "batch pos"]
                          ) -> Float[Tensor, "head"]:
    """Mean attention a query pays to the tokens that followed earlier copies of its own token (the
    induction pattern), over the queries that have such an earlier copy."""
    _pattern(pattern)
    checks.tokens(tokens, "tokens")
    if tokens.shape != (pattern.shape[0], pattern.shape[2]):
        raise ValueError(f"tokens has shape {tuple(tokens.shape)}, pattern {tuple(pattern.shape)}: pass the tokens "
                         "the pattern was computed on, [batch pos] with pos = q")
    targets = induction_targets(tokens.to(pattern.device)).to(pattern.dtype)
    has = targets.sum(-1) > 0  # batch q
    mass = einops.einsum(pattern, targets, "batch head q k, batch q k -> batch head q")
    return (mass * has[:, None]).sum((0, 2)) / has.sum().clamp(min=1)


def mean_attention_distance(pattern: Float[Tensor, "batch head q k"]) -> Float[Tensor, "head"]:
    """Mean of q - k under each head's attention: how far back a head looks, in tokens."""
    n = _pattern(pattern).shape[-1]
    pos = torch.arange(n, device=pattern.device)
    distance = (pos[:, None] - pos[None, :]).clamp(min=0).to(pattern.dtype)
    return (pattern * distance).sum(-1).mean((0, -1))


@torch.no_grad()
def copying_score(model: nn.Module, layer: int, head: int) -> float:
    """Olsson et al.'s copying score of a head's full OV circuit W_E W_V W_O W_U (LayerNorms left out):
    sum of eigenvalues / sum of their absolute values; near 1 when the head raises the logit of the
    token it attends to. Half-precision weights are read in float32 (eigvals has no half kernel)."""
    layer, head = _layer(_model(model, "W_E", "W_V", "W_O", "W_U"), layer), _head_index(model, head)
    if model.W_E.shape[0] != model.W_U.shape[-1]:
        raise ValueError(f"the copying score needs d_vocab = d_vocab_out, got W_E {tuple(model.W_E.shape)} and W_U "
                         f"{tuple(model.W_U.shape)}")
    up = lambda w: w.float() if w.dtype in (torch.float16, torch.bfloat16) else w
    W = up(model.W_E) @ up(model.W_V[layer, head]) @ up(model.W_O[layer, head]) @ up(model.W_U)  # d_vocab d_vocab
    eig = torch.linalg.eigvals(W)
    return (eig.sum().real / eig.abs().sum()).item()


# ---- composition -----------------------------------------------------------------------------------

def W_OV(model: nn.Module, layer: int) -> Float[Tensor, "head d_model d_model"]:
    """Each head's OV matrix W_V @ W_O (row-vector convention: x @ W_OV is what the head writes)."""
    layer = _layer(_model(model, "W_V", "W_O"), layer)
    return model.W_V[layer] @ model.W_O[layer]


def W_QK(model: nn.Module, layer: int) -> Float[Tensor, "head d_model d_model"]:
    """Each head's QK matrix W_Q @ W_K^T (score = x_q @ W_QK @ x_k^T)."""
    layer = _layer(_model(model, "W_Q", "W_K"), layer)
    return model.W_Q[layer] @ model.W_K[layer].transpose(-1, -2)


def composition_score(W_A: Float[Tensor, "... d d"], W_B: Float[Tensor, "... d d"]) -> Float[Tensor, "..."]:
    """||W_A @ W_B||_F / (||W_A||_F ||W_B||_F): how much of what W_A writes W_B reads (A Mathematical Framework)."""
    for name, W in (("W_A", W_A), ("W_B", W_B)):
        if isinstance(W, Tensor) and W.ndim < 2:
            raise ValueError(f"{name} must be a matrix [... d d], got shape {tuple(W.shape)}")
        checks.tensor(W, name)
    if W_A.shape[-1] != W_B.shape[-2]:
        raise ValueError(f"W_A {tuple(W_A.shape)} writes {W_A.shape[-1]} dims but W_B {tuple(W_B.shape)} reads "
                         f"{W_B.shape[-2]}: pass matrices of one model")
    norm = lambda M: M.pow(2).sum((-1, -2)).sqrt()
    return norm(W_A @ W_B) / (norm(W_A) * norm(W_B))


@torch.no_grad()
def composition_scores(model: nn.Module, kind: str, layer_a: int = 0, layer_b: int = 1) -> Float[Tensor, "head_a head_b"]:
    """Q-, K- or V-composition of every head of `layer_a` (writer) with every head of `layer_b` (reader).
    K: the writer's output read by the reader's keys, ||W_QK^B (W_OV^A)^T|| (and Q: by its queries,
    ||W_OV^A W_QK^B||; V: by its values, ||W_OV^A W_OV^B||), each over the product of the two norms."""
    if kind not in ("q", "k", "v"):
        raise ValueError(f"kind must be 'q', 'k' or 'v', got {kind!r}")
    _two_layers(_model(model), "composition_scores")
    layer_a, layer_b = _layer(model, layer_a, "layer_a"), _layer(model, layer_b, "layer_b")
    if layer_a >= layer_b:
        raise ValueError(f"layer_a (the writer, {layer_a}) must come before layer_b (the reader, {layer_b}): a head "
                         "reads only what earlier layers wrote")
    A = W_OV(model, layer_a)[:, None]  # head_a 1 d d
    B = {"q": W_QK(model, layer_b), "k": W_QK(model, layer_b).transpose(-1, -2), "v": W_OV(model, layer_b)}
    return composition_score(A, B[kind][None])


def random_composition_scores(model: nn.Module, n: int = 200, seed: int = 0) -> Float[Tensor, "n"]:
    """Composition scores of `n` pairs of random matrices shaped like the model's heads (Gaussian W_V W_O
    and W_Q W_K^T): what two unrelated heads score by chance. Drawn on the CPU, then on the model's device
    and in its dtype."""
    checks.count(n, "n")
    gen = torch.Generator().manual_seed(seed)
    d, h = _model(model).cfg.d_model, model.cfg.d_head
    like = _like(model)
    rand = lambda *shape: torch.randn(n, *shape, generator=gen).to(**like)
    return composition_score(rand(d, h) @ rand(h, d), rand(d, h) @ rand(h, d))


def composition_baseline(model: nn.Module, n: int = 200, seed: int = 0) -> float:
    """Mean of `random_composition_scores`: the score two unrelated heads get by chance."""
    return random_composition_scores(model, n, seed).mean().item()


# ---- induction: data, loss, ablation, path patching ------------------------------------------------

def repeated_tokens(n: int, length: int, d_vocab: int, seed: int = 0) -> Int[Tensor, "n two_length"]:
    """n sequences of `length` uniformly random tokens followed by the same tokens again."""
    checks.count(n, "n")
    checks.count(length, "length")
    checks.count(d_vocab, "d_vocab")
    r = torch.randint(0, d_vocab, (n, length), generator=torch.Generator().manual_seed(seed))
    return torch.cat([r, r], 1)


def per_token_loss(logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos_minus_1"]:
    """Cross-entropy (nats) of predicting tokens[:, i + 1] from logits[:, i]."""
    checks.tensor(logits, "logits", ndim=3)
    checks.tokens(tokens, "tokens", d_vocab=logits.shape[-1])
    if tokens.shape != logits.shape[:2] or tokens.shape[1] < 2:
        raise ValueError(f"tokens {tuple(tokens.shape)} must be the [batch pos] (pos >= 2) the logits "
                         f"{tuple(logits.shape)} were computed on")
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")


def copy_losses(losses: Float[Tensor, "batch pos_minus_1"], length: int) -> tuple[float, float]:
    """Mean loss on the first copy (predicting tokens 1..length-1) and on the second copy (predicting
    tokens length+1..2 length-1, whose earlier copy is in context) of `repeated_tokens` sequences. The
    first token of the second copy (predicted from the first copy's last token) is in neither."""
    checks.tensor(losses, "losses", ndim=2)
    checks.count(length, "length", least=2)
    if losses.shape[1] != 2 * length - 1:
        raise ValueError(f"losses has {losses.shape[1]} positions; per_token_loss of repeated_tokens(n, length={length}) "
                         f"has 2 * length - 1 = {2 * length - 1}: pass the length the sequences were made with")
    return losses[:, : length - 1].mean().item(), losses[:, length:].mean().item()


def head_ablation_hooks(heads: list[Head], means: dict[int, Float[Tensor, "pos head d_head"]] | None = None,
                        *, model: nn.Module | None = None) -> list[Hook]:
    """Hooks for `run_with_hooks` replacing the output z of `heads` by `means[layer]` (its mean over a
    reference batch, per position) or by zero when `means` is None. Heads are checked against `means`, and
    against `model` when given (a TransformerBridge ignores hooks on layers it does not have)."""
    heads = _heads(heads, means, model)
    hooks = []
    for layer in sorted({layer for layer, _ in heads}):
        chosen = [h for lay, h in heads if lay == layer]

        def hook(z: Tensor, hook, layer=layer, chosen=chosen) -> Tensor:
            if max(chosen) >= z.shape[2] or (means is not None and means[layer].shape[0] < z.shape[1]):
                raise ValueError(f"heads: layer {layer} has {z.shape[2]} heads and {z.shape[1]} positions; asked for "
                                 f"heads {chosen}" + ("" if means is None else f" with means[{layer}] of shape "
                                                      f"{tuple(means[layer].shape)}"))
            z = z.clone()
            z[:, :, chosen] = 0 if means is None else means[layer][None, : z.shape[1], chosen]
            return z
        hooks.append((f"blocks.{layer}.attn.hook_z", hook))
    return hooks


def _heads(heads: list[Head], means: dict | None, model: nn.Module | None) -> list[Head]:
    """`heads` as (layer, head) pairs of ints >= 0, in range of `means` and `model` when given."""
    if not isinstance(heads, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in heads):
        raise TypeError(f"heads must be a list of (layer, head) pairs, e.g. [(1, 0)], got {heads!r}")
    heads = [(checks.count(l, f"heads[{i}]'s layer", 0), checks.count(h, f"heads[{i}]'s head", 0))
             for i, (l, h) in enumerate(heads)]
    if model is not None:
        heads = [_head(_model(model), pair, f"heads[{i}]") for i, pair in enumerate(heads)]
    for i, (layer, head) in enumerate(heads if means is not None else []):
        if layer not in means:
            raise ValueError(f"heads[{i}] = {(layer, head)} names layer {layer}, but means holds layers {sorted(means)}: "
                             "is the head in this model? (pass means = mean_z(cache, n_layers) of the same model)")
        checks.tensor(means[layer], f"means[{layer}]", ndim=3)
        n = means[layer].shape[1]
        checks.index(head, f"heads[{i}]'s head", n, of=f" (means[{layer}] holds {n} heads)")
    return heads


def mean_z(cache, n_layers: int) -> dict[int, Float[Tensor, "pos head d_head"]]:
    """Mean head outputs z over the batch of a cache, per layer: the reference for mean ablation."""
    checks.count(n_layers, "n_layers")
    return {layer: _cached(cache, f"blocks.{layer}.attn.hook_z", 4).mean(0) for layer in range(n_layers)}


@torch.no_grad()
def path_patch_logits(model: nn.Module, clean: Int[Tensor, "batch pos"], corrupt: Int[Tensor, "batch pos"],
                      sender: Head, receiver: Head | list[Head], into: str = "k") -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of the clean run in which only the direct path sender -> receiver's keys (or queries or
    values, `into`) carries the sender's output on `corrupt`: the receiver's input is recomputed through
    its LayerNorm from the clean residual stream plus (corrupt - clean) sender output; everything else is
    clean. `receiver` may be a list of heads of one layer, patched together."""
    _model(model, "blocks", "W_Q", "W_K", "W_V", "W_O")
    _two_layers(model, "path_patch_logits")
    if getattr(model.cfg, "positional_embedding_type", "standard") == "shortformer":
        raise ValueError("path_patch_logits recomputes a receiver's input from the residual stream, but a shortformer "
                         "model adds its position embedding to queries and keys outside it: not supported; use "
                         "positional_embedding_type 'standard', 'rotary' or 'alibi'")
    receivers = receiver if isinstance(receiver, list) else [receiver]
    if not receivers:
        raise ValueError("receiver is an empty list: name at least one (layer, head)")
    receivers = [_head(model, pair, "receiver") for pair in receivers]
    if len({layer for layer, _ in receivers}) != 1:
        raise ValueError(f"the receivers must share one layer, got {receivers}")
    (ls, hs), lr, hr = _head(model, sender, "sender"), receivers[0][0], [h for _, h in receivers]
    if ls >= lr:
        raise ValueError(f"the sender's layer ({ls}) must come before the receiver's ({lr})")
    if into not in ("q", "k", "v"):
        raise ValueError(f"into must be 'q', 'k' or 'v', got {into!r}")
    n_kv = getattr(model.cfg, "n_key_value_heads", None)
    if into != "q" and n_kv is not None and n_kv != model.cfg.n_heads:
        raise ValueError(f"path_patch_logits into {into!r} needs one key and value head per query head; the model "
                         f"shares {n_kv} key/value heads among {model.cfg.n_heads} (grouped-query attention): "
                         "patch into 'q', or patch the shared key/value head with run_with_hooks")
    for name, t in (("clean", clean), ("corrupt", corrupt)):
        checks.tokens(t, name, d_vocab=model.cfg.d_vocab, n_ctx=model.cfg.n_ctx)
    if clean.shape != corrupt.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and corrupt {tuple(corrupt.shape)} must have the same shape: "
                         "one corrupted sequence per clean one")
    names = lambda n: n in (f"blocks.{ls}.attn.hook_z", f"blocks.{lr}.hook_resid_pre")
    _, clean_cache = model.run_with_cache(clean, names_filter=names)
    _, corrupt_cache = model.run_with_cache(corrupt, names_filter=names)
    delta = head_outputs(model, corrupt_cache, ls)[:, :, hs] - head_outputs(model, clean_cache, ls)[:, :, hs]
    x = model.blocks[lr].ln1(clean_cache[f"blocks.{lr}.hook_resid_pre"] + delta)
    W, b = {"q": model.W_Q, "k": model.W_K, "v": model.W_V}[into], _bias(model, f"b_{into.upper()}")
    patched = einops.einsum(x, W[lr, hr], "batch pos d_model, head d_model d_head -> batch pos head d_head")
    patched = patched + b[lr, hr] if b is not None else patched  # no q/k/v biases (e.g. Llama): None

    def hook(act: Tensor, hook) -> Tensor:
        act = act.clone()
        act[:, :, hr] = patched
        return act
    return model.run_with_hooks(clean, fwd_hooks=[(f"blocks.{lr}.attn.hook_{into}", hook)])


@torch.no_grad()
def head_scores(model: nn.Module, tokens: Int[Tensor, "batch pos"]) -> dict[str, Float[Tensor, "layer head"]]:
    """Every head's previous-token, current-token, first-token and prefix-matching scores and its mean
    attention distance on `tokens` (one forward pass; only the patterns are cached)."""
    checks.tokens(tokens, "tokens", d_vocab=_model(model).cfg.d_vocab, n_ctx=model.cfg.n_ctx)
    if tokens.shape[1] < 2:
        raise ValueError(f"tokens must have at least 2 positions (scores are over positions 1..end), got shape "
                         f"{tuple(tokens.shape)}")
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    patterns = [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(model.cfg.n_layers)]
    scores = {"previous-token": previous_token_score, "current-token": current_token_score,
              "first-token": first_token_score, "mean distance": mean_attention_distance}
    out = {name: torch.stack([f(p) for p in patterns]) for name, f in scores.items()}
    out["prefix-matching"] = torch.stack([prefix_matching_score(p, tokens) for p in patterns])
    return out


def classify_heads(scores: dict[str, Float[Tensor, "layer head"]], induction: Float[Tensor, "layer head"],
                   threshold: float = 0.4) -> list[list[str]]:
    """A class per head: the first of induction (prefix-matching on repeated tokens `induction` above
    `threshold`), previous-token, first-token (resting), current-token whose score passes `threshold`;
    else 'mixed'."""
    checks.tensor(induction, "induction", ndim=2)
    for name in ("previous-token", "first-token", "current-token"):
        if name not in scores:
            raise ValueError(f"scores lacks {name!r}: pass the dict head_scores returns")
        checks.tensor(scores[name], f"scores[{name!r}]", ndim=2)
        if scores[name].shape != induction.shape:
            raise ValueError(f"scores[{name!r}] has shape {tuple(scores[name].shape)}, induction "
                             f"{tuple(induction.shape)}: pass scores of the same model [layer head]")
    rules = [("induction", induction), ("previous-token", scores["previous-token"]),
             ("first-token", scores["first-token"]), ("current-token", scores["current-token"])]
    return [[next((name for name, s in rules if s[layer, head] > threshold), "mixed")
             for head in range(induction.shape[1])] for layer in range(induction.shape[0])]
