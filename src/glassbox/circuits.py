"""Circuits of a 1-layer attention-only transformer (TransformerLens `TransformerBridge` or `HookedTransformer`).

In layer 0 the input of the first LayerNorm is only `W_E[token] + W_pos[position]`, so every circuit can
be tabulated exactly per (token, position) with the LayerNorm applied, not approximated by folding:

    T = get_ov_table(model)           # [token position logit]: what a token at a position writes
    S = get_qk_table(model)           # [query_token key_token key_position]: last query's scores
    parts, names = get_logit_components(model, tokens)   # exact direct logit attribution, sums to logits

The one nonlinearity left is the final LayerNorm's scale: a positive number per list that divides every
logit of the list alike. Interventions go through TransformerLens hook names with `model.run_with_hooks`:

    model.run_with_hooks(tokens, fwd_hooks=set_pattern_hooks(uniform))   # attention pattern replaced
    patch_by_position(model, corrupt, clean_cache, ["blocks.0.attn.hook_v"], metric)   # [hook pos]
"""
import math
from collections.abc import Callable

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from glassbox import checks

Hook = tuple[str, Callable]


def _check_one_layer(model: nn.Module) -> None:
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(model, "W_E"):
        raise TypeError(f"expected a TransformerLens model (TransformerBridge or HookedTransformer) with .cfg and "
                        f".W_E, got {type(model).__name__}; build it with TransformerBridge.boot_native(cfg)")
    if cfg.n_layers != 1 or not cfg.attn_only:
        raise ValueError(f"the exact token tables need a 1-layer attention-only model (the first LayerNorm then "
                         f"sees only W_E + W_pos); got n_layers={cfg.n_layers}, attn_only={cfg.attn_only}")


def _head(model: nn.Module, head: int) -> int:
    n = model.cfg.n_heads
    return checks.index(head, "head", n, of=f" (the model has {n} heads)")


def _tokens(model: nn.Module, tokens: Tensor, name: str = "tokens") -> Tensor:
    return checks.tokens(tokens, name, d_vocab=model.cfg.d_vocab, n_ctx=model.cfg.n_ctx)


def _replacement(value: Tensor, name: str, shape: torch.Size, exact: bool = False) -> Tensor:
    """`value` if it is a finite tensor of `shape` (or one that broadcasts to it, unless `exact`)."""
    checks.tensor(value, name)
    fits = value.shape == shape if exact else len(value.shape) <= len(shape) and all(
        a in (1, b) for a, b in zip(reversed(value.shape), reversed(shape)))
    if not fits:
        raise ValueError(f"{name} has shape {tuple(value.shape)}, but replaces a part of shape {tuple(shape)}"
                         + ("" if exact else " (or one that broadcasts to it)"))
    return value


def get_W_pos(model: nn.Module) -> Float[Tensor, "n_ctx d_model"]:
    """The positional embedding matrix, wherever the model keeps it (`W_pos` or `pos_embed.W_pos`)."""
    checks.transformer_lens_model(model)
    W_pos = getattr(model, "W_pos", None)
    if W_pos is None:
        W_pos = getattr(getattr(model, "pos_embed", None), "W_pos", None)
    if W_pos is None:
        raise AttributeError(f"{type(model).__name__} has neither .W_pos nor .pos_embed.W_pos: "
                             "is it a TransformerLens model with standard positional embeddings?")
    return W_pos


@torch.no_grad()
def get_ln1_outputs(model: nn.Module) -> Float[Tensor, "d_vocab n_ctx d_model"]:
    """The first LayerNorm's output for every (token, position): exact in layer 0."""
    _check_one_layer(model)
    W_pos = get_W_pos(model)
    return model.blocks[0].ln1(model.W_E[:, None, :] + W_pos[None, :, :])


def get_W_U_eff(model: nn.Module) -> Float[Tensor, "d_model d_vocab_out"]:
    """The unembedding as the final LayerNorm feeds it: centring and weight folded in (exact), scale left out.
    Without a final LayerNorm it is W_U itself. RMS and RMSPre do not centre; RMS (like LN) multiplies by ln_final.w."""
    if not hasattr(getattr(model, "cfg", None), "normalization_type") or not hasattr(model, "W_U"):
        raise TypeError(f"model must be a TransformerLens model with .cfg and .W_U, got {type(model).__name__}")
    if model.cfg.normalization_type is None:
        return model.W_U
    if model.cfg.normalization_type in ("RMS", "RMSPre"):
        return model.ln_final.w[:, None] * model.W_U if model.cfg.normalization_type == "RMS" else model.W_U
    like = dict(dtype=model.W_U.dtype, device=model.W_U.device)
    w = model.ln_final.w if model.cfg.normalization_type == "LN" else torch.ones(model.cfg.d_model, **like)
    centre = torch.eye(model.cfg.d_model, **like) - 1 / model.cfg.d_model
    return centre @ (w[:, None] * model.W_U)


