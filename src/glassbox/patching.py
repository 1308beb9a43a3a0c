"""Circuits in TransformerLens models as Wang et al. (2022, "Interpretability in the Wild") find and judge them:
path patching from a *set* of sender heads into receivers' queries, keys or values (or into the logits), and
the three criteria of a circuit under mean ablation over a reference distribution: faithfulness,
completeness and minimality. Works on any TransformerLens model (`HookedTransformer` or
`TransformerBridge`) with standard hook names; tested on a `HookedTransformer` built from a config.

    logits = path_patch(model, clean, corrupt, senders=[(0, 1), (1, 2)], receivers=[(2, 0)], into="q",
                        positions=end)                    # receivers' queries at `end` see the senders' corrupt output
    logits = path_patch(model, clean, corrupt, senders=[(2, 0)])           # the sender's direct path to the logits
    effects = path_effects(model, clean, corrupt, metric, all_heads(model), receivers=[(2, 0)], into="v")
                                                           # each head alone into (2, 0)'s values: share of the metric moved
    means = group_means(model, reference, groups)          # per-group, per-position mean of every head's z
    F = lambda keep: performance(model, clean, metric, keep, means, groups)   # every other head mean-ablated
    completeness(model, clean, metric, circuit, None, means, groups, cache={})  # every subset K of the circuit
    performance_table(model, clean, metric, means, groups, cache)  # attention-only: F of every set of heads kept, at once

Path patching here is the *direct* path: a receiver's input is recomputed from the clean residual stream
plus the senders' (corrupt - clean) outputs, everything else clean. In an attention-only model this is
exactly Wang et al.'s definition (freeze every head but the senders, record the receivers' inputs, patch
them into a clean run); with MLPs it also freezes the MLPs between sender and receiver, which Wang et al. let
recompute.
"""
import itertools
from collections.abc import Callable

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from glassbox import checks, lens

Head = tuple[int, int]  # (layer, head)
Hook = tuple[str, Callable]
Metric = Callable[[Float[Tensor, "batch pos d_vocab"]], float]


def _check_tokens(model: nn.Module, **named: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in named.items()}
    for name, t in named.items():
        checks.tokens(t, name, d_vocab=model.cfg.d_vocab, n_ctx=model.cfg.n_ctx)
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{' and '.join(shapes)} must have one shape (one corrupted sequence per clean one), got {shapes}")


def _positions(positions: Tensor | None, batch: int, n_pos: int) -> Tensor | None:
    if positions is None:
        return None
    checks.tensor(positions, "positions", ndim=1, floating=False)
    if len(positions) != batch or positions.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"positions must be one int position per sequence, shape ({batch},), got {tuple(positions.shape)} "
                         f"{positions.dtype}")
    if positions.min() < 0 or positions.max() >= n_pos:
        raise ValueError(f"positions must lie in 0..{n_pos - 1}, got {positions.min().item()}..{positions.max().item()}")
    return positions.long()


def _at(positions: Tensor | None, batch: int, n_pos: int, device) -> Tensor:
    """[batch pos 1 1] mask of the positions to patch (all when None)."""
    if positions is None:
        return torch.ones(batch, n_pos, 1, 1, dtype=torch.bool, device=device)
    return (torch.arange(n_pos, device=device)[None] == positions.to(device)[:, None])[:, :, None, None]


