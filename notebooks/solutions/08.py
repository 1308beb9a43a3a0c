"""Notebook 08's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch

from glassbox import sae
from glassbox.studies import char_features


# ---- 2. Loss recovered


def my_loss_recovered(clean: float, spliced: float, ablated: float) -> float:
    return (ablated - spliced) / (ablated - clean)


def check_my_loss_recovered(fn, cases: list) -> None:
    for clean, spliced, ablated in cases:
        got, want = fn(clean, spliced, ablated), sae.loss_recovered(clean, spliced, ablated)
        assert isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.numel() == 1), \
            f"return one number, got {type(got).__name__}"
        got = float(got)
        args = f"(clean, spliced, ablated) = ({clean:.4g}, {spliced:.4g}, {ablated:.4g})"
        if abs(want - 0.5) > 1e-9:
            assert abs(got - (1 - want)) > 1e-9, f"for {args} you return the share NOT recovered: measure from the ablated loss, ablated - spliced"
        if abs(ablated) > 1e-9 and abs((ablated - spliced) / ablated - want) > 1e-9:
            assert abs(got - (ablated - spliced) / ablated) > 1e-9, f"for {args} you divide by the ablated loss: divide by the damage, ablated - clean"
        assert abs(got - want) < 1e-9, f"for {args} expected {want:.4f}, got {got:.4f}"


# ---- 3. A latent's logit effect


def my_logit_effect(decoder_row: torch.Tensor, W_out: torch.Tensor, ln_w: torch.Tensor, W_U: torch.Tensor) -> torch.Tensor:
    resid = decoder_row @ W_out  # (d_model,)
    logits = ((resid - resid.mean()) * ln_w) @ W_U
    return logits - logits.mean()


def check_my_logit_effect(fn, big, W_out: torch.Tensor, ln_w: torch.Tensor, W_U: torch.Tensor, latent: int) -> None:
    row = big.W_dec[latent].detach()
    mine, ref = fn(row, W_out, ln_w, W_U), char_features.direct_logit_effect(row @ W_out, W_U, ln_w)
    assert isinstance(mine, torch.Tensor), f"return a tensor, got {type(mine).__name__}"
    assert mine.shape == ref.shape, f"expected one value per character {tuple(ref.shape)}, got {tuple(mine.shape)}"
    close = lambda t: torch.allclose(mine, t, atol=1e-4)
    assert not close(-ref), "sign flipped: the decoder row is added to the activations"
    assert not (torch.allclose(mine - mine.mean(), ref, atol=1e-4) and not close(ref)), \
        "right up to a constant: centre the logits over the vocabulary"
    resid = row @ W_out
    assert not close(char_features.direct_logit_effect(resid, W_U)), "you left out ln_final's weight: multiply the centred direction by ln_w"
    uncentred = resid * ln_w @ W_U
    assert not close(uncentred - uncentred.mean()), "centre the residual direction over d_model first (LayerNorm subtracts its mean)"
    worst = (mine - ref).abs().argmax().item()
    assert close(ref), f"largest difference at character {worst}: expected {ref[worst]:.4g}, got {mine[worst]:.4g}"


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    1: """
Share of the feature's three promoted characters in the generated text: clean {exercise_negative_steering[clean]:.1%},
with the feature added {exercise_negative_steering[plus_feature]:.1%}, subtracted {exercise_negative_steering[minus_feature]:.1%}.
A sample with it subtracted: `{exercise_negative_steering[sample]}`.
The direct path from the MLP to the logits is linear up to the final LayerNorm, so pushing the other way usually
suppresses the characters the positive push promotes (in a full run their share falls below the clean rate; a smoke run's
barely trained model and few generated characters may show no change). It need not reach zero: other paths (attention, the
embeddings) still predict those characters. And since the push is added after the MLP's ReLU nothing clips it, so a
large push in either direction can drive the text somewhere strange.
""",
}
