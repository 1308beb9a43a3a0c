"""Notebook 10's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch


# ---- 2. One edge of the attribution graph, by hand


def my_edge(model, tcs, prompt, graph, s: int, t: int) -> float:
    _, cache = model.run_with_cache(prompt[None])
    (_, p_s, j_s), (l_t, p_t, j_t) = graph.features[s].tolist(), graph.features[t].tolist()
    write = graph.activations[s] * tcs[0].W_dec[j_s]  # what the source adds to the residual stream at its position
    read = tcs[l_t].W_enc[:, j_t]
    read = (read - read.mean()) / cache[f"blocks.{l_t}.ln2.hook_scale"][0, p_t]  # the target's pre-activation, ln2's scale frozen
    edge = write @ read if p_s == p_t else torch.tensor(0.0)
    x = (write - write.mean()) / cache[f"blocks.{l_t}.ln1.hook_scale"][0, p_s] * model.blocks[l_t].ln1.w
    pattern = cache[f"blocks.{l_t}.attn.hook_pattern"][0, :, p_t, p_s]  # each head's attention from the target to the source
    for h in range(model.cfg.n_heads):
        edge = edge + pattern[h] * (x @ model.W_V[l_t, h] @ model.W_O[l_t, h]) @ read
    return float(edge)


def check_my_edge(fn, model, tcs, prompt, graph, s: int, t: int) -> None:
    got = fn(model, tcs, prompt, graph, s, t)
    assert isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.numel() == 1), \
        f"return one number (a float or a one-element tensor), got {type(got).__name__}"
    got, want, a = float(got), graph.adjacency[t, s].item(), graph.activations[s].item()
    close = lambda x: abs(x - want) <= 1e-4 + 1e-3 * abs(want)
    assert not (close(got * a) and not close(got)), "you left out the source's activation: an edge is a_s times the derivative"
    assert not (abs(got) < 1e-9 < abs(want)), ("zero, but the edge is not: the source sits at another position, so it reaches the "
                                               "target through layer 1's attention heads (their OV circuits, the pattern frozen)")
    assert not close(-got), "the sign is flipped: the source's vector is added to the residual stream"
    assert close(got), (f"expected {want:.5f}, got {got:.5f}: did you centre both vectors, divide by both LayerNorm scales (ln1 at the "
                        "source's position, ln2 at the target's), multiply by ln1's gain and weight each head by its attention?")


# ---- 3. A feature's direct effect on the logit, by hand


def my_logit_edge(model, tcs, prompt, graph, s: int) -> float:
    _, cache = model.run_with_cache(prompt[None])
    layer, _, j = graph.features[s].tolist()
    read = model.ln_final.w * (model.W_U[:, graph.target] - model.W_U.mean(1))  # the demeaned logit, through ln_final's gain
    read = (read - read.mean()) / cache["ln_final.hook_scale"][0, -1]  # LayerNorm centres, then divides by its scale (frozen)
    return float(graph.activations[s] * tcs[layer].W_dec[j] @ read)


def check_my_logit_edge(fn, model, tcs, prompt, graph, s: int) -> None:
    got = fn(model, tcs, prompt, graph, s)
    assert isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.numel() == 1), \
        f"return one number (a float or a one-element tensor), got {type(got).__name__}"
    got, want, a = float(got), graph.adjacency[-1, s].item(), graph.activations[s].item()
    _, cache = model.run_with_cache(prompt[None])
    layer, _, j = graph.features[s].tolist()
    write, scale = graph.activations[s] * tcs[layer].W_dec[j], cache["ln_final.hook_scale"][0, -1]
    demeaned = model.W_U[:, graph.target] - model.W_U.mean(1)

    def through(u, gain=True, centre=True, divide=True) -> float:
        r = model.ln_final.w * u if gain else u
        r = r - r.mean() if centre else r
        return float(write @ (r / scale if divide else r))
    close = lambda x, y=want: abs(x - y) <= 1e-4 + 1e-3 * abs(y)
    mistake = lambda x: close(got, x) and not close(got)  # got matches this mistake, and not the answer
    assert not mistake(want / a), "you left out the source's activation: an edge is a_s times the derivative"
    assert not mistake(through(model.W_U[:, graph.target])), ("the output node is the target's logit minus the mean logit: read "
                                                               "through W_U[:, target] minus W_U's mean over the vocabulary")
    assert not mistake(through(demeaned, divide=False)), "divide by the final LayerNorm's scale at the last position (ln_final.hook_scale)"
    assert not mistake(through(demeaned, gain=False)), "multiply by the final LayerNorm's gain ln_final.w"
    assert not mistake(through(demeaned, centre=False)), "centre over d_model: LayerNorm subtracts the mean before it divides by its scale"
    assert not close(-got), "the sign is flipped: the feature's vector is added to the residual stream"
    assert close(got), f"expected {want:.5f}, got {got:.5f}: the feature's vector times a_s, read through ln_final (centre, gain, scale) and W_U"


ANSWERS = {
    1: """
In this run the {exercise_joint_ablation[n_features]} kept features, switched off one at a time, change the target's demeaned logit
(now {exercise_joint_ablation[live][logit]:.2f}) by {exercise_joint_ablation[live][sum_of_singles]:+.2f} in total
({exercise_joint_ablation[live][n_up]} raise it, {exercise_joint_ablation[live][n_down]} lower it); switched off together, by
{exercise_joint_ablation[live][joint]:+.2f}. With the final LayerNorm's scale frozen at its value on the prompt, the single effects of the same features
sum to {exercise_joint_ablation[final_ln_frozen][sum_of_singles]:+.2f} ({exercise_joint_ablation[final_ln_frozen][n_up]} up,
{exercise_joint_ablation[final_ln_frozen][n_down]} down) and the joint effect is {exercise_joint_ablation[final_ln_frozen][joint]:+.2f}.

One prompt is one prompt, so the same was measured on {exercise_joint_ablation[over_prompts][n]} of section 3's prompts (joint effect divided
by the sum of single effects; 1 would mean they add up). Live, the ratio runs from {exercise_joint_ablation[over_prompts][live][min]:.2f} to
{exercise_joint_ablation[over_prompts][live][max]:.2f} (median {exercise_joint_ablation[over_prompts][live][median]:.2f}): single effects of opposite
signs cancel in the sum, and the final LayerNorm's scale, which every single removal changes, rescales all the logits at once (section 4), so a
small sum is no evidence of redundancy. With the final scale frozen it runs from {exercise_joint_ablation[over_prompts][final_ln_frozen][min]:.2f}
to {exercise_joint_ablation[over_prompts][final_ln_frozen][max]:.2f} (median {exercise_joint_ablation[over_prompts][final_ln_frozen][median]:.2f}),
between 0 and 1 on {exercise_joint_ablation[over_prompts][final_ln_frozen][share_same_sign_smaller]:.0%} of the prompts (live:
{exercise_joint_ablation[over_prompts][live][share_same_sign_smaller]:.0%}): the same sign and order of magnitude, but the joint effect is
smaller than the sum. With everything the graph freezes frozen as well (attention patterns, every LayerNorm scale: the local replacement model) the median is
{exercise_joint_ablation[over_prompts][all_frozen][median]:.2f}; what then remains between the two is the features' own nonlinearity: layer-1 features are
recomputed from what layer 0 writes (TopK picks others when their inputs vanish), and a layer-0 feature's single effect runs partly through
layer-1 features that the joint intervention switches off as well, so the sum counts those paths twice. A graph's edges describe small changes
around one prompt; large joint interventions test whether that description still holds.
""",
}
