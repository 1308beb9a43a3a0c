"""Transcoders and attribution graphs (Ameisen et al. 2025, "Circuit Tracing"), small enough to read.

A **transcoder** reads an MLP's input x and predicts the MLP's output y through a sparse layer of
features: f = TopK(x W_enc + b_enc), y_hat = f W_dec + b_dec. Splicing one in place of each MLP, with
the error y - y_hat added back as a constant, gives the *replacement model*. Freezing its attention
patterns and LayerNorm scales at their values on one prompt makes every remaining path linear, so each
node's effect on another is a number: the **attribution graph** (nodes: the embeddings at each
position, the active features, one error node per layer and position, the target logit; edge s -> t:
a_s times the derivative of t's input with respect to a_s along linear paths, i.e. a direct effect).

Why our own trainer: SAELens 6 (6.54 here) *loads* transcoders (`sae_lens/saes/transcoder.py` holds
inference classes only, and its training registry has no transcoder; SAELens issue #182, "Add MLP
transcoders", asks for training and is open). TopK because it fixes L0 directly (Gao et al. 2024) and
trains reliably in a few thousand steps; the trained transcoder is stored as a SAELens `TopKSAE`
whose encoder reads the MLP's input and whose decoder writes its output (`apply_b_dec_to_input=False`),
so `checkpoints.save_sae` / `load_sae` keep it with a card.

Works on any TransformerLens model with LayerNorm (HookedTransformer or TransformerBridge): it reads
`W_V`, `W_O`, `W_U`, `blocks[l].ln1.w`, `ln_final.w` and the hooks named in IN_HOOK / OUT_HOOK.
"""
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from sae_lens import SAE, TopKSAE, TopKSAEConfig
from sae_lens.saes.sae import SAEMetadata
from torch import Tensor, nn

from glassbox import checks

IN_HOOK = "blocks.{layer}.ln2.hook_normalized"  # the MLP's input, LayerNorm-normalised (before ln2's affine map)
OUT_HOOK = "blocks.{layer}.hook_mlp_out"  # the MLP's output, written into the residual stream
SCALE_HOOKS = ("blocks.{layer}.ln1.hook_scale", "blocks.{layer}.ln2.hook_scale")


# ---- training -------------------------------------------------------------------------------

@torch.no_grad()
def mlp_pairs(model: nn.Module, tokens: Int[Tensor, "n_tokens"], layer: int, *, batch_size: int, n_ctx: int,
              windows_per_pass: int = 32, seed: int = 0) -> Iterator[tuple[Float[Tensor, "batch d_model"], Float[Tensor, "batch d_model"]]]:
    """Endless (MLP input, MLP output) batches of `layer` at every position of random windows of `tokens`, shuffled."""
    checks.transformer_lens_model(model)
    checks.tokens(tokens, "tokens", ndim=1, d_vocab=model.cfg.d_vocab)
    checks.index(layer, "layer", model.cfg.n_layers)
    if len(tokens) <= n_ctx or windows_per_pass * n_ctx < batch_size:
        raise ValueError(f"need more than n_ctx={n_ctx} tokens (got {len(tokens)}) and windows_per_pass * n_ctx >= batch_size")
    gen = torch.Generator().manual_seed(seed)
    names = (IN_HOOK.format(layer=layer), OUT_HOOK.format(layer=layer))
    while True:
        starts = torch.randint(0, len(tokens) - n_ctx + 1, (windows_per_pass,), generator=gen)
        _, cache = model.run_with_cache(tokens[starts[:, None] + torch.arange(n_ctx)], names_filter=list(names))
        x, y = (cache[n].reshape(-1, cache[n].shape[-1]).float() for n in names)
        order = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            yield x[idx], y[idx]


