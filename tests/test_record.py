"""The record cannot be torn, swapped or forged: promotion is all or nothing across files even when the
process is killed between two renames, a full disk changes nothing, two runs of one notebook are refused,
a checkpoint copied over another or edited is refused, and every committed findings file and checkpoint
is the one its executed notebook promoted (issue 23)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch

from glassbox.studies import models
from glassbox.journal import checkpoints
from glassbox.journal import paths, record, runner
from test_run_contract import ending, fixture_notebook, journal, repo, snapshot  # noqa: F401  (repo: a fixture)

# A promotion of three targets (two files and a folder, one of them new), driven in a child process whose
# os.replace is wrapped: at its n-th call the child stops by `signal` (SIGKILL: no clean-up is possible).
CHILD = """
import os, signal, sys
from pathlib import Path
from glassbox.journal import record, runner
runner.interruptible()  # as `python -m glassbox.journal run` does: SIGINT interrupts, however the tests were started
n, sig, root = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
real, calls = os.replace, [0]
def replace(a, b):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), sig)
    real(a, b)
record.os.replace = replace
moves = [(root / "new/a.json", root / "record/a.json"), (root / "new/b.pt", root / "record/b.pt"),
         (root / "new/folder", root / "record/folder"), (root / "new/c.txt", root / "record/c.txt")]
try:
    record.promote(moves, root / "control")
    print("promoted", calls[0])
except KeyboardInterrupt:
    print("interrupted after promotion", calls[0])
