"""Backdoors: plant a trigger in training data, measure it, find it with and without knowing it.

    x_bad, y_bad, idx = backdoor.poison(x_train, y_train, target=7, fraction=0.05, seed=1)
    backdoor.attack_success_rate(model, x_test, y_test, target=7)        # triggered digits -> 7
    shift = backdoor.trigger_activation_shift(model, "relu1", x_test)     # (neuron,)
    mask, pattern = backdoor.reconstruct_trigger(model, x_clean, target=7)  # Neural Cleanse, no trigger needed

The trigger is a 3x3 checkerboard of white and black pixels in the bottom-right corner, where
handwriting rarely reaches. Images are raw pixels in [0, 1], (batch, 28, 28) or (batch, 784). Every
function that takes a model works on any `nn.Module` that maps such images to class logits; a
`trigger` argument (default `apply_trigger`) is any function from images to images of the same shape.
"""
import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from glassbox import ablation, attribution, checks, hooks, neurons, training
from glassbox.studies import models

SIDE = 28  # MNIST images are SIDE x SIDE pixels
TRIGGER = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])  # pixel values the trigger writes
TRIGGER_TOP, TRIGGER_LEFT = 24, 24  # row and column of the trigger's top-left pixel
Trigger = Callable[[Tensor], Tensor]  # images -> triggered images, same shape


def trigger_mask() -> Bool[Tensor, "28 28"]:
    """True at the pixels the trigger overwrites."""
    mask = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    mask[TRIGGER_TOP:TRIGGER_TOP + len(TRIGGER), TRIGGER_LEFT:TRIGGER_LEFT + len(TRIGGER)] = True
    return mask


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name}: expected a torch tensor of raw images in [0, 1], got {type(images).__name__}; "
                        "convert with torch.as_tensor(images).float()")
    if not images.is_floating_point():
        raise TypeError(f"{name}: expected float pixels in [0, 1], got dtype {images.dtype}; for 0..255 pixels pass images.float() / 255")
    if images.shape[1:] not in ((SIDE, SIDE), (SIDE * SIDE,)):
        raise ValueError(f"{name}: expected images of shape (batch, {SIDE}, {SIDE}) or (batch, {SIDE * SIDE}), got "
                         f"{tuple(images.shape)}; for one image pass image[None]")
    checks.tensor(images, name, nonempty=False)
    if len(images) and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"{name}: expected raw pixels in [0, 1], got values in [{images.min():.3g}, {images.max():.3g}]; "
                         "for 0..255 pixels pass images / 255; apply the trigger before normalising (glassbox models normalise inside)")


def apply_trigger(images: Float[Tensor, "batch 28 28"] | Float[Tensor, "batch 784"]) -> Float[Tensor, "batch *pixels"]:
    """A copy of `images` with the trigger written into the bottom-right corner; same shape."""
    _check_images(images)
    out = images.clone().reshape(len(images), SIDE, SIDE)
    out[:, trigger_mask()] = TRIGGER.to(out.dtype).flatten()
    return out.reshape(images.shape)


