"""Where the journal keeps things. `GLASSBOX_ROOT` overrides the repository root."""
import os
import tempfile
from pathlib import Path

ROOT = Path(os.environ.get("GLASSBOX_ROOT", Path(__file__).resolve().parents[2]))
DATA_DIR = ROOT / "data"
CHECKPOINT_DIR = ROOT / "checkpoints"
NOTEBOOK_DIR = ROOT / "notebooks"
FINDINGS_DIR = NOTEBOOK_DIR / "findings"


def smoke_dir() -> Path:
    """Scratch folder for smoke runs (`GLASSBOX_SMOKE_DIR`, else a folder in the system temp dir)."""
    path = Path(os.environ.get("GLASSBOX_SMOKE_DIR", Path(tempfile.gettempdir()) / "glassbox-smoke"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
