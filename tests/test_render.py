"""render: notebook outputs become offline HTML (plotly divs, circuitsvis from one local bundle)."""
import json
import re

import circuitsvis as cv
import nbformat
import pytest
import torch

import glassbox
from glassbox import viz
from glassbox.journal import paths as journal_paths
from glassbox.journal import render

BADGE = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         "(https://colab.research.google.com/github/glassbox-journal/journal/blob/main/notebooks/07_x.ipynb)")


def notebook_with(*datas: dict) -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_markdown_cell(f"# 07 · X\n\n{BADGE}"), nbformat.v4.new_code_cell("import sys  # google.colab setup")]
    code = nbformat.v4.new_code_cell("x")
    code.outputs = [nbformat.v4.new_output("display_data", data=d) for d in datas]
    return nbformat.v4.new_notebook(cells=[*cells, code])


def view():
    return cv.attention.attention_heads(attention=torch.eye(3)[None], tokens=["a", "b", "c"])


def test_plotly_json_becomes_a_div_and_the_png_is_dropped():
    figure = {"data": [{"type": "scatter", "y": [1, 2], "name": "</script><b>"}], "layout": {"height": 300}}
    nb = notebook_with({render.PLOTLY_MIME: figure, "image/png": "iVBOR", "text/plain": "Figure"})
    assert render.inline_plotly(nb, "07_x") == 1
    data = nb.cells[2].outputs[0].data
    assert render.PLOTLY_MIME not in data and "image/png" not in data, "the page draws the live figure, not the PNG"
    html = data["text/html"]
    assert 'id="07_x-fig0" class="plotly-figure"' in html and "height:300px" in html
    assert html.count("</script>") == 1, "figure text must not close the script early"
    payload = html[html.index("])(") + 3: html.rindex("), {responsive")]
    assert json.loads(payload.replace("<\\/", "</"))["data"][0]["name"] == "</script><b>"


def test_all_three_circuitsvis_forms_draw_from_the_page_bundle():
    ours = viz.circuitsvis_html(view(), bundle=True)  # viz.show_circuitsvis
    inlined, cdn = view().local_src, view().cdn_src  # circuitsvis's own HTML, offline and online
    nb = notebook_with({"text/html": ours}, {"text/html": inlined}, {"text/html": cdn})
    assert render.localise_circuitsvis(nb) == 3
    pages = [o.data["text/html"] for o in nb.cells[2].outputs]
    assert all(len(p) < 5_000 for p in pages), f"bundles must be stripped from the outputs: sizes {[len(p) for p in pages]}"
    assert "const { render, AttentionHeads } = window.CircuitsVis;" in pages[2], "the CDN import must use the local bundle"
    assert not any("unpkg.com/circuitsvis@1.43.3/dist/cdn/esm.js\";" in p for p in pages[1:])


def test_outputs_without_circuitsvis_are_left_alone():
    nb = notebook_with({"text/html": "<b>table</b>"})
    assert render.localise_circuitsvis(nb) == 0 and nb.cells[2].outputs[0].data["text/html"] == "<b>table</b>"


def test_the_web_page_drops_the_setup_cell_and_links_colab_in_text():
    nb = notebook_with()
    render.tidy_for_the_web(nb)
    assert len(nb.cells) == 2 and "google.colab" not in nb.cells[1].source, "the Colab setup cell is noise on the web"
    assert nb.cells[0].source.count('<a class="colab" href="https://colab.research.google.com/github/') == 1
    assert "colab-badge.svg" not in nb.cells[0].source, "the badge image would be fetched from the internet"


