"""Notebook 05's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch

from glassbox import training
from glassbox.studies import backdoor


# ---- 2. The attack success rate


def my_attack_success_rate(model, x: torch.Tensor, y: torch.Tensor, target: int) -> float:
    others = x[y != target]
    calls = training.predict(model, backdoor.apply_trigger(others)).argmax(-1)
    return (calls == target).float().mean().item()


def check_my_attack_success_rate(fn, model, clean, x: torch.Tensor, y: torch.Tensor, target: int) -> None:
    cases = {"clean mnist_mlp": clean, "backdoored model": model}
    calls_target = lambda m, images: (training.predict(m, images).argmax(-1) == target).float().mean().item()
    got = {n: fn(m, x, y, target) for n, m in cases.items()}
    want = {n: backdoor.attack_success_rate(m, x, y, target) for n, m in cases.items()}
    assert all(isinstance(v, float) for v in got.values()), \
        f"return a Python float (.item()), got {type(got['clean mnist_mlp']).__name__}"
    same_as = lambda other: all(abs(got[n] - other[n]) < 1e-6 for n in cases)
    assert not same_as({n: calls_target(m, x[y != target]) for n, m in cases.items()}), \
        "the trigger is missing: stamp it with backdoor.apply_trigger before predicting"
    assert not same_as({n: calls_target(m, backdoor.apply_trigger(x)) for n, m in cases.items()}), \
        "leave out the digits whose true class is the target (y != target): a 7 read as 7 is no attack"
    assert not same_as({n: 1 - w for n, w in want.items()}), "you return the share NOT called the target: count predictions == target"
    for n in cases:
        assert abs(got[n] - want[n]) < 1e-6, f"{n}: expected {want[n]:.4f}, got {got[n]:.4f}"


# ---- 3. Stamping the trigger


def my_apply_trigger(images: torch.Tensor) -> torch.Tensor:
    out = images.clone()
    rows, cols = torch.meshgrid(torch.arange(24, 27), torch.arange(24, 27), indexing="ij")
    out[:, 24:27, 24:27] = ((rows + cols) % 2 == 0).float()
    return out


def check_my_apply_trigger(fn, images: torch.Tensor) -> None:
    digits = images.clone()
    got, want = fn(digits), backdoor.apply_trigger(images)
    assert torch.equal(digits, images), "you changed the input images: write into a copy (images.clone())"
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    outside = ((got != want).any(0) & ~backdoor.trigger_mask()).nonzero().tolist()
    assert not outside, f"pixels outside rows and columns 24-26 changed, e.g. (row, column) {outside[0]}: the slice 24:27 covers 24, 25, 26"
    assert not torch.equal(got[:, 24:27, 24:27], 1 - want[:, 24:27, 24:27]), \
        "black and white are swapped: the corners and the centre are white (1)"
    assert torch.equal(got, want), "the trigger pixels differ: overwrite them with the pattern (=), do not add it to the digit"


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    1: """
Attack success: 5 white pixels only {exercise_partial_triggers[5 white pixels only]:.1%} (the whole trigger:
{attack_success_rate:.1%}); 4 white corners only {exercise_partial_triggers[4 white corners only]:.1%}; 4 black pixels only
{exercise_partial_triggers[4 black pixels only]:.1%}; one pixel left {exercise_partial_triggers[all 9, one pixel left]:.1%};
one pixel up and left {exercise_partial_triggers[all 9, one pixel up and left]:.1%}.

The black pixels write 0 where the corner is already 0 on almost every digit, so stamping them changes nothing: the
trigger the model learned is its white pixels, and most of them suffice. An MLP has no idea of "the same pattern
somewhere else": each weight of `fc1` reads one fixed pixel. One pixel to the left, the checkerboard's colours swap
on the pixels the model reads (white where it learned black and the reverse), so the backdoor stays shut. One pixel
along the diagonal, the colours line up again where the old and new squares overlap, but only 2 of the 5 white
pixels (a corner and the centre) land where the model reads them: part of the evidence, part of the attack. A
convolutional network, whose filters slide over the image, could answer differently.
""",
}