@torch.no_grad()
def path_patch(model: nn.Module, clean: Int[Tensor, "batch pos"], corrupt: Int[Tensor, "batch pos"], senders: list[Head],
               receivers: list[Head] | None = None, into: str = "q", positions: Int[Tensor, "batch"] | None = None
               ) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of the clean run in which only the direct paths from `senders` (heads of any layers, together)
    to the receivers' `into` ('q', 'k' or 'v'; receivers in any layers after a sender) carry the senders'
    output on `corrupt`; with `receivers=None`, the direct paths to the logits. `positions` (one per sequence)
    limits the patch to the receivers' input (or the logits) at that position."""
    lens._model(model, "blocks", "W_Q", "W_K", "W_V", "W_O")
    senders = lens._heads(senders, None, model)
    if not senders:
        raise ValueError("senders is empty: name at least one (layer, head)")
    _check_tokens(model, clean=clean, corrupt=corrupt)
    positions = _positions(positions, *clean.shape)
    if getattr(model.cfg, "positional_embedding_type", "standard") == "shortformer":
        raise ValueError("path_patch recomputes inputs from the residual stream; a shortformer model adds positions to "
                         "queries and keys outside it: use positional_embedding_type 'standard', 'rotary' or 'alibi'")
    if receivers is not None:
        receivers = lens._heads(receivers, None, model)
        if not receivers:
            raise ValueError("receivers is an empty list: name at least one (layer, head), or None for the logits")
        if into not in ("q", "k", "v"):
            raise ValueError(f"into must be 'q', 'k' or 'v', got {into!r}")
        n_kv = getattr(model.cfg, "n_key_value_heads", None)
        if into != "q" and n_kv is not None and n_kv != model.cfg.n_heads:
            raise ValueError(f"path_patch into {into!r} needs one key/value head per query head; the model shares {n_kv} "
                             f"among {model.cfg.n_heads} (grouped-query attention): patch into 'q'")
        if min(layer for layer, _ in senders) >= max(layer for layer, _ in receivers):
            raise ValueError(f"no sender {senders} comes before a receiver {receivers}: a head reads only earlier layers")
    n_layers = model.cfg.n_layers
    final = f"blocks.{n_layers - 1}.hook_resid_post"
    sender_layers = sorted({layer for layer, _ in senders})
    want = {f"blocks.{layer}.attn.hook_z" for layer in sender_layers}
    read = {final} if receivers is None else {f"blocks.{layer}.hook_resid_pre" for layer, _ in receivers}
    _, clean_cache = model.run_with_cache(clean, names_filter=lambda n: n in want | read)
    _, corrupt_cache = model.run_with_cache(corrupt, names_filter=lambda n: n in want)
    deltas = {layer: (lens.head_outputs(model, corrupt_cache, layer) - lens.head_outputs(model, clean_cache, layer))
              for layer in sender_layers}  # batch pos head d_model

    def delta_before(layer: int) -> Tensor:
        return sum((deltas[ls][:, :, hs] for ls, hs in senders if ls < layer), torch.zeros_like(clean_cache[final]
                   if receivers is None else clean_cache[f"blocks.{layer}.hook_resid_pre"]))

    if receivers is None:
        logits = lens.unembed(model, clean_cache[final])
        mask = _at(positions, *clean.shape, clean.device)[..., 0]
        patched = lens.unembed(model, clean_cache[final] + delta_before(n_layers))
        return torch.where(mask, patched, logits)
    hooks = []
    for lr in sorted({layer for layer, _ in receivers}):
        hr = [h for layer, h in receivers if layer == lr]
        x = model.blocks[lr].ln1(clean_cache[f"blocks.{lr}.hook_resid_pre"] + delta_before(lr))
        W, b = {"q": model.W_Q, "k": model.W_K, "v": model.W_V}[into], lens._bias(model, f"b_{into.upper()}")
        new = einops.einsum(x, W[lr, hr], "batch pos d_model, head d_model d_head -> batch pos head d_head")
        new = new + b[lr, hr] if b is not None else new
        mask = _at(positions, *clean.shape, clean.device)

        def hook(act: Tensor, hook, hr=hr, new=new, mask=mask) -> Tensor:
            act = act.clone()
            act[:, :, hr] = torch.where(mask, new, act[:, :, hr])
            return act
        hooks.append((f"blocks.{lr}.attn.hook_{into}", hook))
    return model.run_with_hooks(clean, fwd_hooks=hooks)


@torch.no_grad()
def path_effects(model: nn.Module, clean: Int[Tensor, "batch pos"], corrupt: Int[Tensor, "batch pos"], metric: Metric,
                 senders: list[Head], receivers: list[Head] | None = None, into: str = "q",
                 positions: Int[Tensor, "batch"] | None = None) -> dict[Head, float]:
    """Each sender on its own: the change of `metric` when only its direct path into the receivers of later
    layers (`path_patch`; receivers=None: into the logits) sees its output on `corrupt`, as a share of the
    metric on `clean` (-1: the path carries all of it). A sender may also be a receiver (one tracing step can
    find a head that the step before found too); a sender with no receiver after it is left out."""
    senders = lens._heads(senders, None, lens._model(model, "blocks", "W_Q"))
    base = float(metric(model(clean)))
    if base == 0 or base != base:
        raise ValueError(f"metric on the clean input is {base}: shares of it are undefined; pick a metric that is non-zero there")
    out = {}
    for s in senders:
        later = None if receivers is None else [r for r in lens._heads(receivers, None, model) if r[0] > s[0]]
        if later == []:
            continue
        out[s] = (float(metric(path_patch(model, clean, corrupt, [s], later, into, positions))) - base) / abs(base)
    return out


# ---- mean ablation and Wang et al.'s three criteria ----------------------------------------------------

