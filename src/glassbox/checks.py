"""Checks at the boundary of glassbox's public functions: each error names the argument, what was
expected, what came, and what to do. Tensors are checked for rank, emptiness, finite values and a
floating dtype (`tensor`); indices or bool masks (`indices`), class labels (`labels`) and ints (`index`,
`count`) are never truncated from floats. Models are checked for being a TransformerLens model
(HookedTransformer or TransformerBridge) with what a tool needs (`transformer_lens_model`), and
`placement` says where a model lives (its device and dtype).
"""
import operator
from typing import Any

import torch


def tensor(value: Any, name: str, *, ndim: int | tuple[int, ...] | None = None, floating: bool = True,
           finite: bool = True, nonempty: bool = True) -> torch.Tensor:
    """`value` if it is a tensor of the expected rank, non-empty, floating and finite; else a clear error."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape "
                             f"{tuple(value.shape)}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)}); pass at least one example")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}; convert it with .float()")
    # A NaN or inf anywhere makes the sum non-finite, so a finite sum clears the tensor without allocating a mask
    # the size of the input; only a non-finite sum (a bad value, or an overflow of large ones) is checked element-wise.
    if finite and value.is_floating_point() and not torch.isfinite(value.sum()) and not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).sum().item()
        raise ValueError(f"{name} holds {bad} NaN or infinite value(s); find where they came from before measuring")
    return value


def transformer_lens_model(model: Any, name: str = "model", *, needs: tuple[str, ...] = ()) -> Any:
    """`model` if it is a TransformerLens model (it has a `cfg` with n_layers and n_heads, and
    `run_with_cache`) that has every attribute path in `needs` (e.g. "ln_final"); else a clear error."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "n_layers") or not hasattr(model, "run_with_cache"):
        raise TypeError(f"{name} must be a TransformerLens model (HookedTransformer or TransformerBridge), got "
                        f"{type(model).__name__}; wrap a Hugging Face model with "
                        "transformer_lens.model_bridge.TransformerBridge, or use glassbox.hooks on any nn.Module")
    missing = [path for path in needs if not _has_path(model, path)]
    if missing:
        raise ValueError(f"{name} ({type(model).__name__}) lacks {', '.join(missing)}, which this tool needs")
    return model


def _has_path(obj: Any, path: str) -> bool:
    for part in path.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def indices(value: Any, name: str, size: int | None = None) -> torch.Tensor:
    """`value` (integer indices, or a bool mask over `size` units) as a 1-D long tensor of indices; else a clear error.

    A bool mask gives the positions of its True entries; float indices are refused, never truncated.
    Range checks are left to the caller, which knows what the indices point into."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.ndim == 0):
        raise TypeError(f"{name} must be indices or a bool mask over the units, got the single bool {value!r}")
    if isinstance(value, int):
        value = [value]
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a list or tensor of integer indices (or a bool mask), got "
                        f"{type(value).__name__} ({err})") from None
    if t.dtype == torch.bool:
        if t.ndim != 1 or (size is not None and len(t) != size):
            raise ValueError(f"{name} is a bool mask of shape {tuple(t.shape)}; a mask needs one entry per unit "
                             f"({size if size is not None else 'the layer width'}), or pass integer indices")
        return t.nonzero().flatten()
    if t.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if t.is_floating_point() or t.is_complex():
        shown = t.flatten()[:5].tolist() if isinstance(value, torch.Tensor) else value[:5] if isinstance(value, (list, tuple)) else value
        raise TypeError(f"{name} must be integer indices (or a bool mask), got {shown} ({t.dtype}); "
                        "float indices are not truncated: pass ints, e.g. .round().long()")
    return t.to(torch.long).reshape(-1)


def labels(value: Any, name: str, n_classes: int | None = None, *, indices: bool = True) -> torch.Tensor:
    """`value` if it is a non-empty 1-D integer tensor of class indices in 0..n_classes-1 (any ints when
    `indices` is False, e.g. for scikit-learn); else a clear error."""
    t = tensor(value, name, floating=False)
    if t.ndim != 1:
        hint = f" (one-hot? pass {name}.argmax(1))" if t.ndim == 2 else ""
        raise ValueError(f"{name} must be one class index per example (1-D), got shape {tuple(t.shape)}{hint}")
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold integer class indices, got {t.dtype}; convert with .long()")
    if not indices:
        return t
    top = n_classes - 1 if n_classes is not None else None
    bad = t[(t < 0) | (t > top)] if top is not None else t[t < 0]
    if len(bad):
        raise ValueError(f"{name} must be class indices in 0..{top if top is not None else 'n_classes-1'}, "
                         f"got {sorted(set(bad.tolist()))[:5]}; drop unlabelled examples (e.g. label -1) first")
    return t


def _int(value: Any, name: str, expected: str, hint: str = "") -> int:
    """`value` as a Python int (ints, numpy and 0-d torch integers; not bools or floats); else a TypeError."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {expected}, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__}){hint}") from None


