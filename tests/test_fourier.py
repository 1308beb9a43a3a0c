"""glassbox.fourier: the basis is orthonormal, labels line up with rows, a known signal's frequency is found."""
import math

import pytest
import torch

from glassbox import fourier


@pytest.mark.parametrize("p", [7, 8, 53])
def test_basis_is_orthonormal_and_complete(p):
    B = fourier.basis(p)
    assert B.shape == (p, p), "one basis function per row, p of them (constant, then cos/sin pairs)"
    assert torch.allclose(B @ B.T, torch.eye(p), atol=1e-5), "rows must be orthonormal: check the normalisation"
    assert len(fourier.names(p)) == p and len(fourier.row_frequency(p)) == p
    assert fourier.names(p)[:3] == ["const", "cos 1", "sin 1"]


def test_even_p_has_no_zero_sine():
    B = fourier.basis(8)
    assert fourier.names(8)[-1] == "cos 4", "for even p the Nyquist frequency has a cosine only"
    assert torch.allclose(B[-1].abs(), torch.full((8,), 8 ** -0.5)), "cos(pi x) alternates +-1/sqrt(8)"


def test_rows_are_the_named_functions():
    p, k = 11, 3
    x = torch.arange(p, dtype=torch.float64)
    row = fourier.names(p).index(f"sin {k}")
    expected = torch.sin(2 * math.pi * k * x / p)
    assert torch.allclose(fourier.basis(p)[row], (expected / expected.norm()).float(), atol=1e-6), \
        "the row labelled 'sin 3' must be sin(2 pi 3 x / p) on x = 0..p-1 (an off-by-one in x or k shifts it)"


def test_known_signal_frequency_is_recovered():
    p = 53
    x = torch.arange(p, dtype=torch.float64)
    W = torch.stack([torch.cos(2 * math.pi * 14 * x / p + 0.3), 2 * torch.sin(2 * math.pi * 5 * (x + 1) / p)], 1)
    norms = fourier.embedding_frequency_norms(W.float())
    assert norms.shape == (p // 2 + 1,)
    top = norms.argsort(descending=True)[:2].sort().values.tolist()
    assert top == [5, 14], f"expected frequencies 5 and 14 to dominate, got {top} (sort direction or index offset?)"
    assert norms[5] > norms[14], "the sine has twice the amplitude, so frequency 5 has the larger norm"
    assert torch.allclose(norms.pow(2).sum(), W.pow(2).sum().float(), rtol=1e-4), "Parseval: energy is kept"


def test_sum_directions_project_cos_of_a_plus_b_minus_c():
    p, k = 13, 4
    table = fourier.cos_logit_table(p, k)  # (p*p, p): cos(w k (a + b - c))
    assert torch.isclose(table[2 * p + 5, 7], torch.tensor(math.cos(2 * math.pi * k * (2 + 5 - 7) / p)), atol=1e-6), \
        "row a * p + b, column c: the grid is a-major"
    kept = fourier.project_sum_frequencies(table, p, [k])
    assert torch.allclose(kept, table, atol=1e-4), "cos(w(a+b-c)) lies entirely in frequency k of a + b"
    assert fourier.project_sum_frequencies(table, p, [k + 1]).abs().max() < 1e-4, "and not in frequency k + 1"
    with pytest.raises(ValueError):
        fourier.sum_directions(p, [0])


def test_gini():
    assert fourier.gini(torch.ones(10)) == pytest.approx(0.0, abs=1e-12)
    assert fourier.gini(torch.tensor([0.0, 0, 0, 5])) == pytest.approx(0.75), "one of n holding all: (n - 1) / n"
    assert fourier.gini(torch.tensor([1.0, 2, 3])) == fourier.gini(torch.tensor([3.0, 1, 2])), "order must not matter"
