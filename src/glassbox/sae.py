"""Sparse autoencoders on the activations of any PyTorch model: the glue around SAELens.

SAELens holds the SAE architectures and the trainer (`SAETrainer`, driven here by an iterator of
activation batches: no language model, no ActivationsStore, no wandb). glassbox adds what the
notebooks share: collecting activations, the metrics the field reports, and splicing an SAE into a
forward pass.

    acts = sae.collect_activations(model, "relu1", x_train)                 # (n, d_in)
    trained, seconds = sae.train_sae(sae.make_sae("topk", 128, 512, k=16), acts, n_samples=500_000)
    sae.evaluate_sae(trained, acts_test)                                     # l0, fvu, dead_fraction
    with sae.splice(model, "relu1", trained):                                # reconstruction replaces relu1
        logits = model(x_test)

Shapes: `n` inputs, `d_in` activation width, `d_sae` latents. An SAE's latents are its encoder's
outputs; its decoder rows `W_dec` (d_sae, d_in) are the feature directions.
"""
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from sae_lens import SAE, LoggingConfig, SAETrainer, TrainingSAE
from sae_lens.config import SAETrainerConfig
from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY
from sae_lens.saes.sae import SAEMetadata
from torch import Tensor, nn

from glassbox import ablation, checks, hooks, neurons, training

Edit = Callable[[Float[Tensor, "batch d_sae"]], Float[Tensor, "batch d_sae"]]


def collect_activations(model: nn.Module, name: str, inputs: Tensor, *, position: int | None = None,
                        batch_size: int = 4096) -> Float[Tensor, "n d_in"]:
    """The output of module `name` on every input, one row per input (at `position` for sequences)."""
    checks.tensor(inputs, "inputs", floating=False)
    out = neurons.get_activations(model, name, inputs, batch_size)
    if position is not None:
        if out.ndim != 3:
            raise ValueError(f"position={position} needs a (batch, pos, d) activation at {name!r}, got shape {tuple(out.shape)}")
        out = out[:, position]
    if out.ndim != 2:
        raise ValueError(f"{name!r} gives activations of shape {tuple(out.shape)}; an SAE needs (n, d_in): "
                         "pass position= for a (batch, pos, d) activation, or pick a flat layer")
    return out.float()