def make_transcoder(d_in: int, d_sae: int, k: int, *, layer: int | None = None, model_name: str | None = None,
                    seed: int = 0) -> TopKSAE:
    """A fresh (untrained) TopK transcoder as a SAELens TopKSAE (input and output both of width d_in, as an MLP's
    in a transformer): decoder rows random unit vectors, encoder their transpose, biases zero."""
    for value, name in ((d_in, "d_in"), (d_sae, "d_sae")):
        checks.count(value, name)
    if not 1 <= checks.count(k, "k") <= d_sae:
        raise ValueError(f"k (features kept per input) must be in 1..d_sae={d_sae}, got {k}")
    meta = SAEMetadata(model_name=model_name, hook_name=IN_HOOK.format(layer=layer) if layer is not None else None,
                       hook_name_out=OUT_HOOK.format(layer=layer) if layer is not None else None)
    tc = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, apply_b_dec_to_input=False, rescale_acts_by_decoder_norm=False,
                               metadata=meta))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tc.W_dec.copy_(F.normalize(torch.randn(d_sae, d_in, generator=gen), dim=1))
        tc.W_enc.copy_(F.normalize(torch.randn(d_sae, d_in, generator=gen), dim=1).T.contiguous())
        tc.b_enc.zero_()
        tc.b_dec.zero_()
    return tc


@dataclass
class TrainResult:
    """A trained transcoder with its loss curve and training time."""

    transcoder: TopKSAE  # the trained transcoder (eval mode)
    losses: list[float]  # normalised MSE of each step's batch
    seconds: float  # wall time of the training


def train_transcoder(tc: TopKSAE, batches: Iterator[tuple[Tensor, Tensor]], *, steps: int, lr: float = 2e-3,
                     aux_k: int = 64, dead_after: int = 200, aux_coef: float = 1 / 32) -> TrainResult:
    """Adam on the normalised MSE of the MLP output, plus Gao et al.'s AuxK loss (dead features, those silent for
    `dead_after` steps, fit the residual error) so that few die; the learning rate decays linearly over the last 20%."""
    checks.count(steps, "steps")
    params = [tc.W_enc, tc.b_enc, tc.W_dec, tc.b_dec]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (steps - s) / (0.2 * steps)))
    since_fired = torch.zeros(tc.cfg.d_sae, dtype=torch.long)
    losses, start = [], time.perf_counter()
    tc.train()
    for step, (x, y) in zip(range(steps), batches):
        if step == 0:
            with torch.no_grad():
                tc.b_dec.copy_(y.mean(0))
        pre = x @ tc.W_enc + tc.b_enc
        top = pre.topk(tc.cfg.k, dim=-1)
        f = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        err = y - (f @ tc.W_dec + tc.b_dec)
        var = (y - y.mean(0)).pow(2).sum(-1).mean()
        loss = err.pow(2).sum(-1).mean() / var
        fired = torch.zeros(tc.cfg.d_sae, dtype=torch.bool).scatter(0, top.indices[top.values > 0].flatten(), True)
        since_fired = torch.where(fired, 0, since_fired + 1)
        dead = since_fired > dead_after
        if dead.any():  # AuxK: the dead features' top pre-activations reconstruct what the live ones miss
            pre_dead = pre.masked_fill(~dead, -math.inf)
            kk = min(aux_k, int(dead.sum()))
            top_d = pre_dead.topk(kk, dim=-1)
            f_d = torch.zeros_like(pre).scatter(-1, top_d.indices, top_d.values.relu())
            aux = (err.detach() - f_d @ tc.W_dec).pow(2).sum(-1).mean() / err.detach().pow(2).sum(-1).mean().clamp(min=1e-8)
            loss_total = loss + aux_coef * aux
        else:
            loss_total = loss
        opt.zero_grad()
        loss_total.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    tc.eval()
    return TrainResult(tc, losses, time.perf_counter() - start)


def normalized_mse(y: Float[Tensor, "n d"], y_hat: Float[Tensor, "n d"]) -> float:
    """sum ||y - y_hat||^2 / sum ||y - mean(y)||^2 (the fraction of the output's variance the transcoder misses)."""
    checks.tensor(y, "y", ndim=2)
    checks.tensor(y_hat, "y_hat", ndim=2)
    return ((y - y_hat).pow(2).sum() / (y - y.mean(0)).pow(2).sum()).item()


# ---- the replacement model ------------------------------------------------------------------

def _check_transcoders(model: nn.Module, transcoders: dict[int, SAE]) -> None:
    checks.transformer_lens_model(model, needs=("ln_final", "W_U"))
    if not isinstance(transcoders, dict) or not transcoders:
        raise TypeError("transcoders must be a non-empty dict {layer: transcoder}")
    for layer, tc in transcoders.items():
        checks.index(layer, "transcoders' layer", model.cfg.n_layers)
        if tc.cfg.d_in != model.cfg.d_model or tc.W_dec.shape[1] != model.cfg.d_model:
            raise ValueError(f"the transcoder of layer {layer} maps {tc.cfg.d_in} -> {tc.W_dec.shape[1]}, the model's "
                             f"MLPs {model.cfg.d_model} -> {model.cfg.d_model}")


