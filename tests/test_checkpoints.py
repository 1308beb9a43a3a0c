"""Unit tests of glassbox.journal.checkpoints beyond test_foundation: what a card holds, that edits are caught,
listing, and the SAE folder round trip."""
import hashlib
import json

import pytest
import torch

from glassbox import sae
from glassbox.studies import models
from glassbox.journal import checkpoints


def saved_mlp(tmp_path, name="tiny"):
    torch.manual_seed(0)
    model = models.build_mlp({"sizes": [784, 6, 10]})
    checkpoints.save_model(model, name, kind="mlp", config={"sizes": (784, 6, 10)}, metrics={"accuracy": 0.5},
                           seed=3, train_seconds=1.23456, directory=tmp_path)
    return model


def test_a_card_records_what_rebuilds_and_checks_the_model(tmp_path):
    model = saved_mlp(tmp_path)
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert {k: card[k] for k in ("name", "kind", "config", "metrics", "seed", "train_seconds")} == {
        "name": "tiny", "kind": "mlp", "config": {"sizes": [784, 6, 10]}, "metrics": {"accuracy": 0.5}, "seed": 3,
        "train_seconds": 1.23}
    assert card["weights_sha256"] == hashlib.sha256((tmp_path / "tiny.pt").read_bytes()).hexdigest()
    assert card["recipe_sha256"] == checkpoints.recipe_sha256("mlp", {"sizes": [784, 6, 10]})
    assert checkpoints.load_card("tiny", tmp_path) == card
    loaded = checkpoints.load_model("tiny", tmp_path)
    x = torch.rand(5, 784)
    assert not loaded.training and torch.equal(loaded(x), model(x)), "the loaded model computes what was saved"


def test_recipe_hash_ignores_key_order_and_sees_every_value():
    a = checkpoints.recipe_sha256("mlp", {"sizes": [784, 6, 10], "pixel_std": 0.3})
    assert a == checkpoints.recipe_sha256("mlp", {"pixel_std": 0.3, "sizes": [784, 6, 10]})
    assert a != checkpoints.recipe_sha256("mlp", {"sizes": [784, 7, 10], "pixel_std": 0.3})
    assert a != checkpoints.recipe_sha256("transformer", {"sizes": [784, 6, 10], "pixel_std": 0.3})


def test_an_edited_card_or_weights_file_is_refused(tmp_path):
    saved_mlp(tmp_path)
    card_path = tmp_path / "tiny.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps(card | {"config": {"sizes": [784, 6, 10], "pixel_std": 1.0}}))
    with pytest.raises(ValueError, match="was edited after saving"):
        checkpoints.load_model("tiny", tmp_path)
    card_path.write_text(json.dumps(card))
    weights = (tmp_path / "tiny.pt").read_bytes()
    (tmp_path / "tiny.pt").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(ValueError, match="sha256 differs"):
        checkpoints.load_model("tiny", tmp_path)


def test_available_lists_cards_by_name(tmp_path):
    assert checkpoints.available(tmp_path) == []
    for name in ("b_model", "a_model"):
        saved_mlp(tmp_path, name)
    assert checkpoints.available(tmp_path) == ["a_model", "b_model"]
    with pytest.raises(FileNotFoundError, match="no checkpoint named 'c_model'.*available: a_model, b_model"):
        checkpoints.load_card("c_model", tmp_path)


def test_sae_folder_round_trip(tmp_path):
    torch.manual_seed(0)
    inference = sae.to_inference(sae.make_sae("topk", 6, 12, k=3))
    path = checkpoints.save_sae(inference, "toy", config={"k": 3}, metrics={"fvu": 0.25}, seed=2, train_seconds=0.456,
                                directory=tmp_path)
    card = json.loads(path.read_text())
    assert {k: card[k] for k in ("name", "kind", "architecture", "d_in", "d_sae", "config", "metrics", "seed", "train_seconds")} == {
        "name": "toy", "kind": "sae", "architecture": "topk", "d_in": 6, "d_sae": 12, "config": {"k": 3},
        "metrics": {"fvu": 0.25}, "seed": 2, "train_seconds": 0.46}
    assert checkpoints.available_saes(tmp_path) == ["toy"] and checkpoints.load_sae_card("toy", tmp_path) == card
    loaded = checkpoints.load_sae("toy", tmp_path)
    x = torch.randn(4, 6)
    assert torch.equal(loaded.encode(x), inference.encode(x)) and torch.equal(loaded.W_dec, inference.W_dec)
    assert not loaded.training