def activation_batches(acts: Float[Tensor, "n d_in"], batch_size: int, seed: int = 0) -> Iterator[Float[Tensor, "batch d_in"]]:
    """Endless shuffled batches of rows of `acts`, all of size `batch_size`, a new order every epoch."""
    checks.tensor(acts, "acts", ndim=2)
    if not 0 < batch_size <= len(acts):
        raise ValueError(f"batch_size must be in 1..{len(acts)} (the number of activations), got {batch_size}")
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same order on every device
    while True:
        for idx in torch.randperm(len(acts), generator=gen)[: len(acts) // batch_size * batch_size].split(batch_size):
            yield acts[idx.to(acts.device)]


def sampled_batches(sample: Callable[[int], Tensor], batch_size: int) -> Iterator[Float[Tensor, "batch d_in"]]:
    """Endless batches drawn fresh by `sample(batch_size)` (e.g. from a toy model with known features)."""
    while True:
        yield sample(batch_size)


def make_sae(architecture: str, d_in: int, d_sae: int, *, model_name: str | None = None,
             hook_name: str | None = None, device: str | torch.device = "cpu", seed: int | None = None,
             **options) -> TrainingSAE:
    """A fresh SAELens training SAE on `device` ("topk": k, "standard": l1_coefficient, ...); init from `seed`, else the global stream."""
    if architecture not in SAE_TRAINING_CLASS_REGISTRY:
        raise KeyError(f"unknown SAE architecture {architecture!r}; SAELens has: {sorted(SAE_TRAINING_CLASS_REGISTRY)}")
    checks.count(d_in, "d_in")
    checks.count(d_sae, "d_sae")
    k = options.get("k")
    if k is not None and checks.count(k, "k") > d_sae:
        raise ValueError(f"k (latents kept per input) must be an int in 1..d_sae={d_sae}, got {k!r}; lower k or raise d_sae")
    sae_cls, cfg_cls = SAE_TRAINING_CLASS_REGISTRY[architecture]
    try:
        cfg = cfg_cls(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(model_name=model_name, hook_name=hook_name),
                      device=str(torch.device(device)), **options)
    except TypeError as err:
        raise TypeError(f"{cfg_cls.__name__} rejected the options {sorted(options)}: {err}; "
                        f"see the fields of sae_lens.{cfg_cls.__name__}") from None
    if seed is None:
        return sae_cls(cfg)
    checks.count(seed, "seed", least=0)
    where = torch.device(device)
    with torch.random.fork_rng(devices=[where] if where.type == "cuda" else [], device_type=where.type):
        torch.manual_seed(seed)
        return sae_cls(cfg)


def _checked(batches: Iterator[Tensor], batch_size: int, d_in: int, device: torch.device) -> Iterator[Tensor]:
    """Batches moved to `device`, refusing any whose shape is not (batch_size, d_in) or that holds NaN or inf."""
    for i, batch in enumerate(batches):
        if batch.shape != (batch_size, d_in):
            raise ValueError(f"activation batches must be (batch_size={batch_size}, d_in={d_in}), got {tuple(batch.shape)}")
        yield checks.tensor(batch, f"activation batch {i}").to(device)


class _Trainer(SAETrainer):
    """SAETrainer whose progress bar ends at 100% (SAELens advances it only every 100 steps)."""

    def _update_pbar(self, step_output, pbar, update_interval: int = 100):
        super()._update_pbar(step_output, pbar, update_interval)
        if self.n_training_samples >= self.cfg.total_training_samples and pbar.n < pbar.total:
            pbar.update(pbar.total - pbar.n)


def to_inference(sae: TrainingSAE, device: str | torch.device | None = None) -> SAE:
    """The inference SAE of a trained training SAE, exactly as `checkpoints.load_sae` will return it, on
    `device` (default: where `sae` is)."""
    device = torch.device(device) if device is not None else sae.W_enc.device
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        return SAE.load_from_disk(tmp, device=str(device)).eval()


def train_sae(sae: TrainingSAE, data: Float[Tensor, "n d_in"] | Iterator[Tensor], *, n_samples: int,
              batch_size: int = 512, lr: float = 1e-3, seed: int = 0, dead_after_steps: int = 25,
              device: str | torch.device | None = None) -> tuple[SAE, float]:
    """Train `sae` with SAELens' SAETrainer on activations (a tensor or an iterator of batches).

    The learning rate is constant, then decays linearly to 0 over the last 20% of steps. A latent
    that has not fired for `dead_after_steps` steps counts as dead (TopK's auxiliary loss revives it).
    `device` (default: the SAE's, "cpu" unless `make_sae` was given one) is where it trains; batches move there.
    Returns the inference SAE (on that device) and the training seconds.
    """
    device = torch.device(device if device is not None else sae.cfg.device)
    if n_samples < batch_size:
        raise ValueError(f"n_samples ({n_samples}) must be at least one batch ({batch_size})")
    if isinstance(data, Tensor):
        checks.tensor(data, "data", ndim=2)
        if data.shape[1] != sae.cfg.d_in:
            raise ValueError(f"data must be activations (n, d_in={sae.cfg.d_in}) for this SAE, got shape {tuple(data.shape)}")
    batches = activation_batches(data, batch_size, seed) if isinstance(data, Tensor) else iter(data)
    steps = n_samples // batch_size
    cfg = SAETrainerConfig(
        total_training_samples=steps * batch_size, train_batch_size_samples=batch_size, lr=lr, lr_end=lr,
        lr_decay_steps=steps // 5, dead_feature_window=dead_after_steps, feature_sampling_window=steps + 1,
        logger=LoggingConfig(log_to_wandb=False), device=str(device))
    start = time.perf_counter()
    trained = _Trainer(cfg=cfg, sae=sae, data_provider=_checked(batches, batch_size, sae.cfg.d_in, device)).fit()
    return to_inference(trained, device), time.perf_counter() - start


@torch.no_grad()
def encode(sae: SAE, acts: Float[Tensor, "n d_in"], batch_size: int = 8192) -> Float[Tensor, "n d_sae"]:
    """The SAE's latent activations for every row of `acts`, computed in batches."""
    if isinstance(acts, Tensor) and (acts.ndim != 2 or acts.shape[1] != sae.cfg.d_in):
        raise ValueError(f"acts: expected activations (n, d_in={sae.cfg.d_in}), got shape {tuple(acts.shape)}")
    checks.tensor(acts, "acts")
    return torch.cat([sae.encode(chunk.to(sae.W_enc.device)) for chunk in acts.split(batch_size)])


def l0(latents: Float[Tensor, "n d_sae"]) -> float:
    """Mean number of latents that are non-zero on an input."""
    checks.tensor(latents, "latents", ndim=2, floating=False)
    return (latents != 0).float().sum(-1).mean().item()


def fvu(x: Float[Tensor, "n d_in"], x_hat: Float[Tensor, "n d_in"]) -> float:
    """Fraction of variance unexplained: sum |x - x_hat|^2 / sum |x - mean(x)|^2 over all rows."""
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    checks.tensor(x, "x", ndim=2)
    checks.tensor(x_hat, "x_hat", ndim=2)
    total = (x - x.mean(0)).pow(2).sum()
    if total == 0:
        raise ValueError(f"x has no variance (all {len(x)} rows are the same), so the fraction unexplained is undefined; "
                         "measure on varied activations, or report the squared error itself")
    return ((x - x_hat).pow(2).sum() / total).item()


def dead_fraction(latents: Float[Tensor, "n d_sae"]) -> float:
    """Fraction of latents that are zero on every input."""
    checks.tensor(latents, "latents", ndim=2, floating=False)
    return (latents != 0).any(0).logical_not().float().mean().item()


def mean_max_cosine_similarity(true: Float[Tensor, "n_true d"], learned: Float[Tensor, "n_learned d"]) -> float:
    """For each true direction, its best cosine similarity with a learned one; averaged (1 = all found)."""
    if true.ndim != 2 or learned.ndim != 2 or true.shape[1] != learned.shape[1]:
        raise ValueError(f"true and learned: expected (n_true, d) and (n_learned, d) directions, got {tuple(true.shape)} and {tuple(learned.shape)}")
    checks.tensor(true, "true")
    checks.tensor(learned, "learned")
    cos = F.normalize(true, dim=1) @ F.normalize(learned, dim=1).T
    return cos.max(1).values.mean().item()


@torch.no_grad()
def evaluate_sae(sae: SAE, acts: Float[Tensor, "n d_in"], batch_size: int = 8192) -> dict[str, float]:
    """L0, fraction of variance unexplained and dead fraction of `sae` on `acts`."""
    latents = encode(sae, acts, batch_size)
    x_hat = torch.cat([sae.decode(chunk) for chunk in latents.split(batch_size)])
    return {"l0": l0(latents), "fvu": fvu(acts.to(x_hat.device), x_hat), "dead_fraction": dead_fraction(latents)}


def ablate_latents(latents: Int[Tensor, "k"] | list[int]) -> Edit:
    """An edit for `splice` that switches the given latents off (sets them to 0); a bool mask switches off its True entries."""
    checks.indices(latents, "latents")

    def edit(f: Tensor) -> Tensor:
        idx = checks.indices(latents, "latents", f.shape[-1])
        _check_latents(idx, f.shape[-1])
        return f.index_fill(-1, idx.to(f.device), 0.0)
    return edit


def _check_latents(idx: Tensor, d_sae: int) -> None:
    bad = idx[(idx < 0) | (idx >= d_sae)]
    if len(bad):
        raise ValueError(f"latent indices must be in 0..{d_sae - 1}, got {bad.tolist()[:5]}")


def clamp_latent(latent: int, value: float) -> Edit:
    """An edit for `splice` that holds one latent at `value` on every input."""
    idx = checks.indices(latent, "latent")
    if len(idx) != 1 or isinstance(latent, (list, tuple)) or (isinstance(latent, Tensor) and latent.ndim):
        raise TypeError(f"latent must be one int index, got {latent!r}; clamp several latents with one edit each")
    try:
        finite = math.isfinite(float(value))
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"value must be one number to hold latent {latent} at, got {value!r}") from None
    if not finite:
        raise ValueError(f"value must be a finite number to hold latent {latent} at, got {value!r}")

    def edit(f: Tensor) -> Tensor:
        _check_latents(idx, f.shape[-1])
        return f.index_fill(-1, idx.to(f.device), value)
    return edit