def splice_hooks(transcoders: dict[int, SAE], *, errors: dict[int, Tensor] | None = None,
                 masks: dict[int, Tensor] | None = None, deltas: dict[int, Tensor] | None = None) -> list[tuple[str, object]]:
    """TransformerLens hooks that replace each MLP `layer` by its transcoder: output = decode(encode(x) * mask + delta)
    + error. `errors` (broadcast to (batch, pos, d_model)) held fixed make the replacement exact on the clean prompt;
    `masks` (batch, pos, d_sae) switch features off; `deltas` (same shape) add to them (e.g. a leaf for gradients)."""
    hooks, inputs = [], {}
    for layer, tc in transcoders.items():
        def read(x, hook, layer=layer):
            inputs[layer] = x
            return x

        def write(out, hook, layer=layer, tc=tc):
            f = tc.encode(inputs.pop(layer))
            if masks is not None and layer in masks:
                f = f * masks[layer]
            if deltas is not None and layer in deltas:
                f = f + deltas[layer]
            new = f @ tc.W_dec + tc.b_dec
            if errors is not None and layer in errors:
                new = new + errors[layer]
            return new.to(out.dtype)
        hooks += [(IN_HOOK.format(layer=layer), read), (OUT_HOOK.format(layer=layer), write)]
    return hooks


@torch.no_grad()
def errors_of(model: nn.Module, transcoders: dict[int, SAE], tokens: Int[Tensor, "batch pos"]) -> dict[int, Tensor]:
    """Each layer's error node values: the MLP's output minus its transcoder's prediction, on the clean run."""
    _check_transcoders(model, transcoders)
    names = [n.format(layer=l) for l in transcoders for n in (IN_HOOK, OUT_HOOK)]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    return {l: cache[OUT_HOOK.format(layer=l)] - tc(cache[IN_HOOK.format(layer=l)]) for l, tc in transcoders.items()}


def demeaned_logit(logits: Float[Tensor, "... d_vocab"], target: int) -> Float[Tensor, "..."]:
    """The target's logit minus the mean logit over the vocabulary (the graph's output node, as circuit-tracer's)."""
    return logits[..., target] - logits.mean(-1)


# ---- the attribution graph ------------------------------------------------------------------

@dataclass
class Graph:
    """An attribution graph. Node order: features, errors (layer-major, then position), embeddings (by position), the logit.
    adjacency[t, s] is the edge s -> t (zero rows for embeddings and errors, which have no inputs)."""
    tokens: Tensor  # (pos,) the prompt
    target: int  # the token whose logit is explained
    features: Tensor  # (n_features, 3) long: layer, position, feature index of each active feature
    activations: Tensor  # (n_features,) their activations
    adjacency: Tensor  # (n_nodes, n_nodes)
    values: Tensor  # (n_nodes,) each node's input: a feature's pre-activation, the demeaned logit; 0 for sources
    n_layers: int

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    @property
    def n_features(self) -> int:
        return len(self.features)

    def error_index(self, layer: int, pos: int) -> int:
        return self.n_features + layer * self.n_pos + pos

    def embedding_index(self, pos: int) -> int:
        return self.n_features + self.n_layers * self.n_pos + pos

    @property
    def logit_index(self) -> int:
        return len(self.adjacency) - 1

    def kind(self) -> list[str]:
        """'feature', 'error', 'embedding' or 'logit' for every node."""
        return (["feature"] * self.n_features + ["error"] * (self.n_layers * self.n_pos) + ["embedding"] * self.n_pos + ["logit"])


def _attention_vjp(G: Tensor, pattern: Tensor, W_V: Tensor, W_O: Tensor, ln_w: Tensor, scale: Tensor) -> Tensor:
    """Gradient at the residual stream before attention (through ln1 and the OV path, pattern and scale frozen)
    of targets whose gradient after attention is G (targets, pos, d_model)."""
    gz = torch.einsum("tqm,hem->tqhe", G, W_O)
    gv = torch.einsum("tqhe,hqk->tkhe", gz, pattern)
    gx = torch.einsum("tkhe,hme->tkm", gv, W_V) * ln_w
    return (gx - gx.mean(-1, keepdim=True)) / scale


