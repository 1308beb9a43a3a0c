"""Benchmark of notebook 01's MNIST MLP: training seconds and throughput, with the accuracy reached.
The recipe is read from the notebook's parameters cell, so the benchmark trains exactly what the
notebook trains. Run: .venv/bin/python tests/bench.py mnist"""
import ast
import json
import time

import torch

from glassbox import paths, training
from glassbox.studies import mnist_mlp, models
from glassbox.journal import contract

NOTEBOOK = paths.NOTEBOOK_DIR / "01_mnist_mlp_probing.ipynb"


def recipe() -> dict:
    """The literal parameters of notebook 01 (SEED, N_STEPS, BATCH_SIZE, LR, ...)."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    return {s.targets[0].id: ast.literal_eval(s.value) for s in ast.parse("".join(cell["source"])).body}


def bench_mnist_mlp_training() -> dict:
    """Train the 784-128-64-10 MLP with notebook 01's recipe (one thread), then score it on the test set."""
    p = recipe()
    threads = torch.get_num_threads()
    torch.set_num_threads(contract.DEFAULT_THREADS)
    try:
        mnist = mnist_mlp.load_mnist()
        training.set_seed(p["SEED"])
        model = models.build_mlp({"sizes": [784, p["HIDDEN_1"], p["HIDDEN_2"], 10]})
        batches = training.minibatches(mnist.x_train, mnist.y_train, p["BATCH_SIZE"], seed=p["SEED"])
        hist = training.train(model, batches, steps=p["N_STEPS"], lr=p["LR"], weight_decay=p["WEIGHT_DECAY"],
                              eval_every=p["N_STEPS"])
        start = time.perf_counter()
        accuracy = training.accuracy(model, mnist.x_test, mnist.y_test)
        eval_seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return {"train_seconds": round(hist.seconds, 2), "train_seconds_target": "< 20",
            "train_samples_per_second": round(p["N_STEPS"] * p["BATCH_SIZE"] / hist.seconds),
            "eval_samples_per_second": round(len(mnist.x_test) / eval_seconds),
            "test_accuracy": round(accuracy, 4), "test_accuracy_target": ">= 0.98", "threads": contract.DEFAULT_THREADS}
