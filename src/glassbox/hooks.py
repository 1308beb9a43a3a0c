"""Capture and patch the activations of any `nn.Module`, by module name.

    with hooks.capture(model, ["relu1", "relu2"]) as acts:
        model(x)
    acts["relu1"]                          # (batch, 128)

    with hooks.patch(model, {"relu1": lambda a: a * mask}):
        logits = model(x)

A name is a module's name in `model.named_modules()` ("relu1", "blocks.0.mlp", "layers.0.mlp"); the
children of an nn.Sequential or nn.ModuleList may also be named by an int (`capture(seq, [1])` is
`capture(seq, ["1"])`; captured values are keyed by the string, and read by either).

Modules whose output is a tuple, a list or a dict (a Hugging Face ModelOutput is a dict) are read
and patched through one tensor of it. By default that is its first tensor (depth first):

    nn.MultiheadAttention    "attn"                  attn_output  of (attn_output, attn_weights)
    nn.LSTM / nn.GRU         "lstm"                  output       of (output, (h_n, c_n))
    HF GPT2Attention         "transformer.h.0.attn"  attn_output  of (attn_output, attn_weights)
    HF blocks (hidden, ...)  "h.0"                   the hidden states (transformers 4 blocks)
    HF GPT2Model             "transformer"           last_hidden_state of its ModelOutput

A suffix in square brackets names another element, as indexing the output would: "attn[1]" (the
attention weights), "lstm[1][0]" (h_n), "transformer[last_hidden_state]". `[i]` takes item i of a
tuple or list (or the i-th entry of a dict), `[key]` a dict's key or a named field (of a namedtuple
or a torch.return_types). A patch receives the selected tensor and returns its replacement; the rest
of the output passes through unchanged. Errors show the output's structure when a selection does
not fit it. (A Hugging Face GPT2Block in transformers 5 returns one tensor: "transformer.h.0".)

Hooks are always removed when the block exits, also when it raises.
"""
import copy
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from glassbox import checks

Patch = Callable[[Tensor], Tensor] | Tensor
Name = str | int
Path = tuple[int | str, ...]

_SUFFIX = re.compile(r"\[([^\[\]]+)\]$")


def _as_name(name: Any) -> str:
    """A module name as a string: ints (children of nn.Sequential / nn.ModuleList) become their digits."""
    if isinstance(name, int) and not isinstance(name, bool):
        return str(name)
    if not isinstance(name, str):
        raise TypeError(f"module names are strings like 'relu1' or 'blocks.0.mlp' (or ints for the children of an "
                        f"nn.Sequential), got {name!r} ({type(name).__name__})")
    return name


def _no_module(model: nn.Module, name: str, modules: dict[str, nn.Module]) -> KeyError:
    names = [n for n in modules if n]
    shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
    return KeyError(f"{type(model).__name__} has no module {name!r}; its modules are: {shown}")


def get_module(model: nn.Module, name: Name) -> nn.Module:
    """The submodule called `name` (a string, or an int for an nn.Sequential's child), with a clear error
    listing the names there are."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    name = _as_name(name)
    modules = dict(model.named_modules())
    if name not in modules:
        base, path = _split(name)
        if path and base in modules:
            raise KeyError(f"{name!r} selects an element of the output of module {base!r}; get_module takes the "
                           f"module name, {base!r} (capture and patch take the selection)")
        raise _no_module(model, name, modules)
    return modules[name]


def _split(name: str) -> tuple[str, Path]:
    """'lstm[1][0]' -> ('lstm', (1, 0)); a name without a bracketed suffix -> (name, ())."""
    path: list[int | str] = []
    while (m := _SUFFIX.search(name)) and m.start() > 0:
        key = m.group(1).strip().strip("'\"")
        path.insert(0, int(key) if re.fullmatch(r"-?\d+", key) else key)
        name = name[:m.start()]
    return name, tuple(path)


def _resolve(model: nn.Module, name: Name) -> tuple[nn.Module, Path]:
    """The module that `name` hooks and the path of the element of its output that it selects."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    name = _as_name(name)
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name], ()
    base, path = _split(name)
    if path and base in modules:
        return modules[base], path
    raise _no_module(model, name, modules)


def _as_list(names: Name | list[Name]) -> list[Name]:
    return [names] if isinstance(names, (str, int)) else list(names)


def _unique(names: list[Name]) -> list[str]:
    """The names as strings, refusing two that name the same thing (1 and '1')."""
    out = [_as_name(n) for n in names]
    seen = set()
    for given, n in zip(names, out):
        if n in seen:
            raise ValueError(f"{given!r} is named twice (an int and its string name the same module); name it once")
        seen.add(n)
    return out


def _describe(value: Any, depth: int = 0) -> str:
    """A short picture of a module's output: (Tensor(2, 5, 4), (Tensor(1, 2, 4), Tensor(1, 2, 4)))."""
    if isinstance(value, Tensor):
        return f"Tensor{tuple(value.shape)}"
    if depth > 2:
        return "..."
    if isinstance(value, Mapping):
        items = [f"{k}: {_describe(v, depth + 1)}" for k, v in value.items()]
        return f"{type(value).__name__}{{{', '.join(items[:8])}{', ...' if len(items) > 8 else ''}}}"
    if isinstance(value, (tuple, list)):
        items = [_describe(v, depth + 1) for v in value[:8]]
        inner = ", ".join(items) + (", ..." if len(value) > 8 else "")
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    return type(value).__name__


