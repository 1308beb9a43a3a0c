"""Unit tests of glassbox's foundations: seeding, training, checkpoints, data, hooks (the run contract and
the runner: tests/test_run_contract.py)."""
import json

import nbformat
import numpy as np
import pytest
import torch
from torch import nn

import glassbox
from glassbox import hooks, training
from glassbox.studies import mnist_mlp, models
from glassbox.journal import checkpoints


def test_set_seed_makes_runs_repeat():
    glassbox.set_seed(3)
    a = (torch.rand(4), np.random.rand(2))
    glassbox.set_seed(3)
    b = (torch.rand(4), np.random.rand(2))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]), "set_seed must seed torch and numpy"


def test_train_learns_a_separable_problem_and_records_history():
    glassbox.set_seed(0)
    x = torch.randn(512, 2)
    y = (x[:, 0] * x[:, 1] > 0).long()  # XOR of signs: needs the hidden layer
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))
    before = training.accuracy(model, x, y)
    hist = training.train(model, training.minibatches(x, y, 64), steps=400, lr=1e-2, eval_every=100,
                          evaluate=lambda m: {"acc": training.accuracy(m, x, y)})
    assert hist.last("acc") > 0.9 > before + 0.2, f"accuracy {before:.2f} -> {hist.last('acc'):.2f}"
    assert [r["step"] for r in hist.records] == [0, 100, 200, 300, 399]
    assert not model.training, "train must end in eval mode"
    with pytest.raises(KeyError, match="never logged"):
        hist.last("nope")


def test_per_class_accuracy_matches_a_direct_count():
    logits = torch.tensor([[2.0, 0], [0, 1], [3, 0], [0, 2]])
    y = torch.tensor([0, 0, 1, 1])
    assert training.per_class_accuracy(logits, y).tolist() == [0.5, 0.5]


def test_mlp_takes_raw_pixels_in_any_layout_and_names_its_layers():
    model = models.build_mlp({"sizes": [784, 16, 8, 10]})
    x = torch.rand(3, 28, 28)
    assert torch.allclose(model(x), model(x.reshape(3, 784)))
    assert model.hidden_names == ["relu1", "relu2"]
    with pytest.raises(ValueError, match=r"\(batch, 28, 28\)"):
        model(torch.rand(3, 10, 10))


def test_checkpoint_round_trip_rebuilds_from_card_alone(tmp_path):
    model = models.build_mlp({"sizes": [784, 16, 10]})
    checkpoints.save_model(model, "m", kind="mlp", config=models.config_dict(model.cfg),
                           metrics={"acc": 0.5}, seed=1, train_seconds=2.0, directory=tmp_path)
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["config"]["sizes"] == [784, 16, 10] and card["seed"] == 1 and "torch" in card["versions"]
    loaded = checkpoints.load_model("m", tmp_path)
    assert not loaded.training, "load_model must return the model in eval mode"
    x = torch.rand(5, 784)
    assert torch.equal(loaded(x), model(x))


def test_checkpoint_errors_say_what_to_do(tmp_path):
    model = models.build_mlp({"sizes": [784, 16, 10]})
    checkpoints.save_model(model, "m", kind="mlp", config={"sizes": [784, 16, 10]}, metrics={}, seed=0,
                           train_seconds=0, directory=tmp_path)
    with pytest.raises(FileNotFoundError, match="available: m"):
        checkpoints.load_model("nope", tmp_path)
    card = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps(card | {"config": {"sizes": [784, 32, 10]}}))
    with pytest.raises(ValueError, match="m.json was edited after saving"):
        checkpoints.load_model("m", tmp_path)
    edited = {"sizes": [784, 32, 10]}
    forged = card | {"config": edited, "recipe_sha256": checkpoints.recipe_sha256("mlp", edited)}
    (tmp_path / "m.json").write_text(json.dumps(forged | {"card_sha256": checkpoints.card_sha256(forged)}))
    with pytest.raises(ValueError, match="do not fit"):
        checkpoints.load_model("m", tmp_path)
    (tmp_path / "m.json").write_text(json.dumps(card)[:40])
    with pytest.raises(ValueError, match="m.json is not valid JSON"):
        checkpoints.load_model("m", tmp_path)
    (tmp_path / "m.json").write_text(json.dumps({k: v for k, v in card.items() if k != "weights_sha256"}))
    with pytest.raises(ValueError, match=r"m.json lacks \['weights_sha256'\]"):
        checkpoints.load_model("m", tmp_path)
    (tmp_path / "m.json").write_text(json.dumps(card))
    (tmp_path / "m.pt").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match its card"):
        checkpoints.load_model("m", tmp_path)
    with pytest.raises(KeyError, match="unknown model kind"):
        checkpoints.save_model(model, "x", kind="nope", config={}, metrics={}, seed=0, train_seconds=0, directory=tmp_path)


