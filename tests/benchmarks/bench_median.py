"""Benchmark of notebook 02: training the Find-Median transformer and its Find-Min twin with the
notebook's own recipe (read from its parameters cell), with the accuracy each reaches.
Run: .venv/bin/python tests/bench.py median"""
import ast
import json

import torch

from glassbox import paths
from glassbox.studies import find_median
from glassbox.journal import contract

NOTEBOOK = paths.NOTEBOOK_DIR / "02_find_median_training.ipynb"


def recipe() -> dict:
    """The literal parameters of notebook 02 (SEED, D_MODEL, N_STEPS, BATCH_SIZE, LR, ...)."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    return {s.targets[0].id: ast.literal_eval(s.value) for s in ast.parse("".join(cell["source"])).body}


def _train(task: str, d_model: int, steps: int, batch_size: int, lr: float) -> dict:
    p = recipe()
    threads = torch.get_num_threads()
    torch.set_num_threads(contract.DEFAULT_THREADS)
    try:
        config = {"d_model": d_model, "d_head": d_model, "seed": p["SEED"]}
        model, hist = find_median.train_list_model(task, steps=steps, batch_size=batch_size, lr=lr, config=config,
                                                seed=p["SEED"], eval_every=steps)
        acc = find_median.list_accuracy(model, task, seed=p["SEED"] + 1)  # the notebook's evaluation lists
    finally:
        torch.set_num_threads(threads)
    return {"train_seconds": round(hist.seconds, 2), "train_seconds_target": "< 300",
            "lists_per_second": round(steps * batch_size / hist.seconds), "steps": steps, "d_model": d_model,
            "uniform_accuracy": round(acc["uniform_accuracy"], 5), "uniform_accuracy_target": ">= 0.999",
            "worst_family_accuracy": round(min(acc["family_accuracy"].values()), 5),
            "worst_family_accuracy_target": ">= 0.99", "threads": contract.DEFAULT_THREADS}


def bench_median_training() -> dict:
    """Notebook 02's Find-Median transformer: its recipe, seed, one thread; then 100k uniform lists and every family."""
    p = recipe()
    return _train("median", p["D_MODEL"], p["N_STEPS"], p["BATCH_SIZE"], p["LR"])


def bench_median_min_twin_training() -> dict:
    """Notebook 02's Find-Min twin (same architecture as the median model)."""
    p = recipe()
    return _train("min", p["D_MODEL"], p["MIN_STEPS"], p["MIN_BATCH_SIZE"], p["MIN_LR"])
