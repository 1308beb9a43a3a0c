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