def test_load_mnist_checks_shapes_and_checksum(tmp_path):
    mnist = mnist_mlp.load_mnist()
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_train.dtype == torch.int64 and set(mnist.y_test.unique().tolist()) == set(range(10))
    assert 0 <= mnist.x_train.min() and mnist.x_train.max() <= 1
    with pytest.raises(FileNotFoundError, match="make_mnist.py"):
        mnist_mlp.load_mnist(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not mnist")
    with pytest.raises(ValueError, match="corrupt.*make_mnist.py"):
        mnist_mlp.load_mnist(tmp_path / "bad.npz")


def test_capture_matches_a_manual_forward_on_a_model_glassbox_did_not_build(tiny_cnn):
    x = torch.rand(6, 28, 28)
    with hooks.capture(tiny_cnn, ["features.1", "head.2"]) as acts:
        tiny_cnn(x[:4])
        tiny_cnn(x[4:])
    manual = tiny_cnn.features[1](tiny_cnn.features[0](x.reshape(6, 1, 28, 28)))
    assert torch.allclose(acts["features.1"], manual), "captured conv activations differ from a manual forward"
    assert acts["head.2"].shape == (6, 16), "two forward passes must be joined along the batch"
    assert not tiny_cnn.features[1]._forward_hooks, "capture left a hook behind"


def test_patch_changes_outputs_and_always_removes_its_hooks(tiny_cnn):
    x = torch.rand(3, 784)
    clean = tiny_cnn(x)
    with hooks.patch(tiny_cnn, {"head.2": lambda a: torch.zeros_like(a)}):
        patched = tiny_cnn(x)
    assert torch.allclose(patched, tiny_cnn.head[3].bias.expand(3, 10)), "zeroing the last hidden layer leaves the bias"
    with pytest.raises(ZeroDivisionError), hooks.patch(tiny_cnn, {"head.2": torch.zeros(16)}):
        1 / 0
    assert torch.equal(tiny_cnn(x), clean), "a patch survived an exception"
    with pytest.raises(ValueError, match="shape"), hooks.patch(tiny_cnn, {"head.2": lambda a: a[:, :3]}):
        tiny_cnn(x)
    with pytest.raises(KeyError, match="its modules are"):
        with hooks.capture(tiny_cnn, "fc9"):
            pass




@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "x/../../y"])
def test_checkpoint_names_are_confined_to_the_checkpoint_folder(tmp_path, name):
    model = models.build_mlp({"sizes": [784, 4, 10]})
    with pytest.raises(ValueError, match="plain file names"):
        checkpoints.save_model(model, name, kind="mlp", config={}, metrics={}, seed=0, train_seconds=0, directory=tmp_path)
    with pytest.raises(ValueError, match="plain file names"):
        checkpoints.load_model(name, tmp_path)
    assert not list(tmp_path.parent.glob("x*")), "nothing may be written outside the folder"


def test_an_sae_whose_config_was_edited_is_refused(tmp_path):
    import shutil

    shutil.copytree(checkpoints.paths.CHECKPOINT_DIR / "sae_toy_topk", tmp_path / "sae_toy_topk")
    checkpoints.load_sae("sae_toy_topk", tmp_path)
    cfg = tmp_path / "sae_toy_topk" / "cfg.json"
    cfg.write_text(cfg.read_text().replace('"k": ', '"k": 1') )
    with pytest.raises(ValueError, match="cfg.json does not match"):
        checkpoints.load_sae("sae_toy_topk", tmp_path)
    card = tmp_path / "sae_toy_topk" / "card.json"
    card.write_text(card.read_text()[:30])
    with pytest.raises(ValueError, match="card.json is not valid JSON"):
        checkpoints.load_sae("sae_toy_topk", tmp_path)


def test_an_empty_batch_is_an_error_that_says_so():
    model = models.build_mlp({"sizes": [784, 4, 10]})
    with pytest.raises(ValueError, match="empty"):
        model(torch.rand(0, 28, 28))


@pytest.mark.parametrize("bad", [["fc9", "relu1"], ["relu1", "fc9"]])
def test_a_bad_module_name_anywhere_in_the_list_leaves_no_hook_behind(tiny_cnn, bad):
    names = [n.replace("relu1", "features.1") for n in bad]
    x = torch.rand(2, 784)
    clean = tiny_cnn(x)
    with pytest.raises(KeyError, match="fc9"):
        with hooks.capture(tiny_cnn, names):
            pass
    with pytest.raises(KeyError, match="fc9"):
        with hooks.patch(tiny_cnn, {n: lambda a: a * 0 for n in names}):
            pass
    assert not any(m._forward_hooks for m in tiny_cnn.modules()), "a hook was left attached"
    assert torch.equal(tiny_cnn(x), clean)
