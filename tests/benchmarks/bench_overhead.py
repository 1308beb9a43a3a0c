"""What the journal's loops cost beyond the arithmetic: each training loop and activation capture timed against
a plain PyTorch loop on the same model, and the model FLOP/s as a fraction of this machine's float32 matmul peak.
Run: .venv/bin/python tests/bench.py matmul_peak overhead

- `ratio_to_plain` = glassbox seconds / plain seconds (1.0: no overhead). The two run interleaved (A B B A ...)
  from the same weights on the same batches, and the ratio is the median of the per-turn ratios, so load from
  other jobs slows both alike: ratios are robust to load, absolute times and peak fractions are not (run those
  on an idle machine). Under heavy load they still scatter: three runs at load 4-6 on the 2 cores (2026-12-07)
  gave the MLP rows 0.97-1.02, the SAE 0.87-1.05 and the character LM 0.87-1.11 (two threads on cores other
  jobs hold wait on each other: its step times scattered by 10x); read a change inside that spread as noise.
  `same_weights` checks that the plain loop did the same work: it ends at the glassbox loop's weights, bit for bit.
- `peak_fraction` = model FLOP/s / `peak_gflops(threads)`, the best of a few float32 2048 x 2048 @ 2048 x 2048
  matmuls (2 n^3 FLOPs) at the bench's thread count. Model FLOPs per step, the usual estimates:
  MLP and SAE training 6 x multiply-adds x samples (forward 2, backward 4 per multiply-add);
  transformer training 6 x N x tokens, N = parameters less the token and position tables (lookups, no
  matmul), attention scores left out (Kaplan et al. 2020); a forward (capture) is 2 x the same.
- Threads as the notebooks: one for the MNIST MLP (01) and its SAE (04), contract.DEFAULT_THREADS for the
  character LM (07).
"""
import functools
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from sae_lens import TrainingSAE
from sae_lens.saes.sae import TrainStepInput
from sae_lens.training.optim import get_lr_scheduler
from torch import nn

from glassbox import hooks, lm, sae, training
from glassbox.journal import checkpoints, contract
from glassbox.studies import mnist_mlp, models, shakespeare

LM_TARGET = ">= 0.40"  # the issue "The journal reruns in half the time": the character LM's training at 40% of peak