def _reconstruct(sae: SAE, x: Tensor, edit: Edit | None, keep_error: bool) -> Tensor:
    """The SAE's reconstruction of `x`, computed where the SAE is, returned on `x`'s device and in its dtype."""
    home = x
    x = x.to(sae.W_enc.device)
    latents = sae.encode(x)
    x_hat = sae.decode(edit(latents) if edit else latents)
    out = x_hat + (x - sae.decode(latents)) if keep_error else x_hat
    return out.to(home.device, home.dtype)


@contextmanager
def splice(model: nn.Module, name: str, sae: SAE, *, position: int | None = None, edit: Edit | None = None,
           keep_error: bool = False, check_hook: bool = True) -> Iterator[None]:
    """Inside the block, module `name`'s output is replaced by the SAE's reconstruction of it.

    `position` picks one position of a (batch, pos, d) output (others pass through). `edit` changes
    the latents before decoding (e.g. `ablate_latents([3])`). `keep_error=True` adds back the SAE's
    reconstruction error, so only the edit changes the forward pass. An SAE whose metadata names the
    hook it was trained on is refused at any other `name` unless `check_hook=False`.
    """
    trained_on = getattr(getattr(sae.cfg, "metadata", None), "hook_name", None)
    if check_hook and trained_on is not None and trained_on != name:
        model_name = getattr(sae.cfg.metadata, "model_name", None)
        raise ValueError(f"sae was trained on {trained_on!r}{f' of {model_name!r}' if model_name else ''}, not on {name!r}: "
                         "its latents mean nothing there even when the widths match; pass check_hook=False to splice it anyway")

    def replace(out: Tensor) -> Tensor:
        width = out.shape[-1]
        if width != sae.cfg.d_in:
            raise ValueError(f"sae reads activations of width d_in={sae.cfg.d_in}, but {name!r} outputs shape {tuple(out.shape)}; "
                             "splice it into the layer it was trained on")
        if position is None:
            return _reconstruct(sae, out, edit, keep_error)
        new = out.clone()
        new[:, position] = _reconstruct(sae, out[:, position], edit, keep_error)
        return new

    with hooks.patch(model, {name: replace}):
        yield


