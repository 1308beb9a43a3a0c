"""Small language models on token ids: batches of windows, next-token loss, evaluation and sampling.
Works on any model mapping (batch, pos) int tokens to (batch, pos, d_vocab) logits, e.g. a
TransformerLens model. Training itself is `training.train(model, windows(...), loss_fn=next_token_loss)`."""
import itertools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from glassbox import checks, training


def windows(tokens: Int[Tensor, "n"], batch_size: int, n_ctx: int, seed: int = 0) -> Iterator[Int[Tensor, "batch n_ctx_plus_1"]]:
    """Endless batches of `n_ctx + 1` consecutive tokens at random starts, reproducible from `seed`."""
    checks.tokens(tokens, "tokens", ndim=1)
    checks.count(batch_size, "batch_size")
    checks.count(n_ctx, "n_ctx")
    if len(tokens) < n_ctx + 1:
        raise ValueError(f"tokens holds {len(tokens)} tokens, fewer than one window of n_ctx + 1 = {n_ctx + 1}")
    gen = torch.Generator().manual_seed(seed)
    return (random_windows(tokens, batch_size, n_ctx + 1, gen) for _ in itertools.count())


def next_token_loss(model: nn.Module, window: Int[Tensor, "batch n_ctx_plus_1"]) -> Tensor:
    """Mean cross-entropy (nats per token) of predicting window[:, 1:] from window[:, :-1]."""
    checks.tokens(window, "window")
    if window.shape[1] < 2:
        raise ValueError(f"window must hold at least 2 positions (input and next token), got shape {tuple(window.shape)}")
    window = window.to(training.model_device(model, window))
    logits = model(window[:, :-1])
    if not isinstance(logits, Tensor) or logits.shape[:2] != window[:, :-1].shape or logits.ndim != 3:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"model must map tokens {tuple(window[:, :-1].shape)} to logits [batch pos d_vocab], got {got}")
    if window.max() >= logits.shape[-1]:
        raise ValueError(f"window holds token {window.max().item()}, but the model has {logits.shape[-1]} logits")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate_loss(model: nn.Module, tokens: Int[Tensor, "n"], n_ctx: int, n_windows: int = 64,
                  batch_size: int = 32) -> float:
    """Mean next-token loss (nats/token) over `n_windows` evenly spaced windows of `tokens` (deterministic)."""
    checks.tokens(tokens, "tokens", ndim=1)
    checks.count(n_ctx, "n_ctx")
    checks.count(n_windows, "n_windows")
    checks.count(batch_size, "batch_size")
    if len(tokens) < n_ctx + 1:
        raise ValueError(f"need at least n_ctx + 1 = {n_ctx + 1} tokens, got {len(tokens)}")
    starts = torch.linspace(0, len(tokens) - n_ctx - 1, n_windows).long()
    batch = tokens[(starts[:, None] + torch.arange(n_ctx + 1)).to(tokens.device)]
    was_training = model.training
    model.eval()
    try:
        losses = [next_token_loss(model, chunk).item() * len(chunk) for chunk in batch.split(batch_size)]
    finally:
        model.train(was_training)
    return sum(losses) / len(batch)


@torch.no_grad()
def sample(model: nn.Module, prompt: Int[Tensor, "pos"], n_new: int, n_ctx: int, temperature: float = 1.0,
           seed: int = 0) -> Int[Tensor, "pos_plus_n_new"]:
    """`prompt` followed by `n_new` sampled tokens (temperature 0: greedy), the context cut to `n_ctx`."""
    checks.tokens(prompt, "prompt", ndim=1)
    checks.count(n_new, "n_new", least=0)
    checks.count(n_ctx, "n_ctx")
    if not (isinstance(temperature, (int, float)) and 0 <= temperature < float("inf")):
        raise ValueError(f"temperature must be >= 0, got {temperature!r} (0: greedy; pass a finite number)")
    gen = torch.Generator().manual_seed(seed)  # sampling on the CPU: the same draws on every device
    tokens = prompt.to(training.model_device(model, prompt)).clone()
    for _ in range(n_new):
        logits = model(tokens[None, -n_ctx:])[0, -1]
        if temperature == 0:
            nxt = logits.argmax()
        else:
            nxt = torch.multinomial(F.softmax(logits / temperature, -1).cpu(), 1, generator=gen)[0].to(tokens.device)
        tokens = torch.cat([tokens, nxt[None]])
    return tokens


def ngram_loss(train: Int[Tensor, "n_train"], val: Int[Tensor, "n_val"], d_vocab: int, order: int) -> float:
    """Validation loss (nats/token) of a unigram (order 1) or bigram (order 2) model counted on `train`,
    add-one smoothed: the baselines a language model must beat."""
    checks.count(d_vocab, "d_vocab")
    for name, t in (("train", train), ("val", val)):
        checks.tokens(t, name, ndim=1, d_vocab=d_vocab)
        if order == 2 and len(t) < 2:
            raise ValueError(f"{name} must hold at least 2 tokens for a bigram model, got {len(t)}")
    if order == 1:
        counts = torch.bincount(train, minlength=d_vocab).double() + 1
        return -(counts / counts.sum()).log()[val.to(train.device)].mean().item()
    if order == 2:
        counts = torch.ones(d_vocab, d_vocab, dtype=torch.float64, device=train.device)
        counts.index_put_((train[:-1], train[1:]), torch.ones(len(train) - 1, dtype=torch.float64, device=train.device),
                          accumulate=True)
        logp = (counts / counts.sum(1, keepdim=True)).log()
        val = val.to(train.device)
        return -logp[val[:-1], val[1:]].mean().item()
    raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order}")


