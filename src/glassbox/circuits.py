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
from dataclasses import dataclass

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
    Without a final LayerNorm it is W_U itself."""
    if not hasattr(getattr(model, "cfg", None), "normalization_type") or not hasattr(model, "W_U"):
        raise TypeError(f"model must be a TransformerLens model with .cfg and .W_U, got {type(model).__name__}")
    if model.cfg.normalization_type is None:
        return model.W_U
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
    cfg = model.cfg
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
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
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
    """Average of `values` (e.g. attention to each key) grouped by the token at that place; NaN where absent."""
    checks.tensor(values, "values")
    checks.count(d_vocab, "d_vocab")
    if not isinstance(tokens, Tensor) or values.shape != tokens.shape:
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"values {tuple(values.shape)} and tokens {got} must have the same shape")
    checks.tokens(tokens, "tokens", ndim=tokens.ndim, d_vocab=d_vocab)
    sums = torch.zeros(d_vocab).index_add_(0, tokens.flatten(), values.flatten().float())
    counts = torch.bincount(tokens.flatten(), minlength=d_vocab).float()
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


def uniform_causal_pattern(n_ctx: int) -> Float[Tensor, "q k"]:
    """Each query attends equally to itself and every earlier position."""
    checks.count(n_ctx, "n_ctx")
    mask = torch.tril(torch.ones(n_ctx, n_ctx))
    return mask / mask.sum(-1, keepdim=True)


def last_query_pattern(scores: Float[Tensor, "batch k"], n_heads: int = 1) -> Float[Tensor, "batch head k k"]:
    """A full causal pattern whose last query row is softmax(`scores`); earlier rows uniform (they do not reach
    the last position's logits in a 1-layer model)."""
    checks.tensor(scores, "scores", ndim=2, finite=False)
    checks.count(n_heads, "n_heads")
    if scores.isnan().any() or (scores == float("inf")).any():
        raise ValueError("scores holds NaN or +inf; pass finite scores (-inf masks a key)")
    n = scores.shape[-1]
    pattern = uniform_causal_pattern(n).expand(len(scores), n_heads, n, n).clone()
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
    perm = torch.randperm(reference.shape[dim], generator=torch.Generator().manual_seed(seed))
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
        return model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))[:, -1].argmax(-1)


@torch.no_grad()
def patch_by_position(model: nn.Module, corrupt: Int[Tensor, "batch pos"], clean_cache, hook_names: list[str],
                      metric: Callable[[Tensor], Tensor]) -> Float[Tensor, "hook pos"]:
    """metric(logits) of the corrupt run with one hook's clean activation patched in at one position, for each
    hook and position (dim 1 of the activation). Same as transformer_lens.patching, without its progress bars."""
    _tokens(checks.transformer_lens_model(model), corrupt, "corrupt")
    if isinstance(hook_names, str) or not hook_names:
        raise ValueError(f"hook_names must be a non-empty list of hook names, got {hook_names!r}")
    n_pos = corrupt.shape[1]
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


def make_flip_pairs(tokens: Int[Tensor, "batch pos"], position: int, vocab: int, task: str = "median",
                    seed: int = 0) -> Int[Tensor, "batch pos"]:
    """Corrupted copies of `tokens`: the value at `position` redrawn, uniformly among the values that change the
    answer (median or min). Lists where no single value at `position` can change it come back unchanged."""
    from glassbox.data import list_targets

    checks.tokens(tokens, "tokens", d_vocab=checks.count(vocab, "vocab"))
    checks.index(position, "position", tokens.shape[1], of=f" (the lists have {tokens.shape[1]} positions)", negative=True)
    n, length = tokens.shape
    trials = tokens[:, None, :].repeat(1, vocab, 1)
    trials[:, :, position] = torch.arange(vocab)
    answers = list_targets(trials.reshape(-1, length), task).reshape(n, vocab)
    changes = answers != list_targets(tokens, task)[:, None]
    weights = changes.float() + (~changes.any(1, keepdim=True)).float() * (torch.arange(vocab) == tokens[:, [position]])
    new = torch.multinomial(weights, 1, generator=torch.Generator().manual_seed(seed))[:, 0]
    corrupt = tokens.clone()
    corrupt[:, position] = new
    return corrupt


# ---------------------------------------------------------------------------------------------
# The tent hypothesis for the median: a token x writes a logit row -c|m - x| (+ bonus at m = x).

@dataclass(frozen=True)
class TentFit:
    c: float  # slope: logit lost per unit distance |m - x|
    bonus: float  # extra logit at m = x (0 when not fitted)
    r2: float  # share of the table's variance (rows centred: a row offset changes no argmax) explained
    column_residual: Float[Tensor, "d_vocab"]  # mean misfit per output m: a preference for m the tent lacks


