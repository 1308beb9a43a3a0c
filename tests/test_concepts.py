"""Unit tests of glassbox.studies.mnist_mlp on drawn shapes whose answers are known."""
import copy

import pytest
import torch

from glassbox.studies import mnist_mlp


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
    got = mnist_mlp.count_holes(torch.stack([stroke, zero, eight, open_ring]))
    assert got.tolist() == [0, 1, 2, 0], "holes are background regions that do not reach the border"
    with pytest.raises(ValueError, match="reshape"):
        mnist_mlp.count_holes(torch.zeros(2, 784))


def test_stroke_thickness_measures_the_width_of_a_bar():
    thin, thick = canvas(), canvas()
    thin[4:24, 13:15] = 1.0
    thick[4:24, 11:17] = 1.0
    got = mnist_mlp.stroke_thickness(torch.stack([thin, thick]))
    assert got[0] == pytest.approx(2 * 20 / 22, rel=1e-5) and got[1] == pytest.approx(6 * 20 / 26, rel=1e-5)
    assert mnist_mlp.stroke_thickness(canvas()[None]).item() == 0.0, "an empty image has no stroke"


def test_slant_sign_follows_the_lean():
    upright, right, left = canvas(), canvas(), canvas()
    for r in range(4, 24):
        upright[r, 13:15] = 1.0
        shift = (24 - r) // 3  # top rows further right
        right[r, 8 + shift:10 + shift] = 1.0
        left[r, 18 - shift:20 - shift] = 1.0
    s = mnist_mlp.slant(torch.stack([upright, right, left]))
    assert abs(s[0]) < 1e-6, "an upright bar has slant 0"
    assert s[1] == pytest.approx(1 / 3, abs=0.05) and s[2] == pytest.approx(-1 / 3, abs=0.05), \
        "slant is the column shift per row going up: 1/3 for this bar (check the sign of the row axis)"


def test_binary_labels_threshold_at_the_reference_median():
    thin, thick, ring_img = canvas(), canvas(), ring(canvas(), 4, 8, 14)
    thin[4:24, 13:15] = 1.0
    thick[4:24, 11:17] = 1.0
    images = torch.stack([thin, thick, ring_img])
    labels = mnist_mlp.binary_labels(images)
    assert labels["has_loop"].tolist() == [0, 0, 1]
    assert labels["thick_stroke"].tolist() == [0, 1, 0], "above the median thickness (the ring's) is thick"
    ref = torch.stack([thick, thick, thick])
    assert mnist_mlp.binary_labels(images, ref)["thick_stroke"].tolist() == [0, 0, 0], \
        "thresholds must come from the reference images when given"
    assert set(labels) == {"has_loop", "thick_stroke", "leans_right"}


def test_a_notch_open_to_any_border_is_not_a_hole():
    notch = canvas()
    notch[1, 5:11] = 1.0  # a bar one row below the top edge
    notch[0, 4] = notch[0, 11] = 1.0  # walls in the top row: background at row 0, columns 5..10, is cut off
    images = torch.stack([torch.rot90(notch, k) for k in range(4)])  # open to the top, left, bottom, right
    assert mnist_mlp.count_holes(images).tolist() == [0, 0, 0, 0], "a region that touches any border row/column is no hole"


def test_a_frame_around_the_whole_image_encloses_one_hole():
    frame = torch.ones(28, 28)
    frame[1:-1, 1:-1] = 0.0  # the first background region found is the hole itself
    assert mnist_mlp.count_holes(frame[None]).item() == 1