def periodic_batches(batch_size: int, n_ctx: int, d_vocab: int, min_period: int, max_period: int,
                     seed: int = 0) -> Iterator[Int[Tensor, "batch n_ctx_plus_1"]]:
    """Endless batches of random tokens that repeat with a period drawn per sequence from
    min_period..max_period: past the first period every token is predictable from context, and only by
    looking back (a varying period means no fixed positional offset can do it)."""
    checks.count(batch_size, "batch_size")
    checks.count(d_vocab, "d_vocab")
    if not 1 <= min_period <= max_period <= n_ctx:
        raise ValueError(f"need 1 <= min_period <= max_period <= n_ctx, got {min_period}, {max_period}, {n_ctx}")
    return _periodic(batch_size, n_ctx, d_vocab, min_period, max_period, seed)


def _periodic(batch_size: int, n_ctx: int, d_vocab: int, min_period: int, max_period: int, seed: int
              ) -> Iterator[Int[Tensor, "batch n_ctx_plus_1"]]:
    gen = torch.Generator().manual_seed(seed)
    pos = torch.arange(n_ctx + 1)
    while True:
        period = torch.randint(min_period, max_period + 1, (batch_size, 1), generator=gen)
        base = torch.randint(0, d_vocab, (batch_size, max_period), generator=gen)
        yield base.gather(1, pos % period)


def repeated_word_spans(text: str, n_ctx: int, min_len: int = 4, capitalised: bool = True
                        ) -> list[tuple[int, int, int, int]]:
    """Words (letters only, >= `min_len`, capitalised if asked: names) that occur twice within `n_ctx`
    characters: (window_start, first_start, second_start, length), window_start = first_start rounded
    down so that both copies fit in the window [window_start, window_start + n_ctx). One per first copy."""
    import re

    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}; decode tokens first")
    checks.count(n_ctx, "n_ctx", least=2)
    checks.count(min_len, "min_len")
    spans, last_seen = [], {}
    for match in re.finditer(r"[A-Za-z]+", text):
        word, start = match.group(), match.start()
        if len(word) < min_len or (capitalised and not word[0].isupper()):
            continue
        prev = last_seen.get(word)
        if prev is not None and start + len(word) - prev <= n_ctx - 1:
            spans.append((max(0, prev - 1), prev, start, len(word)))
        last_seen[word] = start
    return spans


@torch.no_grad()
def repeated_span_losses(model: nn.Module, tokens: Int[Tensor, "n"], spans: list[tuple[int, int, int, int]],
                         n_ctx: int, batch_size: int = 64) -> Float[Tensor, "2 n_spans"]:
    """Mean loss on the characters 2..end of the first and of the second copy of each span (the first
    character of a word is a guess either way): row 0 first copies, row 1 second copies."""
    checks.tokens(tokens, "tokens", ndim=1)
    checks.count(n_ctx, "n_ctx")
    checks.count(batch_size, "batch_size")
    if len(tokens) < n_ctx + 1:
        raise ValueError(f"need at least n_ctx + 1 = {n_ctx + 1} tokens, got {len(tokens)}")
    if not spans:
        raise ValueError("spans is empty: no repeated words to measure (see repeated_word_spans)")
    for i, (window, first, second, length) in enumerate(spans):
        start = min(window, len(tokens) - n_ctx - 1)
        if length < 2 or not start <= first < second or second + length - 1 > start + n_ctx:
            raise ValueError(f"spans[{i}] = {spans[i]} does not fit: need length >= 2 and both copies inside the "
                             f"window of n_ctx + 1 = {n_ctx + 1} tokens from {start}; make spans with repeated_word_spans")
    out, device = torch.zeros(2, len(spans)), training.model_device(model, tokens)
    for i in range(0, len(spans), batch_size):
        chunk = spans[i: i + batch_size]
        starts = torch.tensor([s[0] for s in chunk]).clamp(max=len(tokens) - n_ctx - 1)
        windows_ = tokens[(starts[:, None] + torch.arange(n_ctx + 1)).to(tokens.device)].to(device)
        logits = model(windows_[:, :-1])
        losses = F.cross_entropy(logits.transpose(1, 2), windows_[:, 1:], reduction="none")  # loss[j]: token j + 1
        for j, ((_, first, second, length), start) in enumerate(zip(chunk, starts.tolist())):
            for row, s in enumerate((first, second)):
                idx = torch.arange(s + 1, s + length, device=losses.device) - start - 1  # characters 2..end of the copy
                out[row, i + j] = losses[j, idx].mean()
    return out


def random_windows(tokens: Int[Tensor, "n"], batch_size: int, length: int,
                   generator: torch.Generator | None = None) -> Int[Tensor, "batch_size length"]:
    """`batch_size` windows of `length` consecutive tokens at uniformly random starts. For next-token
    training use length = n_ctx + 1: inputs window[:, :-1], targets window[:, 1:]."""
    checks.tokens(tokens, "tokens", ndim=1)
    if batch_size < 1 or length < 1:
        raise ValueError(f"batch_size and length must be >= 1, got {batch_size} and {length}")
    if length > len(tokens):
        raise ValueError(f"windows of {length} tokens do not fit in {len(tokens)} tokens")
    starts = torch.randint(0, len(tokens) - length + 1, (batch_size,), generator=generator)
    return tokens[(starts[:, None] + torch.arange(length, device=starts.device)).to(tokens.device)]
