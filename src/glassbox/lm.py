"""Small language models on token ids: batches of windows, next-token loss, evaluation and sampling.
Works on any model mapping (batch, pos) int tokens to (batch, pos, d_vocab) logits, e.g. a
TransformerLens model. Training itself is `training.train(model, windows(...), loss_fn=next_token_loss)`."""
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor, nn

from glassbox.text import random_windows


def windows(tokens: Int[Tensor, "n"], batch_size: int, n_ctx: int, seed: int = 0) -> Iterator[Int[Tensor, "batch n_ctx_plus_1"]]:
    """Endless batches of `n_ctx + 1` consecutive tokens at random starts, reproducible from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield random_windows(tokens, batch_size, n_ctx + 1, gen)


def next_token_loss(model: nn.Module, window: Int[Tensor, "batch n_ctx_plus_1"]) -> Tensor:
    """Mean cross-entropy (nats per token) of predicting window[:, 1:] from window[:, :-1]."""
    logits = model(window[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate_loss(model: nn.Module, tokens: Int[Tensor, "n"], n_ctx: int, n_windows: int = 64,
                  batch_size: int = 32) -> float:
    """Mean next-token loss (nats/token) over `n_windows` evenly spaced windows of `tokens` (deterministic)."""
    if len(tokens) < n_ctx + 1:
        raise ValueError(f"need at least n_ctx + 1 = {n_ctx + 1} tokens, got {len(tokens)}")
    starts = torch.linspace(0, len(tokens) - n_ctx - 1, n_windows).long()
    batch = tokens[starts[:, None] + torch.arange(n_ctx + 1)]
    was_training = model.training
    model.eval()
    losses = [next_token_loss(model, chunk).item() * len(chunk) for chunk in batch.split(batch_size)]
    model.train(was_training)
    return sum(losses) / len(batch)


@torch.no_grad()
def sample(model: nn.Module, prompt: Int[Tensor, "pos"], n_new: int, n_ctx: int, temperature: float = 1.0,
           seed: int = 0) -> Int[Tensor, "pos_plus_n_new"]:
    """`prompt` followed by `n_new` sampled tokens (temperature 0: greedy), the context cut to `n_ctx`."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    gen = torch.Generator().manual_seed(seed)
    tokens = prompt.clone()
    for _ in range(n_new):
        logits = model(tokens[None, -n_ctx:])[0, -1]
        if temperature == 0:
            nxt = logits.argmax()
        else:
            nxt = torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=gen)[0]
        tokens = torch.cat([tokens, nxt[None]])
    return tokens
