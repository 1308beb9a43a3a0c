"""The run contract and the journal runner: all or nothing, bad input refused with one clear line,
nothing promoted from a run that did not reach its last cell. The runs here use a throwaway
repository (GLASSBOX_ROOT) holding one small fixture notebook, so they take seconds."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

import glassbox
from glassbox import findings
from glassbox.journal import contract, runner

KERNEL = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}


def fixture_notebook(path: Path, last: str = "glassbox.finish()") -> Path:
    """A notebook that records findings, saves a checkpoint, then runs `last` as its final cell."""
    params = nbformat.v4.new_code_cell("SMOKE = False\nSEED = 0\nN_STEPS = 10")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(metadata=KERNEL)
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 98 · fixture"),
        params,
        nbformat.v4.new_code_cell(
            "import glassbox\nfrom glassbox import findings\nfrom glassbox.journal import checkpoints\n"
            "from glassbox.studies import models\n"
            f'run = glassbox.start("{path.stem}", smoke=SMOKE, seed=SEED)\n'
            'findings.record("n_steps", N_STEPS)\nfindings.record("headline", f"ran {N_STEPS} steps")\n'
            'm = models.build_mlp({"sizes": [784, 4, 10]})\n'
            'checkpoints.save_model(m, "fixture_mlp", kind="mlp", config={"sizes": [784, 4, 10]}, metrics={},\n'
            '                       seed=SEED, train_seconds=0)\n'
            'assert checkpoints.load_card("fixture_mlp")["config"]["sizes"] == [784, 4, 10]'),
        nbformat.v4.new_code_cell(last),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def repo(tmp_path) -> Path:
    """A throwaway journal root with committed-looking findings and a checkpoint from an earlier run."""
    nb = fixture_notebook(tmp_path / "notebooks" / "98_fixture.ipynb")
    (tmp_path / "notebooks" / "findings").mkdir()
    (tmp_path / "notebooks" / "findings" / "98_fixture.json").write_text('{"n_steps": 10, "headline": "old"}\n')
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "fixture_mlp.pt").write_bytes(b"earlier weights")
    (tmp_path / "checkpoints" / "fixture_mlp.json").write_text('{"earlier": "card"}\n')
    (tmp_path / "data").mkdir()
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "build" not in p.parts and "out" not in p.parts}


def journal(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GLASSBOX_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
    env.pop(contract.ENV_STAGE, None)
    return subprocess.run([sys.executable, "-m", "glassbox.journal", "run", *args], cwd=cwd or root, env=env,
                          capture_output=True, text=True, timeout=300)


def without_kernel_logs(stderr: str) -> str:
    """`stderr` less what the kernel process logs on it (the kernel shares the runner's stderr): its '[IPKernelApp] ...'
    lines and each error its logging reports ('ERROR:tornado...' or 'ERROR:asyncio...', then the traceback up to the
    exception's line). An ipykernel shutdown race once logged a ZMQ error there in CI; it is the kernel's, not the runner's."""
    kept, block = [], False
    for line in stderr.splitlines():
        if line.startswith(("[IPKernelApp]", "ERROR:tornado", "ERROR:asyncio")):
            block = line.startswith("ERROR:")
        elif block and (line.startswith((" ", "Traceback", "During handling", "The above exception")) or not line):
            pass
        elif block:
            block = False  # the exception's own line ends the logged traceback
        else:
            kept.append(line)
    return "\n".join(kept)


def test_the_kernels_own_logged_errors_are_told_apart_from_the_runners():
    kernel = ("[IPKernelApp] WARNING | Kernel is running over TCP\nERROR:tornado.general:Uncaught exception in ZMQStream callback\n"
              "Traceback (most recent call last):\n  File \"zmqstream.py\", line 585, in _log_error\n    f.result()\n"
              "zmq.error.ZMQError: Socket operation on non-socket\n")
    assert without_kernel_logs(kernel + "error: nothing was kept") == "error: nothing was kept"
    ours = "Traceback (most recent call last):\n  File \"runner.py\", line 1, in main\nOSError: disk full\n"
    assert "Traceback" in without_kernel_logs(kernel + ours), "control: the runner's own traceback is kept"


def ending(done: subprocess.CompletedProcess) -> str:
    """The runner's last word on stderr, after checking it is one line and no traceback came with it
    (the kernel may log its own lines, and errors of its own, before it: `without_kernel_logs`)."""
    assert "Traceback" not in without_kernel_logs(done.stderr) + done.stdout, f"a traceback instead of one line:\n{done.stderr}"
    ours = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and done.stderr.strip().endswith(ours[0]), f"expected one closing error line:\n{done.stderr}"
    return ours[0]


def test_a_run_that_fails_in_its_last_cell_leaves_every_committed_file_byte_identical(repo):
    fixture_notebook(repo / "notebooks" / "98_fixture.ipynb", last="raise RuntimeError('boom')")
    before = snapshot(repo)
    done = journal(repo, "98", "-p", "N_STEPS=3")
    assert done.returncode == 1, done.stderr
    assert snapshot(repo) == before, "a failed run changed committed files"
    error = ending(done)
    assert "cell 4" in error and "RuntimeError: boom" in error, error
    failed = repo / error.split("the failed copy: ")[1]
    assert failed.is_file() and "boom" in failed.read_text(), "the line must name the failed copy"
    staged = json.loads((repo / "build/stage/98_fixture/findings/98_fixture.json").read_text())
    assert staged["n_steps"] == 3, "the run wrote its findings to the staging folder, not to notebooks/findings"


def test_a_run_that_succeeds_promotes_findings_checkpoint_and_notebook(repo):
    done = journal(repo, "98", "-p", "N_STEPS=3")
    assert done.returncode == 0, done.stderr
    assert json.loads((repo / "notebooks/findings/98_fixture.json").read_text())["n_steps"] == 3
    card = json.loads((repo / "checkpoints/fixture_mlp.json").read_text())
    assert card["config"] == {"sizes": [784, 4, 10]}, "the new checkpoint must replace the earlier one"
    executed = nbformat.read(repo / "notebooks/98_fixture.ipynb", as_version=4)
    assert executed.cells[-1].execution_count, "the committed notebook must be the executed one"


def test_out_redirects_everything_and_smoke_never_writes_the_repository(repo):
    before = snapshot(repo)
    assert journal(repo, "98", "--out", str(repo / "build" / "out")).returncode == 0
    assert journal(repo, "98", "--smoke").returncode == 0
    assert snapshot(repo) == before, "--out and --smoke runs must leave the committed files alone"
    assert {"98_fixture.ipynb", "findings", "checkpoints"} <= {p.name for p in (repo / "build/out").iterdir()}
    assert (repo / "build/out/checkpoints/fixture_mlp.pt").is_file()


def test_a_relative_out_is_resolved_where_the_command_runs(repo, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    done = journal(repo, "98", "--smoke", "--out", "rel", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "rel/findings/98_fixture.json").is_file() and not (repo / "notebooks/rel").exists()


@pytest.mark.parametrize("where", [".", "checkpoints", "notebooks/x"])
def test_out_inside_the_repository_is_refused_except_under_build(repo, where):
    before = snapshot(repo)
    done = journal(repo, "98", "--smoke", "--out", str(repo / where))
    assert done.returncode == 1 and "is inside the repository" in ending(done), done.stderr
    assert snapshot(repo) == before


def test_a_notebook_that_never_reaches_finish_is_not_kept(repo):
    fixture_notebook(repo / "notebooks" / "98_fixture.ipynb", last="x = 1")
    before = snapshot(repo)
    done = journal(repo, "98")
    assert done.returncode == 1 and "never reached glassbox.finish()" in ending(done)
    assert snapshot(repo) == before


@pytest.mark.parametrize("args, message", [
    (["-p", "SMOKE=True"], "SMOKE is set by --smoke alone"),
    (["--smoke", "-p", "SMOKE=False"], "SMOKE is set by --smoke alone"),
    (["-p", "N_STEPS=0"], "must be > 0"),
    (["-p", "N_STEP=3"], "no parameter 'N_STEP'"),
    (["-p", "N_STEPS=ten"], "must be int"),
    (["--smoke", "-p", "SEED=-1"], "SEED must be an int in 0..2**32-1"),
])
def test_bad_parameters_are_refused_in_one_line_naming_the_value(repo, args, message):
    before = snapshot(repo)
    done = journal(repo, "98", *args)
    assert done.returncode == 1 and message in ending(done), done.stderr
    assert snapshot(repo) == before


def test_check_parameters_reads_literals_without_eval(tmp_path):
    nb = fixture_notebook(tmp_path / "97_x.ipynb")
    cells = nbformat.read(nb, as_version=4)
    cells.cells[1].source += "\nEVIL = __import__('os').getcwd()"
    nbformat.write(cells, nb)
    with pytest.raises(ValueError, match="EVIL.*not a literal"):
        runner.check_parameters(nb, {"EVIL": "x"})
    runner.check_parameters(nb, {"N_STEPS": 3, "SEED": 1})


def test_command_line_parameters_are_literals_and_malformed_ones_are_refused():
    assert runner.parse_param("N_STEPS=500") == ("N_STEPS", 500)
    assert runner.parse_param("LR=1e-3") == ("LR", 0.001)
    assert runner.parse_param("NAME=relu1") == ("NAME", "relu1")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        runner.parse_param("N_STEPS")


@pytest.fixture
def no_run(monkeypatch):
    monkeypatch.setattr(contract, "_current", None)
    monkeypatch.delenv(contract.ENV_STAGE, raising=False)
    yield
    contract._current = None


def test_findings_go_to_the_staging_folder_and_refuse_bad_values(no_run, tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="glassbox.start"):
        findings.record("x", 1)
    monkeypatch.setenv(contract.ENV_STAGE, str(tmp_path))
    monkeypatch.setenv(contract.ENV_SMOKE, "1")
    run = glassbox.start("99_test", smoke=True, seed=0)
    assert run.findings_dir == tmp_path / "findings" and run.checkpoint_dir == tmp_path / "checkpoints"
    findings.record("acc", torch.tensor(0.25))
    findings.record("per_class", {0: np.float32(0.5)})
    assert findings.load("99_test", run.findings_dir) == {"threads": contract.DEFAULT_THREADS, "acc": 0.25,
                                                         "per_class": {"0": 0.5}}
    with pytest.raises(ValueError, match="non-finite"):
        findings.record("bad", float("nan"))
    with pytest.raises(ValueError, match="identifier"):
        findings.record("two words", 1)
    assert findings.markdown("acc {acc:.0%}, class 0 {per_class[0]}").data == "acc 25%, class 0 0.5"
    findings.record("by_seed", [0.123456, -0.0558])
    assert findings.markdown("{by_seed:.2f} | {per_class:.0%} | {by_seed}").data == \
        "&#91;0.12, -0.06&#93; | {&#39;0&#39;: 50%} | &#91;0.123456, -0.0558&#93;", \
        "a format spec on a list or dict rounds each value for display; without one the value shows whole"
    with pytest.raises(KeyError, match="has not recorded"):
        findings.markdown("{nope}")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"smoke": "yes"}, TypeError, "SMOKE must be True or False"),
    ({"smoke": True, "seed": 1.5}, ValueError, "SEED must be an int"),
    ({"smoke": True, "seed": -1}, ValueError, "SEED must be an int"),
    ({"smoke": True, "threads": 0}, ValueError, "threads must be a positive int"),
])
def test_start_refuses_bad_parameters(no_run, kwargs, error, message):
    with pytest.raises(error, match=message):
        glassbox.start("99_test", **kwargs)


