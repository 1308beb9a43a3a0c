"""Every notebook's Colab setup cell, run in a simulated Colab.

The cell runs in a fresh Python with a fake `google.colab` module, JOURNAL_REPO_URL pointing at
this repository (cloned for real, from the local path), JOURNAL_HOME in a temporary folder, and
`subprocess.run` wrapped so that pip is a stub that only records its arguments: nothing is
downloaded. Outside Colab the same cell must do nothing.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from glassbox import paths
from glassbox.journal import address, catalogue

REPO_URL = address.repository_url()  # the one place: [project.urls] Repository in pyproject.toml
COLAB_URL = "https://colab.research.google.com/github/" + REPO_URL.removeprefix("https://github.com/") + "/blob/main/notebooks/{name}"
NOTEBOOKS = catalogue.notebooks()
ids = [nb.stem for nb in NOTEBOOKS]

# Runs the setup cell (argv[1]); argv[2] == "colab" fakes Colab. Prints what the cell did as JSON.
DRIVER = r'''
import json, os, subprocess, sys, types
cell = open(sys.argv[1]).read()
if sys.argv[2] == "colab":
    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = types.ModuleType("google.colab")
calls, real_run = [], subprocess.run
def run(cmd, *args, **kwargs):
    calls.append([str(c) for c in cmd])
    if list(cmd[:2]) == ["git", "clone"]:
        return real_run(cmd, *args, **kwargs)
    if list(cmd[1:3]) == ["-m", "pip"]:
        return subprocess.CompletedProcess(cmd, 0)  # the pip stub: nothing is installed or downloaded
    raise AssertionError(f"the setup cell ran an unexpected command: {cmd}")
subprocess.run = run
cwd, path = os.getcwd(), list(sys.path)
exec(compile(cell, "setup cell", "exec"), {"__name__": "__main__"})
import importlib.util
spec = importlib.util.find_spec("glassbox")
print(json.dumps({"calls": calls, "executable": sys.executable, "cwd": os.getcwd(), "cwd_before": cwd,
                  "path_added": [p for p in sys.path if p not in path], "glassbox": spec.origin if spec else None}))
'''


def setup_cell(nb: Path) -> str:
    return "".join(json.loads(nb.read_text())["cells"][1]["source"])


def run_setup(nb: Path, tmp_path: Path, colab: bool, home: Path) -> dict:
    """Run `nb`'s setup cell in a fresh Python; returns what it did."""
    cell = tmp_path / "setup_cell.py"
    cell.write_text(setup_cell(nb))
    env = {**os.environ, "JOURNAL_HOME": str(home), "JOURNAL_REPO_URL": paths.ROOT.as_uri()}
    done = subprocess.run([sys.executable, "-c", DRIVER, str(cell), "colab" if colab else "local"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the setup cell of {nb.name} failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def colab_requirements(requirements: Path) -> list[str]:
    """The pinned requirements Colab needs: every `name==version` line not marked `# local`."""
    lines = requirements.read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines
            if re.match(r"^[A-Za-z0-9_.\-\[\]]+==\S+", line) and "# local" not in line]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=ids)
def test_setup_cell_in_colab_clones_installs_and_moves_into_the_clone(nb, tmp_path):
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(nb)], cwd=paths.ROOT, capture_output=True)
    if tracked.returncode:  # never in CI, which runs in a fresh clone
        pytest.skip(f"{nb.name} is not committed yet, and Colab clones the committed repository")
    home = tmp_path / "journal"
    did = run_setup(nb, tmp_path, colab=True, home=home)
    pip = [did["executable"], "-m", "pip", "install", "-q"]
    calls = did["calls"]
    assert calls[0] == ["git", "clone", "--depth=1", paths.ROOT.as_uri(), str(home)], \
        f"first the cell must clone JOURNAL_REPO_URL into JOURNAL_HOME, got {calls[0]}"
    assert (home / "requirements.txt").is_file(), "the clone has no requirements.txt"
    reqs = colab_requirements(home / "requirements.txt")
    assert calls[1] == pip + reqs, f"pip must install the pinned requirements not marked '# local', got {calls[1]}"
    assert not [r for r in calls[1][5:] if r.split("==")[0] == "torch"], "Colab keeps its own torch: never pip-install torch"
    local = [line.split("==")[0] for line in (home / "requirements.txt").read_text().splitlines() if "# local" in line and "==" in line]
    assert not [r for r in calls[1][5:] if r.split("==")[0] in local], "'# local' lines must not be installed in Colab"
    assert calls[2] == pip + ["--no-deps", "-e", str(home)], f"then glassbox itself, editable and without deps, got {calls[2]}"
    assert len(calls) == 3, f"the setup cell ran more than clone + 2 pip installs: {calls[3:]}"
    assert did["cwd"] == str(home / "notebooks"), "the cell must leave the kernel in the clone's notebooks/ folder"
    assert did["path_added"] == [str(home / "src")], "the cell must put the clone's src/ on sys.path (no restart needed)"
    assert did["glassbox"] == str(home / "src" / "glassbox" / "__init__.py"), \
        f"after the cell, `import glassbox` must find the clone's copy, found {did['glassbox']}"

    again = run_setup(nb, tmp_path, colab=True, home=home)  # running the cell a second time (e.g. after a restart)
    assert again["calls"] == calls[1:], "a second run must skip the clone (the folder exists) and reinstall"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=ids)
