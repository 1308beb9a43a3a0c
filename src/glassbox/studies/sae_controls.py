"""The controls the SAEs of notebook 04 are held to on the journal's models: what an SAE must beat.

    cut = keep_largest(32)                                   # each input's 32 largest units, the rest 0
    largest_neurons(mlp, "relu1", x, y, k=32)                # the layer itself cut that way: l0, fvu, accuracy
    best_on_validation(model, "relu2", s, targets, val, report)  # the unit chosen on validation, reported once
    random_error_accuracy(model, "relu1", s, x, y, seed=0)   # an error as long as the SAE's, in a random direction
    random_direction_drops(model, "relu2", s, 192, 2, x, y, n_classes=10, n_draws=20)  # a latent's length, random way
    class_direction_drop(model, "relu2", a_train, y_train, 2, x, y, n_classes=10)     # the supervised ceiling
    lookup_table(model, "relu1", a_train, x, y, n_prototypes=512)  # each input replaced by its nearest prototype
    mcnemar(correct_a, correct_b)                            # two models scored on the same inputs: a paired test
    kmeans_directions(h, 80, seed=0)                         # a clustering's unit directions: MMCS's no-sparsity control
    switch_off_against_directions(model, "relu2", s, targets, val, report, n_classes=10, n_draws=200)

An SAE with L0 k is a dictionary that lets k units through per input; the layer's own neurons can do
the same with no training (`largest_neurons`), so that is the baseline at equal L0. A unit picked as
the best of many is compared with units picked the same way (`best_on_validation`, run on latents,
on neurons), choosing on one split and reporting on another. Removing a latent removes a vector as long
as its activation times its decoder row: the control removes a random direction of that length from
each input (`random_direction_drops`). A spliced accuracy is compared with errors of the same length
in random directions (`random_error_accuracy`), and a spliced accuracy at low L0 with a lookup table
that has no features at all (`lookup_table`: L0 = 1). Two accuracies on the same inputs are compared by
the inputs on which they disagree (`mcnemar`), not by one accuracy's standard error.
"""
from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
import torch.nn.functional as F
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


