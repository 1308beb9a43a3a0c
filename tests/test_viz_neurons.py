"""Unit tests of the neuron figures in glassbox.viz: image grids, neuron dashboards, neuron graphs."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from glassbox import viz  # noqa: E402


@pytest.fixture
def stack() -> nn.Module:
    """A plain stack of Linear layers that glassbox did not build."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).eval()


def test_get_neuron_graph_edges_are_weight_times_activation(stack):
    x = torch.randn(1, 2, 3)
    g = viz.get_neuron_graph(stack, x)
    assert g.names == ["input", "1", "3", "5"], "names: input, then the Linear that produced each layer"
    a1 = torch.relu(stack[1](x.flatten(1)))[0]
    a2 = torch.tanh(stack[3](a1[None]))[0]
    assert torch.allclose(g.activations[1], a1) and torch.allclose(g.activations[2], a2), \
        "node values must be what enters each Linear (after the activation)"
    assert torch.allclose(g.activations[3], stack(x)[0]), "the last nodes are the outputs"
    assert torch.allclose(g.contributions[1], stack[3].weight * a1[None, :]), "edge j<-i must be W[j, i] * a[i]"
    assert torch.allclose(g.contributions[1].sum(1) + stack[3].bias, stack[3](a1[None])[0], atol=1e-6), \
        "contributions plus bias must rebuild the pre-activation"


def test_neuron_graph_draws_the_strongest_edges(stack):
    fig = viz.neuron_graph(stack, torch.randn(1, 6), edges_per_layer=5)
    edges = [t for t in fig.data if t.mode == "lines"]
    nodes = [t for t in fig.data if t.mode != "lines"]
    assert len(edges) == 5 * 3, "edges_per_layer edges between each pair of drawn layers"
    assert [len(t.x) for t in nodes] == [6, 5, 4, 3]
    wide = viz.neuron_graph(stack, torch.randn(1, 6), max_nodes=5)
    assert len([t for t in wide.data if t.mode != "lines"]) == 3, "layers wider than max_nodes are not drawn"
    assert any("not drawn" in a.text for a in wide.layout.annotations)


def test_neuron_graph_refuses_what_it_cannot_draw(tiny_cnn, stack):
    with pytest.raises(TypeError, match="Conv2d at 'features.0'.*model.head"):
        viz.neuron_graph(tiny_cnn, torch.rand(1, 28, 28))
    with pytest.raises(ValueError, match=r"x\[:1\]"):
        viz.neuron_graph(stack, torch.randn(2, 6))
    with pytest.raises(TypeError, match="no nn.Linear"):
        viz.neuron_graph(nn.Sequential(nn.ReLU()), torch.randn(1, 6))
    head = viz.get_neuron_graph(tiny_cnn.head, torch.rand(1, 8, 5, 5))  # its Linear part works
    assert [len(a) for a in head.activations] == [200, 16, 10]


def test_neuron_dashboard_on_a_model_glassbox_did_not_build(tiny_cnn):
    x, y = torch.rand(40, 28, 28), torch.arange(40) % 10
    fig = viz.neuron_dashboard(tiny_cnn, "features.1", 2, x, y, drop=torch.linspace(0, 0.1, 10), k=6)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "selectivity" in titles and "mean-ablated" in titles and len(fig.axes) == 1 + 6 + 3
    plt.close(fig)
    flat = viz.neuron_dashboard(tiny_cnn, "head.2", 0, x.reshape(40, 784), y, k=4)
    assert len(flat.axes) == 1 + 4 + 3
    plt.close(flat)


def test_image_grid_lays_out_images_and_rejects_flat_ones():
    fig = viz.image_grid(torch.randn(10, 28, 28), [str(i) for i in range(10)], ncols=4, diverging=True)
    assert len(fig.axes) == 12 and sum(bool(ax.images) for ax in fig.axes) == 10
    plt.close(fig)
    with pytest.raises(ValueError, match="reshape"):
        viz.image_grid(torch.rand(3, 784))
