"""Notebook 04's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import copy

import torch
import torch.nn.functional as F

from glassbox import sae


# ---- 1. FVU


def my_fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    error = ((x - x_hat) ** 2).sum()
    spread = ((x - x.mean(dim=0, keepdim=True)) ** 2).sum()
    return (error / spread).item()


def check_my_fvu(fn, x: torch.Tensor, x_hat: torch.Tensor) -> None:
    got, want = float(fn(x, x_hat)), sae.fvu(x, x_hat)
    err = (x - x_hat).pow(2)
    made = lambda wrong: abs(got - float(wrong)) < 1e-5 and abs(want - float(wrong)) > 1e-5  # got a known wrong value
    assert got == got and abs(got) != float("inf"), \
        f"got {got}: a per-neuron ratio divides by zero for a neuron that never fires; sum over all inputs and neurons first, then divide once"
    assert not made(1 - want), "that is the variance *explained* (1 - FVU): return the share the reconstruction misses"
    assert not made(err.sum() / x.pow(2).sum()), "forgot to centre: divide by sum |x - mean(x)|^2, the spread around the mean input"
    assert not made(err.sum() / (x - x.mean(1, keepdim=True)).pow(2).sum()), \
        "wrong axis: the mean is over the inputs (dim 0), one per neuron"
    assert not made(want ** 0.5), "took a square root: FVU is a ratio of squared errors"
    assert not made((err.sum(0) / (x - x.mean(0)).pow(2).sum(0)).nanmean()), \
        "averaged the per-neuron ratios: sum the squared errors over all inputs and neurons first, then divide once"
    assert abs(got - want) < 1e-5, f"expected {want:.5f}, got {got:.5f} (a difference of {got - want:+.3g})"


# ---- 2. A TopK SAE's encoder


def my_topk_encode(sae_model, x: torch.Tensor) -> torch.Tensor:
    pre = (x - sae_model.b_dec) @ sae_model.W_enc + sae_model.b_enc  # [n d_sae]
    top = pre.topk(sae_model.cfg.k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())


def check_my_topk_encode(fn, sae_model, x: torch.Tensor) -> None:
    with torch.no_grad():
        got, want = fn(sae_model, x), sae.encode(sae_model, x)
        k = sae_model.cfg.k
        assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
        assert got.shape == want.shape, (f"expected [n d_sae] = {tuple(want.shape)}, got {tuple(got.shape)}: put the k values back "
                                         "at their latents' places (scatter) in a tensor of zeros")
        close = lambda t: torch.allclose(got, t, rtol=1e-4, atol=1e-5)
        keep = lambda pre, dim=-1: torch.zeros_like(pre).scatter(dim, pre.topk(k, dim=dim).indices, pre.topk(k, dim=dim).values.relu())
        pre = (x - sae_model.b_dec) @ sae_model.W_enc + sae_model.b_enc
        assert not close(keep(x @ sae_model.W_enc + sae_model.b_enc)), \
            "you forgot to subtract b_dec from x first (apply_b_dec_to_input: the SAE centres its input on the decoder bias)"
        assert not close(pre.relu()), "no TopK: keep only the k largest latents per input, zero the rest"
        assert not close(keep(pre, 0)), "you took the top k over the inputs (dim 0): take them per input, over the latents (dim -1)"
        assert (got != 0).sum(-1).max() <= k, f"an input has {(got != 0).sum(-1).max().item()} active latents; at most k = {k}"
        assert (got >= 0).all(), "negative latents: apply a ReLU to the k kept values"
        bad = (got - want).abs().amax(-1).argmax().item()
        assert close(want), (f"largest difference {(got - want).abs().max():.3g}, at input {bad}: you activate latents "
                             f"{got[bad].nonzero().flatten().tolist()[:8]}..., expected {want[bad].nonzero().flatten().tolist()[:8]}...")


# ---- 5. One training step of a TopK SAE


def my_sae_step(p: dict, x: torch.Tensor, k: int, lr: float) -> float:
    pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    top = pre.topk(k, dim=-1)
    latents = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    x_hat = latents @ p["W_dec"] + p["b_dec"]
    loss = (x - x_hat).pow(2).sum(-1).mean()
    loss.backward()
    with torch.no_grad():
        for w in p.values():
            w -= lr * w.grad
            w.grad = None
    return loss.item()


def fresh_sae_parameters(d_in: int, d_sae: int, seed: int) -> dict:
    """Small random TopK SAE parameters, each requiring grad (the decoder rows start at norm 0.1)."""
    g = torch.Generator().manual_seed(seed)
    W_dec = F.normalize(torch.randn(d_sae, d_in, generator=g), dim=-1) * 0.1
    p = {"W_enc": W_dec.T.clone(), "b_enc": torch.zeros(d_sae), "W_dec": W_dec, "b_dec": torch.zeros(d_in)}
    return {name: w.requires_grad_() for name, w in p.items()}


def check_my_sae_step(fn, x: torch.Tensor, seed: int) -> None:
    x = x / x.norm(dim=-1).mean()  # activations scaled to mean norm 1, so one learning rate suits any layer
    k, lr, steps = 8, 0.05, 60
    mine, ref = fresh_sae_parameters(x.shape[1], 4 * x.shape[1], seed), fresh_sae_parameters(x.shape[1], 4 * x.shape[1], seed)
    before = {n: w.detach().clone() for n, w in mine.items()}
    with torch.enable_grad():
        got, want = fn(mine, x, k, lr), my_sae_step(ref, x, k, lr)
    assert isinstance(got, float), f"return the loss as a float (loss.item()), got {type(got).__name__}"
    d_in = x.shape[1]
    assert not abs(got - want / d_in) < 1e-4 * abs(want), "your loss is the mean over every element: sum the squared error over d_in, average over the batch"
    assert not abs(got - want * len(x)) < 1e-4 * abs(want * len(x)), "your loss sums over the batch: average over the inputs"
    assert abs(got - want) < 1e-4 * abs(want), f"the loss before the step is {want:.5g}, yours {got:.5g}: check the encoder (TopK, ReLU) and the decoder"
    moved = [n for n in mine if not torch.equal(mine[n].detach(), before[n])]
    assert moved, "no parameter changed: take the step (w -= lr * w.grad) under torch.no_grad()"
    for n in mine:
        assert mine[n].grad is None or not mine[n].grad.abs().sum(), \
            f"{n}.grad is left over: zero (or set to None) the gradients after the step, or the next step adds to them"
        diff = (mine[n].detach() - ref[n].detach()).abs().max().item()
        assert diff < 1e-5, f"after the step {n} differs from the reference by up to {diff:.3g}: one SGD step, w -= lr * grad"
    with torch.enable_grad():
        losses = [fn(mine, x, k, lr) for _ in range(steps)]
    assert losses[-1] < 0.9 * losses[0], f"{steps} steps took the loss only from {losses[0]:.4g} to {losses[-1]:.4g}: is each step downhill?"


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    3: """
Cut to its 8 largest latents, the $k = 64$ SAE misses {exercise_k64_cut_to_8[fvu]:.1%} of the variance (with all 64:
{exercise_k64_cut_to_8[k64_fvu]:.1%}) and the MLP reads {exercise_k64_cut_to_8[spliced_accuracy]:.1%} of the test digits with it
spliced in; the SAE trained with $k = 8$ misses {exercise_k64_cut_to_8[trained_k8_fvu]:.1%} and keeps
{exercise_k64_cut_to_8[trained_k8_spliced_accuracy]:.1%} (clean {mnist_clean_accuracy:.1%}). In a full run the cut SAE is far
worse on both counts (over twice the FVU, more than 10 points of accuracy lower; a smoke run's tiny SAEs need not show
it). A TopK SAE's dictionary is fitted to its $k$: trained with 64 slots, each digit is rebuilt from many
medium-sized pieces that only add up together, so the 8 largest carry a fraction of the activation. A likely reason, not measured here: trained with 8 slots, the encoder and decoder learn fewer, broader directions
that can stand alone. Sparsity is set by training, not a dial to turn afterwards.
""",
    4: """
