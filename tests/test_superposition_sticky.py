"""sticky_share_uniform: the baseline of the sticky-fraction count, matched to the features' own range."""
import math

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


def test_sticky_excess_counts_each_fraction_against_a_uniform_spread_of_as_many_features():
    D = torch.tensor([0.2, 0.5, 0.5, 0.51, 0.9, 1.0])
    out = sp.sticky_excess(D)
    assert out["1/2"]["observed"] == 3 and out["1"]["observed"] == 1 and out["3/4"]["observed"] == 0
    # [0.2, 1.0] with 6 features: the 1/2 window (0.06 wide) expects 6 * 0.06 / 0.8 = 0.45
    assert out["1/2"]["uniform"] == pytest.approx(0.45, abs=0.01)
    assert sum(v["observed"] for v in out.values()) == sum(sp.count_sticky(D).values())


def test_sticky_excess_of_a_uniform_sample_is_near_its_baseline():
    D = torch.rand(20_000, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.2
    out = sp.sticky_excess(D)
    assert out["1/2"]["observed"] == pytest.approx(out["1/2"]["uniform"], rel=0.1), "a uniform spread has no excess"


def test_boundary_cells_mark_both_sides_of_a_change():
    phase = torch.tensor([[0, 0, 2], [0, 0, 2], [1, 1, 2]])
    edge = sp.boundary_cells(phase)
    assert edge.tolist() == [[False, True, True], [True, True, True], [True, True, True]]
    assert not sp.boundary_cells(torch.zeros(3, 3, dtype=torch.long)).any(), "a constant map has no boundary"
    with pytest.raises(ValueError, match="2-d"):
        sp.boundary_cells(torch.zeros(4, dtype=torch.long))


def test_simple_phase_rule_splits_dense_cells_by_importance():
    r, p = torch.tensor([0.5, 2.0, 0.5, 2.0]), torch.tensor([1.0, 1.0, 0.1, 0.1])
    assert sp.simple_phase_rule(r, p).tolist() == [0, 1, 2, 2]


def test_uniform_count_null_is_the_binomial_of_the_window_share():
    # [0.2, 1.0], 200 features: the 1/2 window (0.47..0.53) holds 0.06 / 0.8 of the range, so each draw's count
    # is Binomial(200, 0.075): mean 15, sd about 3.7
    D = torch.cat([torch.tensor([0.2, 1.0]), torch.full((198,), 0.5)])
    null = sp.uniform_count_null(D, "1/2", n_draws=4_000, seed=0)
    assert null.shape == (4_000,) and null.dtype == torch.int64
    assert null.float().mean().item() == pytest.approx(15, abs=0.3) and null.float().std().item() == pytest.approx(3.73, abs=0.2)
    assert torch.equal(null, sp.uniform_count_null(D, "1/2", n_draws=4_000, seed=0)), "seeded: the same draws twice"
    assert sp.count_sticky(D)["1/2"] > null.max(), "198 features piled on 1/2 lie far above every uniform draw"


def test_uniform_count_null_counts_like_count_sticky():
    D = torch.rand(500, generator=torch.Generator().manual_seed(1)) * 0.7 + 0.3
    null = sp.uniform_count_null(D, "2/5", n_draws=3, seed=2)
    gen = torch.Generator().manual_seed(2)
    lo, hi = D.min().item(), D.max().item()
    again = [sp.count_sticky(lo + (hi - lo) * torch.rand(500, generator=gen))["2/5"] for _ in range(3)]
    assert null.tolist() == again, "each draw must be counted exactly as count_sticky counts it (nearest fraction wins: 2/5 and 3/8 overlap)"
    with pytest.raises(ValueError, match="label"):
        sp.uniform_count_null(D, "1/3")
    with pytest.raises(ValueError, match="range"):
        sp.uniform_count_null(torch.tensor([0.5, 0.5]))


def test_antipodal_pairs_count_represented_features_with_an_opposite_partner():
    W = torch.tensor([[1.0, -1.0, 0.0, 0.0, 0.1], [0.0, 0.0, 1.0, 0.7, 0.0]])  # a pair, two at 35 deg, one too short
    assert sp.antipodal_pairs(W) == {"represented": 4, "with_partner": 2}
    assert sp.antipodal_pairs(torch.eye(3)) == {"represented": 3, "with_partner": 0}, "orthogonal features have no partner"


def test_plateau_at_finds_the_longest_still_run_near_the_level():
    d = torch.tensor([0.70, 0.60, 0.52, 0.495, 0.49, 0.492, 0.489, 0.46, 0.40, 0.401, 0.40])
    assert sp.plateau_at(d, 0.5) == (3, 4), "0.52 is too far from 1/2; 0.46 too"
    assert sp.plateau_at(d, 0.4, near=0.015) == (8, 3), "the run of three at 0.4"
    assert sp.plateau_at(d, 0.5, tol=0.004) == (4, 3), "0.495 .. 0.489 moves 0.006: only 0.49, 0.492, 0.489 stay within 0.004"
    assert sp.plateau_at(d, 0.25) == (-1, 0), "no value near the level"


def test_smooth_curves_pass_the_end_points_and_have_no_plateau():
    x = torch.logspace(math.log10(1.8), math.log10(5.0), 16)
    curves = sp.smooth_curves(x, 0.69, 0.37)
    assert set(curves) == {"linear in log x", "power law", "exponential", "logistic in log x"}
    for name, c in curves.items():
        assert c[0].item() == pytest.approx(0.69, abs=1e-5) and c[-1].item() == pytest.approx(0.37, abs=1e-5), name
        assert (c.diff() < 0).all(), f"{name} must fall all the way"
        assert sp.plateau_at(c, 0.5)[1] <= 1, f"{name} crosses 1/2 without holding still"
    step = torch.tensor([0.69, 0.6, 0.55] + [0.495, 0.492, 0.49, 0.49] + [0.45, 0.42, 0.4, 0.39, 0.385, 0.38, 0.377, 0.374, 0.37])
    assert sp.plateau_at(step, 0.5)[1] == 4, "a curve with a plateau: the measure finds it"


def test_pair_arrangement_finds_orthogonal_pairs_and_random_unit_vectors_have_none():
    W = torch.cat([torch.eye(3), -torch.eye(3), torch.zeros(3, 2)], 1)  # 3 orthogonal antipodal pairs, two dropped
    a = sp.pair_arrangement(W)
    assert (a["represented"], a["with_partner"], a["pairs"], a["worst_partner_cosine"], a["pair_axes_max_cos"]) == (6, 6, 3, -1.0, 0.0)
    assert a["D_i_mean"] == pytest.approx(0.5, abs=1e-3) and a["D_i_range"] == [0.5, 0.5]
    R = sp.random_unit_arrangement(10, 100, 20, seed=0)
    assert sp.dimensions_per_feature(R[None]).item() == pytest.approx(0.5, abs=1e-6), "20 unit vectors in 10 dims: D* = 1/2"
    r = sp.pair_arrangement(R)
    assert r["represented"] == 20 and r["with_partner"] == 0 and r["pairs"] == 0 and r["pair_axes_max_cos"] is None
    assert r["D_i_mean"] < 0.45, "random unit vectors share their dimensions unevenly"


def test_still_run_elsewhere_finds_runs_away_from_the_level_only():
    d = torch.tensor([0.70, 0.60, 0.52, 0.495, 0.49, 0.492, 0.489, 0.46, 0.40, 0.401, 0.40])
    assert sp.still_run_elsewhere(d, 0.5) == 3, "the run of three at 0.4, not the four at 1/2"
    assert sp.still_run_elsewhere(d, 0.4) == 4, "the four at 1/2 is elsewhere from 0.4"
    x = torch.logspace(math.log10(1.8), math.log10(5.0), 16)
    assert sp.still_run_elsewhere(sp.smooth_curves(x, 0.69, 0.37)["linear in log x"], 0.5) <= 1
