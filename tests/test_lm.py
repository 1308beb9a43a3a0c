"""Unit tests of glassbox.lm on hand-built 'language models' whose every logit is known."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glassbox import lm


class Table(nn.Module):
    """logits[b, p] = table[tokens[b, p]]: a bigram model; records the inputs it saw and its mode."""

    def __init__(self, table):
        super().__init__()
        self.table, self.calls, self.modes = table, [], []

    def forward(self, tokens):
        self.calls.append(tokens)
        self.modes.append(self.training)
        return self.table[tokens]


def test_windows_are_reproducible_batches_of_n_ctx_plus_one_consecutive_tokens():
    tokens = torch.arange(50)
    a, b = lm.windows(tokens, 4, 6, seed=1), lm.windows(tokens, 4, 6, seed=1)
    first = [next(a) for _ in range(3)]
    assert all(w.shape == (4, 7) and (w.diff(dim=1) == 1).all() for w in first)
    assert all(torch.equal(w, next(b)) for w in first), "same seed, same stream"
    assert not torch.equal(first[0], first[1]), "every batch is drawn afresh"
    assert not torch.equal(first[0], next(lm.windows(tokens, 4, 6, seed=2)))


def test_next_token_loss_predicts_each_token_from_the_one_before():
    torch.manual_seed(0)
    model = Table(torch.randn(5, 5))
    window = torch.tensor([[0, 3, 1, 4], [2, 2, 0, 1]])
    manual = torch.stack([-F.log_softmax(model.table[window[b, p]], -1)[window[b, p + 1]]
                          for b in range(2) for p in range(3)]).mean()
    assert lm.next_token_loss(model, window).item() == pytest.approx(manual.item(), abs=1e-6)
    assert torch.equal(model.calls[-1], window[:, :-1]), "the model sees the window without its last token"


def test_evaluate_loss_averages_evenly_spaced_windows_in_eval_mode():
    torch.manual_seed(0)
    model = Table(torch.randn(7, 7))
    tokens = torch.randint(0, 7, (40,))
    n_ctx, n_windows = 5, 5
    starts = torch.linspace(0, 40 - n_ctx - 1, n_windows).long()
    expected = lm.next_token_loss(model, torch.stack([tokens[s:s + n_ctx + 1] for s in starts])).item()
    model.calls.clear()
    model.train()
    got = lm.evaluate_loss(model, tokens, n_ctx, n_windows=n_windows, batch_size=2)
    assert got == pytest.approx(expected, abs=1e-6), "mean over all windows (chunks weighted by their size)"
    assert [len(c) for c in model.calls] == [2, 2, 1], "windows evaluated batch_size at a time"
    assert torch.equal(model.calls[-1][0], tokens[34:39]), "the last window ends at the last token"
    assert model.modes[-3:] == [False] * 3 and model.training, "evaluated in eval mode, then the mode is restored"
    model.eval()
    lm.evaluate_loss(model, tokens, n_ctx, n_windows=3)
    assert not model.training
    assert lm.evaluate_loss(model, tokens[:6], n_ctx, n_windows=2) == pytest.approx(
        lm.next_token_loss(model, tokens[None, :6]).item(), abs=1e-6), "n_ctx + 1 tokens: one window"
    with pytest.raises(ValueError, match="need at least n_ctx \\+ 1 = 6 tokens, got 5"):
        lm.evaluate_loss(model, tokens[:5], n_ctx)


class FirstPlusOne(nn.Module):
    """At every position, predicts (first token of its context + 1) mod 10 with certainty."""

    def forward(self, tokens):
        nxt = (tokens[:, :1] + 1) % 10
        return 50.0 * F.one_hot(nxt, 10).float().expand(-1, tokens.shape[1], -1)


def test_greedy_sampling_follows_the_argmax_with_the_context_cut_to_n_ctx():
    out = lm.sample(FirstPlusOne(), torch.tensor([0]), n_new=5, n_ctx=2, temperature=0)
    # contexts: [0] -> 1, [0 1] -> 1, [1 1] -> 2, [1 2] -> 2, [2 2] -> 3
    assert out.tolist() == [0, 1, 1, 2, 2, 3], "the model must see only the last n_ctx tokens"
    assert lm.sample(FirstPlusOne(), torch.tensor([4, 7]), n_new=2, n_ctx=3, temperature=0).tolist() == [4, 7, 5, 5]
    successor = Table(10.0 * torch.eye(10).roll(1, dims=1))  # a bigram model: token t -> t + 1 (mod 10)
    assert lm.sample(successor, torch.tensor([3, 7]), n_new=3, n_ctx=8, temperature=0).tolist() == [3, 7, 8, 9, 0], \
        "the next token comes from the logits at the LAST position"


class Fixed(nn.Module):
    """The same logits at every step, whatever the context."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, tokens):
        return self.logits.expand(len(tokens), tokens.shape[1], -1)


def test_sampling_draws_from_the_softmax_at_the_temperature():
    logits = torch.tensor([math.log(6.0), math.log(3.0), 0.0])  # softmax: 0.6, 0.3, 0.1
    n = 3000
    for temperature, expected in ((1.0, [0.6, 0.3, 0.1]), (0.5, [36 / 46, 9 / 46, 1 / 46])):
        out = lm.sample(Fixed(logits), torch.tensor([0]), n_new=n, n_ctx=1, temperature=temperature, seed=0)
        share = torch.bincount(out[1:], minlength=3).float() / n
        assert torch.allclose(share, torch.tensor(expected), atol=0.03), \
            f"T={temperature}: drew {share.tolist()}, softmax(logits / T) is {expected}"
    a = lm.sample(Fixed(logits), torch.tensor([0]), n_new=20, n_ctx=1, seed=5)
    assert torch.equal(a, lm.sample(Fixed(logits), torch.tensor([0]), n_new=20, n_ctx=1, seed=5)), "same seed, same text"
    assert not torch.equal(a, lm.sample(Fixed(logits), torch.tensor([0]), n_new=20, n_ctx=1, seed=6))
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1"):
        lm.sample(Fixed(logits), torch.tensor([0]), n_new=1, n_ctx=1, temperature=-1)
