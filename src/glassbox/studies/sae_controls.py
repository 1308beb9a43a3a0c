"""The controls the SAEs of notebook 04 are held to on the journal's models: what an SAE must beat.

    cut = keep_largest(32)                                   # each input's 32 largest units, the rest 0
    largest_neurons(mlp, "relu1", x, y, k=32)                # the layer itself cut that way: l0, fvu, accuracy
    best_on_validation(model, "relu2", s, targets, val, report)  # the unit chosen on validation, reported once

An SAE with L0 k is a dictionary that lets k units through per input; the layer's own neurons can do
the same with no training (`largest_neurons`), so that is the baseline at equal L0. A unit picked as
the best of many is compared with units picked the same way (`best_on_validation`, run on latents,
on neurons and on an untrained SAE's latents), choosing on one split and reporting on another.
"""
from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor, nn

from glassbox import checks, hooks, sae, training


def keep_largest(k: int) -> Callable[[Float[Tensor, "n units"]], Float[Tensor, "n units"]]:
    """A function that keeps each row's `k` largest entries and sets the rest to 0: an edit for
    `sae.splice` (on latents) or a replacement for `hooks.patch` (on a layer's neurons)."""
    checks.count(k, "k")

    def cut(f: Tensor) -> Tensor:
        if f.ndim != 2 or f.shape[-1] < k:
            raise ValueError(f"keep_largest({k}) needs (n, units) with at least {k} units, got shape {tuple(f.shape)}")
        return f * (f >= f.topk(k, dim=-1).values[:, -1:])
    return cut


@torch.no_grad()
def largest_neurons(model: nn.Module, name: str, x: Tensor, y: Int[Tensor, "n"], k: int) -> dict[str, float]:
    """Module `name` cut to each input's `k` largest units: its L0, FVU against the whole layer, and the
    model's accuracy on (x, y) with the cut layer in place (the no-training baseline of an SAE with L0 k)."""
    acts = sae.collect_activations(model, name, x)
    cut = keep_largest(k)
    with hooks.patch(model, {name: cut}):
        accuracy = training.accuracy(model, x, y)
    return {"l0": sae.l0(cut(acts)), "fvu": sae.fvu(acts, cut(acts)), "spliced_accuracy": accuracy}


def best_on_validation(model: nn.Module, name: str, dictionary: SAE | None, targets: Int[Tensor, "units"],
                       validation: tuple[Tensor, Tensor], report: tuple[Tensor, Tensor],
                       n_classes: int) -> tuple[dict, dict[str, Float[Tensor, "units"]]]:
    """Switch off every unit alone (SAE latents with the error kept; neurons when `dictionary` is None),
    measure the drop on its target class on the validation split, take the unit with the largest drop,
    and report its drop on the report split. Returns that summary and every unit's drops on both splits."""
    if len(validation) != 2 or len(report) != 2:
        raise ValueError("validation and report must each be an (inputs, labels) pair")
    drops = {split: sae.switch_off_drops(model, name, dictionary, targets, x, y, n_classes)
             for split, (x, y) in (("validation", validation), ("report", report))}
    j = int(drops["validation"].argmax())
    on_report = drops["report"]
    return {"unit": j, "digit": int(targets[j]), "validation_drop": drops["validation"][j].item(),
            "report_drop": on_report[j].item(), "rank_on_report": int((on_report > on_report[j]).sum()) + 1,
            "n_units": len(on_report)}, drops