@torch.no_grad()
def attribution_graph(model: nn.Module, transcoders: dict[int, SAE], tokens: Int[Tensor, "pos"], target: int | None = None,
                      *, chunk: int = 1024) -> Graph:
    """The attribution graph of the last position's `target` logit (default: the model's top prediction).

    One backward pass per target node, all batched and written out by hand: a target's gradient walks down the
    residual stream, through every attention layer's OV path (patterns frozen) and LayerNorm (scales frozen)."""
    _check_transcoders(model, transcoders)
    if sorted(transcoders) != list(range(model.cfg.n_layers)):
        raise ValueError(f"the graph needs a transcoder for every layer 0..{model.cfg.n_layers - 1}, got {sorted(transcoders)}")
    tokens = checks.tokens(tokens, "tokens", ndim=1, d_vocab=model.cfg.d_vocab, n_ctx=model.cfg.n_ctx)
    L, P = model.cfg.n_layers, len(tokens)
    names = ["blocks.0.hook_resid_pre", "ln_final.hook_scale"] + [n.format(layer=l) for l in range(L) for n in
                                                                   (IN_HOOK, OUT_HOOK, "blocks.{layer}.attn.hook_pattern", *SCALE_HOOKS)]
    logits, cache = model.run_with_cache(tokens[None], names_filter=names)
    if target is None:
        target = int(logits[0, -1].argmax())
    checks.index(target, "target", model.cfg.d_vocab)
    feats, acts, pres, errs = [], [], [], {}
    for l, tc in transcoders.items():
        x = cache[IN_HOOK.format(layer=l)][0]
        pre = x @ tc.W_enc + tc.b_enc
        f = tc.encode(x)
        errs[l] = cache[OUT_HOOK.format(layer=l)][0] - tc.decode(f)
        pos, idx = torch.nonzero(f > 0, as_tuple=True)
        feats.append(torch.stack([torch.full_like(pos, l), pos, idx], 1))
        acts.append(f[pos, idx])
        pres.append(pre[pos, idx])
    feats, acts = torch.cat(feats), torch.cat(acts)
    n_f = len(feats)
    n = n_f + L * P + P + 1
    values = torch.zeros(n)
    values[:n_f] = torch.cat(pres)
    values[-1] = demeaned_logit(logits[0, -1], target)
    A = torch.zeros(n, n)
    u = model.W_U[:, target] - model.W_U.mean(1)
    g_logit = model.ln_final.w * u
    g_logit = (g_logit - g_logit.mean()) / cache["ln_final.hook_scale"][0, -1]
    emb = cache["blocks.0.hook_resid_pre"][0]
    # targets sorted by position, in chunks: a target at position p reads nothing after p, so each chunk runs on the
    # prefix up to its last target's position (the logit, at the last position, comes last)
    rows = torch.cat([torch.argsort(feats[:, 1], stable=True), torch.tensor([n_f])])
    for lo in range(0, len(rows), chunk):
        part = rows[lo:lo + chunk]
        A[_target_nodes(part, n_f, n)] = _edges_into(part, model, transcoders, cache, feats, acts, errs, emb, g_logit, n, P)
    return Graph(tokens.cpu(), target, feats.cpu(), acts.cpu(), A, values, L)


def _target_nodes(rows: Tensor, n_f: int, n: int) -> Tensor:
    return torch.where(rows < n_f, rows, n - 1)