def top_k_purity(acts: Float[Tensor, "n units"], labels: Int[Tensor, "n"], k: int = 50) -> Float[Tensor, "units"]:
    """For each unit, the share of its k top-activating inputs that carry their most common label.

    NaN for a unit that is positive on fewer than k inputs (too rare to judge).
    """
    checks.tensor(acts, "acts", ndim=2, floating=False)
    checks.labels(labels, "labels", indices=False)
    if len(acts) != len(labels) or len(acts) < k:
        raise ValueError(f"need one label per input and at least k={k} inputs; got {len(acts)} inputs, {len(labels)} labels")
    values, idx = acts.topk(k, dim=0)  # (k, units)
    top = labels[idx]
    purity = top.mode(dim=0).values.eq(top).float().mean(0)
    return purity.masked_fill(values[-1] <= 0, float("nan"))


@torch.no_grad()
def logit_effect(model: nn.Module, name: str, direction: Float[Tensor, "d"], inputs: Tensor, *,
                 position: int | None = None, out_position: int | None = None) -> Float[Tensor, "n_out"]:
    """Mean change of the model's outputs when `direction` is added to module `name`'s output.

    `position` adds it at one sequence position only; `out_position` reads the outputs there.
    """
    checks.tensor(direction, "direction", ndim=1, floating=False)
    def add(out: Tensor) -> Tensor:
        d = direction.to(out.device, out.dtype)
        if position is None:
            return out + d
        new = out.clone()
        new[:, position] += d
        return new

    inputs = inputs.to(training.model_device(model, inputs))
    clean = model(inputs)
    with hooks.patch(model, {name: add}):
        steered = model(inputs)
    diff = steered - clean
    return (diff if out_position is None else diff[:, out_position]).mean(0)


