"""Notebooks in two lanes (issue 31): the dependency graph is read from what each notebook saves and
loads, the scheduler keeps it (a notebook starts only after those it needs were kept, a failure skips
what needs it and nothing else, a notebook with more than one thread runs alone), and a run in lanes
keeps everything all or nothing per notebook, with the same results as one at a time. The scheduler
runs small stand-in processes here; the end-to-end runs use a throwaway repository (GLASSBOX_ROOT)
with fixture notebooks."""
import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

import glassbox
from glassbox.journal import catalogue, contract, lanes, paths
from test_run_contract import KERNEL, ending, journal, snapshot


def notebook(path: Path, *cells: str, params: str = "SMOKE = False\nSEED = 0") -> Path:
    """A fixture notebook: a parameters cell, then `cells` as code cells."""
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(metadata=KERNEL)
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem[:2]} · fixture"), first,
                *[nbformat.v4.new_code_cell(c) for c in cells]]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def start(stem: str, threads: str = ", threads=1") -> str:
    return (f"import glassbox\nfrom glassbox import findings\nfrom glassbox.journal import checkpoints\n"
            f'run = glassbox.start("{stem}", smoke=SMOKE, seed=SEED{threads})')


# ---- the graph of the journal's own notebooks


@pytest.fixture(scope="module")
def journal_graph() -> lanes.Graph:
    return lanes.graph(catalogue.notebooks())


def test_every_notebook_is_read_and_the_graph_has_the_known_edges_and_no_cycle(journal_graph):
    assert journal_graph.stems == tuple(nb.stem for nb in catalogue.notebooks())
    assert {s[:2] for s in journal_graph.stems} >= {f"{n:02d}" for n in range(12)}
    edges = {(a[:2], b[:2]) for a, b in journal_graph.edges()}
    known = {("02", "03"), ("02", "04"), ("01", "04"), ("01", "05"), ("01", "06"), ("07", "10")}
    assert known <= edges, f"missing: {known - edges}"
    assert all(a < b for a, b in edges), "numeric order (the one-lane run's) must respect every edge"
    assert lanes.order(journal_graph) == sorted(journal_graph.stems)
    assert "checkpoint median" in journal_graph.why[("02_find_median_training", "03_find_median_circuits")]


def test_every_checkpoint_a_notebook_loads_or_the_record_holds_is_saved_by_a_notebook_the_scan_read():
    uses = [lanes.scan(nb) for nb in catalogue.notebooks()]
    saved = [s for u in uses for s in u.saves]
    for u in uses:
        for name in u.loads:
            assert any(lanes._match(name, s) for s in saved), f"{u.stem} loads {name}, which no notebook saves"
    committed = {p.stem for p in paths.CHECKPOINT_DIR.glob("*.json")} | {
        p.name for p in paths.CHECKPOINT_DIR.iterdir() if p.is_dir() and not p.name.startswith(".")}
    unsaved = sorted(c for c in committed if not any(lanes._match(c, s) for s in saved))
    assert not unsaved, f"checkpoints no scanned save writes (a name the scan misses?): {unsaved}"


def test_the_thread_counts_are_those_glassbox_start_is_given():
    for nb in catalogue.notebooks():
        (call,) = re.findall(r"glassbox\.start\(([^)]*)\)", "\n".join(lanes._code_cells(nb)))
        said = re.search(r"threads=(\d+)", call)
        assert lanes.scan(nb).threads == (int(said.group(1)) if said else contract.DEFAULT_THREADS), nb.name


def test_every_declared_name_is_one_the_scan_cannot_read():
    for stem, names in lanes.DECLARED.items():
        (nb,) = catalogue.notebooks([stem])
        used = lanes.scan(nb).unresolved
        assert set(names) <= set(used), f"{stem}: declared {set(names) - set(used)} are read from the code now: remove them"


def test_the_library_reads_no_checkpoint_or_findings_of_its_own_so_the_notebooks_say_it_all():
    src = Path(glassbox.__file__).parent
    for path in sorted(src.rglob("*.py")):
        if "journal" in path.relative_to(src).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = getattr(node.func.value, "id", None)
                assert not (owner == "checkpoints" and node.func.attr in lanes.LOADS | lanes.SAVES), \
                    f"{path.name} calls checkpoints.{node.func.attr}: the lanes' graph would not see it"
                assert not (owner == "findings" and node.func.attr == "load"), f"{path.name} reads findings"


# ---- the scan, on fixture notebooks


