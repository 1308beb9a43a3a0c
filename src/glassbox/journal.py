"""Run, render and summarise the journal.

    python -m glassbox.journal run [--smoke] [--out DIR] [NOTEBOOK ...]   # papermill, in order
    python -m glassbox.journal render [--out build/journal]              # HTML, works offline
    python -m glassbox.journal readme                                    # findings table in README.md

A full run executes each notebook into build/executed/ and copies it over the committed notebook
only when it succeeded, so a failing run never leaves a half-executed notebook behind.
"""
import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

from glassbox import findings, paths

BUILD = paths.ROOT / "build"
README_START, README_END = "<!-- findings:start -->", "<!-- findings:end -->"


def notebooks(names: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order, or those named (by stem, file name or path)."""
    found = sorted(paths.NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return found
    chosen = []
    for name in names:
        stem = Path(name).name.removesuffix(".ipynb")
        match = [p for p in found if p.stem == stem or p.stem.startswith(stem + "_")]
        if not match:
            raise SystemExit(f"no notebook {name!r}; the journal has: {', '.join(p.stem for p in found)}")
        chosen += match
    return chosen


def check_parameters(notebook: Path, params: dict) -> None:
    """Refuse parameters the notebook does not declare, or of another type than its default."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ValueError(f"{notebook.name} has no cell tagged 'parameters'")
    for name, value in params.items():
        if name not in declared:
            raise ValueError(f"{notebook.name} has no parameter {name!r}; its parameters: {', '.join(declared)}")
        default = eval(declared[name]["default"], {})  # the parameters cell holds literals only
        if type(value) is not type(default) and not (type(default) is float and type(value) is int):
            raise TypeError(f"{notebook.name}: parameter {name} must be {type(default).__name__} "
                            f"(default {default!r}), got {value!r} ({type(value).__name__})")


def execute(notebook: Path, output: Path, params: dict, smoke_dir: Path | None = None) -> float:
    """Execute `notebook` with papermill into `output`; returns the seconds it took."""
    import papermill

    check_parameters(notebook, params)
    output.parent.mkdir(parents=True, exist_ok=True)
    if smoke_dir is not None:
        os.environ["GLASSBOX_SMOKE_DIR"] = str(smoke_dir)
    start = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(output), parameters=params, cwd=str(notebook.parent),
                               kernel_name="python3", progress_bar=False)
    return time.perf_counter() - start


def commit_executed(executed: Path, notebook: Path) -> None:
    """Copy a successful execution over the committed notebook, each progress bar kept at its final
    state (one output, not hundreds of updates, on GitHub)."""
    import nbformat

    from glassbox.render import tidy_streams

    nb = nbformat.read(executed, as_version=4)
    tidy_streams(nb)
    paths.atomic_write_text(notebook, nbformat.writes(nb) + "\n")


def run(names: list[str] | None, smoke: bool, out: Path | None, params: dict | None = None) -> dict[str, float]:
    """Execute the notebooks in order. Full runs replace the committed copies only on success."""
    seconds, chosen = {}, notebooks(names)
    for nb in chosen:  # refuse a bad parameter before the first (long) run, not after
        try:
            check_parameters(nb, {"SMOKE": smoke, **(params or {})})
        except (TypeError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
    for nb in chosen:
        target = (out or BUILD / "executed") / nb.name
        print(f"running {nb.name} ({'smoke' if smoke else 'full'}) ...", flush=True)
        seconds[nb.stem] = execute(nb, target, {"SMOKE": smoke, **(params or {})}, smoke_dir=(out or BUILD) / "smoke" if smoke else None)
        if not smoke and out is None:
            commit_executed(target, nb)
        print(f"  {nb.stem}: {seconds[nb.stem]:.0f} s", flush=True)
    return seconds


def parse_param(text: str) -> tuple[str, object]:
    """`NAME=VALUE` from the command line, VALUE a Python literal; a bare word stays a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise SystemExit(f"parameters look like NAME=VALUE (e.g. -p N_STEPS=500), got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def headline(stem: str) -> str:
    """The one-line finding a notebook recorded as `headline` (empty before its first full run)."""
    try:
        return str(findings.load(stem).get("headline", ""))
    except FileNotFoundError:
        return ""


def title(notebook: Path) -> str:
    """The notebook's markdown title (first line of its first cell, without the #)."""
    cell = json.loads(notebook.read_text())["cells"][0]
    return "".join(cell["source"]).splitlines()[0].lstrip("# ").strip()


def readme_table() -> str:
    """Markdown table of the notebooks and what each found, from the committed findings files."""
    rows = ["| # | notebook | what it found |", "|---|---|---|"]
    for nb in notebooks():
        rows.append(f"| {nb.stem[:2]} | [{title(nb)}](notebooks/{nb.name}) | {headline(nb.stem) or '(not run yet)'} |")
    return "\n".join(rows)


def update_readme() -> None:
    """Rewrite the findings table between the markers in README.md."""
    readme = paths.ROOT / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"README.md lacks the markers {README_START} ... {README_END}")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    paths.atomic_write_text(readme, f"{head}{README_START}\n{readme_table()}\n{README_END}{tail}")


def render(out: Path) -> Path:
    """Render every notebook to HTML under `out` with an index page; returns the index path."""
    from glassbox import render as renderer

    return renderer.render_journal(notebooks(), out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glassbox.journal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute notebooks with papermill")
    p_run.add_argument("names", nargs="*", help="notebooks to run (default: all, in order)")
    p_run.add_argument("--smoke", action="store_true", help="SMOKE=True: tiny sizes, scratch outputs")
    p_run.add_argument("--out", type=Path, help="write executed notebooks here instead of in place")
    p_run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                       help="set a parameter, VALUE a Python literal (e.g. -p N_STEPS=500); checked before running")
    p_render = sub.add_parser("render", help="render the journal as HTML")
    p_render.add_argument("--out", type=Path, default=BUILD / "journal")
    sub.add_parser("readme", help="update the findings table in README.md")
    args = parser.parse_args(argv)
    if args.command == "run":
        seconds = run(args.names, args.smoke, args.out, dict(map(parse_param, args.param)))
        print(json.dumps({k: round(v, 1) for k, v in seconds.items()}, indent=2))
    elif args.command == "render":
        print(f"journal rendered: {render(args.out)}")
    else:
        update_readme()
        print("README.md findings table updated")


if __name__ == "__main__":
    sys.exit(main())