def test_count_holes_threshold_min_area_and_diagonal_closure():
    grey = ring(canvas(), 4, 8, 14) * 0.4
    assert mnist_mlp.count_holes(grey[None]).item() == 0, "ink at 0.4 is background at the default threshold 0.5"
    assert mnist_mlp.count_holes(grey[None], threshold=0.3).item() == 1
    tiny = ring(canvas(), 4, 4, 5)  # 5x5 ring of width 2: a 1-pixel hole
    assert mnist_mlp.count_holes(tiny[None]).item() == 0, "holes smaller than min_area=2 pixels are noise"
    assert mnist_mlp.count_holes(tiny[None], min_area=1).item() == 1
    diamond = canvas()
    for r, c in [(5, 8), (6, 7), (7, 6), (8, 7), (9, 8), (8, 9), (7, 10), (6, 9)]:
        diamond[r, c] = 1.0  # a loop of pixels touching only at corners around (7, 8)
    diamond[6:9, 8] = diamond[7, 7:10] = 0.0
    assert mnist_mlp.count_holes(diamond[None], min_area=1).item() == 1, "ink touching diagonally closes a loop"


def test_stroke_thickness_uses_its_threshold():
    bar = canvas()
    bar[4:24, 11:17] = 0.6
    bar[4:24, 13:15] = 1.0
    assert mnist_mlp.stroke_thickness(bar[None]).item() == pytest.approx(6 * 20 / 26, rel=1e-5)
    assert mnist_mlp.stroke_thickness(bar[None], threshold=0.8).item() == pytest.approx(2 * 20 / 22, rel=1e-5)


def test_leans_right_thresholds_at_the_reference_median():
    imgs = []
    for k in (0, 3, 4):  # shift per row going up: 0, 1/3, 1/4 (median 1/4, mean lower)
        img = canvas()
        for r in range(4, 24):
            shift = 0 if k == 0 else (24 - r) // k
            img[r, 8 + shift:10 + shift] = 1.0
        imgs.append(img)
    images = torch.stack(imgs)
    assert mnist_mlp.binary_labels(images)["leans_right"].tolist() == [0, 1, 0], "only the one above the median slant (not the mean)"
    ref = torch.stack([imgs[0]] * 3)
    assert mnist_mlp.binary_labels(images, ref)["leans_right"].tolist() == [0, 1, 1], \
        "the threshold is the reference's median slant (0 here)"


def test_ink_exactly_at_the_threshold_is_ink_and_a_stroke_may_touch_the_border():
    half = ring(canvas(), 4, 8, 14) * 0.5
    assert mnist_mlp.count_holes(half[None]).item() == 1, "pixels >= threshold are ink"
    assert mnist_mlp.stroke_thickness(half[None]).item() == pytest.approx(mnist_mlp.stroke_thickness((half > 0).float()[None]).item())
    corner = canvas()
    corner[0:20, 0:3] = 1.0  # touches the top and left edges: those edges count in the perimeter
    assert mnist_mlp.stroke_thickness(corner[None]).item() == pytest.approx(60 / 23)
    assert mnist_mlp.stroke_thickness(torch.flip(corner, (0, 1))[None]).item() == pytest.approx(60 / 23), \
        "the same bar in the bottom-right corner"


def test_slant_on_short_and_faint_strokes_and_an_empty_image():
    diag = canvas()
    diag[10, 10] = diag[9, 11] = 1.0  # one column right per row up
    assert mnist_mlp.slant(diag[None]).item() == pytest.approx(1.0), "two pixels, one row apart: slant exactly 1"
    assert mnist_mlp.slant(0.3 * diag[None]).item() == pytest.approx(1.0), "faint ink: same slant"
    assert mnist_mlp.slant(canvas()[None]).item() == 0.0, "an empty image has slant 0, not NaN"


def test_thickness_median_comes_from_the_reference_and_not_the_mean():
    bars = []
    for width in (2, 3, 4):  # thickness 1.82, 2.61, 3.33: mean 2.59 below the median
        bar = canvas()
        bar[4:24, 10:10 + width] = 1.0
        bars.append(bar)
    images = torch.stack(bars)
    assert mnist_mlp.binary_labels(images)["thick_stroke"].tolist() == [0, 0, 1], "above the median (the 3-wide bar), not the mean"


