"""Run, render and summarise the journal.

    python -m glassbox.journal run [--smoke] [--out DIR] [--lanes N] [-p NAME=VALUE ...] [NOTEBOOK ...]
    python -m glassbox.journal render [--out build/journal]
    python -m glassbox.journal readme      # README's findings table, the glossary's 'Used in' lines
    python -m glassbox.journal address     # the address in pyproject.toml into every Colab badge and setup cell

`run` executes each notebook with papermill, all or nothing: the notebook writes its findings and
checkpoints to a staging folder (build/stage/<stem>/, or DIR/stage/<stem>/), and only a run that
finished every cell is promoted, each file replaced in one step: the executed notebook to
notebooks/ (or DIR/), findings to notebooks/findings/ (or DIR/findings/), checkpoints to
checkpoints/ (or DIR/checkpoints/). A failed or interrupted run promotes nothing and says which cell
failed and where the failed copy is. `--smoke` (tiny sizes) always writes outside the repository:
to DIR, or to a new temporary folder.

Several notebooks run in `--lanes N` lanes (default 2: two 1-thread notebooks side by side on two
cores), each in a process of its own that runs and promotes it exactly as a one-notebook run does; a
notebook starts only after the notebooks it needs were kept (glassbox.journal.lanes reads that from
the checkpoints and findings each one loads and saves). A failure skips what needs it, the others go
on, and the run ends with a table of what ran where. `--lanes 1`: one at a time, in numeric order,
stopping at the first failure.
"""
import argparse
import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from glassbox.journal import catalogue, contract, lanes as lanes_, paths, record

KERNEL_STARTS = 3  # tries to start a notebook's kernel that dies before it answers (see execute)


@dataclass(frozen=True)
class Targets:
    """Where a successful run's outputs go."""

    notebooks: Path
    findings: Path
    checkpoints: Path
    stage: Path  # staging folders, one per notebook, live under here
    control: Path  # the promotion's lock and recovery record, and one lock per notebook

    @classmethod
    def committed(cls) -> "Targets":
        return cls(paths.NOTEBOOK_DIR, paths.FINDINGS_DIR, paths.CHECKPOINT_DIR, paths.BUILD_DIR / "stage",
                   paths.BUILD_DIR)

    @classmethod
    def under(cls, out: Path) -> "Targets":
        """Everything under `out`, made absolute; refused inside the repository except under build/
        (there it would replace committed files with a run nobody asked to keep)."""
        out = Path(out).expanduser().resolve()
        root, build = paths.ROOT.resolve(), paths.BUILD_DIR.resolve()
        if (out == root or root in out.parents) and not (out == build or build in out.parents):
            raise ValueError(f"--out {paths.shown(out) or '.'} is inside the repository, where it would overwrite the "
                             "committed record; choose a folder outside it, or under build/")
        return cls(out, out / "findings", out / "checkpoints", out / "stage", out)


class RunFailed(Exception):
    """A notebook did not run to its end; the message is one line."""


def check_parameters(notebook: Path, params: dict) -> None:
    """Refuse SMOKE (set by --smoke alone), parameters the notebook does not declare, values of another
    type than the default or not finite, and values that break the rules in the parameters cell's
    comments (glassbox.journal.parameters; without a rule, a positive default must stay positive)."""
    import papermill

    from glassbox.journal import parameters

    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ValueError(f"{notebook.name} has no cell tagged 'parameters'")
    for name, value in params.items():
        if name == "SMOKE":
            raise ValueError("SMOKE is set by --smoke alone (smoke runs never write committed files); "
                             "drop -p SMOKE=...")
        if name not in declared:
            raise ValueError(f"{notebook.name} has no parameter {name!r}; its parameters: {', '.join(declared)}")
    parameters.check(notebook, params)  # types, finite floats, and the rules written beside the defaults