def _at(position: int | None, fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """`fn` applied to the whole (n, d) output, or to one position of a (n, pos, d) output."""
    if position is None:
        return fn

    def at(out: Tensor) -> Tensor:
        new = out.clone()
        new[:, position] = fn(out[:, position])
        return new
    return at


@torch.no_grad()
def correct(model: nn.Module, x: Tensor, y: Int[Tensor, "n"], out_position: int | None = None) -> Bool[Tensor, "n"]:
    """Which inputs the model gets right (run it inside `sae.splice` or `hooks.patch` to score an edited model)."""
    pred = sae.outputs(model, x, out_position).argmax(-1)
    return (pred == y.to(pred.device)).cpu()


def _accuracy(model: nn.Module, x: Tensor, y: Tensor, out_position: int | None) -> float:
    return correct(model, x, y, out_position).float().mean().item()


def mcnemar(a: Bool[Tensor, "n"], b: Bool[Tensor, "n"]) -> dict[str, float]:
    """McNemar's exact test for two models scored on the same inputs: the inputs only `a` gets right, those only
    `b` gets right, and the two-sided binomial p of that split (1.0 when they never disagree)."""
    from scipy.stats import binomtest
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be one correctness flag per input, the same inputs: got {tuple(a.shape)}, {tuple(b.shape)}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0
    return {"a_only": a_only, "b_only": b_only, "n": len(a), "p_value": float(p)}


def kmeans_directions(acts: Float[Tensor, "n d"], n_directions: int, *, seed: int = 0) -> Float[Tensor, "n_directions d"]:
    """k-means centroids of the non-zero activations scaled to unit length: a dictionary found by clustering,
    with no sparsity penalty and no reconstruction (the control for an SAE's recovery of feature directions)."""
    from sklearn.cluster import KMeans
    checks.count(n_directions, "n_directions")
    units = F.normalize(acts[acts.norm(dim=1) > 1e-6], dim=1)
    km = KMeans(n_clusters=n_directions, n_init=1, random_state=seed).fit(units.cpu().numpy())
    return torch.tensor(km.cluster_centers_, dtype=acts.dtype)


@torch.no_grad()
def random_error_accuracy(model: nn.Module, name: str, dictionary: SAE, x: Tensor, y: Int[Tensor, "n"], *, seed: int,
                          edit: Callable[[Tensor], Tensor] | None = None, position: int | None = None,
                          out_position: int | None = None) -> float:
    """Accuracy when module `name`'s output gets, on each input, a random vector as long as the SAE's
    error there (x - x_hat, with `edit` applied to the latents): an error of the same size, no direction."""
    gen = torch.Generator().manual_seed(seed)

    def add_noise(a: Tensor) -> Tensor:
        f = sae.encode(dictionary, a)
        error = a - dictionary.decode(edit(f) if edit else f)
        noise = F.normalize(torch.randn(a.shape, generator=gen).to(a.device, a.dtype), dim=-1)
        return a + noise * error.norm(dim=-1, keepdim=True)
    with hooks.patch(model, {name: _at(position, add_noise)}):
        return _accuracy(model, x, y, out_position)


@torch.no_grad()
def random_direction_drops(model: nn.Module, name: str, dictionary: SAE, latent: int, target: int, x: Tensor,
                           y: Int[Tensor, "n"], *, n_classes: int, n_draws: int | None = None, seed: int = 0,
                           directions: Float[Tensor, "n_draws d"] | None = None) -> dict:
    """Switching latent j off removes f_j(x) W_dec[j] from each input. The control removes, from each input,
    another unit direction times f_j(x) |W_dec[j]| (the same length): `n_draws` random directions, or the given
    `directions` (e.g. the other latents' decoder rows; each is normalised). Returns the drop on class `target`
    for each direction, and the mean length removed on that class against its activation's."""
    row = dictionary.W_dec[latent].detach()
    if directions is None:
        checks.count(n_draws, "n_draws")
        gen = torch.Generator().manual_seed(seed)
        directions = torch.stack([torch.randn(row.shape[0], generator=gen) for _ in range(n_draws)])  # one draw at a time, as before
    else:
        checks.tensor(directions, "directions", ndim=2)
        if directions.shape[1] != row.shape[0] or len(directions) == 0:
            raise ValueError(f"directions must be (n, {row.shape[0]}) with n >= 1, one per control; got {tuple(directions.shape)}")
    clean = training.per_class_accuracy(sae.outputs(model, x), y, n_classes)
    drops = []
    for d in directions:
        r = F.normalize(d.to(row.device, row.dtype), dim=0) * row.norm()
        remove = lambda a, r=r: a - sae.encode(dictionary, a)[:, latent:latent + 1] * r
        with hooks.patch(model, {name: remove}):
            drops.append((clean[target] - training.per_class_accuracy(sae.outputs(model, x), y, n_classes)[target]).item())
    acts = sae.collect_activations(model, name, x[(y == target).to(x.device)])
    removed = (sae.encode(dictionary, acts)[:, latent:latent + 1] * row).norm(dim=1).mean().item()
    return {"drops": drops, "mean": sum(drops) / len(drops), "max": max(drops), "n_draws": len(drops),
            "removed_length": removed, "activation_length": acts.norm(dim=1).mean().item()}


@torch.no_grad()
def class_direction_drop(model: nn.Module, name: str, train_acts: Float[Tensor, "m d"], train_labels: Int[Tensor, "m"],
                         target: int, x: Tensor, y: Int[Tensor, "n"], *, n_classes: int) -> dict[str, float]:
    """A supervised direction, no SAE: the mean activation of class `target` minus that of the other classes
    (on the training inputs). Its positive projection is removed from module `name`'s output; returns the
    drop on `target` and the largest change on any other class (a ceiling for one direction's effect)."""
    checks.tensor(train_acts, "train_acts", ndim=2)
    is_target = (train_labels == target).to(train_acts.device)
    u = F.normalize(train_acts[is_target].mean(0) - train_acts[~is_target].mean(0), dim=0)
    clean = training.per_class_accuracy(sae.outputs(model, x), y, n_classes)
    with hooks.patch(model, {name: lambda a: a - (a @ u).clamp(min=0)[:, None] * u}):
        change = training.per_class_accuracy(sae.outputs(model, x), y, n_classes) - clean
    others = torch.arange(n_classes) != target
    return {"target_drop": -change[target].item(), "max_other_change": change[others].abs().max().item()}


@torch.no_grad()
def lookup_table(model: nn.Module, name: str, train_acts: Float[Tensor, "m d"], x: Tensor, y: Int[Tensor, "n"], *,
                 n_prototypes: int, seed: int = 0) -> dict[str, float]:
    """A dictionary with no features: k-means prototypes of the training activations, each input's activation
    replaced by its nearest prototype (L0 = 1). Returns its FVU on x and the model's accuracy with it spliced in."""
    from sklearn.cluster import MiniBatchKMeans
    checks.count(n_prototypes, "n_prototypes")
    km = MiniBatchKMeans(n_clusters=n_prototypes, random_state=seed, batch_size=4096, n_init=1, max_iter=50)
    prototypes = torch.tensor(km.fit(train_acts.cpu().numpy()).cluster_centers_, dtype=train_acts.dtype)
    nearest = lambda a: prototypes.to(a.device)[torch.cdist(a, prototypes.to(a.device)).argmin(1)]
    acts = sae.collect_activations(model, name, x)
    with hooks.patch(model, {name: nearest}):
        accuracy = training.accuracy(model, x, y)
    return {"l0": 1.0, "fvu": sae.fvu(acts, nearest(acts)), "spliced_accuracy": accuracy, "n_prototypes": n_prototypes}


def switch_off_against_directions(model: nn.Module, name: str, dictionary: SAE, targets: Int[Tensor, "d_sae"],
                                  validation: tuple[Tensor, Tensor], report: tuple[Tensor, Tensor], *, n_classes: int,
                                  n_draws: int, seed: int = 0) -> dict:
    """The latent whose switch-off costs its target class most on validation (`best_on_validation`), reported once,
    against directions of its length removed from each input: `n_draws` random directions (all of them, unselected),
    the best of those same directions chosen on validation and reported once (the control chosen like the latent),
    and every other latent alive on validation (its decoder row). `rank` is the chosen latent's place among itself and
    the other latents' directions by report drop (1 = none removes as much)."""
    best, drops = best_on_validation(model, name, dictionary, targets, validation, report, n_classes)
    j, digit, latent = best["unit"], best["digit"], best["report_drop"]
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.stack([torch.randn(dictionary.cfg.d_in, generator=gen) for _ in range(n_draws)])  # as random_direction_drops draws
    on = {split: random_direction_drops(model, name, dictionary, j, digit, x, y, n_classes=n_classes, directions=dirs)
          for split, (x, y) in (("validation", validation), ("report", report))}
    rd = torch.tensor(on["report"]["drops"])
    pick = int(torch.tensor(on["validation"]["drops"]).argmax())
    alive = sae.encode(dictionary, sae.collect_activations(model, name, validation[0])).gt(0).any(0)
    others = [i for i in range(dictionary.cfg.d_sae) if i != j and alive[i]]
    od = torch.tensor(random_direction_drops(model, name, dictionary, j, digit, *report, n_classes=n_classes,
                                             directions=dictionary.W_dec.detach()[others])["drops"])
    top = int(od.argmax())
    return {"latent": best, "drops": drops,
            "random_direction": {k: on["report"][k] for k in ("mean", "max", "n_draws", "removed_length", "activation_length")}
            | {"median": rd.median().item(), "n_at_or_above_latent": int((rd >= latent).sum()), "drops": rd.tolist()},
            "random_chosen_on_validation": {"draw": pick, "validation_drop": on["validation"]["drops"][pick],
                                            "report_drop": on["report"]["drops"][pick], "n_draws": n_draws},
            "other_latents": {"n": len(others), "max": od.max().item(), "mean": od.mean().item(), "top_latent": others[top],
                              "n_at_or_above_latent": int((od >= latent).sum()), "n_above_30pct": int((od > 0.3).sum()),
                              "rank": int((od >= latent).sum()) + 1}}