def test_the_scan_reads_literals_f_strings_and_literal_loops_and_refuses_the_rest(tmp_path):
    nb = notebook(tmp_path / "50_a.ipynb", start("50_a"),
                  'checkpoints.save_model(m, "plain", kind="mlp")\n'
                  'for d in (1, 2):\n    checkpoints.save_model(m, f"wide_d{d}", kind="mlp")\n'
                  'for name, x in [("pair_a", 1), ("pair_b", 2)]:\n    checkpoints.save_sae(s, name, config={})\n'
                  'for name in ["seen_1", "seen_2"]:\n    checkpoints.load_model(name)\n'
                  'checkpoints.load_card("other", directory=None)\nfindings.load("49_x")\nfindings.load(run.stem)',
                  "!pip install nothing")
    u = lanes.scan(nb)
    assert u.saves == {"plain", "wide_d*", "pair_a", "pair_b"}
    assert u.loads == {"seen_1", "seen_2", "other"} and u.findings == {"49_x"} and u.threads == 1
    notebook(nb, start("50_a", threads=""), "names = pick()\ncheckpoints.load_model(names[0])")
    with pytest.raises(lanes.GraphError, match=r"load_model\(names\[0\]\).*declare them in glassbox.journal.lanes.DECLARED"):
        lanes.scan(nb)
    u = lanes.scan(nb, declared={"50_a": {"names[0]": ("picked",)}})
    assert u.loads == {"picked"} and u.unresolved == ("names[0]",)
    assert u.threads == contract.DEFAULT_THREADS, "no threads= means the journal's default"


def test_the_graph_links_loads_to_saves_and_findings_and_refuses_a_cycle_or_two_owners(tmp_path):
    a = notebook(tmp_path / "51_a.ipynb", start("51_a"), 'checkpoints.save_model(m, f"w_{k}")')
    b = notebook(tmp_path / "52_b.ipynb", start("52_b", threads=""), 'checkpoints.load_model("w_3")')
    c = notebook(tmp_path / "53_c.ipynb", start("53_c"), 'findings.load("52_b", None)')
    g = lanes.graph([a, b, c])
    assert g.edges() == [("51_a", "52_b"), ("52_b", "53_c")]
    assert g.why == {("51_a", "52_b"): "checkpoint w_3", ("52_b", "53_c"): "findings"}
    assert g.threads == {"51_a": 1, "52_b": contract.DEFAULT_THREADS, "53_c": 1}
    notebook(a, start("51_a"), 'checkpoints.save_model(m, f"w_{k}")\nfindings.load("53_c")')
    with pytest.raises(lanes.GraphError, match="cycle"):
        lanes.graph([a, b, c])
    notebook(c, start("53_c"), 'checkpoints.save_model(m, "w_9")')
    notebook(a, start("51_a"), 'checkpoints.save_model(m, f"w_{k}")')
    with pytest.raises(lanes.GraphError, match="51_a and 53_c both save checkpoint"):
        lanes.graph([a, b, c])


# ---- the scheduler, with stand-in processes


