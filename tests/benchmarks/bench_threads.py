"""How many torch threads the journal's runs should use (glassbox.journal.contract.DEFAULT_THREADS):
the same training steps of the journal's model kinds timed with 1 and with 2 threads. Run it on an
idle machine: other processes on the cores turn the answer towards one thread."""
import time

import torch

from glassbox import lm, training
from glassbox.studies import models, shakespeare
from glassbox.journal import contract


def _steps_per_second(make, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    model, batches, loss_fn = make()
    training.train(model, batches, steps=3, loss_fn=loss_fn, desc=f"warm-up {threads}t")  # allocations, caches
    start = time.perf_counter()
    training.train(model, batches, steps=steps, loss_fn=loss_fn, desc=f"{threads} thread(s)")
    return steps / (time.perf_counter() - start)


def _mlp():
    torch.manual_seed(0)
    x, y = torch.rand(4096, 784), torch.randint(0, 10, (4096,))
    return models.build_mlp({}), training.minibatches(x, y, 256), None


def _median():
    from glassbox.studies import find_median

    model = models.build("attn_only_transformer", {"d_model": 64, "d_head": 64})
    return models.LastPosition(model), find_median.list_batches(2048, find_median.TRAIN_WEIGHTS, task="median", seed=0), None


def _char_lm():
    tokens = shakespeare.CharTokenizer.from_text(corpus := shakespeare.load_shakespeare()).encode(corpus[:200_000])
    model = models.build("transformer", {"n_layers": 2, "d_model": 128, "n_heads": 4, "d_head": 32, "n_ctx": 128})
    return model, lm.windows(tokens, 32, 128), lm.next_token_loss


def bench_threads() -> dict:
    before = torch.get_num_threads()
    row = {}
    try:
        for name, make, steps in (("mlp", _mlp, 300), ("median", _median, 30), ("char_lm", _char_lm, 20)):
            rates = {t: _steps_per_second(make, steps, t) for t in (1, 2)}
            row[f"{name}_steps_per_s_1t"], row[f"{name}_steps_per_s_2t"] = round(rates[1], 1), round(rates[2], 1)
            row[f"{name}_fastest"] = max(rates, key=rates.get)
    finally:
        torch.set_num_threads(before)
    row["default_threads"] = contract.DEFAULT_THREADS
    return row
