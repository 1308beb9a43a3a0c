"""The run contract between a notebook and the journal: which mode a run is in, and where it writes.

Every notebook calls `glassbox.start(stem, smoke=SMOKE, seed=SEED)` after its parameters cell and
`glassbox.finish()` in its last cell. Between the two, findings and checkpoints go to the run's own
staging folder, never to the committed ones, so a run that fails or is interrupted leaves every
committed file as it was:
- under the journal runner (`python -m glassbox.journal run`), the runner names the staging folder
  and promotes its contents, with the executed notebook, only after every cell ran;
- run by hand (JupyterLab, Colab), the staging folder is a fresh temporary one (the scratch folder)
  and `finish()` leaves the results there and says where: the committed record changes only when the
  reader asks, with `finish(keep=True)` (a full run's findings and checkpoints promoted into
  notebooks/findings/ and checkpoints/) or by running the notebook with the journal runner. The
  scratch folder is removed when the kernel exits, when the notebook is run again in the same
  kernel, or after `finish(keep=True)`; one left by a kernel that was killed is removed by the next
  hand run's `start`.
Smoke runs (tiny sizes, for CI) are never promoted into the committed folders.
"""
import atexit
import json
import os
import random
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glassbox.journal import parameters, paths, record

ENV_STAGE = "GLASSBOX_STAGE"  # set by the runner: the staging folder of this notebook's run
ENV_SMOKE = "GLASSBOX_SMOKE"  # set by the runner: "1" for --smoke, "0" otherwise
FINISHED = "finished.json"  # written by finish(): the runner's proof that the last cell ran
SCRATCH_PREFIX = "glassbox-"  # a hand run's scratch folder: <tempdir>/glassbox-<stem>-<random>
OWNER = ".owner"  # in a scratch folder: the id of the process (kernel) that made it
DEFAULT_THREADS = 2  # `make bench` (threads), idle 2 cores: 2 train transformers and SAEs 1.4-1.6x faster; MLPs 10% slower
ENV_SMOKE_THREADS = "GLASSBOX_SMOKE_THREADS"  # set by the tests when smoke runs share the cores: the default for smoke runs


@dataclass
class Run:
    stem: str  # notebook file name without .ipynb, e.g. "01_mnist_mlp_probing"
    smoke: bool  # True: tiny sizes for CI; never promoted into the committed folders
    seed: int  # seeds python, numpy and torch at start
    threads: int  # torch (and BLAS) threads
    stage: Path  # this run's own folder: findings/ and checkpoints/ are written here first
    managed: bool  # True under the journal runner, which promotes; False by hand: only finish(keep=True) does
    values: dict[str, Any] = field(default_factory=dict)  # the findings recorded so far

    @property
    def findings_dir(self) -> Path:
        return self.stage / "findings"

    @property
    def checkpoint_dir(self) -> Path:
        return self.stage / "checkpoints"


_current: Run | None = None
_scratch: dict[Path, int] = {}  # the hand runs' scratch folders -> the process that made them

