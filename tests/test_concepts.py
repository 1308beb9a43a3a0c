"""Unit tests of glassbox.concepts on drawn shapes whose answers are known."""
import pytest
import torch

from glassbox import concepts


def canvas() -> torch.Tensor:
    return torch.zeros(28, 28)


def ring(img, top, left, size, width=2):
    img[top:top + size, left:left + size] = 1.0
    img[top + width:top + size - width, left + width:left + size - width] = 0.0
    return img


def test_count_holes_counts_closed_loops():
    stroke = canvas()
    stroke[4:24, 13:15] = 1.0  # a "1"
    zero = ring(canvas(), 4, 8, 14)
    eight = ring(ring(canvas(), 2, 8, 11), 12, 8, 11)  # two rings sharing a stroke
    open_ring = ring(canvas(), 4, 8, 14)
    open_ring[4:6, 12:15] = 0.0  # a gap in the top stroke
    got = concepts.count_holes(torch.stack([stroke, zero, eight, open_ring]))
    assert got.tolist() == [0, 1, 2, 0], "holes are background regions that do not reach the border"
    with pytest.raises(ValueError, match="reshape"):
        concepts.count_holes(torch.zeros(2, 784))


def test_stroke_thickness_measures_the_width_of_a_bar():
    thin, thick = canvas(), canvas()
    thin[4:24, 13:15] = 1.0
    thick[4:24, 11:17] = 1.0
    got = concepts.stroke_thickness(torch.stack([thin, thick]))
    assert got[0] == pytest.approx(2 * 20 / 22, rel=1e-5) and got[1] == pytest.approx(6 * 20 / 26, rel=1e-5)
    assert concepts.stroke_thickness(canvas()[None]).item() == 0.0, "an empty image has no stroke"


def test_slant_sign_follows_the_lean():
    upright, right, left = canvas(), canvas(), canvas()
    for r in range(4, 24):
        upright[r, 13:15] = 1.0
        shift = (24 - r) // 3  # top rows further right
        right[r, 8 + shift:10 + shift] = 1.0
        left[r, 18 - shift:20 - shift] = 1.0
    s = concepts.slant(torch.stack([upright, right, left]))
    assert abs(s[0]) < 1e-6, "an upright bar has slant 0"
    assert s[1] == pytest.approx(1 / 3, abs=0.05) and s[2] == pytest.approx(-1 / 3, abs=0.05), \
        "slant is the column shift per row going up: 1/3 for this bar (check the sign of the row axis)"


def test_binary_labels_threshold_at_the_reference_median():
    thin, thick, ring_img = canvas(), canvas(), ring(canvas(), 4, 8, 14)
    thin[4:24, 13:15] = 1.0
    thick[4:24, 11:17] = 1.0
    images = torch.stack([thin, thick, ring_img])
    labels = concepts.binary_labels(images)
    assert labels["has_loop"].tolist() == [0, 0, 1]
    assert labels["thick_stroke"].tolist() == [0, 1, 0], "above the median thickness (the ring's) is thick"
    ref = torch.stack([thick, thick, thick])
    assert concepts.binary_labels(images, ref)["thick_stroke"].tolist() == [0, 0, 0], \
        "thresholds must come from the reference images when given"
    assert set(labels) == {"has_loop", "thick_stroke", "leans_right"}