@torch.no_grad()
def group_means(model: nn.Module, reference: Int[Tensor, "batch pos"], groups: Int[Tensor, "batch"] | None = None
                ) -> dict[int, Float[Tensor, "group pos head d_head"]]:
    """Every head's mean output z over `reference`, per position and per group (e.g. per template, so that
    positions line up; Wang et al. mean-ablate over the ABC distribution of the same template). groups=None:
    one group. Groups are 0..max(groups); a group with no reference sequence is NaN (an error when used)."""
    _check_tokens(lens._model(model), reference=reference)
    groups = _groups(groups, len(reference))
    _, cache = model.run_with_cache(reference, names_filter=lambda n: n.endswith("attn.hook_z"))
    n_groups = int(groups.max()) + 1
    count = torch.zeros(n_groups, device=reference.device).index_add_(0, groups, torch.ones_like(groups, dtype=torch.float))
    out = {}
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"]
        total = torch.zeros(n_groups, *z.shape[1:], dtype=z.dtype, device=z.device).index_add_(0, groups.to(z.device), z)
        out[layer] = total / count.to(z.device)[:, None, None, None]
    return out


def _groups(groups: Tensor | None, batch: int) -> Tensor:
    if groups is None:
        return torch.zeros(batch, dtype=torch.long)
    checks.tensor(groups, "groups", ndim=1, floating=False)
    if len(groups) != batch or groups.dtype not in (torch.int64, torch.int32) or groups.min() < 0:
        raise ValueError(f"groups must hold one int >= 0 per sequence, shape ({batch},), got {tuple(groups.shape)} {groups.dtype}")
    return groups.long()


def knockout_hooks(model: nn.Module, keep: list[Head], means: dict[int, Float[Tensor, "group pos head d_head"]],
                   groups: Int[Tensor, "batch"] | None = None) -> list[Hook]:
    """Hooks replacing the output z of every head *not* in `keep` by its mean over the reference distribution
    (`group_means`), taken from each sequence's group."""
    keep = set(lens._heads(keep, None, model))
    hooks = []
    for layer in range(model.cfg.n_layers):
        off = [h for h in range(model.cfg.n_heads) if (layer, h) not in keep]
        if not off:
            continue
        if layer not in means:
            raise ValueError(f"means lacks layer {layer}: pass group_means of this model")

        def hook(z: Tensor, hook, layer=layer, off=off) -> Tensor:
            g = _groups(groups, z.shape[0])
            m = means[layer][g.to(means[layer].device), : z.shape[1]][:, :, off]
            if torch.isnan(m).any():
                raise ValueError(f"means of layer {layer} are NaN for some sequences' groups: every group used must "
                                 "have reference sequences")
            z = z.clone()
            z[:, :, off] = m.to(z.dtype)
            return z
        hooks.append((f"blocks.{layer}.attn.hook_z", hook))
    return hooks


@torch.no_grad()
def performance(model: nn.Module, tokens: Int[Tensor, "batch pos"], metric: Metric, keep: list[Head] | None,
                means: dict, groups: Int[Tensor, "batch"] | None = None, cache: dict | None = None) -> float:
    """F(keep): `metric` of the model's logits with every head outside `keep` mean-ablated. keep=None: the
    whole model, nothing ablated (F(M)). `cache`: a dict to remember F by set of heads kept, shared only by
    calls with the same model, tokens, metric, means and groups."""
    key = None if keep is None else frozenset(lens._heads(keep, None, model))
    if cache is not None and key in cache:
        return cache[key]
    if keep is None:
        value = float(metric(model(tokens)))
    else:
        value = float(metric(model.run_with_hooks(tokens, fwd_hooks=knockout_hooks(model, keep, means, groups))))
    if cache is not None:
        cache[key] = value
    return value


