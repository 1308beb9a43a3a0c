"""Reading a TransformerLens language model: logit lens, direct logit attribution, head scores,
composition scores, and the induction toolkit (repeated sequences, in-context loss, head ablation,
path patching). Works on any TransformerLens model (`HookedTransformer` or `TransformerBridge`) with
standard hook names: nothing here assumes the journal built it.

    _, cache = model.run_with_cache(tokens)
    logits_by_layer = logit_lens(model, cache)                  # [layer batch pos d_vocab], last = model output
    parts, labels = residual_components(model, cache)           # embed, pos, every head, b_O, MLPs: sum = resid
    dla = direct_logit_attribution(model, cache, parts, tokens[:, 1:])   # [component batch pos]
    prev = previous_token_score(cache["blocks.0.attn.hook_pattern"])     # [head]
    k_comp = composition_scores(model, "k")                     # [head_in_layer_0 head_in_layer_1] for 2 layers

Conventions (TransformerLens): row vectors, `x @ W`; W_OV = W_V @ W_O and W_QK = W_Q @ W_K^T per head.
"""
from collections.abc import Callable

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

Hook = tuple[str, Callable]
Head = tuple[int, int]  # (layer, head)


# ---- the residual stream, layer by layer -----------------------------------------------------------

def accumulated_resid(cache, n_layers: int) -> tuple[Float[Tensor, "layer batch pos d_model"], list[str]]:
    """The residual stream before each layer and after the last: n_layers + 1 snapshots, with labels."""
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]
    labels = [f"before layer {layer}" for layer in range(n_layers)] + ["final"]
    return torch.stack([cache[name] for name in names]), labels


def unembed(model: nn.Module, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Logits of a residual-stream vector: the final LayerNorm (recomputed on `resid`), W_U and b_U."""
    return model.ln_final(resid) @ model.W_U + model.b_U


@torch.no_grad()
def logit_lens(model: nn.Module, cache) -> Float[Tensor, "layer batch pos d_vocab"]:
    """Logit lens: each snapshot of the residual stream read with the model's own unembedding, as if the
    remaining layers were skipped. The last row is exactly the model's output."""
    resid, _ = accumulated_resid(cache, model.cfg.n_layers)
    return unembed(model, resid)


def head_outputs(model: nn.Module, cache, layer: int) -> Float[Tensor, "batch pos head d_model"]:
    """What each head of `layer` writes into the residual stream (z @ W_O, without the shared b_O)."""
    return einops.einsum(cache[f"blocks.{layer}.attn.hook_z"], model.W_O[layer],
                         "batch pos head d_head, head d_head d_model -> batch pos head d_model")


@torch.no_grad()
def residual_components(model: nn.Module, cache) -> tuple[Float[Tensor, "component batch pos d_model"], list[str]]:
    """The final residual stream split into what wrote it: token and position embeddings, then per layer
    every head (L{l}H{h}), the attention bias b_O (L{l} b_O) and the MLP (L{l} MLP). They sum to it exactly."""
    parts, labels = [cache["hook_embed"], cache["hook_pos_embed"]], ["embed", "pos_embed"]
    for layer in range(model.cfg.n_layers):
        heads = head_outputs(model, cache, layer)
        parts += list(heads.unbind(2)) + [model.b_O[layer].expand_as(parts[0])]
        labels += [f"L{layer}H{h}" for h in range(model.cfg.n_heads)] + [f"L{layer} b_O"]
        if not model.cfg.attn_only:
            parts.append(cache[f"blocks.{layer}.hook_mlp_out"])
            labels.append(f"L{layer} MLP")
    return torch.stack(parts), labels


def component_layers(labels: list[str]) -> list[int]:
    """The layer of each component label of `residual_components` (-1 for the embeddings)."""
    return [int(label[1:].split("H")[0].split(" ")[0]) if label.startswith("L") else -1 for label in labels]


@torch.no_grad()
def direct_logit_attribution(model: nn.Module, cache, components: Float[Tensor, "component batch pos d_model"],
                             targets: Int[Tensor, "batch n"], relative: bool = False) -> Float[Tensor, "component batch n"]:
    """Each component's direct effect on the logit of `targets` (the first n positions), with the final
    LayerNorm's centring and its scale taken from the cache (the scale of the whole stream, so the parts
    sum to the centred-stream logit): logit = sum over components + logit_bias. `relative`: the effect
    on the target's logit minus the mean logit (what softmax sees); the bias then loses its mean too."""
    n = targets.shape[1]
    x = components[:, :, :n]
    x = x - x.mean(-1, keepdim=True) if model.cfg.normalization_type in ("LN", "LNPre") else x
    scale = cache["ln_final.hook_scale"][:, :n] if model.cfg.normalization_type is not None else 1.0
    w = model.ln_final.w if model.cfg.normalization_type == "LN" else torch.ones(model.cfg.d_model)
    W_U = model.W_U - model.W_U.mean(1, keepdim=True) if relative else model.W_U
    directions = (w[:, None] * W_U)[:, targets]  # d_model batch n
    return einops.einsum(x / scale, directions, "comp batch n d_model, d_model batch n -> comp batch n")


def logit_bias(model: nn.Module) -> Float[Tensor, "d_vocab"]:
    """The part of every logit that no component writes: ln_final.b @ W_U + b_U."""
    has_bias = model.cfg.normalization_type == "LN"
    return model.b_U + (model.ln_final.b @ model.W_U if has_bias else 0)


# ---- attention head scores from patterns ------------------------------------------------------------

def previous_token_score(pattern: Float[Tensor, "batch head q k"]) -> Float[Tensor, "head"]:
    """Mean attention from each position to the one just before it (positions 1..end)."""
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, -1))