def tent_table(d_vocab: int, c: float = 1.0, bonus: float = 0.0) -> Float[Tensor, "d_vocab d_vocab"]:
    """The idealised OV table T[x, m] = -c|m - x| + bonus [m = x]."""
    checks.count(d_vocab, "d_vocab")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (c, bonus)):
        raise ValueError(f"c and bonus must be finite numbers, got c={c!r}, bonus={bonus!r}")
    idx = torch.arange(d_vocab, dtype=torch.float32)
    return -c * (idx[None, :] - idx[:, None]).abs() + bonus * torch.eye(d_vocab)


def fit_tent(table: Float[Tensor, "d_vocab d_vocab"], bonus: bool = False) -> TentFit:
    """Least-squares fit T[x, m] ~ r_x - c|m - x| (+ bonus [m = x]) with a free offset r_x per row."""
    if table.ndim != 2 or table.shape[0] != table.shape[1]:
        raise ValueError(f"expected a square token -> logit table [d_vocab d_vocab], got shape {tuple(table.shape)}")
    checks.tensor(table, "table")
    n = table.shape[0]
    centred = table - table.mean(1, keepdim=True)
    features = [tent_table(n, c=-1.0)] + ([torch.eye(n)] if bonus else [])
    X = torch.stack([f - f.mean(1, keepdim=True) for f in features], -1).reshape(n * n, -1)
    coef = torch.linalg.lstsq(X.double(), centred.reshape(-1, 1).double()).solution[:, 0]
    residual = centred.reshape(-1).double() - X.double() @ coef
    r2 = 1 - residual.pow(2).sum() / centred.double().pow(2).sum()
    columns = residual.reshape(n, n).mean(0).float()
    return TentFit(c=-float(coef[0]), bonus=float(coef[1]) if bonus else 0.0, r2=float(r2), column_residual=columns)


def get_local_slopes(table: Float[Tensor, "d_vocab d_vocab"], window: int = 10) -> Float[Tensor, "d_vocab"]:
    """Per row x: the mean |T[x, m+1] - T[x, m]| over the steps within `window` of m = x (a tent's c, row by row)."""
    checks.tensor(table, "table")
    n = table.shape[0] if table.ndim else 0
    if table.ndim != 2 or table.shape[1] != n or window < 1:
        raise ValueError(f"expected a square table [d_vocab d_vocab] and window >= 1, got {tuple(table.shape)}, {window}")
    steps = (table[:, 1:] - table[:, :-1]).abs()  # [x, m] for the step m -> m + 1
    idx = torch.arange(n - 1)
    near = ((idx[None, :] - torch.arange(n)[:, None]).abs() < window) | ((idx[None, :] + 1 - torch.arange(n)[:, None]).abs() < window)
    return (steps * near).sum(1) / near.sum(1)