@torch.no_grad()
def get_ov_table(model: nn.Module, head: int = 0) -> Float[Tensor, "d_vocab n_ctx d_vocab_out"]:
    """Full OV circuit, token at each position -> logits: LN1 (exact), W_V + b_V, W_O, final-LN centring and
    weight, W_U. Left out: the attention weight, the final LN scale, and the biases b_O, ln_final.b, b_U."""
    h = get_ln1_outputs(model)
    head = _head(model, head)
    v = einops.einsum(h, model.W_V[0, head], "tok pos d_model, d_model d_head -> tok pos d_head") + model.b_V[0, head]
    out = einops.einsum(v, model.W_O[0, head], "tok pos d_head, d_head d_model -> tok pos d_model")
    return einops.einsum(out, get_W_U_eff(model), "tok pos d_model, d_model vocab -> tok pos vocab")


def get_attn_scale(model: nn.Module) -> float:
    """What the attention scores are divided by (sqrt(d_head) unless the config says otherwise)."""
    cfg = checks.transformer_lens_model(model).cfg
    if not getattr(cfg, "use_attn_scale", True):
        return 1.0
    return float(cfg.attn_scale) if getattr(cfg, "attn_scale", -1) > 0 else math.sqrt(cfg.d_head)


@torch.no_grad()
def get_qk_table(model: nn.Module, head: int = 0, query_pos: int = -1) -> Float[Tensor, "d_vocab_q d_vocab_k n_ctx"]:
    """Attention score (before softmax) of a query token at `query_pos` for each key token at each position,
    LN1 exact. Positions after `query_pos` are causally masked in the model (left in the table here)."""
    h = get_ln1_outputs(model)
    head = _head(model, head)
    checks.index(query_pos, "query_pos", h.shape[1], of=f" (n_ctx = {h.shape[1]})", negative=True)
    q = einops.einsum(h[:, query_pos], model.W_Q[0, head], "tok d_model, d_model d_head -> tok d_head") + model.b_Q[0, head]
    k = einops.einsum(h, model.W_K[0, head], "tok pos d_model, d_model d_head -> tok pos d_head") + model.b_K[0, head]
    return einops.einsum(q, k, "q_tok d_head, k_tok pos d_head -> q_tok k_tok pos") / get_attn_scale(model)


@torch.no_grad()
def get_logit_components(model: nn.Module, tokens: Int[Tensor, "batch pos"], pos: int = -1
                         ) -> tuple[Float[Tensor, "component batch d_vocab_out"], list[str]]:
    """Exact direct logit attribution at `pos` of a 1-layer attention-only model, with the list's own final-LN
    scale: one component per source position's value vector (summed over heads), the direct path of the token
    and of the position embedding, b_O, and the constant bias (ln_final.b W_U + b_U). They sum to the logits."""
    _check_one_layer(model)
    _tokens(model, tokens)
    checks.index(pos, "pos", tokens.shape[1], of=f" (tokens has {tokens.shape[1]} positions)", negative=True)
    names = ["blocks.0.attn.hook_pattern", "blocks.0.attn.hook_v", "ln_final.hook_scale", "hook_embed", "hook_pos_embed"]
    _, cache = model.run_with_cache(tokens.to(checks.placement(model)[0]), names_filter=lambda n: n in names)
    pattern = cache["blocks.0.attn.hook_pattern"][:, :, pos]  # batch head src
    v = cache["blocks.0.attn.hook_v"]  # batch src head d_head
    if v.shape[2] != pattern.shape[1]:
        raise ValueError(f"{v.shape[2]} value heads for {pattern.shape[1]} query heads (grouped-query attention) is not supported")
    values = einops.einsum(pattern, v, model.W_O[0], "batch head src, batch src head d_head, head d_head d_model -> src batch d_model")
    resid = torch.cat([values, cache["hook_embed"][None, :, pos], cache["hook_pos_embed"][None, :, pos],
                       model.b_O[0].expand(1, len(tokens), -1)])
    scale = cache["ln_final.hook_scale"][:, pos].to(resid.dtype)  # batch 1 (float32 in a bfloat16 bridge)
    logits = einops.einsum(resid / scale, get_W_U_eff(model), "comp batch d_model, d_model vocab -> comp batch vocab")
    bias = model.b_U + (model.ln_final.b @ model.W_U if model.cfg.normalization_type == "LN" else 0)
    labels = [f"value {j}" for j in range(len(values))] + ["direct token", "direct position", "b_O", "bias"]
    return torch.cat([logits, bias.expand(1, len(tokens), -1)]), labels