Spliced accuracy against random errors of the same length ({exercise_random_error_of_the_same_size[k=8][n_random]} random draws each): the $k = 8$ SAE
{exercise_random_error_of_the_same_size[k=8][spliced_accuracy]:.1%}, random
{exercise_random_error_of_the_same_size[k=8][random_min]:.1%} to {exercise_random_error_of_the_same_size[k=8][random_max]:.1%}
(the SAE is {exercise_random_error_of_the_same_size[k=8][verdict]} that range); the $k = 64$ SAE cut to 8 latents
{exercise_random_error_of_the_same_size[k=64 cut to 8][spliced_accuracy]:.1%}, random
{exercise_random_error_of_the_same_size[k=64 cut to 8][random_min]:.1%} to {exercise_random_error_of_the_same_size[k=64 cut to 8][random_max]:.1%}
({exercise_random_error_of_the_same_size[k=64 cut to 8][verdict]} that range). Share of the test digits lost against the clean model: {exercise_random_error_of_the_same_size[k=8][lost]:.1%} for the
$k = 8$ SAE against {exercise_random_error_of_the_same_size[k=8][random_lost]:.1%} for random errors of its size;
{exercise_random_error_of_the_same_size[k=64 cut to 8][lost]:.1%} for the cut SAE against
{exercise_random_error_of_the_same_size[k=64 cut to 8][random_lost]:.1%}.