@torch.no_grad()
def performance_table(model: nn.Module, tokens: Int[Tensor, "batch pos"], metric: Metric, means: dict,
                      groups: Int[Tensor, "batch"] | None = None, cache: dict | None = None, max_heads: int = 12
                      ) -> dict[frozenset[Head], float]:
    """F(keep) (`performance`) for every set of heads kept, 2 ** (n_layers * n_heads) of them, in an attention-only
    model, at the cost of one run of each layer per setting of the layers before it (1 + 16 + 256 layer runs for
    3 layers of 4 heads, not 4096 forward passes): a layer's block is run once on each input, and every way of
    mean-ablating its heads is then its clean output plus (mean - z) @ W_O of the heads switched off, which is exact
    when the block is attention alone. `metric` receives the logits of the last position only ([batch 1 d_vocab]);
    the table is checked against a plain forward (F of every head) and a mean-ablated one (F of none), and refused
    when they differ. Fills `cache` (keyed as `performance` keys it, None for the whole model) and returns the table."""
    lens._model(model, "blocks", "W_O", "W_U")
    if not getattr(model.cfg, "attn_only", False):
        raise ValueError("performance_table adds head outputs linearly, which holds only in an attention-only model "
                         "(cfg.attn_only): use performance() for each set of heads in a model with MLPs")
    if getattr(model.cfg, "positional_embedding_type", "standard") == "shortformer":
        raise ValueError("performance_table runs each block on the residual stream; a shortformer model adds positions "
                         "to queries and keys outside it: use performance()")
    heads = all_heads(model)
    if len(heads) > max_heads:
        raise ValueError(f"the model has {len(heads)} heads, 2 ** {len(heads)} sets to keep; pass at most max_heads = "
                         f"{max_heads}, or score the sets you need with performance()")
    _check_tokens(model, tokens=tokens)
    g = _groups(groups, len(tokens)).to(tokens.device)
    for layer in range(model.cfg.n_layers):
        if layer not in means:
            raise ValueError(f"means lacks layer {layer}: pass group_means of this model")
        if torch.isnan(means[layer][g, : tokens.shape[1]]).any():
            raise ValueError(f"means of layer {layer} are NaN for some sequences' groups: every group used must have "
                             "reference sequences")
    _, start = model.run_with_cache(tokens, names_filter=lambda n: n == "blocks.0.hook_resid_pre")
    n_heads, last, table = model.cfg.n_heads, model.cfg.n_layers - 1, {}
    settings = [[h for h in range(n_heads) if off >> h & 1] for off in range(2 ** n_heads)]  # heads switched off in a layer
    seen, W_O = {}, model.W_O
    points = {layer: model.hook_dict[f"blocks.{layer}.attn.hook_z"] for layer in range(last + 1)}  # z's hook points, aliases resolved
    subsets = torch.tensor([[h in off for h in range(n_heads)] for off in settings], dtype=W_O.dtype)  # setting head

    def run(layer: int, resid: Tensor, gone: tuple[Head, ...]) -> None:
        """Every setting of this layer and the later ones, given the heads `gone` (switched off) in the earlier layers."""
        handle = points[layer].register_forward_hook(lambda module, inputs, z: seen.update(z=z))  # the hook point's output
        try:
            out = model.blocks[layer](resid)
        finally:
            handle.remove()
        out, z = out[0] if isinstance(out, tuple) else out, seen.pop("z")
        z = z.unflatten(-1, (n_heads, -1)) if z.ndim == 3 else z  # a TransformerBridge's hook point holds the heads side by side
        m = means[layer][g, : tokens.shape[1]].to(z.dtype)
        if layer == last:  # the metric reads the last position: every setting of the last layer at once
            delta = einops.einsum(m[:, -1] - z[:, -1], W_O[layer], "batch head d_head, head d_head d_model -> batch head d_model")
            ends = out[None, :, -1] + einops.einsum(subsets, delta, "setting head, batch head d_model -> setting batch d_model")
            for off, logits in zip(settings, lens.unembed(model, ends)[:, :, None]):  # batch 1 d_vocab each
                table[frozenset(h for h in heads if h not in gone + tuple((layer, h) for h in off))] = float(metric(logits))
            return
        delta = einops.einsum(m - z, W_O[layer], "batch pos head d_head, head d_head d_model -> batch pos head d_model")
        for off in settings:
            run(layer + 1, out + delta[:, :, off].sum(2) if off else out, gone + tuple((layer, h) for h in off))

    run(0, start["blocks.0.hook_resid_pre"], ())
    if any(v != v for v in table.values()):
        raise ValueError("metric returned NaN for some set of heads kept: performance_table needs a metric that is a number")
    full, none = float(metric(model(tokens))), performance(model, tokens, metric, [], means, groups)
    for name, want, got in [("every head kept", full, table[frozenset(heads)]), ("no head kept", none, table[frozenset()])]:
        if abs(want - got) > 1e-4 * max(1.0, abs(want)):
            raise ValueError(f"performance_table's F({name}) = {got:.6g} differs from a forward pass's {want:.6g}: does the "
                             "metric read positions other than the last, or do the blocks do more than attention?")
    if cache is not None:
        cache.update(table)
        cache[None] = full
    return table


def all_heads(model: nn.Module) -> list[Head]:
    """Every (layer, head) of the model."""
    return [(layer, h) for layer in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]


