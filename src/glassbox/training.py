"""Seeding, a small training loop with a progress bar and a recorded history, and accuracy."""
import itertools
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm import tqdm  # the text bar: tqdm.auto warns without ipywidgets and its widgets do not survive on GitHub

from glassbox import checks

Batch = tuple[Tensor, Tensor]


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch so a run is reproducible from its seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class History:
    """What happened during training: one dict per logged step, and the wall-clock seconds."""

    records: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def column(self, key: str) -> list[float]:
        """The values of `key` over the logged steps that have it."""
        return [r[key] for r in self.records if key in r]

    def last(self, key: str) -> float:
        """The most recent logged value of `key`."""
        values = self.column(key)
        if not values:
            raise KeyError(f"{key!r} was never logged; logged keys: {sorted({k for r in self.records for k in r})}")
        return values[-1]


def minibatches(x: Tensor, y: Tensor, batch_size: int, seed: int = 0) -> Iterator[Batch]:
    """Endless shuffled minibatches of (x, y), a new permutation every epoch."""
    checks.tensor(x, "x", floating=False)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    return _minibatches(x, y, batch_size, seed)


def _minibatches(x: Tensor, y: Tensor, batch_size: int, seed: int) -> Iterator[Batch]:
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same order on every device
    while True:
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            yield x[idx.to(x.device)], y[idx.to(y.device)]


def train(
    model: nn.Module,
    batches: Iterator[Batch],
    *,
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    loss_fn: Callable[[nn.Module, Batch], Tensor] | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every: int = 100,
    warmup: int = 0,
    desc: str = "train",
    betas: tuple[float, float] = (0.9, 0.999),
    clip_grad: float | None = None,
    device: str | torch.device | None = None,
) -> History:
    """Train with AdamW and a cosine learning-rate decay; log loss (and `evaluate`) every `eval_every` steps.

    `loss_fn(model, batch)` defaults to cross-entropy of `model(x)` against `y`; `clip_grad` clips the
    gradient norm. `device` (default: where the model is) is where the model trains: the model moves there,
    and so does every tensor of each batch.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = torch.device(device) if device is not None else _home(model)
    if device is not None:
        model.to(device)
    loss_fn = loss_fn or (lambda m, b: F.cross_entropy(m(b[0]), b[1]))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (1 + np.cos(np.pi * s / steps)))
    history, start = History(), time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc=desc, mininterval=1.0)
    for step in bar:
        loss = loss_fn(model, to_device(next(batches), device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()
        sched.step()
        if step % eval_every == 0 or step == steps - 1:
            row = {"step": step, "loss": loss.item()}
            if not np.isfinite(row["loss"]):
                raise ValueError(f"the loss at step {step} is {row['loss']}: batches gave data the model cannot learn "
                                 "from (NaN, infinite or empty?), or training diverged (lower lr, or clip_grad)")
            if evaluate is not None:
                model.eval()
                row |= evaluate(model)
                model.train()
            history.records.append(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "step"})
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def to_device(batch, device: torch.device | None):
    """`batch` (a tensor, or a tuple, list or dict of them and other values) with every tensor moved to `device`."""
    if device is None:
        return batch
    if isinstance(batch, Tensor):
        return batch.to(device)
    if type(batch) in (tuple, list):
        return type(batch)(to_device(b, device) for b in batch)
    if type(batch) is dict:
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def _home(model: nn.Module) -> torch.device | None:
    """The device of `model`'s first parameter or buffer; None for a module that holds no tensor."""
    has_tensors = isinstance(model, nn.Module) and next(itertools.chain(model.parameters(), model.buffers()), None) is not None
    return checks.placement(model)[0] if has_tensors else None


def model_device(model: nn.Module, x: Tensor) -> torch.device:
    """Where `model` runs: the device of its first parameter or buffer, else where its input `x` is."""
    home = _home(model)
    return x.device if home is None else home


def _output_tensor(out: object) -> Tensor:
    """The prediction in a model's output: the tensor itself, a ModelOutput's `logits`, or a tuple's first item."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping) and isinstance(out.get("logits"), Tensor):
        return out["logits"]  # a Hugging Face ModelOutput
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"the model returned a {type(out).__name__}; predict needs a tensor, a dict with 'logits' "
                    "(a Hugging Face ModelOutput) or a tuple whose first item is the prediction: wrap the model "
                    "in a module that returns the prediction tensor")


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 8192) -> Tensor:
    """Model outputs on `x`, computed in batches without gradients, where the model is. A Hugging Face
    ModelOutput gives its `logits`, a tuple its first item."""
    checks.tensor(x, "x", floating=False)
    device = model_device(model, x)
    return torch.cat([_output_tensor(model(chunk.to(device))) for chunk in x.split(batch_size)])


def accuracy(model: nn.Module, x: Tensor, y: Int[Tensor, "batch"], batch_size: int = 8192) -> float:
    """Fraction of `x` whose argmax output equals `y`."""
    pred = predict(model, x, batch_size).argmax(-1)
    return (pred == y.to(pred.device)).float().mean().item()


def per_class_accuracy(logits: Float[Tensor, "batch n_classes"], y: Int[Tensor, "batch"], n_classes: int | None = None) -> Float[Tensor, "n_classes"]:
    """Accuracy of argmax(logits) within each true class."""
    checks.tensor(logits, "logits", ndim=2, floating=False)
    n = n_classes or logits.shape[-1]
    checks.labels(y, "y", n)
    if len(y) != len(logits):
        raise ValueError(f"logits and y must have one row per example, got {len(logits)} and {len(y)}")
    y = y.to(logits.device)
    hit = (logits.argmax(-1) == y).float()
    return torch.zeros(n, device=logits.device).index_add_(0, y, hit) / torch.bincount(y, minlength=n).clamp(min=1)
