"""The run contract between a notebook and the journal: which mode a run is in, and where it writes.

Every notebook calls `glassbox.start(stem, smoke=SMOKE, seed=SEED)` after its parameters cell and
`glassbox.finish()` in its last cell. Between the two, findings and checkpoints go to the run's own
staging folder, never to the committed ones, so a run that fails or is interrupted leaves every
committed file as it was:
- under the journal runner (`python -m glassbox.journal run`), the runner names the staging folder
  and promotes its contents, with the executed notebook, only after every cell ran;
- run by hand (JupyterLab, Colab), the staging folder is a fresh temporary one and `finish()`
  promotes a full run's findings and checkpoints into notebooks/findings/ and checkpoints/.
Smoke runs (tiny sizes, for CI) are never promoted into the committed folders.
"""
import json
import os
import random
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glassbox.journal import paths

ENV_STAGE = "GLASSBOX_STAGE"  # set by the runner: the staging folder of this notebook's run
ENV_SMOKE = "GLASSBOX_SMOKE"  # set by the runner: "1" for --smoke, "0" otherwise
FINISHED = "finished.json"  # written by finish(): the runner's proof that the last cell ran
DEFAULT_THREADS = 2  # `make bench` (threads), idle 2 cores: 2 train transformers and SAEs 1.4-1.6x faster; MLPs 10% slower


@dataclass
class Run:
    stem: str  # notebook file name without .ipynb, e.g. "01_mnist_mlp_probing"
    smoke: bool  # True: tiny sizes for CI; never promoted into the committed folders
    seed: int  # seeds python, numpy and torch at start
    threads: int  # torch (and BLAS) threads
    stage: Path  # this run's own folder: findings/ and checkpoints/ are written here first
    managed: bool  # True under the journal runner, which promotes; False by hand, where finish() does
    values: dict[str, Any] = field(default_factory=dict)  # the findings recorded so far

    @property
    def findings_dir(self) -> Path:
        return self.stage / "findings"

    @property
    def checkpoint_dir(self) -> Path:
        return self.stage / "checkpoints"


_current: Run | None = None

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
    stage_env, smoke_env = os.environ.get(ENV_STAGE), os.environ.get(ENV_SMOKE)
    if stage_env and smoke_env is not None and smoke != (smoke_env == "1"):
        raise ValueError(f"SMOKE={smoke} but the journal runner was started {'with' if smoke_env == '1' else 'without'} "
                         "--smoke; SMOKE is set by the runner's --smoke flag alone, not by -p SMOKE=...")
    if stage_env:
        stage = Path(stage_env)
    else:
        stage = Path(tempfile.mkdtemp(prefix=f"glassbox-{stem}-"))
    stage.mkdir(parents=True, exist_ok=True)
    threads = threads or DEFAULT_THREADS
    set_seed(seed)
    set_threads(threads)
    _set_plotly_renderer()
    _current = Run(stem=stem, smoke=smoke, seed=seed, threads=threads, stage=stage, managed=bool(stage_env),
                   values={"threads": threads})
    print(f"{stem}: {'SMOKE (tiny sizes, scratch outputs)' if smoke else 'full run'}, seed {seed}, {threads} thread(s)")
    return _current


def current() -> Run | None:
    """The run started by `start`, or None outside a notebook run."""
    return _current


def finish() -> None:
    """End the run (the notebook's last cell). By hand, a full run's findings and checkpoints are
    promoted into the committed folders here; under the runner, the runner promotes them."""
    run = _current
    if run is None:
        raise RuntimeError("no notebook run: call glassbox.start(stem, smoke=SMOKE, seed=SEED) first")
    (run.stage / FINISHED).write_text(json.dumps({"stem": run.stem, "smoke": run.smoke}) + "\n")
    if run.managed:
        print(f"{run.stem}: finished")
    elif run.smoke:
        print(f"{run.stem}: finished (smoke run: its findings and checkpoints stay in a scratch folder)")
    else:
        promoted = promote(run.stage, paths.FINDINGS_DIR, paths.CHECKPOINT_DIR)
        print(f"{run.stem}: finished; kept " + (", ".join(paths.shown(p) for p in promoted) or "nothing"))


def promote(stage: Path, findings_dir: Path, checkpoint_dir: Path) -> list[Path]:
    """Move a finished run's checkpoints, then its findings, from `stage` into their folders, each file
    or checkpoint folder replaced in one step. Returns the paths written."""
    written = []
    for source, target_dir in ((stage / "checkpoints", checkpoint_dir), (stage / "findings", findings_dir)):
        for item in sorted(source.glob("*")) if source.is_dir() else []:
            if item.name.startswith("."):
                continue
            paths.replace(item, target_dir / item.name)
            written.append(target_dir / item.name)
    return written


def _set_plotly_renderer() -> None:
    """Plotly figures as JSON in the notebook (small, rendered by JupyterLab and by our HTML
    journal); in Colab, the colab renderer (Colab does not draw the plotly mime type)."""
    import plotly.io as pio

    pio.renderers.default = "colab" if in_colab() else "plotly_mimetype"