def test_start_refuses_a_smoke_flag_that_disagrees_with_the_runner(no_run, tmp_path, monkeypatch):
    monkeypatch.setenv(contract.ENV_STAGE, str(tmp_path))
    monkeypatch.setenv(contract.ENV_SMOKE, "0")
    with pytest.raises(ValueError, match="--smoke flag alone"):
        glassbox.start("99_test", smoke=True)


def test_start_sets_and_records_the_threads(no_run, tmp_path, monkeypatch):
    monkeypatch.setenv(contract.ENV_STAGE, str(tmp_path))
    before = torch.get_num_threads()
    try:
        run = glassbox.start("99_test", smoke=False, threads=3)
        assert torch.get_num_threads() == 3 and run.values["threads"] == 3
        run = glassbox.start("99_test", smoke=False)
        assert torch.get_num_threads() == contract.DEFAULT_THREADS == run.values["threads"]
    finally:
        torch.set_num_threads(before)


def test_smoke_threads_from_the_environment_apply_to_smoke_runs_only(no_run, tmp_path, monkeypatch):
    """$GLASSBOX_SMOKE_THREADS (set by the tests when two workers share the cores) is a smoke run's default; a full run and
    an explicit `threads=` ignore it; a bad value is refused with what to write."""
    monkeypatch.setenv(contract.ENV_STAGE, str(tmp_path))
    monkeypatch.setenv(contract.ENV_SMOKE_THREADS, "1")
    before = torch.get_num_threads()
    try:
        assert glassbox.start("99_test", smoke=True).values["threads"] == 1 == torch.get_num_threads()
        assert glassbox.start("99_test", smoke=True, threads=3).values["threads"] == 3
        assert glassbox.start("99_test", smoke=False).values["threads"] == contract.DEFAULT_THREADS, "control: a full run keeps the default"
        monkeypatch.setenv(contract.ENV_SMOKE_THREADS, "two")
        with pytest.raises(ValueError, match="positive whole number"):
            glassbox.start("99_test", smoke=True)
    finally:
        torch.set_num_threads(before)


