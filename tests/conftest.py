"""Shared fixtures: a tiny CNN that glassbox did not build, and cached smoke runs of notebooks
(executed by the journal runner in a network namespace that has only loopback, with a guard in every
kernel that refuses and logs each attempt to reach the network: tests/offline)."""
import ast
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

import nbformat

import pytest
import torch
from torch import nn

from glassbox import findings
from glassbox.journal import catalogue, contract, paths, record, runner

OFFLINE_GUARD = Path(__file__).parent / "offline"
sys.path.append(str(OFFLINE_GUARD))
import glassbox_offline  # noqa: E402  (the guard's helpers: tests/offline/glassbox_offline.py)


if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share the cores: one torch thread each in the tests themselves
    torch.set_num_threads(1)


class TinyCNN(nn.Module):
    """A model glassbox knows nothing about: every glassbox method must work on it too."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 5, stride=2), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.head(self.features(x.reshape(len(x), 1, 28, 28)))


@pytest.fixture
def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory) -> Path:
    """One folder for every smoke run of this test session (notebooks, findings, checkpoints, stage). Under
    pytest-xdist (`make test` runs two workers) the workers share it: the folder beside their own base folders."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return tmp_path_factory.mktemp("smoke")
    shared = tmp_path_factory.getbasetemp().parent / "smoke"  # one per test run: its workers' base folders sit beside it
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session")
def no_network():
    """A network namespace with only loopback (tests/offline/glassbox_offline.py): smoke runs execute their
    kernels inside it, so nothing they start reaches the network; None where this machine cannot make one."""
    ns = glassbox_offline.NoNetwork.make()
    if ns is None:
        warnings.warn("no network namespace (needs root): smoke kernels are kept offline by the Python guard alone")
    yield ns
    if ns is not None:
        ns.close()


@pytest.fixture(scope="session")
def offline_log(smoke_dir, no_network) -> Path:
    """Python started from now on (the kernels) refuses non-loopback connections and name lookups, and logs
    each attempt here (tests/offline/sitecustomize.py); smoke_run also starts kernels inside `no_network`."""
    log = smoke_dir / "network-attempts.log"
    log.touch()
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "GLASSBOX_OFFLINE_LOG", "GLASSBOX_OFFLINE_NETNS")}
    os.environ.update(glassbox_offline.guard_env(log, no_network, saved["PYTHONPATH"]))
    yield log
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# Each notebook's test module lists wrong answers to its "write it yourself" exercises:
#     WRONG_ANSWERS = {"my_function": [(wrong_def_source, fragment_of_the_checker_message), ...], ...}
# (or, for one exercise, ("my_function", [...])). The smoke run tries them in the notebook's own kernel
# after its last cell (see `wrong_answer_probe`), with each solution from notebooks/solutions/NN.py
# put in place of the reader's stub first.
WRONG_ANSWERS: dict[str, dict[str, list[tuple[str, str]]]] = {}
PROBE_MARK = "WRONG-ANSWER-OUTCOMES"


def pytest_collection_modifyitems(config, items):
    """Every test that executes a notebook carries the `notebook` marker (`pytest -m "not notebook"` skips
    them); collect each notebook test module's WRONG_ANSWERS."""
    unmarked = [item.nodeid for item in items if "smoke_run" in getattr(item, "fixturenames", ())
                and item.get_closest_marker("notebook") is None]
    if unmarked:
        raise pytest.UsageError(f"tests that run a notebook must be marked @pytest.mark.notebook: {unmarked}")
    for module in {item.module for item in items if getattr(item, "module", None) is not None}:
        if hasattr(module, "WRONG_ANSWERS"):
            WRONG_ANSWERS[module.STEM] = wrong_answers_by_function(module.WRONG_ANSWERS)


def wrong_answers_by_function(listed) -> dict[str, list[tuple[str, str]]]:
    """WRONG_ANSWERS as {function: [(source, message fragment), ...]}, from either form."""
    return dict(listed) if isinstance(listed, dict) else {listed[0]: listed[1]}


