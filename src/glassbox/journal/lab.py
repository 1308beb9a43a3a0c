"""`make lab`: JupyterLab on a working copy of the journal, so that autosave never writes over a
committed notebook.

    python -m glassbox.journal.lab [--folder DIR] [--dry-run] [JUPYTER LAB OPTIONS ...]

The numbered notebooks and GLOSSARY.md are copied into build/lab/ (or DIR) where they are absent,
and JupyterLab opens there. A copy the reader has changed is never replaced; one the reader has not
changed follows the committed notebook when that changes (a copy made before it changed and since
edited is named, with how to get the new one). Findings and checkpoints do not depend on where the
notebook lies: glassbox finds them from its own location (or GLASSBOX_ROOT), so the copies run as the
committed notebooks do, and a hand run changes the committed record only with
`glassbox.finish(keep=True)` (see glassbox.journal.contract). As root, JupyterLab gets --allow-root.
"""
import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from glassbox.journal import catalogue, paths

SOURCES = ".sources.json"  # in the working copy: name -> sha256 of the committed file it was copied from


def default_folder() -> Path:
    """Where `make lab` keeps the reader's working copy (build/ is not tracked by git)."""
    return paths.BUILD_DIR / "lab"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def working_copy(folder: Path | None = None) -> tuple[Path, list[str]]:
    """Bring the working copy in `folder` up to date with the committed notebooks and glossary without
    losing a reader's edits. Returns the folder and one line for each copy left stale by an edit."""
    folder = Path(folder or default_folder()).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        recorded = json.loads((folder / SOURCES).read_text())
    except (OSError, json.JSONDecodeError):
        recorded = {}
    stale = []
    glossary = paths.NOTEBOOK_DIR / "GLOSSARY.md"
    for source in catalogue.notebooks() + ([glossary] if glossary.is_file() else []):
        copy, committed = folder / source.name, _sha256(source)
        if copy.exists() and recorded.get(source.name) == committed:
            continue
        if not copy.exists() or _sha256(copy) in (committed, recorded.get(source.name)):
            paths.atomic_write_bytes(copy, source.read_bytes())  # new, or not changed by the reader
            recorded[source.name] = committed
        else:
            stale.append(f"{paths.shown(copy)} is your edited copy of an older {paths.shown(source)}; "
                         f"to get the new one, move your copy aside and run make lab again")
    paths.atomic_write_text(folder / SOURCES, json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    return folder, stale


def command(folder: Path, extra: list[str] | None = None) -> list[str]:
    """The JupyterLab command line opening `folder` (with --allow-root when run as root)."""
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    return [sys.executable, "-m", "jupyterlab", str(folder), *(["--allow-root"] if as_root else []), *(extra or [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glassbox.journal.lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="the working copy (default: build/lab)")
    parser.add_argument("--dry-run", action="store_true", help="update the working copy, print the command, start nothing")
    args, extra = parser.parse_known_args(argv)
    folder, stale = working_copy(args.folder)
    for line in stale:
        print(f"note: {line}")
    cmd = command(folder, extra)
    print(f"JupyterLab on the working copy {paths.shown(folder)}/ (the committed notebooks stay as they are)"
          + ("; running as root, so with --allow-root" if "--allow-root" in cmd else ""), flush=True)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    os.execv(cmd[0], cmd)  # JupyterLab takes over this process (Ctrl-C stops it as usual)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
