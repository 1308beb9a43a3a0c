"""Capture and patch the activations of any `nn.Module`, by module name.

    with hooks.capture(model, ["relu1", "relu2"]) as acts:
        model(x)
    acts["relu1"]                          # (batch, 128)

    with hooks.patch(model, {"relu1": lambda a: a * mask}):
        logits = model(x)

Hooks are always removed when the block exits, also when it raises.
"""
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from glassbox import checks

Patch = Callable[[Tensor], Tensor] | Tensor


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name`, with a clear error listing the names there are."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"module names are strings like 'relu1' or 'blocks.0.mlp', got {name!r} ({type(name).__name__})")
    modules = dict(model.named_modules())
    if name not in modules:
        names = [n for n in modules if n]
        shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
        raise KeyError(f"{type(model).__name__} has no module {name!r}; its modules are: {shown}")
    return modules[name]


def _as_list(names: str | list[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def _tensor_output(name: str, output) -> Tensor:
    if not isinstance(output, Tensor):
        raise TypeError(f"module {name!r} returns a {type(output).__name__}, not a tensor; hook a submodule (or the "
                        "module after it) whose output is one tensor")
    return output


@contextmanager
def capture(model: nn.Module, names: str | list[str], *, detach: bool = True) -> Iterator["Captured"]:
    """Record the output of each named module during the forward passes run inside the block.

    Several forward passes append along the batch dimension (dim 0).
    """
    parts: dict[str, list[Tensor]] = {n: [] for n in _as_list(names)}

    def hook_for(name: str):
        def hook(module, inputs, output):
            output = _tensor_output(name, output)
            parts[name].append(output.detach() if detach else output)
        return hook

    with _hooked(model, {n: hook_for(n) for n in parts}):
        yield Captured(parts)


class Captured(Mapping):
    """Read-only view of captured activations; a name's batches are concatenated when read."""

    def __init__(self, parts: dict[str, list[Tensor]]):
        self._parts = parts

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._parts:
            raise KeyError(f"{name!r} was not captured; captured: {list(self._parts)}")
        chunks = self._parts[name]
        if not chunks:
            raise RuntimeError(f"nothing was captured at {name!r}: run a forward pass inside the `with` block")
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def __iter__(self):
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)


@contextmanager
def patch(model: nn.Module, patches: dict[str, Patch]) -> Iterator[None]:
    """Replace the output of each named module: by `fn(output)`, or by a fixed tensor (broadcast). A floating
    result is cast to the output's dtype."""
    for name, fix in patches.items():
        if isinstance(fix, Tensor):
            checks.tensor(fix, f"patches[{name!r}]", floating=False)
        elif not callable(fix):
            raise TypeError(f"patches[{name!r}] must be a function of the output or a tensor, got {type(fix).__name__}")

    def hook_for(name: str, fix: Patch):
        def hook(module, inputs, output):
            output = _tensor_output(name, output)
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
        return hook

    with _hooked(model, {n: hook_for(n, fix) for n, fix in patches.items()}):
        yield


def _expands(shape: torch.Size, target: torch.Size) -> bool:
    return len(shape) <= len(target) and all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


@contextmanager
def _hooked(model: nn.Module, hooks: dict[str, Callable]) -> Iterator[None]:
    """Forward hooks on the named modules for the duration of the block. Every name is resolved before
    any hook is attached, and every attached hook is removed on exit, whatever raised where."""
    modules = {name: get_module(model, name) for name in hooks}  # a bad name raises here, nothing attached
    handles = []
    try:
        for name, hook in hooks.items():
            handles.append(modules[name].register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()