def _first_tensor(value: Any) -> Path | None:
    """The path of the first tensor in a (nested) tuple, list or dict, depth first; None if it holds none."""
    if isinstance(value, Tensor):
        return ()
    children = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, (tuple, list)) else ()
    for key, child in children:
        sub = _first_tensor(child)
        if sub is not None:
            return (key, *sub)
    return None


def _show(path: Path) -> str:
    return "".join(f"[{k}]" for k in path)


def _locate(name: str, path: Path, output: Any) -> Path:
    """The full path, with dict entries by key and namedtuple fields by index, of the tensor that `path`
    selects in `output` (the first tensor when `path` is empty)."""
    if not path:
        if isinstance(output, Tensor):
            return ()
        found = _first_tensor(output)
        if found is None:
            raise TypeError(f"module {name!r} returns {_describe(output)}, which holds no tensor; hook a submodule (or "
                            "the module after it) whose output is or holds a tensor")
        return found
    value, where = output, []
    for key in path:
        key = _key(name, _show(tuple(where)), value, key, output)
        value = value[key]
        where.append(key)
    if not isinstance(value, Tensor):
        raise TypeError(f"{name!r} selects a {_describe(value)}, not a tensor, from the output of its module, "
                        f"{_describe(output)}; name one tensor of it")
    return tuple(where)


def _key(name: str, at: str, value: Any, key: int | str, output: Any) -> int | str:
    """`key` as an index into `value` (int for tuples and lists, a key for dicts), or a clear error."""
    shape = f"the output is {_describe(output)}"
    if isinstance(value, Mapping):
        keys = list(value)
        if isinstance(key, int):
            if not -len(keys) <= key < len(keys):
                raise IndexError(f"{name!r}: [{key}] is out of range for the {len(keys)} entries at {at or 'the top'}; {shape}")
            return keys[key]
        if key not in value:
            raise KeyError(f"{name!r}: no entry [{key}] at {at or 'the top'}; its keys are {keys}; {shape}")
        return key
    if isinstance(value, (tuple, list)):
        if isinstance(key, str):
            fields = tuple(getattr(type(value), "_fields", None) or getattr(type(value), "__match_args__", ()))
            if key not in fields:
                raise KeyError(f"{name!r}: [{key}] names no field of the {type(value).__name__} at {at or 'the top'}; "
                               f"index it by position, e.g. [0]; {shape}")
            return fields.index(key)
        if not -len(value) <= key < len(value):
            raise IndexError(f"{name!r}: [{key}] is out of range for the {len(value)} items at {at or 'the top'}; {shape}")
        return key
    what = "a tensor" if isinstance(value, Tensor) else f"a {type(value).__name__}"
    raise TypeError(f"{name!r}: the output at {at or 'the top'} is {what}, which has no element [{key}]; brackets select "
                    f"from a tuple, list or dict output; {shape}")


def _get(output: Any, where: Path) -> Any:
    for key in where:
        output = output[key]
    return output


def _set(output: Any, where: Path, new: Tensor) -> Any:
    """A copy of `output` with the element at `where` replaced by `new`; everything else is the same object."""
    if not where:
        return new
    key, rest = where[0], where[1:]
    child = _set(output[key], rest, new)
    if isinstance(output, Mapping):
        out = copy.copy(output)  # a ModelOutput stays a ModelOutput
        out[key] = child
        return out
    items = list(output)
    items[key] = child
    if isinstance(output, list):
        return items
    return type(output)._make(items) if hasattr(type(output), "_fields") else type(output)(items)


@contextmanager
def capture(model: nn.Module, names: Name | list[Name], *, detach: bool = True,
            batch_dim: int | dict[Name, int] = 0) -> Iterator["Captured"]:
    """Record the output of each named module during the forward passes run inside the block.

    Several forward passes are joined along `batch_dim` (0; one int for every name, or a dict by name):
    an LSTM's h_n ("lstm[1][0]", (layers, batch, hidden)) and the output of a sequence-first module
    have their batch at dim 1. A module returning a tuple or dict gives its first tensor, or the element
    a bracketed suffix names ("lstm[1][0]"; see the module docstring).
    """
    wanted = _unique(_as_list(names))
    parts: dict[str, list[Tensor]] = {n: [] for n in wanted}
    if isinstance(batch_dim, Mapping):
        named = {_name_key(n): d for n, d in batch_dim.items()}
        unknown = [n for n in named if n not in parts]
        if unknown:
            raise ValueError(f"batch_dim names {unknown}, which are not captured; captured: {list(parts)}")
        dims = {n: named.get(n, 0) for n in parts}
    else:
        dims = dict.fromkeys(parts, batch_dim)
    for n, d in dims.items():
        if isinstance(d, bool) or not isinstance(d, int):
            raise TypeError(f"batch_dim for {n!r} must be an int (the dimension that holds the batch), got {d!r}")

    def hook_for(name: str, path: Path):
        def hook(module, inputs, output):
            value = output if not path and isinstance(output, Tensor) else _get(output, _locate(name, path, output))
            parts[name].append(value.detach() if detach else value)
        return hook

    with _hooked(model, {n: hook_for for n in parts}):
        yield Captured(parts, dims)