def index(value: Any, name: str, size: int, *, of: str = "", negative: bool = False) -> int:
    """`value` as an int in 0..size-1 (-size..size-1 if `negative`), e.g. a layer or a head; else a clear error.
    `of` says what is counted, e.g. " (the model has 2 layers)"."""
    i = _int(value, name, "an int", "; floats are not truncated")
    low = -size if negative else 0
    if not low <= i < size:
        hint = "; negative indices do not wrap round here, count from 0" if i < 0 and not negative else ""
        raise ValueError(f"{name} must be in {low}..{size - 1}{of}, got {i}{hint}")
    return i


def count(value: Any, name: str, least: int = 1) -> int:
    """`value` as an int >= `least` (a size, a length, a number of samples); else a clear error."""
    n = _int(value, name, f"an int >= {least}")
    if n < least:
        raise ValueError(f"{name} must be an int >= {least}, got {n}")
    return n


def tokens(value: Any, name: str, *, ndim: int = 2, d_vocab: int | None = None, n_ctx: int | None = None) -> torch.Tensor:
    """`value` if it is a non-empty integer tensor of token ids with `ndim` dimensions, ids in 0..d_vocab-1 and at
    most `n_ctx` positions (the last dimension); else a clear error."""
    shape = "[batch pos]" if ndim == 2 else "[pos]" if ndim == 1 else f"{ndim} dimensions"
    if isinstance(value, torch.Tensor) and value.ndim != ndim:
        raise ValueError(f"{name} must be token ids {shape}, got shape {tuple(value.shape)}"
                         + (f"; for one sequence pass {name}[None]" if value.ndim == ndim - 1 else ""))
    t = tensor(value, name, ndim=ndim, floating=False)
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold integer token ids, got {t.dtype}; convert with .long()")
    if d_vocab is not None and (t.min() < 0 or t.max() >= d_vocab):
        raise ValueError(f"{name} must be token ids in 0..{d_vocab - 1}, got values from {t.min().item()} to "
                         f"{t.max().item()}")
    if n_ctx is not None and t.shape[-1] > n_ctx:
        raise ValueError(f"{name} has {t.shape[-1]} positions, more than the model's context n_ctx={n_ctx}; "
                         f"cut it to {name}[..., :{n_ctx}]")
    return t


def placement(model: Any) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of `model`'s first floating parameter (or buffer); CPU and float32 for a module
    with neither. Tools create their tensors there, so they run where the model is."""
    tensors = list(model.parameters()) + list(model.buffers()) if isinstance(model, torch.nn.Module) else []
    first = next((t for t in tensors if t.is_floating_point()), tensors[0] if tensors else None)
    if first is None:
        return torch.device("cpu"), torch.float32
    return first.device, first.dtype if first.is_floating_point() else torch.float32
