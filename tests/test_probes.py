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
    assert all(0 <= a <= 1 for a in acc["bright"].values())
    assert acc["bright"]["features.1"] > 0.8, "image brightness should be easy to read from the first conv layer"


def test_probe_errors_say_what_to_pass():
    f = torch.randn(10, 3)
    with pytest.raises(ValueError, match="flatten"):
        probes.fit_probe(f[:, :, None], torch.zeros(10), f, torch.zeros(10))
    with pytest.raises(ValueError, match="one class only"):
        probes.fit_probe(f, torch.zeros(10), f, torch.zeros(10))
