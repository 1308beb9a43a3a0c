"""MNIST, the journal's digits (notebooks 01 and 04-06): the data set from data/mnist.npz (offline,
checksummed), and concepts computed from a digit's pixels (closed loops, stroke thickness, slant)
for probing."""
import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int
from scipy import ndimage
from torch import Tensor, nn

from glassbox import attribution, checks, training
from glassbox.journal import paths


def _check_images(images: Tensor, name: str = "images") -> None:
    if isinstance(images, Tensor) and images.ndim != 3:
        raise ValueError(f"expected a batch of images (batch, height, width) with pixels in [0, 1], got shape "
                         f"{tuple(images.shape)}; reshape flat images with x.reshape(-1, 28, 28)")
    checks.tensor(images, name, floating=False)
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"{name} must hold pixels in [0, 1], got values in [{images.min():.3g}, {images.max():.3g}]; "
                         "for 0..255 pixels pass images / 255")


def count_holes(images: Float[Tensor, "batch h w"], threshold: float = 0.5, min_area: int = 2) -> Int[Tensor, "batch"]:
    """Number of enclosed background regions (of at least `min_area` pixels) in each image.

    Background is 4-connected (so ink touching diagonally closes a loop); a region is a hole when
    it does not touch the image border.
    """
    _check_images(images)
    counts = []
    for img in (images < threshold).numpy():
        labels, n = ndimage.label(img)  # default structure: 4-connectivity
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        counts.append(sum(1 for i in range(1, n + 1) if i not in border and areas[i] >= min_area))
    return torch.tensor(counts)


def stroke_thickness(images: Float[Tensor, "batch h w"], threshold: float = 0.5) -> Float[Tensor, "batch"]:
    """Mean stroke width in pixels: ink area / half its perimeter (a w x L stroke gives ~w)."""
    _check_images(images)
    ink = (images >= threshold).float()
    padded = torch.nn.functional.pad(ink, (1, 1, 1, 1))
    perimeter = padded.diff(dim=1).abs().sum((1, 2)) + padded.diff(dim=2).abs().sum((1, 2))
    return ink.sum((1, 2)) / (perimeter / 2).clamp(min=1)


def slant(images: Float[Tensor, "batch h w"]) -> Float[Tensor, "batch"]:
    """Horizontal shift per row going up, from ink-weighted moments: > 0 leans right, 0 upright."""
    _check_images(images)
    h, w = images.shape[1:]
    rows = torch.arange(h, dtype=images.dtype)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=images.dtype)[None, :].expand(h, w)
    mass = images.sum((1, 2)).clamp(min=1e-6)
    mean_r = (images * rows).sum((1, 2)) / mass
    mean_c = (images * cols).sum((1, 2)) / mass
    dr, dc = rows - mean_r[:, None, None], cols - mean_c[:, None, None]
    cov = (images * dr * dc).sum((1, 2)) / mass
    var_r = (images * dr**2).sum((1, 2)) / mass
    return -cov / var_r.clamp(min=1e-6)  # rows grow downwards, so leaning right = negative row-col covariance


def binary_labels(images: Float[Tensor, "batch h w"], reference: Float[Tensor, "ref h w"] | None = None) -> dict[str, Int[Tensor, "batch"]]:
    """The concepts as 0/1 labels for probes: has_loop (a hole), thick_stroke and leans_right (above
    the median of `reference`, e.g. the probes' training images; default: `images` themselves)."""
    _check_images(images)
    if reference is not None:
        _check_images(reference, "reference")
    reference = images if reference is None else reference
    return {"has_loop": (count_holes(images) > 0).long(),
            "thick_stroke": (stroke_thickness(images) > stroke_thickness(reference).median()).long(),
            "leans_right": (slant(images) > slant(reference).median()).long()}

def weight_correlation(a: Float[Tensor, "neuron d_in"], b: Float[Tensor, "neuron d_in"]) -> Float[Tensor, "neuron"]:
    """Per neuron (row): the Pearson correlation of its input weights in `a` with those in `b`."""
    checks.tensor(a, "a", ndim=2)
    checks.tensor(b, "b", ndim=2)
    a, b = a.detach(), b.detach()
    return torch.nn.functional.cosine_similarity(a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True))


def weight_smoothness(weights: Float[Tensor, "neuron h w"]) -> Float[Tensor, "neuron"]:
    """Per weight image: the Pearson correlation of each weight with its right-hand neighbour (near 0 for noise)."""
    checks.tensor(weights, "weights", ndim=3)
    left, right = weights[:, :, :-1].flatten(1), weights[:, :, 1:].flatten(1)
    left, right = left - left.mean(1, keepdim=True), right - right.mean(1, keepdim=True)
    return (left * right).sum(1) / (left.norm(dim=1) * right.norm(dim=1)).clamp(min=1e-12)