# tqdm.auto (imported by TransformerLens and SAELens) warns in every kernel without ipywidgets, and the
# warning prints a path of this machine; glassbox's bars are plain tqdm, so the note is noise here.
warnings.filterwarnings("ignore", message="IProgress not found")


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch so a run is reproducible from its seed."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    """Use `threads` CPU threads in torch and in the BLAS libraries numpy and scikit-learn call."""
    import threadpoolctl
    import torch

    torch.set_num_threads(threads)
    threadpoolctl.threadpool_limits(threads)


def _check(stem: Any, smoke: Any, seed: Any, threads: Any) -> None:
    if not isinstance(stem, str) or not stem or "/" in stem:
        raise ValueError(f"stem must be the notebook's file name without .ipynb, got {stem!r}")
    if not isinstance(smoke, bool):
        raise TypeError(f"SMOKE must be True or False, got {smoke!r} ({type(smoke).__name__})")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"SEED must be an int in 0..2**32-1 (numpy's seed range), got {seed!r}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive int (or None for the journal's default, "
                         f"{DEFAULT_THREADS}), got {threads!r}")


def start(stem: str, *, smoke: bool, seed: int = 0, threads: int | None = None) -> Run:
    """Begin a notebook run: check the parameters, seed everything, set threads, open the staging folder."""
    global _current
    _check(stem, smoke, seed, threads)
    notebook = paths.NOTEBOOK_DIR / f"{stem}.ipynb"
    if notebook.is_file():  # a reader may have typed a value by hand: the parameters cell's rules still hold
        parameters.check_namespace(notebook, sys._getframe(1).f_globals)
    stage_env, smoke_env = os.environ.get(ENV_STAGE), os.environ.get(ENV_SMOKE)
    if stage_env and smoke_env is not None and smoke != (smoke_env == "1"):
        raise ValueError(f"SMOKE={smoke} but the journal runner was started {'with' if smoke_env == '1' else 'without'} "
                         "--smoke; SMOKE is set by the runner's --smoke flag alone, not by -p SMOKE=...")
    if stage_env:
        stage = Path(stage_env)
        stage.mkdir(parents=True, exist_ok=True)
    else:
        if _current is not None and not _current.managed:  # the notebook is run again: its last results go
            _remove_scratch(_current.stage)
        _remove_abandoned_scratch()
        stage = _new_scratch(stem)
    threads = threads or (_smoke_threads() if smoke else None) or DEFAULT_THREADS
    set_seed(seed)
    set_threads(threads)
    _set_plotly_renderer()
    _current = Run(stem=stem, smoke=smoke, seed=seed, threads=threads, stage=stage, managed=bool(stage_env),
                   values={"threads": threads})
    print(f"{stem}: {'SMOKE (tiny sizes, scratch outputs)' if smoke else 'full run'}, seed {seed}, {threads} thread(s)")
    return _current


def _smoke_threads() -> int | None:
    """The thread count a smoke run without `threads=` uses when $GLASSBOX_SMOKE_THREADS is set (the tests set it to 1
    when two workers run smoke runs side by side); None when it is not set."""
    value = os.environ.get(ENV_SMOKE_THREADS)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"${ENV_SMOKE_THREADS} must be a positive whole number of threads, got {value!r}")
    return int(value)


def current() -> Run | None:
    """The run started by `start`, or None outside a notebook run."""
    return _current


def finish(keep: bool = False) -> None:
    """End the run (the notebook's last cell). Under the journal runner, the runner promotes what the
    run wrote. By hand (JupyterLab, Colab) the results stay in the run's scratch folder and the
    committed record is unchanged, unless `keep=True`: then a full run's findings and checkpoints
    replace the committed ones (callable again after a plain `finish()`, e.g. in a new cell)."""
    run = _current
    if run is None:
        raise RuntimeError("no notebook run: call glassbox.start(stem, smoke=SMOKE, seed=SEED) first")
    if not isinstance(keep, bool):
        raise TypeError(f"keep must be True or False, got {keep!r}")
    if not run.managed and not run.stage.is_dir():
        raise RuntimeError(f"{run.stem}: this run's scratch folder {run.stage} is gone (its results were kept "
                           "already, or removed); run the notebook again")
    (run.stage / FINISHED).write_text(json.dumps({"stem": run.stem, "smoke": run.smoke}) + "\n")
    if run.managed:
        print(f"{run.stem}: finished")
        return
    if run.smoke and keep:
        raise ValueError(f"{run.stem}: a smoke run (tiny sizes) is never kept in the committed folders; set "
                         "SMOKE = False in the parameters cell and run the notebook again")
    runner_command = f"python -m glassbox.journal run {run.stem.split('_')[0]}"
    if not keep:
        print(f"{run.stem}: finished{' (smoke run)' if run.smoke else ''}; the committed findings and checkpoints "
              f"are unchanged: this run's are in {run.stage} until this kernel exits or the notebook runs again"
              + ("" if run.smoke else f"; to keep them: glassbox.finish(keep=True) (findings and checkpoints), or "
                                      f"`{runner_command}` (the whole record, this notebook included)"))
        return
    promoted = promote(run.stage, paths.FINDINGS_DIR, paths.CHECKPOINT_DIR)
    _remove_scratch(run.stage)
    print(f"{run.stem}: finished; kept " + (", ".join(paths.shown(p) for p in promoted) or "nothing")
          + f"; the committed notebook still shows its earlier run, so `python -m glassbox.journal verify` reports "
            f"the mismatch until `{runner_command}` replaces the whole record")


def _new_scratch(stem: str) -> Path:
    """A new scratch folder for a hand run of `stem`, removed when this process exits."""
    stage = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{stem}-"))
    (stage / OWNER).write_text(f"{os.getpid()}\n")
    _scratch[stage] = os.getpid()
    return stage


def _remove_scratch(stage: Path) -> None:
    """Remove a scratch folder this process made (never a folder the runner named)."""
    if _scratch.get(stage) == os.getpid():
        shutil.rmtree(stage, ignore_errors=True)


@atexit.register
def _remove_all_scratch() -> None:
    """At exit, remove this process's scratch folders (a forked child, e.g. a data loader worker,
    inherits this handler but not the folders: it removes none)."""
    for stage in list(_scratch):
        _remove_scratch(stage)


def _remove_abandoned_scratch() -> None:
    """Remove scratch folders whose process is gone (a kernel killed before its exit handlers ran)."""
    if os.name != "posix":  # os.kill(pid, 0) tests a process only on POSIX
        return
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        try:
            pid = int((folder / OWNER).read_text())
        except (OSError, ValueError):  # not a hand run's scratch folder (or not ours to read)
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def promote(stage: Path, findings_dir: Path, checkpoint_dir: Path, notebook: tuple[Path, Path] | None = None,
            control: Path | None = None) -> list[Path]:
    """Put a finished run's checkpoints and findings from `stage` (and, given as (executed, target), its
    executed notebook) into their folders, all or nothing across files (glassbox.journal.record).
    `control` holds the promotion's lock and recovery record (default build/). Returns the paths written."""
    moves = []
    for source, target_dir in ((stage / "checkpoints", checkpoint_dir), (stage / "findings", findings_dir)):
        for item in sorted(source.glob("*")) if source.is_dir() else []:
            if not item.name.startswith("."):
                moves.append((item, target_dir / item.name))
    if notebook is not None:
        moves.append(notebook)
    return record.promote(moves, control or paths.BUILD_DIR)


def _set_plotly_renderer() -> None:
    """Plotly figures as JSON in the notebook (small, rendered by JupyterLab and by our HTML
    journal); in Colab, the colab renderer (Colab does not draw the plotly mime type)."""
    import plotly.io as pio

    pio.renderers.default = "colab" if in_colab() else "plotly_mimetype"
