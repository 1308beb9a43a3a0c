"""A notebook run by hand, as in JupyterLab or Colab (not under the journal runner): the reader's
parameters take effect, the committed record changes only when the reader asks
(`glassbox.finish(keep=True)`), the run's scratch folder is removed, and `make lab` opens a working
copy so that autosave never writes over a committed notebook.

Notebooks run here the way JupyterLab runs them: nbclient, cell by cell, in a kernel started in the
notebook's folder; no papermill, no runner. GLASSBOX_ROOT points the kernel at a throwaway copy of
the repository and TMPDIR at a folder of the test's own, so other runs on the machine cannot interfere.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import glassbox
from glassbox import findings, paths
from glassbox.journal import catalogue, contract, lab
from test_run_contract import fixture_notebook, no_run, repo, snapshot  # noqa: F401 (fixtures)

NOTEBOOKS = catalogue.notebooks()
PROBE = "HAND-RUN-PROBE"
# A cell run after the notebook's last one, in its kernel: what the run was, and what it wrote.
PROBE_CELL = f"""
import json as _json
from glassbox.journal import contract as _contract
_run = _contract.current()
_found = _run.findings_dir / f"{{_run.stem}}.json"
print({PROBE!r}, _json.dumps({{"smoke": _run.smoke, "managed": _run.managed, "stage": str(_run.stage),
                              "stage_exists": _run.stage.is_dir(),
                              "findings": _json.loads(_found.read_text()) if _found.is_file() else None}}))