@torch.no_grad()
def decoder_logit_effects(model: nn.Module, name: str, sae: SAE, inputs: Tensor, scales: Float[Tensor, "d_sae"], *,
                          position: int | None = None, out_position: int | None = None) -> Float[Tensor, "d_sae n_out"]:
    """`logit_effect` of every latent's decoder direction, each scaled by `scales` (e.g. its top activation)."""
    W_dec = sae.W_dec.detach()
    checks.tensor(scales, "scales", ndim=1, floating=False)
    if len(scales) != len(W_dec):
        raise ValueError(f"scales must hold one scale per latent (d_sae = {len(W_dec)}), got {len(scales)}")
    scales = scales.to(W_dec.device)
    return torch.stack([logit_effect(model, name, W_dec[j] * scales[j], inputs, position=position, out_position=out_position)
                        for j in range(len(W_dec))])



def class_contributions(latents: Float[Tensor, "n d_sae"], labels: Int[Tensor, "n"], effects: Float[Tensor, "d_sae n_out"],
                        scales: Float[Tensor, "d_sae"]) -> Float[Tensor, "d_sae n_out"]:
    """How much each latent pushes each output's logit on the inputs of that output's class:
    its mean activation on the class times its logit effect per unit of activation (`effects / scales`).

    A first-order estimate of what switching the latent off costs that class.
    """
    for name, value in (("latents", latents), ("effects", effects), ("scales", scales)):
        checks.tensor(value, name, ndim=1 if name == "scales" else 2)
    checks.labels(labels, "labels", effects.shape[1])
    n_out = effects.shape[1]
    if len(latents) != len(labels) or latents.shape[1] != len(effects) or len(scales) != len(effects):
        raise ValueError(f"expected latents (n, d_sae), labels (n,), effects (d_sae, n_out), scales (d_sae,); got "
                         f"{tuple(latents.shape)}, {tuple(labels.shape)}, {tuple(effects.shape)}, {tuple(scales.shape)}")
    labels = labels.to(latents.device)
    dtype = latents.dtype if latents.is_floating_point() else torch.float32
    mean_on_class = latents.T @ F.one_hot(labels, n_out).to(dtype) / torch.bincount(labels, minlength=n_out).clamp(min=1)
    return mean_on_class * effects.to(mean_on_class.device) / scales.to(mean_on_class.device).clamp(min=1e-9)[:, None]

def outputs(model: nn.Module, x: Tensor, out_position: int | None = None) -> Float[Tensor, "n n_out"]:
    """The model's outputs on `x` (batched, no gradients), read at `out_position` for sequence outputs."""
    out = training.predict(model, x)
    return out if out_position is None else out[:, out_position]


def spliced_accuracy(model: nn.Module, name: str, sae: SAE, x: Tensor, y: Int[Tensor, "n"], *,
                     position: int | None = None, out_position: int | None = None) -> float:
    """Accuracy of the model with the SAE's reconstruction in place of module `name`'s output."""
    with splice(model, name, sae, position=position):
        pred = outputs(model, x, out_position).argmax(-1)
    return (pred == y.to(pred.device)).float().mean().item()


def latent_intervention(model: nn.Module, name: str, sae: SAE, latent: int, target: int, x: Tensor, y: Int[Tensor, "n"], *,
                        value: float, n_classes: int, position: int | None = None, out_position: int | None = None) -> dict:
    """Switch `latent` off, then clamp it to `value`, keeping the SAE's error term; what moves?

    Returns the per-class accuracy change when switched off, the drop on class `target`, the largest
    change on any other class, and the share of inputs of other classes predicted `target` when clamped.
    """
    kw = dict(position=position, keep_error=True)
    clean = training.per_class_accuracy(outputs(model, x, out_position), y, n_classes)
    with splice(model, name, sae, edit=ablate_latents([latent]), **kw):
        change = training.per_class_accuracy(outputs(model, x, out_position), y, n_classes) - clean
    with splice(model, name, sae, edit=clamp_latent(latent, value), **kw):
        clamped = outputs(model, x[(y != target).to(x.device)], out_position).argmax(-1)
    others = torch.arange(n_classes, device=change.device) != target
    return {"class_accuracy_change": change, "target_drop": -change[target].item(),
            "max_other_change": change[others].abs().max().item(), "clamp_flip_rate": (clamped == target).float().mean().item()}


