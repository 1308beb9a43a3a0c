"""Notebook 07's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch

from glassbox import circuits, lens


def _close(got: torch.Tensor, want: torch.Tensor, atol: float = 1e-3) -> bool:
    return got.shape == want.shape and torch.allclose(got.detach().float(), want.detach().float(), rtol=1e-4, atol=atol)


def _tensor(got, want: torch.Tensor, axes: str) -> torch.Tensor:
    """`got` as a tensor of `want`'s shape, or an AssertionError saying what came instead."""
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"expected [{axes}] = {tuple(want.shape)}, got {tuple(got.shape)}"
    return got.detach()


def _first_difference(got: torch.Tensor, want: torch.Tensor, axes: str) -> str:
    """Where `got` and `want` differ most, named by axis."""
    where = (got - want).abs().argmax()
    index = dict(zip(axes.split(), (i.item() for i in torch.unravel_index(where, want.shape))))
    return (f"largest difference {(got - want).abs().max():.3g} at {index} (you {got.flatten()[where]:.4g}, "
            f"expected {want.flatten()[where]:.4g})")


# ---- 2. The logit lens

def my_logit_lens(model, tokens: torch.Tensor) -> torch.Tensor:
    _, cache = model.run_with_cache(tokens)
    n = model.cfg.n_layers
    resid = torch.stack([cache[f"blocks.{layer}.hook_resid_pre"] for layer in range(n)]
                        + [cache[f"blocks.{n - 1}.hook_resid_post"]])  # [layer batch pos d_model]
    return model.ln_final(resid) @ model.W_U + model.b_U  # [layer batch pos d_vocab]


def check_my_logit_lens(fn, model, tokens: torch.Tensor) -> None:
    _, cache = model.run_with_cache(tokens)
    want, got = lens.logit_lens(model, cache), fn(model, tokens)
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    n = model.cfg.n_layers
    if got.shape == want[1:].shape:
        assert not _close(got, want[1:]), (f"you left out the embeddings: the first snapshot is blocks.0.hook_resid_pre, the "
                                           f"stream before layer 0 ({n + 1} snapshots in all)")
        assert not _close(got, want[:-1]), (f"you left out the output: the last snapshot is blocks.{n - 1}.hook_resid_post, "
                                            f"after the last layer ({n + 1} snapshots in all)")
    got = _tensor(got, want, "layer batch pos d_vocab")
    if _close(got, want):
        return
    resid, _ = lens.accumulated_resid(cache, n)
    assert not _close(got, resid @ model.W_U + model.b_U), \
        "you skipped the final LayerNorm: apply model.ln_final to each snapshot before W_U"
    assert not _close(got, want - model.b_U), "you left out the unembedding's bias b_U"
    assert _close(got, want), _first_difference(got, want, "layer batch pos d_vocab") + ": compare each snapshot's name and the unembedding"


# ---- 4. Activation patching over positions

def my_patch_by_position(model, clean: torch.Tensor, corrupt: torch.Tensor, hook_name: str, metric) -> torch.Tensor:
    _, cache = model.run_with_cache(clean, names_filter=lambda name: name == hook_name)
    out = []
    for p in range(clean.shape[1]):
        def patch(act, hook, p=p):
            act = act.clone()
            act[:, p] = cache[hook_name][:, p]  # the clean activation at position p only
            return act
        out.append(float(metric(model.run_with_hooks(corrupt, fwd_hooks=[(hook_name, patch)]))))
    return torch.tensor(out)  # [pos]


@torch.no_grad()
def _sweep(model, run_on: torch.Tensor, source: torch.Tensor, hook_name: str, metric, span) -> torch.Tensor:
    """metric of `run_on` with `source`'s activation at hook_name patched in at positions span(p), for each p."""
    _, cache = model.run_with_cache(source, names_filter=lambda name: name == hook_name)
    out = []
    for p in range(run_on.shape[1]):
        def patch(act, hook, at=span(p)):
            act = act.clone()
            act[:, at] = cache[hook_name][:, at]
            return act
        out.append(float(metric(model.run_with_hooks(run_on, fwd_hooks=[(hook_name, patch)]))))
    return torch.tensor(out)


def check_my_patch_by_position(fn, model, clean: torch.Tensor, corrupt: torch.Tensor, hook_name: str, metric) -> None:
    _, clean_cache = model.run_with_cache(clean, names_filter=lambda name: name == hook_name)
    want = circuits.patch_by_position(model, corrupt, clean_cache, [hook_name], metric)[0]  # [pos]
    with torch.no_grad():
        got = fn(model, clean, corrupt, hook_name, metric)
    got = _tensor(torch.as_tensor(got, dtype=torch.float) if isinstance(got, list) else got, want, "pos").float()
    if _close(got, want, atol=1e-4):
        return
    with torch.no_grad():
        clean_value, corrupt_value = float(metric(model(clean))), float(metric(model(corrupt)))
    assert not torch.allclose(got, torch.full_like(got, clean_value), atol=1e-4), \
        "every position gives the clean run's value: you patched the whole sequence at once, not one position"
    assert not (len(got) > 1 and _close(got, torch.full_like(got, float(want[-1])), atol=1e-4)), \
        ("every position gives what patching the last position gives: your hook reads p after the loop has ended (hooks "
         "collected first and run later). Run each hook inside the loop, or bind p as a default: def patch(act, hook, p=p)")
    assert not _close(got, _sweep(model, clean, corrupt, hook_name, metric, lambda p: p), atol=1e-4), \
        "you ran the clean input with the corrupt activation patched in (noising): run the corrupt input and patch in the clean one"
    assert not _close(got, _sweep(model, corrupt, clean, hook_name, metric, lambda p: slice(0, p + 1)), atol=1e-4), \
        "you patched positions 0..p at once (act[:, :p + 1]): patch position p alone"
    assert _close(got, want, atol=1e-4), (_first_difference(got, want, "pos") + f" (the corrupt run gives {corrupt_value:.4g}, "
                                          f"the clean run {clean_value:.4g})")


