"""Parameters declare their meaning beside their defaults (`SEED = 0  # in 0..2**32-1; ...`), and a value
of the right type but the wrong meaning is refused before any run, in one line that names the notebook,
the parameter, the rule and the value. Checked on the committed notebooks (fast: nothing runs)."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

from glassbox.journal import catalogue, contract, paths, runner
from glassbox.journal.parameters import RuleError, check, check_namespace, declarations, parse

NOTEBOOKS = catalogue.notebooks()
CELL = '''SMOKE = False  # True: tiny sizes
SEED = 0  # in 0..2**32-1; seeds everything
FLIP_FROM = 3  # digit
FLIP_TO = 8  # digit and not FLIP_FROM; the class it becomes
P = 53  # prime
LR = 1e-3  # in (0, 1]
N_DEFENDER = 10  # in 2..10_000
N_VAL = 2  # in 1..N_DEFENDER-1; of those, the validation digits
D_MODEL = 8  # > 0
N_HEADS = 4  # > 0 and divides D_MODEL
MARGIN = 0.5  # in [0, 1)
WIDTHS = [
    16, 32, 64]  # list of int at least 16
FAMILY = "uniform"  # one of "uniform", "spaced; wide"; a description after the rule
N_STEPS = 100  # training steps (a description only)
'''


def notebook_with(tmp_path: Path, source: str) -> Path:
    """A minimal .ipynb whose parameters cell holds `source`."""
    cell = {"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "source": source,
            "outputs": [], "execution_count": None}
    path = tmp_path / "98_fixture.ipynb"
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_a_parameters_cell_parses_into_defaults_and_rules():
    declared = parse(CELL)
    assert list(declared) == [line.split(" = ")[0] for line in CELL.splitlines() if " = " in line]
    assert {n: d.default for n, d in declared.items()}["WIDTHS"] == [16, 32, 64]
    described = {n: d.rule.describe() if d.rule else None for n, d in declared.items()}
    assert described == {
        "SMOKE": None, "SEED": "in 0..2**32-1", "FLIP_FROM": "a digit in 0..9",
        "FLIP_TO": "a digit in 0..9 and not FLIP_FROM", "P": "a prime", "LR": "in (0, 1]", "N_DEFENDER": "in 2..10_000",
        "N_VAL": "in 1..N_DEFENDER-1", "D_MODEL": "> 0", "N_HEADS": "> 0 and a divisor of D_MODEL",
        "MARGIN": "in [0, 1)", "WIDTHS": "a non-empty list of int at least 16",
        "FAMILY": 'one of "uniform", "spaced; wide"', "N_STEPS": None}, \
        "a comment is a rule up to its first ';' outside quotes, or a description when no rule word begins it"


@pytest.mark.parametrize("values, message", [
    ({"LR": 1}, None), ({"LR": 1.0000001}, "LR must be in (0, 1], got 1.0000001"), ({"LR": 0.0}, "LR must be in (0, 1]"),
    ({"MARGIN": 0}, None), ({"MARGIN": 1.0}, "MARGIN must be in [0, 1)"),
    ({"N_DEFENDER": 10_000}, None), ({"N_DEFENDER": 10_001}, "N_DEFENDER must be in 2..10_000, got 10001"),
    ({"N_DEFENDER": 2}, "N_VAL must be in 1..N_DEFENDER-1 (N_DEFENDER is 2), got 2"),
    ({"N_HEADS": 3}, "N_HEADS must be > 0 and a divisor of D_MODEL (D_MODEL is 8), got 3"),
    ({"D_MODEL": 6}, "N_HEADS must be > 0 and a divisor of D_MODEL (D_MODEL is 6), got 4"),
    ({"FLIP_TO": 3}, "FLIP_TO must be a digit in 0..9 and not FLIP_FROM (FLIP_FROM is 3), got 3"),
    ({"FLIP_FROM": True}, "parameter FLIP_FROM must be int (default 3), got True (bool)"),
    ({"P": 2**61 - 1}, None), ({"P": 1}, "P must be a prime, got 1"),
    ({"WIDTHS": [16, 8]}, "WIDTHS must be a non-empty list of int at least 16, got [16, 8] (element 1 is 8)"),
    ({"WIDTHS": [16.0]}, "WIDTHS must be a non-empty list of int at least 16, got [16.0] (element 0 is 16.0)"),
    ({"WIDTHS": []}, "WIDTHS must be a non-empty list of int at least 16, got []"),
    ({"FAMILY": "spaced; wide"}, None), ({"FAMILY": "spaced"}, 'FAMILY must be one of "uniform", "spaced; wide", got \'spaced\''),
    ({"N_STEPS": 0}, "N_STEPS is a size, a count or a rate and must be > 0 (default 100), got 0"),
    ({"LR": float("nan")}, "LR must be finite, got nan"),
])
def test_rules_hold_at_their_edges(tmp_path, values, message):
    nb = notebook_with(tmp_path, CELL)
    if message is None:
        check(nb, values)
    else:
        with pytest.raises((ValueError, TypeError)) as err:
            check(nb, values)
        assert str(err.value).startswith("98_fixture: ") and message in str(err.value), str(err.value)


@pytest.mark.parametrize("line, message", [
    ("N = 3  # >= 2", "holds '='"),  # papermill skips a line with two '=': the parameter would vanish from its view
    ("N = 3  # in 1..M", "names M, which is not a numeric parameter"),
    ("N = 3  # in 1 to 9", "'in 1 to 9' is not a rule"),
    ("N = 3  # list of ints > 0", "element type must be one of"),
    ("N = 3  # at least 2 + __import__('os')", "is not a number or arithmetic"),
    ("N = [3]  # > 0", "a list takes 'list of T ...'"),
    ("N = 3  # list of int", "a list takes 'list of T ...'"),
])
def test_a_rule_that_cannot_be_read_is_refused_naming_the_parameter(line, message):
    with pytest.raises(RuleError, match="the parameters cell: the (rule|comment) of N") as err:
        parse(line + "\n")
    assert message in str(err.value), str(err.value)


# The cases (and their neighbours), on the committed notebooks: each refused before anything runs.
WRONG_MEANING = [
    ("09", {"SEED": -1}, "09_grokking: SEED must be in 0..2**32-1, got -1"),
    ("09", {"SEED": 2**32}, "09_grokking: SEED must be in 0..2**32-1, got 4294967296"),
    ("01", {"LR": 1e999}, "01_mnist_mlp_probing: LR must be finite, got inf"),
    ("01", {"FLIP_FROM": 12}, "01_mnist_mlp_probing: FLIP_FROM must be a digit in 0..9, got 12"),
    ("01", {"FLIP_TO": 3}, "01_mnist_mlp_probing: FLIP_TO must be a digit in 0..9 and not FLIP_FROM (FLIP_FROM is 3), got 3"),
    ("05", {"TARGET": 11}, "05_backdoor_safety: TARGET must be a digit in 0..9, got 11"),
    ("09", {"P": 54}, "09_grokking: P must be a prime, got 54"),
    ("09", {"N_HEADS": 3}, "09_grokking: N_HEADS must be > 0 and a divisor of D_MODEL (D_MODEL is 128), got 3"),
    ("06", {"DROPOUTS": [0.1, None]},
     "06_interpretability_guided_training: DROPOUTS must be a non-empty list of float in (0, 1), got [0.1, None] (element 1 is None)"),
    ("06", {"WEIGHT_DECAYS": []}, "06_interpretability_guided_training: WEIGHT_DECAYS must be a non-empty list of float > 0, got []"),
    ("06", {"N_SCORE": 20_000}, "06_interpretability_guided_training: N_SCORE must be in 1..N_VAL (N_VAL is 10000), got 20000"),
    ("05", {"N_DEFENDER": 1_000}, "05_backdoor_safety: N_VAL must be in 1..N_DEFENDER-1 (N_DEFENDER is 1000), got 2000"),
    ("05", {"POISON_FRACTION": 1.5}, "05_backdoor_safety: POISON_FRACTION must be in (0, 1), got 1.5"),
    ("08", {"N_RULE_CHARS": 10}, "08_towards_monosemanticity: N_RULE_CHARS must be at least N_CTX (N_CTX is 64), got 10"),
]


@pytest.mark.parametrize("number, values, message", WRONG_MEANING, ids=[f"{n}-{next(iter(v))}" for n, v, _ in WRONG_MEANING])
def test_wrong_meaning_is_refused_before_the_run_in_one_line(number, values, message):
    [nb] = catalogue.notebooks([number])
    with pytest.raises((ValueError, TypeError)) as err:
        runner.check_parameters(nb, values)
    assert str(err.value) == message


def test_the_runner_refuses_flip_from_12_before_running_naming_the_parameter(tmp_path):
    """The issue's run: it used to fail after 35 s with an 'empty batch' message that never named FLIP_FROM.
    (--out keeps the repository safe even if the check ever let it through.)"""
    env = {**os.environ, "GLASSBOX_ROOT": str(paths.ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop(contract.ENV_STAGE, None)
    done = subprocess.run([sys.executable, "-m", "glassbox.journal", "run", "01", "-p", "FLIP_FROM=12",
                           "--out", str(tmp_path / "out")], cwd=paths.ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "error: 01_mnist_mlp_probing: FLIP_FROM must be a digit in 0..9, got 12", done.stderr
    assert "running" not in done.stdout, "the notebook started before its parameters were checked"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem[:2] for p in NOTEBOOKS])
def test_every_default_satisfies_its_rule_and_papermill_sees_every_parameter(nb):
    declared = declarations(nb)
    check(nb, {})  # every rule, on the defaults
    seen = papermill.inspect_notebook(str(nb))
    assert list(seen) == list(declared), "papermill and the rules see different parameters (a '=' in a comment?)"
    assert all(ast.literal_eval(seen[n]["default"]) == d.default for n, d in declared.items())


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem[:2] for p in NOTEBOOKS])
def test_every_parameter_but_a_flag_declares_its_meaning(nb):
    missing = [n for n, d in declarations(nb).items() if type(d.default) is not bool and d.rule is None]
    assert not missing, (f"{nb.stem}: {', '.join(missing)} declare no rule: write one after the default, "
                         "e.g. '# > 0; what it is' (see glassbox.journal.parameters)")
    lists = [n for n, d in declarations(nb).items() if type(d.default) is list and d.rule.element is None]
    assert not lists, f"{nb.stem}: {', '.join(lists)} are lists: declare 'list of T ...'"
    seeds = {n: d.rule.describe() for n, d in declarations(nb).items() if n == "SEED"}
    assert seeds == {"SEED": "in 0..2**32-1"}, "SEED's range is numpy's, as glassbox.start checks it"


def test_a_kernels_own_values_are_checked_against_the_same_rules():
    """What glassbox.start could do for a reader who edited the parameters cell by hand in Jupyter."""
    [nb] = catalogue.notebooks(["01"])
    namespace = {name: d.default for name, d in declarations(nb).items()} | {"np": object(), "_": 1}
    check_namespace(nb, namespace)
    with pytest.raises(ValueError, match=r"^01_mnist_mlp_probing: FLIP_FROM must be a digit in 0\.\.9, got 12$"):
        check_namespace(nb, namespace | {"FLIP_FROM": 12})


def test_start_refuses_a_value_typed_by_hand_into_the_parameters_cell(monkeypatch, tmp_path):
    """In JupyterLab there is no runner to check the parameters: glassbox.start reads the kernel's values."""
    import glassbox

    monkeypatch.setattr(contract, "_current", None)
    monkeypatch.setenv(contract.ENV_STAGE, str(tmp_path))
    monkeypatch.setenv(contract.ENV_SMOKE, "0")
    kernel = {"glassbox": glassbox, "SMOKE": False, "SEED": 0, "FLIP_FROM": 12}
    with pytest.raises(ValueError, match="FLIP_FROM must be a digit in 0..9, got 12"):
        exec('glassbox.start("01_mnist_mlp_probing", smoke=SMOKE, seed=SEED)', kernel)
    kernel["FLIP_FROM"] = 3
    import torch

    before = torch.get_num_threads()
    try:
        exec('glassbox.start("01_mnist_mlp_probing", smoke=SMOKE, seed=SEED, threads=before)', kernel | {"before": before})
    finally:
        torch.set_num_threads(before)