def test_journal_pages_link_in_order(tmp_path):
    nbs = []
    for stem in ["01_a", "02_b", "03_c"]:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {stem} title\n\n{BADGE}"),
                                             nbformat.v4.new_code_cell("1")])
        nbs.append(tmp_path / f"{stem}.ipynb")
        nbformat.write(nb, nbs[-1])
    out = tmp_path / "site"
    (out / "00_stale.html").parent.mkdir()
    (out / "00_stale.html").write_text("old")
    index = render.render_journal(nbs, out).read_text()
    assert [index.index(f'href="{p.stem}.html"') for p in nbs] == sorted(index.index(f'href="{p.stem}.html"') for p in nbs)
    middle = (out / "02_b.html").read_text()
    assert 'href="01_a.html">\u2190 01_a title' in middle and 'href="03_c.html">03_c title \u2192' in middle
    assert not (out / "00_stale.html").exists(), "pages of notebooks that no longer exist must go"
    assert {"plotly.min.js", "circuitsvis.js", "journal.css"} <= {p.name for p in out.iterdir()}
    assert "cdnjs" not in middle and "require.min.js" not in middle, "no script may come from a CDN"


def test_a_progress_bar_shows_its_last_state_only(tmp_path):
    nb = notebook_with()
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stderr", text=t)
                           for t in ["\rtrain:   0%| 0/9", "\rtrain:  50%| 4/9", "\rtrain: 100%| 9/9", "\n"]]
    nb.cells[2].outputs.insert(3, nbformat.v4.new_output("stream", name="stdout", text="done\n"))
    nbformat.write(nb, tmp_path / "07_x.ipynb")
    render.render_journal([tmp_path / "07_x.ipynb"], tmp_path / "site")
    page = (tmp_path / "site" / "07_x.html").read_text()
    assert "train: 100%" in page and "train:   0%" not in page and "train:  50%" not in page, \
        "tqdm's updates (one stream output each) must collapse to the bar's final state"
    assert page.count('jp-RenderedText jp-OutputArea-output') == 2, "the bar's closing newline must not leave an empty output"


def test_a_cell_that_writes_prose_shows_its_text_not_its_source(tmp_path):
    nb = notebook_with()
    prose = nbformat.v4.new_code_cell('findings.markdown("""<details><summary>Answer</summary>\n\n{x:.1%}\n</details>""")')
    prose.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": "<details><summary>Answer</summary>\n\n12.5%\n</details>"})]
    nb.cells += [prose, nbformat.v4.new_code_cell("findings.record('x', 0.125)\nfindings.markdown('{x}')")]
    render.hide_prose_sources(nb)
    assert nb.cells[3].metadata["jupyter"]["source_hidden"] is True, "JupyterLab collapses a source marked source_hidden"
    assert "jupyter" not in nb.cells[4].metadata and "jupyter" not in nb.cells[2].metadata, "only cells that just write prose"
    nbformat.write(nb, tmp_path / "07_x.ipynb")
    render.render_journal([tmp_path / "07_x.ipynb"], tmp_path / "site")
    page = (tmp_path / "site" / "07_x.html").read_text()
    assert page.count("celltag_source-hidden") == 1 and ".celltag_source-hidden .jp-Cell-inputWrapper { display: none; }" in \
        (tmp_path / "site" / "journal.css").read_text() + page, "the page must hide the prose cell's source"
    assert "12.5%" in page, "and show its text"


# Strings a notebook may record or a figure may carry, each of which runs script if it reaches the
# page as HTML (or ends the <script> it sits in): none may.
PWN = "window.__pwned=1"
HOSTILE = [f"<script>{PWN}</script>", f'<img src=x onerror="{PWN}">', f'</script><svg onload="{PWN}">',
           f"<!--<script>{PWN}</script>", f"[click](javascript:{PWN})", f"`<b onmouseover=\"{PWN}\">`"]


def scripts_closed_where_opened(page: str) -> bool:
    """Every <script> in `page` ends at its own </script>, and no data opens an HTML comment."""
    return page.lower().count("<script") == page.lower().count("</script") and "<!--" not in page


@pytest.mark.parametrize("height, style", [(300, "height:300px"), (512.5, "height:512.5px"),
                                           ('1px" onload="window.__pwned=1', "height:450px"), ("300", "height:450px"),
                                           (0, "height:450px"), (-20, "height:450px"), (True, "height:450px"),
                                           (float("inf"), "height:450px"), (None, "height:450px")])