# ---- 6. Path patching of one edge

def my_path_patch_keys(model, clean: torch.Tensor, corrupt: torch.Tensor, sender: tuple, receiver: tuple) -> torch.Tensor:
    (ls, hs), (lr, hr) = sender, receiver
    z, resid = f"blocks.{ls}.attn.hook_z", f"blocks.{lr}.hook_resid_pre"
    _, c = model.run_with_cache(clean, names_filter=lambda name: name in (z, resid))
    _, k = model.run_with_cache(corrupt, names_filter=lambda name: name in (z, resid))
    delta = (k[z][:, :, hs] - c[z][:, :, hs]) @ model.W_O[ls, hs]  # [batch pos d_model]: what the sender says differently
    keys = model.blocks[lr].ln1(c[resid] + delta) @ model.W_K[lr, hr] + model.b_K[lr, hr]  # [batch pos d_head]

    def patch(act, hook):
        act = act.clone()
        act[:, :, hr] = keys
        return act
    return model.run_with_hooks(clean, fwd_hooks=[(f"blocks.{lr}.attn.hook_k", patch)])


@torch.no_grad()
def _keys_patched(model, clean, corrupt, sender, receiver, layer_norm: bool = True) -> torch.Tensor:
    """my_path_patch_keys, with the receiver's LayerNorm left out when layer_norm is False (a typical mistake)."""
    (ls, hs), (lr, hr) = sender, receiver
    z, resid = f"blocks.{ls}.attn.hook_z", f"blocks.{lr}.hook_resid_pre"
    _, c = model.run_with_cache(clean, names_filter=lambda name: name in (z, resid))
    _, k = model.run_with_cache(corrupt, names_filter=lambda name: name in (z, resid))
    stream = c[resid] + (k[z][:, :, hs] - c[z][:, :, hs]) @ model.W_O[ls, hs]
    keys = (model.blocks[lr].ln1(stream) if layer_norm else stream) @ model.W_K[lr, hr] + model.b_K[lr, hr]

    def patch(act, hook):
        act = act.clone()
        act[:, :, hr] = keys
        return act
    return model.run_with_hooks(clean, fwd_hooks=[(f"blocks.{lr}.attn.hook_k", patch)])


def check_my_path_patch_keys(fn, model, clean: torch.Tensor, corrupt: torch.Tensor, sender: tuple, receiver: tuple) -> None:
    want = lens.path_patch_logits(model, clean, corrupt, sender, receiver, "k")
    with torch.no_grad():
        got = _tensor(fn(model, clean, corrupt, sender, receiver), want, "batch pos d_vocab")
    if _close(got, want):
        return
    (ls, hs), (lr, hr) = sender, receiver
    z = f"blocks.{ls}.attn.hook_z"
    with torch.no_grad():
        _, corrupt_cache = model.run_with_cache(corrupt, names_filter=lambda name: name == z)

        def head_patched(act, hook):
            act = act.clone()
            act[:, :, hs] = corrupt_cache[z][:, :, hs]
            return act
        everywhere = model.run_with_hooks(clean, fwd_hooks=[(z, head_patched)])
    assert not _close(got, everywhere), ("you patched the sender's output for every later reader (activation patching of the "
                                         f"head): only head L{lr}H{hr}'s keys should read it, everything else stays clean")
    assert not _close(got, lens.path_patch_logits(model, clean, corrupt, sender, receiver, "q")), \
        "you patched the receiver's queries (hook_q): this exercise patches its keys (hook_k)"
    assert not _close(got, _keys_patched(model, clean, corrupt, sender, receiver, layer_norm=False)), \
        f"you skipped the receiver's LayerNorm: its keys read model.blocks[{lr}].ln1(stream), not the raw stream"
    every_head = [(lr, h) for h in range(model.cfg.n_heads)]
    if len(every_head) > 1:
        assert not _close(got, lens.path_patch_logits(model, clean, corrupt, sender, every_head, "k")), \
            f"you patched the keys of every head of layer {lr}: only head {hr} (act[:, :, {hr}])"
    assert _close(got, want), (_first_difference(got, want, "batch pos d_vocab") + ": the keys are recomputed from the clean "
                               f"blocks.{lr}.hook_resid_pre plus (corrupt - clean) sender output (z @ W_O), through the "
                               f"receiver's LayerNorm (model.blocks[{lr}].ln1), W_K and b_K")