def test_finish_by_hand_keeps_results_only_when_asked_and_never_a_smoke_run(no_run, tmp_path, monkeypatch):
    from glassbox.journal import paths

    monkeypatch.setattr(paths, "FINDINGS_DIR", tmp_path / "committed" / "findings")
    monkeypatch.setattr(paths, "CHECKPOINT_DIR", tmp_path / "committed" / "checkpoints")
    monkeypatch.setattr(paths, "BUILD_DIR", tmp_path / "build")
    glassbox.start("99_test", smoke=True)
    findings.record("a", 1)
    glassbox.finish()
    with pytest.raises(ValueError, match="smoke run .*never kept"):
        glassbox.finish(keep=True)
    assert not (tmp_path / "committed").exists(), "a smoke run by hand must not be promoted"
    run = glassbox.start("99_test", smoke=False)
    assert run.stage != tmp_path and not run.managed
    findings.record("a", 2)
    glassbox.finish()
    assert not (tmp_path / "committed").exists(), "a full run by hand is kept only when the reader asks"
    glassbox.finish(keep=True)
    assert json.loads((tmp_path / "committed/findings/99_test.json").read_text())["a"] == 2


def test_commit_executed_keeps_each_progress_bar_at_its_final_state(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=f"\rtrain: {p}%") for p in (0, 50, 100)]
    cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text="acc = 0.98\n"))
    injected = nbformat.v4.new_code_cell("SMOKE = False")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [cell, injected]
    nbformat.write(nb, tmp_path / "executed.ipynb")
    runner.prepare_executed(tmp_path / "executed.ipynb", tmp_path / "01_x.ipynb", {"findings/01_x.json": "ab"})
    committed = nbformat.read(tmp_path / "01_x.ipynb", as_version=4)
    assert len(committed.cells) == 1, "papermill's injected-parameters cell must not reach the commit"
    assert committed.metadata.glassbox.promoted == {"findings/01_x.json": "ab"}
    outputs = committed.cells[0].outputs
    assert [(o.name, o.text.strip()) for o in outputs] == [("stderr", "train: 100%"), ("stdout", "acc = 0.98")]


