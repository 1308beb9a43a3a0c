"""Every notebook keeps the journal's conventions and runs end to end in smoke mode."""
import ast
import json
import re

import pytest

from glassbox import findings, paths
from glassbox.journal import catalogue

NOTEBOOKS = catalogue.notebooks()
ids = [nb.stem for nb in NOTEBOOKS]


def cells(nb) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


def source(cell) -> str:
    return "".join(cell["source"])


def test_the_journal_has_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_name.ipynb found"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=ids)
def test_notebook_follows_the_conventions(nb):
    cs = cells(nb)
    assert cs[0]["cell_type"] == "markdown" and source(cs[0]).startswith("# "), "first cell must be a markdown title"
    assert "colab.research.google.com/github/" in source(cs[0]) and nb.name in source(cs[0]), "Colab badge missing or pointing elsewhere"
    assert cs[1]["cell_type"] == "code" and "google.colab" in source(cs[1]), "second cell must be the Colab setup cell"
    params = [c for c in cs if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    tree = ast.parse(source(params[0]))
    assert all(isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant) for s in tree.body), \
        "the parameters cell holds literal assignments only (derive sizes in the next cell)"
    assert re.search(r"^SMOKE = False\b", source(params[0]), re.M), "the parameters cell must set SMOKE = False"
    assert any(f'glassbox.start("{nb.stem}"' in source(c) for c in cs), f'call glassbox.start("{nb.stem}", ...)'
    assert any(c["cell_type"] == "markdown" and source(c).startswith("## Findings") for c in cs), "end with ## Findings"
    assert cs[-1]["cell_type"] == "code" and source(cs[-1]).strip() == "glassbox.finish()", \
        "the last cell must be glassbox.finish(): the runner keeps a run's outputs only when it got there"
    threads = [i for i, c in enumerate(cs) if c["cell_type"] == "code" and "set_num_threads" in source(c)]
    assert not threads, f"cells {threads} set torch's threads: the run contract does (glassbox.start(..., threads=N))"
    long = [i for i, c in enumerate(cs) if c["cell_type"] == "code" and len(source(c).splitlines()) > 40]
    assert not long, f"code cells {long} are over 40 lines: move the code to glassbox"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=ids)
def test_committed_notebook_is_executed_light_and_has_findings(nb):
    code = [c for c in cells(nb) if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "commit the notebook executed in full mode (make journal)"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"the committed notebook shows an error: {errors[0].get('ename')}"
    assert nb.stat().st_size < 3_000_000, f"{nb.name} is {nb.stat().st_size / 1e6:.1f} MB; keep notebooks under 3 MB"
    assert "headline" in findings.load(nb.stem), "record a one-line `headline` finding for the README table"


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=ids)
def test_notebook_runs_in_smoke_mode_offline_without_touching_committed_files(nb, smoke_run, offline_log):
    committed = [nb, paths.FINDINGS_DIR / f"{nb.stem}.json", *sorted(paths.CHECKPOINT_DIR.rglob("*"))]
    before = {p: p.read_bytes() for p in committed if p.is_file()}
    result = smoke_run(nb.stem)
    assert "headline" in result, "the smoke run must record a headline"
    changed = [p.name for p, b in before.items() if not p.is_file() or p.read_bytes() != b]
    assert not changed, f"a smoke run changed committed files: {changed}"
    attempts = offline_log.read_text()
    assert not attempts, f"a notebook tried to reach the network (refused by the offline guard):\n{attempts}"


def test_every_notebook_has_its_own_test_file():
    tests = {p.name for p in (paths.ROOT / "tests").glob("test_nb*.py")}
    missing = [nb.stem for nb in NOTEBOOKS if f"test_nb{nb.stem}.py" not in tests]
    assert not missing, f"add tests/test_nb<stem>.py asserting the findings of: {missing}"


def test_the_readme_table_is_the_generated_one():
    readme = (paths.ROOT / "README.md").read_text()
    assert catalogue.readme_with_table(readme) == readme, \
        "README.md's findings table differs from the committed findings: run `python -m glassbox.journal readme`"


def test_headlines_quote_no_wall_clock_seconds():
    timed = {nb.stem: h for nb in NOTEBOOKS if re.search(r"\b\d+(\.\d+)? ?(s|sec|seconds|min|minutes)\b",
                                                        h := catalogue.headline(nb.stem))}
    assert not timed, f"headlines must not quote run times (a rerun would change them; times belong to make bench): {timed}"
