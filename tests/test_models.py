"""Unit tests of glassbox.studies.models: the MLP against a hand-written forward, configs, the registry, small helpers."""
import pytest
import torch
from torch import nn

from glassbox.studies import models


def test_mlp_forward_is_normalise_then_linear_relu_layers():
    torch.manual_seed(0)
    model = models.build_mlp({"sizes": [4, 3, 2, 5], "pixel_mean": 0.5, "pixel_std": 0.25})
    assert [n for n, _ in model.named_children()] == ["normalize", "fc1", "relu1", "fc2", "relu2", "out"]
    assert model.hidden_names == ["relu1", "relu2"]
    assert (model.fc1.in_features, model.fc1.out_features, model.fc2.out_features, model.out.out_features) == (4, 3, 2, 5)
    x = torch.rand(6, 2, 2)
    h = (x.reshape(6, 4) - 0.5) / 0.25
    expected = model.out(torch.relu(model.fc2(torch.relu(model.fc1(h)))))
    assert torch.allclose(model(x), expected, atol=1e-6), "(x - pixel_mean) / pixel_std, then Linear + ReLU per hidden layer"
    assert isinstance(model.cfg, models.MLPConfig) and model.cfg.sizes == (4, 3, 2, 5), "lists in a config become tuples"


def test_normalize_refuses_the_wrong_number_of_pixels():
    norm = models.Normalize(4, 0.0, 1.0)
    assert torch.equal(norm(torch.arange(8.0).reshape(2, 2, 2)), torch.arange(8.0).reshape(2, 4))
    with pytest.raises(ValueError, match="expected images of 4 pixels.*got a tensor of shape \\(2, 5\\)"):
        norm(torch.rand(2, 5))


def test_default_mlp_is_the_journals_784_128_64_10():
    model = models.build("mlp", {})
    assert model.cfg == models.MLPConfig() and model.fc1.in_features == 784 and model.out.out_features == 10
    assert models.n_params(model) == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10


def test_config_errors_and_the_registry():
    with pytest.raises(ValueError, match=r"MLPConfig has no fields \['width'\]; known fields: \['pixel_mean'"):
        models.build_mlp({"width": 3})
    with pytest.raises(KeyError, match=r"unknown model kind 'cnn'; registered kinds: \['attn_only_transformer', 'mlp'"):
        models.build("cnn", {})
    assert set(models.BUILDERS) >= {"mlp", "attn_only_transformer", "transformer"}


def test_config_dict_turns_tuples_into_lists_and_round_trips():
    cfg = models.MLPConfig(sizes=(10, 5, 2), pixel_std=0.5)
    d = models.config_dict(cfg)
    assert d == {"sizes": [10, 5, 2], "pixel_mean": 0.1307, "pixel_std": 0.5}
    assert models.build_mlp(d).cfg == cfg


def test_n_params_counts_only_trainable_parameters():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    assert models.n_params(model) == 8 + 3
    model[0].weight.requires_grad_(False)
    assert models.n_params(model) == 2 + 3


def test_last_position_returns_the_last_logits():
    logits = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(models.LastPosition(nn.Identity())(logits), logits[:, -1])


def test_config_defaults_are_the_documented_ones():
    """Checkpoint cards may rely on these defaults: changing one silently changes what a card rebuilds."""
    from dataclasses import asdict

    assert asdict(models.MLPConfig()) == {"sizes": (784, 128, 64, 10), "pixel_mean": 0.1307, "pixel_std": 0.3081}
    assert asdict(models.AttnOnlyConfig()) == {"n_layers": 1, "n_heads": 1, "d_model": 32, "d_head": 32, "d_vocab": 50,
                                               "n_ctx": 7, "normalization_type": "LN", "seed": 0}
    assert asdict(models.TransformerConfig()) == {"n_layers": 2, "n_heads": 4, "d_model": 128, "d_head": 32, "d_mlp": 512,
                                                  "d_vocab": 65, "n_ctx": 128, "attn_only": False, "act_fn": "gelu",
                                                  "normalization_type": "LN", "seed": 0}


def test_mlp_with_three_hidden_layers_and_a_scalar_input():
    model = models.build_mlp({"sizes": [4, 3, 3, 2, 5]})
    assert model.hidden_names == ["relu1", "relu2", "relu3"]
    assert [(m.in_features, m.out_features) for m in (model.fc1, model.fc2, model.fc3, model.out)] == [(4, 3), (3, 3), (3, 2), (2, 5)]
    with pytest.raises(ValueError, match="got an empty one of shape \\(\\)"):
        model(torch.tensor(0.5))
