"""Text for the journal's language models: Tiny Shakespeare from data/ (offline, checksummed), a
character-level tokenizer, the 90/10 train/validation split and random training windows.

    text = load_shakespeare()
    tok = CharTokenizer.from_text(text)
    train, val = split(tok.encode(text))            # int64 token ids, the last 10% is validation
    batch = random_windows(train, 32, 129, gen)     # (32, 129): inputs batch[:, :-1], targets batch[:, 1:]
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from glassbox.journal import paths

SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_SOURCE = "https://github.com/karpathy/char-rnn (data/tinyshakespeare/input.txt); see data/README.md"


def load_shakespeare(path: Path | None = None) -> str:
    """The Tiny Shakespeare corpus (1,115,394 characters) after checking the file's sha256."""
    path = Path(path or paths.DATA_DIR / "tinyshakespeare.txt")
    if not path.is_file():
        raise FileNotFoundError(f"Tiny Shakespeare file {path} is missing: restore data/tinyshakespeare.txt from git "
                                f"(source: {SHAKESPEARE_SOURCE})")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise ValueError(f"Tiny Shakespeare file {path} is corrupt or a different version (sha256 {digest[:12]}..., "
                         f"expected {SHAKESPEARE_SHA256[:12]}...): restore it from git (source: {SHAKESPEARE_SOURCE})")
    return raw.decode("utf-8")


@dataclass(frozen=True)
class CharTokenizer:
    """One token per distinct character, ids in sorted character order (as nanoGPT's shakespeare_char)."""

    chars: str  # the vocabulary: token id i is chars[i]

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The tokenizer whose vocabulary is every character of `text`."""
        return cls("".join(sorted(set(text))))

    @property
    def d_vocab(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Int[Tensor, "n_chars"]:
        """Token ids of `text`; a character outside the vocabulary is an error that names it."""
        index = {c: i for i, c in enumerate(self.chars)}
        missing = sorted(set(text) - set(index))
        if missing:
            raise ValueError(f"characters {missing[:10]} are not in the tokenizer's vocabulary of {self.d_vocab} "
                             f"characters ({self.chars!r}); build it with CharTokenizer.from_text on text that has them")
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, tokens: Int[Tensor, "n_chars"] | list[int]) -> str:
        """The text of token ids."""
        ids = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
        bad = [t for t in ids if not 0 <= t < self.d_vocab]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside 0..{self.d_vocab - 1}")
        return "".join(self.chars[t] for t in ids)


def split(tokens: Int[Tensor, "n"], val_fraction: float = 0.1) -> tuple[Int[Tensor, "n_train"], Int[Tensor, "n_val"]]:
    """The first (1 - val_fraction) of the tokens for training, the rest for validation (no shuffling:
    validation is text the model never saw, not scattered windows of it)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    cut = round(len(tokens) * (1 - val_fraction))
    return tokens[:cut], tokens[cut:]


def drop_step(steps: list[int], values: list[float], fraction: float) -> float:
    """The first step (interpolated between saved steps) at which `values` has covered `fraction` of its way from
    its first to its last value."""
    if len(steps) != len(values) or len(steps) < 2:
        raise ValueError(f"steps and values must be two equal lists of >= 2 points, got {len(steps)} and {len(values)}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction}")
    v = torch.tensor(values, dtype=torch.float64)
    if v[-1] == v[0]:
        raise ValueError("values start and end at the same value: there is no drop to locate")
    done = (v - v[0]) / (v[-1] - v[0])  # 0 at the start, 1 at the end
    i = int(torch.nonzero(done >= fraction)[0])
    if i == 0:
        return float(steps[0])
    t = float((fraction - done[i - 1]) / (done[i] - done[i - 1]))
    return steps[i - 1] + t * (steps[i] - steps[i - 1])


def drop_width(steps: list[int], values: list[float], lo: float = 0.2, hi: float = 0.8) -> float:
    """Steps the curve takes to go from `lo` to `hi` of its total drop (a sudden change is narrow; a linear
    decline over the whole run takes (hi - lo) of it)."""
    return drop_step(steps, values, hi) - drop_step(steps, values, lo)


def linear_decline(steps: list[int], values: list[float]) -> list[float]:
    """The control curve: a straight line from the first value to the last over the same steps."""
    a, b = values[0], values[-1]
    return [a + (b - a) * (s - steps[0]) / (steps[-1] - steps[0]) for s in steps]


def exponential_decline(steps: list[int], values: list[float], halfway: float) -> list[float]:
    """The control curve for a phase change: a smooth exponential decay from the first value to the last, with no
    plateau (steepest at the start), whose half-way step (as `drop_step` measures it) is `halfway`. Its 20%->80%
    width is about twice `halfway` when that is early in the run; a drop much narrower is sharper than any
    plateau-free decay reaching half-way as early."""
    import math

    if not steps[0] < halfway < steps[-1]:
        raise ValueError(f"halfway must lie strictly between the first and last step ({steps[0]}, {steps[-1]}), got {halfway}")
    a, b, span = values[0], values[-1], steps[-1] - steps[0]  # scaled so that it ends exactly at the last value
    curve = lambda tau: [a + (b - a) * math.expm1(-(s - steps[0]) / tau) / math.expm1(-span / tau) for s in steps]
    lo, hi = 1e-3 * (steps[-1] - steps[0]), 1e3 * (steps[-1] - steps[0])
    for _ in range(100):  # drop_step grows with the time constant: bisect (geometrically) for the one that matches
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if drop_step(steps, curve(mid), 0.5) < halfway else (lo, mid)
    return curve(math.sqrt(lo * hi))


