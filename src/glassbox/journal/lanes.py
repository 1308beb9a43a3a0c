"""Notebooks side by side: which notebook needs which, read from the notebooks' own code, and a
scheduler that runs them in lanes (`python -m glassbox.journal run --lanes N`) without breaking it.

The graph (`graph()`, the one place it is declared) comes from a scan of each notebook's code cells for
the calls that write or read the record:
- saves: `checkpoints.save_model(model, NAME, ...)`, `checkpoints.save_sae(sae, NAME, ...)`;
- loads: `checkpoints.load_model(NAME)`, `load_card`, `load_sae`, `load_sae_card`;
- findings: `findings.load("NN_stem", ...)` of another notebook;
- threads: `glassbox.start(..., threads=N)` (no `threads=`: the journal's default, contract.DEFAULT_THREADS).
NAME may be a string literal, an f-string (each `{...}` matches anything, as `*` does) or the variable
of a `for` loop over a literal list in the same cell; any other NAME must be declared in DECLARED below,
and the scan refuses a notebook whose names it can neither read nor find there. Notebook B needs A
when B loads a checkpoint A saves, or reads A's findings: B starts only after A was kept.

The scheduler (`run_lanes`) keeps N lanes busy. Each free lane takes, among the notebooks whose needs
were all kept, the one with the longest chain of work after it (its own duration plus its longest
chain of dependants, with durations from the committed notebooks' last full runs; ties: numeric
order). A notebook that uses more than one thread runs alone: it would slow a neighbour and be slowed
by it, and its results do not need company. A notebook whose need failed is skipped, and says so; the
others go on. Each notebook runs in a process of its own (`launch`), which executes and promotes it
exactly as a one-notebook run does: all or nothing, the promotion under the record's lock.
"""
import ast
import fnmatch
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from glassbox.journal import contract

SAVES = {"save_model", "save_sae"}
LOADS = {"load_model", "load_card", "load_sae", "load_sae_card"}

# Checkpoint names the scan cannot read from a notebook's code: notebook stem -> {the NAME argument's
# source text -> the names it takes}. Empty while every name is a literal, an f-string or a literal loop.
DECLARED: dict[str, dict[str, tuple[str, ...]]] = {}

HEARTBEAT_S = 600  # a line saying what runs, every ten minutes without other news
NOISE = ("Kernel is running over TCP without encryption",)  # a kernel's start-up warning, the same in every run
GRACE_S = 5  # after Ctrl-C, how long the running notebooks get to stop by themselves before they are interrupted


class GraphError(ValueError):
    """The notebooks' dependencies cannot be read or do not make a graph; the message says what to do."""


@dataclass(frozen=True)
class Uses:
    """What one notebook writes to and reads from the record, as its code says."""

    stem: str
    saves: frozenset[str]  # checkpoint names (or patterns, '*' for an f-string's field)
    loads: frozenset[str]
    findings: frozenset[str]  # stems whose findings it reads (its own excluded)
    threads: int
    unresolved: tuple[str, ...] = ()  # NAME arguments taken from DECLARED


@dataclass(frozen=True)
class Graph:
    """Which notebook needs which (edges only between the notebooks given), with why."""

    stems: tuple[str, ...]  # numeric order
    needs: dict[str, tuple[str, ...]]
    why: dict[tuple[str, str], str]  # (needed, needing) -> "checkpoint median" / "findings"
    threads: dict[str, int]
    seconds: dict[str, float]  # each notebook's last full run (0 when unknown)

    def edges(self) -> list[tuple[str, str]]:
        return sorted((need, stem) for stem in self.stems for need in self.needs[stem])


def _code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def _called(node: ast.Call) -> tuple[str | None, str]:
    """(the object a method is called on, or None for a bare name; the function's name)."""
    func = node.func
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else func.value.attr if isinstance(
            func.value, ast.Attribute) else None
        return owner, func.attr
    return None, func.id if isinstance(func, ast.Name) else ""


def _binds(target: ast.expr, name: str) -> int | None:
    """None if the loop target does not bind `name`; -1 if it is `name`; else its index in a tuple target."""
    if isinstance(target, ast.Name):
        return -1 if target.id == name else None
    if isinstance(target, ast.Tuple):
        return next((i for i, t in enumerate(target.elts) if isinstance(t, ast.Name) and t.id == name), None)
    return None


