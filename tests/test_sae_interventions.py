"""Unit tests of the neuron-basis controls added to glassbox.sae for notebook 04 (neuron logit effects, neuron
interventions, switch-off drops for every unit), differential against hand-written versions, on a model glassbox did not build."""
import pytest
import torch
from torch import nn

from glassbox import sae, training


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(17)  # a seed whose model answers every class on the inputs below
    return nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).eval()


@pytest.fixture
def xy(mlp):
    x = 3 * torch.randn(200, 5, generator=torch.Generator().manual_seed(1))
    y = mlp(x).argmax(-1)  # the model's own answers: clean accuracy 1 on every class it answers
    assert len(y.unique()) == 3, "the fixture needs every class present"
    return x, y


def test_neuron_logit_effects_are_scaled_columns_of_the_reader(mlp, xy):
    x, _ = xy
    scales = torch.tensor([1.0, 2.0, 0.5, 3.0])
    got = sae.neuron_logit_effects(mlp, "1", x, scales)
    # adding s to neuron j after the ReLU changes the logits by s * W_out[:, j] (the last layer is linear)
    assert torch.allclose(got, (mlp[2].weight * scales).T, atol=1e-5), "row j should be scales[j] x column j of the reader"


def test_neuron_intervention_and_switch_off_drops_agree_with_a_hand_ablation(mlp, xy):
    x, y = xy
    for j in range(4):
        def zeroed(inp, j=j):
            h = torch.relu(mlp[0](inp))
            h[:, j] = 0
            return mlp[2](h)
        per_class = training.per_class_accuracy(zeroed(x), y, 3)
        clean = training.per_class_accuracy(mlp(x), y, 3)
        got = sae.neuron_intervention(mlp, "1", j, 0, x, y, value=5.0, n_classes=3)
        assert got["target_drop"] == pytest.approx((clean - per_class)[0].item()), f"neuron {j}: drop on class 0"
        drops = sae.switch_off_drops(mlp, "1", None, torch.tensor([0, 1, 2, 0]), x, y, 3)
        assert drops[j].item() == pytest.approx((clean - per_class)[[0, 1, 2, 0][j]].item()), f"neuron {j}: its own target class"


def y_onehot(y):
    return torch.nn.functional.one_hot(y, 3).float()  # logits that are always right


def test_switch_off_drops_for_latents_use_the_error_term(mlp, xy):
    x, y = xy
    untrained = sae.to_inference(sae.make_sae("topk", 4, 8, k=2))
    drops = sae.switch_off_drops(mlp, "1", untrained, torch.zeros(8, dtype=torch.long), x, y, 3)
    with sae.splice(mlp, "1", untrained, keep_error=True):
        assert torch.equal(mlp(x).argmax(-1), y), "with the error term kept and no edit, the spliced model is the model"
    for j in (0, 5):
        with sae.splice(mlp, "1", untrained, edit=sae.ablate_latents([j]), keep_error=True):
            expected = (training.per_class_accuracy(y_onehot(y), y, 3) - training.per_class_accuracy(mlp(x), y, 3))[0].item()
        assert drops[j].item() == pytest.approx(expected), f"latent {j}"


def test_sae_training_progress_bar_reaches_the_end(capsys):
    acts = torch.randn(256, 4)
    sae.train_sae(sae.make_sae("topk", 4, 8, k=2), acts, n_samples=64 * 7, batch_size=64)
    err = capsys.readouterr().err
    assert "100%" in err, f"the progress bar should end at 100%: {err[-300:]}"
