"""Benchmarks of glassbox.studies.superposition: training time and throughput of the batched toy model, with
the quality reached (so a fast but broken run shows). Run: .venv/bin/python tests/bench.py superposition"""
import time

import torch

from glassbox.studies import superposition as sp


def bench_superposition_20_to_5() -> dict:
    """The 20 -> 5 sweep of notebook 00 (6 sparsities, one seed), 3000 steps of 1024 samples, one thread."""
    sparsities = torch.tensor([0.0, 0.7, 0.9, 0.97, 0.99, 0.999])
    torch.manual_seed(0)
    model = sp.ToyModel(20, 5, len(sparsities), importance=0.7 ** torch.arange(20),
                        feature_probability=(1 - sparsities).reshape(-1, 1))
    steps, batch = 3000, 1024
    history = sp.train_toy(model, steps=steps, batch_size=batch, lr=5e-3)
    represented = sp.count_represented(model.W.detach())
    return {"train_seconds": round(history.seconds, 2), "steps_per_second": round(steps / history.seconds, 1),
            "instance_samples_per_second": round(steps * batch * model.n_instances / history.seconds),
            "represented_dense": represented[0].item(), "represented_dense_target": 5,
            "represented_S0.999": represented[-1].item(), "represented_S0.999_target": ">= 10"}


def bench_superposition_phase_diagram() -> dict:
    """The one-neuron phase diagram of notebook 00: 12 x 12 cells x 4 seeds, 1500 steps of 256 samples."""
    r, p = torch.logspace(-1, 1, 12), torch.logspace(-2, 0, 12)
    importance, probability = sp.phase_sweep(r, p, n_seeds=4)
    torch.manual_seed(0)
    model = sp.ToyModel(2, 1, len(importance), feature_probability=probability, importance=importance)
    start = time.perf_counter()
    history = sp.train_toy(model, steps=1500, batch_size=256, lr=1e-2)
    best = sp.best_of_seeds(sp.evaluate_loss(model), 4)
    agreement = (sp.classify_phase(model.W.detach()[best]).reshape(12, 12)
                 == sp.theoretical_phase(*torch.meshgrid(r, p, indexing="ij"))).float().mean().item()
    return {"train_seconds": round(history.seconds, 2), "total_seconds": round(time.perf_counter() - start, 2),
            "instances": model.n_instances, "steps_per_second": round(1500 / history.seconds, 1),
            "agreement": round(agreement, 3), "agreement_target": ">= 0.9"}
