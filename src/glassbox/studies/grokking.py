"""Grokking modular addition: the data, a full-batch training loop that keeps checkpoints, and the
progress measures of Nanda et al. (2023, section 5) computed from any checkpoint.

Inputs are the three tokens `a b =` (numbers 0..p-1, "=" is token p); the answer (a + b) mod p is read
from the logits of the last position, classes 0..p-1 (the "=" class is dropped).
"""
import copy
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from glassbox import checks, fourier, training
from glassbox.studies import models


@dataclass
class ModularData:
    p: int  # the modulus; numbers are 0..p-1
    tokens: Int[Tensor, "pairs 3"]  # every (a, b, =), a-major: row a * p + b
    labels: Int[Tensor, "pairs"]  # (a + b) mod p
    train: Int[Tensor, "n_train"]  # row indices of the training pairs
    test: Int[Tensor, "n_test"]  # the other rows


def make_data(p: int, train_fraction: float, seed: int) -> ModularData:
    """All p * p pairs (a, b), a seeded random `train_fraction` of them for training, the rest for test."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n_train = round(train_fraction * p * p)
    return ModularData(p, tokens, (a + b) % p, perm[:n_train].sort().values, perm[n_train:].sort().values)


def model_config(p: int, seed: int, d_model: int = 128, n_heads: int = 4, d_mlp: int = 512) -> dict:
    """Nanda et al.'s 1-layer transformer for `models.build("transformer", ...)`: no LayerNorm, ReLU MLP,
    d_head = d_model / n_heads, vocabulary 0..p-1 plus "=", three positions."""
    return models.config_dict(models.TransformerConfig(
        n_layers=1, n_heads=n_heads, d_model=d_model, d_head=d_model // n_heads, d_mlp=d_mlp, d_vocab=p + 1,
        n_ctx=3, attn_only=False, act_fn="relu", normalization_type=None, seed=seed))


def answer_logits(model: nn.Module, tokens: Int[Tensor, "batch 3"]) -> Float[Tensor, "batch p"]:
    """Logits of the answers 0..p-1 at the last position ("=" dropped), computed where the model is."""
    logits = model(tokens.to(training.model_device(model, tokens)))[:, -1]
    return logits[:, : logits.shape[-1] - 1]


def loss_and_accuracy(logits: Float[Tensor, "batch p"], labels: Int[Tensor, "batch"]) -> tuple[float, float]:
    """Mean cross-entropy (computed in float64: tiny losses stay exact) and accuracy."""
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits.double(), labels).item()
    return loss, (logits.argmax(-1) == labels).float().mean().item()


@torch.no_grad()
def evaluate(model: nn.Module, data: ModularData) -> dict[str, float]:
    """Train and test loss and accuracy, from one forward pass over all p * p pairs."""
    logits = answer_logits(model, data.tokens)
    out = {}
    for split, idx in (("train", data.train), ("test", data.test)):
        out[f"{split}_loss"], out[f"{split}_accuracy"] = loss_and_accuracy(logits[idx], data.labels[idx])
    return out


@dataclass
class History:
    records: list[dict] = field(default_factory=list)  # one dict per logged epoch: epoch, losses, accuracies
    checkpoints: dict[int, dict[str, Tensor]] = field(default_factory=dict)  # epoch -> state_dict copy
    seconds: float = 0.0  # training wall-clock time, evaluation included


def train_full_batch(model: nn.Module, data: ModularData, *, epochs: int, lr: float, weight_decay: float,
                     betas: tuple[float, float] = (0.9, 0.98), log_every: int = 10, checkpoint_every: int = 100,
                     progress: bool = True, device: str | torch.device | None = None) -> History:
    """AdamW on the whole training set at every step (one step = one epoch), constant learning rate.
    Logs train/test loss and accuracy every `log_every` epochs and keeps a copy of the weights every
    `checkpoint_every` epochs (epoch 0 = initialisation and the last epoch included). `device` (default: the
    model's) is where it trains: the model and the training set move there."""
    from tqdm.auto import tqdm

    if device is not None:
        model.to(device)

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
    home = training.model_device(model, data.tokens)
    x, y = data.tokens[data.train].to(home), data.labels[data.train].to(home)
    history, start = History(), time.perf_counter()
    for epoch in tqdm(range(epochs + 1), disable=not progress, mininterval=5):
        if epoch % log_every == 0 or epoch == epochs:
            history.records.append({"epoch": epoch, **evaluate(model, data)})
        if epoch % checkpoint_every == 0 or epoch == epochs:
            history.checkpoints[epoch] = copy.deepcopy(model.state_dict())
        if epoch == epochs:
            break
        loss = F.cross_entropy(answer_logits(model, x).double(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    history.seconds = time.perf_counter() - start
    return history


def first_epoch(records: list[dict], key: str, threshold: float, above: bool = True) -> int | None:
    """First logged epoch whose `key` is >= threshold (or <= threshold with above=False); None if never."""
    for r in records:
        if (r[key] >= threshold) if above else (r[key] <= threshold):
            return r["epoch"]
    return None


@torch.no_grad()
def grid_logits(model: nn.Module, data: ModularData) -> Float[Tensor, "pairs p"]:
    """Answer logits for every pair, rows a-major (row a * p + b)."""
    return answer_logits(model, data.tokens)


@torch.no_grad()
def mlp_activations(model: nn.Module, data: ModularData) -> Float[Tensor, "pairs d_mlp"]:
    """The MLP neurons' activations (after ReLU) at the last position, for every pair, a-major."""
    tokens = data.tokens.to(training.model_device(model, data.tokens))
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == "blocks.0.mlp.hook_post")
    return cache["blocks.0.mlp.hook_post"][:, -1]


def restricted_logits(logits: Float[Tensor, "pairs p"], p: int, freqs: list[int]) -> Float[Tensor, "pairs p"]:
    """Keep only what varies as cos / sin of w k (a + b) for the key frequencies, plus each answer's mean."""
    return logits.mean(0, keepdim=True) + fourier.project_sum_frequencies(logits, p, freqs)


def restricted_test_logits(logits: Float[Tensor, "pairs p"], p: int, freqs: list[int],
                           rows: Int[Tensor, "n"]) -> Float[Tensor, "n p"]:
    """The key-frequency part of the logits of `rows` (the test pairs), fitted on those rows alone: per answer,
    least squares on a constant and cos / sin of w k (a + b). No other row enters, so memorised training
    answers cannot reach it (projecting over all p * p pairs, as `restricted_logits` does, carries them)."""
    checks.tensor(logits, "logits", ndim=2, floating=False)
    if logits.shape != (p * p, p):
        raise ValueError(f"logits must be (p*p, p) = ({p * p}, {p}), one row per pair (a, b), got {tuple(logits.shape)}")
    rows = torch.as_tensor(rows, device=logits.device)
    d = fourier.sum_directions(p, freqs).to(logits.device)[:, rows].double()
    X = torch.cat([torch.ones(len(rows), 1, dtype=torch.float64, device=logits.device), d.T], 1)
    y = logits[rows].double()
    return (X @ torch.linalg.lstsq(X, y).solution).to(logits.dtype)


def lookup_table_logits(data: ModularData, seed: int, margin: float = 10.0) -> Float[Tensor, "pairs p"]:
    """A pure memoriser, the control for the restricted measures: standard-normal logits everywhere plus
    `margin` on the right answer of every training pair; on test pairs it is noise (accuracy about 1/p)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(data.p * data.p, data.p, generator=g)
    logits[data.train, data.labels[data.train]] += margin
    return logits


def lockstep_logits(data: ModularData, key_freqs: list[int], strength: float, seed: int, noise: float = 3.0,
                    margin: float = 10.0) -> Float[Tensor, "pairs p"]:
    """A memoriser with a Fourier circuit of a given `strength` added: normal logits of scale `noise` everywhere,
    `margin` on the right answer of every training pair, plus strength * sum_k cos(w k (a + b - c)) over `key_freqs`.
    The control for "a progress measure sees the circuit coming": grown in step with the test accuracy, nothing in it
    forms early."""
    g = torch.Generator().manual_seed(seed)
    logits = noise * torch.randn(data.p * data.p, data.p, generator=g)
    logits[data.train, data.labels[data.train]] += margin
    return logits + strength * sum(fourier.cos_logit_table(data.p, k) for k in key_freqs)


def residual_noise(logits: Float[Tensor, "pairs p"], data: ModularData, key_freqs: list[int]) -> float:
    """The spread of the test pairs' logits outside their key-frequency part (`restricted_test_logits`): the standard
    deviation, over test pairs and answers, of what the fit leaves. Sets a lockstep control's noise to the model's."""
    rest = logits[data.test] - restricted_test_logits(logits, data.p, key_freqs, data.test)
    return rest.double().std().item()


def lockstep_control(data: ModularData, key_freqs: list[int], epochs: list[int], half_epoch: int, seed: int,
                     target: float = 0.5, noise: float = 3.0) -> list[dict]:
    """Rows (epoch, test loss and accuracy, `logit_measures`) of `lockstep_logits` (memoriser noise `noise`) whose
    circuit grows linearly in time, strength s * epoch / half_epoch, with s found by bisection so that its test
    accuracy first reaches `target` at `half_epoch` (the model's own epoch): same split, key frequencies and epochs
    as the model."""
    if half_epoch is None or half_epoch <= 0:
        raise ValueError(f"half_epoch must be a positive epoch (the model's test-accuracy {target:.0%} epoch), got {half_epoch}")

    def accuracy(strength: float) -> float:
        logits = lockstep_logits(data, key_freqs, strength, seed, noise)
        return loss_and_accuracy(logits[data.test], data.labels[data.test])[1]

    low, high = 0.0, 1.0
    while accuracy(high) < target:
        low, high = high, 2 * high
    for _ in range(30):
        low, high = (low, (low + high) / 2) if accuracy((low + high) / 2) >= target else ((low + high) / 2, high)
    rows = []
    for epoch in epochs:
        logits = lockstep_logits(data, key_freqs, high * epoch / half_epoch, seed, noise)
        loss, acc = loss_and_accuracy(logits[data.test], data.labels[data.test])
        rows.append({"epoch": int(epoch), "test_loss": loss, "test_accuracy": acc, **logit_measures(logits, data, key_freqs)})
    return rows


def restricted_lead(rows: list[dict], start: int) -> dict:
    """When the restricted loss gets half-way down after `start` (linear and log scale) and 90% of the way (the
    "circuit formed" boundary), against the first epoch with test accuracy >= 50%; lead = that epoch minus the
    linear half-way epoch (positive: the restricted loss is early)."""
    epochs, values = [r["epoch"] for r in rows], [r["restricted_loss"] for r in rows]
    half = first_epoch(rows, "test_accuracy", 0.5)
    half = None if half is None else int(half)
    linear = halfway_epoch(epochs, values, start)
    return {"test_accuracy_50%": half, "restricted_loss_halfway": linear,
            "restricted_loss_halfway_log_scale": halfway_epoch(epochs, values, start, log=True),
            "restricted_loss_90%": covered_epoch(epochs, values, start, 0.9),
            "lead": None if half is None or linear is None else half - linear}


def excluded_logits(logits: Float[Tensor, "pairs p"], p: int, freqs: list[int]) -> Float[Tensor, "pairs p"]:
    """Remove what varies as cos / sin of w k (a + b) for the key frequencies; keep everything else."""
    return logits - fourier.project_sum_frequencies(logits, p, freqs)


def weight_norm(model: nn.Module) -> float:
    """L2 norm of all parameters together (what weight decay pulls down)."""
    return torch.sqrt(sum(p.detach().double().pow(2).sum() for p in model.parameters())).item()


def logit_measures(logits: Float[Tensor, "pairs p"], data: ModularData, key_freqs: list[int]) -> dict[str, float]:
    """The progress measures read from the logits alone: restricted loss and accuracy on the test pairs from the
    key-frequency part fitted on the test pairs' own logits (`restricted_test_logits`); the same accuracy from
    the older projection over all pairs, which memorised training answers leak into (kept to show the leak);
    and the excluded loss (training pairs, key frequencies removed)."""
    kept = restricted_test_logits(logits, data.p, key_freqs, data.test)
    restricted, restricted_acc = loss_and_accuracy(kept, data.labels[data.test])
    _, leaky_acc = loss_and_accuracy(restricted_logits(logits, data.p, key_freqs)[data.test], data.labels[data.test])
    excluded, _ = loss_and_accuracy(excluded_logits(logits, data.p, key_freqs)[data.train], data.labels[data.train])
    return {"restricted_loss": restricted, "restricted_test_accuracy": restricted_acc,
            "restricted_test_accuracy_all_pairs_projection": leaky_acc, "excluded_loss": excluded}


def progress_measures(model: nn.Module, data: ModularData, key_freqs: list[int]) -> dict[str, float]:
    """Nanda et al.'s progress measures of one checkpoint: the logit measures (`logit_measures`: restricted
    loss and accuracy on the test pairs, excluded loss on the training pairs), the Gini coefficient of the
    embedding's norms over the frequencies 1..p//2 (the constant left out), and the total weight norm."""
    W_E = model.W_E.detach()[: data.p]
    return {**logit_measures(grid_logits(model, data), data, key_freqs),
            "embedding_gini": fourier.gini(fourier.embedding_frequency_norms(W_E)[1:]), "weight_norm": weight_norm(model)}


def neuron_frequencies(acts: Float[Tensor, "pairs d_mlp"], p: int) -> tuple[Int[Tensor, "d_mlp"], Float[Tensor, "d_mlp"]]:
    """Each neuron's dominant frequency and the fraction of its variance over (a, b) that this frequency
    explains (terms in a alone, b alone and their products, from the 2D Fourier transform)."""
    checks.tensor(acts, "acts", ndim=2, floating=False)
    if len(acts) != p * p:
        raise ValueError(f"acts must hold one row per pair (a, b), p*p = {p * p} rows, got shape {tuple(acts.shape)}")
    B = fourier.basis(p)
    grid = acts.reshape(p, p, -1).float()
    coef = torch.einsum("ia,jb,abn->ijn", B, B, grid)  # 2D Fourier coefficients, axes (a-basis, b-basis)
    coef[0, 0] = 0  # the mean is not variance
    freq = fourier.row_frequency(p)
    fa, fb = freq[:, None].expand(p, p), freq[None, :].expand(p, p)
    # a 2D term belongs to frequency k when it is (k, 0), (0, k) or (k, k); mixed frequencies to none
    k = torch.where((fa == fb) | (fa == 0) | (fb == 0), torch.maximum(fa, fb), torch.full_like(fa, -1))
    sq = coef.pow(2).reshape(p * p, -1)
    keep = k.flatten() >= 0
    power = torch.zeros(fourier.n_frequencies(p), sq.shape[1]).index_add_(0, k.flatten()[keep], sq[keep])
    power = power / sq.sum(0).clamp_min(1e-12)
    best = power.argmax(0)
    return best, power.gather(0, best[None]).squeeze(0)


def key_frequencies(neuron_freq: Int[Tensor, "d_mlp"], neuron_share: Float[Tensor, "d_mlp"],
                    min_neurons: float = 0.05, min_share: float = 0.5) -> list[int]:
    """The frequencies that dominate at least `min_neurons` of the neurons, counting only neurons that
    one frequency explains well (share of variance >= `min_share`); sorted by frequency. When none
    qualifies (an untrained model), the single most common non-constant frequency, so callers get >= 1."""
    clean = neuron_freq[(neuron_share >= min_share) & (neuron_freq > 0)]
    counts = torch.bincount(clean, minlength=int(neuron_freq.max()) + 1)
    key = [k for k in range(len(counts)) if counts[k] >= min_neurons * len(neuron_freq)]
    if not key:
        nonzero = neuron_freq[neuron_freq > 0]
        key = [int(torch.bincount(nonzero).argmax())] if len(nonzero) else [1]
    return key


def cos_fit(logits: Float[Tensor, "pairs p"], p: int, freqs: list[int]) -> tuple[float, list[float]]:
    """Least-squares fit of the logits (each answer's mean over pairs removed) by sum_k alpha_k cos(w k (a + b - c)):
    returns the fraction of variance explained and the alphas."""
    checks.tensor(logits, "logits", ndim=2, floating=False)
    if logits.shape != (p * p, p):
        raise ValueError(f"logits must be (p*p, p) = ({p * p}, {p}), one row per pair (a, b), got {tuple(logits.shape)}")
    y = (logits - logits.mean(0, keepdim=True)).double().flatten()
    X = torch.stack([fourier.cos_logit_table(p, k).double().flatten() for k in freqs], 1)
    alpha = torch.linalg.lstsq(X, y[:, None]).solution.squeeze(1)
    r2 = 1 - (y - X @ alpha).pow(2).sum() / y.pow(2).sum()
    return r2.item(), alpha.tolist()


def embedding_parameter(model: nn.Module) -> nn.Parameter:
    """The token embedding parameter (d_vocab, d_model) of a TransformerLens-style model (`model.W_E`)."""
    W_E = model.W_E
    for param in model.parameters():
        if param.shape == W_E.shape and torch.equal(param.detach(), W_E.detach()):
            return param
    raise ValueError("no parameter of the model equals model.W_E; is this a TransformerLens model?")


def with_embedding_frequencies(model: nn.Module, p: int, freqs: list[int], keep: bool) -> nn.Module:
    """A copy of the model whose embeddings of the numbers 0..p-1 keep only the given frequencies (and the
    constant) with keep=True, or lose them with keep=False; the "=" embedding is untouched."""
    new = copy.deepcopy(model)
    W = embedding_parameter(new)
    B = fourier.basis(p)
    rows = torch.isin(fourier.row_frequency(p), torch.tensor(freqs))
    rows = rows | (fourier.row_frequency(p) == 0) if keep else rows
    part = B[rows].T @ (B[rows] @ W.data[:p])
    with torch.no_grad():
        W.data[:p] = part if keep else W.data[:p] - part
    return new


def covered_epoch(epochs, values, start: int, fraction: float = 0.5, log: bool = False) -> int | None:
    """First epoch >= `start` at which a curve has covered `fraction` of its way from its value at `start` to
    its most extreme later value (the one farthest from the start value; in log space with log=True).
    None when the curve never moves."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    e = torch.as_tensor(list(epochs))
    v = torch.as_tensor(list(values), dtype=torch.float64)
    v = v.clamp_min(1e-300).log() if log else v
    after = e >= start
    e, v = e[after], v[after]
    if len(v) == 0:
        return None
    extreme = v[(v - v[0]).abs().argmax()]
    if extreme == v[0]:
        return None
    target = v[0] + fraction * (extreme - v[0])
    crossed = (v >= target) if extreme > v[0] else (v <= target)
    return int(e[crossed.nonzero()[0, 0]])


def halfway_epoch(epochs, values, start: int, log: bool = False) -> int | None:
    """`covered_epoch` at half of the way: the first epoch >= `start` half-way to the most extreme later value."""
    return covered_epoch(epochs, values, start, 0.5, log)


def replay_measures(history: History, config: dict, data: ModularData, key_freqs: list[int],
                    until: int | None = None) -> list[dict]:
    """`progress_measures` of every kept checkpoint (up to epoch `until`), merged with the logged curves."""
    model, logged = models.build("transformer", config), {r["epoch"]: r for r in history.records}
    out = []
    for epoch in sorted(e for e in history.checkpoints if until is None or e <= until):
        model.load_state_dict(history.checkpoints[epoch])
        out.append({"epoch": epoch, **progress_measures(model, data, key_freqs), **logged.get(epoch, {})})
    return out


def prefix_summary(history: History, config: dict, data: ModularData, epochs: int, seed: int) -> dict:
    """What the first `epochs` epochs of a run show, for comparing seeds: the key frequencies of the model at
    `epochs`, the epoch it memorised, the restricted and model test accuracy then, the restricted loss's
    half-way epoch, the test accuracy every 100 epochs, and the same restricted measure on a lookup table of this
    split (the control)."""
    if epochs not in history.checkpoints:
        raise ValueError(f"no checkpoint at epoch {epochs}; kept: {sorted(history.checkpoints)[:5]}...")
    model = models.build("transformer", config)
    model.load_state_dict(history.checkpoints[epochs])
    freq, share = neuron_frequencies(mlp_activations(model, data), data.p)
    key = key_frequencies(freq, share)
    found = bool(((share >= 0.5) & (freq == key[0])).float().mean() >= 0.05)  # False: the rule's fallback
    rows = replay_measures(history, config, data, key, until=epochs)
    memorised = first_epoch(history.records, "train_accuracy", 0.99)
    at = min(rows, key=lambda r: abs(r["epoch"] - (memorised if memorised is not None else epochs)))
    table = lookup_table_logits(data, seed)
    lookup = logit_measures(table, data, key)
    _, lookup_test = loss_and_accuracy(table[data.test], data.labels[data.test])
    return {"key_frequencies": key, "key_frequencies_found": found, "epoch_memorised": memorised,
            "at_memorised": {m: at[m] for m in ("epoch", "test_accuracy", "restricted_test_accuracy")},
            "restricted_loss_halfway": halfway_epoch([r["epoch"] for r in rows], [r["restricted_loss"] for r in rows],
                                                     memorised or 0),
            "at_end": {m: rows[-1][m] for m in ("test_accuracy", "restricted_test_accuracy")},
            "test_accuracy_every_100_epochs": {str(r["epoch"]): r["test_accuracy"] for r in history.records
                                               if r["epoch"] % 100 == 0 and r["epoch"] <= epochs},
            "lookup_table": {"test_accuracy": lookup_test, "restricted_test_accuracy": lookup["restricted_test_accuracy"],
                             "restricted_test_accuracy_all_pairs_projection":
                                 lookup["restricted_test_accuracy_all_pairs_projection"]}}