def current_token_score(pattern: Float[Tensor, "batch head q k"]) -> Float[Tensor, "head"]:
    """Mean attention from each position to itself (positions 1..end; position 0 has no choice)."""
    return pattern.diagonal(dim1=-2, dim2=-1)[..., 1:].mean((0, -1))


def first_token_score(pattern: Float[Tensor, "batch head q k"]) -> Float[Tensor, "head"]:
    """Mean attention to position 0 (a 'resting' position) from positions 1..end."""
    return pattern[..., 1:, 0].mean((0, -1))


def induction_targets(tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch q k"]:
    """1 where key k (< q... and >= 1) follows an earlier copy of the query's token: tokens[k - 1] == tokens[q]."""
    same = tokens[:, :, None] == tokens[:, None, :]  # batch q k: tokens[q] == tokens[k]
    shifted = torch.zeros_like(same)
    shifted[:, :, 1:] = same[:, :, :-1]  # tokens[q] == tokens[k - 1]
    causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool).tril(-1)  # k < q
    return (shifted & causal).float()


def prefix_matching_score(pattern: Float[Tensor, "batch head q k"], tokens: Int[Tensor, "batch pos"]
                          ) -> Float[Tensor, "head"]:
    """Mean attention a query pays to the tokens that followed earlier copies of its own token (the
    induction pattern), over the queries that have such an earlier copy."""
    targets = induction_targets(tokens)
    has = targets.sum(-1) > 0  # batch q
    mass = einops.einsum(pattern, targets, "batch head q k, batch q k -> batch head q")
    return (mass * has[:, None]).sum((0, 2)) / has.sum().clamp(min=1)


def mean_attention_distance(pattern: Float[Tensor, "batch head q k"]) -> Float[Tensor, "head"]:
    """Mean of q - k under each head's attention: how far back a head looks, in tokens."""
    n = pattern.shape[-1]
    distance = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).clamp(min=0).float()
    return (pattern * distance).sum(-1).mean((0, -1))


@torch.no_grad()
def copying_score(model: nn.Module, layer: int, head: int) -> float:
    """Olsson et al.'s copying score of a head's full OV circuit W_E W_V W_O W_U (LayerNorms left out):
    sum of eigenvalues / sum of their absolute values; near 1 when the head raises the logit of the
    token it attends to."""
    W = model.W_E @ model.W_V[layer, head] @ model.W_O[layer, head] @ model.W_U  # d_vocab d_vocab
    eig = torch.linalg.eigvals(W)
    return (eig.sum().real / eig.abs().sum()).item()