def execute(notebook: Path, output: Path, params: dict, stage: Path, smoke: bool) -> float:
    """Execute `notebook` with papermill into `output`, its run contract writing to `stage`.
    Returns the seconds it took; raises RunFailed (one line) if any cell failed."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    env = {contract.ENV_STAGE: str(stage), contract.ENV_SMOKE: "1" if smoke else "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits them
    start = time.perf_counter()
    try:
        for attempt in range(1, KERNEL_STARTS + 1):
            started = []  # nbclient's on_notebook_start: the kernel answered and the first cell may run
            try:
                papermill.execute_notebook(str(notebook), str(output), parameters={"SMOKE": smoke, **params},
                                           cwd=str(notebook.parent), kernel_name="python3", progress_bar=False,
                                           on_notebook_start=lambda **_: started.append(True))
                break
            except PapermillExecutionError:
                raise
            except Exception as err:  # noqa: PERF203
                if started or attempt == KERNEL_STARTS:
                    raise
                # The kernel died before it answered: nothing of the notebook ran. Kernels started at the same
                # moment by two lanes can be given the same free port ("Address already in use"); start again.
                print(f"{notebook.stem}: the kernel did not start ({type(err).__name__}: {_first_line(str(err))}); "
                      f"starting it again ({attempt + 1} of {KERNEL_STARTS})", flush=True)
                time.sleep(random.uniform(0.5, 2.0))
    except PapermillExecutionError as err:
        raise RunFailed(f"{notebook.stem} failed in cell {err.cell_index} (execution count {err.exec_count}): "
                        f"{err.ename}: {_first_line(err.evalue)}; nothing was kept; the failed copy: "
                        f"{paths.shown(output)}") from None
    except Exception as err:  # a kernel that died, a notebook papermill cannot read, ...
        raise RunFailed(f"{notebook.stem} did not run: {type(err).__name__}: {_first_line(str(err))}; "
                        f"nothing was kept") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return time.perf_counter() - start


def _first_line(text: str) -> str:
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def prepare_executed(executed: Path, notebook: Path, promoted: dict[str, str]) -> None:
    """Write the notebook a successful execution commits to `notebook`: each progress bar kept at its
    final state (one output, not hundreds of updates, on GitHub), the source of cells that write prose
    collapsed, paths in papermill's record relative, papermill's injected-parameters cell folded back
    into the parameters cell (a reader's edit of that cell then takes effect), and the sha256 of every
    file promoted with it (`promoted`: "findings/<file>" or "checkpoints/<file>" -> sha256), so an
    edited findings file or a checkpoint from another run is caught. A rerun changes only recorded times."""
    import nbformat

    from glassbox.journal.render import hide_prose_sources, tidy_streams

    nb = nbformat.read(executed, as_version=4)
    tidy_streams(nb)
    hide_prose_sources(nb)
    fold_injected_parameters(nb)
    record_ = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):  # where this machine kept them: a reader's differs
        if record_.get(key):
            record_[key] = paths.shown(Path(record_[key]))
    nb.metadata["glassbox"] = {"promoted": dict(sorted(promoted.items()))}
    paths.atomic_write_text(notebook, nbformat.writes(nb) + "\n")


def fold_injected_parameters(nb) -> None:
    """Remove papermill's injected-parameters cell; a value it set that differs from the parameters
    cell's default is written into that cell instead (`NAME = value  # ... (set by the runner)`)."""
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    for cell in injected:
        nb.cells.remove(cell)
        if params:
            params[0].source = _with_values(params[0].source, _assignments(cell.source))


def _assignments(source: str) -> dict[str, tuple[object, str]]:
    """NAME -> (value, source text) for each `NAME = literal` line of a cell."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = (ast.literal_eval(node.value), ast.get_source_segment(source, node.value))
            except ValueError:
                pass
    return out


def _with_values(source: str, values: dict[str, tuple[object, str]]) -> str:
    lines = source.split("\n")
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in values and node.lineno == node.end_lineno):
            continue
        value, text = values[node.targets[0].id]
        try:
            if ast.literal_eval(node.value) == value:
                continue
        except ValueError:
            pass
        line = lines[node.lineno - 1]
        rest = line[node.value.end_col_offset:]
        lines[node.lineno - 1] = (line[:node.value.col_offset] + text + rest
                                  + (" " if rest.strip() else "  # ") + "(set by the runner)")
    return "\n".join(lines)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def promoted_hashes(stage: Path) -> dict[str, str]:
    """"findings/<file>" and "checkpoints/<file or folder/file>" -> sha256, for what `stage` will promote."""
    out = {}
    for kind in ("findings", "checkpoints"):
        base = stage / kind
        for path in sorted(base.rglob("*")) if base.is_dir() else []:
            relative = path.relative_to(base)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                out[f"{kind}/{relative.as_posix()}"] = _sha256(path)
    return out


def carried_forward(targets: Targets, name: str, promoted: dict[str, str]) -> dict[str, str]:
    """The entries of the committed notebook's promotion record that this run does not replace and whose
    files are still exactly what that notebook promoted: a rerun that loads a checkpoint instead of
    training it (01's TRAIN=False, 02's width models) still owns it."""
    import nbformat

    committed = targets.notebooks / name
    if not committed.is_file():
        return {}
    base = {"findings": targets.findings, "checkpoints": targets.checkpoints}
    before = nbformat.read(committed, as_version=4).metadata.get("glassbox", {}).get("promoted", {})
    kept = {}
    for key, sha in before.items():
        kind, _, rest = key.partition("/")
        path = base.get(kind, Path("/nonexistent")) / rest
        if key not in promoted and path.is_file() and _sha256(path) == sha:
            kept[key] = sha
    return kept


def record_problems(targets: Targets | None = None) -> list[str]:
    """What in the record does not belong together: a findings file or checkpoint whose sha256 differs
    from the one its notebook promoted, or that no executed notebook promoted. Empty when all match."""
    import nbformat

    targets = targets or Targets.committed()
    base = {"findings": targets.findings, "checkpoints": targets.checkpoints}
    problems, claimed = [], {}
    for nb_path in sorted(targets.notebooks.glob("[0-9][0-9]_*.ipynb")):
        promoted = nbformat.read(nb_path, as_version=4).metadata.get("glassbox", {}).get("promoted")
        if promoted is None:
            problems.append(f"{nb_path.name} records no promoted files: rerun it with `python -m glassbox.journal run`")
            continue
        for key, sha in promoted.items():
            kind, _, rest = key.partition("/")
            path = base[kind] / rest
            claimed.setdefault(path, []).append(nb_path.name)
            if not path.is_file():
                problems.append(f"{paths.shown(path)} is missing; {nb_path.name} promoted it")
            elif _sha256(path) != sha:
                problems.append(f"{paths.shown(path)} differs from what {nb_path.name} promoted: edited by hand or written "
                                "by another run; restore it from git or rerun the notebook")
    for kind, folder in base.items():
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file() and not any(p.startswith(".") for p in path.relative_to(folder).parts):
                if path not in claimed:
                    problems.append(f"{paths.shown(path)} was promoted by no executed notebook")
                elif len(claimed[path]) > 1:
                    problems.append(f"{paths.shown(path)} is claimed by {', '.join(claimed[path])}")
    return problems


@dataclass
class Progress:
    """What a `run` has done so far, for the line printed when it is interrupted."""

    kept: list = field(default_factory=list)
    running: str | None = None


PROGRESS = Progress()


def run_one(notebook: Path, targets: Targets, params: dict, smoke: bool) -> float:
    """Execute one notebook into its staging folder and, only if it ran to its end, promote it with its
    findings and checkpoints, all or nothing. Two runs of one notebook at once are refused."""
    with record.lock(targets.control / "locks" / f"{notebook.stem}.lock", f"notebook {notebook.stem}"):
        stage = targets.stage / notebook.stem
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        executed = stage / notebook.name
        seconds = execute(notebook, executed, params, stage, smoke)
        if not (stage / contract.FINISHED).is_file():
            raise RunFailed(f"{notebook.stem} ran without error but never reached glassbox.finish() (its last cell "
                            f"should call it); nothing was kept; the executed copy: {paths.shown(executed)}")
        prepared = stage / ".commit" / notebook.name
        promoted = promoted_hashes(stage)
        prepare_executed(executed, prepared, {**carried_forward(targets, notebook.name, promoted), **promoted})
        with record.signals_deferred():  # Ctrl-C here waits: then the line printed says what was kept
            try:
                contract.promote(stage, targets.findings, targets.checkpoints,
                                 notebook=(prepared, targets.notebooks / notebook.name), control=targets.control)
            except OSError as err:
                raise RunFailed(f"{notebook.stem} ran, but its results could not be written ({type(err).__name__}: "
                                f"{err}); nothing was kept, every file is as it was; the executed copy: "
                                f"{paths.shown(executed)}") from None
            PROGRESS.kept.append(notebook.stem)
    return seconds


def run(names: list[str] | None, smoke: bool = False, out: Path | None = None,
        params: dict | None = None, lanes: int = 1) -> dict[str, float]:
    """Execute the notebooks; returns the seconds each kept one took. One lane: in order, raising RunFailed
    at the first failure (the notebooks before it are kept, it and those after are not). More lanes (and
    more than one notebook): side by side as glassbox.journal.lanes schedules them, raising RunFailed at
    the end if any notebook was not kept (every other one was)."""
    params = dict(params or {})
    if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
        raise ValueError(f"--lanes must be a whole number of at least 1 (1: one notebook at a time), got {lanes!r}")
    chosen = catalogue.notebooks(names)
    for nb in chosen:  # refuse a bad parameter before the first (long) run, not after
        check_parameters(nb, params)
    graph = lanes_.graph(chosen) if lanes > 1 and len(chosen) > 1 else None  # an unreadable graph: refused now
    scratch = smoke and out is None  # nobody asked to keep these outputs: removed at the end
    if scratch:
        out = Path(tempfile.mkdtemp(prefix="glassbox-smoke-"))
    targets = Targets.under(out) if out is not None else Targets.committed()
    with record.lock(targets.control / "promotion.lock", "the record's promotion", wait=120):
        recovered = record.recover(targets.control)  # never while another run's promotion is under way
    if recovered:
        print(recovered, flush=True)
    if graph is not None:
        return _run_lanes(graph, lanes, targets, params, smoke, out, scratch)
    seconds = {}
    try:
        for nb in chosen:
            print(f"running {nb.name} ({'smoke' if smoke else 'full'}) ...", flush=True)
            PROGRESS.running = nb.stem
            seconds[nb.stem] = run_one(nb, targets, params, smoke)
            PROGRESS.running = None
            where = "smoke: outputs removed; --out DIR keeps them" if scratch else f"kept in {paths.shown(targets.notebooks)}"
            print(f"  {nb.stem}: {seconds[nb.stem]:.0f} s, {where}", flush=True)
    except RunFailed:
        raise  # the folder stays: the error line names the failed copy inside it
    except BaseException:
        if scratch:
            shutil.rmtree(out, ignore_errors=True)
        raise
    if scratch:
        shutil.rmtree(out, ignore_errors=True)
    return seconds


def _run_lanes(graph: "lanes_.Graph", lanes: int, targets: Targets, params: dict, smoke: bool, out: Path | None,
               scratch: bool) -> dict[str, float]:
    """run() with more than one lane: each notebook in a child process (`run NN --lane-child`)."""
    def launch(stem: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "glassbox.journal", "run", stem, "--lane-child"]
        command += (["--smoke"] if smoke else []) + (["--out", str(targets.notebooks)] if out is not None else [])
        for name, value in params.items():
            command += ["-p", f"{name}={value!r}"]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    PROGRESS.running = None
    try:
        results = lanes_.run_lanes(graph, lanes, launch, say=lambda line: print(line, flush=True), kept=PROGRESS.kept)
    except KeyboardInterrupt:
        if scratch:
            shutil.rmtree(out, ignore_errors=True)
        raise
    lost = [r for r in results.values() if r.outcome != "kept"]
    if scratch and not lost:
        shutil.rmtree(out, ignore_errors=True)
        print("smoke: outputs removed; --out DIR keeps them", flush=True)
    if lost:
        raise RunFailed(f"{len(lost)} of {len(results)} notebooks not kept ("
                        + "; ".join(f"{r.stem} {r.outcome}" for r in lost) + "), every other one was kept; "
                        "the table above says why" + (f"; the smoke run's folder: {out}" if scratch else ""))
    return {s: r.seconds for s, r in results.items()}


def run_child(name: str, smoke: bool, out: Path | None, params: dict) -> None:
    """One notebook of a run in lanes, in its own process: run_one, nothing printed unless it fails."""
    if smoke and out is None:
        raise ValueError("a smoke run in a lane needs --out (smoke runs never write the committed record)")
    chosen = catalogue.notebooks([name])
    if len(chosen) != 1:
        raise ValueError(f"--lane-child runs one notebook; {name!r} names {len(chosen)}")
    notebook = chosen[0]
    PROGRESS.running = notebook.stem
    run_one(notebook, Targets.under(out) if out is not None else Targets.committed(), params, smoke)
    PROGRESS.running = None


def parse_param(text: str) -> tuple[str, object]:
    """`NAME=VALUE` from the command line, VALUE a Python literal; a bare word stays a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"parameters look like NAME=VALUE (e.g. -p N_STEPS=500), got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def interruptible() -> None:
    """Make Ctrl-C (SIGINT) interrupt this process even where it started with SIGINT ignored: a job a script starts in
    the background gets SIGINT ignored from its shell, and its children inherit that. A run must stop on it all the
    same: the lanes stop a notebook's child run by SIGINT, and a child that went on would keep the results of a run
    the lanes report as interrupted."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lab"]:  # JupyterLab's own options pass through
        from glassbox.journal import lab

        return lab.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m glassbox.journal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute notebooks with papermill (all or nothing)")
    p_run.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    p_run.add_argument("--smoke", action="store_true", help="SMOKE=True: tiny sizes, outputs outside the repository")
    p_run.add_argument("--out", type=Path, help="write notebooks, findings and checkpoints under DIR")
    p_run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                       help="set a parameter, VALUE a Python literal (e.g. -p N_STEPS=500); checked before running")
    p_run.add_argument("--lanes", type=int, default=2, metavar="N",
                       help="run up to N notebooks side by side, each after those it needs (default 2; 1: one at "
                            "a time, in order, stopping at the first failure)")
    p_run.add_argument("--lane-child", action="store_true", help=argparse.SUPPRESS)  # one notebook of a run in lanes
    p_render = sub.add_parser("render", help="render the journal as HTML")
    p_render.add_argument("--out", type=Path, default=paths.BUILD_DIR / "journal")
    sub.add_parser("readme", help="update the findings table in README.md and the glossary's 'Used in' lines")
    sub.add_parser("lab", help="JupyterLab on a working copy in build/lab/ (make lab)")
    sub.add_parser("address", help="stamp the address in pyproject.toml ([project.urls] Repository) into every "
                                   "notebook's Colab badge and setup cell")
    sub.add_parser("verify", help="check that every findings file and checkpoint is the one its notebook promoted")
    p_recover = sub.add_parser("recover", help="complete or roll back a promotion that was interrupted (a kill)")
    p_recover.add_argument("--out", type=Path, help="the DIR an interrupted `run --out DIR` wrote to")
    args = parser.parse_args(argv)
    if args.command == "run":
        interruptible()
    try:
        if args.command == "run" and args.lane_child:
            if len(args.names) != 1:
                raise ValueError("--lane-child runs exactly one notebook")
            run_child(args.names[0], args.smoke, args.out, dict(map(parse_param, args.param)))
        elif args.command == "run":
            seconds = run(args.names, args.smoke, args.out, dict(map(parse_param, args.param)), args.lanes)
            print(json.dumps({k: round(v, 1) for k, v in seconds.items()}, indent=2))
        elif args.command == "verify":
            problems = record_problems()
            print("\n".join(problems) or "the record belongs together: every file is the one its notebook promoted")
            return 1 if problems else 0
        elif args.command == "recover":
            control = Targets.under(args.out).control if args.out else Targets.committed().control
            print(record.recover(control) or "nothing to recover: no promotion was interrupted")
        elif args.command == "address":
            from glassbox.journal import address

            url = address.repository_url()
            changed = address.stamp(catalogue.notebooks(), url)
            print(f"{len(changed)} notebook(s) now point at {url}" + "".join(f"\n  {paths.shown(p)}" for p in changed)
                  if changed else f"every notebook already points at {url}")
        elif args.command == "render":
            from glassbox.journal import render

            print(f"journal rendered: {paths.shown(render.render_journal(catalogue.notebooks(), args.out))}")
        else:
            catalogue.update_readme()
            catalogue.update_glossary()
            print("README.md findings table and the glossary's 'Used in' lines updated")
    except (RunFailed, ValueError, TypeError, record.Busy) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        kept = f"; kept before it: {', '.join(PROGRESS.kept)}" if PROGRESS.kept else "; nothing was kept"
        if PROGRESS.running and PROGRESS.running not in PROGRESS.kept:
            print(f"error: interrupted while running {PROGRESS.running}, which was not kept{kept}", file=sys.stderr)
        else:
            print(f"error: interrupted after {', '.join(PROGRESS.kept) or 'nothing'} was kept", file=sys.stderr)
        return 130
    return 0