def test_findings_print_four_significant_digits_but_store_every_digit(no_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(contract.ENV_STAGE, str(tmp_path))
    run = glassbox.start("99_test", smoke=False, seed=0)
    findings.record("sweep", [{"fvu": 0.053848661, "l0": 32.0, "name": "k=32"}])
    assert "sweep = [{'fvu': 0.05385, 'l0': 32.0, 'name': 'k=32'}]" in capsys.readouterr().out
    assert findings.load("99_test", run.findings_dir)["sweep"][0]["fvu"] == 0.053848661
    (run.findings_dir / "99_test.json").write_text('{"cut": ')
    with pytest.raises(ValueError, match="99_test.json is not valid JSON"):
        findings.load("99_test", run.findings_dir)


def test_the_offline_guard_refuses_a_connection_and_logs_it(tmp_path):
    log = tmp_path / "attempts.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent / "offline"), "GLASSBOX_OFFLINE_LOG": str(log)}
    code = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\nexcept OSError as e:\n    print(e)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "offline guard" in done.stdout and "192.0.2.1" in log.read_text()


def test_the_machinery_has_no_import_cycle_and_the_tools_do_not_need_it():
    import ast

    src = Path(glassbox.__file__).parent
    order = ["paths", "record", "parameters", "contract", "findings", "catalogue", "lab", "library", "render",
             "runner"]
    for i, name in enumerate(order):
        tree = ast.parse((src / "journal" / f"{name}.py").read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "glassbox.journal"
                    for a in n.names} | {n.module.split(".")[-1] for n in ast.walk(tree)
                                         if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("glassbox.journal.")}
        later = imported & set(order[i:])
        assert not later, f"glassbox.journal.{name} imports {later}: imports must only go down {order}"
    for tool in ["checks", "hooks", "neurons", "probes", "attribution", "ablation", "circuits", "lens", "sae",
                 "fourier", "training", "lm"]:
        text = (src / f"{tool}.py").read_text()
        assert "glassbox.journal" not in text and "findings" not in text, f"the tool {tool} depends on the journal machinery"


@pytest.mark.parametrize("fails_after_start, calls, kept", [(False, 2, True), (True, 1, False)])
def test_a_kernel_that_dies_before_it_answers_is_started_again_and_one_that_ran_cells_is_not(
        fails_after_start, calls, kept, tmp_path, monkeypatch):
    # Two lanes' kernels started at the same moment can be given the same port and die in their startup.
    # Nothing of the notebook ran, so the runner starts the kernel again; once a cell may have run, a
    # failure is the notebook's and is never hidden by a second try (the control).
    import papermill
    tries = []

    def fake_execute(*args, on_notebook_start, **kwargs):
        tries.append(1)
        if fails_after_start:
            on_notebook_start(notebook=None)
        if len(tries) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    notebook = tmp_path / "99_x.ipynb"
    run = lambda: runner.execute(notebook, tmp_path / "out" / notebook.name, {}, tmp_path / "stage", smoke=True)  # noqa: E731
    if kept:
        run()
    else:
        with pytest.raises(runner.RunFailed, match="did not run: RuntimeError: Kernel died"):
            run()
    assert len(tries) == calls
