"""Notebook 09's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch

from glassbox import fourier
from glassbox.studies import grokking


# ---- 2. The frequency norms of an embedding

def my_frequency_norms(W: torch.Tensor) -> torch.Tensor:
    p = W.shape[0]
    coefficients = fourier.basis(p) @ W  # [fourier_row d]: row 0 the constant, rows 2k - 1 and 2k cos k and sin k
    out = torch.zeros(p // 2 + 1)
    out[0] = coefficients[0].norm()
    for k in range(1, p // 2 + 1):
        out[k] = coefficients[2 * k - 1: 2 * k + 1].norm()  # cos and sin of frequency k together
    return out


def check_my_frequency_norms(fn, W: torch.Tensor) -> None:
    want, got = fourier.embedding_frequency_norms(W), fn(W)
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"expected {tuple(want.shape)}, one norm per frequency 0..p//2, got {tuple(got.shape)}"
    got = got.detach().float()
    close = lambda t: torch.allclose(got, t, atol=1e-4)
    if close(want):
        return
    assert not close(want.pow(2)), "these are squared norms: take the square root"
    assert not torch.allclose(got[1:], want[:-1], atol=1e-4), "off by one: frequency k is at index k (0 is the constant)"
    c = fourier.basis(W.shape[0]) @ W.float()
    rows = lambda first: torch.stack([c[0].norm()] + [c[2 * k - first].norm() for k in range(1, W.shape[0] // 2 + 1)])
    assert not (close(rows(1)) or close(rows(0))), \
        "that is the cosine (or the sine) alone: combine both rows of each frequency (rows 2k - 1 and 2k) in one norm"
    k = (got - want).abs().argmax().item()
    assert close(want), f"frequency {k} differs most: you {got[k]:.4g}, expected {want[k]:.4g}"


# ---- 3. The excluded loss

def my_excluded_loss(logits: torch.Tensor, freqs: list[int], data) -> float:
    d = fourier.sum_directions(data.p, freqs)  # [2 * len(freqs) pairs], orthonormal rows
    removed = logits - d.T @ (d @ logits)  # each answer's column with the key frequencies of a + b projected out
    return torch.nn.functional.cross_entropy(removed[data.train].double(), data.labels[data.train]).item()


def check_my_excluded_loss(fn, logits: torch.Tensor, freqs: list[int], data) -> None:
    want, got = grokking.logit_measures(logits, data, freqs)["excluded_loss"], fn(logits, freqs, data)
    assert isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.numel() == 1), \
        f"return one number, got {type(got).__name__}" + (f" of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else "")
    got = float(got)
    if abs(got - want) < 1e-4:
        return
    loss = lambda x, rows: grokking.loss_and_accuracy(x[rows], data.labels[rows])[0]
    excluded = grokking.excluded_logits(logits, data.p, freqs)
    kept = logits - excluded  # the projection onto the key frequencies' directions
    everything = torch.arange(len(logits))
    near = lambda value: abs(got - value) <= 1e-3 * abs(value) + 1e-12  # relative: a memorised training loss is tiny
    assert not near(loss(excluded, everything)), "you measured it on every pair: the excluded loss is measured on the training pairs only"
    assert not near(loss(excluded, data.test)), "you measured it on the test pairs: the excluded loss is measured on the training pairs"
    assert not near(loss(logits, data.train)), "you removed nothing: that is the training loss; subtract the logits' projection onto the directions"
    assert not near(loss(kept, data.train)), \
        "you kept only the key frequencies (the projection itself): the excluded loss removes them, logits minus the projection"
    raise AssertionError(f"got {got:.6g}, expected {want:.6g}: project each answer's column (logits[:, c], over all pairs) "
                         "onto the directions, subtract, then take the cross-entropy on the training pairs")


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    1: """
Only frequency {only_strongest_frequency[frequency]}: test accuracy **{only_strongest_frequency[test_accuracy]:.1%}**, test
loss {only_strongest_frequency[test_loss]:.3g} (all key frequencies together: {ablations[logits: key frequencies only][test_loss]:.2g}).

The restricted logits are each answer's mean logit plus that frequency's cosine. With p prime, `cos(w k d)` over
d = 0..p-1 is largest only at d = 0, so a perfect cosine alone points at the right answer; but its runner-up answers
(k d = +-1 mod p) score `cos(2 pi / p)`, so the right answer leads by only alpha (1 - cos(2 pi / p)) =
**{only_strongest_frequency[margin_nats]:.2f} nats** in this run. Two per-answer differences compete with that margin:
the answers' mean logits differ by up to **{only_strongest_frequency[answer_mean_spread_nats]:.1f} nats**, and the
cosine's amplitude differs from answer to answer (from {only_strongest_frequency[answer_amplitude_range][0]:.1f} to
{only_strongest_frequency[answer_amplitude_range][1]:.1f}); in a full run both are many times the margin. Removing each
answer's mean, the single frequency answers {only_strongest_frequency[accuracy_answer_means_removed]:.1%} of the test
pairs; also giving every answer the same amplitude, **{only_strongest_frequency[accuracy_means_removed_amplitudes_equalised]:.1%}**.
What is still wrong then can only come from the cosine's phase, which also differs a little from answer to answer: a
shift of a small fraction of 2 pi / p is enough to hand the top score to a neighbouring answer. In the full model
several frequencies whose runner-ups differ add up to a margin wide enough to beat these per-answer differences
(Nanda et al. §4).
""",
    4: """
With {small_train_fraction[train_fraction]:.0%} of the pairs the model {small_train_fraction[memorised]} (this run, with
{small_train_fraction[this_run_train_fraction]:.0%}: epoch {epoch_memorised}); after {seeds[epochs]} epochs it answers
**{small_train_fraction[test_accuracy_at_end]:.1%}** of its test pairs, {small_train_fraction[comparison]} this run's
{small_train_fraction[this_run_test_accuracy_at_same_epoch]:.1%} at the same epoch. The retraining took
{small_train_fraction[seconds]:.0f} s.

In a full run the smaller set is memorised sooner and generalises far less within the budget: fewer training pairs
are cheaper to memorise and constrain the general solution less, so generalisation comes later, if at all; whether it
comes at all is a longer run than this one.
""",
}
