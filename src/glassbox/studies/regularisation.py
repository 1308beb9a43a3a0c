"""Regularisers as loss functions for `training.train`, and how readable they leave the neurons.

    loss_fn = regularisation.dropout_loss(["relu1", "relu2"], p=0.2)            # or l1_activation_loss
    training.train(model, batches, steps=3000, lr=3e-3, loss_fn=loss_fn)      # weight decay: weight_decay=...
    regularisation.neuron_report(model, ["relu1", "relu2"], x, y)             # selectivity, dead, classes per neuron
    regularisation.best_concept_neuron(acts_val, loop_val, y_val, acts_test, loop_test, y_test)  # a concept beyond the class

Both losses reach the hidden layers through hooks, so they work on any `nn.Module` by layer name,
without a dropout module or an auxiliary output built into the model.
"""
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from scipy.stats import rankdata, spearmanr
from torch import Tensor, nn

from glassbox import hooks, neurons, training

LossFn = Callable[[nn.Module, training.Batch], Tensor]


def dropout_loss(layers: Sequence[str], p: float) -> LossFn:
    """Cross-entropy with dropout (probability `p`, inverted scaling) on the outputs of `layers`."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1), got {p}")

    def loss_fn(model: nn.Module, batch: training.Batch) -> Tensor:
        with hooks.patch(model, {layer: lambda a: F.dropout(a, p, training=True) for layer in layers}):
            return F.cross_entropy(model(batch[0]), batch[1])
    return loss_fn


def l1_activation_loss(layers: Sequence[str], strength: float) -> LossFn:
    """Cross-entropy + `strength` x mean |activation| over every unit of `layers` (sparse activity)."""
    if strength < 0:
        raise ValueError(f"the L1 strength must be >= 0, got {strength}")

    def loss_fn(model: nn.Module, batch: training.Batch) -> Tensor:
        with hooks.capture(model, list(layers), detach=False) as acts:
            logits = model(batch[0])
        penalty = sum(acts[layer].abs().mean() for layer in layers)
        return F.cross_entropy(logits, batch[1]) + strength * penalty
    return loss_fn


def dead_neurons(acts: Float[Tensor, "batch neuron *spatial"]) -> Bool[Tensor, "neuron"]:
    """True for each neuron that is never positive on any input of `acts` (a ReLU that never fires)."""
    return neurons.per_neuron(acts).amax(0) <= 0


def classes_per_neuron(acts: Float[Tensor, "batch neuron *spatial"], y: Int[Tensor, "batch"],
                       threshold: float = 0.5, n_classes: int | None = None) -> Int[Tensor, "neuron"]:
    """Classes per neuron: how many classes have a mean activation >= `threshold` x the neuron's top class mean.

    1 = only the top class's mean reaches `threshold` x the top (the neuron answers to one class); 10 = every
    digit's does; 0 for dead neurons. Meant for non-negative activations (after a ReLU).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold is a fraction of the top class mean, in (0, 1]; got {threshold}")
    means = neurons.class_means(acts, y, n_classes)
    top = means.max(0).values
    return ((means >= threshold * top) & (top > 0)).sum(0)


def class_profile(acts: Float[Tensor, "batch neuron *spatial"], y: Int[Tensor, "batch"],
                  n_classes: int | None = None) -> Float[Tensor, "n_classes live_neuron"]:
    """Class means of the live neurons, each scaled to a top of 1, ordered by preferred class (for a heatmap)."""
    means = neurons.class_means(acts, y, n_classes)[:, ~dead_neurons(acts)]
    means = means / means.max(0).values.clamp(min=1e-12)
    order = sorted(range(means.shape[1]), key=lambda j: (int(means[:, j].argmax()), float(means[:, j].sum())))
    return means[:, order]