def test_setup_cell_outside_colab_does_nothing(nb, tmp_path):
    did = run_setup(nb, tmp_path, colab=False, home=tmp_path / "journal")
    assert did["calls"] == [], f"outside Colab the setup cell must run nothing, ran {did['calls']}"
    assert did["cwd"] == did["cwd_before"] and did["path_added"] == [], "outside Colab it must not move or touch sys.path"
    assert not (tmp_path / "journal").exists()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=ids)
def test_colab_badge_and_clone_url_point_at_the_repository(nb):
    title = "".join(json.loads(nb.read_text())["cells"][0]["source"])
    assert f"({COLAB_URL.format(name=nb.name)})" in title, f"the Colab badge must link {COLAB_URL.format(name=nb.name)}"
    assert f'"{REPO_URL}"' in setup_cell(nb), f"the setup cell must clone {REPO_URL} by default"
    for var in ("JOURNAL_REPO_URL", "JOURNAL_HOME"):  # what lets this test point the cell at a local clone
        assert f'os.environ.get("{var}"' in setup_cell(nb), \
            f"the setup cell must read {var} (an old nbtools mangled it): rebuild the notebook's first cells with nbtools"


def test_the_address_lives_in_pyproject_and_every_notebook_agrees_with_it():
    assert REPO_URL.startswith("https://github.com/"), REPO_URL
    disagree = [p for nb in NOTEBOOKS for p in address.problems(nb, REPO_URL)]
    assert not disagree, "\n".join(disagree) + "\nrun `python -m glassbox.journal address`"


def test_a_fork_sets_its_address_in_one_line_and_the_stamp_changes_only_badge_and_setup_cell(tmp_path):
    import nbformat

    pyproject = tmp_path / "pyproject.toml"
    text = (paths.ROOT / "pyproject.toml").read_text()
    pyproject.write_text(text.replace(f'Repository = "{REPO_URL}"', 'Repository = "https://github.com/someone/fork"'))
    url = address.repository_url(pyproject)
    assert url == "https://github.com/someone/fork"
    nb = tmp_path / NOTEBOOKS[0].name
    nb.write_bytes(NOTEBOOKS[0].read_bytes())
    assert address.problems(nb, url), "the committed notebook must disagree with another address"
    assert address.stamp([nb], url) == [nb]
    before, after = nbformat.read(NOTEBOOKS[0], as_version=4), nbformat.read(nb, as_version=4)
    assert "colab.research.google.com/github/someone/fork/blob/main/notebooks/" + nb.name in after.cells[0].source
    assert '"https://github.com/someone/fork")' in after.cells[1].source
    assert REPO_URL not in after.cells[0].source + after.cells[1].source
    assert [c.source for c in after.cells[2:]] == [c.source for c in before.cells[2:]], "only the first two cells change"
    assert [c.get("outputs") for c in after.cells] == [c.get("outputs") for c in before.cells], "outputs are kept"
    assert address.problems(nb, url) == [] and address.stamp([nb], url) == [], "stamping twice changes nothing"


@pytest.mark.parametrize("line, message", [
    ('Repository = "https://gitlab.com/someone/fork"', "GitHub only"),
    ('Homepage = "https://github.com/someone/fork"', "has no `Repository"),
])
def test_an_address_colab_cannot_open_is_refused_with_what_to_write(tmp_path, line, message):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text((paths.ROOT / "pyproject.toml").read_text().replace(f'Repository = "{REPO_URL}"', line))
    with pytest.raises(ValueError, match=message):
        address.repository_url(pyproject)