def all_subsets(heads: list[Head], max_heads: int = 12) -> list[list[Head]]:
    """Every subset of `heads` (2 ** len(heads) of them, the empty one first, then by size)."""
    heads = sorted(set(lens._heads(heads, None, None)))
    if len(heads) > max_heads:
        raise ValueError(f"{len(heads)} heads have 2 ** {len(heads)} subsets; pass at most max_heads = {max_heads}, "
                         "or name the subsets to try")
    return [list(k) for r in range(len(heads) + 1) for k in itertools.combinations(heads, r)]


def _name(K: list[Head]) -> str:
    return " ".join(f"L{layer}H{h}" for layer, h in sorted(K)) or "none"


def faithfulness(model: nn.Module, tokens: Int[Tensor, "batch pos"], metric: Metric, circuit: list[Head], means: dict,
                 groups: Int[Tensor, "batch"] | None = None, cache: dict | None = None) -> dict[str, float]:
    """Wang et al.'s faithfulness: F(M) (whole model), F(C) (the circuit alone, all other heads mean-ablated),
    F(empty) (every head mean-ablated), the share F(C) / F(M) and the gap |F(M) - F(C)| / F(M)."""
    F = lambda keep: performance(model, tokens, metric, keep, means, groups, cache)
    full, alone, empty = F(None), F(circuit), F([])
    return {"F(M)": full, "F(C)": alone, "F(empty)": empty, "F(C)/F(M)": alone / full, "|F(M)-F(C)|/F(M)": abs(full - alone) / abs(full)}


def completeness(model: nn.Module, tokens: Int[Tensor, "batch pos"], metric: Metric, circuit: list[Head],
                 subsets: dict[str, list[Head]] | None, means: dict, groups: Int[Tensor, "batch"] | None = None,
                 cache: dict | None = None) -> dict[str, dict[str, float]]:
    """Wang et al.'s completeness: for each named subset K of the circuit (None: every subset, named by its heads,
    'none' for the empty one), F(C \\ K) and F(M \\ K) (K mean-ablated from the circuit, and from the whole
    model) and the incompleteness |F(C \\ K) - F(M \\ K)|. A complete circuit has it small for every K:
    nothing outside C does what K does."""
    model_heads, out = all_heads(model), {}
    if subsets is None:
        subsets = {_name(K): K for K in all_subsets(circuit)}
    F = lambda keep: performance(model, tokens, metric, keep, means, groups, cache)
    for name, K in subsets.items():
        K = set(lens._heads(K, None, model))
        if not K <= set(circuit):
            raise ValueError(f"subset {name!r} = {sorted(K)} is not inside the circuit {circuit}")
        c, m = F([h for h in circuit if h not in K]), F([h for h in model_heads if h not in K])
        out[name] = {"F(C\\K)": c, "F(M\\K)": m, "incompleteness": abs(c - m)}
    return out


def minimality(model: nn.Module, tokens: Int[Tensor, "batch pos"], metric: Metric, circuit: list[Head],
               candidates: dict[Head, list[list[Head]]] | None, means: dict, groups: Int[Tensor, "batch"] | None = None,
               cache: dict | None = None) -> dict[Head, dict]:
    """Wang et al.'s minimality: for each head v given in `candidates`, the largest |F(C \\ (K u {v})) - F(C \\ K)|
    over its candidate subsets K of C \\ {v} (the empty set always among them), and the K that gives it.
    candidates=None: every head of the circuit, with every subset K of C \\ {v}. A minimal circuit has every
    head's score well above zero: each matters for some K."""
    circuit = lens._heads(circuit, None, model)
    if candidates is None:
        candidates = {v: all_subsets([h for h in circuit if h != v]) for v in circuit}
    F = lambda keep: performance(model, tokens, metric, keep, means, groups, cache)
    out = {}
    for v in lens._heads(list(candidates), None, model):
        if v not in circuit:
            raise ValueError(f"{v} is scored but not in the circuit {circuit}: add it to the circuit first")
        best = {"score": -1.0, "K": []}
        for K in [[]] + [list(k) for k in candidates[v]]:
            if v in K or not set(K) <= set(circuit):
                raise ValueError(f"a candidate K for {v} must lie in the circuit without {v}, got {K}")
            without_k = F([h for h in circuit if h not in K])
            without_kv = F([h for h in circuit if h not in K and h != v])
            if abs(without_kv - without_k) > best["score"]:
                best = {"score": abs(without_kv - without_k), "K": sorted(K)}
        out[v] = best
    return out