@torch.no_grad()
def head_ablation_costs(model: nn.Module, passages: Int[Tensor, "batch pos"], targets: Int[Tensor, "batch pos"]
                        ) -> dict[str, float]:
    """Rise of the next-token loss when each head's output is mean-ablated (its mean over `passages`, per position),
    and when all heads are at once: what a head does through later layers, which its direct logit attribution misses."""
    from glassbox import lens

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    _, cache = model.run_with_cache(passages, names_filter=lambda n: n.endswith("hook_z"))
    means = lens.mean_z(cache, n_layers)
    loss = lambda hooks: F.cross_entropy(model.run_with_hooks(passages, fwd_hooks=hooks).flatten(0, 1), targets.flatten()).item()
    clean, heads = loss([]), [(l, h) for l in range(n_layers) for h in range(n_heads)]
    costs = {f"L{l}H{h}": loss(lens.head_ablation_hooks([(l, h)], means)) - clean for l, h in heads}
    return costs | {"all heads": loss(lens.head_ablation_hooks(heads, means)) - clean, "clean loss": clean}


@torch.no_grad()
def span_copy_losses(model: nn.Module, tokens: Int[Tensor, "n"], spans: list[tuple[int, int, int, int]], n_ctx: int,
                     seed: int = 0) -> Float[Tensor, "3 n_spans"]:
    """Loss on characters 2..end of each span's second copy, in the same window at the same positions: row 0 as
    in the text, row 1 with the first copy's characters shuffled (the scramble control: only the earlier copy
    differs, so the context length is equal); row 2: the first copy itself, as in the text (less context)."""
    if not spans:
        raise ValueError("spans is empty: no repeated words to measure (see lm.repeated_word_spans)")
    gen, intact, scrambled, where = torch.Generator().manual_seed(seed), [], [], []
    for window, first, second, length in spans:
        start = min(window, len(tokens) - n_ctx - 1)
        if not start <= first < second or second + length - 1 > start + n_ctx:
            raise ValueError(f"span {(window, first, second, length)} does not fit a window of {n_ctx + 1} tokens")
        w = tokens[start: start + n_ctx + 1]
        s, a = w.clone(), first - start
        s[a: a + length] = w[a: a + length][torch.randperm(length, generator=gen)]
        intact.append(w), scrambled.append(s), where.append((second - start, a, length))
    rows = []
    for batch in (torch.stack(intact), torch.stack(scrambled)):
        loss = F.cross_entropy(model(batch[:, :-1]).transpose(1, 2), batch[:, 1:], reduction="none")  # [j]: token j + 1
        rows.append(torch.stack([loss[j, b: b + n - 1].mean() for j, (b, _, n) in enumerate(where)]))
        if len(rows) == 1:
            first_copy = torch.stack([loss[j, a: a + n - 1].mean() for j, (_, a, n) in enumerate(where)])
    return torch.stack(rows + [first_copy])


