"""Where the journal keeps things (`GLASSBOX_ROOT` overrides the repository root), and writes that
replace a file or folder in one step, so a crash never leaves half of one behind."""
import os
import shutil
from pathlib import Path

ROOT = Path(os.environ.get("GLASSBOX_ROOT", Path(__file__).resolve().parents[3]))
DATA_DIR = ROOT / "data"
CHECKPOINT_DIR = ROOT / "checkpoints"
NOTEBOOK_DIR = ROOT / "notebooks"
FINDINGS_DIR = NOTEBOOK_DIR / "findings"
BUILD_DIR = ROOT / "build"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written copy behind
        raise


def replace(source: Path, target: Path) -> None:
    """Put a copy of file or folder `source` at `target`, replacing what is there in one rename
    (a folder: the old one is moved aside first and deleted after)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        atomic_write_bytes(target, source.read_bytes())
        return
    tmp, old = target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(source, tmp)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def shown(path: Path) -> str:
    """`path` relative to the repository when inside it (outputs should not print a reader's home)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(path)
