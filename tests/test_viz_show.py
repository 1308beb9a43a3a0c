"""viz.show outside a notebook: a plain script gets plotly's own fig.show(), not the figure's JSON and
PNG bytes printed to the terminal (what IPython's display() does with no shell running)."""
import subprocess
import sys
import textwrap

import plotly.graph_objects as go

from glassbox import viz


def test_a_plain_script_prints_no_figure_data(tmp_path):
    # plotly's "json" renderer would print the figure to stdout, so a clean stdout with it shows
    # that fig.show() was not called either; the script records the call instead.
    script = tmp_path / "plot.py"
    script.write_text(textwrap.dedent("""
        import plotly.graph_objects as go
        from glassbox import viz
        shown = []
        go.Figure.show = lambda self, *a, **k: shown.append(self.layout.title.text)
        viz.show(go.Figure(go.Scatter(y=[1, 3, 2]), layout={"title": "t"}))
        viz.show(go.Figure(go.Scatter(y=[1, 3, 2]), layout={"title": "u"}), static=False)
        print("shown", shown)
    """))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "shown ['t', 'u']\n", f"a script must get fig.show() and nothing printed: {run.stdout[:300]!r}"
    assert "PNG" not in run.stderr and "application/vnd.plotly" not in run.stderr


def test_in_a_shell_the_figure_is_displayed_not_shown(monkeypatch):
    shown, displayed = [], []
    monkeypatch.setattr(viz, "_in_ipython", lambda: True)
    monkeypatch.setattr(go.Figure, "show", lambda self, *a, **k: shown.append(self))
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: displayed.append(obj))
    monkeypatch.setattr(viz, "_to_png", lambda fig, width, height: b"\x89PNG")
    monkeypatch.setattr(viz, "_browser", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(viz.notebook, "current", lambda: None)
    monkeypatch.setattr(viz.notebook, "in_colab", lambda: False)
    viz.show(go.Figure(go.Scatter(y=[1, 2])))
    assert not shown and len(displayed) == 1 and set(displayed[0]) == {viz.PLOTLY_MIME, "image/png"}


def test_outside_ipython_is_detected():
    assert viz._in_ipython() is False, "pytest runs no IPython shell"
