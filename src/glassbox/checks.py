"""Checks at the boundary of glassbox's public functions: each error names the argument, what was
expected, what came, and what to do. Two families:
- activations and other tensors: rank, non-empty, finite, floating dtype (`tensor`);
- models: a TransformerLens model (HookedTransformer or TransformerBridge) and what it lacks
  (`transformer_lens_model`).
"""
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
    if finite and value.is_floating_point() and not torch.isfinite(value).all():
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