The gap between the two (SAE lost minus random lost) is {exercise_random_error_of_the_same_size[k=8][gap]:.2%} for the $k = 8$ SAE,
{exercise_random_error_of_the_same_size[k=8][gap_standard_errors]:.1f} standard errors of its spliced accuracy on
{exercise_random_error_of_the_same_size[k=8][n_digits]:,} digits ({exercise_random_error_of_the_same_size[k=8][standard_error]:.2%} each),
and {exercise_random_error_of_the_same_size[k=64 cut to 8][gap]:.1%} for the cut SAE
({exercise_random_error_of_the_same_size[k=64 cut to 8][gap_standard_errors]:.0f} standard errors). Read with the range of random draws,
this $k = 8$ SAE's error costs {exercise_random_error_of_the_same_size[k=8][reading]}; the cut SAE's costs
{exercise_random_error_of_the_same_size[k=64 cut to 8][reading]}. In a full run the cut SAE falls more than 10 points below every
random draw (a smoke run's tiny SAEs need not show it); for the $k = 8$ SAE the answer is read from the numbers above, not assumed,
and it is the answer for this one SAE: its standard error measures which digits were drawn, not how the SAE was trained, so
another SAE seed, or the same seed on another CPU, can read differently.

A random vector spreads its length over all
128 directions and pushes each digit's logits a different way, so much of it misses what the next layer reads. The
cut SAE's error is made of whole dropped features: directions the data really vary along, taken out of every digit
that uses them, so the same length does more harm. A trained SAE's error is partly noise-like and partly
pieces of features it failed to fit; the second part is what makes an error cost more than its length says. [Gurnee (2024)](https://www.alignmentforum.org/posts/rZPiuFxESMxCDHe4B/sae-reconstruction-errors-are-empirically-pathological)
ran this test on a language model's residual stream (its "Summary"): at every layer, splicing in the SAE's reconstruction raised the
KL divergence and the loss about 2 to 4.5 times as much as a random point at the same distance. FVU alone does not
say how much an SAE's error costs; the spliced accuracy does.
""",
}