@contextmanager
def _threads(n: int):
    """torch on `n` threads inside the block, then back to the count before."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def peak_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of the best of `reps` float32 (n, n) @ (n, n) matmuls on `threads` threads, after a warm-up."""
    with _threads(threads):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        best = min(_seconds(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _interleaved(runs: dict[str, Callable[[], object]], reps: int) -> dict:
    """Each run once (warm-up), then all in turn `reps` times, the order reversed every other turn (A B B A ...):
    the median seconds of each, and the median over turns of each one's seconds / the "plain" run's
    (`ratio_to_plain` for "glassbox")."""
    for run in runs.values():
        run()
    seconds = {name: [] for name in runs}
    for turn in range(reps):
        for name in list(runs)[:: 1 if turn % 2 == 0 else -1]:
            seconds[name].append(_seconds(runs[name]))
    ratio = lambda name: statistics.median(a / b for a, b in zip(seconds[name], seconds["plain"]))
    row = {"ratio_to_plain": ratio("glassbox")}
    row |= {f"{n}_ratio_to_plain": ratio(n) for n in runs if n not in ("glassbox", "plain")}
    row |= {f"{n}_seconds": statistics.median(s) for n, s in seconds.items()}
    return row | {"reps": reps}


def _fraction(flops: float, seconds: float, threads: int) -> float:
    return flops / seconds / 1e9 / peak_gflops(threads)


def _rounded(row: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def _schedule(steps: int, warmup: int) -> Callable[[int], float]:
    """training.train's learning-rate factor: linear warm-up times cosine decay."""
    return lambda s: min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (1 + np.cos(np.pi * s / steps))


def plain_train(model: nn.Module, batches, loss: Callable, *, steps: int, lr: float, weight_decay: float = 0.0,
                betas: tuple[float, float] = (0.9, 0.999), warmup: int = 0, clip_grad: float | None = None) -> None:
    """training.train's arithmetic and nothing else: AdamW, the same schedule and clipping; no checks, log or bar."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(steps, warmup))
    model.train()
    for _ in range(steps):
        value = loss(model, next(batches))
        opt.zero_grad(set_to_none=True)
        value.backward()
        if clip_grad is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()
        sched.step()
    model.eval()


def plain_sae_train(model: TrainingSAE, batches, *, steps: int, lr: float, dead_after_steps: int = 25) -> None:
    """sae.train_sae's arithmetic (SAETrainer's step) and nothing else: Adam, clipping at 1, the same schedule,
    the dead-latent mask the TopK auxiliary loss needs; no firing statistics, checks, bar or inference copy."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = get_lr_scheduler("constant", opt, training_steps=steps, lr=lr, warm_up_steps=0, decay_steps=steps // 5,
                             lr_end=lr, num_cycles=1)
    since_fired = torch.zeros(model.cfg.d_sae)
    for step in range(steps):
        model.train()
        out = model.training_forward_pass(TrainStepInput(next(batches), {}, since_fired > dead_after_steps, step, False))
        with torch.no_grad():
            since_fired += 1
            since_fired[(out.feature_acts != 0).any(0)] = 0
        out.loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        sched.step()


def _paired(model: nn.Module, runs: dict[str, Callable[[], object]], reps: int) -> dict:
    """_interleaved, the "glassbox" and "plain" runs each starting from `model`'s present weights; adds whether
    those two ended at the same weights (the plain loop did the same work)."""
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ends = {}

    def from_start(name: str, run: Callable[[], object]):
        def go():
            model.load_state_dict(start)
            run()
            ends[name] = nn.utils.parameters_to_vector(model.parameters()).detach().clone()
        return go

    row = _interleaved({n: from_start(n, r) if n in ("glassbox", "plain") else r for n, r in runs.items()}, reps)
    return row | {"same_weights": torch.equal(ends["glassbox"], ends["plain"])}


def _cross_entropy(model: nn.Module, batch) -> torch.Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


def _next_token(model: nn.Module, window: torch.Tensor) -> torch.Tensor:
    logits = model(window[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))


def _mlp_macs(model: models.MLP) -> int:
    """Multiply-adds of one sample through the MLP's linear layers."""
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


def _matmul_params(model: nn.Module) -> int:
    """N of 6 N tokens: trainable parameters less the token and position tables (lookups, not matmuls)."""
    tables = {p for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if p.requires_grad and p not in tables)


def _char_lm():
    """Notebook 07's character LM (2 layers, d_model 128, 4 heads, context 128), its windows and config."""
    cfg = models.TransformerConfig()
    tokens = shakespeare.CharTokenizer.from_text(corpus := shakespeare.load_shakespeare()).encode(corpus[:200_000])
    return models.build("transformer", models.config_dict(cfg)), tokens, cfg


class PlainTransformer(nn.Module):
    """Notebook 07's architecture as a plain module: pre-LayerNorm blocks of causal F.scaled_dot_product_attention
    and a GELU MLP, learned positions, LayerNorm then unembedding; the same parameter count as the bridge."""

    def __init__(self, cfg: models.TransformerConfig):
        super().__init__()
        self.tok_embed, self.pos = nn.Embedding(cfg.d_vocab, cfg.d_model), nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final, self.unembed = nn.LayerNorm(cfg.d_model), nn.Linear(cfg.d_model, cfg.d_vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok_embed(tokens) + self.pos.weight[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_final(x))


class _Block(nn.Module):
    def __init__(self, cfg: models.TransformerConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.qkv, self.out = nn.Linear(cfg.d_model, 3 * cfg.n_heads * cfg.d_head), nn.Linear(cfg.n_heads * cfg.d_head, cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_mlp), nn.GELU(), nn.Linear(cfg.d_mlp, cfg.d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.ln1(x)).unflatten(-1, (3, self.n_heads, -1)).permute(2, 0, 3, 1, 4)
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (batch, head, pos, d_head)
        x = x + self.out(z.transpose(1, 2).flatten(2))
        return x + self.mlp(self.ln2(x))


def bench_matmul_peak() -> dict:
    """This machine's float32 matmul peak (2048 x 2048 @ 2048 x 2048), at 1 thread and at DEFAULT_THREADS."""
    return {f"gflops_{t}_thread{'s' if t > 1 else ''}": round(peak_gflops(t), 1)
            for t in sorted({1, contract.DEFAULT_THREADS})}


def bench_overhead_mnist_mlp_training(steps: int = 500, reps: int = 7) -> dict:
    """training.train on notebook 01's MLP with its recipe (batch 128, AdamW at lr 3e-3) vs a plain loop, one thread."""
    mnist = mnist_mlp.load_mnist()
    training.set_seed(0)
    model = models.build_mlp({"sizes": [784, 128, 64, 10]})
    batches = lambda: training.minibatches(mnist.x_train, mnist.y_train, 128, seed=0)
    with _threads(1):
        row = _paired(model, {"glassbox": lambda: training.train(model, batches(), steps=steps, lr=3e-3, eval_every=500),
                              "plain": lambda: plain_train(model, batches(), _cross_entropy, steps=steps, lr=3e-3)}, reps)
    flops = 6 * _mlp_macs(model) * 128 * steps
    return _rounded(row | {"peak_fraction": _fraction(flops, row["glassbox_seconds"], 1),
                           "plain_peak_fraction": _fraction(flops, row["plain_seconds"], 1), "steps": steps, "threads": 1})


def bench_overhead_char_lm_training(steps: int = 10, reps: int = 5, batch_size: int = 32) -> dict:
    """training.train with lm.next_token_loss on notebook 07's TransformerBridge (its recipe: batch 32, lr 3e-3,
    warm-up 50, betas (0.9, 0.99), clipping at 1) vs a plain loop on the same bridge; then the plain loop on
    the same architecture written as a plain module (PlainTransformer, F.scaled_dot_product_attention)."""
    threads = contract.DEFAULT_THREADS
    model, tokens, cfg = _char_lm()
    recipe = {"steps": steps, "lr": 3e-3, "warmup": 50, "betas": (0.9, 0.99), "clip_grad": 1.0}
    windows = lambda: lm.windows(tokens, batch_size, cfg.n_ctx, seed=0)
    torch.manual_seed(0)
    sdpa = PlainTransformer(cfg)
    with _threads(threads):
        row = _paired(model, {"glassbox": lambda: training.train(model, windows(), loss_fn=lm.next_token_loss, **recipe),
                              "plain": lambda: plain_train(model, windows(), _next_token, **recipe),
                              "plain_sdpa": lambda: plain_train(sdpa, windows(), _next_token, **recipe)}, reps)
    tokens_per_step = batch_size * cfg.n_ctx
    flops = 6 * _matmul_params(model) * tokens_per_step * steps
    return _rounded(row | {"peak_fraction": _fraction(flops, row["glassbox_seconds"], threads), "peak_fraction_target": LM_TARGET,
                           "plain_peak_fraction": _fraction(flops, row["plain_seconds"], threads),
                           "tokens_per_s": round(tokens_per_step * steps / row["glassbox_seconds"]),
                           "plain_sdpa_tokens_per_s": round(tokens_per_step * steps / row["plain_sdpa_seconds"]),
                           "plain_sdpa_peak_fraction": _fraction(flops, row["plain_sdpa_seconds"], threads),
                           "steps": steps, "threads": threads})


def bench_overhead_sae_training(n_samples: int = 120_000, reps: int = 5) -> dict:
    """sae.train_sae (SAELens' SAETrainer) of notebook 04's relu1 TopK SAE (k 32, 512 latents, batches of 512,
    lr 2e-3; half its 240k samples) on the MNIST MLP's relu1 activations vs a plain loop on the same SAE, one thread."""
    mlp, mnist = checkpoints.load_model("mnist_mlp"), mnist_mlp.load_mnist()
    acts = sae.collect_activations(mlp, "relu1", mnist.x_train)
    torch.manual_seed(0)
    model, steps = sae.make_sae("topk", 128, 512, k=32), n_samples // 512
    with _threads(1):
        row = _paired(model, {"glassbox": lambda: sae.train_sae(model, acts, n_samples=n_samples, lr=2e-3),
                              "plain": lambda: plain_sae_train(model, sae.activation_batches(acts, 512), steps=steps, lr=2e-3)}, reps)
    flops = 6 * 2 * 128 * 512 * 512 * steps  # encoder and decoder multiply-adds, per activation, x 6
    return _rounded(row | {"peak_fraction": _fraction(flops, row["glassbox_seconds"], 1),
                           "plain_peak_fraction": _fraction(flops, row["plain_seconds"], 1), "steps": steps, "threads": 1})


def _capture(model: nn.Module, x: torch.Tensor, names: list[str], flops: float, threads: int, inner: int, reps: int) -> dict:
    """hooks.capture of `names` around `inner` forwards of `x` vs the same forwards, both under torch.no_grad."""
    @torch.no_grad()
    def plain():
        for _ in range(inner):
            model(x)

    @torch.no_grad()
    def captured():
        for _ in range(inner):
            with hooks.capture(model, names) as acts:
                model(x)
            [acts[n] for n in names]

    with _threads(threads):
        row = _interleaved({"glassbox": captured, "plain": plain}, reps)
    return _rounded(row | {"peak_fraction": _fraction(flops * inner, row["glassbox_seconds"], threads),
                           "plain_peak_fraction": _fraction(flops * inner, row["plain_seconds"], threads),
                           "captured": names, "threads": threads})


def bench_overhead_capture_mnist_mlp(batch_size: int = 4096, inner: int = 20, reps: int = 7) -> dict:
    """hooks.capture of relu1 and relu2 over a forward of notebook 01's MLP on 4096 digits (one thread)."""
    model, mnist = checkpoints.load_model("mnist_mlp"), mnist_mlp.load_mnist()
    return _capture(model, mnist.x_train[:batch_size], model.hidden_names, 2 * _mlp_macs(model) * batch_size, 1, inner, reps)


def bench_overhead_capture_char_lm(batch_size: int = 32, inner: int = 5, reps: int = 7) -> dict:
    """hooks.capture of each block's output over a forward of notebook 07's bridge on 32 windows of 128."""
    model, tokens, cfg = _char_lm()
    x = next(lm.windows(tokens, batch_size, cfg.n_ctx, seed=0))[:, :-1]
    names = [f"blocks.{i}.hook_out" for i in range(cfg.n_layers)]
    return _capture(model.eval(), x, names, 2 * _matmul_params(model) * x.numel(), contract.DEFAULT_THREADS, inner, reps)