def _edges_into(rows: Tensor, model, transcoders, cache, feats, acts, errs, emb, g_logit, n: int, P: int) -> Tensor:
    """Rows of the adjacency for the target nodes `rows` (feature indices, or n_features for the logit)."""
    n_f, L = len(feats), model.cfg.n_layers
    is_logit = rows == n_f
    known = feats[rows.clamp(max=n_f - 1)] if n_f else torch.zeros(len(rows), 3, dtype=torch.long)  # no features: only the logit
    t_pos = torch.where(is_logit, P - 1, known[:, 1])
    t_layer = torch.where(is_logit, L, known[:, 0])
    Q = int(t_pos.max()) + 1  # the prefix these targets can read
    G = torch.zeros(len(rows), Q, model.cfg.d_model)
    out = torch.zeros(len(rows), n)
    G[is_logit, -1] = g_logit
    for l in reversed(range(L)):
        alive = torch.nonzero(t_layer > l).squeeze(1)  # targets above MLP l: only they have a gradient here
        # at the residual stream after MLP l: its features and its errors are sources
        mine = torch.nonzero((feats[:, 0] == l) & (feats[:, 1] < Q)).squeeze(1)
        if len(mine) and len(alive):
            g = G[alive][:, feats[mine, 1]]  # (alive, n_mine, d)
            out[alive[:, None], mine[None, :]] = torch.einsum("tsd,sd->ts", g, transcoders[l].W_dec[feats[mine, 2]]) * acts[mine]
        if len(alive):
            out[alive, n_f + l * P: n_f + l * P + Q] = torch.einsum("tpd,pd->tp", G[alive], errs[l][:Q])
        # at the residual stream before MLP l (ln2's input): seed the targets that are features of layer l
        seed = torch.nonzero(t_layer == l).squeeze(1)
        if len(seed):
            f = feats[rows[seed]]
            w = transcoders[l].W_enc[:, f[:, 2]].T  # (n_seed, d)
            G[seed, f[:, 1]] += (w - w.mean(-1, keepdim=True)) / cache[SCALE_HOOKS[1].format(layer=l)][0, f[:, 1]]
        # through attention l (ln1 frozen, pattern frozen)
        alive = torch.nonzero(t_layer >= l).squeeze(1)
        if len(alive):
            G[alive] += _attention_vjp(G[alive], cache[f"blocks.{l}.attn.hook_pattern"][0, :, :Q, :Q], model.W_V[l], model.W_O[l],
                                       model.blocks[l].ln1.w, cache[SCALE_HOOKS[0].format(layer=l)][0, :Q])
    out[:, n_f + L * P: n_f + L * P + Q] = torch.einsum("tpd,pd->tp", G, emb[:Q])
    return out


# ---- influence, pruning, scores -------------------------------------------------------------

def normalized(adjacency: Float[Tensor, "n n"]) -> Float[Tensor, "n n"]:
    """|adjacency| with each row scaled to sum to 1 (each target's inputs as shares)."""
    a = adjacency.abs()
    return a / a.sum(1, keepdim=True).clamp(min=1e-10)


def influence(adjacency: Float[Tensor, "n n"], weights: Float[Tensor, "n"]) -> Float[Tensor, "n"]:
    """Indirect influence of every node on the weighted outputs: weights @ (B + B^2 + ...), B = normalized(adjacency)."""
    B = normalized(adjacency)
    current, total = weights @ B, torch.zeros_like(weights)
    for _ in range(len(B) + 1):  # an acyclic graph's powers vanish after its depth
        if not current.any():
            break
        total += current
        current = current @ B
    return total


def _threshold(scores: Tensor, share: float) -> float:
    """The smallest score among the top scores that together carry `share` of the total."""
    s = scores.flatten().sort(descending=True).values
    cum = s.cumsum(0) / s.sum().clamp(min=1e-10)
    return s[min(int(torch.searchsorted(cum, torch.tensor(share))), len(s) - 1)].item()


@dataclass
class Pruned:
    """A pruned graph: the nodes and edges kept, and every node's influence on the logit."""

    nodes: Tensor  # (n,) bool: kept nodes
    edges: Tensor  # (n, n) bool: kept edges
    node_influence: Tensor  # (n,) influence of each node on the logit in the full graph


def prune(graph: Graph, node_share: float = 0.8, edge_share: float = 0.98) -> Pruned:
    """circuit-tracer's `prune_graph` (its defaults too): keep the nodes whose influence on the logit is among the top
    that carry `node_share` of the influence of all nodes (embeddings and the logit kept always), then the edges
    carrying `edge_share` of the edge influence; then drop, until nothing changes, features and errors with no kept
    outgoing edge and features with no kept incoming edge. One difference: one logit of weight 1, where circuit-tracer
    weights several logits by their probabilities."""
    for v, name in ((node_share, "node_share"), (edge_share, "edge_share")):
        if not 0 < v <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {v}")
    n = len(graph.adjacency)
    w = torch.zeros(n)
    w[-1] = 1.0
    node_inf = influence(graph.adjacency, w)
    keep = node_inf >= _threshold(node_inf, node_share)
    keep[graph.embedding_index(0):] = True
    A = graph.adjacency * keep[:, None] * keep[None, :]
    inf = influence(A, w) + w
    edge_scores = normalized(A) * inf[:, None]
    edges = (edge_scores >= _threshold(edge_scores[edge_scores > 0], edge_share)) & (edge_scores > 0)  # zeros change no share
    inner, feature = torch.arange(n) < graph.embedding_index(0), torch.arange(n) < graph.n_features
    while True:
        edges = edges & keep[:, None] & keep[None, :]
        now = keep & ~(inner & ~edges.any(0)) & ~(feature & ~edges.any(1))
        if torch.equal(now, keep):
            return Pruned(keep, edges, node_inf)
        keep = now


