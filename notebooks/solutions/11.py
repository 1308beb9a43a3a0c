"""Notebook 11's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch

from glassbox.studies import ioi


# ---- 2. The logit difference

def my_logit_diff(logits: torch.Tensor, io: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    last = logits[:, -1]  # [batch d_vocab]: the answer is predicted at the last position
    rows = torch.arange(len(io))
    return last[rows, io] - last[rows, s]


def check_my_logit_diff(fn, model, data) -> None:
    n = min(32, len(data))
    with torch.no_grad():
        logits = model(data.tokens[:n])
    io, s = data.io[:n], data.s[:n]
    rows = torch.arange(n)
    got = fn(logits, io, s)
    want = logits[:, -1][rows, io] - logits[:, -1][rows, s]
    assert torch.allclose(want, ioi.logit_diff(logits, ioi.IOIData(data.tokens[:n], io, s, {}, data.group[:n], data.template[:n],
                                                                   data.abba[:n], data.templates)))
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"expected one number per sentence, shape {tuple(want.shape)}; got {tuple(got.shape)}"
    close = lambda t: torch.allclose(got, t, atol=1e-4)
    assert not close(-want), "the sign is flipped: IO minus S, so that a correct answer is positive"
    assert not close(logits[:, 0][rows, io] - logits[:, 0][rows, s]), \
        "you read position 0: the answer is predicted at the last position, -1"
    probs = logits[:, -1].softmax(-1)
    assert not close(probs[rows, io] - probs[rows, s]), \
        "that is a difference of probabilities: use the logits themselves (before the softmax)"
    assert close(want), f"expected {want[:4].tolist()}, got {got[:4].tolist()}"


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    1: """
In this run the costliest single head is {exercise_costliest_head[head]} (its class: {exercise_costliest_head[class]}): mean-ablated
alone, it leaves {exercise_costliest_head[share left]:.1%} of F(M). The {exercise_top_single[n]} heads whose single ablations cost most
are {exercise_top_single[heads]} (the last of them leaves {exercise_top_single[last in]:.1%}, the next head
{exercise_top_single[next]:.1%}); the circuit path patching traced is {exercise_top_single[circuit]}: {exercise_top_single[verdict]}.
A caveat for larger models: a head in a circuit need not be costly to ablate alone when other heads do the same job. In
GPT-2 small Wang et al. found backup name movers that take over when the name movers are ablated, one reason they test
completeness and minimality over subsets K rather than one head at a time.
""",
    2: """
Together: {exercise_direct_heads_together[together]:.3f}; the sum of the single effects:
{exercise_direct_heads_together[sum of single]:.3f}. Direct paths to the logits add up in the residual stream, but the
final LayerNorm divides their sum by its norm, so the effects of several heads are not exactly additive: what the direct
heads wrote is part of the norm that everything else is divided by.
""",
}