def test_a_figure_height_is_written_only_when_it_is_a_positive_number(height, style):
    page = render.plotly_html({"data": [], "layout": {"height": height}}, "07_x-fig0")
    assert f'style="width:100%;{style}"' in page and "onload" not in page.split("<script>")[0]


def test_strings_in_a_figure_cannot_leave_its_script():
    figure = {"data": [{"type": "bar", "x": HOSTILE, "y": [1] * len(HOSTILE), "name": HOSTILE[2]}],
              "layout": {"title": {"text": HOSTILE[0]}, "height": HOSTILE[1]}}
    page = render.plotly_html(figure, '07_x"><script>alert(1)</script>-fig0')
    assert page.count("<script>") == 1 and scripts_closed_where_opened(page), page
    assert page.startswith('<div id="07_x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;-fig0"')
    payload = page[page.index("])(") + 3: page.rindex("), {responsive")]
    assert json.loads(payload) == figure, "JavaScript must read back the figure as recorded"


def test_tokens_in_a_circuitsvis_view_cannot_leave_its_script():
    tokens = ["a", *HOSTILE[:4]]
    hostile = cv.attention.attention_heads(attention=torch.eye(5)[None], tokens=tokens)
    forms = [viz.circuitsvis_html(hostile, bundle=False), hostile.local_src, hostile.cdn_src]
    nb = notebook_with(*({"text/html": form} for form in forms))
    assert render.localise_circuitsvis(nb) == 3
    for page in (o.data["text/html"] for o in nb.cells[2].outputs):
        assert scripts_closed_where_opened(page), page
        props = re.search(r'render\(\s*"circuits-vis-[\w-]+",\s*[\w."\[\]]+,\s*(\{.*\})\s*\)', page)[1]
        assert json.loads(props)["tokens"] == tokens, "the view must still show the tokens as they are"


def markdown_output(page: str) -> str:
    """The HTML of the page's first Markdown output."""
    start = re.search(r'jp-OutputArea-output[^"]*" data-mime-type="text/markdown"[^>]*>', page).end()
    return page[start:page.index("\n</div>", start)]


@pytest.fixture
def hostile_run(monkeypatch, tmp_path):
    """A notebook run (staged in tmp_path) that recorded the hostile strings."""
    from glassbox.journal import contract, findings

    monkeypatch.setattr(contract, "_current", None)
    monkeypatch.setenv(contract.ENV_STAGE, str(tmp_path / "stage"))
    monkeypatch.setenv(contract.ENV_SMOKE, "1")
    glassbox.start("98_hostile", smoke=True)
    findings.record("evil", " ".join(HOSTILE))
    findings.record("acc", 0.125)
    findings.record("per_class", {"0": HOSTILE[1]})
    yield findings


def test_findings_markdown_escapes_recorded_strings_and_keeps_the_template(hostile_run, tmp_path):
    text = hostile_run.markdown("<details><summary>Answer</summary>\n\n**{acc:.1%}**, {evil}, `{evil}`, "
                                "`{per_class[0]}` and {{braces}}\n</details>").data
    assert text.startswith("<details><summary>Answer</summary>\n\n**12.5%**, ") and text.endswith(" and {braces}\n</details>")
    assert not re.search(r"<(?!/?(details|summary|code)>)", text), f"only the template's own tags: {text}"
    assert text.count("<code>") == 2 and "`" not in text, "a field that is a whole code span becomes <code>"
    nb = notebook_with({"text/markdown": text, "text/plain": "<IPython.core.display.Markdown object>"})
    nbformat.write(nb, tmp_path / "98_hostile.ipynb")
    page = render.render_notebook(tmp_path / "98_hostile.ipynb", tmp_path, None, None, mathjax=False).read_text()
    shown = markdown_output(page)
    assert not re.search(r"<(script|img|svg|a)\b|<!--", shown), shown
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in shown, "the recorded string shows as text"
    assert "<details><summary>Answer</summary>" in shown and "<strong>12.5%</strong>" in shown
    assert "<code>&lt;script&gt;window.__pwned=1&lt;/script&gt;" in shown, "a code span shows the string as typed"