@pytest.mark.parametrize("name", ["count_holes", "stroke_thickness", "slant", "binary_labels"])
def test_every_concept_refuses_flat_images(name):
    with pytest.raises(ValueError, match="reshape flat images"):
        getattr(mnist_mlp, name)(torch.zeros(2, 784))


def test_weight_smoothness_tells_strokes_from_noise():
    torch.manual_seed(0)
    noise = torch.randn(4, 28, 28)
    stroke = torch.zeros(2, 28, 28)
    stroke[:, 10:14, 3:25] = 1.0  # a horizontal bar: neighbours along a row agree
    s = mnist_mlp.weight_smoothness(torch.cat([noise, stroke]))
    assert s[:4].abs().max() < 0.1 and (s[4:] > 0.9).all(), f"noise near 0, a bar near 1: {s.tolist()}"
    with pytest.raises(ValueError, match="weights"):
        mnist_mlp.weight_smoothness(torch.randn(28, 28))


def test_shuffled_label_twin_memorises_labels_that_carry_no_class():
    torch.manual_seed(0)
    x = torch.rand(64, 28, 28)
    y = torch.arange(64) % 4

    def build():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))

    twin, fit = mnist_mlp.train_shuffled_label_twin(x, y, build, steps=150, lr=1e-2, seed=0)
    assert fit > 0.9, f"the twin should memorise its 64 shuffled labels, fitted {fit:.2f}"
    again, _ = mnist_mlp.train_shuffled_label_twin(x, y, build, steps=150, lr=1e-2, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(twin.parameters(), again.parameters())), "the seed must fix the twin"


