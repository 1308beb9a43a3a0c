"""The models of the journal, each built from a config dict so a checkpoint card can rebuild it.

`build(kind, config)` is what `checkpoints.load_model` calls; add a new kind to `BUILDERS`.
"""
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
from jaxtyping import Float
from torch import Tensor, nn


@dataclass
class MLPConfig:
    sizes: tuple[int, ...] = (784, 128, 64, 10)  # input pixels, hidden widths..., classes
    pixel_mean: float = 0.1307  # MNIST training-set pixel mean (pixels in [0, 1])
    pixel_std: float = 0.3081  # MNIST training-set pixel std


class Normalize(nn.Module):
    """Flatten images to (batch, pixels) and standardise them, in the model's dtype; the model's first step.

    The dtype follows `model.to(dtype)` / `.double()` / `.bfloat16()` through a buffer that holds no
    weights and is not saved (float32 by default, so checkpoints and float32 results are unchanged)."""

    def __init__(self, n_pixels: int, mean: float, std: float):
        super().__init__()
        self.n_pixels, self.mean, self.std = n_pixels, mean, std
        self.register_buffer("dtype_probe", torch.zeros(()), persistent=False)

    def forward(self, x: Float[Tensor, "batch *pixels"]) -> Float[Tensor, "batch n_pixels"]:
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(f"expected a batch of images (batch, 28, 28) or (batch, 784); got an empty one "
                             f"of shape {tuple(x.shape)}: check the size of the data passed in")
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.n_pixels:
            raise ValueError(f"expected images of {self.n_pixels} pixels, e.g. (batch, 28, 28) or "
                             f"(batch, 784) in [0, 1]; got a tensor of shape {tuple(x.shape)}")
        return (x.to(self.dtype_probe.dtype) - self.mean) / self.std


class MLP(nn.Sequential):
    """ReLU MLP on raw [0, 1] pixels. Modules: normalize, fc1, relu1, fc2, relu2, ..., out.

    Hidden activations are reached by module name, e.g. `hooks.capture(model, "relu1")`.
    """

    def __init__(self, cfg: MLPConfig):
        layers: list[tuple[str, nn.Module]] = [("normalize", Normalize(cfg.sizes[0], cfg.pixel_mean, cfg.pixel_std))]
        for i, (d_in, d_out) in enumerate(zip(cfg.sizes[:-2], cfg.sizes[1:-1]), start=1):
            layers += [(f"fc{i}", nn.Linear(d_in, d_out)), (f"relu{i}", nn.ReLU())]
        layers.append(("out", nn.Linear(cfg.sizes[-2], cfg.sizes[-1])))
        super().__init__(OrderedDict(layers))
        self.cfg = cfg

    @property
    def hidden_names(self) -> list[str]:
        """Names of the hidden activation modules, first layer first."""
        return [name for name, m in self.named_children() if isinstance(m, nn.ReLU)]


def _config(cls: type, config: dict):
    """Build dataclass `cls` from a dict, with a clear error for keys it does not know."""
    known = {f.name for f in fields(cls)}
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}; known fields: {sorted(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return cls(**values)


def build_mlp(config: dict) -> MLP:
    """An MLP from a config dict (see MLPConfig)."""
    return MLP(_config(MLPConfig, config))


@dataclass
class AttnOnlyConfig:
    n_layers: int = 1  # transformer blocks
    n_heads: int = 1  # attention heads per block
    d_model: int = 32  # residual stream width
    d_head: int = 32  # query / key / value width of each head
    d_vocab: int = 50  # input tokens 0..d_vocab-1 (the list values), also the output classes
    n_ctx: int = 7  # positions (the list length)
    normalization_type: str | None = "LN"  # LayerNorm before attention and before the unembedding
    seed: int = 0  # seeds the weight initialisation


def build_attn_only_transformer(config: dict) -> nn.Module:
    """An attention-only TransformerBridge (transformer_lens `boot_native`) taking int tokens (batch, pos)
    and returning logits (batch, pos, d_vocab). Positional embeddings live at `model.pos_embed.W_pos`."""
    from transformer_lens.model_bridge import TransformerBridge

    cfg = _config(AttnOnlyConfig, config)
    return TransformerBridge.boot_native(asdict(cfg) | {"attn_only": True, "act_fn": "relu"})


@dataclass
class TransformerConfig:
    n_layers: int = 2  # transformer blocks
    n_heads: int = 4  # attention heads per block
    d_model: int = 128  # residual stream width
    d_head: int = 32  # query / key / value width of each head
    d_mlp: int = 512  # MLP hidden width (ignored when attn_only)
    d_vocab: int = 65  # tokens (Tiny Shakespeare has 65 distinct characters)
    n_ctx: int = 128  # positions
    attn_only: bool = False  # True: no MLPs
    act_fn: str = "gelu"  # the MLP's non-linearity ("relu", "gelu", "solu_ln", ...)
    normalization_type: str | None = "LN"  # LayerNorm before attention, MLP and unembedding
    seed: int = 0  # seeds the weight initialisation


def build_transformer(config: dict) -> nn.Module:
    """A TransformerBridge (transformer_lens `boot_native`) from a TransformerConfig dict: int tokens
    (batch, pos) in, logits (batch, pos, d_vocab) out; the language models of notebooks 07-09."""
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_native(asdict(_config(TransformerConfig, config)))


class LastPosition(nn.Module):
    """Wrap a sequence model so that it returns only the last position's logits: (batch, d_vocab)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor) -> Tensor:
        return self.model(tokens)[:, -1]


BUILDERS: dict[str, Callable[[dict], nn.Module]] = {
    "mlp": build_mlp,
    "attn_only_transformer": build_attn_only_transformer,
    "transformer": build_transformer,
}


def build(kind: str, config: dict) -> nn.Module:
    """Build a model of a registered `kind` from its config dict."""
    if kind not in BUILDERS:
        raise KeyError(f"unknown model kind {kind!r}; registered kinds: {sorted(BUILDERS)}")
    return BUILDERS[kind](config)


def config_dict(cfg) -> dict:
    """A dataclass config as a JSON-ready dict."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
