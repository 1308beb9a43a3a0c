"""Guards for what a reader of the notebooks meets, each with a control that shows it can fail.

A glossary entry opens with its own `<a id="slug"></a>`: JupyterLab does not give Markdown headings the
ids GitHub does, so without it a glossary link opened in JupyterLab lands at the top of the file.
No notebook cell points at "the issue" or "issue 18": readers of the notebooks cannot see the project's
issues, so such a line explains nothing to them.
"""
import json
import re
from pathlib import Path

import pytest

from glassbox.journal import catalogue
from glassbox.journal import paths as journal_paths

GLOSSARY = journal_paths.NOTEBOOK_DIR / "GLOSSARY.md"
ISSUE_MENTION = re.compile(r"\bthe\s+issue\b|\bissues?\s*#?\d+", re.I)


def entries_without_anchor(markdown_text: str) -> list[str]:
    """Terms whose glossary entry does not start with `<a id="<its slug>"></a>`."""
    return [term for slug, term, text in catalogue.glossary_entries(markdown_text)
            if not text.startswith(f'<a id="{slug}"></a>')]


def issue_mentions(notebook: dict) -> list[tuple[int, str]]:
    """(cell index, matched text) for each mention of an issue in a notebook's cell sources (outputs not read)."""
    return [(i, m[0]) for i, cell in enumerate(notebook["cells"])
            for m in ISSUE_MENTION.finditer("".join(cell.get("source", "")))]


@pytest.mark.skipif(not GLOSSARY.is_file(), reason="no glossary")
def test_every_glossary_entry_starts_with_its_anchor():
    entries = catalogue.glossary_entries(GLOSSARY.read_text())
    assert len(entries) >= 10, f"only {len(entries)} `### Term` entries read from {GLOSSARY}"
    missing = entries_without_anchor(GLOSSARY.read_text())
    assert not missing, f'these entries lack a leading <a id="slug"></a>, so JupyterLab cannot land on them: {missing}'


def test_the_anchor_check_catches_a_missing_or_wrong_anchor():
    text = ('### Residual stream\n<a id="residual-stream"></a>The running sum.\n\n'
            "### Logit lens\nReading the residual stream through the unembedding.\n\n"
            '### Attention head\n<a id="head"></a>One of a layer\'s heads.\n')
    assert entries_without_anchor(text) == ["Logit lens", "Attention head"]


@pytest.mark.parametrize("nb", catalogue.notebooks(), ids=lambda p: p.stem[:2])
def test_no_notebook_cell_points_readers_at_an_issue(nb: Path):
    found = issue_mentions(json.loads(nb.read_text()))
    assert not found, f"{nb.name} mentions issues its readers cannot see (cell, text): {found}; say what happened instead"


def test_the_issue_check_catches_both_forms_and_spares_ordinary_words():
    cell = lambda kind, text: {"cell_type": kind, "source": [text]}
    notebook = {"cells": [cell("markdown", "As the issue asked, we rerun it."), cell("code", "# see issue 18\nx = 1"),
                          cell("markdown", "Issues #7 and 8 are fixed."), cell("markdown", "A known issue with ReLUs: dead units."),
                          cell("code", "tissue = 3  # the issued key")]}
    assert issue_mentions(notebook) == [(0, "the issue"), (1, "issue 18"), (2, "Issues #7")]