def test_attribution_sanity_finds_a_model_equal_to_itself_and_not_to_a_random_one():
    """The table's check can fail: a control that is the model itself correlates at 1."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    x, y = torch.rand(3, 28, 28), torch.tensor([0, 1, 2])
    table = mnist_mlp.attribution_sanity(model, {"itself": model, "other": other}, x, y, ("saliency", "kernel_shap"), n_samples=100)
    assert table["saliency"]["itself"] > 0.999 and table["saliency"]["repeat"] == 1.0
    assert abs(table["saliency"]["other"]) < 0.3, table
    assert 0.5 < table["kernel_shap"]["repeat"] < 1.0, "another seed, other samples: a sampled map repeats only roughly"
    assert set(table["kernel_shap"]) == {"itself", "itself abs", "itself |rho|", "itself interval", "other", "other abs",
                                         "other |rho|", "other interval", "repeat"}
    lo, hi = table["saliency"]["other interval"]
    assert lo <= table["saliency"]["other"] <= hi and table["saliency"]["other |rho|"] >= abs(table["saliency"]["other"]) - 1e-4


def test_weight_correlation_is_pearson_per_row():
    torch.manual_seed(0)
    a = torch.randn(3, 50)
    b = torch.stack([2 * a[0] + 1, -a[1], torch.randn(50)])
    r = mnist_mlp.weight_correlation(a, b)
    assert torch.allclose(r[:2], torch.tensor([1.0, -1.0]), atol=1e-5) and abs(r[2]) < 0.4
    assert torch.allclose(r[2], torch.corrcoef(torch.stack([a[2], b[2]]))[0, 1], atol=1e-5)


def test_cross_validated_C_prefers_strong_regularisation_on_noise_features_and_weak_on_clean_ones():
    torch.manual_seed(0)
    y = torch.arange(300) % 2
    clean = torch.cat([y[:, None].float() + 0.3 * torch.randn(300, 1), torch.randn(300, 1)], 1)
    assert mnist_mlp.cross_validated_C(clean, y, (1e-4, 1.0)) == 1.0, "a readable label needs a weak penalty"
    noisy = torch.cat([y[:, None].float() + 1.0 * torch.randn(300, 1), torch.randn(300, 200)], 1)  # 200 useless dims
    assert mnist_mlp.cross_validated_C(noisy, y, (0.01, 100.0)) == 0.01, "200 noise dimensions call for a strong penalty"
    with pytest.raises(ValueError, match="Cs"):
        mnist_mlp.cross_validated_C(clean, y, ())
    assert mnist_mlp.cross_validated_C(noisy, y, (100.0,)) == 100.0, "one strength is returned as it is, fitting nothing"
    with pytest.raises(ValueError, match="Cs"):
        mnist_mlp.cross_validated_C(clean, y, (0.0,))


def test_loop_within_digit_finds_a_feature_that_reads_the_label_and_not_one_that_does_not():
    torch.manual_seed(0)
    digit = torch.arange(1200) % 3
    loop = (torch.rand(1200) < 0.4).long()
    good = torch.cat([loop[:, None].float() + 0.3 * torch.randn(1200, 1), torch.randn(1200, 3)], 1)
    tr, te = slice(0, 800), slice(800, None)
    feats = {"relu2": good, "random relu2": torch.randn(1200, 4), "pixels": torch.randn(1200, 4)}  # one reads the label, two are noise
    r = mnist_mlp.loop_within_digit({n: f[tr] for n, f in feats.items()}, {n: f[te] for n, f in feats.items()}, loop[tr], loop[te],
                                    digit[tr], digit[te], Cs=(0.1, 1.0),
                                    comparisons={"relu2": ("relu2", ("pixels",)), "random relu2": ("random relu2", ("pixels",))})
    assert mnist_mlp.digits_above(r, "relu2") == [0, 1, 2], r
    assert mnist_mlp.digits_above(r, "random relu2") == [], "a noise feature must not beat another noise feature"
    assert set(r["C"]) == set(feats) and sum(v["n"] for v in r["digits"].values()) == 400
    runs = {0: r}
    for i, (shift, noise) in enumerate([(0.01, 0.03), (0.02, -0.03)], 1):  # more runs whose gaps differ, so a t interval has a width
        runs[i] = copy.deepcopy(r)
        for v in runs[i]["digits"].values():
            v["gaps"]["relu2"]["gap"] = round(v["gaps"]["relu2"]["gap"] + shift, 4)
            v["gaps"]["random relu2"]["gap"] = round(v["gaps"]["random relu2"]["gap"] + noise, 4)
    s = mnist_mlp.loop_summary(runs)
    assert s["reliably above"] == [0, 1, 2] and s["random relu2 reliably above pixels"] == [], s
    assert s["pooled over seeds"]["relu2"][0]["tests"] == 3 and s["pooled over seeds"]["relu2"][0]["runs"] == 3
    assert s["digit n range"][0] > 100 and 0 < s["gap se range"][0] <= s["gap se range"][1] < 0.1, s
    assert s["pooled relu2 minus pixels"][0] > 0.2 and "0s:" in mnist_mlp.loop_table({0: r}, [0])
    assert s["tested"] == [0, 1, 2] and s["untested"] == [] and s["reliably below"] == [] and s["pooled over seeds"]["relu2"][0]["sides"] == 1
    flipped = copy.deepcopy(runs)  # relu2 behind its control, the pixels far ahead of the random relu2, one run blind on the 2s
    for v in flipped.values():
        for row in v["digits"].values():
            g = row["gaps"]["relu2"]
            g["gap"], g["interval"] = -g["gap"], [-g["interval"][1], -g["interval"][0]]
            row["gaps"]["random relu2"]["gap"] = round(row["gaps"]["random relu2"]["gap"] - 0.2, 4)
    flipped[1]["digits"][2]["gaps"]["relu2"]["interval"] = [0.0, 0.0]  # no image tells relu2 and its control apart
    f = mnist_mlp.loop_summary(flipped)
    assert f["untested"] == [2] and f["tested"] == [0, 1] and 2 not in f["pooled over seeds"]["relu2"], f
    assert f["pooled over seeds"]["relu2"][0]["tests"] == 2 and f["reliably above"] == [] and f["reliably below"] == [0, 1], f
    assert f["pixels reliably above random relu2"] == [0, 1] and f["random relu2 reliably above pixels"] == [], f
    assert mnist_mlp.digit_list([2, 4, 9]) == "the 2s, 4s and 9s" and mnist_mlp.digit_list([9]) == "the 9s" and mnist_mlp.digit_list([]) == "no digit"
    assert mnist_mlp.digit_list([9], {9: [0.0216, 0.0688]}) == "the 9s (+2.2 to +6.9 points)"
    below = {8: {"mean": -0.0122, "interval": [-0.019, -0.0054]}, 3: {"mean": -0.02, "interval": [-0.03, -0.011]}}
    assert mnist_mlp.bound_list([8], below, 1) == "the 8s (mean -1.2 points, upper bound -0.5 points)" and mnist_mlp.bound_list([], below, 1) == "no digit"
    assert mnist_mlp.bound_list([3, 8], below, 0) == "the 3s (mean -2.0 points, lower bound -3.0 points) and 8s (mean -1.2 points, lower bound -1.9 points)"
    assert mnist_mlp.seeds_text({3: 0.0361, 4: 0.0384}) == "+3.6 and +3.8 points (seeds 3 and 4)" and "no such seed" in mnist_mlp.seeds_text({})
    assert mnist_mlp.points(0.593, 0.9633) == "+59.3 to +96.3 points" and mnist_mlp.points(0.2782) == "+27.8 points", "percentage points, not %"
    assert mnist_mlp.points(0.044, signed=False) == "4.4 points", "a cost the sentence names carries no sign"


def test_conditional_loop_test_finds_what_a_feature_adds_to_the_label_and_keeps_a_given_C():
    torch.manual_seed(0)
    digit = torch.arange(1500) % 3
    loop = ((digit == 0) | (torch.rand(1500) < 0.3)).long()  # the label predicts part of the loop, the rest is drawn apart
    feats = {"relu2": loop[:, None].float() + 0.3 * torch.randn(1500, 1), "pixels": torch.randn(1500, 5)}  # one reads the rest, one is noise
    tr, te = slice(0, 1000), slice(1000, None)
    r = mnist_mlp.conditional_loop_test({n: f[tr] for n, f in feats.items()}, {n: f[te] for n, f in feats.items()}, loop[tr], loop[te],
                                        digit[tr], digit[te], names=("relu2", "pixels"), Cs=(0.01, 1.0))
    a = r["accuracy"]
    assert list(a) == ["digit label", "digit label + relu2", "digit label + pixels"] and set(r["C"].values()) <= {0.01, 1.0}
    assert a["digit label + relu2"] > a["digit label"] + 0.1, f"a feature that reads the loop adds to the label: {a}"
    assert abs(a["digit label + pixels"] - a["digit label"]) < 0.03, f"control: a noise feature adds nothing: {a}"
    fixed = {k: 0.01 for k in a}
    again = mnist_mlp.conditional_loop_test({n: f[tr] for n, f in feats.items()}, {n: f[te] for n, f in feats.items()}, loop[tr], loop[te],
                                            digit[tr], digit[te], names=("relu2", "pixels"), Cs=(0.01, 1.0), fixed_C=fixed)
    assert again["C"] == fixed, "a given C is kept, not chosen again"
    shuffled = mnist_mlp.shuffled_within_digit_control({n: f[tr] for n, f in feats.items()}, {n: f[te] for n, f in feats.items()}, loop[tr],
                                                       loop[te], digit[tr], digit[te], name="relu2", C=r["C"], seeds=(0, 1))
    assert [row["seed"] for row in shuffled["per permutation"]] == [0, 1] and shuffled["max gain"] == max(row["gain"] for row in shuffled["per permutation"])
    assert shuffled["max gain"] < 0.03, f"control: with the loop shuffled within each digit the feature adds nothing to the label: {shuffled}"
    assert "max margin" not in shuffled, "without controls there is no margin"
    null = mnist_mlp.shuffled_within_digit_control({n: f[tr] for n, f in feats.items()}, {n: f[te] for n, f in feats.items()}, loop[tr],
                                                   loop[te], digit[tr], digit[te], name="relu2", C=r["C"], seeds=(0, 1), controls=("pixels",))
    rows = null["per permutation"]
    assert [row["gain"] for row in rows] == [row["gain"] for row in shuffled["per permutation"]], "the controls change nothing else"
    assert all(row["margin"] == round(row["digit label + relu2"] - row["digit label + pixels"], 4) for row in rows)
    true_margin = a["digit label + relu2"] - a["digit label + pixels"]
    assert null["max margin"] == max(row["margin"] for row in rows) < 0.03 < true_margin, \
        f"the claim's own statistic: large on the true loop, near 0 with it shuffled within digits: {true_margin}, {null}"


def test_within_class_predictions_answer_a_constant_class_with_its_constant():
    x = torch.randn(40, 2)
    cls = torch.tensor([0] * 20 + [1] * 20)
    y = torch.cat([(x[:20, 0] > 0).long(), torch.ones(20, dtype=torch.long)])
    pred = mnist_mlp.within_class_predictions(x, y, cls, x, cls, C=10.0)
    assert (pred[20:] == 1).all() and (pred[:20] == y[:20]).float().mean() > 0.9


def test_paired_bootstrap_brackets_the_difference():
    a = torch.tensor([1] * 90 + [0] * 10)
    b = torch.tensor([1] * 60 + [0] * 40)
    lo, hi = mnist_mlp.paired_bootstrap(a, b)
    assert lo < 0.3 < hi and lo > 0.15, (lo, hi)
    assert mnist_mlp.paired_bootstrap(a, a) == (0.0, 0.0)


def test_selectivity_need_correlation_is_spearman_of_selectivity_and_the_largest_drop():
    sel = torch.tensor([0.1, 0.5, 0.9, 0.3])
    drop = torch.tensor([[0.0, 0.02, 0.05, 0.01], [0.01, 0.0, 0.0, 0.0]])  # largest drops 0.01, 0.02, 0.05, 0.01
    assert mnist_mlp.selectivity_need_correlation(sel, drop) == pytest.approx(0.949, abs=1e-3)
    assert mnist_mlp.selectivity_need_correlation(-sel, drop) < 0
    with pytest.raises(ValueError, match="one selectivity per neuron"):
        mnist_mlp.selectivity_need_correlation(sel[:3], drop)


def test_flip_rates_choose_the_neurons_that_move_the_logit():
    """A hand-built relu2 whose neuron 0 alone carries 'class 1': setting it to its class-1 mean flips every input."""
    from glassbox.studies import models
    model = models.build_mlp({"sizes": [4, 3, 2, 2]})
    with torch.no_grad():
        model.fc1.weight.copy_(torch.eye(3, 4)); model.fc1.bias.zero_()
        model.fc2.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])); model.fc2.bias.zero_()
        model.out.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]])); model.out.bias.zero_()
    acts2 = torch.tensor([[0.0, 1.0], [0.0, 1.0], [3.0, 1.0], [3.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    x_from = torch.zeros(5, 4)
    x_from[:, 1] = 1.0  # class 0 inputs: neuron 1 on, neuron 0 off
    r = mnist_mlp.flip_rates(model, acts2, y, x_from, 0, 1, 1, draws=4, seed=0)
    assert r["base"] == 0.0 and r["chosen"] == 1.0 and 0.0 <= r["random neurons"] <= 1.0, r


def test_seeds_summary_gives_ranges_and_whether_each_network_falls_with_depth():
    def run(acc, thick):
        concepts = {"thick_stroke": {"relu1": thick[0], "relu2": thick[1], "out": thick[2], "random relu1": 0.8, "random relu2": 0.7,
                                     "random out": 0.75}}  # the random net does not fall all the way
        flip = {tag: {"chosen": acc, "random neurons": 0.01, "base": 0.0} for tag in ("trained", "random")}
        cond = {"digit label": 0.8, "digit label + relu2": acc, "digit label + random relu2": 0.81, "digit label + pixels": 0.79}
        return {"test_accuracy": acc, "concepts": concepts, "flip": flip, "twin_concepts": {"thick_stroke": {"relu2": [0.7, 0.7]}},
                "selectivity_vs_need": {tag: {"relu1": acc, "relu2": -acc} for tag in ("trained", "random")}, "conditional": {"accuracy": cond}}
    s = mnist_mlp.seeds_summary({0: run(0.9, (0.9, 0.8, 0.7)), 1: run(0.8, (0.85, 0.75, 0.6))})
    assert s["test_accuracy"] == [0.8, 0.9] and s["flip"]["trained chosen"] == [0.8, 0.9] and s["flip_lift"]["random"] == [0.8, 0.9]
    assert s["falls_with_depth"]["thick_stroke"] == {"trained": True, "random": False}
    assert s["trained_minus_random"]["thick_stroke"]["relu2"] == [0.05, 0.1]
    assert s["selectivity_vs_need"]["random relu2"] == [-0.9, -0.8]
    assert s["conditional"] == {"gain over label": {"digit label + relu2": [0.0, 0.1], "digit label + random relu2": [0.01, 0.01],
                                                    "digit label + pixels": [-0.01, -0.01]}, "relu2 minus best control": [-0.01, 0.09],
                                "random relu2 minus pixels": [0.02, 0.02], "random relu2 ahead of pixels": 2,
                                "random relu2 minus pixels interval": mnist_mlp.t_interval([0.02, 0.02]), "random relu2 vs pixels": "above"}, s["conditional"]


def test_seeds_summary_averages_the_twins_and_gives_a_t_interval_over_the_runs():
    def run(thick_relu2, twins):
        concepts = {"thick_stroke": {"relu1": 0.8, "relu2": thick_relu2, "out": 0.6, "random relu1": 0.8, "random relu2": twins[0],
                                     "random out": 0.6}}
        flip = {tag: {"chosen": 0.5, "random neurons": 0.01, "base": 0.0} for tag in ("trained", "random")}
        return {"test_accuracy": 0.9, "concepts": concepts, "flip": flip, "twin_concepts": {"thick_stroke": {"relu2": list(twins)}},
                "selectivity_vs_need": {tag: {"relu1": 0.1, "relu2": 0.1} for tag in ("trained", "random")},
                "conditional": {"accuracy": {"digit label": 0.8, "digit label + relu2": 0.82, "digit label + random relu2": 0.8, "digit label + pixels": 0.8}}}
    s = mnist_mlp.seeds_summary({0: run(0.72, (0.7, 0.72, 0.68)), 1: run(0.74, (0.7, 0.7, 0.7)), 2: run(0.73, (0.71, 0.69, 0.7))})
    g = s["trained_minus_twins"]["thick_stroke"]["relu2"]
    assert g["per run"] == [0.02, 0.04, 0.03] and g["twins"] == 3 and g["mean"] == 0.03, g
    assert g["interval"] == [pytest.approx(0.03 - 4.303 * 0.01 / 3 ** 0.5, abs=1e-4), pytest.approx(0.03 + 4.303 * 0.01 / 3 ** 0.5, abs=1e-4)]
    assert mnist_mlp.twin_verdict(g) == "above" and s["trained_minus_random"]["thick_stroke"]["relu2"] == [0.02, 0.04]
    noisy = mnist_mlp.seeds_summary({0: run(0.72, (0.7,)), 1: run(0.68, (0.7,))})["trained_minus_twins"]["thick_stroke"]["relu2"]
    assert mnist_mlp.twin_verdict(noisy) == "within noise of" and mnist_mlp.twin_verdict({"interval": [-0.03, -0.01]}) == "below"


def test_t_interval_widens_with_the_number_of_tests():
    one, nine = mnist_mlp.t_interval([1.0, 2.0, 3.0, 4.0, 5.0]), mnist_mlp.t_interval([1.0, 2.0, 3.0, 4.0, 5.0], tests=9)
    assert one["mean"] == nine["mean"] == 3.0 and one["interval"][0] == pytest.approx(3 - 2.776 * 1.5811 / 5 ** 0.5, abs=1e-3)
    assert nine["interval"][0] < one["interval"][0] and nine["tests"] == 9
    one_sided = mnist_mlp.t_interval([1.0, 2.0, 3.0, 4.0, 5.0], tests=9, sides=1)  # each end a one-sided bound at 1 - 0.05 / 9
    assert one_sided["interval"][0] == pytest.approx(3 - 4.466 * 1.5811 / 5 ** 0.5, abs=1e-3) and nine["interval"][0] < one_sided["interval"][0]
    assert mnist_mlp.t_interval([1.0, 2.0, 3.0, 4.0, 5.0], tests=9, level=0.9)["interval"] == one_sided["interval"], "one-sided at a is two-sided at 2a"
    with pytest.raises(ValueError, match="at least 2 values"):
        mnist_mlp.t_interval([1.0])


def test_smooth_random_weights_reach_the_asked_smoothness_with_mean_zero():
    w, sigma = mnist_mlp.smooth_random_weights(32, (20, 20), 0.8, seed=0)
    assert w.shape == (32, 20, 20) and sigma > 0
    assert abs(mnist_mlp.weight_smoothness(w).median().item() - 0.8) < 0.01, "the median smoothness is the one asked for"
    assert w.mean((1, 2)).abs().max() < 1e-5, "each weight image has mean 0: a unit cannot just count ink"
    assert mnist_mlp.smooth_random_weights(32, (20, 20), 0.5, seed=0)[1] < sigma, "a rougher target needs a narrower blur"
    again, other = (mnist_mlp.smooth_random_weights(32, (20, 20), 0.8, seed=s)[0] for s in (0, 1))
    assert torch.equal(w, again) and not torch.allclose(w, other), "seeded: the same draw for the same seed only"


def test_smooth_random_weights_at_white_noise_smoothness_do_not_blur_and_refuse_the_unreachable():
    noise, _ = mnist_mlp.smooth_random_weights(64, (28, 28), -0.5, seed=0)  # below white noise: nothing to blur
    assert mnist_mlp.weight_smoothness(noise).abs().median() < 0.05
    with pytest.raises(ValueError, match="smoothness"):
        mnist_mlp.smooth_random_weights(4, (28, 28), 1.0, seed=0)
    with pytest.raises(ValueError, match="max_sigma"):
        mnist_mlp.smooth_random_weights(4, (28, 28), 0.99, seed=0, max_sigma=0.5)


def test_random_relu_units_fire_on_half_the_validation_images_with_the_same_bias_on_test():
    torch.manual_seed(0)
    x_val, x_test, w = torch.rand(101, 28, 28), torch.rand(50, 28, 28), torch.randn(8, 28, 28)
    val, test = mnist_mlp.random_relu_units(w, x_val, x_test)
    assert val.shape == (101, 8) and test.shape == (50, 8) and (val >= 0).all()
    assert ((val > 0).float().mean(0) - 0.5).abs().max() < 0.02, "biased at the validation median: fires on about half"
    bias = (x_val.flatten(1) @ w.flatten(1).T).median(0).values
    assert torch.allclose(test, (x_test.flatten(1) @ w.flatten(1).T - bias).clamp(min=0), atol=1e-5), "test uses the validation bias"
    with pytest.raises(ValueError, match="weight images"):
        mnist_mlp.random_relu_units(torch.randn(8, 14, 14), x_val, x_test)
