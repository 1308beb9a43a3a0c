"""The website's library page (glassbox.journal.library) and the README's "Using glassbox on your own
model": the public API of every tool module is on the page with its signature and docstring, every
module's example runs and holds what it asserts, the page renders as well-formed, escaped HTML linked
from the rest of the site, and the README's snippets run as written."""
import html.parser
import inspect
import re

import nbformat
import pytest
import torch

from glassbox import paths
from glassbox.journal import library, render



def public_objects():
    """(module name, name, object) for every public function and class defined in a tool module, found
    without the library module's own helper."""
    for module_name, module in library.tool_modules().items():
        for name, obj in inspect.getmembers(module, lambda o: inspect.isfunction(o) or inspect.isclass(o)):
            if not name.startswith("_") and obj.__module__ == module.__name__:
                yield module_name, name, obj


class Page(html.parser.HTMLParser):
    """A page read back: the text of each element with an id (a <dd>'s under its <dt>'s id + " doc"), the tags
    and links it holds, and the tags not closed in order."""

    VOID = {"meta", "link", "br", "img", "hr", "input"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, str | None]] = []
        self.texts: dict[str, list[str]] = {}
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self.problems: list[str] = []
        self.feed(text)
        self.close()
        self.problems += [f"<{tag}> never closed" for tag, _ in self.open]
        self.text = {key: "".join(parts) for key, parts in self.texts.items()}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "href" in attrs:
            self.hrefs.append(attrs["href"])
        if tag in self.VOID:
            return
        key = attrs.get("id")
        if key:
            self.ids.append(key)
        elif tag == "dd" and self.ids:  # a definition is read under its term's id + " doc"
            key = f"{self.ids[-1]} doc"
        self.open.append((tag, key))
        if key:
            self.texts[key] = []

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.open or self.open[-1][0] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1][0] if self.open else 'nothing'}")
            return
        self.open.pop()

    def handle_data(self, data):
        for _, element_id in self.open:
            if element_id:
                self.texts[element_id].append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The journal rendered from one small notebook that uses two studies: (output folder, library page read back)."""
    folder = tmp_path_factory.mktemp("library")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 07 · A notebook that uses studies"),
                                         nbformat.v4.new_code_cell("from glassbox.studies import models, shakespeare as text\n"
                                                                   "import glassbox.studies.grokking")])
    nbformat.write(nb, folder / "07_uses_studies.ipynb")
    out = folder / "site"
    render.render_journal([folder / "07_uses_studies.ipynb"], out)
    return out, Page((out / "library.html").read_text(encoding="utf-8"))


def test_every_public_tool_function_has_a_one_line_docstring():
    missing = [f"{m}.{name}" for m, name, obj in public_objects() if not library.summary(library.own_docstring(obj))]
    assert not missing, (f"public tool functions and classes without a docstring (the library page shows its first "
                         f"line): {', '.join(missing)}; give each a one-line docstring or a leading underscore")


def test_every_public_tool_function_is_on_the_page_with_its_signature_and_docstring(site):
    out, page = site
    wrong = []
    for module_name, name, obj in public_objects():
        shown = page.text.get(f"{module_name}.{name}")
        if shown is None:
            wrong.append(f"{module_name}.{name}: not on the page")
            continue
        sig = inspect.signature(obj)
        if not shown.startswith(f"{name}(") or shown != library.signature(obj):
            wrong.append(f"{module_name}.{name}: shown as {shown!r}")
        for p in sig.parameters.values():
            dims = getattr(p.annotation, "dim_str", None)  # a jaxtyping shape, e.g. "batch *unit"
            if p.name not in shown or (dims and f'"{dims}"' not in shown):
                wrong.append(f"{module_name}.{name}: parameter {p.name} ({dims or 'no shape'}) missing from {shown!r}")
        dims = getattr(sig.return_annotation, "dim_str", None)
        if dims and f'-> Float[Tensor, "{dims}"]' not in shown and f'-> Int[Tensor, "{dims}"]' not in shown:
            wrong.append(f"{module_name}.{name}: the return shape {dims!r} is missing from {shown!r}")
        doc = library.summary(library.own_docstring(obj)).replace("`", "") or "(no docstring)"  # the test above fails then
        if page.text.get(f"{module_name}.{name} doc") != doc:
            wrong.append(f"{module_name}.{name}: its docstring's first paragraph {doc!r} is not on the page")
    assert not wrong, "\n".join(wrong)


def test_signatures_keep_jaxtyping_shapes_and_short_type_names():
    from glassbox import neurons, sae

    assert library.signature(neurons.class_means) == (
        'class_means(acts: Float[Tensor, "batch neuron *spatial"], y: Int[Tensor, "batch"], n_classes: int | None = None)'
        ' -> Float[Tensor, "n_classes neuron"]')
    shown = library.signature(sae.splice)
    assert shown.startswith("splice(model: nn.Module, name: str, sae: SAE, *, position: int | None = None, edit: "
                            'Callable[[Float[Tensor, "batch d_sae"]], Float[Tensor, "batch d_sae"]] | None = None'), shown
    assert "torch.nn.modules" not in shown and "jaxtyping." not in shown and "collections.abc." not in shown


def test_a_dataclass_without_a_docstring_has_none():
    from dataclasses import dataclass

    @dataclass
    class Bare:
        x: int

    @dataclass
    class Told:
        """Said."""
        x: int

    assert library.own_docstring(Bare) is None and library.own_docstring(Told) == "Said."


@pytest.mark.parametrize("module_name", library.TOOLS)
def test_each_module_example_runs_and_holds_what_it_says(module_name):
    code = library.EXAMPLES.get(module_name)
    assert code, f"the library page needs an example for glassbox.{module_name} in library.EXAMPLES"
    assert re.search(rf"^from glassbox import .*\b{module_name}\b", code, re.M), f"the {module_name} example must use it"
    assert "assert " in code, f"the {module_name} example must state what it produces with assert"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, f"<library example: {module_name}>", "exec"), {"__name__": f"example_{module_name}"})
    finally:
        torch.set_num_threads(threads)


def test_a_failing_example_fails_the_check():
    with pytest.raises(AssertionError):
        exec(compile(library.EXAMPLES["fourier"].replace("norms.argmax() == 3", "norms.argmax() == 2"), "<x>", "exec"), {})


def test_the_page_is_well_formed_and_linked_from_the_site(site):
    out, page = site
    assert not page.problems, "library.html is not well formed: " + "; ".join(page.problems[:5])
    assert "script" not in page.tags, "the library page needs no script"
    assert [i for i in page.ids if i in library.TOOLS] == list(library.TOOLS), "one section per tool module, in order"
    assert {f"#{m}" for m in library.TOOLS} <= set(page.hrefs), "the page's contents link every module"
    for m in library.TOOLS:
        assert library.summary(library.tool_modules()[m].__doc__).replace("`", "")[:40] in page.text[m]
        assert library.EXAMPLES[m].splitlines()[0] in page.text[m], f"{m}'s example is shown"
    assert 'href="library.html"' in (out / "index.html").read_text(), "the index links the library page"
    assert 'href="library.html"' in (out / "07_uses_studies.html").read_text(), "a notebook page's nav links the library"
    assert 'href="library.html"' in (out / "glossary.html").read_text()


def test_the_studies_get_a_line_each_and_link_the_notebooks_that_use_them(site):
    out, page = site
    studies = sorted(p.stem for p in (paths.ROOT / "src" / "glassbox" / "studies").glob("*.py") if p.stem != "__init__")
    assert [i.removeprefix("studies.") for i in page.ids if i.startswith("studies.")] == studies
    for name, line in library.studies().items():
        assert line and line in page.text[f"studies.{name}"], f"glassbox.studies.{name} needs its one line"
    linked = {name for name in studies if "07_uses_studies.html" in
              (out / "library.html").read_text().split(f'id="studies.{name}"')[1].split("</li>")[0]}
    assert linked == {"models", "shakespeare", "grokking"}, f"the notebook uses models, shakespeare, grokking; linked from {linked}"


def test_everything_on_the_page_is_escaped(monkeypatch, tmp_path):
    from glassbox import fourier

    evil = '<script>window.__pwned=1</script><img src=x onerror="alert(1)">'
    monkeypatch.setattr(fourier.gini, "__doc__", f"Gini {evil} `{evil}`.")
    monkeypatch.setitem(library.EXAMPLES, "fourier", f"# </code></pre>{evil}\n")
    nb = tmp_path / "01_x.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# 01 · {evil}"),
                                                   nbformat.v4.new_code_cell("from glassbox.studies import backdoor")]), nb)
    page_text = library.library_page([nb])
    page = Page(page_text)
    assert "script" not in page.tags and "img" not in page.tags and not page.problems, page.problems
    assert page.text["fourier.gini doc"] == f"Gini {evil} {evil}.", "a docstring is shown as text"
    assert f"</code></pre>{evil}" in page.text["fourier"], "an example is shown as text"
    assert f"01 · {evil}" in page.text["studies.backdoor"], "a notebook's title is shown as text"


def readme_section() -> str:
    text = (paths.ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Using glassbox on your own model\n")
    return text[start:text.index("\n## ", start + 1)]


def test_the_readme_shows_each_tool_on_a_model_the_reader_brings():
    section = readme_section()
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    code = "\n".join(blocks)
    for shown in ["hooks.capture", "hooks.patch", "probes.fit_probe", "ablation.ablate", "lens.logit_lens",
                  "sae.train_sae", "sae.splice", "class MyModel(nn.Module)", "build_bridge_from_module", "GPT2LMHeadModel"]:
        assert shown in code, f"the README's 'Using glassbox on your own model' must show {shown}"
    assert "library.html" in section, "the section points to the library page"


def test_the_readme_snippets_run_as_written(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may download: the GPT-2 is built from its config
    blocks = re.findall(r"```python\n(.*?)```", readme_section(), re.S)
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "readme"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, block in enumerate(blocks):  # in order, in one namespace, as a reader pastes them
            exec(compile(block, f"<README 'Using glassbox on your own model', python block {i + 1}>", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(namespace["by_layer"][-1], namespace["logits"]), "the logit lens's last read is the model's output"
    assert namespace["probe"].accuracy > namespace["probe"].chance + 0.2
