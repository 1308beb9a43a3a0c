"""Notebook 06's slow parts: scoring neurons for pruning, and training with a regulariser hooked in.

Targets (one free core): ablation scoring of the MNIST MLP's 192 neurons on 5000 images < 5 s and
removes >= 25% of neurons at <= 1 point lost; attribution scoring < 1 s; the L1 and dropout hooks cost
< 30% more time per training step than plain cross-entropy.
"""
import time

import torch

from glassbox import training
from glassbox.studies import mnist_mlp, models, pruning, regularisation
from glassbox.journal import checkpoints

LAYERS = {"relu1": "fc1", "relu2": "fc2"}
FRACTIONS = [i / 40 for i in range(25)]


def _score(method: str) -> dict:
    torch.set_num_threads(1)
    mnist, model = mnist_mlp.load_mnist(), checkpoints.load_model("mnist_mlp")
    start = time.perf_counter()
    scores = pruning.score_neurons(model, method, LAYERS, mnist.x_train[:5000], mnist.y_train[:5000])
    seconds = time.perf_counter() - start
    removable = pruning.removable_fraction(model, scores, FRACTIONS, mnist.x_test, mnist.y_test)
    return {"seconds": round(seconds, 2), "neurons_per_s": round(192 / seconds, 1), "removable_at_1pt": removable}


def bench_ablation_scores() -> dict:
    return _score("ablation")


def bench_attribution_scores() -> dict:
    return _score("attribution")


def bench_regulariser_step_cost(steps: int = 1000) -> dict:
    torch.set_num_threads(1)
    mnist, hidden = mnist_mlp.load_mnist(), ["relu1", "relu2"]
    row = {}
    for name, loss_fn in {"plain": None, "l1": regularisation.l1_activation_loss(hidden, 0.1),
                          "dropout": regularisation.dropout_loss(hidden, 0.3)}.items():
        training.set_seed(0)
        model = models.build_mlp({"sizes": [784, 128, 64, 10]})
        history = training.train(model, training.minibatches(mnist.x_train, mnist.y_train, 128), steps=steps,
                                 lr=3e-3, loss_fn=loss_fn, desc=name)
        row[f"{name}_steps_per_s"] = round(steps / history.seconds, 1)
        row[f"{name}_accuracy"] = round(training.accuracy(model, mnist.x_test, mnist.y_test), 4)
        row[f"{name}_one_class_fraction"] = round(regularisation.neuron_report(model, hidden, mnist.x_test, mnist.y_test)["one_class_fraction"], 3)
    for name in ("l1", "dropout"):
        row[f"{name}_overhead"] = round(row["plain_steps_per_s"] / row[f"{name}_steps_per_s"] - 1, 3)
    return row
