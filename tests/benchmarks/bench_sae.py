"""Benchmarks of glassbox.sae: training notebook 04's SAEs with SAELens' SAETrainer on CPU, with the
quality reached, and the thread count that makes them fast. Run: .venv/bin/python tests/bench.py sae"""
import time

import torch

from glassbox import sae
from glassbox.studies import mnist_mlp
from glassbox.journal import checkpoints

N_SAMPLES = 240_000  # notebook 04's MNIST_SAMPLES


def _threads(n: int, fn):
    """Run `fn` on `n` threads, then restore the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def _relu1():
    mlp, mnist = checkpoints.load_model("mnist_mlp"), mnist_mlp.load_mnist()
    return (mlp, mnist, sae.collect_activations(mlp, "relu1", mnist.x_train),
            sae.collect_activations(mlp, "relu1", mnist.x_test))


def bench_sae_mnist_relu1_topk() -> dict:
    """Notebook 04's chosen relu1 SAE: TopK k=32, 512 latents, 240k activations in batches of 512, one thread."""
    mlp, mnist, train, test = _relu1()
    trained, seconds = _threads(1, lambda: sae.train_sae(sae.make_sae("topk", 128, 512, k=32), train,
                                                         n_samples=N_SAMPLES, lr=2e-3))
    metrics = sae.evaluate_sae(trained, test)
    return {"train_seconds": round(seconds, 2), "train_seconds_target": "< 30 (notebook full run < 6 min)",
            "activations_per_second": round(N_SAMPLES / seconds), "l0": metrics["l0"], "fvu": round(metrics["fvu"], 4),
            "fvu_target": "< 0.1", "dead_fraction": round(metrics["dead_fraction"], 4),
            "spliced_accuracy": round(sae.spliced_accuracy(mlp, "relu1", trained, mnist.x_test, mnist.y_test), 4),
            "spliced_accuracy_target": ">= clean - 0.01 (clean 0.9818)"}


def bench_sae_threads() -> dict:
    """Activations per second of a short TopK training on one thread and on two (the machine has 2 cores)."""
    _, _, train, _ = _relu1()
    out = {}
    for n in (1, 2):
        start = time.perf_counter()
        _threads(n, lambda: sae.train_sae(sae.make_sae("topk", 128, 512, k=32), train, n_samples=20_480))
        out[f"activations_per_second_{n}_thread{'s' if n > 1 else ''}"] = round(20_480 / (time.perf_counter() - start))
    return out