@torch.no_grad()
def neuron_logit_effects(model: nn.Module, name: str, inputs: Tensor, scales: Float[Tensor, "d"]) -> Float[Tensor, "d n_out"]:
    """`logit_effect` of each unit of module `name` (the neuron basis: one-hot directions), scaled by `scales`."""
    checks.tensor(scales, "scales", ndim=1, floating=False)
    eye = torch.eye(len(scales), device=scales.device, dtype=scales.dtype if scales.is_floating_point() else torch.float32)
    return torch.stack([logit_effect(model, name, eye[j] * scales[j], inputs) for j in range(len(scales))])


def neuron_intervention(model: nn.Module, name: str, neuron: int, target: int, x: Tensor, y: Int[Tensor, "n"], *,
                        value: float, n_classes: int) -> dict:
    """`latent_intervention` for one neuron of module `name`: switch it off (0), then clamp it to `value`."""
    clean = training.per_class_accuracy(outputs(model, x), y, n_classes)
    with ablation.ablate(model, name, [neuron]):
        change = training.per_class_accuracy(outputs(model, x), y, n_classes) - clean
    probe = neurons.per_neuron(neurons.get_activations(model, name, x[:1]))
    with ablation.ablate(model, name, [neuron], torch.full(probe.shape[1:], float(value), device=probe.device)):
        clamped = outputs(model, x[(y != target).to(x.device)]).argmax(-1)
    others = torch.arange(n_classes, device=change.device) != target
    return {"class_accuracy_change": change, "target_drop": -change[target].item(),
            "max_other_change": change[others].abs().max().item(), "clamp_flip_rate": (clamped == target).float().mean().item()}


@torch.no_grad()
def switch_off_drops(model: nn.Module, name: str, sae: SAE | None, targets: Int[Tensor, "units"], x: Tensor,
                     y: Int[Tensor, "n"], n_classes: int) -> Float[Tensor, "units"]:
    """For every unit j (SAE latent, or neuron when `sae` is None), the accuracy drop on class `targets[j]`
    when j alone is switched off (latents: spliced with the error kept; neurons: set to 0)."""
    clean = training.per_class_accuracy(outputs(model, x), y, n_classes)
    drops = []
    for j, c in enumerate(targets.tolist()):
        switch = splice(model, name, sae, edit=ablate_latents([j]), keep_error=True) if sae is not None \
            else ablation.ablate(model, name, [j])
        with switch:
            drops.append((clean[c] - training.per_class_accuracy(outputs(model, x), y, n_classes)[c]).item())
    return torch.tensor(drops)


# ---- SAEs on a language model's activations (notebook 08): needs the TransformerLens API
# (`run_with_cache`, `run_with_hooks` with hook names such as "blocks.0.mlp.hook_post"). ----

Hook = Callable[[Tensor, object], Tensor]