def get_attention_entropy(pattern: Float[Tensor, "... k"]) -> Float[Tensor, "..."]:
    """Entropy (nats) of attention distributions over the last dim; log(k) is uniform, 0 is one key."""
    checks.tensor(pattern, "pattern")
    if pattern.ndim == 0:
        raise ValueError("pattern must have a key dimension (the last), got a scalar")
    return -(pattern * pattern.clamp_min(1e-30).log()).sum(-1)


def mean_by_token(values: Float[Tensor, "batch pos"], tokens: Int[Tensor, "batch pos"], d_vocab: int) -> Float[Tensor, "d_vocab"]:
    """Average of `values` (e.g. attention to each key) grouped by the token at that place; NaN where absent.
    On `values`' device, in float32 (float64 for float64 values)."""
    checks.tensor(values, "values")
    checks.count(d_vocab, "d_vocab")
    if not isinstance(tokens, Tensor) or values.shape != tokens.shape:
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"values {tuple(values.shape)} and tokens {got} must have the same shape")
    checks.tokens(tokens, "tokens", ndim=tokens.ndim, d_vocab=d_vocab)
    dtype = torch.promote_types(values.dtype, torch.float32)
    tokens = tokens.to(values.device)
    sums = torch.zeros(d_vocab, dtype=dtype, device=values.device).index_add_(0, tokens.flatten(), values.flatten().to(dtype))
    counts = torch.bincount(tokens.flatten(), minlength=d_vocab).to(dtype)
    return sums / counts.where(counts > 0, torch.nan)


def set_pattern_hooks(pattern: Float[Tensor, "batch head q k"] | Float[Tensor, "q k"], layer: int = 0) -> list[Hook]:
    """Hooks for `run_with_hooks` that make the head output use `pattern`: z = pattern @ v.

    Editing `hook_pattern` itself is not enough on `TransformerBridge.boot_native` models (TransformerLens 3.9):
    the hook sees the pattern after the output was computed, so the edit changes nothing downstream."""
    if isinstance(pattern, Tensor) and pattern.ndim not in (2, 4):
        raise ValueError(f"pattern must be [batch head q k] or [q k], got shape {tuple(pattern.shape)}")
    checks.tensor(pattern, "pattern")
    checks.count(layer, "layer", least=0)
    stored: dict[str, Tensor] = {}

    def keep_v(v: Tensor, hook) -> Tensor:
        stored["v"] = v
        return v

    def replace_z(z: Tensor, hook) -> Tensor:
        p = pattern.to(z.dtype)
        p = p.expand(z.shape[0], z.shape[2], *p.shape[-2:]) if p.ndim == 2 else p
        if p.shape != (z.shape[0], z.shape[2], z.shape[1], z.shape[1]):
            raise ValueError(f"pattern must be [batch head q k] = {[z.shape[0], z.shape[2], z.shape[1], z.shape[1]]} "
                             f"or [q k]; got {list(pattern.shape)}")
        return einops.einsum(p, stored["v"], "batch head q k, batch k head d_head -> batch q head d_head")

    return [(f"blocks.{layer}.attn.hook_v", keep_v), (f"blocks.{layer}.attn.hook_z", replace_z)]


def uniform_causal_pattern(n_ctx: int, *, device: str | torch.device | None = None,
                           dtype: torch.dtype = torch.float32) -> Float[Tensor, "q k"]:
    """Each query attends equally to itself and every earlier position (on `device`, in `dtype`)."""
    checks.count(n_ctx, "n_ctx")
    mask = torch.tril(torch.ones(n_ctx, n_ctx, device=device, dtype=dtype))
    return mask / mask.sum(-1, keepdim=True)


