"""Linear probes (scikit-learn): how well a linear read-out of a layer predicts a label.

    feats = probes.get_features(model, ["relu1", "relu2"], x)        # {"relu1": (batch, 128), ...}
    acc = probes.probe_accuracies(feats_train, feats_test, labels_train, labels_test)
    acc["digit"]["relu1"]                                             # test accuracy of that probe

A probe is standardisation + L2-regularised logistic regression, fitted on one split and scored
on another. High accuracy means the label is *linearly available* in the layer, not that the model
uses it; compare against baselines (raw pixels, the same model at random initialisation).
"""
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from glassbox import checks
from glassbox.neurons import get_activations


@dataclass
class Probe:
    """A fitted linear probe: its test accuracy, the majority-class rate (chance) and the scikit-learn pipeline."""

    accuracy: float  # accuracy on the test split
    chance: float  # accuracy of always answering the most common training label, on the test split
    model: Pipeline  # the fitted scaler + logistic regression


def get_features(model: nn.Module, layers: list[str], x: Tensor, batch_size: int = 4096) -> dict[str, Float[Tensor, "batch d"]]:
    """The flattened output of each named module of `model` for the inputs `x`."""
    return {name: get_activations(model, name, x, batch_size).flatten(1) for name in layers}


def fit_probe(features_train: Float[Tensor, "n_train d"], labels_train: Int[Tensor, "n_train"],
              features_test: Float[Tensor, "n_test d"], labels_test: Int[Tensor, "n_test"], *,
              C: float = 1.0, max_iter: int = 300) -> Probe:
    """Fit a logistic-regression probe on the train split; score it on the test split.

    Features of any floating dtype (bfloat16 included) are read as float64; labels are 1-D class indices."""
    for name, f, y in (("train", features_train, labels_train), ("test", features_test, labels_test)):
        f, y = _as_tensor(f), _as_tensor(y)
        if f.ndim != 2 or len(f) != len(y):
            raise ValueError(f"features_{name} must be (n, d) with one label each; got features {tuple(f.shape)} "
                             f"and {len(y)} labels (flatten activations with .flatten(1))")
        checks.tensor(f, f"features_{name}", floating=False)
        _check_labels(y, f"labels_{name}")
    xtr, ytr = _float64(features_train), np.asarray(labels_train)
    if len(np.unique(ytr)) < 2:
        raise ValueError(f"the training labels hold one class only ({np.unique(ytr).tolist()}): a probe needs two or more")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(xtr, ytr)
    yte = np.asarray(labels_test)
    accuracy = float((probe.predict(_float64(features_test)) == yte).mean())
    values, counts = np.unique(ytr, return_counts=True)
    return Probe(accuracy=accuracy, chance=float((yte == values[counts.argmax()]).mean()), model=probe)


def _as_tensor(value) -> Tensor:
    """A tensor view of a tensor or array-like, so that numpy features and labels are checked alike."""
    return value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))


def _check_labels(y: Tensor, name: str) -> None:
    """Refuse labels that are not class indices; bools and whole-number floats count as indices (sklearn reads them so)."""
    if y.dtype == torch.bool or (y.is_floating_point() and y.ndim == 1 and torch.isfinite(y).all() and (y == y.round()).all()):
        y = y.long()
    if y.is_floating_point() and y.ndim == 1:
        raise TypeError(f"{name} must be class indices, got {y.dtype} values such as {y[y != y.round()][:3].tolist() or y[:3].tolist()}; "
                        "a probe classifies: bin a continuous target first (e.g. (y > y.median()).long())")
    checks.labels(y, name, indices=False)


def _float64(features) -> np.ndarray:
    """Features as a float64 array; tensors of any floating dtype (bfloat16 has no numpy type) go through torch."""
    if isinstance(features, Tensor):
        return features.detach().cpu().to(torch.float64).numpy()
    return np.asarray(features, dtype=np.float64)


def probe_accuracies(features_train: dict[str, Tensor], features_test: dict[str, Tensor],
                     labels_train: dict[str, Tensor], labels_test: dict[str, Tensor],
                     **probe_kwargs) -> dict[str, dict[str, float]]:
    """Test accuracy of a probe for every (label, feature set): result[label][features]."""
    return {label: {name: fit_probe(features_train[name], labels_train[label], features_test[name],
                                    labels_test[label], **probe_kwargs).accuracy for name in features_train}
            for label in labels_train}


def within_class_probes(features_train: Float[Tensor, "n_train d"], labels_train: Int[Tensor, "n_train"],
                        classes_train: Int[Tensor, "n_train"], features_test: Float[Tensor, "n_test d"],
                        labels_test: Int[Tensor, "n_test"], classes_test: Int[Tensor, "n_test"],
                        **probe_kwargs) -> dict[int, dict[str, float]]:
    """A probe for `labels` fitted and scored inside each class (e.g. has_loop among the 2s only), next to
    that class's majority baseline: what the features say about the label beyond the class itself.
    Classes whose training labels take one value only are left out. Returns {class: {accuracy, majority, n}}."""
    checks.tensor(_as_tensor(features_train), "features_train", ndim=2, floating=False)
    checks.tensor(_as_tensor(features_test), "features_test", ndim=2, floating=False)
    out = {}
    for c in sorted(set(np.asarray(classes_train).tolist())):
        tr, te = classes_train == c, classes_test == c
        if len(np.unique(np.asarray(labels_train[tr]))) < 2 or not te.any():
            continue
        p = fit_probe(features_train[tr], labels_train[tr], features_test[te], labels_test[te], **probe_kwargs)
        out[int(c)] = {"accuracy": p.accuracy, "majority": p.chance, "n": int(te.sum())}
    if not out:
        raise ValueError("no class has both label values among its training examples and examples in the test split, "
                         "so there is nothing to probe within a class; use more examples or a label that varies")
    return out


def pooled(per_class: dict[int, dict[str, float]], key: str = "accuracy") -> float:
    """The test-set-weighted mean of `key` over the classes of `within_class_probes`."""
    n = sum(v["n"] for v in per_class.values())
    if not n:
        raise ValueError(f"per_class holds no test examples ({per_class!r}); pass what within_class_probes returned")
    return sum(v[key] * v["n"] for v in per_class.values()) / n