def _loop_values(tree: ast.AST, call: ast.Call, name: str) -> list[str] | None:
    """The literal strings the variable `name` takes in the innermost loop around `call` that binds it,
    when that loop runs over a literal list (`for name in ["a", "b"]`, `for name, x in [("a", 1), ...]`)."""
    loops = []  # (target, iter) of each loop or comprehension whose body holds the call, outermost first
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and any(n is call for b in node.body for n in ast.walk(b)):
            loops.append((node.target, node.iter))
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)) and any(
                n is call for n in ast.walk(node)):
            loops += [(g.target, g.iter) for g in node.generators]
    for target, iterable in reversed(loops):
        index = _binds(target, name)
        if index is None:
            continue
        if not isinstance(iterable, (ast.List, ast.Tuple)):
            return None
        items = [e if index == -1 else e.elts[index] if isinstance(e, ast.Tuple) and len(e.elts) == len(target.elts)
                 else None for e in iterable.elts]
        if not items or not all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in items):
            return None
        return [e.value for e in items]
    return None


def _names(arg: ast.expr, tree: ast.AST, call: ast.Call) -> list[str] | None:
    """The checkpoint names an argument stands for (patterns for f-strings), or None if unreadable."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else "*" for v in arg.values)]
    if isinstance(arg, ast.Name):
        return _loop_values(tree, call, arg.id)
    return None


def _name_argument(node: ast.Call, kind: str) -> ast.expr | None:
    """The NAME argument: the second positional one of a save (after the model), else the first; or name=."""
    for kw in node.keywords:
        if kw.arg == "name":
            return kw.value
    index = 1 if kind == "save" else 0
    return node.args[index] if len(node.args) > index else None


def scan(notebook: Path, declared: dict[str, dict[str, tuple[str, ...]]] | None = None) -> Uses:
    """What `notebook` saves, loads and reads, and its thread count, from its code cells (see the module)."""
    declared = DECLARED if declared is None else declared
    stem = notebook.stem
    saves, loads, reads, threads, unresolved, unreadable = set(), set(), set(), [], [], []
    for number, source in enumerate(_code_cells(notebook)):
        try:
            tree = ast.parse(source)
        except SyntaxError:  # a cell of shell or magic lines (e.g. Colab's setup) reads nothing from the record
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            owner, name = _called(node)
            if owner in (None, "checkpoints") and name in SAVES | LOADS:
                kind = "save" if name in SAVES else "load"
                arg = _name_argument(node, kind)
                if arg is None:
                    continue
                names = _names(arg, tree, node)
                text = ast.get_source_segment(source, arg)
                if names is None and text in declared.get(stem, {}):
                    names = list(declared[stem][text])
                    unresolved.append(text)
                if names is None:
                    unreadable.append(f"code cell {number}: {ast.get_source_segment(source, node)[:80]}")
                    continue
                (saves if kind == "save" else loads).update(names)
            elif owner == "findings" and name == "load" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value != stem:
                    reads.add(arg.value)
            elif owner == "glassbox" and name == "start":
                value = next((kw.value for kw in node.keywords if kw.arg == "threads"), None)
                if value is None:
                    threads.append(contract.DEFAULT_THREADS)
                elif isinstance(value, ast.Constant) and isinstance(value.value, int):
                    threads.append(value.value)
                else:
                    unreadable.append(f"code cell {number}: glassbox.start(threads=...) is not a number")
    if unreadable:
        raise GraphError(f"{notebook.name}: the checkpoint names of " + "; ".join(unreadable) + " cannot be read "
                         "from the code (a string, an f-string or a loop over a literal list can); declare them in "
                         "glassbox.journal.lanes.DECLARED")
    if len(threads) != 1:
        raise GraphError(f"{notebook.name} calls glassbox.start {len(threads)} times; the journal expects once")
    return Uses(stem, frozenset(saves), frozenset(loads), frozenset(reads), threads[0], tuple(unresolved))


def _match(load: str, save: str) -> bool:
    return fnmatch.fnmatchcase(load, save) or fnmatch.fnmatchcase(save, load)


def last_seconds(notebook: Path) -> float:
    """How long the committed notebook's last run took (papermill's record), 0 when it has none."""
    try:
        return float(json.loads(notebook.read_text())["metadata"]["papermill"]["duration"] or 0)
    except (KeyError, TypeError, ValueError):
        return 0.0


def graph(notebooks: list[Path], declared: dict[str, dict[str, tuple[str, ...]]] | None = None) -> Graph:
    """Which of `notebooks` needs which (see the module). Raises GraphError for two notebooks that save
    the same checkpoint (lanes could run them together) or for a cycle."""
    uses = {nb.stem: scan(nb, declared) for nb in notebooks}
    stems = tuple(sorted(uses))
    for a in stems:
        for b in stems:
            same = sorted(s for s in uses[a].saves for t in uses[b].saves if a < b and _match(s, t))
            if same:
                raise GraphError(f"{a} and {b} both save checkpoint {same[0]}: one of them must own it")
    needs, why = {s: [] for s in stems}, {}
    for stem in stems:
        for other in stems:
            if other == stem:
                continue
            loaded = sorted(n for n in uses[stem].loads if any(_match(n, s) for s in uses[other].saves))
            if loaded:
                why[(other, stem)] = "checkpoint " + ", ".join(loaded)
            elif other in uses[stem].findings:
                why[(other, stem)] = "findings"
            else:
                continue
            needs[stem].append(other)
    found = Graph(stems, {s: tuple(n) for s, n in needs.items()}, why, {s: u.threads for s, u in uses.items()},
                  {nb.stem: last_seconds(nb) for nb in notebooks})
    order(found)  # refuses a cycle
    return found


def order(g: Graph) -> list[str]:
    """A sequential order that respects the graph (numeric where free); GraphError for a cycle."""
    done, out = set(), []
    while len(out) < len(g.stems):
        ready = [s for s in g.stems if s not in done and set(g.needs[s]) <= done]
        if not ready:
            left = [s for s in g.stems if s not in done]
            raise GraphError("the notebooks need each other in a cycle: " + ", ".join(
                f"{s} needs {'/'.join(n for n in g.needs[s] if n not in done)}" for s in left))
        out.append(ready[0])
        done.add(ready[0])
    return out


def chain_seconds(g: Graph) -> dict[str, float]:
    """Each notebook's duration plus the longest chain of notebooks that need it (at least 1 s each)."""
    after = {s: [t for t in g.stems if s in g.needs[t]] for s in g.stems}
    memo: dict[str, float] = {}

    def chain(s: str) -> float:
        if s not in memo:
            memo[s] = max(g.seconds.get(s, 0.0), 1.0) + max((chain(t) for t in after[s]), default=0.0)
        return memo[s]

    return {s: chain(s) for s in g.stems}


