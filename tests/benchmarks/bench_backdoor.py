"""Benchmarks of glassbox.studies.backdoor: training the backdoored MLP of notebook 05, and the Neural Cleanse scan
that finds it, each with the quality reached. Run: .venv/bin/python tests/bench.py backdoor"""
import torch

from glassbox import training
from glassbox.studies import backdoor, mnist_mlp


def _one_thread(fn):
    """Run `fn` on one thread, as notebook 05 does (small matmuls: one thread beats two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def _train():
    mnist = mnist_mlp.load_mnist()
    cfg = backdoor.BackdoorConfig()
    model, history = backdoor.train_backdoored(mnist.x_train[:50_000], mnist.y_train[:50_000], cfg, seed=0)
    return mnist, cfg, model, history


def bench_backdoor_training() -> dict:
    """Notebook 05's backdoored MLP: 3000 AdamW steps of 256 images (5% poisoned), seed 0, one thread."""
    mnist, cfg, model, history = _one_thread(_train)
    return {"train_seconds": round(history.seconds, 2), "steps_per_second": round(cfg.steps / history.seconds, 1),
            "images_per_second": round(cfg.steps * cfg.batch_size / history.seconds),
            "clean_accuracy": round(training.accuracy(model, mnist.x_test, mnist.y_test), 4), "clean_accuracy_target": ">= 0.975",
            "attack_success_rate": round(backdoor.attack_success_rate(model, mnist.x_test, mnist.y_test, cfg.target), 4),
            "attack_success_rate_target": ">= 0.99"}


def bench_backdoor_neural_cleanse_scan() -> dict:
    """Neural Cleanse over the 10 classes of the backdoored MLP (300 steps each), one thread."""
    def run():
        mnist, cfg, model, _ = _train()
        scan = backdoor.scan_classes(model, mnist.x_train[-10_000:], mnist.x_test, mnist.y_test, steps=300)
        return cfg, scan
    cfg, scan = _one_thread(run)
    return {"scan_seconds": round(scan.seconds, 2), "seconds_per_class": round(scan.seconds / 10, 2),
            "flagged": scan.flagged, "flagged_target": [cfg.target], "anomaly_index": round(scan.anomaly.max().item(), 2),
            "anomaly_index_target": "> 2"}
