"""Unit tests of glassbox.attribution on a model glassbox did not build (tiny_cnn)."""
import pytest
import torch

from glassbox import attribution


@pytest.mark.parametrize("method", attribution.METHODS)
def test_attribute_gives_one_value_per_pixel(tiny_cnn, method):
    x = torch.rand(3, 28, 28)
    a = attribution.attribute(tiny_cnn, x, torch.tensor([0, 1, 2]), method, n_steps=8)
    assert a.shape == x.shape and torch.isfinite(a).all() and a.abs().sum() > 0


def test_integrated_gradients_is_complete(tiny_cnn):
    """IG's attributions add up to logit(x) - logit(black image) (the completeness axiom)."""
    x = torch.rand(2, 28, 28)
    a = attribution.attribute(tiny_cnn, x, 3, "integrated_gradients", n_steps=128)
    with torch.no_grad():
        gap = tiny_cnn(x)[:, 3] - tiny_cnn(torch.zeros_like(x))[:, 3]
    assert torch.allclose(a.sum((1, 2)), gap, atol=2e-3 + 0.02 * gap.abs().max()), "IG must start from a black baseline"


def test_saliency_is_the_absolute_gradient(tiny_cnn):
    x = torch.rand(1, 28, 28, requires_grad=True)
    (grad,) = torch.autograd.grad(tiny_cnn(x)[0, 4], x)
    assert torch.allclose(attribution.attribute(tiny_cnn, x, 4, "saliency"), grad.abs())


def test_occlusion_of_a_blank_region_is_zero(tiny_cnn):
    x = torch.zeros(1, 28, 28)
    x[0, 10:18, 10:18] = 1.0
    a = attribution.attribute(tiny_cnn, x, 0, "occlusion", window=(4, 4), stride=(4, 4))
    assert (a[0, :8, :8] == 0).all(), "hiding black pixels behind a black patch changes nothing"
    with pytest.raises(ValueError, match="one size per input dimension"):
        attribution.attribute(tiny_cnn, x, 0, "occlusion", window=(4,))
    with pytest.raises(ValueError, match="choose one of"):
        attribution.attribute(tiny_cnn, x, 0, "gradcam")


def test_randomize_weights_changes_every_layer_and_keeps_the_original(tiny_cnn):
    before = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    rnd = attribution.randomize_weights(tiny_cnn, seed=1)
    assert all(torch.equal(v, tiny_cnn.state_dict()[k]) for k, v in before.items()), "the original model was modified"
    assert all(not torch.equal(v, rnd.state_dict()[k]) for k, v in before.items()), "some parameters were not re-drawn"
    with pytest.raises(ValueError, match="nothing to randomise"):
        attribution.randomize_weights(torch.nn.ReLU())


def test_rank_correlation_separates_same_from_unrelated_maps():
    torch.manual_seed(0)
    a = torch.randn(4, 28, 28)
    assert torch.allclose(attribution.rank_correlation(a, 3 * a), torch.ones(4))
    assert attribution.rank_correlation(a, -a, absolute=False).max() < -0.99
    assert attribution.rank_correlation(a, torch.randn(4, 28, 28)).abs().max() < 0.15
    with pytest.raises(ValueError, match="differ in shape"):
        attribution.rank_correlation(a, a[:2])


def test_trained_vs_random_sanity_check_can_fail(tiny_cnn):
    """A model compared with itself must fail the check (rho = 1): the check is not vacuous.

    seed=1: tiny_cnn was built after manual_seed(0), so seed 0 would redraw its own weights."""
    x = torch.rand(3, 28, 28)
    same = attribution.attribute(tiny_cnn, x, 1, "saliency")
    assert attribution.rank_correlation(same, attribution.attribute(tiny_cnn, x, 1, "saliency")).min() > 0.999
    other = attribution.attribute(attribution.randomize_weights(tiny_cnn, seed=1), x, 1, "saliency")
    # not near 0: strided convolutions reach some pixels more often than others, whatever the weights
    # (Adebayo et al. saw such architecture-only structure too); but well below the 1 of a model with itself
    assert attribution.rank_correlation(same, other).mean() < 0.8, "randomize_weights did not change the model"


class Counting(torch.nn.Module):
    """logits = x.flatten(1) @ W, counting the rows it is called on."""

    def __init__(self, n_in):
        super().__init__()
        self.W = torch.nn.Parameter(torch.randn(n_in, 3, generator=torch.Generator().manual_seed(0)))
        self.rows = 0

    def forward(self, x):
        self.rows += len(x)
        return x.flatten(1) @ self.W


def test_integrated_gradients_takes_n_steps_on_a_path_from_zero():
    model = Counting(4)
    x = torch.rand(2, 4)
    a = attribution.attribute(model, x, 1, "integrated_gradients", n_steps=5)
    assert model.rows == 2 * 5, "n_steps points on the path for each input"
    assert torch.allclose(a, x * model.W[:, 1], atol=1e-5), "a linear model's IG from 0 is x * w"