# ---- the scheduler


@dataclass
class Result:
    stem: str
    outcome: str = "not started"  # kept / failed / skipped / interrupted / not started
    lane: int | None = None
    start: float | None = None  # seconds after the run began
    seconds: float | None = None
    reason: str = ""


@dataclass
class _Running:
    stem: str
    lane: int
    process: object  # subprocess.Popen
    reader: threading.Thread
    started: float
    errors: list = field(default_factory=list)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"+{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def run_lanes(g: Graph, lanes: int, launch: Callable[[str], object], say: Callable[[str], None] = print,
              poll: float = 0.2, kept: list | None = None) -> dict[str, Result]:
    """Run every notebook of `g` in `lanes` lanes (see the module). `launch(stem)` starts one notebook's
    process (a Popen with text stdout, stderr merged into it) that exits 0 once the notebook was kept and
    ends on failure with a line starting "error: ". Each line a process prints is shown with its lane.
    Returns each notebook's Result, and appends each kept stem to `kept` as it is kept. On Ctrl-C (or
    SIGTERM) the running notebooks are interrupted, which keeps nothing of them (one in its promotion
    finishes it first), the summary still comes, and KeyboardInterrupt is raised after it."""
    if lanes < 1:
        raise ValueError(f"--lanes must be at least 1, got {lanes}")
    chain = chain_seconds(g)
    results = {s: Result(s) for s in g.stems}
    pending = sorted(g.stems, key=lambda s: (-chain[s], s))
    running: dict[int, _Running] = {}
    lock = threading.Lock()
    t0 = time.monotonic()
    now = lambda: time.monotonic() - t0  # noqa: E731

    def show(line: str) -> None:
        with lock:
            say(line)

    def read(item: _Running) -> None:
        for line in item.process.stdout:
            line = line.rstrip("\n")
            if line.startswith("error: "):
                item.errors.append(line.removeprefix("error: "))
            if not any(noise in line for noise in NOISE):
                show(f"  [lane {item.lane}] {line}")

    def start(stem: str, lane: int) -> None:
        threads = g.threads[stem]
        alone = ", alone" if threads > 1 and lanes > 1 else ""
        last = f"; last full run {g.seconds[stem]:.0f} s" if g.seconds.get(stem) else ""
        show(f"[{_clock(now())}] lane {lane}: start {stem} ({threads} thread{'s' if threads > 1 else ''}{alone}{last})")
        item = _Running(stem, lane, launch(stem), None, now())
        item.reader = threading.Thread(target=read, args=(item,), daemon=True)
        item.reader.start()
        running[lane] = item
        results[stem].lane, results[stem].start = lane, item.started

    def finish(lane: int, outcome: str | None = None) -> None:
        item = running.pop(lane)
        code = item.process.wait()
        item.reader.join(timeout=30)
        result = results[item.stem]
        result.seconds = now() - item.started
        if outcome is None:
            outcome = "kept" if code == 0 else "failed"
        result.outcome = outcome
        if outcome == "kept" and kept is not None:
            kept.append(item.stem)
        if outcome != "kept":
            result.reason = item.errors[-1] if item.errors else f"exited with status {code}"
        show(f"[{_clock(now())}] lane {lane}: {item.stem} {outcome} ({result.seconds:.0f} s)"
             + (f": {result.reason}" if outcome == "failed" else ""))

    def schedule() -> None:
        for stem in list(pending):  # a notebook whose need was not kept cannot run
            lost = [n for n in g.needs[stem] if results[n].outcome in ("failed", "skipped")]
            if lost:
                pending.remove(stem)
                results[stem].outcome = "skipped"
                results[stem].reason = "needs " + ", ".join(
                    f"{n} ({g.why[(n, stem)]}), which {'failed' if results[n].outcome == 'failed' else 'was skipped'}"
                    for n in lost)
                show(f"[{_clock(now())}] {stem} skipped: {results[stem].reason}")
        while len(running) < lanes:
            ready = [s for s in pending if all(results[n].outcome == "kept" for n in g.needs[s])]
            if not ready:
                return
            stem = ready[0]
            if running and (g.threads[stem] > 1 or any(g.threads[r.stem] > 1 for r in running.values())):
                return  # it runs alone: wait for the lanes to empty (nothing jumps the queue meanwhile)
            pending.remove(stem)
            start(stem, min(set(range(1, lanes + 1)) - set(running)))

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term) if threading.current_thread() is threading.main_thread() else None
    say(f"{time.strftime('%H:%M:%S')}: {len(g.stems)} notebook(s) in {lanes} lane(s); order (longest chain of work "
        f"first, what needs another waits for it): {', '.join(s[:2] for s in pending)}")
    last_news = now()
    try:
        schedule()
        while running:
            time.sleep(poll)
            for lane, item in sorted(running.items()):
                if item.process.poll() is not None:
                    finish(lane)
                    last_news = now()
            schedule()
            if now() - last_news >= HEARTBEAT_S:
                show(f"[{_clock(now())}] running: " + "; ".join(f"lane {lane} {item.stem} ({(now() - item.started) / 60:.0f} min)"
                                                                for lane, item in sorted(running.items())))
                last_news = now()
    except KeyboardInterrupt:
        show(f"[{_clock(now())}] interrupted: stopping {', '.join(r.stem for r in running.values()) or 'nothing'}")
        _stop(running, results, finish)
        for stem in pending:
            results[stem].reason = "not started: the run was interrupted"
        say(summary(results, lanes, now()))
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    say(summary(results, lanes, now()))
    return results


