"""The journal's public address, kept in one place: `[project.urls] Repository` in pyproject.toml.

Each notebook carries the address twice, because Colab reads a notebook before anything is cloned:
in the "Open in Colab" badge of its title cell and as the default clone URL of its setup cell. Both
are stamped from pyproject.toml by `python -m glassbox.journal address`; a fork changes the one line
in pyproject.toml and runs that command (no rerun needed: only those two cells change).
"""
import re
from pathlib import Path

import nbformat

from glassbox.journal import paths

BADGE = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         "(https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{name})")
_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)\s]+\)")
_CLONE_DEFAULT = re.compile(r'(os\.environ\.get\("JOURNAL_REPO_URL", )"[^"]*"(\))')
_URLS_TABLE = re.compile(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", re.M | re.S)
_REPOSITORY = re.compile(r'^Repository\s*=\s*"([^"]+)"\s*$', re.M)
_GITHUB = re.compile(r"^https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?$")


def repository_url(pyproject: Path | None = None) -> str:
    """The `Repository` entry of `[project.urls]` in pyproject.toml: the address Colab clones."""
    pyproject = pyproject or paths.ROOT / "pyproject.toml"
    table = _URLS_TABLE.search(pyproject.read_text())
    found = _REPOSITORY.search(table[1]) if table else None
    if not found:
        raise ValueError(f"{pyproject} has no `Repository = \"https://github.com/<owner>/<name>\"` under "
                         "[project.urls]: the journal's address is kept there")
    if not _GITHUB.match(found[1]):
        raise ValueError(f"Repository = {found[1]!r} in {pyproject}: Colab opens notebooks from GitHub only; "
                         "give an address of the form https://github.com/<owner>/<name>")
    return found[1].removesuffix("/").removesuffix(".git")


def badge(url: str, notebook_name: str) -> str:
    """The markdown "Open in Colab" badge of `notebook_name` in the repository at `url`."""
    return BADGE.format(owner_repo=_GITHUB.match(url)[1], name=notebook_name)


def stamped(notebook: Path, url: str) -> nbformat.NotebookNode:
    """The notebook with its badge (title cell) and default clone URL (setup cell) set to `url`."""
    nb = nbformat.read(notebook, as_version=4)
    title, setup = nb.cells[0], nb.cells[1]
    if not _BADGE.search(title.source):
        raise ValueError(f"{notebook.name}: its title cell has no 'Open In Colab' badge to stamp")
    if "google.colab" not in setup.source or not _CLONE_DEFAULT.search(setup.source):
        raise ValueError(f"{notebook.name}: its second cell is not the Colab setup cell "
                         '(it must read os.environ.get("JOURNAL_REPO_URL", "<address>"))')
    title.source = _BADGE.sub(lambda _: badge(url, notebook.name), title.source, count=1)
    setup.source = _CLONE_DEFAULT.sub(lambda m: f'{m[1]}"{url}"{m[2]}', setup.source, count=1)
    return nb


def problems(notebook: Path, url: str) -> list[str]:
    """What in `notebook` disagrees with the address `url` (empty when its badge and setup cell agree)."""
    nb, want = nbformat.read(notebook, as_version=4), stamped(notebook, url)
    return [f"{notebook.name}: its {what} does not point at {url}" for what, i in (("Colab badge", 0), ("setup cell", 1))
            if nb.cells[i].source != want.cells[i].source]


def stamp(notebooks: list[Path], url: str | None = None) -> list[Path]:
    """Write the address into every notebook that disagrees with it; returns the notebooks changed."""
    url = url or repository_url()
    changed = []
    for nb in notebooks:
        if problems(nb, url):
            paths.atomic_write_text(nb, nbformat.writes(stamped(nb, url)) + "\n")
            changed.append(nb)
    return changed
