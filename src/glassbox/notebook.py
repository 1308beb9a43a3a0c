"""The contract between a notebook and the journal: which mode a run is in and where it writes.

Every notebook calls `glassbox.start(stem, smoke=SMOKE, seed=SEED)` right after its parameters
cell. A full run writes findings to notebooks/findings/ and checkpoints to checkpoints/; a smoke
run (CI) writes both to a scratch folder, so it can never overwrite the committed results.
"""
import sys
from dataclasses import dataclass
from pathlib import Path

from glassbox import paths


@dataclass(frozen=True)
class Run:
    stem: str  # notebook file name without .ipynb, e.g. "01_mnist_mlp_probing"
    smoke: bool  # True: tiny sizes for CI, outputs to the scratch folder
    seed: int  # seeds python, numpy and torch at start
    findings_dir: Path  # where findings.record writes <stem>.json
    checkpoint_dir: Path  # where checkpoints.save_* writes by default


_current: Run | None = None


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def start(stem: str, *, smoke: bool, seed: int = 0, threads: int | None = None) -> Run:
    """Begin a notebook run: check the parameters, seed everything, choose output folders."""
    global _current
    if not isinstance(stem, str) or not stem:
        raise TypeError(f"stem must be the notebook name without .ipynb, got {stem!r}")
    if not isinstance(smoke, bool):
        raise TypeError(f"SMOKE must be True or False, got {smoke!r} ({type(smoke).__name__}); "
                        "pass it to papermill as -p SMOKE True (a bool), not a string")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"SEED must be an int, got {seed!r} ({type(seed).__name__})")
    from glassbox import findings
    from glassbox.training import set_seed

    set_seed(seed)
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    _set_plotly_renderer()
    scratch = paths.smoke_dir()
    _current = Run(
        stem=stem,
        smoke=smoke,
        seed=seed,
        findings_dir=scratch / "findings" if smoke else paths.FINDINGS_DIR,
        checkpoint_dir=scratch / "checkpoints" if smoke else paths.CHECKPOINT_DIR,
    )
    findings.reset()
    print(f"{stem}: {'SMOKE (tiny sizes, scratch outputs)' if smoke else 'full run'}, seed {seed}")
    return _current


def current() -> Run | None:
    """The run started by `start`, or None outside a notebook run."""
    return _current


def _set_plotly_renderer() -> None:
    """Plotly figures as JSON in the notebook (small, rendered by JupyterLab and by our HTML
    journal); in Colab, the colab renderer (Colab does not draw the plotly mime type)."""
    import plotly.io as pio

    pio.renderers.default = "colab" if in_colab() else "plotly_mimetype"


def finish() -> None:
    """End a notebook run (its last cell): the run reached its end, so its outputs may be kept."""
    if _current is None:
        raise RuntimeError("no notebook run: call glassbox.start(stem, smoke=SMOKE, seed=SEED) first")
    print(f"{_current.stem}: finished")
