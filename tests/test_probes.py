"""Unit tests of glassbox.probes: known-answer problems and a model glassbox did not build (tiny_cnn)."""
import pytest
import torch

from glassbox import probes


def test_probe_finds_a_linear_label_and_not_a_random_one():
    torch.manual_seed(0)
    f = torch.randn(600, 20)
    linear = (f[:, 3] - f[:, 7] > 0).long()
    noise = torch.randint(0, 2, (600,))
    good = probes.fit_probe(f[:400], linear[:400], f[400:], linear[400:])
    bad = probes.fit_probe(f[:400], noise[:400], f[400:], noise[400:])
    assert good.accuracy > 0.95, f"a linearly separable label must be probed near perfectly, got {good.accuracy:.2f}"
    assert abs(bad.accuracy - 0.5) < 0.12, f"a random label must stay near chance, got {bad.accuracy:.2f} (test data leaked?)"
    assert 0.4 < good.chance < 0.6


def test_probe_accuracies_on_a_model_glassbox_did_not_build(tiny_cnn):
    torch.manual_seed(0)
    scale = torch.rand(300, 1)
    x = torch.rand(300, 784) * scale
    feats = probes.get_features(tiny_cnn, ["features.1", "head.2"], x)
    assert feats["features.1"].shape == (300, 4 * 12 * 12) and feats["head.2"].shape == (300, 16)
    label = {"bright": (scale[:, 0] > 0.5).long()}
    tr, te = slice(0, 200), slice(200, 300)
    acc = probes.probe_accuracies({k: v[tr] for k, v in feats.items()}, {k: v[te] for k, v in feats.items()},
                                  {k: v[tr] for k, v in label.items()}, {k: v[te] for k, v in label.items()})
    assert set(acc) == {"bright"} and set(acc["bright"]) == {"features.1", "head.2"}
    assert acc["bright"]["features.1"] > 0.8, "image brightness should be easy to read from the first conv layer"


def test_probe_errors_say_what_to_pass():
    f = torch.randn(10, 3)
    with pytest.raises(ValueError, match="flatten"):
        probes.fit_probe(f[:, :, None], torch.zeros(10), f, torch.zeros(10))
    with pytest.raises(ValueError, match="one class only"):
        probes.fit_probe(f, torch.zeros(10), f, torch.zeros(10))


def test_chance_is_the_training_majority_scored_on_the_test_split():
    f_train = torch.tensor([[0.0], [0.1], [0.2], [1.0]])
    y_train = torch.tensor([0, 0, 0, 1])
    f_test = torch.tensor([[0.05], [0.9], [1.1]])
    y_test = torch.tensor([0, 1, 1])
    probe = probes.fit_probe(f_train, y_train, f_test, y_test, C=100.0)
    assert probe.chance == pytest.approx(1 / 3), "chance: always answer the majority TRAINING label (0), scored on test"
    assert probe.accuracy == 1.0, "a 1-d threshold problem must be solved exactly"


def test_C_and_max_iter_reach_the_logistic_regression():
    torch.manual_seed(0)
    f = torch.randn(200, 5)
    y = (f[:, 0] > 0).long()
    strong = probes.fit_probe(f, y, f, y, C=1e-4, max_iter=7)
    weak = probes.fit_probe(f, y, f, y, C=10.0)
    lr_strong, lr_weak = strong.model[-1], weak.model[-1]
    assert (lr_strong.C, lr_strong.max_iter) == (1e-4, 7) and (lr_weak.C, lr_weak.max_iter) == (10.0, 300)
    assert abs(lr_strong.coef_).sum() < 0.1 * abs(lr_weak.coef_).sum(), "a small C must shrink the probe's weights"
    acc = probes.probe_accuracies({"f": f}, {"f": f}, {"y": y}, {"y": y}, C=1e-4, max_iter=7)
    assert acc == {"y": {"f": strong.accuracy}}, "probe_accuracies must pass its keyword arguments to fit_probe"