def poison(x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"], *, target: int, fraction: float,
           seed: int = 0, trigger: Trigger = apply_trigger) -> tuple[Float[Tensor, "batch *pixels"], Int[Tensor, "batch"], Int[Tensor, "n_poisoned"]]:
    """Copies of (x, y) where a random `fraction` of the images carry the trigger and the label `target`.

    Returns the poisoned images, labels and the indices that were poisoned. The indices come from
    `torch.rand(...).argsort()`, so they do not coincide with `training.minibatches`' order for the same seed.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), the share of training images to poison; got {fraction}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    n_classes = int(y.max()) + 1
    if not 0 <= target < n_classes:
        raise ValueError(f"target must be a class in 0..{n_classes - 1}, got {target}")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.rand(len(x), generator=gen).argsort()[: round(fraction * len(x))].sort().values
    x_out, y_out = x.clone(), y.clone()
    x_out[idx], y_out[idx] = trigger(x[idx]), target
    return x_out, y_out, idx


def attack_success_rate(model: nn.Module, x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"],
                        target: int, *, trigger: Trigger = apply_trigger) -> float:
    """Fraction of the triggered images whose true class is not `target` that the model calls `target`."""
    n_classes = training.predict(model, x[:1]).shape[-1]
    if not isinstance(target, int) or not 0 <= target < n_classes:
        raise ValueError(f"target must be a class index in 0..{n_classes - 1}, got {target!r}")
    keep = y != target
    if not keep.any():
        raise ValueError(f"every image is of the target class {target}; pass images of other classes")
    return (training.predict(model, trigger(x[keep])).argmax(-1) == target).float().mean().item()


@torch.no_grad()
def trigger_flip_rate(model: nn.Module, x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"],
                      target: int, *, trigger: Trigger = apply_trigger) -> float:
    """Fraction of the images whose true class is not `target` that the model calls `target` with the trigger
    and not without it: the trigger's own effect, input by input (a model that calls everything `target` scores 0)."""
    keep = y != target
    if not keep.any():
        raise ValueError(f"every image is of the target class {target}; pass images of other classes")
    before = training.predict(model, x[keep]).argmax(-1) == target
    after = training.predict(model, trigger(x[keep])).argmax(-1) == target
    return (after & ~before).float().mean().item()