"""


def injected_parameters(nb) -> bool:
    return any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)


def with_smoke(nb, smoke: bool):
    """`nb` with SMOKE set in its parameters cell, as a reader would type it."""
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source, n = re.subn(r"^SMOKE = (True|False)", f"SMOKE = {smoke}", params.source, count=1, flags=re.M)
    assert n == 1, f"the parameters cell sets no SMOKE:\n{params.source}"
    return nb


def run_like_jupyterlab(nb, folder: Path, root: Path, tmpdir: Path) -> tuple[list[str], dict]:
    """Execute `nb` as JupyterLab does (saved to `folder`, the kernel started there) with the journal at
    `root` and temporary folders in `tmpdir`, then the probe cell; the kernel is shut down as JupyterLab
    does when the notebook is closed. Returns each code cell's printed text and what the probe saw."""
    nb.cells.append(nbformat.v4.new_code_cell(PROBE_CELL))
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "notebook.ipynb")
    env = {**os.environ, "GLASSBOX_ROOT": str(root), "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}
    for runner_only in (contract.ENV_STAGE, contract.ENV_SMOKE):
        env.pop(runner_only, None)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute(env=env)  # returns after the kernel has been shut down
    texts = ["".join(o.get("text", "") for o in c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"]
    (line,) = [ln for ln in texts[-1].splitlines() if ln.startswith(PROBE)]
    return texts, json.loads(line[len(PROBE):])


def scratch_left(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.glob(f"{contract.SCRATCH_PREFIX}*"))


def throwaway_journal(tmp_path: Path) -> Path:
    """A copy of the repository's notebooks (with findings), checkpoints and data."""
    root = tmp_path / "journal"
    for part in ("notebooks", "checkpoints", "data"):
        shutil.copytree(paths.ROOT / part, root / part, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return root


# ---- the committed notebooks, run by hand


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_committed_notebook_lets_the_reader_set_its_parameters(nb):
    cells = nbformat.read(nb, as_version=4)
    if injected_parameters(cells):
        pytest.fail(f"notebook {nb.stem[:2]} still carries papermill's injected-parameters cell: it sets SMOKE again "
                    "after the parameters cell, so a reader's SMOKE = True is overridden (a full run instead of a "
                    "smoke run)", pytrace=False)
    code = [c for c in cells.cells if c.cell_type == "code"]
    assert code[-1].source.strip() == "glassbox.finish()", (
        f"{nb.name}'s last cell must be exactly glassbox.finish() (keep=True there would replace the committed "
        f"record from every hand run), found {code[-1].source.strip()!r}")


@pytest.mark.notebook
def test_notebook_00_run_by_hand_with_smoke_set_runs_smoke_and_changes_nothing_committed(tmp_path, offline_log):
    source = catalogue.notebooks(["00"])[0]
    nb = nbformat.read(source, as_version=4)
    if injected_parameters(nb):
        pytest.fail(f"notebook {source.stem[:2]} still carries papermill's injected-parameters cell (SMOKE = False "
                    "after the parameters cell): the reader's SMOKE = True would be overridden and a full run would "
                    "start", pytrace=False)
    check_reader_smoke_run(with_smoke(nb, True), tmp_path)


def check_reader_smoke_run(nb, tmp_path: Path) -> None:
    """Run `nb` (SMOKE = True set in its parameters cell) by hand against a throwaway journal and check
    that it ran in smoke, kept nothing, and left no scratch folder once its kernel exited."""
    root, tmpdir = throwaway_journal(tmp_path), tmp_path / "tmp"
    tmpdir.mkdir()
    before = snapshot(root)
    texts, seen = run_like_jupyterlab(nb, tmp_path / "lab", root, tmpdir)
    printed = "\n".join(texts)
    assert "SMOKE (tiny sizes" in printed, "glassbox.start did not report a smoke run: the reader's SMOKE = True was lost"
    assert seen["smoke"] is True and seen["managed"] is False and seen["stage_exists"], seen
    assert seen["findings"] and seen["findings"].get("headline"), "the smoke run recorded no findings in its scratch folder"
    assert Path(seen["stage"]).parent == tmpdir, f"the scratch folder is not a temporary folder: {seen['stage']}"
    assert "(smoke run); the committed findings and checkpoints are unchanged" in texts[-2], texts[-2]
    assert snapshot(root) == before, "a hand run changed committed files"
    assert scratch_left(tmpdir) == [], f"scratch folders left after the kernel exited: {scratch_left(tmpdir)}"


# ---- keeping a full run's results, by hand


@pytest.mark.parametrize("keep", [False, True])
def test_a_full_run_by_hand_is_kept_only_with_keep_true(repo, tmp_path_factory, keep):
    work = tmp_path_factory.mktemp("hand")  # outside the throwaway journal `repo`
    tmpdir = work / "tmp"
    tmpdir.mkdir()
    last = "glassbox.finish(keep=True)" if keep else "glassbox.finish()"
    nb = with_smoke(nbformat.read(fixture_notebook(work / "nb" / "98_fixture.ipynb", last=last), as_version=4), False)
    nb.cells[1].source = nb.cells[1].source.replace("N_STEPS = 10", "N_STEPS = 7")
    before = snapshot(repo)
    texts, seen = run_like_jupyterlab(nb, work / "lab", repo, tmpdir)
    assert seen["smoke"] is False and seen["managed"] is False
    if keep:
        assert json.loads((repo / "notebooks/findings/98_fixture.json").read_text())["n_steps"] == 7
        assert json.loads((repo / "checkpoints/fixture_mlp.json").read_text())["config"] == {"sizes": [784, 4, 10]}
        assert texts[-2].startswith("98_fixture: finished; kept ") and "checkpoints/fixture_mlp.pt" in texts[-2], texts[-2]
        assert "glassbox.journal verify` reports the mismatch" in texts[-2], "say that the notebook no longer matches"
        assert not seen["stage_exists"], "after finish(keep=True) the scratch folder must be gone"
    else:
        assert snapshot(repo) == before, "finish() by hand replaced the committed record"
        line = texts[-2].strip()
        assert len(line.splitlines()) == 1 and seen["stage"] in line, f"one line naming the scratch folder: {line}"
        assert "glassbox.finish(keep=True)" in line and "python -m glassbox.journal run 98" in line, line
        assert "until this kernel exits" in line and seen["stage_exists"], line
    assert scratch_left(tmpdir) == []


# ---- the scratch folder's life


@pytest.fixture
def own_tmp(tmp_path, monkeypatch) -> Path:
    """tempfile's folder for this test alone (in this process)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_running_the_notebook_again_in_the_kernel_removes_the_last_scratch_folder(no_run, own_tmp, monkeypatch):
    monkeypatch.setattr(paths, "FINDINGS_DIR", own_tmp.parent / "committed" / "findings")
    monkeypatch.setattr(paths, "CHECKPOINT_DIR", own_tmp.parent / "committed" / "checkpoints")
    monkeypatch.setattr(paths, "BUILD_DIR", own_tmp.parent / "build")
    first = glassbox.start("99_test", smoke=False)
    findings.record("a", 1)
    glassbox.finish()
    assert first.stage.is_dir() and first.stage.parent == own_tmp, "finish() keeps the results in the scratch folder"
    second = glassbox.start("99_test", smoke=False)
    assert not first.stage.exists() and second.stage.is_dir(), "a second start must remove the first run's folder"
    findings.record("a", 2)
    glassbox.finish(keep=True)
    assert not second.stage.exists(), "finish(keep=True) must remove the scratch folder it promoted"
    with pytest.raises(RuntimeError, match="scratch folder .* is gone"):
        glassbox.finish(keep=True)
    glassbox.start("99_test", smoke=False)
    with pytest.raises(TypeError, match="keep must be True or False"):
        glassbox.finish(keep="yes")


def test_a_runner_stage_is_never_removed_by_a_hand_run(no_run, own_tmp, monkeypatch):
    staged = own_tmp / "runner-stage"
    monkeypatch.setenv(contract.ENV_STAGE, str(staged))
    glassbox.start("99_test", smoke=False)
    monkeypatch.delenv(contract.ENV_STAGE)
    glassbox.start("99_test", smoke=True)
    assert staged.is_dir(), "the runner's staging folder is the runner's to remove"


def in_python(code: str, tmpdir: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    env.pop(contract.ENV_STAGE, None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, **kw)


def test_scratch_folders_are_removed_at_exit_and_after_a_killed_kernel(tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    foreign = tmpdir / "glassbox-smoke-abc"  # the runner's, or anything else: not a hand run's, never touched
    foreign.mkdir()
    start = 'import glassbox; run = glassbox.start("99_test", smoke=True); print("STAGE", run.stage, flush=True)\n'
    done = in_python(start + "glassbox.finish()", tmpdir)
    assert done.returncode == 0, done.stderr
    assert scratch_left(tmpdir) == [foreign.name], "the scratch folder must go when the process exits"

    forked = in_python(start + "import os, sys\nif os.fork() == 0:\n    sys.exit(0)\nos.wait()\n"
                       "print(run.stage.is_dir())", tmpdir)
    assert forked.stdout.split()[-1] == "True", "a forked child (a data loader worker) removed its parent's folder"

    killed = in_python(start + "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", tmpdir)
    assert killed.returncode == -signal.SIGKILL
    (abandoned,) = [Path(line[6:]) for line in killed.stdout.splitlines() if line.startswith("STAGE ")]
    assert abandoned.is_dir(), "a killed process runs no exit handler"
    assert in_python(start, tmpdir).returncode == 0
    assert not abandoned.exists(), "the next hand run must remove a folder whose process is gone"
    assert scratch_left(tmpdir) == [foreign.name]


# ---- make lab


def test_make_lab_opens_a_working_copy_and_keeps_the_readers_edits(tmp_path, monkeypatch, capsys):
    root = tmp_path / "journal"
    (root / "notebooks").mkdir(parents=True)
    for nb in NOTEBOOKS[:2]:
        shutil.copy(nb, root / "notebooks" / nb.name)
    shutil.copy(paths.NOTEBOOK_DIR / "GLOSSARY.md", root / "notebooks" / "GLOSSARY.md")
    monkeypatch.setattr(paths, "ROOT", root)
    monkeypatch.setattr(paths, "NOTEBOOK_DIR", root / "notebooks")
    monkeypatch.setattr(paths, "BUILD_DIR", root / "build")
    first, second = (root / "notebooks" / nb.name for nb in NOTEBOOKS[:2])

    folder, stale = lab.working_copy()
    assert folder == root / "build" / "lab" and stale == []
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [first.name, second.name, "GLOSSARY.md"]
    assert (folder / first.name).read_bytes() == first.read_bytes()

    (folder / first.name).write_text("the reader's session")  # what autosave does
    committed = {p: p.read_bytes() for p in (first, second)}
    assert lab.working_copy()[1] == [] and (folder / first.name).read_text() == "the reader's session"
    assert {p: p.read_bytes() for p in (first, second)} == committed, "the committed notebooks were written"

    first.write_bytes(first.read_bytes().replace(b"Paper notes", b"Paper notes, rerun"))  # a new commit
    second.write_bytes(second.read_bytes() + b"\n")
    folder, stale = lab.working_copy()
    assert (folder / second.name).read_bytes() == second.read_bytes(), "an untouched copy follows the committed notebook"
    assert (folder / first.name).read_text() == "the reader's session", "an edited copy is never replaced"
    assert len(stale) == 1 and first.name in stale[0] and "move your copy aside" in stale[0], stale

    assert lab.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].split()[:4] == [sys.executable, "-m", "jupyterlab", str(folder)], out
    assert ("--allow-root" in out) == (os.geteuid() == 0), "as root, JupyterLab needs --allow-root"


def test_make_lab_runs_the_lab_module():
    # --no-print-directory: under `make test` (a make inside make) make would add "Entering directory" lines
    done = subprocess.run(["make", "-n", "--no-print-directory", "lab"], cwd=paths.ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "-m glassbox.journal.lab" in done.stdout.strip().splitlines()[-1], done.stdout


def test_jupyterlab_serves_the_working_copy(tmp_path):
    """A real JupyterLab started by the lab module (stopped as soon as it says where it serves from)."""
    root = tmp_path / "journal"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOKS[0], root / "notebooks" / NOTEBOOKS[0].name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GLASSBOX_ROOT": str(root), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen([sys.executable, "-m", "glassbox.journal.lab", "--no-browser", f"--port={port}",
                               "--ServerApp.ip=127.0.0.1"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.monotonic() + 90
    try:
        for line in server.stdout:
            lines.append(line)
            if "is running at" in line or time.monotonic() > deadline:
                break
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    log = "".join(lines)
    assert "is running at" in log, f"JupyterLab did not start:\n{log[-3000:]}"
    assert f"Serving notebooks from local directory: {root / 'build' / 'lab'}" in log, log[-3000:]
    assert (root / "build" / "lab" / NOTEBOOKS[0].name).read_bytes() == NOTEBOOKS[0].read_bytes()
