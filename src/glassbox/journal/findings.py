"""A notebook's headline numbers, recorded to JSON for the tests and the README table.

`record("test_accuracy", 0.981)` prints the number (floats to 4 significant digits; the file keeps
them whole; `show=False` prints nothing) and writes <stem>.json in the run's staging folder; the run
contract promotes it to notebooks/findings/ when the whole notebook has run. `load(stem)` reads the committed copy back.
"""
import json
import math
import pprint
import re
import string
from pathlib import Path
from typing import Any

from glassbox.journal import contract, paths
from glassbox.journal.record import refuse_if_torn


def to_json(value: Any) -> Any:
    """Convert tensors, numpy values and tuples to plain JSON types; refuse NaN and infinities."""
    if hasattr(value, "tolist"):  # torch.Tensor, numpy array or scalar
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"refusing to record a non-finite number ({value}); find where it came from")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot record a {type(value).__name__}; record numbers, strings, lists or dicts")


def path_for(stem: str, directory: Path | None = None) -> Path:
    """The findings file of notebook `stem`."""
    return (directory or paths.FINDINGS_DIR) / f"{stem}.json"


def record(key: str, value: Any, show: bool = True) -> Any:
    """Print `key = value` and save it in this run's findings file; returns the value. `show=False`
    records without printing (a "predict, then run" exercise's number belongs in its folded answer)."""
    run = _run()
    if not isinstance(key, str) or not key.isidentifier():
        raise ValueError(f"a finding's key must be a Python identifier (it is read back as {{key}}), got {key!r}")
    run.values[key] = to_json(value)
    paths.atomic_write_text(path_for(run.stem, run.findings_dir), json.dumps(run.values, indent=2) + "\n")
    if show:
        print(f"{key} = {pprint.pformat(rounded(run.values[key]), width=110, sort_dicts=False)}")
    return value


def _run() -> contract.Run:
    run = contract.current()
    if run is None:
        raise RuntimeError("no notebook run: call glassbox.start(stem, smoke=SMOKE, seed=SEED) first")
    return run


def rounded(value: Any, digits: int = 4) -> Any:
    """A copy of a JSON value with floats cut to `digits` significant digits, for printing only."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def load(stem: str, directory: Path | None = None) -> dict[str, Any]:
    """Read the findings of notebook `stem` (committed full run unless `directory` is given)."""
    if directory is None:
        refuse_if_torn(paths.BUILD_DIR)
    path = path_for(stem, directory)
    if not path.is_file():
        raise FileNotFoundError(f"no findings at {path}: run the notebook (make journal) to create them")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"findings file {path} is not valid JSON ({err}); restore it from git or rerun the notebook") from None


def markdown(template: str):
    """Show `template` as Markdown with `{key}` fields filled from this run's recorded values
    (format specs and indexing work: `{test_accuracy:.2%}`, `{probe_accuracy[digit][relu2]:.1%}`),
    so prose about results quotes the recorded numbers and never goes stale. The template is trusted
    Markdown (it may hold <details> etc.); the values filled in are data, escaped to show as text."""
    from IPython.display import Markdown

    values = _run().values
    try:
        return Markdown(_fill(template, _Fields(values)))
    except KeyError as err:
        raise KeyError(f"the template names {err}, which this run has not recorded; recorded: {sorted(values)}") from None


# What a filled-in value may not carry into the Markdown: HTML (tags, entities, quotes for attributes)
# and the Markdown that builds links or code spans or splits table cells; each becomes a numeric
# character reference, which Markdown shows as the character itself.
_ESCAPES = {c: f"&#{ord(c)};" for c in "&<>\"'`\\[]|*_~"}
_TICKS_BEFORE = re.compile(r"(?<![`\\])(`+)$")


def _fill(template: str, fields: "_Fields") -> str:
    """`template.format_map(fields)` with every value escaped (`_ESCAPES`). A field that is a whole code
    span (`{x}` between backticks) becomes <code>escaped</code>, which shows the same text: inside
    backticks Markdown would show the escapes as typed."""
    formatter = string.Formatter()
    parts, out = list(formatter.parse(template)), []
    for i, (literal, name, spec, conversion) in enumerate(parts):
        if name is None:
            out.append(literal)
            continue
        value = formatter.convert_field(formatter.get_field(name, (), fields)[0], conversion)
        text = "".join(_ESCAPES.get(c, c) for c in formatter.format_field(value, formatter.vformat(spec or "", (), fields)))
        ticks = _TICKS_BEFORE.search(literal)
        after = parts[i + 1][0] if i + 1 < len(parts) else ""
        if ticks and after.startswith(ticks[1]) and not after[len(ticks[1]):].startswith("`"):
            literal, text = literal[:ticks.start()], f"<code>{text}</code>"
            parts[i + 1] = (after[len(ticks[1]):], *parts[i + 1][1:])
        out += [literal, text]
    return "".join(out)


class _Fields(dict):
    """Recorded values for str.format_map: `{per_class[0]}` finds the key "0" (JSON keys are strings).
    A format spec on a list or dict applies to each value (`{by_seed:.2f}` shows `[0.03, -0.06]`)."""

    def __getitem__(self, key):
        return _wrap(super().__getitem__(str(key)))

    def __format__(self, spec: str) -> str:
        if not spec:
            return str(self)
        return "{" + ", ".join(f"{k!r}: {format(_wrap(v), spec)}" for k, v in self.items()) + "}"


class _List(list):
    """A recorded list whose format spec applies to each element."""

    def __format__(self, spec: str) -> str:
        if not spec:
            return str(self)
        return "[" + ", ".join(format(_wrap(v), spec) for v in self) + "]"


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return _Fields(value)
    return _List(_wrap(v) for v in value) if isinstance(value, list) else value