def brute_force_occlusion(model, x, target, window, stride):
    """Mean drop of the target logit over every window position covering each pixel (patch set to 0)."""
    (h, w), (wh, ww), (sh, sw) = x.shape[1:], window, stride
    total, count = torch.zeros_like(x), torch.zeros_like(x)
    base = model(x)[:, target]
    for top in range(0, h - wh + 1, sh):
        for left in range(0, w - ww + 1, sw):
            hidden = x.clone()
            hidden[:, top:top + wh, left:left + ww] = 0
            total[:, top:top + wh, left:left + ww] += (base - model(hidden)[:, target])[:, None, None]
            count[:, top:top + wh, left:left + ww] += 1
    return total / count.clamp(min=1)


def test_occlusion_matches_a_brute_force_loop_over_windows_and_strides():
    torch.manual_seed(0)
    model = Counting(5 * 7)
    x = torch.rand(2, 5, 7)
    for window, stride in (((2, 3), (1, 2)), ((3, 2), (2, 1))):
        got = attribution.attribute(model, x, 2, "occlusion", window=window, stride=stride)
        assert torch.allclose(got, brute_force_occlusion(model, x, 2, window, stride), atol=1e-5), \
            f"occlusion with window {window} and stride {stride} differs from the brute-force loop"


def test_randomize_weights_is_reproducible_from_its_seed(tiny_cnn):
    a, b = attribution.randomize_weights(tiny_cnn, seed=3), attribution.randomize_weights(tiny_cnn, seed=3)
    c = attribution.randomize_weights(tiny_cnn, seed=4)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict()), "same seed, same weights"
    assert not torch.equal(a.head[3].weight, c.head[3].weight)
    assert not a.training, "the copy comes back in eval mode"


def test_randomize_weights_refuses_a_model_no_layer_can_redraw():
    class Holder(torch.nn.Module):  # parameters, but no reset_parameters
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2))

    class Resettable(torch.nn.Module):  # reset_parameters, but no parameters of its own
        def __init__(self):
            super().__init__()
            self.inner = Holder()

        def reset_parameters(self):
            pass

    with pytest.raises(ValueError, match="nothing to randomise"):
        attribution.randomize_weights(Resettable())


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_rank_correlation_compares_absolute_values_by_default_and_gives_0_for_a_flat_map():
    torch.manual_seed(1)
    a = torch.randn(3, 4, 4)
    assert torch.allclose(attribution.rank_correlation(a, -a), torch.ones(3)), "by default |values| are ranked"
    flat = attribution.rank_correlation(torch.zeros(3, 4, 4), a)
    assert torch.equal(flat, torch.zeros(3)), "a constant map has no ranking: correlation 0, not NaN"
    rho = attribution.rank_correlation(a[:1], a[:1] ** 3 + a[:1], absolute=False)
    assert rho.item() == pytest.approx(1.0), "Spearman depends only on the ranks"
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert attribution.rank_correlation(x, torch.tensor([[1.0, 3.0, 2.0, 4.0]])).item() == pytest.approx(0.8)


def test_superpixels_are_row_major_blocks_and_partial_blocks_at_the_edge():
    ids = attribution._superpixels((5, 3), (2, 2), torch.device("cpu"))
    assert torch.equal(ids, torch.tensor([[0, 0, 1], [0, 0, 1], [2, 2, 3], [2, 2, 3], [4, 4, 5]]))
    assert attribution._superpixels((28, 28), (4, 4), torch.device("cpu")).unique().numel() == 49


def test_kernel_shap_on_a_linear_model_gives_each_superpixel_its_exact_contribution():
    """For logits linear in x and a black baseline, a superpixel's Shapley value is the sum of w * x over its pixels."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3))
    torch.manual_seed(0)
    x = torch.rand(2, 28, 28)
    attr = attribution.attribute(model, x, torch.tensor([0, 2]), "kernel_shap", n_samples=300).flatten(1)
    ids = attribution._superpixels((28, 28), (4, 4), torch.device("cpu")).flatten()
    first = torch.tensor([int(torch.nonzero(ids == k)[0, 0]) for k in range(49)])  # one pixel of each superpixel
    for i, target in enumerate((0, 2)):
        exact = torch.zeros(49).index_add_(0, ids, model[1].weight.detach()[target] * x[i].flatten())
        assert torch.allclose(attr[i, first], exact, atol=1e-3), "KernelSHAP should recover w . x per superpixel"
        assert torch.equal(attr[i], attr[i, first][ids]), "every pixel of a superpixel must carry its superpixel's value"


@pytest.mark.parametrize("method", attribution.SAMPLED)
def test_sampled_methods_follow_their_seed_and_leave_the_global_random_stream_alone(tiny_cnn, method):
    x = torch.rand(2, 28, 28)
    torch.manual_seed(5)
    a = attribution.attribute(tiny_cnn, x, 1, method, n_samples=60, seed=0)
    after = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(1), after), "attribute must not consume the caller's random numbers"
    assert torch.equal(attribution.attribute(tiny_cnn, x, 1, method, n_samples=60, seed=0), a), "the same seed must give the same map"
    assert not torch.equal(attribution.attribute(tiny_cnn, x, 1, method, n_samples=60, seed=1), a), "another seed, other samples"
    with pytest.raises(ValueError, match="one size per input dimension"):
        attribution.attribute(tiny_cnn, x.flatten(1), 1, method)
