"""Notebook 06's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch

from glassbox.studies import pruning, regularisation

LAYERS = {"relu1": "fc1", "relu2": "fc2"}  # hidden activations -> the Linear layer holding their incoming weights (as in the notebook)
READERS = {"relu1": "fc2", "relu2": "out"}  # hidden activations -> the Linear layer reading them


# ---- 2. The magnitude score


def my_magnitude_scores(model, layer: str) -> torch.Tensor:
    incoming = getattr(model, LAYERS[layer]).weight.detach()  # (neuron, input)
    outgoing = getattr(model, READERS[layer]).weight.detach()  # (output, neuron)
    return incoming.norm(dim=1) * outgoing.norm(dim=0)


def check_my_magnitude_scores(fn, model, x: torch.Tensor, y: torch.Tensor) -> None:
    reference = pruning.score_neurons(model, "magnitude", LAYERS, x, y, readers=READERS)
    for layer in LAYERS:
        mine, want = fn(model, layer), reference[layer]
        w_in, w_out = getattr(model, LAYERS[layer]).weight.detach(), getattr(model, READERS[layer]).weight.detach()
        assert isinstance(mine, torch.Tensor), f"{layer}: return a tensor, got {type(mine).__name__}"
        assert mine.shape == want.shape, (f"{layer}: expected one score per neuron {tuple(want.shape)}, got {tuple(mine.shape)}: incoming "
                                          f"weights are the rows of {LAYERS[layer]}.weight, outgoing ones the columns of {READERS[layer]}.weight")
        same = lambda other: torch.allclose(mine, other, rtol=1e-4)
        assert not same(w_in.norm(dim=1)), f"{layer}: only the incoming weights: multiply by the norm of the outgoing ones"
        assert not same(want ** 2), f"{layer}: these are squared norms: take the square roots (.norm())"
        assert not same(w_in.norm(dim=1) + w_out.norm(dim=0)), f"{layer}: you add the two norms: multiply them"
        worst = (mine - want).abs().argmax().item()
        assert same(want), f"{layer}: neuron {worst} expected {want[worst]:.5g}, got {mine[worst]:.5g}"


# ---- 3. How many digits a neuron answers to


def my_classes_per_neuron(acts: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    means = torch.stack([acts[y == digit].mean(0) for digit in range(10)])  # (digit, neuron)
    top = means.max(0).values
    return ((means >= 0.5 * top) & (top > 0)).sum(0)


def check_my_classes_per_neuron(fn, acts: torch.Tensor, y: torch.Tensor) -> None:
    acts = torch.cat([acts, torch.zeros(len(y), 1)], 1)  # plus a neuron that never fires
    mine, want = fn(acts, y), regularisation.classes_per_neuron(acts, y)
    assert isinstance(mine, torch.Tensor), f"return a tensor, got {type(mine).__name__}"
    assert mine.shape == want.shape, f"expected one count per neuron {tuple(want.shape)}, got {tuple(mine.shape)}: average over the images of each digit"
    assert int(mine[-1]) == 0, f"the last neuron never fires but got {int(mine[-1])}: a dead neuron answers to no digit (require top mean > 0)"
    live = want > 0
    assert not torch.equal(mine[live].long(), want[live].long() - 1), "off by one: the favourite digit counts too (its mean is >= half of itself)"
    differ = (mine.long() != want.long()).nonzero().flatten()
    assert not len(differ), (f"{len(differ)} neurons differ, the first neuron {differ[0].item()}: expected {int(want[differ[0]])} "
                             f"digits, got {int(mine[differ[0]])}")


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    1: """
Intact {exercise_remove_10pct[intact]:.2%}; without the 10% most needed {exercise_remove_10pct[10% most needed]:.2%}, the 10% least
needed {exercise_remove_10pct[10% least needed]:.2%}, a random 10% {exercise_remove_10pct[10% random]:.2%}, and the control, the 10%
least active (mean activation, no interpretability), {exercise_remove_10pct[10% least active]:.2%}.
The top of the ranking is where the score shows what it knows: the 10% it calls most needed cost far more than a random
10%. The bottom end says less than it seems. Of the {exercise_bottom_10pct_dead[of]} neurons in its bottom 10%,
{exercise_bottom_10pct_dead[dead]} never fire on the scoring digits, and the 10% least active, which any score that reads data
would find (and magnitude, which reads only the weights, finds the dead ones too: Part 1), go about as cheaply. So "the bottom of the list goes almost for free" is mostly dead-neuron detection, not
knowledge of the network: compare a score's bottom end with the least-active control, never with intact accuracy alone.
The pruning curves above only ever use the bottom end, which is why they are compared past the dead neurons (Part 1).
""",
    4: """
Rank agreement (Spearman) of each score computed on {exercise_scores_from_a_tenth[digits]} digits with the same score
on all {exercise_scores_from_a_tenth[all_digits]}: signed ablation {exercise_scores_from_a_tenth[spearman_with_all][ablation]:.2f},
absolute ablation {exercise_scores_from_a_tenth[spearman_with_all][ablation_abs]:.2f}, attribution
{exercise_scores_from_a_tenth[spearman_with_all][attribution]:.2f}, activation {exercise_scores_from_a_tenth[spearman_with_all][activation]:.2f},
magnitude {exercise_scores_from_a_tenth[spearman_with_all][magnitude]:.2f} (it reads no data: 1 by construction, the check
that the comparison itself is sound). Of the scores that read data, {exercise_scores_from_a_tenth[least_stable]} keeps
its order least. A signed score whose effects mostly cancel (the loss change when a neuron is removed, positive on
some digits and negative on others) is small for most neurons, so on few digits noise can decide their order: compare
the signed ablation's agreement with its absolute version's. This is the split-half reliability of the scores above,
asked with fewer digits.
""",
}