@torch.no_grad()
def lm_activation_batches(model: nn.Module, tokens: Int[Tensor, "n_tokens"], hook_name: str, *, batch_size: int, n_ctx: int,
                          windows_per_pass: int = 64, seed: int = 0) -> Iterator[Float[Tensor, "batch d_in"]]:
    """Endless batches of the activation `hook_name` at every position of random windows of `tokens`,
    shuffled across windows: `windows_per_pass` windows are run, their activations shuffled and cut into batches."""
    _lm_tokens(model, tokens, n_ctx)
    if windows_per_pass * n_ctx < batch_size:
        raise ValueError(f"one pass gives {windows_per_pass * n_ctx} activations, fewer than batch_size={batch_size}")
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same windows on every device
    device = training.model_device(model, tokens)
    while True:
        starts = torch.randint(0, len(tokens) - n_ctx + 1, (windows_per_pass,), generator=gen).to(tokens.device)
        window = tokens[starts[:, None] + torch.arange(n_ctx, device=tokens.device)].to(device)
        _, cache = model.run_with_cache(window, names_filter=hook_name)
        acts = cache[hook_name].reshape(-1, cache[hook_name].shape[-1]).float()
        yield from acts[torch.randperm(len(acts), generator=gen).to(acts.device)].split(batch_size)[: len(acts) // batch_size]


@torch.no_grad()
def lm_activations(model: nn.Module, tokens: Int[Tensor, "n_tokens"], hook_name: str, n_ctx: int,
                   batch_size: int = 64) -> Float[Tensor, "n d_in"]:
    """The activation `hook_name` at every token, the tokens cut into consecutive windows of `n_ctx`
    (row i belongs to tokens[i]; a remainder shorter than a window is dropped)."""
    _lm_tokens(model, tokens, n_ctx)
    n = len(tokens) // n_ctx * n_ctx
    if n == 0:
        raise ValueError(f"need at least n_ctx = {n_ctx} tokens, got {len(tokens)}")
    out, device = [], training.model_device(model, tokens)
    for chunk in tokens[:n].view(-1, n_ctx).split(batch_size):
        _, cache = model.run_with_cache(chunk.to(device), names_filter=hook_name)
        out.append(cache[hook_name].reshape(-1, cache[hook_name].shape[-1]).float())
    return torch.cat(out)


def _d_vocab(model: nn.Module) -> int | None:
    return getattr(getattr(model, "cfg", None), "d_vocab", None)


def _lm_tokens(model: nn.Module, tokens: Tensor, n_ctx: int) -> None:
    """Refuse `tokens` unless they are a 1-D stream of the model's token ids at least one window (`n_ctx`) long."""
    checks.tokens(tokens, "tokens", ndim=1, d_vocab=_d_vocab(model))
    if len(tokens) < checks.count(n_ctx, "n_ctx"):
        raise ValueError(f"tokens holds {len(tokens)} tokens, fewer than one window of n_ctx = {n_ctx}")


def lm_sae_hook(sae: SAE, *, edit: Edit | None = None, keep_error: bool = False) -> Hook:
    """A TransformerLens hook that replaces a (batch, pos, d_in) activation by the SAE's reconstruction."""
    def hook(act: Tensor, hook=None) -> Tensor:
        checks.tensor(act, "act", nonempty=False)
        if act.shape[-1] != sae.cfg.d_in:
            raise ValueError(f"sae reads activations of width d_in={sae.cfg.d_in}, but hook "
                             f"{getattr(hook, 'name', '?')!r} gives shape {tuple(act.shape)}; use it at the hook it was trained on")
        flat = act.reshape(-1, act.shape[-1])
        return _reconstruct(sae, flat, edit, keep_error).reshape(act.shape).to(act.dtype)
    return hook


def zero_ablation_hook(act: Tensor, hook=None) -> Tensor:
    """A TransformerLens hook that replaces an activation by zeros (e.g. the MLP's output: the MLP switched off)."""
    return torch.zeros_like(act)


@torch.no_grad()
def lm_loss(model: nn.Module, windows: Int[Tensor, "batch n_ctx_plus_1"], fwd_hooks: list[tuple[str, Hook]] | None = None,
            batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (nats/token) on `windows` (inputs window[:, :-1]) with `fwd_hooks` applied."""
    checks.tokens(windows, "windows", d_vocab=_d_vocab(model))
    total, device = 0.0, training.model_device(model, windows)
    for chunk in windows.split(batch_size):
        chunk = chunk.to(device)
        logits = model.run_with_hooks(chunk[:, :-1], fwd_hooks=fwd_hooks or [])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1)).item() * len(chunk)
    return total / len(windows)


def loss_recovered(clean: float, spliced: float, ablated: float) -> float:
    """Share of the loss gap between an ablated layer and the clean model that the SAE closes:
    (ablated - spliced) / (ablated - clean); 1 = as good as clean, 0 = as bad as ablating."""
    for name, value in (("clean", clean), ("spliced", spliced), ("ablated", ablated)):
        if not math.isfinite(value):
            raise ValueError(f"{name} loss is {value}; a loss must be finite: find where the NaN or inf came from")
    if ablated <= clean:
        raise ValueError(f"ablating should raise the loss: ablated {ablated:.4f} <= clean {clean:.4f}; nothing to recover")
    return (ablated - spliced) / (ablated - clean)