def _stop(running: dict, results: dict, finish: Callable) -> None:
    """Interrupt every running notebook and wait for it: a process in its promotion finishes that first."""
    deadline = time.monotonic() + GRACE_S  # a Ctrl-C at the terminal reached them already: give them a moment
    while any(r.process.poll() is None for r in running.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for item in running.values():
        if item.process.poll() is None:
            item.process.send_signal(signal.SIGINT)
    for lane in sorted(running):
        code = running[lane].process.wait()
        finish(lane, "kept" if code == 0 else "interrupted")


def summary(results: dict[str, Result], lanes: int, elapsed: float) -> str:
    """What ran where: one row per notebook, numeric order."""
    rows = [f"what ran where ({lanes} lane(s), {_clock(elapsed)[1:]} in all):",
            f"  {'notebook':<40} {'lane':>4}  {'start':>8}  {'seconds':>7}  result"]
    for stem in sorted(results):
        r = results[stem]
        outcome = r.outcome + (f": {r.reason}" if r.reason and r.outcome != "kept" else "")
        rows.append(f"  {stem:<40} {r.lane or '-':>4}  {_clock(r.start) if r.start is not None else '-':>8}  "
                    f"{f'{r.seconds:.0f}' if r.seconds is not None else '-':>7}  {outcome}")
    return "\n".join(rows)


def describe(g: Graph) -> str:
    """The graph in words, one line per notebook that needs another."""
    lines = [f"{s} needs " + ", ".join(f"{n} ({g.why[(n, s)]})" for n in g.needs[s]) for s in g.stems if g.needs[s]]
    alone = [s for s in g.stems if g.threads[s] > 1]
    if alone:
        lines.append("runs alone (more than one thread): " + ", ".join(alone))
    return "\n".join(lines)


if __name__ == "__main__":  # python -m glassbox.journal.lanes: print the graph the runner would use
    from glassbox.journal import catalogue

    print(describe(graph(catalogue.notebooks())))
    sys.exit(0)
