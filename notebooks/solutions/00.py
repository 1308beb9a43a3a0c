"""Notebook 00's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch

from glassbox.studies import superposition as sp


# ---- 2. Dimensions per feature


def my_feature_dimensionality(W: torch.Tensor) -> torch.Tensor:
    norms = W.norm(dim=1)  # [instances features]
    unit = W / norms[:, None].clamp(min=1e-8)
    overlaps = unit.transpose(1, 2) @ W  # [instances i j]: W_i_hat . W_j
    return norms ** 2 / (overlaps ** 2).sum(-1)


def check_my_feature_dimensionality(fn, W: torch.Tensor) -> None:
    mine, ref, keep = fn(W), sp.feature_dimensionality(W), sp.feature_norms(W) > 0.5
    assert isinstance(mine, torch.Tensor), f"return a tensor, got {type(mine).__name__}"
    assert mine.shape == ref.shape, f"expected one value per instance and feature, shape {tuple(ref.shape)}; got {tuple(mine.shape)}"
    sq_norms, dots = sp.feature_norms(W) ** 2, W.transpose(1, 2) @ W  # [instances features], [instances i j]: W_i . W_j
    same = lambda other: torch.allclose(mine[keep], other[keep], rtol=1e-3)
    assert not same(sq_norms / (dots ** 2).sum(-1)), "W_i is not normalised in the overlaps: use the unit vector W_i / ||W_i||"
    assert not same(sq_norms / (dots / sq_norms.sqrt()[..., None]).sum(-1)), "square each overlap (W_i_hat . W_j) before summing over j"
    assert not same(sq_norms / sp.superposition(W)), "keep j = i in the sum: it adds ||W_i||^2, so a feature alone on its direction gets D_i = 1"
    unit_rows = W / W.norm(dim=2, keepdim=True).clamp(min=1e-8)  # normalised over the features axis instead of the hidden one
    assert not same(sq_norms / ((unit_rows.transpose(1, 2) @ W) ** 2).sum(-1)), \
        "you normalised over the features axis (2): a feature is a column of W, so normalise over the hidden axis (1)"
    gap = torch.where(keep, (mine - ref).abs(), torch.zeros_like(ref))
    instance, feature = divmod(gap.argmax().item(), ref.shape[1])
    assert torch.allclose(mine[keep], ref[keep], rtol=1e-3), \
        (f"largest difference at instance {instance}, feature {feature}: expected {ref[instance, feature]:.4f}, "
         f"got {mine[instance, feature]:.4f}")


# ---- 3. The toy model's loss


def my_toy_loss(model, x: torch.Tensor) -> torch.Tensor:
    weighted = model.importance * (x - model(x)) ** 2  # [batch instances features]
    return weighted.sum(-1).mean(0)


def check_my_toy_loss(fn, model, x: torch.Tensor) -> None:
    with torch.no_grad():
        mine, ref, err = fn(model, x), model.loss(x), x - model(x)
    assert isinstance(mine, torch.Tensor), f"return a tensor, got {type(mine).__name__}"
    assert mine.shape == ref.shape, f"expected one loss per instance, shape {tuple(ref.shape)}; got {tuple(mine.shape)}"
    same = lambda other: torch.allclose(mine, other, rtol=1e-4)
    assert not same((err ** 2).sum(-1).mean(0)), "the importance is missing: weight each feature's squared error by model.importance"
    assert not same(ref / model.n_features), "you averaged over the features: sum them, and average over the batch only"
    assert not same(ref * len(x)), "you summed over the batch: average over it"
    assert not same((model.importance * err.abs()).sum(-1).mean(0)), "square the error (x - x')"
    worst = (mine - ref).abs().argmax().item()
    assert same(ref), f"instance {worst}: expected {ref[worst]:.5g}, got {mine[worst]:.5g} (all: expected {ref.tolist()})"


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    1: """
The linear model keeps {exercise_linear_toy[represented]} features (with the ReLU, at the same sparsity:
{tms_features_represented_sparse}), and the largest overlap of a kept feature with all the others, Σⱼ≠ᵢ (Ŵᵢ·Wⱼ)²
(`sp.superposition`), is {exercise_linear_toy[largest_superposition]:.2f} (0 means orthogonal directions). Without the ReLU nothing can
filter interference: if two features share a direction, every time one is active the other's output is off by
the overlap, an error linear in the input that no bias can cancel. So the best linear solution is PCA's: the
features with the largest importance-weighted variance, each on its own direction, however sparse the inputs
(Elhage et al., section "Demonstrating Superposition"). Sparsity pays only when a non-linearity can switch
the rare interference off.
""",
    4: """
After a quarter of the training ({exercise_short_pentagon[quarter][steps]} steps) the best of the
{exercise_short_pentagon[quarter][instances]} instances has its neighbouring features within
{exercise_short_pentagon[quarter][max_angle_error_deg]:.2f}° of 72°, after an eighth ({exercise_short_pentagon[eighth][steps]} steps)
within {exercise_short_pentagon[eighth][max_angle_error_deg]:.2f}° (the full {exercise_short_pentagon[full][steps]} steps of section
5.2: {exercise_short_pentagon[full][max_angle_error_deg]:.2f}°). Instances within 5% of the best instance's loss: after an eighth
{exercise_short_pentagon[eighth][near_best]}, a quarter {exercise_short_pentagon[quarter][near_best]}, the whole training
{exercise_short_pentagon[full][near_best]} of {exercise_short_pentagon[full][instances]}. The pentagon appears early and the rest of
the training sharpens it; an initialisation that settles in a worse arrangement need not leave it, which is why the
notebook keeps the best instance of several.
""",
}
