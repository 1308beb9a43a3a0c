"""sticky_share_uniform: the baseline of the sticky-fraction count, matched to the features' own range."""
import pytest
import torch

from glassbox.studies import superposition as sp


def test_uniform_baseline_counts_the_windows_inside_the_range():
    # [0.45, 0.55] holds only the 1/2 window (0.47..0.53): 0.06 of 0.10
    assert sp.sticky_share_uniform(torch.tensor([0.45, 0.5, 0.55])) == pytest.approx(0.6, abs=1e-3)
    # [0.1, 0.3] holds no window at all
    assert sp.sticky_share_uniform(torch.tensor([0.1, 0.3])) == pytest.approx(0.0, abs=1e-6)


def test_uniform_baseline_uses_min_and_max_not_the_values():
    a = sp.sticky_share_uniform(torch.tensor([0.2, 0.5, 0.5, 0.5, 1.0]))
    b = sp.sticky_share_uniform(torch.tensor([0.2, 0.9, 1.0]))
    assert a == pytest.approx(b), "only the range counts, not where the features sit"
    # [0.2, 1.0]: windows 1 (0.97..1.0: 0.03), 3/4, 2/3, 1/2 (0.06 each), 2/5 and 3/8 merged (0.345..0.43: 0.085)
    assert a == pytest.approx((0.03 + 3 * 0.06 + 0.085) / 0.8, abs=2e-3)


def test_uniform_baseline_refuses_a_single_point():
    with pytest.raises(ValueError, match="range"):
        sp.sticky_share_uniform(torch.tensor([0.5, 0.5]))
