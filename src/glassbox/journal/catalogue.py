"""The journal's numbered notebooks, their titles and headline findings, and the README table."""
import json
import re
from pathlib import Path

from glassbox.journal import findings, paths

README_START, README_END = "<!-- findings:start -->", "<!-- findings:end -->"
ORDER_START, ORDER_END = "<!-- reading-order:start -->", "<!-- reading-order:end -->"

# For the index's reading path: the notebooks to read first, and what a learner can do afterwards.
READING_PATH: dict[str, tuple[tuple[str, ...], str]] = {
    "00": ((), "explain superposition with a toy model you train yourself, and read the three papers' claims critically"),
    "01": ((), "probe, attribute, ablate and steer the neurons of a network you trained, with controls that can fail"),
    "02": ((), "train a small TransformerLens model on an algorithmic task and test it on data it never chose"),
    "03": (("02",), "reverse-engineer a one-head transformer from its QK and OV circuits and test the story by intervention"),
    "04": (("00", "01", "03"), "train sparse autoencoders with SAELens, measure them (L0, FVU, splice) and use a feature"),
    "05": (("01",), "find a planted backdoor blind, switch it off, and compare with a published defence done properly"),
    "06": (("01",), "use interpretability scores to prune and regularise a model, against baselines that do something"),
    "07": (("02", "03"), "train a character-level language model, read it with the logit lens and find induction heads"),
    "08": (("04", "07"), "reproduce Towards Monosemanticity small: SAE features on a language model's MLP, measured"),
    "09": (("02", "03"), "watch a transformer memorise modular addition and then generalise, find the Fourier mechanism, and test which progress measures foresee it"),
    "10": (("07", "08"), "train transcoders, build an attribution graph from the weights and check every edge against autograd, and test the graph by interventions against attribution patching"),
    "11": (("03", "07"), "build an IOI task with its ABC corruption, trace a circuit backwards from the logits by path patching, name head classes by measured signatures, and hold the circuit to Wang et al.'s three criteria against random circuits"),
}


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
        rows.append(f"| {nb.stem[:2]} | [{title(nb)}](notebooks/{nb.name}) | {table_text(headline(nb.stem)) or '(not run yet)'} |")
    return "\n".join(rows)


def table_text(text: str) -> str:
    """Recorded text for a Markdown table cell: on one line, a `|` that would split the cell escaped as `\\|`,
    and no HTML tag, comment or autolink can open in it (a `<` before a letter, `/`, `!` or `?` becomes
    `&lt;`; `<=` stays as it is)."""
    one_line = re.sub(r"\s*[\r\n]+\s*", " ", text)
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", re.sub(r"(?<!\\)\|", r"\\|", one_line))


def reading_order() -> str:
    """Markdown list of the notebooks in reading order (indented: it sits inside the README's "Start here"
    list): what each teaches you to do, and what to read first."""
    nbs = notebooks()
    lines = []
    for nb in nbs:
        needs, skill = READING_PATH.get(nb.stem[:2], ((), ""))
        before = ", ".join(f"[{p.stem[:2]}](notebooks/{p.name})" for p in nbs if p.stem[:2] in needs)
        lines.append(f"   {len(lines) + 1}. [{title(nb)}](notebooks/{nb.name}){f' (after {before})' if before else ''}: "
                     f"{skill or 'see its first cell'}")
    return "\n".join(lines)


def _between(text: str, start: str, end: str, body: str) -> str:
    if start not in text or end not in text:
        raise ValueError(f"README.md lacks the markers {start} ... {end}")
    head, rest = text.split(start, 1)
    old, tail = rest.split(end, 1)
    indent = re.search(r"[ \t]*$", old)[0]  # the end marker keeps its indentation (inside a list item)
    return f"{head}{start}\n{body}\n{indent}{end}{tail}"


def readme_with_table(text: str) -> str:
    """README text with the findings table and the reading order between their markers regenerated."""
    return _between(_between(text, README_START, README_END, readme_table()), ORDER_START, ORDER_END, reading_order())


def update_readme() -> None:
    """Rewrite the findings table between the markers in README.md."""
    readme = paths.ROOT / "README.md"
    paths.atomic_write_text(readme, readme_with_table(readme.read_text()))


def slug(term: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", term.strip().lower()).replace(" ", "-")


def glossary_entries(markdown_text: str) -> list[tuple[str, str, str]]:
    """(anchor, term, definition) for each `### Term` section of the glossary's markdown."""
    parts = re.split(r"^### +(.+?) *$", markdown_text, flags=re.M)
    return [(slug(term), term, text.strip()) for term, text in zip(parts[1::2], parts[2::2])]


GLOSSARY_LINK = re.compile(r"\(GLOSSARY\.md#([\w-]+)\)")
USED_IN = re.compile(r"\n\*Used in:\*[^\n]*", re.M)


def glossary_links(notebook: Path) -> list[str]:
    """The glossary anchors a notebook's markdown links to, in order of first use."""
    cells = json.loads(notebook.read_text())["cells"]
    found = GLOSSARY_LINK.findall(" ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"))
    return list(dict.fromkeys(found))


def glossary_with_usage(markdown_text: str) -> str:
    """The glossary with each entry's closing "Used in:" line rebuilt from the notebooks' links to it."""
    users: dict[str, list[Path]] = {}
    for nb in notebooks():
        for anchor in glossary_links(nb):
            users.setdefault(anchor, []).append(nb)
    parts = re.split(r"(^### +.+? *$)", USED_IN.sub("", markdown_text), flags=re.M)
    out = [parts[0]]
    for heading, text in zip(parts[1::2], parts[2::2]):
        used = users.get(slug(heading.removeprefix("###")), [])
        line = "*Used in:* " + ", ".join(f"[{nb.stem[:2]}]({nb.name})" for nb in used) if used else ""
        out += [heading, text.rstrip("\n") + (f"\n{line}" if line else "") + "\n\n"]
    return "".join(out).rstrip("\n") + "\n"


def update_glossary() -> None:
    """Rewrite the "Used in:" lines of notebooks/GLOSSARY.md from the notebooks' links."""
    path = paths.NOTEBOOK_DIR / "GLOSSARY.md"
    paths.atomic_write_text(path, glossary_with_usage(path.read_text()))