def last_query_pattern(scores: Float[Tensor, "batch k"], n_heads: int = 1) -> Float[Tensor, "batch head k k"]:
    """A full causal pattern whose last query row is softmax(`scores`); earlier rows uniform (they do not reach
    the last position's logits in a 1-layer model)."""
    checks.tensor(scores, "scores", ndim=2, finite=False)
    checks.count(n_heads, "n_heads")
    if scores.isnan().any() or (scores == float("inf")).any():
        raise ValueError("scores holds NaN or +inf; pass finite scores (-inf masks a key)")
    n = scores.shape[-1]
    pattern = uniform_causal_pattern(n, device=scores.device, dtype=scores.dtype).expand(len(scores), n_heads, n, n).clone()
    pattern[:, :, -1] = scores.softmax(-1)[:, None]
    return pattern


def ablate_hooks(name: str, how: str, reference: Tensor, dim: int = 0, seed: int = 0) -> list[Hook]:
    """Hooks replacing the activation at hook `name` by zeros, by its mean along `dim` of `reference`, or by
    `reference` resampled along `dim` (another list for dim 0, another position for dim 1). `reference` is the
    clean activation of the same lists (e.g. `cache[name]`). A `hook_pattern` goes through `set_pattern_hooks`."""
    hows = ("zero", "mean", "resample")
    if how not in hows:
        raise ValueError(f"how must be one of {hows}, got {how!r}")
    checks.tensor(reference, "reference")
    dim = checks.index(dim, "dim", reference.ndim, of=f" (reference has shape {tuple(reference.shape)})", negative=True)
    perm = torch.randperm(reference.shape[dim], generator=torch.Generator().manual_seed(seed)).to(reference.device)
    new = {"zero": lambda r: torch.zeros_like(r), "mean": lambda r: r.mean(dim, keepdim=True).expand_as(r),
           "resample": lambda r: r.index_select(dim, perm)}[how](reference)
    if name.endswith("hook_pattern"):
        return set_pattern_hooks(new, layer=int(name.split(".")[1]))

    def replace(act: Tensor, hook) -> Tensor:
        if act.shape != new.shape:
            raise ValueError(f"{name}: the model's activation has shape {tuple(act.shape)}, reference {tuple(new.shape)}; "
                             "pass the clean activation of the same lists")
        return new
    return [(name, replace)]


def predict_last(model: nn.Module, tokens: Int[Tensor, "batch pos"], fwd_hooks: list[Hook] = ()) -> Int[Tensor, "batch"]:
    """The model's answer, the argmax of the last position's logits, with `fwd_hooks` in place."""
    _tokens(checks.transformer_lens_model(model), tokens)
    with torch.no_grad():
        return model.run_with_hooks(tokens.to(checks.placement(model)[0]), fwd_hooks=list(fwd_hooks))[:, -1].argmax(-1)


@torch.no_grad()
def patch_by_position(model: nn.Module, corrupt: Int[Tensor, "batch pos"], clean_cache, hook_names: list[str],
                      metric: Callable[[Tensor], Tensor]) -> Float[Tensor, "hook pos"]:
    """metric(logits) of the corrupt run with one hook's clean activation patched in at one position, for each
    hook and position (dim 1 of the activation). Same as transformer_lens.patching, without its progress bars."""
    _tokens(checks.transformer_lens_model(model), corrupt, "corrupt")
    if isinstance(hook_names, str) or not hook_names:
        raise ValueError(f"hook_names must be a non-empty list of hook names, got {hook_names!r}")
    n_pos = corrupt.shape[1]
    corrupt = corrupt.to(checks.placement(model)[0])
    out = torch.zeros(len(hook_names), n_pos)
    for i, name in enumerate(hook_names):
        clean = clean_cache[name]
        if clean.shape[0] != corrupt.shape[0]:
            raise ValueError(f"clean cache holds {clean.shape[0]} lists at {name!r}, corrupt has {corrupt.shape[0]}")
        for p in range(n_pos):
            def hook(act: Tensor, hook, p=p, clean=clean) -> Tensor:
                act = act.clone()
                act[:, p] = clean[:, p]
                return act
            value = metric(model.run_with_hooks(corrupt, fwd_hooks=[(name, hook)]))
            if isinstance(value, Tensor) and value.numel() != 1:
                raise ValueError(f"metric must return one number per run, got a tensor of shape {tuple(value.shape)}; "
                                 "average it over the batch")
            out[i, p] = value
    return out