def exercise_cell(cells: list, function: str) -> str:
    """The source of the one code cell that defines `function` (a "write it yourself" exercise)."""
    found = [c.source for c in cells if c.cell_type == "code" and f"def {function}(" in c.source]
    if len(found) != 1:
        raise ValueError(f"expected one code cell defining {function}(), found {len(found)}")
    return found[0]


def with_function_replaced(source: str, function: str, replacement: str) -> str:
    """`source` (a cell) with the top-level `def function` replaced by `replacement` (a whole def)."""
    (node,) = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == function]
    lines = source.splitlines()
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return "\n".join(lines[: first - 1] + [replacement.strip("\n")] + lines[node.end_lineno:])


def solution_sources(stem: str) -> dict[str, str]:
    """{function: source of its def} for each exercise solved in notebooks/solutions/NN.py (a function
    whose checker `check_<function>` is there too); {} if the notebook has no solutions file."""
    from glassbox.journal import exercises

    path = exercises.solutions_path(stem)
    if not path.is_file():
        return {}
    text = path.read_text()
    defs = {n.name: n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)}
    return {name: ast.get_source_segment(text, node) for name, node in defs.items()
            if not name.startswith("check_") and f"check_{name}" in defs}


def wrong_answer_probe(cells: list, stem: str, wrong: dict[str, list[tuple[str, str]]]) -> str:
    """A cell to append after a notebook's last one. For each exercise it reruns the cell as written, then
    with the solution in place of the reader's function, then with each wrong answer, and prints what each
    raised and whether the checker said "correct" (a notebook without a solutions file: the cell as
    written holds the solution)."""
    solved = solution_sources(stem)
    trials = []
    for function in [*solved, *(f for f in wrong if f not in solved)]:
        original = exercise_cell(cells, function)
        sources = [original] + ([with_function_replaced(original, function, solved[function])] if function in solved else [])
        sources += [with_function_replaced(original, function, source) for source, _ in wrong.get(function, [])]
        trials.append([function, sources])
    return (f"import contextlib as _contextlib, io as _io, json as _json\n_outcomes = {{}}\n"
            f"for _function, _sources in {trials!r}:\n"
            "    _outcomes[_function] = []\n"
            "    for _source in _sources:\n"
            "        _said = _io.StringIO()\n"
            "        try:\n"
            "            with _contextlib.redirect_stdout(_said):\n"
            "                exec(compile(_source, '<exercise>', 'exec'), globals())\n"
            "            _outcomes[_function].append([None, _said.getvalue()])\n"
            "        except Exception as _err:\n"
            "            _outcomes[_function].append([type(_err).__name__, str(_err)])\n"
            f"print({PROBE_MARK!r}, _json.dumps(_outcomes))\n")


SMOKE_WAIT_S = 600  # how long a worker waits for the other's smoke run of a notebook (the slowest takes about 30 s)