def _blur(noise: Float[Tensor, "n h w"], sigma: float) -> Float[Tensor, "n h w"]:
    """`noise` convolved with a Gaussian of width `sigma` pixels (zero padding; 0: unchanged)."""
    if sigma <= 0:
        return noise
    radius = int(3 * sigma) + 1
    t = torch.arange(-radius, radius + 1, dtype=noise.dtype)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    out = torch.nn.functional.conv2d(noise[:, None], g.view(1, 1, 1, -1), padding=(0, radius))
    return torch.nn.functional.conv2d(out, g.view(1, 1, -1, 1), padding=(radius, 0))[:, 0]


def smooth_random_weights(n: int, shape: tuple[int, int], smoothness: float, *, seed: int,
                          max_sigma: float = 8.0) -> tuple[Float[Tensor, "n h w"], float]:
    """`n` random weight images (white Gaussian noise, blurred by a Gaussian, each shifted to mean 0) whose median
    `weight_smoothness` is `smoothness`: the width is found by bisection on one fixed draw. Returns them and the width."""
    checks.count(n, "n")
    if not -1.0 < smoothness < 1.0:
        raise ValueError(f"smoothness is a median neighbour correlation in (-1, 1), got {smoothness}; measure it "
                         "with weight_smoothness(weights).median()")
    noise = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))
    median = lambda sigma: weight_smoothness(_blur(noise, sigma)).median().item()
    if median(max_sigma) < smoothness:
        raise ValueError(f"blurring by {max_sigma} pixels reaches a smoothness of only {median(max_sigma):.3f} < "
                         f"{smoothness}; raise max_sigma or use larger images than {shape}")
    sigma, lo, hi = 0.0, 0.0, max_sigma
    if median(0.0) < smoothness:
        while hi - lo > 1e-3:  # the median smoothness grows with the width
            sigma = (lo + hi) / 2
            lo, hi = (sigma, hi) if median(sigma) < smoothness else (lo, sigma)
    weights = _blur(noise, sigma)
    return weights - weights.mean((1, 2), keepdim=True), sigma


def random_relu_units(weights: Float[Tensor, "unit h w"], x_val: Float[Tensor, "n_val h w"],
                      x_test: Float[Tensor, "n_test h w"]) -> tuple[Float[Tensor, "n_val unit"], Float[Tensor, "n_test unit"]]:
    """ReLU(x . w - b) of each weight image on `x_val` and `x_test`, with b the unit's median on `x_val` (so each
    unit fires on about half the validation images): hidden units of an untrained layer with the given filters."""
    checks.tensor(weights, "weights", ndim=3)
    for name, x in (("x_val", x_val), ("x_test", x_test)):
        _check_images(x, name)
        if x.shape[1:] != weights.shape[1:]:
            raise ValueError(f"{name} images are {tuple(x.shape[1:])} but the weight images {tuple(weights.shape[1:])}")
    w = weights.flatten(1)
    pre_val, pre_test = x_val.flatten(1) @ w.T, x_test.flatten(1) @ w.T
    bias = pre_val.median(0).values
    return (pre_val - bias).clamp(min=0), (pre_test - bias).clamp(min=0)


def train_shuffled_label_twin(x: Float[Tensor, "n h w"], y: Int[Tensor, "n"], build, *, steps: int, lr: float,
                              seed: int, batch_size: int = 128) -> tuple[nn.Module, float]:
    """A model from `build()` trained on `x` with `y` shuffled (Adebayo et al.'s data-randomisation control),
    and the share of those shuffled labels it fits (memorised: near 1)."""
    checks.tensor(x, "x", floating=False)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]
    training.set_seed(seed)
    twin = build()
    training.train(twin, training.minibatches(x, shuffled, batch_size, seed=seed), steps=steps, lr=lr,
                   eval_every=steps, desc="shuffled-label twin")
    return twin, training.accuracy(twin, x, shuffled)


def attribution_sanity(model: nn.Module, controls: dict[str, nn.Module], x: Float[Tensor, "batch h w"],
                       y: Int[Tensor, "batch"], methods: tuple[str, ...], **kwargs) -> dict[str, dict[str, float]]:
    """Per method: the mean Spearman correlation of `model`'s maps with each control model's, on signed maps
    (key: the control's name, with its bootstrap 95% interval over inputs: name + " interval", and the mean of
    |correlation|: name + " |rho|") and on |maps| (name + " abs"), and with its own maps from another seed ("repeat":
    1 for a deterministic method, lower for LIME and KernelSHAP). `kwargs` go to `attribution.attribute`."""
    table = {}
    for method in methods:
        mine = attribution.attribute(model, x, y, method, **kwargs)
        row = {}
        for name, control in controls.items():
            theirs = attribution.attribute(control, x, y, method, **kwargs)
            row[name] = attribution.rank_correlation(mine, theirs, absolute=False).mean().item()
            signed = attribution.rank_correlation(mine, theirs, absolute=False)
            row[f"{name} abs"] = attribution.rank_correlation(mine, theirs).mean().item()
            row[f"{name} |rho|"] = signed.abs().mean().item()  # a map unrelated to the model but signed by it scores high here
            row[f"{name} interval"] = bootstrap_mean(signed)
        again = (attribution.attribute(model, x, y, method, **(kwargs | {"seed": kwargs.get("seed", 0) + 1}))
                 if method in attribution.SAMPLED else mine)
        row["repeat"] = attribution.rank_correlation(mine, again, absolute=False).mean().item()
        table[method] = {k: v if isinstance(v, tuple) else round(v, 4) for k, v in row.items()}
    return table


