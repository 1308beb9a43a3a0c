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
from glassbox.journal import catalogue, runner

OFFLINE_GUARD = Path(__file__).parent / "offline"
sys.path.append(str(OFFLINE_GUARD))
import glassbox_offline  # noqa: E402  (the guard's helpers: tests/offline/glassbox_offline.py)


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
    """One folder for every smoke run of this test session (notebooks, findings, checkpoints, stage)."""
    return tmp_path_factory.mktemp("smoke")


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


# Each notebook's test module names one "write it yourself" exercise and wrong answers to it:
#     WRONG_ANSWERS = ("my_function", [(wrong_def_source, fragment_of_the_checker_message), ...])
# The smoke run tries them in the notebook's own kernel after its last cell (see `wrong_answer_probe`).
WRONG_ANSWERS: dict[str, tuple[str, list[tuple[str, str]]]] = {}
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
            WRONG_ANSWERS[module.STEM] = module.WRONG_ANSWERS


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


def wrong_answer_probe(cells: list, function: str, wrong: list[tuple[str, str]]) -> str:
    """A cell to append after a notebook's last one: it reruns the exercise cell as written (the solution),
    then with each wrong answer in place of the reader's function, and prints what each raised."""
    original = exercise_cell(cells, function)
    sources = [original] + [with_function_replaced(original, function, source) for source, _ in wrong]
    return (f"import json as _json\n_outcomes = []\nfor _source in {sources!r}:\n"
            "    try:\n        exec(compile(_source, '<exercise>', 'exec'), globals())\n        _outcomes.append(None)\n"
            "    except Exception as _err:\n        _outcomes.append([type(_err).__name__, str(_err)])\n"
            f"print({PROBE_MARK!r}, _json.dumps(_outcomes))\n")


@pytest.fixture(scope="session")
def smoke_run(smoke_dir, offline_log, no_network):
    """`smoke_run(stem)` executes a notebook once with --smoke (into smoke_dir) and returns its findings.
    If the notebook's test module lists WRONG_ANSWERS, the executed copy is the notebook as committed
    plus one cell after glassbox.finish() that tries them (read back by `checker_catches_wrong_answers`)."""
    results: dict[str, dict | BaseException] = {}

    def run(stem: str) -> dict:
        if stem not in results:
            (nb,) = catalogue.notebooks([stem])
            try:
                with no_network.entered() if no_network is not None else contextlib.nullcontext():
                    if stem in WRONG_ANSWERS:
                        probed = nbformat.read(nb, as_version=4)
                        probed.cells.append(nbformat.v4.new_code_cell(wrong_answer_probe(probed.cells, *WRONG_ANSWERS[stem])))
                        source = smoke_dir / "probed" / nb.name
                        source.parent.mkdir(exist_ok=True)
                        nbformat.write(probed, source)
                        runner.run_one(source, runner.Targets.under(smoke_dir), {}, smoke=True)
                    else:
                        runner.run([nb.stem], smoke=True, out=smoke_dir)
                results[stem] = findings.load(nb.stem, smoke_dir / "findings")
            except BaseException as err:  # cached, so a second test of the same notebook fails fast
                results[stem] = err
        if isinstance(results[stem], BaseException):
            raise results[stem]
        return results[stem]

    return run


@pytest.fixture(scope="session")
def checker_catches_wrong_answers(smoke_run, smoke_dir):
    """`checker_catches_wrong_answers(stem)` asserts, from the smoke run, that the exercise cell named in the
    module's WRONG_ANSWERS passed as written and that each wrong answer made its checker raise an
    AssertionError whose message contains the expected fragment (it says what is wrong)."""

    def check(stem: str) -> None:
        smoke_run(stem)
        function, wrong = WRONG_ANSWERS[stem]
        executed = nbformat.read(smoke_dir / f"{stem}.ipynb", as_version=4)
        text = "".join(o.get("text", "") for o in executed.cells[-1].get("outputs", []))
        (line,) = [ln for ln in text.splitlines() if ln.startswith(PROBE_MARK)]
        solution, *outcomes = json.loads(line[len(PROBE_MARK):])
        assert solution is None, f"{stem}: the cell defining {function}() fails when rerun after the notebook: {solution}"
        assert len(outcomes) == len(wrong) >= 1
        for (source, says), outcome in zip(wrong, outcomes):
            assert outcome is not None, f"{stem}: the checker of {function}() accepted a wrong answer:\n{source}"
            assert outcome[0] == "AssertionError" and says in outcome[1], (
                f"{stem}: for the wrong answer\n{source}\nthe checker should say {says!r}; it raised {outcome[0]}: {outcome[1]}")

    return check


def pytest_collection_finish(session):
    """A test module that switches autograd off at import breaks every test collected after it."""
    if not torch.is_grad_enabled():
        raise pytest.UsageError("autograd is off after collecting the tests: a test module called "
                                "torch.set_grad_enabled(False) at import; use a fixture with torch.no_grad() instead")
