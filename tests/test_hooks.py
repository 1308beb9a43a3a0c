"""Unit tests of glassbox.hooks beyond the basics in test_foundation: the order batches are joined in,
detach, fixed-tensor patches, the errors, on small hand-built modules."""
import pytest
import torch
from torch import nn

from glassbox import hooks


def two_layer() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_capture_joins_forward_passes_in_the_order_they_ran():
    model = two_layer()
    a, b, c = torch.randn(2, 3), torch.randn(1, 3), torch.randn(3, 3)
    with hooks.capture(model, ["0", "2"]) as acts:
        for x in (a, b, c):
            model(x)
    # one matmul of 6 rows is not bit-identical to three smaller ones (other kernels, other CPUs): compare
    # within float32 rounding; a wrong order or a missing pass differs by O(1)
    torch.testing.assert_close(acts["0"], model[0](torch.cat([a, b, c])), rtol=1e-5, atol=1e-6,
                               msg=lambda m: f"batches must be concatenated along dim 0, first pass first\n{m}")
    assert acts["2"].shape == (6, 2)
    assert list(acts) == ["0", "2"] and len(acts) == 2
    with hooks.capture(model, "1") as one:
        model(a)
    assert torch.equal(one["1"], torch.relu(model[0](a))), "a single string names one module"


def test_capture_detaches_by_default_and_keeps_the_graph_when_asked():
    model = two_layer()
    x = torch.randn(5, 3)
    with hooks.capture(model, "0") as acts:
        model(x)
    assert not acts["0"].requires_grad, "captured activations must be detached by default"
    with hooks.capture(model, "0", detach=False) as acts:
        model(x)
    assert acts["0"].requires_grad, "detach=False must keep the autograd graph"
    (grad,) = torch.autograd.grad(acts["0"].sum(), model[0].bias)
    assert torch.equal(grad, torch.full((4,), 5.0)), "the kept graph must lead back to the layer's parameters"


def test_captured_errors_name_what_was_captured():
    model = two_layer()
    with hooks.capture(model, ["0"]) as acts:
        with pytest.raises(RuntimeError, match="nothing was captured at '0'"):
            acts["0"]
        model(torch.randn(1, 3))
    with pytest.raises(KeyError, match=r"'2' was not captured; captured: \['0'\]"):
        acts["2"]


def test_patch_by_a_fixed_tensor_broadcasts_over_the_batch_and_only_inside_the_block():
    model = two_layer()
    x = torch.randn(4, 3)
    fixed = torch.tensor([1.0, 0.0, 2.0, 0.0])
    with hooks.patch(model, {"1": fixed}):
        got = model(x)
    assert torch.allclose(got, model[2](fixed).expand(4, 2)), "a tensor patch must replace the output for every input"
    with hooks.patch(model, {"0": lambda a: -a, "2": lambda a: a * 2}):
        two = model(x)
    assert torch.allclose(two, 2 * model[2](torch.relu(-model[0](x)))), "every patch in the dict must apply"
    assert torch.allclose(model(x), model[2](torch.relu(model[0](x)))), "the patch outlived its block"
    with pytest.raises(ValueError, match=r"patch at '1' returned shape \(4, 3\), expected \(4, 4\)"):
        with hooks.patch(model, {"1": lambda a: a[:, :3]}):
            model(x)


def test_get_module_lists_at_most_forty_names():
    small = nn.Sequential(*[nn.ReLU() for _ in range(40)])
    with pytest.raises(KeyError) as err:
        hooks.get_module(small, "x")
    assert "0, 1, 2" in str(err.value) and "39" in str(err.value) and "..." not in str(err.value)
    big = nn.Sequential(*[nn.ReLU() for _ in range(41)])
    with pytest.raises(KeyError) as err:
        hooks.get_module(big, "x")
    assert ", 39 ..." in str(err.value) and "40" not in str(err.value), "more than 40 names: the first 40, then '...'"
    assert hooks.get_module(big, "7") is big[7]
