"""glassbox.studies.sae_controls: the controls notebook 04 holds its SAEs to, on a small model built here."""
import pytest
import torch
from torch import nn

from glassbox import sae, training
from glassbox.studies import sae_controls


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.relu1, self.fc2 = nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3)

    def forward(self, x):
        return self.fc2(self.relu1(self.fc1(x)))


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = TinyMLP().eval()
    x = torch.randn(300, 6)
    with torch.no_grad():
        y = model(x).argmax(-1)  # the model's own answers: clean accuracy 1
    return model, x, y


def test_keep_largest_keeps_each_rows_k_largest():
    f = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 5.0, 4.0, 6.0]])
    assert torch.equal(sae_controls.keep_largest(2)(f), torch.tensor([[3.0, 0.0, 2.0, 0.0], [0.0, 5.0, 0.0, 6.0]]))
    with pytest.raises(ValueError, match="at least 5 units"):
        sae_controls.keep_largest(5)(f)
    with pytest.raises(ValueError, match="k"):
        sae_controls.keep_largest(0)


def test_largest_neurons_all_units_is_the_layer_and_fewer_cost_accuracy(setup):
    model, x, y = setup
    whole = sae_controls.largest_neurons(model, "relu1", x, y, 12)
    assert whole["fvu"] == 0 and whole["spliced_accuracy"] == 1.0
    one = sae_controls.largest_neurons(model, "relu1", x, y, 1)
    assert one["l0"] <= 1 and one["fvu"] > 0
    acts = sae.collect_activations(model, "relu1", x)
    assert one["fvu"] == pytest.approx(sae.fvu(acts, sae_controls.keep_largest(1)(acts)))  # differential: the same cut by hand
    with torch.no_grad():
        by_hand = (model.fc2(sae_controls.keep_largest(1)(model.relu1(model.fc1(x)))).argmax(-1) == y).float().mean().item()
    assert one["spliced_accuracy"] == pytest.approx(by_hand)


def test_best_on_validation_chooses_on_validation_and_reports_on_report(setup):
    model, x, y = setup
    targets = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(1))
    val, report = (x[:150], y[:150]), (x[150:], y[150:])
    best, drops = sae_controls.best_on_validation(model, "relu1", None, targets, val, report, n_classes=3)
    assert torch.equal(drops["validation"], sae.switch_off_drops(model, "relu1", None, targets, *val, 3))
    j = int(drops["validation"].argmax())
    assert best["unit"] == j and best["digit"] == int(targets[j]) and best["n_units"] == 12
    assert best["report_drop"] == drops["report"][j].item(), "the report number must come from the report split"
    assert best["rank_on_report"] == int((drops["report"] > drops["report"][j]).sum()) + 1
    with pytest.raises(ValueError, match="pair"):
        sae_controls.best_on_validation(model, "relu1", None, targets, val, (x,), n_classes=3)