class AveragingModel(nn.Module):
    """A hand-built 'attention-only' model: uniform causal attention over an OV table.

    logits[b, p] = mean over j <= p of table[tokens[b, j]]; with `tent_table` its argmax is the median."""

    def __init__(self, table: Float[Tensor, "d_vocab d_vocab_out"]):
        super().__init__()
        self.register_buffer("table", checks.tensor(table, "table", ndim=2).float())

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab_out"]:
        if tokens.dtype not in (torch.int64, torch.int32) or tokens.ndim != 2:
            raise TypeError(f"expected int tokens [batch pos], got {tokens.dtype} of shape {tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= len(self.table)):
            raise ValueError(f"tokens must be in 0..{len(self.table) - 1} (the table's rows), got values from "
                             f"{tokens.min().item()} to {tokens.max().item()}")
        rows = self.table[tokens]  # batch pos vocab
        return rows.cumsum(1) / torch.arange(1, tokens.shape[1] + 1, device=tokens.device)[:, None]



# ---------------------------------------------------------------------------------------------
# Putting a hypothesis into the trained network, one part at a time: the last position's logits are
# (sum_j a_j T[x_j, j] + direct) / s + bias, exactly; replace any of the parts and compare.

@dataclass(frozen=True)
class LastPositionTerms:
    pattern: Float[Tensor, "batch pos"]  # the last query's attention to each position (head 0)
    ov: Float[Tensor, "batch pos d_vocab_out"]  # what each position's token writes: T[x_j, j] (exact OV table rows)
    direct: Float[Tensor, "batch d_vocab_out"]  # skip connection: last token + last position embedding + b_O, through W_U
    scale: Float[Tensor, "batch 1"]  # the list's final-LayerNorm scale (divides everything but the bias)
    bias: Float[Tensor, "d_vocab_out"]  # ln_final.b W_U + b_U


@torch.no_grad()
def get_last_position_terms(model: nn.Module, tokens: Int[Tensor, "batch pos"]) -> LastPositionTerms:
    """The parts of a 1-layer, 1-head attention-only model's last-position logits; `assemble_logits` of them
    reproduces the model's logits exactly."""
    _check_one_layer(model)
    if model.cfg.n_heads != 1:
        raise ValueError(f"the terms are per head; this model has {model.cfg.n_heads} heads, expected 1")
    _tokens(model, tokens)
    names = ["blocks.0.attn.hook_pattern", "ln_final.hook_scale", "hook_embed", "hook_pos_embed"]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    T = get_ov_table(model)  # token pos vocab
    ov = T[tokens, torch.arange(tokens.shape[1])]  # batch pos vocab
    resid = cache["hook_embed"][:, -1] + cache["hook_pos_embed"][:, -1] + model.b_O[0]
    bias = model.b_U + (model.ln_final.b @ model.W_U if model.cfg.normalization_type == "LN" else 0)
    return LastPositionTerms(pattern=cache["blocks.0.attn.hook_pattern"][:, 0, -1], ov=ov, direct=resid @ get_W_U_eff(model),
                             scale=cache["ln_final.hook_scale"][:, -1], bias=bias)


def assemble_logits(terms: LastPositionTerms, *, pattern: Tensor | None = None, ov: Tensor | None = None,
                    direct: Tensor | None = None, bias: Tensor | None = None) -> Float[Tensor, "batch d_vocab_out"]:
    """(sum_j a_j ov_j + direct) / scale + bias, with any part replaced by the given one (broadcast to its shape)."""
    a = terms.pattern if pattern is None else _replacement(pattern, "pattern", terms.pattern.shape).expand_as(terms.pattern)
    rows = terms.ov if ov is None else _replacement(ov, "ov", terms.ov.shape, exact=True)
    d = terms.direct if direct is None else _replacement(direct, "direct", terms.direct.shape)
    b = terms.bias if bias is None else _replacement(bias, "bias", terms.bias.shape)
    return (einops.einsum(a, rows, "batch pos, batch pos vocab -> batch vocab") + d) / terms.scale + b


def tent_rows(terms: LastPositionTerms, tokens: Int[Tensor, "batch pos"], c: float,
              column: Float[Tensor, "d_vocab_out"] | None = None) -> Float[Tensor, "batch pos d_vocab_out"]:
    """The OV rows the tent hypothesis predicts: each row's own mean, plus -c|m - x| (centred), plus an optional
    preference per output m shared by all rows (e.g. a tent fit's column residual)."""
    vocab = terms.ov.shape[-1]
    checks.tokens(tokens, "tokens", d_vocab=vocab)
    if tokens.shape != terms.pattern.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} must be the lists the terms were computed on, "
                         f"{tuple(terms.pattern.shape)}")
    if column is not None:
        _replacement(column, "column", torch.Size([vocab]), exact=True)
    tent = tent_table(vocab, c=c)[tokens]  # batch pos vocab
    rows = terms.ov.mean(-1, keepdim=True) + tent - tent.mean(-1, keepdim=True)
    return rows if column is None else rows + column


def logit_fit(logits: Float[Tensor, "batch vocab"], reference: Float[Tensor, "batch vocab"],
              answers: Int[Tensor, "batch"]) -> dict[str, float]:
    """How well `logits` reproduce `reference` (the trained model's): accuracy and agreement of the argmax,
    mean cross-entropy, mean margin (answer minus best other logit) and its share of the reference's,
    and R^2 of the logits with each list's mean removed (a constant per list changes no probability)."""
    checks.tensor(logits, "logits", ndim=2)
    _replacement(reference, "reference", logits.shape, exact=True)
    checks.tokens(answers, "answers", ndim=1, d_vocab=logits.shape[1])
    if answers.shape != logits.shape[:1]:
        raise ValueError(f"answers must hold one class index per list, shape {tuple(logits.shape[:1])}")
    def margin(lg: Tensor) -> Tensor:
        other = lg.scatter(1, answers[:, None], -torch.inf).amax(-1)
        return lg.gather(1, answers[:, None])[:, 0] - other
    centre = lambda t: t - t.mean(-1, keepdim=True)
    residual = (centre(logits) - centre(reference)).pow(2).sum()
    return {"accuracy": (logits.argmax(-1) == answers).float().mean().item(),
            "agreement": (logits.argmax(-1) == reference.argmax(-1)).float().mean().item(),
            "loss": torch.nn.functional.cross_entropy(logits, answers).item(),
            "margin": margin(logits).mean().item(),
            "margin_kept": (margin(logits).mean() / margin(reference).mean()).item(),
            "logit_r2": (1 - residual / centre(reference).pow(2).sum()).item()}
