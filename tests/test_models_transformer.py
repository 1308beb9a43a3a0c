"""The attention-only TransformerBridge: shapes, exact state_dict / checkpoint round trips, and its training helper."""
import json

import pytest
import torch
from torch import nn

from glassbox import training
from glassbox.studies import find_median, models
from glassbox.journal import checkpoints

SMALL = {"d_model": 16, "d_head": 16, "seed": 0}


@pytest.fixture(scope="module")
def bridge() -> nn.Module:
    return models.build("attn_only_transformer", SMALL).eval()


def test_bridge_takes_int_tokens_and_returns_logits_at_every_position(bridge):
    tokens = find_median.make_lists(5)
    logits = bridge(tokens)
    assert logits.shape == (5, 7, 50), "expected logits (batch, n_ctx, d_vocab)"
    assert bridge.pos_embed.W_pos.shape == (7, 16), "positional embeddings live at model.pos_embed.W_pos"
    assert bridge.cfg.attn_only and bridge.cfg.n_layers == 1 and bridge.cfg.n_heads == 1
    assert torch.allclose(models.LastPosition(bridge)(tokens), logits[:, -1])


def test_same_seed_same_weights_other_seed_other_weights():
    a, b = (models.build("attn_only_transformer", SMALL) for _ in range(2))
    c = models.build("attn_only_transformer", SMALL | {"seed": 1})
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.state_dict()["embed.weight"], c.state_dict()["embed.weight"])


def test_state_dict_round_trip_is_exact(bridge):
    other = models.build("attn_only_transformer", SMALL | {"seed": 7}).eval()
    tokens = find_median.make_lists(64, seed=1)
    assert not torch.equal(other(tokens), bridge(tokens))
    other.load_state_dict(bridge.state_dict())
    for key, value in bridge.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), f"{key} changed in the state_dict round trip"
    assert torch.equal(other(tokens), bridge(tokens)), "same weights must give bit-identical logits"


def test_checkpoint_round_trip_rebuilds_the_bridge_from_its_card(bridge, tmp_path):
    checkpoints.save_model(bridge, "median", kind="attn_only_transformer", config=SMALL, metrics={"acc": 0.5},
                           seed=0, train_seconds=1.0, directory=tmp_path)
    card = json.loads((tmp_path / "median.json").read_text())
    assert card["kind"] == "attn_only_transformer" and card["config"] == SMALL
    loaded = checkpoints.load_model("median", tmp_path)
    assert not loaded.training, "load_model must return the model in eval mode"
    tokens = find_median.make_lists(64, seed=2)
    assert torch.equal(loaded(tokens), bridge(tokens))


def test_unknown_config_fields_are_refused():
    with pytest.raises(ValueError, match=r"AttnOnlyConfig has no fields \['d_mlp'\]"):
        models.build("attn_only_transformer", {"d_mlp": 64})


def test_last_position_wraps_any_sequence_model():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 3))  # a model glassbox did not build
    x = torch.randint(0, 10, (4, 5))
    assert torch.equal(models.LastPosition(seq)(x), seq(x)[:, -1])


def test_train_clip_grad_limits_the_update():
    def moved(clip):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        before = model.weight.detach().clone()
        x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        training.train(model, training.minibatches(x, y, 64), steps=5, lr=0.1, clip_grad=clip)
        return (model.weight - before).abs().max().item()
    assert moved(1e-12) < 1e-3 < moved(None), "clip_grad must clip the gradient norm before the step"


def test_train_list_model_learns_find_min_quickly():
    x = find_median.make_lists(2000, seed=9)
    model, history = find_median.train_list_model("min", steps=200, batch_size=256, lr=2e-2, config=SMALL,
                                               eval_every=50)
    acc = training.accuracy(models.LastPosition(model), x, find_median.list_targets(x, "min"))
    assert acc > 0.9, f"Find-Min reached only {acc:.2f} after 200 steps: is the loss taken at the last position?"
    assert not model.training and len(history.column("loss")) == 5
