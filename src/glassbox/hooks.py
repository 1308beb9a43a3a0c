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

Patch = Callable[[Tensor], Tensor] | Tensor


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name`, with a clear error listing the names there are."""
    modules = dict(model.named_modules())
    if name not in modules:
        names = [n for n in modules if n]
        shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
        raise KeyError(f"{type(model).__name__} has no module {name!r}; its modules are: {shown}")
    return modules[name]


def _as_list(names: str | list[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


@contextmanager
def capture(model: nn.Module, names: str | list[str], *, detach: bool = True) -> Iterator["Captured"]:
    """Record the output of each named module during the forward passes run inside the block.

    Several forward passes append along the batch dimension (dim 0).
    """
    parts: dict[str, list[Tensor]] = {n: [] for n in _as_list(names)}

    def hook_for(name: str):
        def hook(module, inputs, output):
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
    """Replace the output of each named module: by `fn(output)`, or by a fixed tensor (broadcast)."""

    def hook_for(name: str, fix: Patch):
        def hook(module, inputs, output):
            new = fix(output) if callable(fix) else fix.to(output.dtype).expand_as(output)
            if new.shape != output.shape:
                raise ValueError(f"patch at {name!r} returned shape {tuple(new.shape)}, expected {tuple(output.shape)}")
            return new
        return hook

    with _hooked(model, {n: hook_for(n, fix) for n, fix in patches.items()}):
        yield


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
