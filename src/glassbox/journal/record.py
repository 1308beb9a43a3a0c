"""Promotion of a finished run into the record, all or nothing across files, and the locks around it.

A promotion puts several files and folders in place at once (the executed notebook, its findings,
its checkpoints). It happens in three steps:
1. a recovery record (`promotion.json` in the control folder, build/ for the committed record) is
   written, naming every target; then each new file or folder is copied beside its target under a
   hidden name (`.<name>.new-<id>`). A failure here (a full or read-only disk) removes the copies.
2. each target is moved aside (`.<name>.old-<id>`) and its new copy renamed into place; then the
   record says "committed". Renames within one folder are atomic.
3. the old copies and the record are removed.
SIGINT, SIGTERM and SIGHUP are deferred until all three steps are done. A SIGKILL or a power cut
can still stop the process between two renames; the next run (or `python -m glassbox.journal recover`) then finds the record and finishes the job: a record that
never reached "committed" is rolled back (every target as it was before), one that did is cleaned
up. While a record is pending, loading a checkpoint from the record refuses and says so.

Locks are `flock`s on small files that name their holder: one per notebook (two runs of the same
notebook are refused, naming the other run) and one for promotion (waited for, briefly).
"""
import fcntl
import json
import os
import shutil
import signal
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from glassbox.journal import paths

RECORD = "promotion.json"
DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Busy(RuntimeError):
    """Another run holds the lock; the message names it."""


class Torn(RuntimeError):
    """A promotion was interrupted and not yet recovered; the message says what to run."""


# ---- locks


def _holder() -> dict:
    return {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv))}


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')}, started {info.get('started')}, `{info.get('command')}`"


@contextmanager
def lock(path: Path, what: str, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if absent) while the block runs. If another process
    holds it, wait up to `wait` seconds, then raise Busy naming that process and `what` it locks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"{what} is in use by another run ({_describe(path)}); wait for it to end, "
                               f"or stop it") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---- promotion


def _hidden(target: Path, kind: str, txid: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{txid}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
        with open(target, "rb") as f:
            os.fsync(f.fileno())


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP wait until the block has run (delivered right after it)."""
    if hasattr(signal, "pthread_sigmask"):
        old = signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    else:  # pragma: no cover - not POSIX
        yield


def promote(moves: list[tuple[Path, Path]], control: Path) -> list[Path]:
    """Put a copy of each source (file or folder) at its target, all or nothing (see the module's
    docstring). `control` holds the recovery record and the promotion lock. Returns the targets.
    Raises OSError (with every target as it was) if a copy or a rename fails."""
    if not moves:
        return []
    with lock(control / "promotion.lock", "the record's promotion", wait=120):
        recover(control)
        txid = uuid.uuid4().hex[:12]
        entries = [{"target": str(Path(t).resolve()), "existed": Path(t).exists()} for _, t in moves]
        record = control / RECORD
        with signals_deferred():  # a signal that came meanwhile is delivered after the whole promotion
            _write_record(record, {"id": txid, "pid": os.getpid(), "state": "prepared", "moves": entries})
            try:
                for source, target in moves:
                    Path(target).parent.mkdir(parents=True, exist_ok=True)
                    _copy(Path(source), _hidden(Path(target).resolve(), "new", txid))
                for entry in entries:
                    target = Path(entry["target"])
                    if entry["existed"]:
                        os.replace(target, _hidden(target, "old", txid))
                    os.replace(_hidden(target, "new", txid), target)
                _write_record(record, {"id": txid, "pid": os.getpid(), "state": "committed", "moves": entries})
            except BaseException:
                _roll_back(txid, entries)
                record.unlink(missing_ok=True)
                raise
            _clean_up(txid, entries)
            record.unlink(missing_ok=True)
    return [Path(t) for _, t in moves]


def _write_record(path: Path, content: dict) -> None:
    paths.atomic_write_text(path, json.dumps(content, indent=1) + "\n")
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename that wrote the record reaches the disk before any target is touched
    finally:
        os.close(fd)


def _roll_back(txid: str, entries: list[dict]) -> None:
    """Every target as it was before the promotion `txid` began."""
    for entry in entries:
        target = Path(entry["target"])
        old, new = _hidden(target, "old", txid), _hidden(target, "new", txid)
        if old.exists():  # moved aside: whatever stands at the target now is the new copy
            _remove(target)
            os.replace(old, target)
        elif not entry["existed"] and not new.exists():
            _remove(target)  # a target that did not exist and whose new copy was renamed into place
        _remove(new)


def _clean_up(txid: str, entries: list[dict]) -> None:
    for entry in entries:
        target = Path(entry["target"])
        _remove(_hidden(target, "old", txid))
        _remove(_hidden(target, "new", txid))


def pending(control: Path) -> dict | None:
    """The recovery record of an interrupted promotion under `control`, or None."""
    record = control / RECORD
    try:
        return json.loads(record.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return {"state": "unreadable", "moves": []}  # the record's own write was cut: nothing was renamed


def recover(control: Path) -> str | None:
    """Complete or roll back an interrupted promotion under `control`. Returns what was done, or None."""
    found = pending(control)
    if found is None:
        return None
    txid, entries = found.get("id", ""), found.get("moves", [])
    if found.get("state") == "committed":
        _clean_up(txid, entries)
        done = "completed"
    else:
        if txid:
            _roll_back(txid, entries)
        done = "rolled back"
    (control / RECORD).unlink(missing_ok=True)
    names = ", ".join(paths.shown(Path(e["target"])) for e in entries) or "nothing"
    return f"an interrupted promotion was {done}: {names}"


def refuse_if_torn(control: Path, wait: float = 120) -> None:
    """Raise Torn if an interrupted promotion under `control` waits to be recovered. A promotion still under way
    (another run holds the promotion lock, as a second lane of `make journal` may) is waited for, up to `wait` s."""
    if pending(control) is None:
        return
    try:
        with lock(control / "promotion.lock", "the record's promotion", wait=wait):
            found = pending(control)  # with the lock held, a record left behind is an interrupted promotion
    except Busy:
        found = pending(control)
    if found is not None:
        raise Torn(f"a promotion into the record was interrupted ({paths.shown(control / RECORD)}); its files may "
                   "not belong together. Run `python -m glassbox.journal recover` (it completes or rolls it back)")