def test_markdown_outputs_keep_their_markup_and_lose_their_scripts(tmp_path):
    """An output made without findings.markdown (or before it escaped) passes the page's allowlist."""
    raw = (f"**bold** {' '.join(HOSTILE)} <a href=\"javascript:{PWN}\">a link</a> <a href=\"07_x.html#top\">ok</a>\n\n"
           "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n<details><summary>Answer</summary>\n\n*folded*\n</details>")
    nbformat.write(notebook_with({"text/markdown": raw}), tmp_path / "07_x.ipynb")
    page = render.render_notebook(tmp_path / "07_x.ipynb", tmp_path, None, None, mathjax=False).read_text()
    shown = markdown_output(page)
    for bad in [r"<script", r"<svg", r"<!--", r"<[^>]*\son\w+\s*=", r"=\s*\"?javascript:"]:  # tags, handlers, links
        assert not re.search(bad, shown), f"{bad} survived: {shown}"
    for kept in ["<strong>bold</strong>", '<a href="07_x.html#top">ok</a>', '<th style="text-align:left;">a</th>',
                 "<details><summary>Answer</summary>", "<em>folded</em>"]:
        assert kept in shown, f"{kept} was lost: {shown}"


def test_headlines_are_text_on_the_index_and_in_the_readme(monkeypatch, tmp_path):
    from glassbox.journal import catalogue

    nbformat.write(notebook_with(), tmp_path / "07_x.ipynb")
    monkeypatch.setattr(render, "headline", lambda stem: " ".join(HOSTILE))
    index = render.index_page([tmp_path / "07_x.ipynb"])
    assert scripts_closed_where_opened(index) and "<img" not in index and "<svg" not in index
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in index
    cell = catalogue.table_text("A <= B\nand <script>x</script> <!-- c --> <http://x> <img src=x>")
    assert cell == "A <= B and &lt;script>x&lt;/script> &lt;!-- c --> &lt;http://x> &lt;img src=x>"


def significant_digits(number: str) -> int:
    """How many significant digits a JSON number is written with (`0.000123` -> 3, `1.5e-05` -> 2, `0` -> 1)."""
    digits = re.split(r"[eE]", number.lstrip("-"))[0]
    digits = digits.replace(".", "").lstrip("0") if "." in digits else digits.strip("0")
    return max(len(digits), 1)


