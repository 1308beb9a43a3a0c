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


def test_neuron_graph_draws_exactly_the_largest_contributions_coloured_by_sign(stack):
    x = torch.randn(1, 6)
    g = viz.get_neuron_graph(stack, x)
    fig = viz.neuron_graph(stack, x, edges_per_layer=4)
    edges = [t for t in fig.data if t.mode == "lines"]
    for layer, c in enumerate(g.contributions):
        drawn = {t.text.split(":")[0] for t in edges[4 * layer:4 * layer + 4]}
        top = c.abs().flatten().topk(4).indices.tolist()
        expected = {f"{g.names[layer]}[{i % c.shape[1]}] → {g.names[layer + 1]}[{i // c.shape[1]}]" for i in top}
        assert drawn == expected, f"layer {layer}: the edges drawn must be the 4 largest |W[j, i] a[i]|"
    for t in edges:
        value = float(t.text.split(": ")[1])
        assert ("214,39,40" in t.line.color) == (value > 0), "red adds, blue subtracts"
    widths = [t.line.width for t in edges[:4]]
    assert widths == sorted(widths, reverse=True) and widths[0] == pytest.approx(6.5), "the strongest edge is the widest"


def test_neuron_dashboard_shows_the_top_inputs_most_active_first():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 4)).eval()
    x, y = torch.rand(30, 28, 28), torch.arange(30) % 10
    acts = model(x)[:, 3].detach()
    fig = viz.neuron_dashboard(model, "1", 3, x, y, k=4)
    shown = [float(ax.get_title().split("a=")[1]) for ax in fig.axes[1:5]]
    assert shown == pytest.approx(acts.sort(descending=True).values[:4].tolist(), abs=0.051), "top-k, most active first"
    labels = [int(ax.get_title().split("y=")[1].split()[0]) for ax in fig.axes[1:5]]
    assert labels == y[acts.argsort(descending=True)[:4]].tolist()
    plt.close(fig)


def test_feature_dashboard_panels_hold_the_right_numbers():
    acts = torch.tensor([0.0, 2.0, 0.0, 5.0, 1.0])
    labels = torch.tensor([0, 1, 1, 2, 4])
    effect = torch.tensor([0.5, -1.0, 2.0])
    fig = viz.feature_dashboard(acts, effect, labels, k=3, out_names=["a", "b", "c"], title="latent 3")
    hist, counts, bars = fig.data
    assert sorted(hist.x) == [1.0, 2.0, 5.0], "the histogram shows the non-zero activations only"
    assert list(counts.y) == [0, 1, 1, 0, 1] and list(counts.x) == [0, 1, 2, 3, 4], "labels of the top 3 inputs (5, 2, 1)"
    assert list(bars.x) == ["a", "b", "c"] and list(bars.y) == [0.5, -1.0, 2.0]
    assert [c == "#d62728" for c in bars.marker.color] == [False, True, False], "negative effects in red"
    titles = [a.text for a in fig.layout.annotations]
    assert "non-zero on 60.0% of inputs" in titles[0] and "top 3 inputs" in titles[1] and fig.layout.title.text == "latent 3"


def test_as_images_accepts_the_three_layouts():
    x = torch.arange(2 * 16.0).reshape(2, 4, 4)
    assert torch.equal(viz._as_images(x), x) and torch.equal(viz._as_images(x[:, None]), x)
    assert torch.equal(viz._as_images(x.reshape(2, 16)), x)
    with pytest.raises(ValueError, match="cannot show inputs of shape \\(2, 15\\)"):
        viz._as_images(torch.zeros(2, 15))


def test_neuron_graph_cleans_up_and_labels_the_outputs(stack):
    fig = viz.neuron_graph(stack, torch.randn(1, 6), labels=["cat", "dog", "eel"])
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in stack.modules()), "hooks left on the model"
    nodes = [t for t in fig.data if t.mode != "lines"]
    assert list(nodes[-1].text) == ["cat", "dog", "eel"] and all(t.text is None for t in nodes[:-1]), \
        "labels name the output nodes only"