# ---- 7. K-composition

def my_k_composition(W_OV_A: torch.Tensor, W_QK_B: torch.Tensor) -> torch.Tensor:
    norm = torch.linalg.matrix_norm  # Frobenius by default
    return norm(W_QK_B @ W_OV_A.T) / (norm(W_QK_B) * norm(W_OV_A))


def check_my_k_composition(fn, model) -> None:
    ov, qk = lens.W_OV(model, 0).detach(), lens.W_QK(model, 1).detach()
    n = model.cfg.n_heads
    got = torch.tensor([[float(fn(ov[a], qk[b])) for b in range(n)] for a in range(n)])
    want = lens.composition_scores(model, "k")  # [writer head, reader head]
    if _close(got, want, atol=1e-4):
        return
    norm = torch.linalg.matrix_norm
    assert not _close(got, lens.composition_scores(model, "q"), atol=1e-4), \
        "that is Q-composition (what B's queries read): B's keys read A through W_QK (W_OV)^T"
    no_transpose = torch.tensor([[float(norm(qk[b] @ ov[a]) / (norm(qk[b]) * norm(ov[a]))) for b in range(n)] for a in range(n)])
    assert not _close(got, no_transpose, atol=1e-4), "you left out the transpose: W_QK @ W_OV.T, not W_QK @ W_OV"
    unnormalised = torch.tensor([[float(norm(qk[b] @ ov[a].T)) for b in range(n)] for a in range(n)])
    assert not _close(got, unnormalised, atol=1e-4), "you did not divide by ||W_QK||_F ||W_OV||_F: the score lies in [0, 1]"
    assert _close(got, want, atol=1e-4), (_first_difference(got, want, "writer_head reader_head") + ": the score of writer A "
                                          "and reader B is ||W_QK^B (W_OV^A)^T||_F / (||W_QK^B||_F ||W_OV^A||_F), with both "
                                          "matrices [d_model d_model] as lens.W_OV and lens.W_QK return them")


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    1: """
In this run the second-copy loss is {exercise_previous_token_ablation[none]:.3f} with nothing ablated and
{exercise_previous_token_ablation[previous-token head]:.3f} with the previous-token head ({previous_token_head})
mean-ablated: {exercise_previous_token_ablation[comparison]} the costlier layer-1 head ablated alone
({exercise_previous_token_ablation[costlier layer-1 head alone]:.3f}; every head alone is in the ablation table).

In a full run (a trained model; a smoke run's model has barely learned) the loss rises by more than ablating either
induction head alone, though less than ablating both together ({ablation_summary[induction heads]:.3f}): the two induction
heads cover for each other, while both find "the position after the earlier copy" through what the one previous-token
head wrote there. Without it the keys no longer say which character came before, and the circuit breaks even though the
induction heads themselves are untouched. (A head that matters through another is invisible to single-head DLA: it
writes nothing useful to the logits directly.)
""",
    3: """
In this run the logit lens reads the second copy at {exercise_logit_lens_second_copy[embeddings]:.3f} nats/char from the
embeddings, {exercise_logit_lens_second_copy[after layer 0]:.3f} after layer 0 and
{exercise_logit_lens_second_copy[after layer 1]:.3f} after layer 1; guessing uniformly costs {uniform_loss:.3f}.

In a full run the first two are worse than the uniform guess and only the last is low: before layer 1 the stream holds
the current character and what layer 0 moved (mostly the previous character). Knowing what *follows* requires looking
back to the first copy with that information, which is what the layer-1 induction head does. That the earlier readings
are worse than a uniform guess says little by itself: the final LayerNorm and unembedding were fitted to the stream after
layer 1, so reading an earlier stream through them gives confident but arbitrary bets (the training text is random, so
no character often follows another). The drop after layer 1 is what the lens shows.
""",
    5: """
The loss at position {exercise_patching_positions[query position]} is {exercise_patching_positions[clean]:.3f} on the
clean sequences and {exercise_patching_positions[corrupt]:.3f} with the first copy corrupted. In this run, patching layer
1's clean input (`blocks.1.hook_resid_pre`) at one position restores it most at position
{exercise_patching_positions[layer 1: best position]} (loss {exercise_patching_positions[layer 1: loss there]:.3f});
patching the embeddings (`blocks.0.hook_resid_pre`), most at position {exercise_patching_positions[embeddings: best position]}
(loss {exercise_patching_positions[embeddings: loss there]:.3f}).

In a full run both are position {exercise_patching_positions[the character after the earlier copy]}, the character
after the earlier copy of the query's character: the one place the induction head reads. Before layer 1 it carries
both what the induction head needs there, the key (written by the previous-token head: "the character before me was
X") and the value (the character to copy), so patching it there restores nearly the clean loss. Among the embeddings
no single position carries both: the key at that position is built by layer 0 from the embedding one position earlier,
which stays corrupt, so patching one embedding restores only part of the loss. Where an answer is carried depends on
the layer you patch.
""",
}
