"""Unit tests of the data-aware pruning baselines added to glassbox.studies.pruning (mean activation, in x out weight norms)."""
import pytest
import torch
from torch import nn

from glassbox.studies import pruning


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).eval()


def test_activation_scores_are_mean_activations(mlp):
    x = torch.randn(50, 6)
    expected = torch.relu(mlp[0](x)).mean(0)
    assert torch.allclose(pruning.activation_scores(mlp, "1", x, batch_size=7), expected, atol=1e-6), \
        "mean over every input, also when the inputs come in uneven batches"


def test_activation_scores_average_over_spatial_positions(tiny_cnn):
    x = torch.rand(10, 784)
    s = pruning.score_neurons(tiny_cnn, "activation", {"features.1": "features.0"}, x, torch.zeros(10, dtype=torch.long))
    assert s["features.1"].shape == (4,), "one score per channel, not per position"


def test_magnitude_with_readers_is_in_times_out_norm(mlp):
    x, y = torch.randn(5, 6), torch.zeros(5, dtype=torch.long)
    plain = pruning.score_neurons(mlp, "magnitude", {"1": "0"}, x, y)["1"]
    both = pruning.score_neurons(mlp, "magnitude", {"1": "0"}, x, y, readers={"1": "2"})["1"]
    assert torch.allclose(plain, mlp[0].weight.norm(dim=1)), "without readers: incoming norms only"
    assert torch.allclose(both, mlp[0].weight.norm(dim=1) * mlp[2].weight.norm(dim=0)), \
        "outgoing norm is the norm of the reader's column for the neuron (dim 0), not its row"
    with pytest.raises(TypeError, match="nn.Linear"):
        pruning.outgoing_norms(mlp, "1")


def test_absolute_ablation_counts_changes_of_either_sign(mlp):
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(3))
    signed = pruning.ablation_scores(mlp, "1", x, y)
    absolute = pruning.absolute_ablation_scores(mlp, "1", x, y)
    assert (absolute >= signed.abs() - 1e-6).all(), "the mean of |changes| is at least |mean change|"
    for j in range(4):
        h = torch.relu(mlp[0](x))
        h[:, j] = 0
        per_input = torch.nn.functional.cross_entropy(mlp[2](h), y, reduction="none") - \
            torch.nn.functional.cross_entropy(mlp(x), y, reduction="none")
        assert absolute[j].item() == pytest.approx(per_input.abs().mean().item(), rel=1e-5), f"neuron {j}"
