"""within_class_probes / pooled: probes fitted inside each class, against that class's majority."""
import pytest
import torch

from glassbox import probes


def make(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    cls = torch.arange(n) % 3  # classes 0, 1, 2
    x = torch.randn(n, 4, generator=g)
    label = torch.where(cls == 0, (x[:, 0] > 0).long(),  # class 0: label readable from feature 0
                        torch.where(cls == 1, torch.zeros(n, dtype=torch.long),  # class 1: constant
                                    (torch.rand(n, generator=g) < 0.8).long()))  # class 2: noise, majority 1
    return x, label, cls


def test_reads_the_label_inside_a_class_and_skips_constant_classes():
    x, y, c = make(seed=0)
    xt, yt, ct = make(seed=1)
    out = probes.within_class_probes(x, y, c, xt, yt, ct)
    assert set(out) == {0, 2}, "class 1 has one label value only: no probe can be fitted there"
    assert out[0]["accuracy"] > 0.9 > out[0]["majority"] + 0.2, "class 0's label is linear in feature 0"
    assert out[2]["accuracy"] == pytest.approx(out[2]["majority"], abs=0.06), "class 2's label is noise"
    assert out[0]["n"] == int((ct == 0).sum()), "n counts the test examples of the class"


def test_pooled_weights_by_test_count():
    per = {0: {"accuracy": 1.0, "majority": 0.5, "n": 30}, 5: {"accuracy": 0.5, "majority": 0.5, "n": 10}}
    assert probes.pooled(per) == pytest.approx(0.875)
    assert probes.pooled(per, "majority") == pytest.approx(0.5)