# ---- composition -----------------------------------------------------------------------------------

def W_OV(model: nn.Module, layer: int) -> Float[Tensor, "head d_model d_model"]:
    """Each head's OV matrix W_V @ W_O (row-vector convention: x @ W_OV is what the head writes)."""
    return model.W_V[layer] @ model.W_O[layer]


def W_QK(model: nn.Module, layer: int) -> Float[Tensor, "head d_model d_model"]:
    """Each head's QK matrix W_Q @ W_K^T (score = x_q @ W_QK @ x_k^T)."""
    return model.W_Q[layer] @ model.W_K[layer].transpose(-1, -2)


def composition_score(W_A: Float[Tensor, "... d d"], W_B: Float[Tensor, "... d d"]) -> Float[Tensor, "..."]:
    """||W_A @ W_B||_F / (||W_A||_F ||W_B||_F): how much of what W_A writes W_B reads (A Mathematical Framework)."""
    norm = lambda M: M.pow(2).sum((-1, -2)).sqrt()
    return norm(W_A @ W_B) / (norm(W_A) * norm(W_B))


@torch.no_grad()
def composition_scores(model: nn.Module, kind: str, layer_a: int = 0, layer_b: int = 1) -> Float[Tensor, "head_a head_b"]:
    """Q-, K- or V-composition of every head of `layer_a` (writer) with every head of `layer_b` (reader).
    K: the writer's output read by the reader's keys, ||W_QK^B (W_OV^A)^T|| (and Q: by its queries,
    ||W_OV^A W_QK^B||; V: by its values, ||W_OV^A W_OV^B||), each over the product of the two norms."""
    A = W_OV(model, layer_a)[:, None]  # head_a 1 d d
    B = {"q": W_QK(model, layer_b), "k": W_QK(model, layer_b).transpose(-1, -2), "v": W_OV(model, layer_b)}
    if kind not in B:
        raise ValueError(f"kind must be 'q', 'k' or 'v', got {kind!r}")
    return composition_score(A, B[kind][None])


def random_composition_scores(model: nn.Module, n: int = 200, seed: int = 0) -> Float[Tensor, "n"]:
    """Composition scores of `n` pairs of random matrices shaped like the model's heads (Gaussian W_V W_O
    and W_Q W_K^T): what two unrelated heads score by chance."""
    gen = torch.Generator().manual_seed(seed)
    d, h = model.cfg.d_model, model.cfg.d_head
    rand = lambda *shape: torch.randn(n, *shape, generator=gen)
    return composition_score(rand(d, h) @ rand(h, d), rand(d, h) @ rand(h, d))


def composition_baseline(model: nn.Module, n: int = 200, seed: int = 0) -> float:
    """Mean of `random_composition_scores`: the score two unrelated heads get by chance."""
    return random_composition_scores(model, n, seed).mean().item()


# ---- induction: data, loss, ablation, path patching ------------------------------------------------

def repeated_tokens(n: int, length: int, d_vocab: int, seed: int = 0) -> Int[Tensor, "n two_length"]:
    """n sequences of `length` uniformly random tokens followed by the same tokens again."""
    r = torch.randint(0, d_vocab, (n, length), generator=torch.Generator().manual_seed(seed))
    return torch.cat([r, r], 1)