def neuron_report(model: nn.Module, layers: Sequence[str], x: Tensor, y: Int[Tensor, "batch"],
                  threshold: float = 0.5) -> dict[str, float]:
    """Readability of the neurons of `layers` on (x, y), pooled over layers.

    selectivity: mean class selectivity of live neurons; dead: count of never-firing neurons;
    classes_per_neuron: mean `classes_per_neuron` of live neurons; one_class_fraction: share of live
    neurons that answer to a single class (`classes_per_neuron` == 1).
    """
    sel, poly, dead = [], [], 0
    for layer in layers:
        acts = neurons.get_activations(model, layer, x)
        live = ~dead_neurons(acts)
        dead += int((~live).sum())
        sel.append(neurons.class_selectivity(acts, y)[live])
        poly.append(classes_per_neuron(acts, y, threshold)[live].float())
    sel, poly = torch.cat(sel), torch.cat(poly)
    if len(sel) == 0:
        raise ValueError(f"every neuron of {list(layers)} is dead on these inputs: nothing to read (lower the regulariser)")
    return {"selectivity": sel.mean().item(), "dead": dead, "classes_per_neuron": poly.mean().item(),
            "one_class_fraction": (poly == 1).float().mean().item()}


def within_class_auc(acts: Float[Tensor, "batch neuron"], labels: Int[Tensor, "batch"],
                     classes: Int[Tensor, "batch"]) -> Float[Tensor, "neuron"]:
    """Per neuron: the AUC of its activation for a 0/1 `labels` among inputs of the same class, pooled over classes.

    Only pairs (positive, negative) of the same class count, so what the neuron knows about the class itself
    cannot help: 0.5 reads nothing beyond the class, 1 (or 0) separates the label perfectly inside every class.
    Ties (e.g. a ReLU at 0) count one half. Classes whose labels take one value add no pairs.
    """
    if acts.ndim != 2 or labels.shape != (len(acts),) or classes.shape != (len(acts),):
        raise ValueError(f"expected acts (batch, neuron) with labels and classes of shape (batch,); got {tuple(acts.shape)}, "
                         f"{tuple(labels.shape)}, {tuple(classes.shape)}")
    a, lab, cls = acts.detach().double().cpu().numpy(), labels.cpu().numpy(), classes.cpu().numpy()
    if not np.isin(lab, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    concordant, pairs = np.zeros(a.shape[1]), 0.0
    for c in np.unique(cls):
        m = cls == c
        pos, neg = lab[m].sum(), (1 - lab[m]).sum()
        if pos and neg:
            ranks = rankdata(a[m], axis=0)  # average ranks for ties
            concordant += ranks[lab[m] == 1].sum(0) - pos * (pos + 1) / 2
            pairs += pos * neg
    if not pairs:
        raise ValueError("no class holds both label values: nothing to read beyond the class")
    return torch.tensor(concordant / pairs, dtype=torch.float32)


def best_concept_neuron(acts_val: Float[Tensor, "n_val neuron"], labels_val: Int[Tensor, "n_val"], classes_val: Int[Tensor, "n_val"],
                        acts_test: Float[Tensor, "n_test neuron"], labels_test: Int[Tensor, "n_test"],
                        classes_test: Int[Tensor, "n_test"]) -> dict[str, float]:
    """The single neuron that best reads a concept beyond the class: chosen on validation (largest |AUC - 0.5| of
    `within_class_auc`, either sign), then its within-class AUC on test, oriented by the validation sign."""
    val = within_class_auc(acts_val, labels_val, classes_val)
    neuron = int((val - 0.5).abs().argmax())
    sign = 1.0 if val[neuron] >= 0.5 else -1.0
    test = within_class_auc(acts_test[:, neuron:neuron + 1], labels_test, classes_test)[0].item()
    return {"neuron": neuron, "auc_validation": 0.5 + sign * (val[neuron].item() - 0.5), "auc_test": 0.5 + sign * (test - 0.5)}


def shuffle_within_class(labels: Int[Tensor, "batch"], classes: Int[Tensor, "batch"], seed: int = 0) -> Int[Tensor, "batch"]:
    """`labels` permuted among the inputs of each class: the same counts per class, no link to the input (a control)."""
    gen, out = torch.Generator().manual_seed(seed), labels.clone()
    for c in classes.unique():
        idx = (classes == c).nonzero()[:, 0]
        out[idx] = labels[idx[torch.randperm(len(idx), generator=gen)]]
    return out


def selectivity_spearman(model: nn.Module, layers: Sequence[str], layer_scores: dict[str, Float[Tensor, "neuron"]],
                         x: Tensor, y: Int[Tensor, "batch"], given: dict[str, Float[Tensor, "neuron"]] | None = None) -> float:
    """Spearman rank correlation, over the live neurons of `layers` on (x, y), between a per-neuron score
    (e.g. a pruning score) and the neuron's class selectivity. With `given` (another per-neuron score, e.g. the mean
    activation): the partial rank correlation at fixed `given`, i.e. the correlation of the two ranks after each is
    regressed linearly on the rank of `given` (what is left once `given` is held fixed)."""
    acts = {layer: neurons.get_activations(model, layer, x) for layer in layers}
    live = torch.cat([~dead_neurons(acts[layer]) for layer in layers])
    selectivity = torch.cat([neurons.class_selectivity(acts[layer], y) for layer in layers])
    score = torch.cat([layer_scores[layer].detach().cpu() for layer in layers])
    if int(live.sum()) < 3:
        raise ValueError(f"need at least 3 live neurons in {list(layers)} to rank them, got {int(live.sum())}")
    if given is None:
        return float(spearmanr(score[live].numpy(), selectivity[live].numpy()).statistic)
    control = torch.cat([given[layer].detach().cpu() for layer in layers])
    r = spearmanr(np.stack([score[live].numpy(), selectivity[live].numpy(), control[live].numpy()], 1)).statistic
    return float((r[0, 1] - r[0, 2] * r[1, 2]) / np.sqrt((1 - r[0, 2] ** 2) * (1 - r[1, 2] ** 2)))


def concept_aucs(acts_val: Float[Tensor, "n_val neuron"], acts_test: Float[Tensor, "n_test neuron"],
                 concepts_val: dict[str, Int[Tensor, "n_val"]], concepts_test: dict[str, Int[Tensor, "n_test"]],
                 classes_val: Int[Tensor, "n_val"], classes_test: Int[Tensor, "n_test"]) -> dict[str, float]:
    """For each concept: the test within-class AUC of the single unit (neuron, pixel, ...) chosen on validation."""
    return {c: best_concept_neuron(acts_val, concepts_val[c], classes_val, acts_test, concepts_test[c], classes_test)["auc_test"]
            for c in concepts_val}


def sparsify_to_share(acts_val: Float[Tensor, "n_val neuron"], acts_test: Float[Tensor, "n_test neuron"], share: float,
                      ) -> tuple[Float[Tensor, "n_val neuron"], Float[Tensor, "n_test neuron"]]:
    """Soft-threshold each unit at its validation quantile `share` (a - q, floored at 0), so that about `share` of
    its validation values become 0: another model's activations made as sparse as, say, an L1-trained model's."""
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    if acts_val.ndim != 2 or acts_test.ndim != 2 or acts_val.shape[1] != acts_test.shape[1]:
        raise ValueError(f"expected acts_val and acts_test of shape (batch, neuron) with the same neurons; got "
                         f"{tuple(acts_val.shape)} and {tuple(acts_test.shape)}")
    q = torch.quantile(acts_val.float(), share, dim=0)
    return (acts_val - q).clamp(min=0), (acts_test - q).clamp(min=0)


def sweep_wording(values: Mapping[float, float], reference: float, tolerance: float) -> str:
    """A sweep's values against `reference`, in words, strengths ascending: "unchanged at 0.1, lower at 0.3 and above".

    A value within `tolerance` of `reference` is "unchanged", else "lower" or "higher"; neighbouring strengths that agree
    are grouped ("at 0.3 and above" when the group runs to the last strength, "from 0.3 to 1" inside the sweep)."""
    if not values:
        raise ValueError("values is empty: pass {strength: value} for at least one strength")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    strengths = sorted(values, key=float)
    word = lambda v: "unchanged" if abs(v - reference) <= tolerance else "lower" if v < reference else "higher"
    groups: list[list] = []
    for s in strengths:
        if groups and word(values[groups[-1][0]]) == word(values[s]):
            groups[-1].append(s)
        else:
            groups.append([s])
    said = []
    for g in groups:
        first, last = float(g[0]), float(g[-1])
        where = f"at {first:g}" if len(g) == 1 else f"at {first:g} and above" if g[-1] == strengths[-1] else f"from {first:g} to {last:g}"
        said.append(f"{word(values[g[0]])} {where}")
    return ", ".join(said)