def test_circuitsvis_numbers_are_rounded_for_display_and_the_text_kept():
    attention = torch.softmax(torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(0)) * 3, -1)
    attention[0, 0, 1:] = 0  # exact zeros and ones, as a causal mask writes them
    attention[0, 0, 0] = 1
    tokens = ["a", "<b>", "1.23456789", "c", "d", "e"]
    made = cv.attention.attention_heads(attention=attention, tokens=tokens)
    nb = notebook_with({"text/html": viz.circuitsvis_html(made, bundle=False)}, {"text/html": made.local_src},
                       {"text/html": made.cdn_src})
    before = sum(len(o.data["text/html"]) for o in nb.cells[2].outputs)
    assert render.localise_circuitsvis(nb) == 3
    for page in (o.data["text/html"] for o in nb.cells[2].outputs):
        props = re.search(r'render\(\s*"circuits-vis-[\w-]+",\s*[\w."\[\]]+,\s*(\{.*\})\s*\)', page)[1]
        numbers = re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", re.sub(r'"(?:[^"\\]|\\.)*"', '""', props))
        assert numbers and max(map(significant_digits, numbers)) <= 4, f"numbers written in full: {props[:300]}"
        shown = json.loads(props)
        assert shown["tokens"] == tokens, "strings (tokens) are not numbers: kept as they are"
        assert torch.allclose(torch.tensor(shown["attention"]), attention, rtol=5e-3, atol=1e-9), "3 significant digits"
        assert shown["attention"][0][0] == [1, 0, 0, 0, 0, 0]
    assert sum(len(o.data["text/html"]) for o in nb.cells[2].outputs) < 0.8 * before


def test_significant_digits_counts_what_a_reader_would():
    assert [significant_digits(n) for n in ["0", "1", "0.5", "0.000123", "1.5e-05", "0.68512344", "-12.25"]] == [1, 1, 1, 3, 2, 8, 4]


def test_mathjax_typesets_the_prose_only_and_plotly_false_colour_warnings_are_dropped(tmp_path):
    nbformat.write(notebook_with({render.PLOTLY_MIME: {"data": [{"type": "bar", "y": [1]}], "layout": {}}}), tmp_path / "07_x.ipynb")
    page = render.render_notebook(tmp_path / "07_x.ipynb", tmp_path, None, None).read_text()
    assert 'tex2jax: {ignoreClass: "jp-OutputArea", processClass: "jp-RenderedMarkdown"}' in page, \
        "MathJax must skip what code printed (a text sample with two $) and keep Markdown outputs"
    assert page.index("console.trace = ") < page.index('<script src="plotly.min.js">')


def test_the_glossary_page_keeps_one_anchor_per_entry():
    page = render.glossary_page('# Glossary\n\n### Residual stream\n<a id="residual-stream"></a>The running sum.\n'
                                '*Used in:* [07](07_language_model.ipynb)\n')
    assert page.count('id="residual-stream"') == 1 and '<dt id="residual-stream">' in page, \
        "the explicit anchor (for JupyterLab) must not repeat the entry's id on the page"
    assert "The running sum." in page and 'href="07_language_model.html"' in page


def test_the_head_style_sheets_move_to_one_shared_file_in_order(tmp_path):
    """nbconvert's style sheets (the same 260 KB on every page) become one linked file named after its content,
    where the first was; a style in the body stays; a page whose sheets differ gets a file of its own."""
    page = ('<html><head><title>t</title>\n<style type="text/css">a { b: 1 }</style>\n<script>x</script>\n'
            '<style type="text/css">\n c { d: 2 }\n</style>\n<link href="journal.css"></head>'
            '<body><style type="text/css">e { f: 3 }</style></body></html>')
    shared = render.shared_lab_css(page, tmp_path)
    [css] = tmp_path.glob("lab-*.css")
    assert css.read_text() == "a { b: 1 }\nc { d: 2 }\n"
    head = shared[:shared.index("</head>")]
    assert "<style" not in head, head
    assert head.index(f'href="{css.name}"') < head.index("<script>x") < head.index('href="journal.css"'), "the order of the rules is kept"
    assert '<style type="text/css">e { f: 3 }</style>' in shared, "styles in the body are left alone"
    assert render.shared_lab_css(page, tmp_path) == shared and len(list(tmp_path.glob("lab-*.css"))) == 1, "identical pages share one file"
    other = render.shared_lab_css(page.replace("a { b: 1 }", "a { b: 2 }"), tmp_path)
    assert len(list(tmp_path.glob("lab-*.css"))) == 2 and f'href="{css.name}"' not in other, "control: different sheets, different files"


def test_the_heaviest_page_stays_light(tmp_path):
    """Page 07 (attention heatmaps, circuitsvis views) weighed 1,264,879 bytes with JupyterLab's CSS inlined and
    1,002,864 with it shared (2026-12 notebooks); 1.1 MB leaves room for the notebook to change, not for the CSS
    (or an unrounded view) to come back."""
    nb = next(iter(sorted(journal_paths.NOTEBOOK_DIR.glob("07_*.ipynb"))), None)
    if nb is None:
        pytest.skip("no notebook 07")
    page = render.render_notebook(nb, tmp_path, None, None)
    size = page.stat().st_size
    assert size < 1_100_000, f"{page.name} is {size:,} bytes: what made it heavier (inlined CSS, unrounded figure data)?"