def _name_key(name: Name) -> str:
    return str(name) if isinstance(name, int) and not isinstance(name, bool) else name


class Captured(Mapping):
    """Read-only view of captured activations; a name's batches are joined along its batch dim when read."""

    def __init__(self, parts: dict[str, list[Tensor]], batch_dims: dict[str, int] | None = None):
        self._parts = parts
        self._dims = batch_dims or {}

    def __getitem__(self, name: Name) -> Tensor:
        key = _name_key(name)
        if key not in self._parts:
            raise KeyError(f"{name!r} was not captured; captured: {list(self._parts)}")
        chunks = self._parts[key]
        if not chunks:
            raise RuntimeError(f"nothing was captured at {name!r}: run a forward pass inside the `with` block")
        if len(chunks) == 1:
            return chunks[0]
        dim = self._dims.get(key, 0)
        shapes = {tuple(c.shape[:dim % c.ndim]) + tuple(c.shape[dim % c.ndim + 1:]) for c in chunks if c.ndim}
        if len(shapes) > 1 or any(c.ndim == 0 for c in chunks) or not -chunks[0].ndim <= dim < chunks[0].ndim:
            raise ValueError(f"the {len(chunks)} forward passes captured at {name!r} cannot be joined along dim {dim}: "
                             f"shapes {[tuple(c.shape) for c in chunks]}; pass capture(..., batch_dim=...) the dim "
                             "that holds the batch (1 for an LSTM's h_n), or read one pass at a time")
        return torch.cat(chunks, dim=dim)

    def __iter__(self):
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)


@contextmanager
def patch(model: nn.Module, patches: dict[Name, Patch]) -> Iterator[None]:
    """Replace the output of each named module: by `fn(output)`, or by a fixed tensor (broadcast). A floating
    result is cast to the output's dtype. For a tuple or dict output, the selected tensor (its first, or the
    one a bracketed suffix names) is replaced and the rest passes through unchanged."""
    for name, fix in patches.items():
        if isinstance(fix, Tensor):
            checks.tensor(fix, f"patches[{name!r}]", floating=False)
        elif not callable(fix):
            raise TypeError(f"patches[{name!r}] must be a function of the output or a tensor, got {type(fix).__name__}")
    fixes = dict(zip(_unique(list(patches)), patches.values()))

    def hook_for(name: str, path: Path):
        fix = fixes[name]

        def hook(module, inputs, output):
            if not path and isinstance(output, Tensor):
                return _replace(name, fix, output)
            where = _locate(name, path, output)
            return _set(output, where, _replace(name, fix, _get(output, where)))
        return hook

    with _hooked(model, {n: hook_for for n in fixes}):
        yield


def _replace(name: str, fix: Patch, output: Tensor) -> Tensor:
    """The patched value of one tensor `output`, checked against it."""
    if callable(fix):
        new = fix(output)
        if not isinstance(new, Tensor):
            raise TypeError(f"the patch at {name!r} returned a {type(new).__name__}, not a tensor; it must "
                            f"return the new output, a tensor of shape {tuple(output.shape)}")
    elif _expands(fix.shape, output.shape):
        new = fix.to(output.dtype).expand_as(output)
    else:
        raise ValueError(f"patches[{name!r}] has shape {tuple(fix.shape)}, which does not broadcast to the "
                         f"output of {name!r}, {tuple(output.shape)}; pass one value per unit, e.g. shape "
                         f"{tuple(output.shape[1:])}")
    if new.shape != output.shape:
        raise ValueError(f"patch at {name!r} returned shape {tuple(new.shape)}, expected {tuple(output.shape)}")
    if new.dtype != output.dtype and not new.is_floating_point():
        raise TypeError(f"the patch at {name!r} returned {new.dtype} values for a {output.dtype} output; "
                        "return floats")
    return new.to(output.dtype)


def _expands(shape: torch.Size, target: torch.Size) -> bool:
    return len(shape) <= len(target) and all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


@contextmanager
def _hooked(model: nn.Module, hooks: dict[str, Callable[[str, Path], Callable]]) -> Iterator[None]:
    """Forward hooks on the named modules for the duration of the block; `hooks[name](name, path)` makes the
    hook for `name`, whose output element `path` selects. Every name is resolved before any hook is
    attached, and every attached hook is removed on exit, whatever raised where."""
    resolved = {name: _resolve(model, name) for name in hooks}  # a bad name raises here, nothing attached
    handles = []
    try:
        for name, make in hooks.items():
            module, path = resolved[name]
            handles.append(module.register_forward_hook(make(name, path)))
        yield
    finally:
        for h in handles:
            h.remove()
