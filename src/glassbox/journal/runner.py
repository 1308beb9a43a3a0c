"""Run, render and summarise the journal.

    python -m glassbox.journal run [--smoke] [--out DIR] [-p NAME=VALUE ...] [NOTEBOOK ...]
    python -m glassbox.journal render [--out build/journal]
    python -m glassbox.journal readme      # README's findings table, the glossary's 'Used in' lines

`run` executes each notebook with papermill, all or nothing: the notebook writes its findings and
checkpoints to a staging folder (build/stage/<stem>/, or DIR/stage/<stem>/), and only a run that
finished every cell is promoted, each file replaced in one step: the executed notebook to
notebooks/ (or DIR/), findings to notebooks/findings/ (or DIR/findings/), checkpoints to
checkpoints/ (or DIR/checkpoints/). A failed or interrupted run promotes nothing and says which cell
failed and where the failed copy is. `--smoke` (tiny sizes) always writes outside the repository:
to DIR, or to a new temporary folder.
"""
import argparse
import ast
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from glassbox.journal import catalogue, contract, paths


@dataclass(frozen=True)
class Targets:
    """Where a successful run's outputs go."""

    notebooks: Path
    findings: Path
    checkpoints: Path
    stage: Path  # staging folders, one per notebook, live under here

    @classmethod
    def committed(cls) -> "Targets":
        return cls(paths.NOTEBOOK_DIR, paths.FINDINGS_DIR, paths.CHECKPOINT_DIR, paths.BUILD_DIR / "stage")

    @classmethod
    def under(cls, out: Path) -> "Targets":
        return cls(out, out / "findings", out / "checkpoints", out / "stage")


class RunFailed(Exception):
    """A notebook did not run to its end; the message is one line."""


def _default(notebook: Path, name: str, source: str) -> object:
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        raise ValueError(f"{notebook.name}: the default of parameter {name} ({source}) is not a literal; "
                         "the parameters cell holds literals only") from None


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
        papermill.execute_notebook(str(notebook), str(output), parameters={"SMOKE": smoke, **params},
                                   cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
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


def commit_executed(executed: Path, notebook: Path) -> None:
    """Write a successful execution to `notebook` in one step, each progress bar kept at its final
    state (one output, not hundreds of updates, on GitHub), the source of cells that write prose
    collapsed, paths in papermill's record relative, the injected parameters cell given a fixed id:
    a rerun changes only recorded times."""
    import nbformat

    from glassbox.journal.render import hide_prose_sources, tidy_streams

    nb = nbformat.read(executed, as_version=4)
    tidy_streams(nb)
    hide_prose_sources(nb)
    for cell in nb.cells:  # papermill gives the cell it injects a random id: a rerun would change that byte
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"
    record = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):  # where this machine kept them: a reader's differs
        if record.get(key):
            record[key] = paths.shown(Path(record[key]))
    paths.atomic_write_text(notebook, nbformat.writes(nb) + "\n")


def run_one(notebook: Path, targets: Targets, params: dict, smoke: bool) -> float:
    """Execute one notebook into its staging folder and, only if it ran to its end, promote it."""
    stage = targets.stage / notebook.stem
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    executed = stage / notebook.name
    seconds = execute(notebook, executed, params, stage, smoke)
    if not (stage / contract.FINISHED).is_file():
        raise RunFailed(f"{notebook.stem} ran without error but never reached glassbox.finish() (its last cell "
                        f"should call it); nothing was kept; the executed copy: {paths.shown(executed)}")
    contract.promote(stage, targets.findings, targets.checkpoints)
    commit_executed(executed, targets.notebooks / notebook.name)
    return seconds


def run(names: list[str] | None, smoke: bool = False, out: Path | None = None,
        params: dict | None = None) -> dict[str, float]:
    """Execute the notebooks in order; returns the seconds each took. Raises RunFailed at the first
    failure (the notebooks before it are kept, it and those after are not)."""
    params = dict(params or {})
    chosen = catalogue.notebooks(names)
    for nb in chosen:  # refuse a bad parameter before the first (long) run, not after
        check_parameters(nb, params)
    if smoke and out is None:
        out = Path(tempfile.mkdtemp(prefix="glassbox-smoke-"))
    targets = Targets.under(out) if out is not None else Targets.committed()
    seconds = {}
    for nb in chosen:
        print(f"running {nb.name} ({'smoke' if smoke else 'full'}) ...", flush=True)
        seconds[nb.stem] = run_one(nb, targets, params, smoke)
        print(f"  {nb.stem}: {seconds[nb.stem]:.0f} s, kept in {paths.shown(targets.notebooks)}", flush=True)
    return seconds


def parse_param(text: str) -> tuple[str, object]:
    """`NAME=VALUE` from the command line, VALUE a Python literal; a bare word stays a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"parameters look like NAME=VALUE (e.g. -p N_STEPS=500), got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glassbox.journal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute notebooks with papermill (all or nothing)")
    p_run.add_argument("names", nargs="*", help="notebooks to run (default: all, in order)")
    p_run.add_argument("--smoke", action="store_true", help="SMOKE=True: tiny sizes, outputs outside the repository")
    p_run.add_argument("--out", type=Path, help="write notebooks, findings and checkpoints under DIR")
    p_run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                       help="set a parameter, VALUE a Python literal (e.g. -p N_STEPS=500); checked before running")
    p_render = sub.add_parser("render", help="render the journal as HTML")
    p_render.add_argument("--out", type=Path, default=paths.BUILD_DIR / "journal")
    sub.add_parser("readme", help="update the findings table in README.md and the glossary's 'Used in' lines")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            seconds = run(args.names, args.smoke, args.out, dict(map(parse_param, args.param)))
            print(json.dumps({k: round(v, 1) for k, v in seconds.items()}, indent=2))
        elif args.command == "render":
            from glassbox.journal import render

            print(f"journal rendered: {paths.shown(render.render_journal(catalogue.notebooks(), args.out))}")
        else:
            catalogue.update_readme()
            catalogue.update_glossary()
            print("README.md findings table and the glossary's 'Used in' lines updated")
    except (RunFailed, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; the notebook that was running was not kept", file=sys.stderr)
        return 130
    return 0
