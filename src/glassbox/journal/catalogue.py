"""The journal's numbered notebooks, their titles and headline findings, and the README table."""
import json
from pathlib import Path

from glassbox.journal import findings, paths

README_START, README_END = "<!-- findings:start -->", "<!-- findings:end -->"


def notebooks(names: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order, or those named (by number, stem, file name or path)."""
    found = sorted(paths.NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return found
    chosen = []
    for name in names:
        stem = Path(name).name.removesuffix(".ipynb")
        match = [p for p in found if p.stem == stem or p.stem.startswith(stem + "_")]
        if not match:
            raise ValueError(f"no notebook {name!r}; the journal has: {', '.join(p.stem for p in found)}")
        chosen += [p for p in match if p not in chosen]
    return chosen


def title(notebook: Path) -> str:
    """The notebook's markdown title (first line of its first cell, without the #)."""
    cell = json.loads(notebook.read_text())["cells"][0]
    return "".join(cell["source"]).splitlines()[0].lstrip("# ").strip()


def headline(stem: str, directory: Path | None = None) -> str:
    """The one-line finding a notebook recorded as `headline` (empty before its first full run)."""
    try:
        return str(findings.load(stem, directory).get("headline", ""))
    except FileNotFoundError:
        return ""


def readme_table() -> str:
    """Markdown table of the notebooks and what each found, from the committed findings files."""
    rows = ["| # | notebook | what it found |", "|---|---|---|"]
    for nb in notebooks():
        rows.append(f"| {nb.stem[:2]} | [{title(nb)}](notebooks/{nb.name}) | {headline(nb.stem) or '(not run yet)'} |")
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    """README text with the findings table between its markers replaced by the current one."""
    if README_START not in text or README_END not in text:
        raise ValueError(f"README.md lacks the markers {README_START} ... {README_END}")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{readme_table()}\n{README_END}{tail}"


def update_readme() -> None:
    """Rewrite the findings table between the markers in README.md."""
    readme = paths.ROOT / "README.md"
    paths.atomic_write_text(readme, readme_with_table(readme.read_text()))
