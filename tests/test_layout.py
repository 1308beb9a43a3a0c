"""The package's three rooms (issue 24): tools for any model at the top of glassbox, the journal's
studies in glassbox.studies, the machinery in glassbox.journal. Imports only go down."""
import ast
from pathlib import Path

import glassbox

SRC = Path(glassbox.__file__).parent
TOOLS = {"checks", "hooks", "neurons", "probes", "attribution", "ablation", "lens", "circuits", "patching", "sae",
         "transcoders", "training", "lm", "fourier", "viz"}


def imported(path: Path) -> set[str]:
    """Every glassbox module a file imports, at the top or inside a function ("glassbox.x.y" or "glassbox.x")."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("glassbox"):
            out |= {f"{node.module}.{a.name}" if node.module == "glassbox" or node.module.count(".") == 1 and
                    node.module in ("glassbox.studies", "glassbox.journal") else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("glassbox")}
    return out


def test_the_top_of_the_package_holds_the_tools_and_nothing_else():
    found = {p.stem for p in SRC.glob("*.py")} - {"__init__"}
    assert found == TOOLS, f"modules at the top of glassbox that are not tools: {found - TOOLS}; missing: {TOOLS - found}"


def test_the_tools_import_no_study_and_no_machinery():
    for tool in sorted(TOOLS):
        bad = {m for m in imported(SRC / f"{tool}.py") if m.startswith(("glassbox.studies", "glassbox.journal"))}
        if tool == "viz":  # asks the run contract whether this is a smoke run (no static PNGs then)
            bad -= {"glassbox.journal.contract"}
        assert not bad, f"the tool {tool} imports {bad}: a tool must work without the journal"


def test_the_studies_use_tools_and_each_other_but_never_the_runner():
    for path in sorted((SRC / "studies").glob("*.py")):
        bad = {m for m in imported(path) if m.startswith("glassbox.journal") and m != "glassbox.journal.paths"}
        assert not bad, f"the study {path.stem} imports {bad}: studies may read data paths, not run notebooks"


def test_the_machinery_never_imports_a_tool_it_does_not_need():
    for path in sorted((SRC / "journal").glob("*.py")):
        studies = {m for m in imported(path) if m.startswith("glassbox.studies")}
        if path.stem == "checkpoints":  # rebuilds a checkpoint's model from its card
            studies -= {"glassbox.studies.models"}
        assert not studies, f"glassbox.journal.{path.stem} imports the studies {studies}"