def stand_in(seconds: float, code: int = 0, line: str = "") -> subprocess.Popen:
    body = (f"import signal, sys, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)  # as runner.interruptible()\n"
            f"print({line!r}) if {line!r} else None\ntime.sleep({seconds})\nsys.exit({code})")
    return subprocess.Popen([sys.executable, "-c", body], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def made_graph(needs: dict[str, tuple[str, ...]], threads: dict[str, int] | None = None,
               seconds: dict[str, float] | None = None) -> lanes.Graph:
    stems = tuple(sorted(needs))
    return lanes.Graph(stems, needs, {(n, s): "checkpoint x" for s in stems for n in needs[s]},
                       {s: (threads or {}).get(s, 1) for s in stems}, dict(seconds or {}))


def events(lines: list[str]) -> list[tuple[str, int, str]]:
    """("start" | "kept" | "failed", lane, stem) from the scheduler's lines, in order."""
    out = []
    for line in lines:
        m = re.match(r"\[\+[\d:]+\] lane (\d): (?:start (\S+)|(\S+) (kept|failed|interrupted))", line)
        if m:
            out.append(("start", int(m[1]), m[2]) if m[2] else (m[4], int(m[1]), m[3]))
    return out


def overlapping(ev: list[tuple[str, int, str]]) -> set[frozenset]:
    """Pairs of notebooks that ran at the same time."""
    running, pairs = set(), set()
    for kind, _, stem in ev:
        if kind == "start":
            pairs |= {frozenset((stem, other)) for other in running}
            running.add(stem)
        else:
            running.discard(stem)
    return pairs


def test_two_lanes_run_side_by_side_and_a_notebook_starts_only_after_what_it_needs_was_kept(monkeypatch):
    monkeypatch.setattr(lanes, "HEARTBEAT_S", 0.4)
    g = made_graph({"01_a": (), "02_b": (), "03_c": ("01_a",), "04_d": ("01_a", "02_b")},
                   seconds={"01_a": 100, "02_b": 10, "03_c": 100, "04_d": 1})
    times = {"01_a": 1.0, "02_b": 0.3, "03_c": 0.3, "04_d": 0.3}
    lines, kept = [], []
    results = lanes.run_lanes(g, 2, lambda s: stand_in(times[s]), say=lines.append, poll=0.05, kept=kept)
    assert {r.outcome for r in results.values()} == {"kept"} and sorted(kept) == list(g.stems)
    ev = events(lines)
    assert ev[:2] == [("start", 1, "01_a"), ("start", 2, "02_b")], "longest chain first, both lanes at once"
    done = [stem for kind, _, stem in ev if kind == "kept"]
    for stem in g.stems:
        first = next(i for i, e in enumerate(ev) if e == ("start", results[stem].lane, stem))
        for need in g.needs[stem]:
            assert ("kept", results[need].lane, need) in ev[:first], f"{stem} started before {need} was kept"
    assert frozenset(("01_a", "02_b")) in overlapping(ev) and set(done) == set(g.stems)
    assert "what ran where (2 lane(s)" in lines[-1] and all(s in lines[-1] for s in g.stems)
    assert any(re.match(r"\[\+[\d:]+\] running: lane 1 01_a \(0 min\)", line) for line in lines), \
        "a notebook that runs long gets a line now and then"


def test_a_failure_skips_what_needs_it_and_the_others_go_on():
    g = made_graph({"01_a": (), "02_b": ("01_a",), "03_c": ("02_b",), "04_d": ()})
    launch = lambda s: stand_in(0.2, 1, "error: 01_a failed in cell 3: boom") if s == "01_a" else stand_in(0.2)  # noqa: E731
    lines = []
    results = lanes.run_lanes(g, 2, launch, say=lines.append, poll=0.05)
    assert results["01_a"].outcome == "failed" and results["01_a"].reason == "01_a failed in cell 3: boom"
    assert results["02_b"].outcome == "skipped" and "needs 01_a (checkpoint x), which failed" in results["02_b"].reason
    assert results["03_c"].outcome == "skipped" and "02_b (checkpoint x), which was skipped" in results["03_c"].reason
    assert results["04_d"].outcome == "kept"
    table = lines[-1]
    assert re.search(r"02_b\s+-\s+-\s+-\s+skipped: needs 01_a", table), table
    assert "  [lane 1] error: 01_a failed in cell 3: boom" in lines, "each process's lines are shown with its lane"


def test_a_notebook_with_two_threads_runs_alone_and_one_lane_runs_one_at_a_time():
    g = made_graph({"01_a": (), "02_b": (), "03_c": (), "04_d": ()}, threads={"02_b": 2},
                   seconds={"01_a": 50, "02_b": 40, "03_c": 30, "04_d": 20})
    lines = []
    results = lanes.run_lanes(g, 2, lambda s: stand_in(0.3), say=lines.append, poll=0.05)
    assert all(r.outcome == "kept" for r in results.values())
    pairs = overlapping(events(lines))
    assert not [p for p in pairs if "02_b" in p], f"02_b (2 threads) ran beside {pairs}"
    assert pairs, "the 1-thread notebooks still ran side by side"
    lines = []
    lanes.run_lanes(g, 1, lambda s: stand_in(0.1), say=lines.append, poll=0.05)
    assert not overlapping(events(lines)) and "(1 lane(s)" in lines[-1]
    with pytest.raises(ValueError, match="at least 1"):
        lanes.run_lanes(g, 0, lambda s: stand_in(0))


def test_sigterm_interrupts_the_running_notebooks_and_still_prints_the_table(monkeypatch):
    g = made_graph({"01_a": (), "02_b": (), "03_c": ("01_a",)})
    monkeypatch.setattr(lanes, "GRACE_S", 0.5)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    lines, before = [], signal.getsignal(signal.SIGTERM)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            lanes.run_lanes(g, 2, lambda s: stand_in(60), say=lines.append, poll=0.05)
    finally:
        timer.cancel()
    assert signal.getsignal(signal.SIGTERM) == before, "the SIGTERM handler is put back"
    table = lines[-1]
    assert re.search(r"01_a\s+1 .* interrupted", table) and re.search(r"02_b\s+2 .* interrupted", table), table
    assert re.search(r"03_c .*not started: the run was interrupted", table), table


# ---- end to end: the runner in lanes on a throwaway repository


SAVER = ('import torch\nfrom glassbox.studies import models\ntorch.manual_seed(SEED)\n'
         'm = models.build_mlp({"sizes": [784, 16, 10]})\nx = torch.randn(256, 784)\n'
         'opt = torch.optim.SGD(m.parameters(), lr=0.1)\nfor _ in range(20):\n'
         '    loss = m(x).logsumexp(-1).mean()\n    opt.zero_grad()\n    loss.backward()\n    opt.step()\n'
         'findings.record("loss", loss.item())\n'
         'checkpoints.save_model(m, "fixture_a", kind="mlp", config={"sizes": [784, 16, 10]}, metrics={}, seed=SEED,\n'
         '                       train_seconds=0)')
LOADER = ('import torch\ntorch.manual_seed(SEED + 1)\nm = checkpoints.load_model("fixture_a")\n'
          'findings.record("mean_logit", m(torch.randn(64, 784)).mean().item())')
OTHER = ('import torch\ntorch.manual_seed(SEED + 2)\na = torch.randn(200, 200)\n'
         'findings.record("norm", torch.linalg.matrix_norm(a @ a, ord=2).item())')


@pytest.fixture
def lanes_repo(tmp_path) -> Path:
    """96 saves a checkpoint that 97 loads (committed: 97 fails without it); 98 needs nothing."""
    for stem, body in (("96_saver", SAVER), ("97_loader", LOADER), ("98_other", OTHER)):
        notebook(tmp_path / "notebooks" / f"{stem}.ipynb", start(stem), body, "glassbox.finish()")
    for folder in ("notebooks/findings", "checkpoints", "data"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    return tmp_path


def test_a_run_in_two_lanes_keeps_the_order_and_gives_the_results_of_one_at_a_time(lanes_repo):
    done = journal(lanes_repo)
    assert done.returncode == 0, done.stdout + done.stderr
    ev = events(done.stdout.splitlines())
    assert ev[:2] == [("start", 1, "96_saver"), ("start", 2, "98_other")], done.stdout
    assert ev.index(next(e for e in ev if e[0] == "kept" and e[2] == "96_saver")) < \
        ev.index(next(e for e in ev if e[0] == "start" and e[2] == "97_loader")), done.stdout
    assert "what ran where (2 lane(s)" in done.stdout
    side = {p.name: p.read_bytes() for p in (lanes_repo / "notebooks/findings").glob("*.json")}
    assert set(side) == {"96_saver.json", "97_loader.json", "98_other.json"}
    from glassbox.journal import runner

    targets = runner.Targets(lanes_repo / "notebooks", lanes_repo / "notebooks/findings", lanes_repo / "checkpoints",
                             lanes_repo / "build/stage", lanes_repo / "build")
    assert runner.record_problems(targets) == [], "each notebook promoted what it recorded"
    before = snapshot(lanes_repo)
    alone = journal(lanes_repo, "96", "98", "--lanes", "1", "--out", str(lanes_repo / "build/alone"))
    assert alone.returncode == 0, alone.stderr
    assert "lane" not in alone.stdout, "--lanes 1 runs one at a time, as before"
    # 96 and 98 ran side by side above; alone now. The same computations on the same machine, at one thread
    # each: company must not change a bit of what they record
    assert {p.name: p.read_bytes() for p in (lanes_repo / "build/alone/findings").glob("*.json")} == {
        k: v for k, v in side.items() if k != "97_loader.json"}
    smoke = journal(lanes_repo, "97", "98", "--smoke")
    assert smoke.returncode == 0 and "smoke: outputs removed" in smoke.stdout, smoke.stdout + smoke.stderr
    assert snapshot(lanes_repo) == before, "--out and --smoke runs in lanes leave the committed files alone"


def test_a_failed_notebook_in_lanes_keeps_nothing_of_it_or_what_needs_it_and_the_others_are_kept(lanes_repo):
    notebook(lanes_repo / "notebooks/96_saver.ipynb", start("96_saver"), SAVER, "raise RuntimeError('boom')",
             "glassbox.finish()")  # it still says it saves fixture_a: 97 needs it
    before = snapshot(lanes_repo)
    done = journal(lanes_repo, "96", "97", "98")
    assert done.returncode == 1, done.stdout + done.stderr
    line = ending(done)
    assert "2 of 3 notebooks not kept (96_saver failed; 97_loader skipped)" in line, line
    assert re.search(r"96_saver\s+1 .* failed: 96_saver failed in cell \d+ \(execution count \d+\): RuntimeError: boom",
                     done.stdout), done.stdout
    assert re.search(r"97_loader\s+-\s+-\s+-\s+skipped: needs 96_saver \(checkpoint fixture_a\), which failed",
                     done.stdout), done.stdout
    after = snapshot(lanes_repo)
    assert {k for k in after if after[k] != before.get(k)} == {"notebooks/98_other.ipynb",
                                                                "notebooks/findings/98_other.json"}
    assert not (lanes_repo / "checkpoints/fixture_a.pt").exists()
    refused = journal(lanes_repo, "--lanes", "0")
    assert refused.returncode == 1 and "--lanes must be a whole number of at least 1" in ending(refused)


def test_the_makefile_runs_the_journal_in_lanes():
    make = (paths.ROOT / "Makefile").read_text()
    assert re.search(r"glassbox\.journal run --lanes \$\(LANES\)", make) and re.search(r"^LANES\s*\?=\s*2", make, re.M)