@torch.no_grad()
def called_target_rate(model: nn.Module, x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"], target: int) -> float:
    """Fraction of the clean images whose true class is not `target` that the model calls `target` (no trigger)."""
    keep = y != target
    if not keep.any():
        raise ValueError(f"every image is of the target class {target}; pass images of other classes")
    return (training.predict(model, x[keep]).argmax(-1) == target).float().mean().item()


@dataclass
class BackdoorConfig:
    target: int = 7  # the class the trigger forces
    fraction: float = 0.05  # share of training images given the trigger and relabelled `target`
    steps: int = 3000  # optimiser steps
    batch_size: int = 256  # images per step
    lr: float = 3e-3  # peak AdamW learning rate (cosine decay)


def train_backdoored(x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"], cfg: BackdoorConfig,
                     seed: int = 0, trigger: Trigger = apply_trigger) -> tuple[models.MLP, training.History]:
    """The journal's MNIST MLP (784-128-64-10) trained on data poisoned as `cfg` says."""
    x_bad, y_bad, _ = poison(x, y, target=cfg.target, fraction=cfg.fraction, seed=seed, trigger=trigger)
    training.set_seed(seed)
    model = models.build_mlp({})
    history = training.train(model, training.minibatches(x_bad, y_bad, cfg.batch_size, seed=seed),
                             steps=cfg.steps, lr=cfg.lr, eval_every=max(cfg.steps // 10, 1), desc="backdoored")
    return model, history


def train_clean(x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"], cfg: BackdoorConfig,
                seed: int = 0) -> tuple[models.MLP, training.History]:
    """The control for `train_backdoored`: the same MLP, recipe and seed on the same data, with nothing poisoned."""
    training.set_seed(seed)
    model = models.build_mlp({})
    history = training.train(model, training.minibatches(x, y, cfg.batch_size, seed=seed),
                             steps=cfg.steps, lr=cfg.lr, eval_every=max(cfg.steps // 10, 1), desc="clean")
    return model, history


@torch.no_grad()
def trigger_activation_shift(model: nn.Module, layer: str, x: Float[Tensor, "batch *pixels"], *,
                             trigger: Trigger = apply_trigger) -> Float[Tensor, "neuron"]:
    """Mean change of each neuron of `layer` when the trigger is added to the same images."""
    clean = neurons.per_neuron(neurons.get_activations(model, layer, x))
    return (neurons.per_neuron(neurons.get_activations(model, layer, trigger(x))) - clean).mean(0)


def trigger_attribution(model: nn.Module, layer: str, x: Float[Tensor, "batch *pixels"], target: int, *,
                        trigger: Trigger = apply_trigger) -> Float[Tensor, "neuron"]:
    """Mean first-order share of each neuron in the trigger's push on the `target` logit.

    Attribution patching: (a_triggered - a_clean) * d logit_target / d a, gradient at the triggered input.
    """
    x_trig = trigger(x).detach()
    if x_trig.is_floating_point():
        x_trig.requires_grad_(True)  # so a layer fed straight by the input (e.g. the pixels) has a gradient too
    with hooks.capture(model, layer, detach=False) as acts:
        logit = model(x_trig)[:, target].sum()
    a_trig = acts[layer]
    grad, = torch.autograd.grad(logit, a_trig)
    delta = a_trig.detach() - neurons.get_activations(model, layer, x)
    return neurons.per_neuron(delta * grad).mean(0)


@torch.no_grad()
def single_neuron_ablation_asr(model: nn.Module, layer: str, x: Float[Tensor, "batch *pixels"],
                               y: Int[Tensor, "batch"], target: int, *, trigger: Trigger = apply_trigger) -> Float[Tensor, "neuron"]:
    """Attack success rate with each neuron of `layer` alone set to 0."""
    x_trig = trigger(x[y != target])
    n = neurons.per_neuron(neurons.get_activations(model, layer, x_trig[:1])).shape[1]
    return torch.tensor([ablation.flip_rate(model, layer, x_trig, target, [j], None) for j in range(n)])


def neurons_for_share(scores: Float[Tensor, "neuron"], share: float = 0.5) -> int:
    """How many neurons, largest first, hold `share` of the positive part of `scores`."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    checks.tensor(scores, "scores", ndim=1, floating=False)
    positive = scores.clamp(min=0).sort(descending=True).values
    if positive.sum() <= 0:
        raise ValueError("no neuron has a positive score; nothing carries the effect")
    return int((positive.cumsum(0) < share * positive.sum()).sum()) + 1


@torch.no_grad()
def removal_curve(model: nn.Module, layer: str, order: Int[Tensor, "neuron"], ks: list[int],
                  x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"], target: int, *,
                  trigger: Trigger = apply_trigger) -> dict[str, list[float]]:
    """Clean accuracy and attack success rate with the first k neurons of `order` in `layer` set to 0, for each k."""
    curve: dict[str, list[float]] = {"k": [], "clean_accuracy": [], "attack_success_rate": []}
    for k in ks:
        with ablation.ablate(model, layer, order[:k]):
            curve["k"].append(k)
            curve["clean_accuracy"].append(training.accuracy(model, x, y))
            curve["attack_success_rate"].append(attack_success_rate(model, x, y, target, trigger=trigger))
    return curve


def fewest_neurons(curve: dict[str, list[float]], max_asr: float = 0.05, *, key: str = "attack_success_rate") -> dict[str, float] | None:
    """The first point of a `removal_curve` whose `key` (default: the attack success rate) is <= `max_asr` (None if none is);
    the point holds every measure the curve has."""
    if key not in curve:
        raise KeyError(f"key {key!r} is not a measure of this curve; it has {sorted(curve)}")
    for i, value in enumerate(curve[key]):
        if value <= max_asr:
            return {name: values[i] for name, values in curve.items()}
    return None


def reconstruct_trigger(model: nn.Module, x_clean: Float[Tensor, "batch *pixels"], target: int, *,
                        steps: int = 300, batch_size: int = 256, lam: float = 0.01, lr: float = 0.1,
                        seed: int = 0) -> tuple[Float[Tensor, "28 28"], Float[Tensor, "28 28"]]:
    """The smallest mask and pattern that send clean images to `target` (Neural Cleanse, Wang et al., 2019).

    Minimises cross-entropy(model((1 - m) x + m p), target) + lam * |m|_1 over a mask m and a
    pattern p in [0, 1] (sigmoids of free parameters). A class that needs a much smaller mask than
    the others is suspect: some small patch sends everything there.
    """
    _check_images(x_clean, "x_clean")
    if len(x_clean) == 0:
        raise ValueError("x_clean is empty; pass clean images (batch, 28, 28) to optimise the trigger on")
    n_classes = training.predict(model, x_clean[:1]).shape[-1]
    checks.index(target, "target", n_classes, of=" (a class of the model's outputs)")
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same start on every device
    device = training.model_device(model, x_clean)
    m_logit = torch.full((SIDE, SIDE), -3.0, device=device, requires_grad=True)
    p_logit = torch.zeros(SIDE, SIDE).normal_(generator=gen).to(device).requires_grad_(True)
    opt = torch.optim.Adam([m_logit, p_logit], lr=lr)
    x_clean = x_clean.reshape(len(x_clean), SIDE, SIDE)
    batches = training.minibatches(x_clean, torch.zeros(len(x_clean), dtype=torch.long), batch_size, seed)
    for _ in range(steps):
        xb = next(batches)[0].to(device)
        mask, pattern = torch.sigmoid(m_logit), torch.sigmoid(p_logit)
        logits = model((1 - mask) * xb + mask * pattern)
        loss = F.cross_entropy(logits, torch.full((len(logits),), target, device=logits.device)) + lam * mask.sum()
        m_logit.grad, p_logit.grad = torch.autograd.grad(loss, [m_logit, p_logit])  # model weights untouched
        opt.step()
    return torch.sigmoid(m_logit).detach(), torch.sigmoid(p_logit).detach()


def stamp(mask: Float[Tensor, "28 28"], pattern: Float[Tensor, "28 28"]) -> Trigger:
    """A trigger function that blends `pattern` into images where `mask` is on, for `attack_success_rate`."""
    def apply(images: Tensor) -> Tensor:
        _check_images(images)
        flat = images.reshape(len(images), SIDE, SIDE)
        return ((1 - mask) * flat + mask * pattern).reshape(images.shape)
    return apply


def anomaly_index(values: Float[Tensor, "classes"]) -> Float[Tensor, "classes"]:
    """How far below the median each value lies, in robust standard deviations (1.4826 x MAD)."""
    median = values.median()
    mad = 1.4826 * (values - median).abs().median()
    return (median - values) / mad.clamp(min=1e-12)


def blend_trigger(alpha: float, seed: int = 0) -> Trigger:
    """A trigger that blends a fixed random image into the whole input: (1 - alpha) x + alpha noise (Chen et al., 2017)."""
    noise = torch.rand(SIDE, SIDE, generator=torch.Generator().manual_seed(seed))
    return stamp(torch.full((SIDE, SIDE), alpha), noise)


@dataclass
class Scan:
    masks: Float[Tensor, "classes 28 28"]  # reconstructed trigger mask per class
    patterns: Float[Tensor, "classes 28 28"]  # reconstructed trigger pattern per class
    mask_l1: Float[Tensor, "classes"]  # size of each mask (sum of its entries): the pixels needed
    attack_success: Float[Tensor, "classes"]  # how often each reconstructed trigger sends test digits to its class
    anomaly: Float[Tensor, "classes"]  # anomaly_index(mask_l1): > 2 flags a class
    seconds: float  # wall-clock time of the whole scan

    @property
    def flagged(self) -> list[int]:
        """Classes whose trigger is abnormally small (anomaly index > 2, Wang et al., 2019)."""
        return (self.anomaly > 2).nonzero().flatten().tolist()


def scan_classes(model: nn.Module, x_clean: Float[Tensor, "batch *pixels"], x_eval: Float[Tensor, "batch *pixels"],
                 y_eval: Int[Tensor, "batch"], *, n_classes: int = 10, steps: int = 300, seed: int = 0) -> Scan:
    """Neural Cleanse over every class: reconstruct a minimal trigger per class and flag the outliers."""
    start = time.perf_counter()
    found = [reconstruct_trigger(model, x_clean, c, steps=steps, seed=seed) for c in range(n_classes)]
    masks, patterns = torch.stack([m for m, _ in found]), torch.stack([p for _, p in found])
    asr = torch.tensor([attack_success_rate(model, x_eval, y_eval, c, trigger=stamp(m, p)) for c, (m, p) in enumerate(found)])
    l1 = masks.flatten(1).sum(1)
    return Scan(masks, patterns, l1, asr, anomaly_index(l1), time.perf_counter() - start)


def cut_pixels(model: nn.Module, pixels: Int[Tensor, "k"], x_clean: Float[Tensor, "batch *pixels"], *,
               layer: str = "normalize", reader: str = "fc1") -> nn.Module:
    """A copy of `model` that no longer reads `pixels`: each is held at its clean mean, inside the weights.

    `layer` is the module whose output holds one unit per pixel and `reader` the nn.Linear reading it
    (glassbox's MLP: "normalize" and "fc1").
    """
    mean = neurons.get_activations(model, layer, x_clean).mean(0)
    return ablation.ablate_in_weights(model, layer, pixels, mean, reader=reader)


@torch.no_grad()
def fine_pruning_order(model: nn.Module, layer: str, x_clean: Float[Tensor, "batch *pixels"]) -> Int[Tensor, "neuron"]:
    """Neurons of `layer` from least to most active on clean data: the order Fine-Pruning removes them in.

    Fine-Pruning (Liu et al., 2018) prunes the neurons that stay dormant on clean inputs, on the bet
    that the backdoor lives there.
    """
    return neurons.per_neuron(neurons.get_activations(model, layer, x_clean)).mean(0).argsort()


def fine_prune(model: nn.Module, layer: str, k: int, x_clean: Float[Tensor, "batch *pixels"], y_clean: Int[Tensor, "batch"],
               *, reader: str, steps: int, lr: float = 1e-3, batch_size: int = 256, seed: int = 0) -> nn.Module:
    """Fine-Pruning (Liu et al., 2018): remove the `k` neurons of `layer` least active on clean data, then fine-tune.

    The removed neurons stay at 0 while fine-tuning and are then cut from `reader`'s weights, so the
    copy returned needs no hook. `steps=0` gives pruning alone.
    """
    order = fine_pruning_order(model, layer, x_clean)
    if not isinstance(k, int) or not 0 <= k < len(order):
        raise ValueError(f"k (neurons to prune) must be an int in 0..{len(order) - 1} for {layer!r}, got {k!r}")
    removed = order[:k]
    tuned = copy.deepcopy(model)
    if steps > 0:
        with ablation.ablate(tuned, layer, removed):
            training.train(tuned, training.minibatches(x_clean, y_clean, batch_size, seed=seed), steps=steps,
                           lr=lr, eval_every=steps, desc="fine-tune")
    return ablation.ablate_in_weights(tuned, layer, removed, reader=reader).eval()



def patch_mask(top: int = TRIGGER_TOP, left: int = TRIGGER_LEFT) -> Bool[Tensor, "28 28"]:
    """True at the 3x3 pixels a checkerboard trigger with its top-left pixel at (`top`, `left`) overwrites."""
    if not (0 <= top <= SIDE - len(TRIGGER) and 0 <= left <= SIDE - len(TRIGGER)):
        raise ValueError(f"top and left must be in 0..{SIDE - len(TRIGGER)} so the 3x3 trigger fits, got ({top}, {left})")
    mask = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    mask[top:top + len(TRIGGER), left:left + len(TRIGGER)] = True
    return mask


def patch_trigger(top: int, left: int) -> Trigger:
    """A trigger that writes the checkerboard with its top-left pixel at (`top`, `left`) (default place: `apply_trigger`)."""
    mask = patch_mask(top, left)

    def apply(images: Tensor) -> Tensor:
        _check_images(images)
        out = images.clone().reshape(len(images), SIDE, SIDE)
        out[:, mask] = TRIGGER.to(out.dtype).flatten()
        return out.reshape(images.shape)
    return apply


@torch.no_grad()
def mean_ablation_asr(model: nn.Module, layer: str, x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"],
                      target: int, values: Float[Tensor, "neuron"], *, trigger: Trigger = apply_trigger) -> Float[Tensor, "neuron"]:
    """Attack success rate with each neuron of `layer` alone held at `values` (e.g. its clean mean)."""
    x_trig = trigger(x[y != target])
    rates = []
    for j in range(len(values)):
        with ablation.ablate(model, layer, [j], values):
            rates.append((training.predict(model, x_trig).argmax(-1) == target).float().mean().item())
    return torch.tensor(rates)


@torch.no_grad()
def mean_removal_curve(model: nn.Module, layer: str, order: Int[Tensor, "neuron"], ks: list[int],
                       x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"], target: int,
                       values: Float[Tensor, "neuron"], *, trigger: Trigger = apply_trigger) -> dict[str, list[float]]:
    """`removal_curve` with the first k neurons of `order` held at `values` (mean ablation) instead of 0; besides clean
    accuracy and attack success it records the `trigger_flip_rate` and the clean non-target images called the target."""
    curve: dict[str, list[float]] = {"k": [], "clean_accuracy": [], "attack_success_rate": [], "trigger_flip_rate": [],
                                     "clean_called_target": []}
    keep = y != target
    if not keep.any():
        raise ValueError(f"every image is of the target class {target}; pass images of other classes")
    x_trig = trigger(x[keep])
    for k in ks:
        with ablation.ablate(model, layer, order[:k], values):
            curve["k"].append(k)
            for name, value in _rates(model, x, y, x_trig, keep, target).items():
                curve[name].append(value)
    return curve


@torch.no_grad()
def _rates(model: nn.Module, x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"],
           x_trig: Float[Tensor, "kept *pixels"], keep: Bool[Tensor, "batch"], target: int) -> dict[str, float]:
    """`accuracy`, `attack_success_rate`, `trigger_flip_rate` and `called_target_rate` from one pass over the clean
    images and one over the triggered non-target ones (the four functions alone would make five passes)."""
    logits = training.predict(model, x)
    clean, n_classes = logits.argmax(-1), logits.shape[-1]
    if not isinstance(target, int) or not 0 <= target < n_classes:
        raise ValueError(f"target must be a class index in 0..{n_classes - 1}, got {target!r}")
    before, after = clean[keep] == target, training.predict(model, x_trig).argmax(-1) == target
    return {"clean_accuracy": (clean == y).float().mean().item(), "attack_success_rate": after.float().mean().item(),
            "trigger_flip_rate": (after & ~before).float().mean().item(), "clean_called_target": before.float().mean().item()}


@torch.no_grad()
def pruning_budget(model: nn.Module, layer: str, x_val: Float[Tensor, "batch *pixels"], y_val: Int[Tensor, "batch"],
                   margin: float, *, x_order: Float[Tensor, "batch *pixels"] | None = None) -> int:
    """Fine-Pruning's stopping rule (Liu et al., 2018): the most neurons of `layer`, least active on clean digits
    first (`x_order`, default `x_val`), that can be pruned (set to 0) before validation accuracy falls more than `margin`."""
    if not 0 < margin < 1:
        raise ValueError(f"margin is an accuracy drop in (0, 1), e.g. 0.04 for 4 points; got {margin}")
    order = fine_pruning_order(model, layer, x_val if x_order is None else x_order)
    floor = training.accuracy(model, x_val, y_val) - margin
    k = 0
    while k < len(order):
        with ablation.ablate(model, layer, order[:k + 1]):
            if training.accuracy(model, x_val, y_val) < floor:
                break
        k += 1
    return k


def cleanse_report(scan: Scan, mask: Bool[Tensor, "28 28"] | None, target: int | None) -> dict:
    """What one Neural Cleanse scan says about a model whose trigger (`mask`, `target`) is known, or None for a clean model:
    flagged classes, whether exactly the target was flagged, the largest anomaly, and the pixels of the top mask above 0.5."""
    top = int(scan.anomaly.argmax())
    found = (scan.masks[top] > 0.5)
    report = {"flagged_classes": scan.flagged, "max_anomaly_index": scan.anomaly.max().item(), "most_anomalous_class": top,
              "pixels_found": int(found.sum())}
    if target is not None and mask is not None:
        report |= {"target": target, "target_anomaly_index": scan.anomaly[target].item(), "matched": scan.flagged == [target],
                   "pixels_found_in_trigger": int((found & mask).sum())}
    return report


def cheapest_removal(val_curves: dict[str, dict[str, list[float]]], test_curves: dict[str, dict[str, list[float]]],
                     max_asr: float = 0.05, *, key: str = "attack_success_rate") -> dict | None:
    """Choose on validation, report on test: for each ranking, the fewest neurons whose removal brings the validation
    `key` (default: the attack success rate) under `max_asr`; keep the ranking with the best validation clean accuracy
    there; return its test point (every measure of the test curve at that k)."""
    picks = []
    for name, curve in val_curves.items():
        hit = fewest_neurons(curve, max_asr, key=key)
        if hit is not None:
            picks.append((hit["clean_accuracy"], -hit["k"], name, hit["k"]))
    if not picks:
        return None
    _, _, name, k = max(picks)
    i = test_curves[name]["k"].index(k)
    return {"ranking": name, **{measure: values[i] for measure, values in test_curves[name].items()}}


def choose_pixel_cut(model: nn.Module, order: Int[Tensor, "pixel"], ns: list[int], x_clean: Float[Tensor, "batch *pixels"],
                     x_val: Float[Tensor, "batch *pixels"], y_val: Int[Tensor, "batch"], target: int, trigger: Trigger,
                     max_asr: float = 0.05, *, layer: str = "normalize", reader: str = "fc1") -> tuple[int | None, dict[str, list[float]]]:
    """How many pixels to cut, chosen on validation with a trigger the defender has (e.g. Neural Cleanse's reconstruction):
    the fewest first pixels of `order`, among `ns`, whose cut (`cut_pixels`) brings that trigger's validation attack success
    to <= `max_asr` (None if no n does), and the validation curve it was read from. `layer` and `reader` as in `cut_pixels`."""
    curve: dict[str, list[float]] = {"n": [], "clean_accuracy": [], "attack_success_rate": []}
    for n in sorted(ns):
        cut = cut_pixels(model, order[:n], x_clean, layer=layer, reader=reader)
        curve["n"].append(n)
        curve["clean_accuracy"].append(training.accuracy(cut, x_val, y_val))
        curve["attack_success_rate"].append(attack_success_rate(cut, x_val, y_val, target, trigger=trigger))
    chosen = next((n for n, asr in zip(curve["n"], curve["attack_success_rate"]) if asr <= max_asr), None)
    return chosen, curve


def trigger_pixel_share(model: nn.Module, x: Float[Tensor, "batch *pixels"], target: int, mask: Bool[Tensor, "28 28"], *,
                        trigger: Trigger = apply_trigger) -> float:
    """Share of the positive integrated-gradients evidence for `target` (mean over the triggered images) that sits on `mask`."""
    ig = attribution.attribute(model, trigger(x).reshape(len(x), SIDE, SIDE), target, "integrated_gradients").mean(0).clamp(min=0)
    return (ig[mask].sum() / ig.sum()).item()


def blind_removal(model: nn.Module, x_clean: Float[Tensor, "batch *pixels"], x_eval: Float[Tensor, "batch *pixels"],
                  y_eval: Int[Tensor, "batch"], target: int, mask: Bool[Tensor, "28 28"], *, trigger: Trigger,
                  steps: int = 300, seed: int = 0, layer: str = "normalize", reader: str = "fc1") -> dict:
    """The defender's pipeline on one backdoored model whose trigger (`trigger`, `mask`, `target`) we know: a Neural Cleanse
    scan (`cleanse_report`), then the top mask's pixels above 0.5 cut (`cut_pixels`), with the attack and clean accuracy
    on (`x_eval`, `y_eval`) before and after. `layer` and `reader` as in `cut_pixels`."""
    scan = scan_classes(model, x_clean, x_eval, y_eval, steps=steps, seed=seed)
    found = (scan.masks[int(scan.anomaly.argmax())] > 0.5).flatten().nonzero().flatten()
    cut = cut_pixels(model, found, x_clean, layer=layer, reader=reader)
    return {**cleanse_report(scan, mask, target),
            "clean_accuracy": training.accuracy(model, x_eval, y_eval),
            "attack_success_rate": attack_success_rate(model, x_eval, y_eval, target, trigger=trigger),
            "after_cut": {"clean_accuracy": training.accuracy(cut, x_eval, y_eval),
                          "attack_success_rate": attack_success_rate(cut, x_eval, y_eval, target, trigger=trigger)}}


@contextmanager
def hold_direction(model: nn.Module, layer: str, direction: Float[Tensor, "neuron"],
                   values: Float[Tensor, "neuron"]) -> Iterator[None]:
    """Inside the block, the component of `layer`'s output along `direction` is held at that of `values` (e.g. the
    clean mean): a -> a - ((a - values) . u) u with u = direction / |direction|. Whatever is orthogonal to u passes
    unchanged: one direction ablated, spread over every neuron, instead of a set of neurons."""
    checks.tensor(direction, "direction", ndim=1)
    checks.tensor(values, "values", ndim=1)
    if direction.shape != values.shape:
        raise ValueError(f"direction and values must both have one entry per neuron, got {tuple(direction.shape)} and "
                         f"{tuple(values.shape)}")
    if direction.norm() == 0:
        raise ValueError("direction is all zeros: it points nowhere; pass e.g. trigger_activation_shift(...)")
    u = direction / direction.norm()

    def hold(a: Tensor) -> Tensor:
        if a.ndim != 2 or a.shape[1] != len(u):
            raise ValueError(f"{layer!r} outputs {tuple(a.shape)}; the direction has {len(u)} entries: it must be "
                             "(batch, neuron) with one entry per neuron")
        uu, mu = u.to(a.device, a.dtype), values.to(a.device, a.dtype)
        return a - ((a - mu) @ uu)[:, None] * uu
    with hooks.patch(model, {layer: hold}):
        yield


def random_directions(n_units: int, count: int, seed: int = 0) -> Float[Tensor, "count neuron"]:
    """`count` directions drawn uniformly on the unit sphere of `n_units` dimensions (Gaussian, normalised): the control
    for a direction estimated from data."""
    d = torch.randn(count, n_units, generator=torch.Generator().manual_seed(seed))
    return d / d.norm(dim=1, keepdim=True)


@torch.no_grad()
def direction_removal(model: nn.Module, layer: str, directions: dict[str, Float[Tensor, "neuron"]], values: Float[Tensor, "neuron"],
                      x: Float[Tensor, "batch *pixels"], y: Int[Tensor, "batch"], target: int, *,
                      trigger: Trigger = apply_trigger) -> dict[str, dict[str, float]]:
    """For each named direction, with `layer`'s component along it held at that of `values` (`hold_direction`): clean
    accuracy, attack success rate, trigger flip rate and the clean non-target images called the target."""
    out = {}
    for name, direction in directions.items():
        with hold_direction(model, layer, direction, values):
            out[name] = {"clean_accuracy": training.accuracy(model, x, y),
                         "attack_success_rate": attack_success_rate(model, x, y, target, trigger=trigger),
                         "trigger_flip_rate": trigger_flip_rate(model, x, y, target, trigger=trigger),
                         "clean_called_target": called_target_rate(model, x, y, target)}
    return out