MNIST_SHA256 = "094b831e432331f1f6d6829ab9bfff4551410a81e1f816c9cce482d3e9b3ba57"
REBUILD = "rebuild it with `.venv/bin/python data/make_mnist.py` from the repository root (see data/README.md)"


class MNIST(NamedTuple):
    x_train: Float[Tensor, "60000 28 28"]  # pixels in [0, 1]
    y_train: Int[Tensor, "60000"]
    x_test: Float[Tensor, "10000 28 28"]
    y_test: Int[Tensor, "10000"]


def load_mnist(path: Path | None = None) -> MNIST:
    """MNIST as float pixels in [0, 1] and int64 labels, after checking the file's sha256."""
    path = Path(path or paths.DATA_DIR / "mnist.npz")
    if not path.is_file():
        raise FileNotFoundError(f"MNIST file {path} is missing: {REBUILD}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MNIST_SHA256:
        raise ValueError(f"MNIST file {path} is corrupt or a different version (sha256 {digest[:12]}..., "
                         f"expected {MNIST_SHA256[:12]}...): {REBUILD}")
    with np.load(path) as f:
        arrays = {k: torch.from_numpy(f[k]) for k in MNIST._fields}
    return MNIST(
        x_train=arrays["x_train"].float() / 255,
        y_train=arrays["y_train"],
        x_test=arrays["x_test"].float() / 255,
        y_test=arrays["y_test"],
    )


# ---- the same measurements on other seeds (notebook 01's robustness section) ----

def train_mlp(x: Float[Tensor, "n h w"], y: Int[Tensor, "n"], sizes: list[int], *, seed: int, steps: int,
              batch_size: int, lr: float, weight_decay: float = 0.0) -> nn.Module:
    """An MLP of `models.build_mlp` with these `sizes`, built right after seeding and trained with the notebook's recipe."""
    from glassbox.studies import models  # a sibling study module
    training.set_seed(seed)
    model = models.build_mlp({"sizes": sizes})
    training.train(model, training.minibatches(x, y, batch_size, seed=seed), steps=steps, lr=lr,
                   weight_decay=weight_decay, eval_every=steps, desc=f"MLP seed {seed}")
    return model.eval()


def _folds(n: int, folds: int, seed: int) -> Int[Tensor, "n"]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)) % folds


def cross_validated_C(features: Float[Tensor, "n d"], labels: Int[Tensor, "n"], Cs: tuple[float, ...], *,
                      classes: Int[Tensor, "n"] | None = None, folds: int = 3, seed: int = 0) -> float:
    """The probe strength C (of `Cs`) with the best k-fold accuracy on these (training) examples; with `classes`,
    the pooled accuracy of probes fitted inside each class (`probes.within_class_probes`)."""
    from glassbox import probes
    if not Cs or min(Cs) <= 0:
        raise ValueError(f"Cs must hold positive probe strengths, got {Cs!r}")
    if len(Cs) == 1:
        return Cs[0]  # nothing to choose between: no folds to fit
    fold = _folds(len(labels), folds, seed)
    def score(C):
        total = 0.0
        for k in range(folds):
            tr, va = fold != k, fold == k
            if classes is None:
                total += probes.fit_probe(features[tr], labels[tr], features[va], labels[va], C=C).accuracy
            else:
                total += probes.pooled(probes.within_class_probes(features[tr], labels[tr], classes[tr], features[va],
                                                                  labels[va], classes[va], C=C))
        return total / folds
    scores = [score(C) for C in Cs]
    return Cs[max(range(len(Cs)), key=scores.__getitem__)]  # the first best


def within_class_predictions(features_train: Float[Tensor, "n_train d"], labels_train: Int[Tensor, "n_train"],
                             classes_train: Int[Tensor, "n_train"], features_test: Float[Tensor, "n_test d"],
                             classes_test: Int[Tensor, "n_test"], C: float) -> Int[Tensor, "n_test"]:
    """Each test example's prediction by the probe fitted inside its class (a class whose training labels are
    constant predicts that constant: its majority)."""
    from glassbox import probes
    pred = torch.zeros(len(classes_test), dtype=torch.long)
    for c in classes_test.unique().tolist():
        tr, te = classes_train == c, classes_test == c
        values = labels_train[tr].unique()
        if len(values) < 2:
            pred[te] = values[0] if len(values) else 0
            continue
        probe = probes.fit_probe(features_train[tr], labels_train[tr], features_train[tr][:1], labels_train[tr][:1], C=C).model
        pred[te] = torch.as_tensor(probe.predict(features_test[te].double().numpy()))
    return pred