def per_token_loss(logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos_minus_1"]:
    """Cross-entropy (nats) of predicting tokens[:, i + 1] from logits[:, i]."""
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")


def copy_losses(losses: Float[Tensor, "batch pos_minus_1"], length: int) -> tuple[float, float]:
    """Mean loss on the first copy (predicting tokens 1..length-1) and on the second copy (predicting
    tokens length+1..2 length-1, whose earlier copy is in context) of `repeated_tokens` sequences. The
    first token of the second copy (predicted from the first copy's last token) is in neither."""
    return losses[:, : length - 1].mean().item(), losses[:, length:].mean().item()


def head_ablation_hooks(heads: list[Head], means: dict[int, Float[Tensor, "pos head d_head"]] | None = None
                        ) -> list[Hook]:
    """Hooks for `run_with_hooks` replacing the output z of `heads` by `means[layer]` (its mean over a
    reference batch, per position) or by zero when `means` is None."""
    hooks = []
    for layer in sorted({layer for layer, _ in heads}):
        chosen = [h for lay, h in heads if lay == layer]

        def hook(z: Tensor, hook, layer=layer, chosen=chosen) -> Tensor:
            z = z.clone()
            z[:, :, chosen] = 0 if means is None else means[layer][None, : z.shape[1], chosen]
            return z
        hooks.append((f"blocks.{layer}.attn.hook_z", hook))
    return hooks


def mean_z(cache, n_layers: int) -> dict[int, Float[Tensor, "pos head d_head"]]:
    """Mean head outputs z over the batch of a cache, per layer: the reference for mean ablation."""
    return {layer: cache[f"blocks.{layer}.attn.hook_z"].mean(0) for layer in range(n_layers)}


@torch.no_grad()
def path_patch_logits(model: nn.Module, clean: Int[Tensor, "batch pos"], corrupt: Int[Tensor, "batch pos"],
                      sender: Head, receiver: Head | list[Head], into: str = "k") -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of the clean run in which only the direct path sender -> receiver's keys (or queries or
    values, `into`) carries the sender's output on `corrupt`: the receiver's input is recomputed through
    its LayerNorm from the clean residual stream plus (corrupt - clean) sender output; everything else is
    clean. `receiver` may be a list of heads of one layer, patched together."""
    receivers = receiver if isinstance(receiver, list) else [receiver]
    if len({layer for layer, _ in receivers}) != 1:
        raise ValueError(f"the receivers must share one layer, got {receivers}")
    (ls, hs), lr, hr = sender, receivers[0][0], [h for _, h in receivers]
    if ls >= lr:
        raise ValueError(f"the sender's layer ({ls}) must come before the receiver's ({lr})")
    if into not in ("q", "k", "v"):
        raise ValueError(f"into must be 'q', 'k' or 'v', got {into!r}")
    names = lambda n: n in (f"blocks.{ls}.attn.hook_z", f"blocks.{lr}.hook_resid_pre")
    _, clean_cache = model.run_with_cache(clean, names_filter=names)
    _, corrupt_cache = model.run_with_cache(corrupt, names_filter=names)
    delta = head_outputs(model, corrupt_cache, ls)[:, :, hs] - head_outputs(model, clean_cache, ls)[:, :, hs]
    x = model.blocks[lr].ln1(clean_cache[f"blocks.{lr}.hook_resid_pre"] + delta)
    W, b = {"q": (model.W_Q, model.b_Q), "k": (model.W_K, model.b_K), "v": (model.W_V, model.b_V)}[into]
    patched = einops.einsum(x, W[lr, hr], "batch pos d_model, head d_model d_head -> batch pos head d_head") + b[lr, hr]

    def hook(act: Tensor, hook) -> Tensor:
        act = act.clone()
        act[:, :, hr] = patched
        return act
    return model.run_with_hooks(clean, fwd_hooks=[(f"blocks.{lr}.attn.hook_{into}", hook)])


@torch.no_grad()
def head_scores(model: nn.Module, tokens: Int[Tensor, "batch pos"]) -> dict[str, Float[Tensor, "layer head"]]:
    """Every head's previous-token, current-token, first-token and prefix-matching scores and its mean
    attention distance on `tokens` (one forward pass; only the patterns are cached)."""
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
    rules = [("induction", induction), ("previous-token", scores["previous-token"]),
             ("first-token", scores["first-token"]), ("current-token", scores["current-token"])]
    return [[next((name for name, s in rules if s[layer, head] > threshold), "mixed")
             for head in range(induction.shape[1])] for layer in range(induction.shape[0])]