def graph_scores(graph: Graph) -> dict[str, float]:
    """circuit-tracer's two scores, both shares of normalised |edge| mass (not of the logit's value). replacement: of the
    end-to-end influence on the logit that starts at embeddings or errors, the embeddings' share; completeness: the
    influence-weighted share of node inputs not from errors, averaged over the nodes that have inputs (features, the
    logit). circuit-tracer's `compute_graph_scores` averages over every node, so sources (embeddings and errors, whose
    rows are empty) count as wholly explained: that variant is returned as completeness_circuit_tracer."""
    n = len(graph.adjacency)
    w = torch.zeros(n)
    w[-1] = 1.0
    inf = influence(graph.adjacency, w)
    err = slice(graph.n_features, graph.embedding_index(0))
    emb = slice(graph.embedding_index(0), n - 1)
    token_inf, error_inf = inf[emb].sum(), inf[err].sum()
    B = normalized(graph.adjacency)
    has_inputs = graph.adjacency.abs().sum(1) > 0
    non_error = 1 - B[:, err].sum(1)
    out = (inf + w) * has_inputs
    return {"replacement": (token_inf / (token_inf + error_inf)).item(), "completeness": ((non_error * out).sum() / out.sum()).item(),
            "completeness_circuit_tracer": ((non_error * (inf + w)).sum() / (inf + w).sum()).item()}


def total_effects(graph: Graph) -> Float[Tensor, "n_features"]:
    """The graph's linear prediction of the logit's change when each feature is set to zero: -a_s times the sum over
    paths from s to the logit of the product of unit edges (edge / source activation), downstream features held active."""
    n_f = graph.n_features
    M = graph.adjacency[:, :n_f] / graph.activations  # M[t, s] = d(input of t) / d(a_s) along linear paths
    direct, r = M[-1], M[-1].clone()
    for _ in range(graph.n_layers + 1):  # r = direct + r @ M_ff: the paths through downstream features
        r = direct + r @ M[:n_f]
    return -graph.activations * r


# ---- interventions on the real replacement model --------------------------------------------

def frozen_names(n_layers: int) -> list[str]:
    """The hooks whose values the attribution graph freezes: every attention pattern and every LayerNorm scale."""
    return ["ln_final.hook_scale"] + [n.format(layer=l) for l in range(n_layers)
                                      for n in ("blocks.{layer}.attn.hook_pattern", *SCALE_HOOKS)]


@torch.no_grad()
def freeze_hooks(model: nn.Module, tokens: Int[Tensor, "pos"], freeze: list[str] | tuple[str, ...]) -> list[tuple[str, object]]:
    """Hooks for `run_with_hooks` that hold each hook named in `freeze` (among `frozen_names`) at its value on the clean
    prompt `tokens`; a pattern is held where it is used (on a `TransformerBridge` holding `hook_pattern` changes nothing)."""
    allowed = frozen_names(model.cfg.n_layers)
    if any(name not in allowed for name in freeze):
        raise ValueError(f"freeze names hooks among {allowed}, got {list(freeze)}")
    _, cache = model.run_with_cache(tokens[None], names_filter=list(freeze)) if freeze else (None, {})
    hooks = []
    for name in freeze:
        if name.endswith("attn.hook_pattern"):  # held where it is used: z = pattern @ v, v live
            hooks += _pattern_held(name.removesuffix("hook_pattern"), cache[name])
        else:
            hooks.append((name, lambda x, hook, v=cache[name]: v.expand_as(x)))
    return hooks


