"""viz.show_circuitsvis: circuitsvis views that draw offline, carrying the JS bundle once per kernel."""
import json
import re

import circuitsvis as cv
import IPython.display
import pytest
import torch

from glassbox import viz
from glassbox.journal import contract as notebook


@pytest.fixture
def fresh_kernel(monkeypatch):
    """As in a new kernel: no view has carried the bundle yet; displayed outputs are collected."""
    monkeypatch.setattr(viz, "_circuitsvis_bundle_shown", False)
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: DISPLAYED.append(data))
    DISPLAYED.clear()


DISPLAYED: list[dict] = []


def attention() -> torch.Tensor:
    return torch.softmax(torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(0)), -1)


def shown(view) -> dict:
    viz.show_circuitsvis(view)
    return DISPLAYED.pop()


def test_first_view_carries_the_bundle_once_and_later_views_reuse_it(fresh_kernel):
    first = shown(cv.attention.attention_heads(attention=attention(), tokens=["a", "b", "c"]))
    second = shown(cv.attention.attention_pattern(tokens=["a", "b", "c"], attention=attention()[0]))
    assert first["text/html"].count('class="circuitsvis-bundle"') == 1, "the kernel's first view must carry the bundle"
    assert "circuitsvis-bundle" not in second["text/html"], "later views must reuse the bundle, not carry it again"
    assert 300_000 < len(first["text/html"]) < 700_000, f"the gzipped bundle should be ~0.5 MB, got {len(first['text/html'])}"
    assert len(second["text/html"]) < 10_000
    assert "AttentionHeads" in first["text/plain"], "a text/plain fallback names the view"


def test_the_view_keeps_circuitsvis_props_and_element(fresh_kernel):
    pattern = attention()
    html = shown(cv.attention.attention_heads(attention=pattern, tokens=["a", "b", "c"]))["text/html"]
    call = re.search(r'cv\.render\("(circuits-vis-\w+)", cv\["(\w+)"\], (.*)\);\n', html)
    assert call and call.group(2) == "AttentionHeads" and f'id="{call.group(1)}"' in html
    props = json.loads(call.group(3))
    assert props["tokens"] == ["a", "b", "c"]
    assert torch.allclose(torch.tensor(props["attention"]), pattern), "the attention values must reach the page unchanged"


def test_text_cannot_close_the_script(fresh_kernel):
    html = viz.circuitsvis_html(cv.tokens.colored_tokens(tokens=["</script><b>x", "y"], values=[1.0, 2.0]), bundle=False)
    assert html.count("</script>") == 1, "a token containing </script> must be escaped inside the script"
    assert "</script" not in viz.circuitsvis_bundle(), "the inlined bundle must not contain </script"


def test_in_colab_views_load_circuitsvis_from_its_cdn(fresh_kernel, monkeypatch):
    monkeypatch.setattr(notebook, "in_colab", lambda: True)
    html = shown(cv.attention.attention_heads(attention=attention(), tokens=["a", "b", "c"]))["text/html"]
    assert "circuitsvis-bundle" not in html, "Colab runs each output in its own frame: no bundle there"
    assert 'await import("https://unpkg.com/circuitsvis@' in html


def test_other_objects_are_refused_with_what_to_pass():
    with pytest.raises(TypeError, match=r"circuitsvis\.attention\.attention_heads.*got str"):
        viz.show_circuitsvis("<div>not a view</div>")


def test_the_carried_bundle_is_circuitsvis_itself_and_bundle_forces_or_skips_it(fresh_kernel):
    import base64
    import gzip

    view = cv.attention.attention_heads(attention=attention(), tokens=["a", "b", "c"])
    skipped = shown_with(view, bundle=False)
    assert "circuitsvis-bundle" not in skipped, "bundle=False: no bundle, even in the kernel's first view"
    first = shown(view)
    assert "circuitsvis-bundle" in first["text/html"], "a skipped bundle does not count as shown"
    packed = re.search(r'atob\("([A-Za-z0-9+/=]+)"\)', first["text/html"]).group(1)
    assert gzip.decompress(base64.b64decode(packed)).decode() == viz.circuitsvis_bundle(), "the bundle must unpack to circuitsvis"
    assert "circuitsvis-bundle" in shown_with(view, bundle=True), "bundle=True forces it again"
    assert "circuitsvis-bundle" not in shown(view)["text/html"]


def shown_with(view, **kwargs) -> str:
    viz.show_circuitsvis(view, **kwargs)
    return DISPLAYED.pop()["text/html"]