"""


def scene(root: Path) -> None:
    for side, text in (("record", "old"), ("new", "new")):
        (root / side / "folder").mkdir(parents=True)
        (root / side / "a.json").write_text(text)
        (root / side / "b.pt").write_text(text)
        (root / side / "folder" / "w").write_text(text)
    (root / "new" / "c.txt").write_text("new")  # a target that does not exist yet


def state(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root / "record")): p.read_text() for p in sorted((root / "record").rglob("*"))
            if p.is_file()}


OLD = {"a.json": "old", "b.pt": "old", "folder/w": "old"}
NEW = {"a.json": "new", "b.pt": "new", "folder/w": "new", "c.txt": "new"}


def promote_in_child(root: Path, n: int, sig: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, str(n), str(sig), str(root)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("n", range(1, 12))
def test_a_kill_at_any_rename_is_completed_or_rolled_back_by_the_next_run(tmp_path, n):
    scene(tmp_path)
    done = promote_in_child(tmp_path, n, signal.SIGKILL)
    if done.returncode == 0:  # n is past the promotion's last rename: nothing was killed
        assert state(tmp_path) == NEW and not (tmp_path / "control" / record.RECORD).exists()
        return
    assert done.returncode == -signal.SIGKILL
    torn = record.pending(tmp_path / "control")
    if torn is None:  # killed while writing the recovery record itself: nothing was touched yet
        assert state(tmp_path) == OLD
        return
    with pytest.raises(record.Torn, match="glassbox.journal recover"):
        record.refuse_if_torn(tmp_path / "control")
    said = record.recover(tmp_path / "control")
    assert state(tmp_path) in (OLD, NEW), f"torn after recovery ({said}): {state(tmp_path)}"
    assert state(tmp_path) == (NEW if torn["state"] == "committed" else OLD)
    leftovers = [p.name for p in (tmp_path / "record").iterdir() if p.name.startswith(".")]
    assert not leftovers and record.pending(tmp_path / "control") is None


def test_ctrl_c_during_promotion_waits_until_every_file_is_in_place(tmp_path):
    scene(tmp_path)
    done = promote_in_child(tmp_path, 3, signal.SIGINT)
    assert "interrupted after promotion" in done.stdout, done.stdout + done.stderr
    assert state(tmp_path) == NEW and record.pending(tmp_path / "control") is None


def test_a_full_disk_during_promotion_changes_nothing_and_leaves_no_copy(tmp_path, monkeypatch):
    scene(tmp_path)
    real, calls = shutil.copyfile, []

    def full(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", full)
    moves = [(tmp_path / "new" / n, tmp_path / "record" / n) for n in ("a.json", "b.pt", "c.txt")]
    with pytest.raises(OSError, match="No space"):
        record.promote(moves, tmp_path / "control")
    assert state(tmp_path) == OLD
    assert not [p for p in (tmp_path / "record").iterdir() if p.name.startswith(".")]
    assert record.pending(tmp_path / "control") is None


def test_the_runner_says_in_one_line_that_nothing_was_kept_when_the_disk_is_full(repo):
    # findings/ is a file where the runner expects a folder: writing there fails, as on a full disk, after
    # the checkpoint's copies were made
    before = snapshot(repo)
    target = repo / "build" / "out"
    target.mkdir(parents=True)
    (target / "findings").write_text("in the way")
    done = journal(repo, "98", "--out", str(target))
    assert done.returncode == 1, done.stderr
    line = ending(done)
    assert "could not be written" in line and "nothing was kept" in line, line
    assert not (target / "checkpoints" / "fixture_mlp.pt").exists(), "a checkpoint kept though the run was not"
    assert not (target / "98_fixture.ipynb").exists()
    assert not [p for p in target.rglob(".*") if ".new-" in p.name or ".old-" in p.name]
    assert snapshot(repo) == before


def test_two_runs_of_one_notebook_are_refused_naming_the_other(repo):
    before = snapshot(repo)
    with record.lock(repo / "build" / "locks" / "98_fixture.lock", "notebook 98_fixture"):
        done = journal(repo, "98")
    assert snapshot(repo) == before
    assert done.returncode == 1
    line = ending(done)
    assert "notebook 98_fixture is in use by another run" in line and f"pid {os.getpid()}" in line, line


def test_ctrl_c_while_a_notebook_runs_says_it_was_not_kept(repo):
    fixture_notebook(repo / "notebooks" / "98_fixture.ipynb", last="import time\ntime.sleep(60)\nglassbox.finish()")
    before = snapshot(repo)
    env = {**os.environ, "GLASSBOX_ROOT": str(repo), "PYTHONUNBUFFERED": "1"}
    # started with SIGINT ignored, as a script's background job is: the runner must stop on it all the same
    child = subprocess.Popen([sys.executable, "-m", "glassbox.journal", "run", "98"], cwd=repo, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    staged = repo / "build/stage/98_fixture/findings/98_fixture.json"
    deadline = time.monotonic() + 120
    while not staged.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "interrupted while running 98_fixture, which was not kept; nothing was kept" in err
    assert snapshot(repo) == before


def test_a_successful_run_records_what_it_promoted_and_an_edit_is_caught(repo):
    assert journal(repo, "98").returncode == 0
    targets = runner.Targets(repo / "notebooks", repo / "notebooks/findings", repo / "checkpoints", repo / "build/stage",
                             repo / "build")
    assert runner.record_problems(targets) == []
    promoted = nbformat.read(repo / "notebooks/98_fixture.ipynb", as_version=4).metadata.glassbox.promoted
    assert set(promoted) == {"findings/98_fixture.json", "checkpoints/fixture_mlp.json", "checkpoints/fixture_mlp.pt"}
    findings_file = repo / "notebooks/findings/98_fixture.json"
    findings_file.write_text(findings_file.read_text().replace('"n_steps": 10', '"n_steps": 11'))
    (repo / "checkpoints/stray.json").write_text("{}")
    problems = "\n".join(runner.record_problems(targets))
    assert "98_fixture.json differs from what 98_fixture.ipynb promoted" in problems
    assert "stray.json was promoted by no executed notebook" in problems


def test_every_committed_findings_file_and_checkpoint_is_the_one_its_notebook_promoted():
    problems = runner.record_problems()
    assert not problems, "the committed record does not belong together:\n" + "\n".join(problems)


# ---- checkpoints: swapped, edited, or from a smoke run


@pytest.fixture
def saved(tmp_path) -> Path:
    for name, seed in (("mlp_a", 0), ("mlp_b", 1)):
        torch.manual_seed(seed)
        model = models.build_mlp({"sizes": [784, 4, 10]})
        checkpoints.save_model(model, name, kind="mlp", config={"sizes": [784, 4, 10]}, metrics={"acc": 0.5 + seed},
                               seed=seed, train_seconds=1, directory=tmp_path)
    return tmp_path


def test_a_checkpoint_copied_over_another_is_refused_naming_both_files(saved):
    for suffix in (".pt", ".json"):
        shutil.copyfile(saved / f"mlp_b{suffix}", saved / f"mlp_a{suffix}")
    with pytest.raises(ValueError, match=r"mlp_a\.json is the card of checkpoint 'mlp_b', not of 'mlp_a'.*mlp_a\.pt"):
        checkpoints.load_model("mlp_a", saved)


def test_an_edited_card_metric_is_refused(saved):
    card = json.loads((saved / "mlp_a.json").read_text())
    card["metrics"]["acc"] = 0.99
    (saved / "mlp_a.json").write_text(json.dumps(card, indent=2))
    with pytest.raises(ValueError, match=r"mlp_a\.json was edited after saving"):
        checkpoints.load_model("mlp_a", saved)


def test_swapped_sae_folders_are_refused():
    (name_a, name_b) = checkpoints.available_saes()[:2]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(paths.CHECKPOINT_DIR / name_a, tmp / name_b)
        with pytest.raises(ValueError, match=f"is the card of checkpoint '{name_a}', not of '{name_b}'"):
            checkpoints.load_sae(name_b, tmp)


def test_every_committed_checkpoint_passes_its_own_checks():
    for name in checkpoints.available():
        checkpoints.load_card(name)
    for name in checkpoints.available_saes():
        checkpoints.load_sae_card(name)


def test_loading_from_the_record_refuses_while_a_promotion_is_torn(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "BUILD_DIR", tmp_path)
    (tmp_path / record.RECORD).write_text(json.dumps({"id": "x", "state": "prepared", "moves": []}))
    with pytest.raises(record.Torn, match="recover"):
        checkpoints.load_model("mnist_mlp")
    assert "rolled back" in record.recover(tmp_path)
    checkpoints.load_model("mnist_mlp")


def test_a_smoke_runs_checkpoint_is_refused_outside_smoke_runs(saved, monkeypatch):
    from glassbox.journal import contract

    smoke = contract.Run(stem="99_x", smoke=True, seed=0, threads=1, stage=saved / "stage", managed=True)
    monkeypatch.setattr(contract, "_current", smoke)
    checkpoints.save_model(models.build_mlp({"sizes": [784, 4, 10]}), "tiny", kind="mlp",
                           config={"sizes": [784, 4, 10]}, metrics={}, seed=0, train_seconds=0, directory=saved)
    checkpoints.load_model("tiny", saved)  # a smoke run may use its own tiny models
    monkeypatch.setattr(contract, "_current", None)
    with pytest.raises(ValueError, match=r"tiny\.json comes from a smoke run"):
        checkpoints.load_model("tiny", saved)


def test_a_rerun_that_loads_a_checkpoint_carries_its_record_forward_only_while_the_file_is_unchanged(tmp_path):
    """01 with TRAIN=False or 02 with its width models loaded promote no checkpoint; the committed notebook's
    record of it is carried into the new one, but only for files that are still what it promoted."""
    targets = runner.Targets(tmp_path / "notebooks", tmp_path / "notebooks/findings", tmp_path / "checkpoints",
                             tmp_path / "build/stage", tmp_path / "build")
    for folder in (targets.notebooks, targets.findings, targets.checkpoints):
        folder.mkdir(parents=True, exist_ok=True)
    (targets.checkpoints / "kept.pt").write_bytes(b"weights")
    (targets.checkpoints / "edited.pt").write_bytes(b"edited since")
    nb = nbformat.v4.new_notebook()
    nb.metadata["glassbox"] = {"promoted": {"checkpoints/kept.pt": runner._sha256(targets.checkpoints / "kept.pt"),
                                            "checkpoints/edited.pt": "0" * 64, "checkpoints/gone.pt": "1" * 64,
                                            "findings/97_x.json": "2" * 64}}
    nbformat.write(nb, targets.notebooks / "97_x.ipynb")
    carried = runner.carried_forward(targets, "97_x.ipynb", {"findings/97_x.json": "3" * 64})
    assert carried == {"checkpoints/kept.pt": runner._sha256(targets.checkpoints / "kept.pt")}
    assert runner.carried_forward(targets, "96_new.ipynb", {}) == {}, "a first run has nothing to carry"


def test_a_promotion_under_way_in_another_lane_is_waited_for_not_called_torn(tmp_path):
    # the recovery record exists while a live promotion holds the lock: a reader waits for it instead of refusing
    import threading
    control = tmp_path / "control"
    control.mkdir()
    (control / record.RECORD).write_text('{"state": "prepared", "moves": []}')
    holding = threading.Event()

    def promote():
        with record.lock(control / "promotion.lock", "the record's promotion"):
            holding.set()
            time.sleep(0.5)
            (control / record.RECORD).unlink()  # the promotion ends: its record goes

    t = threading.Thread(target=promote)
    t.start()
    holding.wait()
    record.refuse_if_torn(control, wait=10)  # returns once the promotion is over
    t.join()
    # control: the same record with no promotion holding the lock is torn, and is refused at once
    (control / record.RECORD).write_text('{"state": "prepared", "moves": []}')
    with pytest.raises(record.Torn, match="glassbox.journal recover"):
        record.refuse_if_torn(control, wait=10)


def test_a_run_started_with_sigint_ignored_is_still_interruptible():
    """`runner.interruptible` gives a process that started with SIGINT ignored (a script's background job) the
    KeyboardInterrupt handler back; the control: without it, the process keeps ignoring SIGINT."""
    probe = ("import signal, sys\nfrom glassbox.journal import runner\n{call}\n"
             "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    ignored = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
    run = lambda call: subprocess.run([sys.executable, "-c", probe.format(call=call)], capture_output=True, text=True,
                                      preexec_fn=ignored, check=True).stdout.strip()
    assert run("runner.interruptible()") == "True"
    assert run("pass") == "False", "control: the ignored SIGINT is inherited"
