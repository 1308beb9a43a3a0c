"""Notebook 03's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch

from glassbox import circuits


# ---- 2. The exact OV table


def my_ov_table(model) -> torch.Tensor:
    ln1_out = circuits.get_ln1_outputs(model)  # [token position d_model]
    values = ln1_out @ model.W_V[0, 0] + model.b_V[0, 0]  # [token position d_head]
    return values @ model.W_O[0, 0] @ circuits.get_W_U_eff(model)  # [token position logit]


def check_my_ov_table(fn, model) -> None:
    got, want = fn(model), circuits.get_ov_table(model)
    ln1_out, W_V, b_V, W_O, W_U_eff = (circuits.get_ln1_outputs(model), model.W_V[0, 0], model.b_V[0, 0],
                                       model.W_O[0, 0], circuits.get_W_U_eff(model))
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"expected [token position logit] = {tuple(want.shape)}, got {tuple(got.shape)}"
    close = lambda t: torch.allclose(got, t, rtol=1e-4, atol=1e-3)
    assert not close(ln1_out @ W_V @ W_O @ W_U_eff), "you forgot the value bias b_V: add model.b_V[0, 0] to the value vectors"
    assert not close((ln1_out @ W_V + b_V) @ W_O @ model.W_U), \
        "you used W_U: the final LayerNorm first centres the stream and multiplies it by ln_final.w (circuits.get_W_U_eff)"
    embedded = model.W_E[:, None] + circuits.get_W_pos(model)[None]  # what LayerNorm 1 receives
    assert not close((embedded @ W_V + b_V) @ W_O @ W_U_eff), \
        "you skipped LayerNorm 1: W_V reads circuits.get_ln1_outputs(model), not W_E + W_pos"
    where = (got - want).abs().argmax()
    token, position, logit = torch.unravel_index(where, want.shape)
    assert close(want), (f"largest difference {(got - want).abs().max():.3g}, at token {token.item()}, position "
                         f"{position.item()}, logit {logit.item()} (you {got.flatten()[where]:.4g}, expected "
                         f"{want.flatten()[where]:.4g}): check each step (values, W_O, effective unembedding)")


# ---- 3. The head's direct logit attribution

def my_head_dla(model, tokens: torch.Tensor) -> torch.Tensor:
    _, c = model.run_with_cache(tokens, names_filter=lambda name: name in ("blocks.0.attn.hook_z", "ln_final.hook_scale"))
    head_out = c["blocks.0.attn.hook_z"][:, -1, 0] @ model.W_O[0, 0]  # [batch d_model] at the last position
    return head_out / c["ln_final.hook_scale"][:, -1] @ circuits.get_W_U_eff(model)


def check_my_head_dla(fn, model, tokens: torch.Tensor) -> None:
    want = circuits.get_logit_components(model, tokens)[0][: model.cfg.n_ctx].sum(0)  # components "value 0" .. "value 6"
    got = fn(model, tokens)
    _, cached = model.run_with_cache(tokens, names_filter=lambda name: name in ("blocks.0.attn.hook_z", "ln_final.hook_scale"))
    out, scale = cached["blocks.0.attn.hook_z"][:, :, 0] @ model.W_O[0, 0], cached["ln_final.hook_scale"]  # [batch pos ...]
    W_U_eff = circuits.get_W_U_eff(model)
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, \
        f"expected [batch d_vocab] = {tuple(want.shape)}, got {tuple(got.shape)}: keep only the last position"
    close = lambda t: torch.allclose(got, t, rtol=1e-3, atol=1e-2)
    assert not close(out[:, -1] @ W_U_eff), "you forgot to divide by each list's final LayerNorm scale (ln_final.hook_scale)"
    assert not close((out[:, -1] + model.b_O[0]) / scale[:, -1] @ W_U_eff), \
        "you added b_O: it is the same for every list and counted apart"
    assert not close(out[:, -1] / scale[:, -1] @ model.W_U), \
        "you used W_U: the final LayerNorm also centres and scales (circuits.get_W_U_eff)"
    assert not close(out[:, 0] / scale[:, 0] @ W_U_eff), "that is position 0: the answer is read at the last position"
    row = (got - want).abs().amax(1).argmax().item()
    assert close(want), (f"largest difference {(got - want).abs().max():.3g} (logits up to {want.abs().max():.0f}), "
                         f"first in list {row}: {tokens[row].tolist()}")


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    1: """
With uniform attention the Find-Min model finds the minimum of {exercise_min_uniform_attention[accuracy]:.1%} of the lists
(with its own attention {min_model[accuracy]:.1%}; the median model keeps {ablation_accuracy[attention pattern: uniform]:.2%}).
Its answer is still one of the list's numbers ({exercise_min_uniform_attention[answer_in_list]:.0%} of the time): its OV
circuit copies, so it answers one of the numbers it averaged, the last one {exercise_min_uniform_attention[answer_is_last_token]:.0%}
of the time (one in seven would be about 14%; the skip connection adds a vote for it), and one of the three smallest
{exercise_min_uniform_attention[answer_among_three_smallest]:.0%} of the time. The two models put the decision in
different places: Find-Min *chooses* in its QK circuit and only copies in its OV circuit, so uniform attention removes
the choice; the median model averages anyway and compares in its OV circuit, so uniform attention barely matters. The
cost of an ablation says where the computation lives.
""",
}