def _pattern_held(attn: str, pattern: Tensor) -> list[tuple[str, object]]:
    """Hooks on `attn` ("blocks.{l}.attn.") that compute the head outputs z from the live values v and the clean
    `pattern` (1, head, q, k). Holding `hook_pattern` itself is a no-op on a `TransformerBridge` (TransformerLens 3.9
    computes the output before that hook fires; see `circuits.set_pattern_hooks`), which left attention live."""
    stored = {}

    def keep_v(v, hook):
        stored["v"] = v
        return v

    def replace_z(z, hook):
        return torch.einsum("bhqk,bkhe->bqhe", pattern.expand(len(z), -1, -1, -1).to(z.dtype), stored.pop("v")).to(z.dtype)
    return [(attn + "hook_v", keep_v), (attn + "hook_z", replace_z)]


@torch.no_grad()
def ablation_effects(model: nn.Module, transcoders: dict[int, SAE], tokens: Int[Tensor, "pos"], target: int,
                     features: Int[Tensor, "n 3"], batch_size: int = 64, freeze: list[str] | tuple[str, ...] = ()) -> Float[Tensor, "n"]:
    """The change of the last position's demeaned target logit when each (layer, position, feature) is set to zero in
    the replacement model (transcoders spliced, errors fixed at their clean values; attention and LayerNorm live,
    except the hooks named in `freeze`, held at their clean values: `frozen_names(n_layers)` freezes what the graph does)."""
    _check_transcoders(model, transcoders)
    tokens = checks.tokens(tokens, "tokens", ndim=1, d_vocab=model.cfg.d_vocab)
    held = freeze_hooks(model, tokens, freeze)
    errors = errors_of(model, transcoders, tokens[None])
    clean = demeaned_logit(model.run_with_hooks(tokens[None], fwd_hooks=splice_hooks(transcoders, errors=errors))[0, -1], target)
    out = []
    for chunk in features.split(batch_size):
        masks = {l: torch.ones(len(chunk), len(tokens), tc.cfg.d_sae) for l, tc in transcoders.items()}
        for i, (l, p, j) in enumerate(chunk.tolist()):
            masks[l][i, p, j] = 0.0
        logits = model.run_with_hooks(tokens[None].expand(len(chunk), -1),
                                      fwd_hooks=held + splice_hooks(transcoders, errors=errors, masks=masks))
        out.append(demeaned_logit(logits[:, -1], target) - clean)
    return torch.cat(out) if out else torch.zeros(0)


def gradient_x_activation(model: nn.Module, transcoders: dict[int, SAE], tokens: Int[Tensor, "pos"], target: int,
                          features: Int[Tensor, "n 3"], freeze: list[str] | tuple[str, ...] = ()) -> Float[Tensor, "n"]:
    """Attribution patching's estimate of each feature's ablation effect: -a_s times the gradient of the demeaned
    target logit with respect to a_s in the replacement model (errors fixed), one backward pass; attention and LayerNorm
    live except the hooks named in `freeze`, held at their clean values (as in `ablation_effects`)."""
    _check_transcoders(model, transcoders)
    tokens = checks.tokens(tokens, "tokens", ndim=1, d_vocab=model.cfg.d_vocab)
    held = freeze_hooks(model, tokens, freeze)
    errors = errors_of(model, transcoders, tokens[None])
    deltas = {l: torch.zeros(1, len(tokens), tc.cfg.d_sae, requires_grad=True) for l, tc in transcoders.items()}
    with torch.enable_grad():
        logits = model.run_with_hooks(tokens[None], fwd_hooks=held + splice_hooks(transcoders, errors=errors, deltas=deltas))
        demeaned_logit(logits[0, -1], target).backward()
    grads = {l: d.grad[0] for l, d in deltas.items()}
    acts = feature_activations(model, transcoders, tokens, features)
    return torch.stack([-a * grads[l][p, j] for a, (l, p, j) in zip(acts, features.tolist())]) if len(acts) else torch.zeros(0)


@torch.no_grad()
def feature_activations(model: nn.Module, transcoders: dict[int, SAE], tokens: Int[Tensor, "pos"],
                        features: Int[Tensor, "n 3"]) -> Float[Tensor, "n"]:
    """The activation of each (layer, position, feature) on the clean prompt."""
    names = [IN_HOOK.format(layer=l) for l in transcoders]
    _, cache = model.run_with_cache(tokens[None], names_filter=names)
    f = {l: tc.encode(cache[IN_HOOK.format(layer=l)][0]) for l, tc in transcoders.items()}
    return torch.tensor([f[l][p, j].item() for l, p, j in features.tolist()])