@pytest.fixture(scope="session")
def smoke_run(smoke_dir, offline_log, no_network):
    """`smoke_run(stem)` executes a notebook once with --smoke (into smoke_dir) and returns its findings; once per
    test run, also under pytest-xdist (the first worker to ask runs it while holding its lock, the others read it).
    If the notebook's test module lists WRONG_ANSWERS, the executed copy is the notebook as committed
    plus one cell after glassbox.finish() that tries them (read back by `checker_catches_wrong_answers`)."""
    results: dict[str, dict | BaseException] = {}

    def execute(stem: str) -> dict | BaseException:
        (nb,) = catalogue.notebooks([stem])
        try:
            with pytest.MonkeyPatch.context() as env, \
                    no_network.entered() if no_network is not None else contextlib.nullcontext():
                if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:  # two workers: one thread per kernel
                    env.setenv(contract.ENV_SMOKE_THREADS, "1")
                if stem in WRONG_ANSWERS:
                    probed = nbformat.read(nb, as_version=4)
                    probed.cells.append(nbformat.v4.new_code_cell(wrong_answer_probe(probed.cells, stem, WRONG_ANSWERS[stem])))
                    source = smoke_dir / "probed" / nb.name
                    source.parent.mkdir(exist_ok=True)
                    nbformat.write(probed, source)
                    runner.run_one(source, runner.Targets.under(smoke_dir), {}, smoke=True)
                else:
                    runner.run([nb.stem], smoke=True, out=smoke_dir)
            return findings.load(nb.stem, smoke_dir / "findings")
        except BaseException as err:  # cached, so a second test of the same notebook fails fast
            return err

    def run(stem: str) -> dict:
        if stem not in results:
            done = smoke_dir / "done" / stem  # "ok", or why it failed: written by whichever worker ran it
            # held while the smoke run is executed or read: the first worker to ask runs it, the other waits
            with record.lock(smoke_dir / "locks" / stem, f"the smoke run of {stem}", wait=SMOKE_WAIT_S):
                if done.is_file():
                    said = done.read_text()
                    results[stem] = findings.load(stem, smoke_dir / "findings") if said == "ok" else \
                        RuntimeError(f"the smoke run of {stem} failed in another pytest worker: {said}")
                else:
                    results[stem] = execute(stem)
                    done.parent.mkdir(exist_ok=True)
                    done.write_text("ok" if not isinstance(results[stem], BaseException)
                                    else f"{type(results[stem]).__name__}: {results[stem]}")
        if isinstance(results[stem], BaseException):
            raise results[stem]
        return results[stem]

    return run


@pytest.fixture(scope="session")
def checker_catches_wrong_answers(smoke_run, smoke_dir):
    """`checker_catches_wrong_answers(stem)` asserts, from the smoke run, for each "write it yourself"
    exercise: the cell as committed runs (a stub says "not attempted yet"), the solution from
    notebooks/solutions/NN.py put in its place passes its checker ("correct"), and each wrong answer listed
    in the module's WRONG_ANSWERS makes the checker raise an AssertionError whose message contains the
    expected fragment (it says what is wrong)."""
    from glassbox.journal import exercises

    def check(stem: str) -> None:
        smoke_run(stem)
        wrong, solved = WRONG_ANSWERS[stem], solution_sources(stem)
        executed = nbformat.read(smoke_dir / f"{stem}.ipynb", as_version=4)
        text = "".join(o.get("text", "") for o in executed.cells[-1].get("outputs", []))
        (line,) = [ln for ln in text.splitlines() if ln.startswith(PROBE_MARK)]
        outcomes = json.loads(line[len(PROBE_MARK):])
        assert set(outcomes) == set(solved) | set(wrong), f"{stem}: probed {sorted(outcomes)}"
        for function, results in outcomes.items():
            as_written, *results = results
            assert as_written[0] is None, f"{stem}: the cell defining {function}() fails when rerun after the notebook: {as_written}"
            if function in solved:
                assert f"{function}: {exercises.NOT_ATTEMPTED}" in as_written[1], \
                    f"{stem}: the committed {function}() should be a stub the checker calls not attempted; it said {as_written[1]!r}"
                solution, *results = results
                assert solution[0] is None and f"{function}: {exercises.CORRECT}" in solution[1], \
                    f"{stem}: the solution of {function}() in notebooks/solutions/ does not pass its checker: {solution}"
            listed = wrong.get(function, [])
            assert len(results) == len(listed)
            for (source, says), outcome in zip(listed, results):
                assert outcome[0] is not None, f"{stem}: the checker of {function}() accepted a wrong answer:\n{source}"
                assert outcome[0] == "AssertionError" and says in outcome[1], (
                    f"{stem}: for the wrong answer\n{source}\nthe checker should say {says!r}; it raised {outcome[0]}: {outcome[1]}")
        assert any(wrong.values()), f"{stem}: WRONG_ANSWERS lists no wrong answer"

    return check


def pytest_collection_finish(session):
    """A test module that switches autograd off at import breaks every test collected after it."""
    if not torch.is_grad_enabled():
        raise pytest.UsageError("autograd is off after collecting the tests: a test module called "
                                "torch.set_grad_enabled(False) at import; use a fixture with torch.no_grad() instead")