def paired_bootstrap(correct_a: Tensor, correct_b: Tensor, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of accuracy(a) - accuracy(b) over resamples of the same examples (both 0/1 per example)."""
    diff = correct_a.float() - correct_b.float()
    idx = torch.randint(len(diff), (n_boot, len(diff)), generator=torch.Generator().manual_seed(seed))
    means = diff[idx].mean(1)
    return round(means.quantile(0.025).item(), 4), round(means.quantile(0.975).item(), 4)


def loop_within_digit(feats_train: dict[str, Tensor], feats_test: dict[str, Tensor], loop_train: Int[Tensor, "n_train"],
                      loop_test: Int[Tensor, "n_test"], digit_train: Int[Tensor, "n_train"], digit_test: Int[Tensor, "n_test"],
                      *, comparisons: dict[str, tuple[str, tuple[str, ...]]], Cs: tuple[float, ...], seed: int = 0) -> dict:
    """Has-loop probes inside each digit for every feature set (C chosen per feature set by cross-validation on the
    training split only), each digit's majority answer, and per comparison {label: (candidate, controls)} the gap of
    the candidate over its best control with a paired-bootstrap 95% interval over that digit's test images."""
    C = {n: cross_validated_C(feats_train[n], loop_train, Cs, classes=digit_train, seed=seed) for n in feats_train}
    correct = {n: within_class_predictions(feats_train[n], loop_train, digit_train, feats_test[n], digit_test, C[n]) == loop_test
               for n in feats_train}
    per_digit = {}
    for d in sorted(digit_train.unique().tolist()):
        te, tr = digit_test == d, digit_train == d
        if len(loop_train[tr].unique()) < 2 or not te.any():
            continue
        acc = {n: round(c[te].float().mean().item(), 4) for n, c in correct.items()}
        majority = int(loop_train[tr].float().mean() > 0.5)
        gaps = {}
        for label, (cand, controls) in comparisons.items():
            best = max(controls, key=acc.__getitem__)
            gaps[label] = {"best control": best, "gap": round(acc[cand] - acc[best], 4),
                           "interval": paired_bootstrap(correct[cand][te], correct[best][te], seed=seed + d)}
        per_digit[d] = acc | {"majority": round((loop_test[te] == majority).float().mean().item(), 4), "n": int(te.sum()), "gaps": gaps}
    n = sum(v["n"] for v in per_digit.values())
    pooled = {k: round(sum(v[k] * v["n"] for v in per_digit.values()) / n, 4) for k in [*feats_train, "majority"]}
    return {"C": C, "digits": per_digit, "pooled": pooled}


def conditional_loop_test(feats_train: dict[str, Tensor], feats_test: dict[str, Tensor], loop_train: Int[Tensor, "n_train"],
                          loop_test: Int[Tensor, "n_test"], digit_train: Int[Tensor, "n_train"], digit_test: Int[Tensor, "n_test"],
                          *, names: tuple[str, ...], Cs: tuple[float, ...], seed: int = 0, fixed_C: dict | None = None) -> dict:
    """Has-loop probes on the one-hot digit label alone and on the label beside each feature set of `names` (C chosen per
    probe by cross-validation on the training split, or taken from `fixed_C`, e.g. another run's choice):
    {"accuracy": {"digit label": .., "digit label + <name>": ..}, "C": {..}}."""
    from glassbox import probes
    onehot_tr, onehot_te = torch.eye(10)[digit_train], torch.eye(10)[digit_test]
    out = {"accuracy": {}, "C": {}}
    for name in ("digit label",) + tuple(names):
        key = name if name == "digit label" else f"digit label + {name}"
        a, b = (onehot_tr, onehot_te) if name == "digit label" else (
            torch.cat([onehot_tr, feats_train[name].flatten(1)], 1), torch.cat([onehot_te, feats_test[name].flatten(1)], 1))
        out["C"][key] = fixed_C[key] if fixed_C else cross_validated_C(a, loop_train, Cs, seed=seed)
        out["accuracy"][key] = round(probes.fit_probe(a, loop_train, b, loop_test, C=out["C"][key]).accuracy, 4)
    return out


def shuffled_within_digit_control(feats_train: dict[str, Tensor], feats_test: dict[str, Tensor], loop_train: Int[Tensor, "n_train"],
                                  loop_test: Int[Tensor, "n_test"], digit_train: Int[Tensor, "n_train"], digit_test: Int[Tensor, "n_test"],
                                  *, name: str, C: dict, seeds: tuple[int, ...] = (0, 1), controls: tuple[str, ...] = ()) -> dict:
    """The control `conditional_loop_test` must fail: `loop_train` permuted within each digit (one permutation per seed of
    `seeds`), which keeps all the label's information and destroys the drawing's; the label alone and the label beside
    `name` (and beside each of `controls`) refitted with the C of `C` (the true-label run's), scored on the true test labels:
    {"per permutation": [{"seed", "digit label", "digit label + <name>", .., "gain", "margin"}, ..], "max gain": ..,
    "max margin": ..}; "margin" is `name`'s accuracy minus the best of `controls`' (the claim's own statistic; with
    `controls` only)."""
    from glassbox import probes
    onehot_tr, onehot_te = torch.eye(10)[digit_train], torch.eye(10)[digit_test]
    key, rows = f"digit label + {name}", []
    both = lambda n: (torch.cat([onehot_tr, feats_train[n].flatten(1)], 1), torch.cat([onehot_te, feats_test[n].flatten(1)], 1))
    for seed in seeds:
        gen, shuffled = torch.Generator().manual_seed(seed), loop_train.clone()
        for d in range(10):
            idx = (digit_train == d).nonzero().flatten()
            shuffled[idx] = loop_train[idx[torch.randperm(len(idx), generator=gen)]]
        row = {"seed": seed, "digit label": round(probes.fit_probe(onehot_tr, shuffled, onehot_te, loop_test, C=C["digit label"]).accuracy, 4)}
        for n in (name, *controls):
            (a, b), k = both(n), f"digit label + {n}"
            row[k] = round(probes.fit_probe(a, shuffled, b, loop_test, C=C[k]).accuracy, 4)
        row["gain"] = round(row[key] - row["digit label"], 4)
        if controls:
            row["margin"] = round(row[key] - max(row[f"digit label + {n}"] for n in controls), 4)
        rows.append(row)
    return {"per permutation": rows, "max gain": max(r["gain"] for r in rows)} | ({"max margin": max(r["margin"] for r in rows)} if controls else {})


def digits_above(result: dict, label: str) -> list[int]:
    """Digits of `loop_within_digit` where the comparison `label`'s 95% interval lies above 0."""
    return [d for d, v in result["digits"].items() if v["gaps"][label]["interval"][0] > 0]


def selectivity_need_correlation(selectivity: Float[Tensor, "neuron"], drop: Float[Tensor, "n_classes neuron"]) -> float:
    """Spearman correlation, over neurons, of class selectivity with the largest class-accuracy drop under ablation."""
    from scipy.stats import spearmanr
    checks.tensor(selectivity, "selectivity", ndim=1)
    checks.tensor(drop, "drop", ndim=2)
    if len(selectivity) != drop.shape[1] or len(selectivity) < 3:
        raise ValueError(f"need one selectivity per neuron (column of drop) and at least 3 neurons; got {len(selectivity)} "
                         f"and drop {tuple(drop.shape)}")
    return round(float(spearmanr(selectivity.numpy(), drop.max(0).values.numpy()).statistic), 3)


def bootstrap_mean(values: Float[Tensor, "n"], *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean of `values` (e.g. one correlation per digit)."""
    return paired_bootstrap(values, torch.zeros_like(values), n_boot=n_boot, seed=seed)


def flip_rates(model: nn.Module, acts2: Float[Tensor, "n neuron"], y_acts: Int[Tensor, "n"], x_from: Float[Tensor, "m h w"],
               source: int, target: int, k: int, *, draws: int, seed: int) -> dict[str, float]:
    """Notebook 01's intervention on `model`'s relu2: the share of `x_from` called `target` when the k neurons with the
    largest (mu_target - mu_source) . (W_U[target] - W_U[source]) are set to their target-class mean ("chosen"),
    k random neurons likewise (mean of `draws`: "random neurons"), and before any change ("base")."""
    from glassbox import ablation, neurons
    means = neurons.class_means(acts2, y_acts, int(y_acts.max()) + 1)
    W_U = model.out.weight.detach()
    effect = (means[target] - means[source]) * (W_U[target] - W_U[source])
    gen = torch.Generator().manual_seed(seed)
    rand = [ablation.flip_rate(model, "relu2", x_from, target, torch.randperm(len(effect), generator=gen)[:k], means[target])
            for _ in range(draws)]
    base = (training.predict(model, x_from).argmax(-1) == target).float().mean().item()
    return {"chosen": round(ablation.flip_rate(model, "relu2", x_from, target, effect.topk(k).indices, means[target]), 4),
            "random neurons": round(sum(rand) / draws, 4), "base": round(base, 4)}


def selectivity_vs_need(model: nn.Module, x_train: Float[Tensor, "n h w"], x_test: Float[Tensor, "m h w"],
                        y_test: Int[Tensor, "m"]) -> dict[str, float]:
    """Per hidden layer: Spearman correlation, over neurons firing on >= 1% of test digits, of class selectivity
    (Morcos et al. 2018) with the largest class-accuracy drop when the neuron alone is mean-ablated."""
    from glassbox import ablation, neurons
    out = {}
    for name in model.hidden_names:
        mean = neurons.get_activations(model, name, x_train).mean(0)
        acts = neurons.get_activations(model, name, x_test)
        live = (acts > 0).float().mean(0) >= 0.01
        drop = ablation.class_accuracy_drop(model, name, x_test, y_test, mean)
        out[name] = selectivity_need_correlation(neurons.class_selectivity(acts, y_test, 10)[live], drop[:, live])
    return out


def seed_run(model: nn.Module, random_model: nn.Module, data: "MNIST", *, subset_seed: int, n_probe_train: int,
             n_probe_test: int, C: float, Cs: tuple[float, ...], flip: tuple[int, int], k: int, draws: int,
             n_acts: int, n_ablation: int, twins: tuple[nn.Module, ...] = (), conditional_C: dict | None = None) -> dict:
    """Notebook 01's cheap measurements on one trained model and its random-init twin: loops within digits (probe
    subsets drawn with `subset_seed`), thickness and slant probes per layer, the 3 -> 8 intervention (chosen on
    either network the same way) and selectivity vs need; with `twins` (further random-init twins), each concept's relu2
    probe on `random_model` and on every twin ("twin_concepts", one accuracy per twin, `random_model` first); the conditional
    loop test (label alone, and beside relu2, the random-init relu2 and the pixels), its C from `conditional_C` when given."""
    from glassbox import hooks, probes
    gen = torch.Generator().manual_seed(subset_seed)
    i_tr, i_te = torch.randperm(60_000, generator=gen)[:n_probe_train], torch.randperm(10_000, generator=gen)[:n_probe_test]
    x_tr, x_te = data.x_train[i_tr], data.x_test[i_te]
    l_tr, l_te = binary_labels(x_tr), binary_labels(x_te, reference=x_tr)
    layers = ["relu1", "relu2", "out"]
    def feats(x):
        return ({"pixels": x.flatten(1)} | probes.get_features(model, layers, x)
                | {f"random {n}": v for n, v in probes.get_features(random_model, layers, x).items()})
    f_tr, f_te = feats(x_tr), feats(x_te)
    out = {"test_accuracy": round(training.accuracy(model, data.x_test, data.y_test), 4)}
    out["concepts"] = {c: {n: round(probes.fit_probe(f_tr[n], l_tr[c], f_te[n], l_te[c], C=C).accuracy, 4) for n in f_tr}
                       for c in ("thick_stroke", "leans_right")}
    twin_tr, twin_te = [f_tr["random relu2"]], [f_te["random relu2"]]
    for t in twins:
        twin_tr.append(probes.get_features(t, ["relu2"], x_tr)["relu2"])
        twin_te.append(probes.get_features(t, ["relu2"], x_te)["relu2"])
    out["twin_concepts"] = {c: {"relu2": [round(probes.fit_probe(a, l_tr[c], b, l_te[c], C=C).accuracy, 4) for a, b in zip(twin_tr, twin_te)]}
                            for c in out["concepts"]}
    keep = ("relu2", "random relu2", "pixels")
    out["loop"] = loop_within_digit({n: f_tr[n] for n in keep}, {n: f_te[n] for n in keep}, l_tr["has_loop"], l_te["has_loop"],
                                    data.y_train[i_tr], data.y_test[i_te], Cs=Cs, seed=subset_seed,
                                    comparisons={"relu2": ("relu2", ("pixels", "random relu2")), "random relu2": ("random relu2", ("pixels",))})
    out["conditional"] = conditional_loop_test(f_tr, f_te, l_tr["has_loop"], l_te["has_loop"], data.y_train[i_tr], data.y_test[i_te],
                                               names=keep, Cs=Cs, seed=subset_seed, fixed_C=conditional_C)
    source, target = flip
    x_from = data.x_test[data.y_test == source]
    out["flip"], out["selectivity_vs_need"] = {}, {}
    for tag, m in (("trained", model), ("random", random_model)):
        with hooks.capture(m, ["relu2"]) as acts:
            m(data.x_train[:n_acts])
        out["flip"][tag] = flip_rates(m, acts["relu2"], data.y_train[:n_acts], x_from, source, target, k, draws=draws, seed=subset_seed)
        out["selectivity_vs_need"][tag] = selectivity_vs_need(m, data.x_train[:n_acts], data.x_test[:n_ablation], data.y_test[:n_ablation])
    return out


def t_interval(values: list[float], *, tests: int = 1, level: float = 0.95, sides: int = 2) -> dict:
    """Mean of `values` (one per independent run, e.g. per seed) and its t interval over them, Bonferroni-corrected for
    `tests` intervals read together: two-sided at level 1 - (1 - level) / tests, or with `sides=1` each end a one-sided
    bound at that level (the lower end answers "above 0?", the upper end "below 0?", each a question of its own)."""
    from scipy.stats import t
    n = len(values)
    if n < 2 or tests < 1 or sides not in (1, 2):
        raise ValueError(f"need at least 2 values, tests >= 1 and sides 1 or 2, got {n} values, tests={tests}, sides={sides}")
    v = torch.tensor(values, dtype=torch.float64)
    half = float(t.ppf(1 - (1 - level) / tests / sides, n - 1)) * v.std().item() / n ** 0.5
    return {"mean": round(v.mean().item(), 4), "interval": [round(v.mean().item() - half, 4), round(v.mean().item() + half, 4)],
            "runs": n, "tests": tests, "sides": sides}


def loop_summary(loops: dict) -> dict:
    """Over runs {seed: loop_within_digit(...)}: per digit relu2's gap over its best control in each run and its range; per
    tested digit the mean gap over runs with one-sided t bounds over runs, Bonferroni-corrected over the tested digits
    ("pooled over seeds"). The question is one-sided (is relu2 ahead?), so a digit is "reliably above" when its lower
    bound is above 0 and, asked the other way, "reliably below" when its upper bound is below 0; the same rules for the
    control comparison (random-init relu2 against the pixels). A digit is untested when in some run relu2 and its best
    control answer alike on every one of its test images (a zero-width paired interval: no image tells them apart).
    Also the range of the digits' test-image counts and of the standard errors their paired-bootstrap intervals imply."""
    digits = sorted(set.intersection(*(set(v["digits"]) for v in loops.values())))
    width = lambda v, d: v["digits"][d]["gaps"]["relu2"]["interval"][1] - v["digits"][d]["gaps"]["relu2"]["interval"][0]
    tested = [d for d in digits if all(width(v, d) > 0 for v in loops.values())]
    gaps = {label: {d: [v["digits"][d]["gaps"][label]["gap"] for v in loops.values()] for d in digits} for label in ("relu2", "random relu2")}
    pooled = {label: {d: t_interval(gaps[label][d], tests=len(tested), sides=1) | {"per run": gaps[label][d]} for d in tested} for label in gaps}
    above = lambda label: [d for d in tested if pooled[label][d]["interval"][0] > 0]
    below = lambda label: [d for d in tested if pooled[label][d]["interval"][1] < 0]
    se = [width(v, d) / 3.92 for v in loops.values() for d in tested]
    return {"gap > 0 in every run": [d for d in digits if min(gaps["relu2"][d]) > 0],
            "relu2 gap range": {d: [min(g), max(g)] for d, g in gaps["relu2"].items()},
            "tested": tested, "untested": [d for d in digits if d not in tested],
            "pooled over seeds": pooled,
            "largest pooled gap": max(tested, key=lambda d: pooled["relu2"][d]["mean"]) if tested else None,
            "reliably above": above("relu2"), "reliably below": below("relu2"),
            "random relu2 reliably above pixels": above("random relu2"), "pixels reliably above random relu2": below("random relu2"),
            "digit n range": _range([v["digits"][d]["n"] for v in loops.values() for d in digits]),
            "gap se range": _range(se) if se else None,
            "pooled relu2 minus pixels": _range([v["pooled"]["relu2"] - v["pooled"]["pixels"] for v in loops.values()]),
            "pooled random relu2 minus pixels": _range([v["pooled"]["random relu2"] - v["pooled"]["pixels"] for v in loops.values()]),
            "pooled": {s: v["pooled"] for s, v in loops.items()}}


def loop_table(loops: dict, digits: list[int]) -> str:
    """Per digit and run: relu2's accuracy minus its best control's, in points, with its 95% interval."""
    lines = []
    for d in digits:
        cells = [f"{100 * g['gap']:+5.1f} [{100 * g['interval'][0]:+5.1f}, {100 * g['interval'][1]:+5.1f}] vs {g['best control']:12}"
                 for g in (v["digits"][d]["gaps"]["relu2"] for v in loops.values())]
        lines.append(f"{d}s: " + " | ".join(cells))
    return "\n".join(lines)


def digit_list(digits: list[int], ranges: dict | None = None) -> str:
    """[2, 4, 9] -> "the 2s, 4s and 9s"; [] -> "no digit"; with `ranges` {digit: [lo, hi]}: "the 9s (+2.2 to +6.9 points)"."""
    names = [f"{d}s" + (f" ({points(*ranges[d])})" if ranges else "") for d in digits]
    return "no digit" if not names else "the " + _and_list(names)


def bound_list(digits: list[int], pooled: dict, end: int) -> str:
    """Digits with their mean and one bound of `pooled` {digit: t_interval(...)} (end 0: lower, 1: upper):
    "the 8s (mean -1.2 points, upper bound -0.5 points)"; [] -> "no digit"."""
    names = [f"{d}s (mean {points(pooled[d]['mean'])}, {('lower', 'upper')[end]} bound {points(pooled[d]['interval'][end])})" for d in digits]
    return "no digit" if not names else "the " + _and_list(names)


def seeds_text(values: dict[int, float]) -> str:
    """{3: 0.036, 4: 0.038} -> "+3.6 and +3.8 points (seeds 3 and 4)"; {} -> "not measured (no such seed in this run)"."""
    if not values:
        return "not measured (no such seed in this run)"
    return f"{_and_list([f'{100 * v:+.1f}' for v in values.values()])} points (seed{'s' if len(values) > 1 else ''} {_and_list([str(s) for s in values])})"


def _and_list(items: list[str]) -> str:
    """["a"] -> "a"; ["a", "b", "c"] -> "a, b and c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _range(values: list[float]) -> list[float]:
    return [round(min(values), 4), round(max(values), 4)]


def conditional_summary(accuracies: list[dict]) -> dict:
    """Over runs' `conditional_loop_test` accuracies: [min, max] of each feature set's gain over the label alone, and of
    relu2's margin over its best control (the label beside the random-init relu2 or beside the pixels); and, an observation
    rather than a control, the random-init relu2 minus the pixels (beside the label): its range, on how many runs it is ahead,
    its 95% t interval over the runs and the words that interval allows (`twin_verdict`: "within noise of" when it spans 0)."""
    sets = [k for k in accuracies[0] if k != "digit label"]
    best = lambda a: max(a["digit label + random relu2"], a["digit label + pixels"])
    random_minus_pixels = [round(a["digit label + random relu2"] - a["digit label + pixels"], 4) for a in accuracies]
    interval = t_interval(random_minus_pixels)
    return {"gain over label": {k: _range([round(a[k] - a["digit label"], 4) for a in accuracies]) for k in sets},
            "relu2 minus best control": _range([round(a["digit label + relu2"] - best(a), 4) for a in accuracies]),
            "random relu2 minus pixels": _range(random_minus_pixels),
            "random relu2 ahead of pixels": sum(g > 0 for g in random_minus_pixels),
            "random relu2 minus pixels interval": interval, "random relu2 vs pixels": twin_verdict(interval)}


def seeds_summary(runs: dict) -> dict:
    """Over runs {seed: seed_run(...)}: [min, max] of each number (and of the intervention's lift, chosen minus base, per
    network: "flip_lift"), trained minus random-init per concept and layer (one
    twin per run), at relu2 trained minus the mean of each run's twins (per run, and its mean with a 95% t interval over
    runs: "trained_minus_twins"), and whether each concept's probe accuracy falls with depth (relu1 > relu2 > out) in
    every run."""
    r = list(runs.values())
    concepts = list(r[0]["concepts"])
    layers = ("relu1", "relu2", "out")
    gaps = {c: {n: [round(x["concepts"][c][n] - x["concepts"][c][f"random {n}"], 4) for x in r] for n in layers} for c in concepts}
    twin_gaps = {c: [round(x["concepts"][c]["relu2"] - sum(t := x["twin_concepts"][c]["relu2"]) / len(t), 4) for x in r] for c in concepts}
    return {
        "test_accuracy": _range([x["test_accuracy"] for x in r]),
        "flip": {f"{tag} {k}": _range([x["flip"][tag][k] for x in r]) for tag in ("trained", "random") for k in ("chosen", "random neurons", "base")},
        "conditional": conditional_summary([x["conditional"]["accuracy"] for x in r]),
        "flip_lift": {tag: _range([round(x["flip"][tag]["chosen"] - x["flip"][tag]["base"], 4) for x in r]) for tag in ("trained", "random")},
        "selectivity_vs_need": {f"{tag} {n}": _range([x["selectivity_vs_need"][tag][n] for x in r])
                                for tag in ("trained", "random") for n in r[0]["selectivity_vs_need"][tag]},
        "concepts": {c: {f: _range([x["concepts"][c][f] for x in r]) for f in r[0]["concepts"][c]} for c in concepts},
        "trained_minus_random": {c: {n: _range(g) for n, g in gaps[c].items()} for c in concepts},
        "trained_minus_twins": {c: {"relu2": t_interval(g) | {"per run": g, "twins": len(r[0]["twin_concepts"][c]["relu2"])}}
                                for c, g in twin_gaps.items()},
        "falls_with_depth": {c: {tag: all(x["concepts"][c][f"{p}relu1"] > x["concepts"][c][f"{p}relu2"] > x["concepts"][c][f"{p}out"] for x in r)
                                 for tag, p in (("trained", ""), ("random", "random "))} for c in concepts},
    }


def twin_verdict(gap: dict) -> str:
    """The prose's words for a `t_interval` of trained minus random-twin accuracy: within noise when it spans 0."""
    lo, hi = gap["interval"]
    return "within noise of" if lo <= 0 <= hi else "above" if lo > 0 else "below"


def points(lo: float, hi: float | None = None, *, signed: bool = True) -> str:
    """A difference of shares in percentage points: (0.593, 0.9633) -> "+59.3 to +96.3 points"; 0.2782 -> "+27.8 points";
    `signed=False` for a cost that the sentence already names ("costs 4.4 points"): 0.044 -> "4.4 points"."""
    show = (lambda x: f"{100 * x:+.1f}") if signed else (lambda x: f"{100 * x:.1f}")
    return f"{show(lo)} points" if hi is None else f"{show(lo)} to {show(hi)} points"