@torch.no_grad()
def repetition_tests(model: nn.Module, val_tokens: Int[Tensor, "n"], n_ctx: int, length: int, n_sequences: int,
                     n_spans: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """First- and second-copy loss of a repeated random sequence, of a repeated validation line and of names that
    recur in validation text, each beside its control at equal context: the second copy after a *different*
    first copy (other random characters, another line, the name's characters shuffled)."""
    from glassbox import lens, lm

    d_vocab = model.cfg.d_vocab
    rand = lens.repeated_tokens(n_sequences, length, d_vocab, seed=seed)
    other = torch.randint(0, d_vocab, (n_sequences, length), generator=torch.Generator().manual_seed(seed + 1))
    starts = torch.linspace(0, len(val_tokens) - length - 1, n_sequences).long()
    line = val_tokens[starts[:, None] + torch.arange(length)]
    out = {}
    for name, a, b in [("random characters", rand[:, :length], other), ("repeated line", line, line.roll(1, 0))]:
        same, swapped = torch.cat([a, a], 1), torch.cat([b, a], 1)
        first, second = lens.copy_losses(lens.per_token_loss(model(same), same), length)
        control = lens.copy_losses(lens.per_token_loss(model(swapped), swapped), length)[1]
        out[name] = {"first copy": first, "second copy": second, "second copy after another first copy": control}
    out["repeated names"], out["rare names"] = name_tests(model, val_tokens, n_ctx, n_spans, seed)
    return out


def name_tests(model: nn.Module, val_tokens: Int[Tensor, "n"], n_ctx: int, n_spans: int, seed: int = 0,
               rare_below: int = 5) -> tuple[dict, dict]:
    """The scramble test on `n_spans` capitalised words that recur within `n_ctx` characters, spread evenly over the
    whole validation text; what they are (distinct words, share of ALL-CAPS speaker tags); and the same test on the
    subset that occurs fewer than `rare_below` times in the training text (a model cannot know those by heart)."""
    import re
    from collections import Counter

    from glassbox import lm

    text = load_shakespeare()
    val_text, train_text = CharTokenizer.from_text(text).decode(val_tokens), text[: len(text) - len(val_tokens)]
    every = lm.repeated_word_spans(val_text, n_ctx)
    spans = [every[i] for i in torch.linspace(0, len(every) - 1, min(n_spans, len(every))).round().long().unique().tolist()]
    words, in_train = [val_text[s[2]: s[2] + s[3]] for s in spans], Counter(re.findall(r"[A-Za-z]+", train_text))
    losses = span_copy_losses(model, val_tokens, spans, n_ctx, seed=seed)
    rare = [i for i, w in enumerate(words) if in_train[w] < rare_below]

    def summary(ix):
        row = losses[:, ix].mean(1).tolist() if ix else [float("nan")] * 3
        return {"second copy": row[0], "second copy, first copy scrambled": row[1], "first copy": row[2], "n": len(ix),
                "distinct words": len({words[i] for i in ix})}
    names = summary(list(range(len(spans)))) | {"speaker-tag share": sum(w.isupper() for w in words) / len(words),
                                                "most common": "{} ({} times)".format(*Counter(words).most_common(1)[0])}
    return names, summary(rare) | {"rare below": rare_below}


def train_induction(config: dict, steps: int, lr: float, batch_size: int, probe: Int[Tensor, "batch two_length"],
                    every: int, seed: int) -> tuple[nn.Module, list[dict]]:
    """Notebook 07's induction model trained with `seed`; its first- and second-copy loss on `probe` every `every` steps."""
    from glassbox import lens, lm, training
    from glassbox.studies import models

    model, length = models.build("transformer", dict(config, seed=seed)), probe.shape[1] // 2
    rows = [dict(zip(["step", "first copy", "second copy"], [0, *lens.copy_losses(lens.per_token_loss(model(probe), probe), length)]))]
    step = iter([s + 1 for s in range(steps) if s % every == 0 or s == steps - 1])

    def measure(m):
        with torch.no_grad():
            rows.append(dict(zip(["step", "first copy", "second copy"], [next(step), *lens.copy_losses(lens.per_token_loss(m(probe), probe), length)])))
        return {}
    training.train(model, lm.periodic_batches(batch_size, config["n_ctx"], config["d_vocab"], 8, 32, seed=seed), steps=steps,
                   lr=lr, loss_fn=lm.next_token_loss, evaluate=measure, eval_every=every, warmup=50, betas=(0.9, 0.99),
                   clip_grad=1.0, desc=f"induction model, seed {seed}")
    return model, rows


# The learning-rate / batch-size sweep for the language model of notebook 07. Each configuration trains on the
# first 90% of the training split and is scored on the last 10% of it (never on the reported validation split);
# the same compute as the notebook's run: batch_size x steps windows of 128 characters.
SWEEP_FILE = Path(__file__).with_name("shakespeare_sweep.json")


def sweep_one(lr: float, batch_size: int, steps: int, seed: int = 0, n_windows: int = 512) -> dict:
    """Train notebook 07's language model with (lr, batch_size, steps) on 90% of the training split; its loss on the rest."""
    import time

    from glassbox import lm, training
    from glassbox.studies import models

    tokens = CharTokenizer.from_text(text := load_shakespeare()).encode(text)
    fit, held = split(split(tokens)[0])  # the reported validation split stays untouched
    model = models.build("transformer", models.config_dict(models.TransformerConfig(seed=seed)))
    cpu = time.process_time()
    training.train(model, lm.windows(fit, batch_size, 128, seed=seed), steps=steps, lr=lr, loss_fn=lm.next_token_loss,
                   eval_every=steps, warmup=50, betas=(0.9, 0.99), clip_grad=1.0, desc=f"sweep lr={lr} batch={batch_size}")
    return {"lr": lr, "batch_size": batch_size, "steps": steps, "seed": seed, "threads": torch.get_num_threads(),
            "cpu_seconds": round(time.process_time() - cpu, 1),
            "sweep_val_loss": lm.evaluate_loss(model, held, 128, n_windows=n_windows)}


def load_sweep() -> list[dict]:
    """The recorded sweep: one dict per configuration (see `sweep_one`); empty if none was run."""
    import json
    return json.loads(SWEEP_FILE.read_text()) if SWEEP_FILE.is_file() else []


if __name__ == "__main__":  # python -m glassbox.studies.shakespeare LR BATCH STEPS: run one configuration, append it
    import json
    import sys
    row = sweep_one(float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    SWEEP_FILE.write_text(json.dumps(load_sweep() + [row], indent=1) + "\n")
    print(row)
