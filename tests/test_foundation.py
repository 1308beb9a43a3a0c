"""Unit tests of glassbox's foundations: seeding, training, checkpoints, findings, data, hooks."""
import json

import nbformat
import numpy as np
import pytest
import torch
from torch import nn

import glassbox
from glassbox import checkpoints, data, findings, hooks, journal, models, notebook, paths, training


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
    assert hist.seconds > 0 and not model.training, "train must end in eval mode"
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
    with pytest.raises(ValueError, match="do not fit"):
        checkpoints.load_model("m", tmp_path)
    (tmp_path / "m.pt").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match its card"):
        checkpoints.load_model("m", tmp_path)
    with pytest.raises(KeyError, match="unknown model kind"):
        checkpoints.save_model(model, "x", kind="nope", config={}, metrics={}, seed=0, train_seconds=0, directory=tmp_path)


def test_findings_go_to_scratch_in_smoke_runs_and_refuse_bad_values(tmp_path, monkeypatch):
    monkeypatch.setattr(notebook, "_current", None)
    with pytest.raises(RuntimeError, match="glassbox.start"):
        findings.record("x", 1)
    monkeypatch.setenv("GLASSBOX_SMOKE_DIR", str(tmp_path))
    run = glassbox.start("99_test", smoke=True, seed=0)
    assert run.findings_dir == tmp_path / "findings" and run.checkpoint_dir == tmp_path / "checkpoints"
    findings.record("acc", torch.tensor(0.25))
    findings.record("per_class", {0: np.float32(0.5)})
    assert findings.load("99_test", run.findings_dir) == {"acc": 0.25, "per_class": {"0": 0.5}}
    assert not (paths.FINDINGS_DIR / "99_test.json").exists(), "a smoke run wrote into notebooks/findings"
    with pytest.raises(ValueError, match="non-finite"):
        findings.record("bad", float("nan"))
    with pytest.raises(TypeError, match="SMOKE must be True or False"):
        glassbox.start("99_test", smoke="yes", seed=0)
    with pytest.raises(TypeError, match="SEED must be an int"):
        glassbox.start("99_test", smoke=True, seed=1.5)
    monkeypatch.setattr(notebook, "_current", None)


def test_load_mnist_checks_shapes_and_checksum(tmp_path):
    mnist = data.load_mnist()
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_train.dtype == torch.int64 and set(mnist.y_test.unique().tolist()) == set(range(10))
    assert 0 <= mnist.x_train.min() and mnist.x_train.max() <= 1
    with pytest.raises(FileNotFoundError, match="make_mnist.py"):
        data.load_mnist(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not mnist")
    with pytest.raises(ValueError, match="corrupt.*make_mnist.py"):
        data.load_mnist(tmp_path / "bad.npz")


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


def test_notebook_parameters_are_type_checked_before_running(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    params = nbformat.v4.new_code_cell("SMOKE = False\nN_STEPS = 10\nLR = 0.1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), params]
    path = tmp_path / "00_t.ipynb"
    nbformat.write(nb, path)
    journal.check_parameters(path, {"SMOKE": True, "N_STEPS": 3, "LR": 1})
    with pytest.raises(TypeError, match="SMOKE must be bool"):
        journal.check_parameters(path, {"SMOKE": "True"})
    with pytest.raises(ValueError, match="no parameter 'STEPS'"):
        journal.check_parameters(path, {"STEPS": 3})


def test_command_line_parameters_are_literals_and_malformed_ones_are_refused():
    assert journal.parse_param("N_STEPS=500") == ("N_STEPS", 500)
    assert journal.parse_param("SMOKE=True") == ("SMOKE", True)
    assert journal.parse_param("NAME=relu1") == ("NAME", "relu1")
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        journal.parse_param("N_STEPS")


def test_a_full_run_commits_each_progress_bar_at_its_final_state(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=f"\rtrain: {p}%") for p in (0, 50, 100)]
    cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text="acc = 0.98\n"))
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "executed.ipynb")
    journal.commit_executed(tmp_path / "executed.ipynb", tmp_path / "01_x.ipynb")
    outputs = nbformat.read(tmp_path / "01_x.ipynb", as_version=4).cells[0].outputs
    assert [(o.name, o.text.strip()) for o in outputs] == [("stderr", "train: 100%"), ("stdout", "acc = 0.98")]


def test_findings_print_four_significant_digits_but_store_every_digit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GLASSBOX_SMOKE_DIR", str(tmp_path))
    run = glassbox.start("99_test", smoke=True, seed=0)
    findings.record("sweep", [{"fvu": 0.053848661, "l0": 32.0, "name": "k=32"}])
    assert "sweep = [{'fvu': 0.05385, 'l0': 32.0, 'name': 'k=32'}]" in capsys.readouterr().out
    assert findings.load("99_test", run.findings_dir)["sweep"][0]["fvu"] == 0.053848661
    monkeypatch.setattr(notebook, "_current", None)
