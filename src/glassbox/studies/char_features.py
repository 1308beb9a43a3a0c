"""Features of a character-level language model, read without a person in the loop: simple rules over
the characters, how well the best rule predicts when a unit fires, and text dashboards.

    book = RuleBook.from_text(train_text)                  # rules: "char 'e'", "after '\\n'", "bigram 'th'", ...
    codes = book.codes(val_text)                           # (n, n_vars) int codes, one row per character
    fit = fit_rules(acts_val, book, codes)                 # best rule and threshold per unit, on validation
    f1 = score_rules(acts_test, book, book.codes(test_text), fit)   # their F1 on test text, once
    display(HTML(contexts_html(test_text, acts_test[:, j])))        # top contexts, each character shaded

A *unit* is anything with one activation per character: a neuron, an SAE latent, a random direction.
Activations are read at the character itself (position t sees characters 0..t), so the rules describe
the character and what precedes it. Shapes: `n` characters, `units` units, `rules` rules.
"""
import html
import math
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from glassbox import checks, training

CLASSES = {  # character classes a rule can name (besides single characters)
    "lowercase": str.islower, "uppercase": str.isupper, "letter": str.isalpha, "digit": str.isdigit,
    "space": lambda c: c == " ", "newline": lambda c: c == "\n", "punctuation": lambda c: c in ".,;:!?'-&$",
    "vowel": lambda c: c.lower() in "aeiou",
}
VARIABLES = ("char", "prev", "bigram", "trigram", "word_position", "speaker_line", "caps_word")
MIN_SECOND = 0.25  # a unit "needs a second rule" when one newly covers at least this share of its top characters
SIZES = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5)  # predicted-set sizes tried, as shares of n


def _show(c: str) -> str:
    return {"\n": "\\n", " ": "␣"}.get(c, c)


@dataclass
class RuleBook:
    """Named binary rules over characters, each a set of values of one categorical variable (see VARIABLES).

    tables[k] is a (values of variable k, rules on k) boolean table; rule names are in `names`, grouped by variable.
    """

    chars: str  # the vocabulary (token id i is chars[i])
    bigrams: list[str]  # bigrams (previous, current) with a rule of their own
    trigrams: list[str]  # trigrams with a rule of their own
    tables: list[Bool[Tensor, "values rules"]]
    names: list[str]

    @classmethod
    def from_text(cls, text: str, chars: str | None = None, n_bigrams: int = 300, n_trigrams: int = 300) -> "RuleBook":
        """The rule book: every character and class, as current or previous character, the most frequent
        bigrams and trigrams of `text`, position in a word (1, 2, 3, 4+), inside a speaker's name line, inside an all-caps word."""
        chars = chars or "".join(sorted(set(text)))
        bigrams = [b for b, _ in Counter(text[i:i + 2] for i in range(len(text) - 1)).most_common(n_bigrams)]
        trigrams = [t for t, _ in Counter(text[i:i + 3] for i in range(len(text) - 2)).most_common(n_trigrams)]
        tables, names = [], []
        for prefix, values in (("char", list(chars)), ("after", list(chars) + [""])):
            single = torch.eye(len(values), len(chars), dtype=torch.bool)
            classes = torch.tensor([[bool(c) and f(c) for f in CLASSES.values()] for c in values])
            tables.append(torch.cat([single, classes], 1))
            names += [f"{prefix} '{_show(c)}'" for c in chars] + [f"{prefix} {k}" for k in CLASSES]
        for kind, grams in (("bigram", bigrams), ("trigram", trigrams)):
            tables.append(torch.eye(len(grams) + 1, len(grams), dtype=torch.bool))  # last value: any other
            names += [f"{kind} '{''.join(map(_show, g))}'" for g in grams]
        tables.append(torch.eye(5, dtype=torch.bool)[:, 1:])  # word position 0 (not in a word), 1, 2, 3, 4+
        names += ["1st letter of a word", "2nd letter of a word", "3rd letter of a word", "4th+ letter of a word"]
        for name in ("in a speaker's name line", "in an all-caps word"):
            tables.append(torch.tensor([[False], [True]]))
            names.append(name)
        return cls(chars, bigrams, trigrams, tables, names)

    @property
    def n_rules(self) -> int:
        return len(self.names)

    @property
    def char_rules(self) -> Bool[Tensor, "rules"]:
        """The rules naming the current character itself ("char 'o'"): a specificity cap must never bar them."""
        return torch.tensor([n.startswith("char '") for n in self.names])

    def codes(self, text: str) -> Int[Tensor, "n n_vars"]:
        """Each character's value of every variable (columns in the order of VARIABLES)."""
        index = {c: i for i, c in enumerate(self.chars)}
        char = torch.tensor([index[c] for c in text])
        prev = torch.cat([torch.tensor([len(self.chars)]), char[:-1]])
        big, tri = {g: i for i, g in enumerate(self.bigrams)}, {g: i for i, g in enumerate(self.trigrams)}
        bigram = torch.tensor([big.get(text[max(i - 1, 0):i + 1], len(big)) if i >= 1 else len(big) for i in range(len(text))])
        trigram = torch.tensor([tri.get(text[i - 2:i + 1], len(tri)) if i >= 2 else len(tri) for i in range(len(text))])
        return torch.stack([char, prev, bigram, trigram, _word_positions(text), _speaker_lines(text), _caps_words(text)], 1)

    def matrix(self, codes: Int[Tensor, "n n_vars"]) -> Bool[Tensor, "n rules"]:
        """Which rules hold at each character."""
        return torch.cat([table[codes[:, k]] for k, table in enumerate(self.tables)], 1)

    def counts(self, codes: Int[Tensor, "n n_vars"]) -> Int[Tensor, "rules"]:
        """On how many characters each rule holds."""
        return torch.cat([torch.bincount(codes[:, k], minlength=len(t)).float() @ t.float() for k, t in enumerate(self.tables)]).long()


def _word_positions(text: str) -> Int[Tensor, "n"]:
    """0 outside a word, else the letter's position in its word (1, 2, 3, capped at 4)."""
    out, run = [], 0
    for c in text:
        run = run + 1 if c.isalpha() else 0
        out.append(min(run, 4))
    return torch.tensor(out)


def _speaker_lines(text: str) -> Int[Tensor, "n"]:
    """1 on the characters of a line that is a speaker's name ("ROMEO:", "First Citizen:"), newline excluded."""
    out = []
    for line in text.split("\n"):
        is_name = line.endswith(":") and 1 < len(line) <= 40 and line[0].isupper()
        out += [int(is_name)] * len(line) + [0]
    return torch.tensor(out[: len(text)])


def _caps_words(text: str) -> Int[Tensor, "n"]:
    """1 on the letters of a word of two or more letters that are all upper case."""
    out, i = [0] * len(text), 0
    while i < len(text):
        j = i
        while j < len(text) and text[j].isalpha():
            j += 1
        if j - i >= 2 and text[i:j].isupper():
            out[i:j] = [1] * (j - i)
        i = max(j, i + 1)
    return torch.tensor(out)


@dataclass
class RuleFit:
    """Per unit: its best rule (index into RuleBook.names), the activation threshold, and the F1 where chosen."""

    rule: Int[Tensor, "units"]
    threshold: Float[Tensor, "units"]
    f1: Float[Tensor, "units"]


def _sizes(n: int, sizes: tuple[float, ...]) -> Int[Tensor, "n_sizes"]:
    """Predicted-set sizes in characters; the last, n, stands for "every positive activation"."""
    return torch.tensor(sorted({max(1, round(s * n)) for s in sizes} | {n}))


@torch.no_grad()
def fit_rules(acts: Float[Tensor, "n units"], book: RuleBook, codes: Int[Tensor, "n n_vars"], *,
              sizes: tuple[float, ...] = SIZES, chunk: int | None = None) -> RuleFit:
    """For every unit, the rule and threshold that best predict where it fires (F1 of "activation >= threshold"
    against "rule holds"), searching every rule and the thresholds that keep the top s of the characters
    (s in `sizes`, only positive activations) or every positive activation. A unit positive nowhere gets rule -1, F1 0."""
    n, units = checks.tensor(acts, "acts", ndim=2, floating=False).shape
    if len(codes) != n:
        raise ValueError(f"one row of codes per activation expected: {n} activations, {len(codes)} code rows")
    size = _sizes(n, sizes)
    chunk = chunk or max(16, 2**21 // n)  # units per block: about two million (unit, character) pairs
    n_rule = book.counts(codes).float()
    rules, thresholds, f1s = [], [], []
    for block in acts.T.split(chunk):
        values, order = block.sort(dim=1, descending=True)  # (u, n)
        n_pos = (values > 0).sum(1)
        bucket = torch.searchsorted(size, torch.arange(n), right=True)  # rank r is in the top s_j for j >= bucket[r]
        bucket = torch.where(values > 0, bucket, len(size))  # (u, n): non-positive never predicted
        tp = []
        for k, table in enumerate(book.tables):
            v = codes[order, k]  # (u, n): the variable's value at each ranked character
            flat = (torch.arange(len(block))[:, None] * (len(size) + 1) + bucket) * len(table) + v
            hist = torch.bincount(flat.flatten(), minlength=len(block) * (len(size) + 1) * len(table))
            hist = hist.view(len(block), len(size) + 1, len(table))[:, :-1].float().cumsum(1)
            tp.append(hist @ table.float())  # (u, sizes, rules on k)
        tp = torch.cat(tp, 2)
        n_pred = torch.minimum(size[None], n_pos[:, None]).float()  # (u, sizes)
        f1 = 2 * tp / (n_pred[:, :, None] + n_rule[None, None]).clamp(min=1)
        best, idx = f1.flatten(1).max(1)
        s_idx, r_idx = idx // book.n_rules, idx % book.n_rules
        rank = (torch.minimum(size[s_idx], n_pos) - 1).clamp(min=0)
        thresholds.append(torch.where(n_pos > 0, values.gather(1, rank[:, None])[:, 0], torch.inf))
        rules.append(torch.where(n_pos > 0, r_idx, -1))
        f1s.append(torch.where(n_pos > 0, best, 0.0))
    return RuleFit(torch.cat(rules), torch.cat(thresholds), torch.cat(f1s))


@torch.no_grad()
def score_rules(acts: Float[Tensor, "n units"], book: RuleBook, codes: Int[Tensor, "n n_vars"], fit: RuleFit,
                chunk: int = 256) -> dict[str, Float[Tensor, "units"]]:
    """F1, precision and recall of each unit's fitted rule and threshold on other text (e.g. the test split)."""
    checks.tensor(acts, "acts", ndim=2, floating=False)
    if acts.shape[1] != len(fit.rule):
        raise ValueError(f"the fit has {len(fit.rule)} units, the activations {acts.shape[1]}")
    truth_all = book.matrix(codes)  # (n, rules)
    out = {"f1": [], "precision": [], "recall": []}
    for cols in torch.arange(acts.shape[1]).split(chunk):
        pred = (acts[:, cols] >= fit.threshold[cols]) & (acts[:, cols] > 0)
        truth = truth_all[:, fit.rule[cols].clamp(min=0)] & (fit.rule[cols] >= 0)
        tp = (pred & truth).sum(0).float()
        out["f1"].append(2 * tp / (pred.sum(0) + truth.sum(0)).clamp(min=1))
        out["precision"].append(tp / pred.sum(0).clamp(min=1))
        out["recall"].append(tp / truth.sum(0).clamp(min=1))
    return {k: torch.cat(v) for k, v in out.items()}


def f1_score(pred: Bool[Tensor, "n"], truth: Bool[Tensor, "n"]) -> float:
    """F1 of a binary prediction (2 TP / (predicted + true)); 0 when both are empty. 0/1 integers count as bools."""
    pred, truth = _binary(pred, "pred"), _binary(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {tuple(pred.shape)} and {tuple(truth.shape)}")
    tp = (pred & truth).sum().item()
    return 2 * tp / max(pred.sum().item() + truth.sum().item(), 1)


def _binary(value: Tensor, name: str) -> Bool[Tensor, "n"]:
    """`value` as a bool tensor: bools as they are, integers only when every entry is 0 or 1."""
    checks.tensor(value, name, floating=False)
    if value.dtype == torch.bool:
        return value
    if value.is_floating_point() or not ((value == 0) | (value == 1)).all():
        raise TypeError(f"{name} must be a bool tensor (or 0/1 integers), got {value.dtype} with values "
                        f"{value.unique()[:5].tolist()}; threshold it first, e.g. acts > 0")
    return value.bool()


def _allowed(truth: Bool[Tensor, "n rules"], max_base_rate: float, always: Bool[Tensor, "rules"] | None) -> Bool[Tensor, "rules"]:
    """Rules a cover may use: those true on at most `max_base_rate` of characters, plus every rule in `always`."""
    allowed = truth.float().mean(0) <= max_base_rate
    if always is not None:
        if always.shape != allowed.shape:
            raise ValueError(f"always must hold one flag per rule ({len(allowed)}), got shape {tuple(always.shape)}")
        allowed |= always.bool()
    return allowed


def greedy_cover(acts: Float[Tensor, "n"], truth: Bool[Tensor, "n rules"], *, k: int = 100, max_base_rate: float = 0.05,
                 n_rules: int = 3, always: Bool[Tensor, "rules"] | None = None) -> list[tuple[int, float]]:
    """Which rules explain the unit's top-k characters: repeatedly the allowed rule covering most of the still
    unexplained ones. A rule is allowed if it holds on at most `max_base_rate` of characters or is flagged in
    `always` (e.g. `RuleBook.char_rules`: a cap must never bar naming the character itself). Returns (rule,
    share of the top k it newly covers) pairs, largest first: one big share is a monosemantic unit, several are not."""
    checks.tensor(acts, "acts", ndim=1, floating=False)
    top = acts.topk(k).indices
    allowed = _allowed(truth, max_base_rate, always)
    left = torch.ones(k, dtype=torch.bool)
    out = []
    for _ in range(n_rules):
        gain = (truth[top] & left[:, None]).sum(0).masked_fill(~allowed, -1)
        r = int(gain.argmax())
        if gain[r] <= 0:
            break
        out.append((r, gain[r].item() / k))
        left &= ~truth[top, r]
    return out


@torch.no_grad()
def cover_shares(acts: Float[Tensor, "n units"], truth: Bool[Tensor, "n rules"], *, k: int = 100, max_base_rate: float = 0.05,
                 always: Bool[Tensor, "rules"] | None = None) -> Float[Tensor, "units 2"]:
    """The first two steps of `greedy_cover` for every unit: the share of its k top characters the best allowed
    rule covers, and the share the next rule newly covers. NaN rows for a unit positive on fewer than k characters."""
    checks.tensor(acts, "acts", ndim=2, floating=False)
    if len(acts) != len(truth):
        raise ValueError(f"one row of rules per activation expected: {len(acts)} activations, {len(truth)} rows")
    specific = truth[:, _allowed(truth, max_base_rate, always)]
    values, top = acts.topk(k, dim=0)  # (k, units)
    out = torch.empty(acts.shape[1], 2)
    for u in range(acts.shape[1]):
        hit = specific[top[:, u]]  # (k, allowed rules)
        counts = hit.sum(0)
        first = int(counts.argmax())
        out[u, 0] = counts[first]
        out[u, 1] = (hit & ~hit[:, first:first + 1]).sum(0).max()
    return (out / k).masked_fill(values[-1][:, None] <= 0, float("nan"))


def is_polysemantic(shares: Float[Tensor, "units 2"], min_second: float = MIN_SECOND) -> Bool[Tensor, "units"]:
    """A unit needs a second, unrelated rule: after the best rule, another newly covers at least `min_second`
    of its top characters (no single allowed rule, classes included, covers both). False for NaN rows."""
    return shares[:, 1] >= min_second


def mix_scales(pair: Float[Tensor, "n 2"], *, k: int = 100, share_b: float = 0.5) -> Float[Tensor, "2"]:
    """Divisors that make the sum of two units (pair[:, 0] / s[0] + pair[:, 1] / s[1]) draw `share_b` of its top k
    from the second: each unit's activation at the rank of its share of the k (the first at (1 - share_b) k, the
    second at share_b k). Exact on `pair`'s own text when the two never fire together; scaling both by their k-th
    largest instead lets the one with the heavier tail take most of the top k."""
    checks.tensor(pair, "pair", ndim=2)
    if pair.shape[1] != 2 or not 0 < share_b < 1:
        raise ValueError(f"pair must be (n, 2) and share_b in (0, 1); got {tuple(pair.shape)} and {share_b}")
    ranks = [max(1, round((1 - share_b) * k)), max(1, round(share_b * k))]
    return torch.stack([pair[:, i].topk(r).values[-1] for i, r in enumerate(ranks)]).clamp(min=1e-9)


def lookup_units(truth: Bool[Tensor, "n rules"], *, seed: int = 0, low: float = 0.5) -> Float[Tensor, "n rules"]:
    """Lookup units, one per rule column: each is positive exactly where its rule holds, at a random strength in
    [low, 1] (no context, no position beyond the rule itself). A control: a sum of two of them (`mix_pairs`) is two
    unrelated patterns by construction."""
    checks.tensor(truth, "truth", ndim=2, floating=False)
    if not 0 < low <= 1:
        raise ValueError(f"low must be in (0, 1], got {low}")
    gen = torch.Generator().manual_seed(seed)
    return truth.float() * (low + (1 - low) * torch.rand(truth.shape, generator=gen))


def mix_pairs(fit_units: Float[Tensor, "n_fit units"], units: Float[Tensor, "n units"], pairs: list[tuple[int, int]], *,
              k: int = 100, share_b: float = 0.5) -> Float[Tensor, "n pairs"]:
    """For each pair (a, b), the sum units[:, a] / s_a + units[:, b] / s_b with the divisors `mix_scales` sets on
    `fit_units` (b supplies `share_b` of the sum's top k there): a unit built to have two patterns, scaled on one
    text and read on another."""
    checks.tensor(fit_units, "fit_units", ndim=2, floating=False)
    checks.tensor(units, "units", ndim=2, floating=False)
    if fit_units.shape[1] != units.shape[1]:
        raise ValueError(f"fit_units and units must hold the same units: {fit_units.shape[1]} vs {units.shape[1]}")
    if not pairs:
        return units.new_zeros(len(units), 0)
    return torch.stack([(units[:, [a, b]] / mix_scales(fit_units[:, [a, b]], k=k, share_b=share_b)).sum(1) for a, b in pairs], 1)


def bootstrap_median_gap(a: Float[Tensor, "n_a"], b: Float[Tensor, "n_b"], *, n_boot: int = 1000, level: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]:
    """median(a) - median(b), with a percentile bootstrap interval over units (each group resampled with
    replacement on its own). NaNs are dropped. Returns (gap, low, high)."""
    a, b = (checks.tensor(x, name, ndim=1, floating=False, finite=False).float() for x, name in ((a, "a"), (b, "b")))
    a, b = a[~a.isnan()], b[~b.isnan()]  # NaN: a unit without a value (e.g. positive on fewer than k characters)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"both groups need a non-NaN value, got {len(a)} and {len(b)}")
    gen = torch.Generator().manual_seed(seed)
    ia, ib = (torch.randint(0, len(x), (n_boot, len(x)), generator=gen) for x in (a, b))
    gaps = _median(a[ia]) - _median(b[ib])
    tail = (1 - level) / 2
    return (_median(a) - _median(b)).item(), gaps.quantile(tail).item(), gaps.quantile(1 - tail).item()


def _median(x: Float[Tensor, "... n"]) -> Float[Tensor, "..."]:
    """The median over the last dimension, the mean of the two middle values when n is even (as numpy's; torch's
    `median` takes the lower one, which disagreed with the medians the notebook reports)."""
    return x.quantile(0.5, dim=-1)  # linear interpolation: the mean of the two middle values for even n


def split_coverage(parent: Float[Tensor, "n"], children: Float[Tensor, "n c"]) -> dict[str, float]:
    """How a parent unit's firings divide among its children (all read on the same characters): the share of
    characters where the parent fires on which at least one child fires (`covered`), the largest share one child
    covers (`best_child`), and the share of those covered characters where two or more children fire (`cofire`)."""
    checks.tensor(parent, "parent", ndim=1, floating=False)
    checks.tensor(children, "children", ndim=2, floating=False)
    if len(parent) != len(children):
        raise ValueError(f"parent and children must be read on the same characters: {len(parent)} vs {len(children)}")
    on = parent > 0
    if not on.any():
        raise ValueError("the parent never fires: nothing to divide")
    kids = (children[on] > 0)
    n_on = kids.sum(1)
    covered = (n_on > 0).float().mean().item()
    return {"covered": covered, "best_child": kids.float().mean(0).max().item() if kids.shape[1] else 0.0,
            "cofire": (n_on >= 2).float().sum().item() / max((n_on > 0).sum().item(), 1)}


# ---- text dashboards: activations drawn on the characters (plain HTML, no script: works offline everywhere) ----

def _shade(value: float, top: float) -> str:
    a = max(0.0, min(1.0, value / top)) if top > 0 else 0.0
    return f"rgba(255,120,0,{a:.2f})" if value >= 0 else f"rgba(0,110,255,{min(1.0, -value / top):.2f})"


def context_html(text: str, acts: Float[Tensor, "n"], center: int, *, left: int = 40, right: int = 8,
                 top: float | None = None) -> str:
    """One line of HTML: the characters around `center`, each shaded by its activation, `center` boxed."""
    lo, hi = max(0, center - left), min(len(text), center + right + 1)
    top = float(top if top is not None else acts[lo:hi].abs().max().clamp(min=1e-9))
    spans = []
    for i in range(lo, hi):
        c = "↵" if text[i] == "\n" else html.escape(text[i])
        box = "outline:1px solid #000;" if i == center else ""
        spans.append(f'<span title="{acts[i].item():.2f}" style="background:{_shade(acts[i].item(), top)};{box}">{c}</span>')
    return "".join(spans)


def contexts_html(text: str, acts: Float[Tensor, "n"], *, k: int = 10, title: str = "", left: int = 40,
                  right: int = 8, positions: Int[Tensor, "m"] | None = None) -> str:
    """An HTML table of the unit's k top-activating characters (or the given `positions`) in context."""
    if len(text) != len(acts):
        raise ValueError(f"one activation per character expected: {len(text)} characters, {len(acts)} activations")
    pos = acts.topk(k).indices if positions is None else positions
    top = acts.max().item()
    rows = "".join(f'<tr><td style="text-align:right;padding-right:8px">{acts[p].item():.2f}</td>'
                   f'<td style="font-family:monospace;white-space:pre;text-align:left">'
                   f'{context_html(text, acts, int(p), left=left, right=right, top=top)}</td></tr>' for p in pos)
    head = f"<div style='font-weight:600;margin:6px 0 2px'>{html.escape(title)}</div>" if title else ""
    return f"{head}<table style='border-collapse:collapse;font-size:13px'>{rows}</table>"


def direct_logit_effect(direction: Float[Tensor, "d_model"], W_U: Float[Tensor, "d_model d_vocab"],
                        ln_weight: Float[Tensor, "d_model"] | None = None) -> Float[Tensor, "d_vocab"]:
    """The logits a residual-stream direction pushes through the final LayerNorm's centring and weight and
    the unembedding, centred over the vocabulary (LayerNorm's positive scale changes only the size)."""
    d = direction - direction.mean()
    if ln_weight is not None:
        d = d * ln_weight
    logits = d @ W_U
    return logits - logits.mean()


def random_topk_latents(acts: Float[Tensor, "n d_in"], d_sae: int, k: int, *, center: Float[Tensor, "d_in"] | None = None,
                        seed: int = 0) -> tuple[Float[Tensor, "n d_sae"], Float[Tensor, "d_sae d_in"]]:
    """A control dictionary: `d_sae` random unit directions, encoded like a TopK SAE (the k largest positive
    projections of the centred activations kept, the rest zero). Returns the latents and the directions."""
    checks.tensor(acts, "acts", ndim=2)
    gen = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(d_sae, acts.shape[1], generator=gen), dim=1)
    proj = (acts - (acts.mean(0) if center is None else center)) @ directions.T
    values, idx = proj.topk(k, dim=1)
    return torch.zeros_like(proj).scatter_(1, idx, values.clamp(min=0)), directions


@torch.no_grad()
def generate(model, prompts: Int[Tensor, "batch pos"], n_new: int, *, n_ctx: int, fwd_hooks: list | None = None,
             temperature: float = 1.0, seed: int = 0) -> Int[Tensor, "batch n_new"]:
    """`n_new` sampled tokens after each prompt, with TransformerLens `fwd_hooks` active at every step
    (e.g. one that adds a feature's direction): the steered continuation."""
    if checks.count(n_ctx, "n_ctx", 0) < 1:
        raise ValueError(f"n_ctx (the model's context length) must be at least 1, got {n_ctx}; pass model.cfg.n_ctx")
    checks.count(n_new, "n_new", 0)
    checks.tensor(prompts, "prompts", ndim=2, floating=False)
    if prompts.is_floating_point():
        raise TypeError(f"prompts must be integer token ids (batch, pos), got {prompts.dtype}")
    gen = torch.Generator().manual_seed(seed)  # sampling on the CPU: the same draws on every device
    tokens = prompts.to(training.model_device(model, prompts)).clone()
    for _ in range(n_new):
        logits = model.run_with_hooks(tokens[:, -n_ctx:], fwd_hooks=fwd_hooks or [])[:, -1]
        probs = F.softmax(logits / max(temperature, 1e-6), -1)
        tokens = torch.cat([tokens, torch.multinomial(probs.cpu(), 1, generator=gen).to(tokens.device)], 1)
    return tokens[:, prompts.shape[1]:]


def dashboard_figure(acts: Float[Tensor, "n"], effect: Float[Tensor, "d_vocab"], chars: str, *, n_chars: int = 8,
                     title: str = ""):
    """Two panels of a text feature dashboard: the histogram of the unit's non-zero activations, and the
    `n_chars` next characters its logit effect promotes most and suppresses most."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if len(effect) != len(chars):
        raise ValueError(f"one logit effect per character expected: {len(effect)} effects, {len(chars)} characters")
    on = acts[acts > 0]
    order = effect.argsort(descending=True)
    picked = torch.cat([order[:n_chars], order[-n_chars:]])
    fig = make_subplots(1, 2, subplot_titles=[f"activations (non-zero on {len(on) / len(acts):.2%} of characters)",
                                              "logit effect: next characters promoted / suppressed"])
    fig.add_trace(go.Histogram(x=on.tolist(), nbinsx=40, marker_color="gray", showlegend=False), 1, 1)
    fig.add_trace(go.Bar(x=[repr(chars[i])[1:-1] or "?" for i in picked.tolist()], y=effect[picked].tolist(), showlegend=False,
                         marker_color=["#2ca02c" if v >= 0 else "#d62728" for v in effect[picked].tolist()]), 1, 2)
    fig.update_xaxes(title_text="activation", row=1, col=1)
    fig.update_yaxes(title_text="characters", row=1, col=1)
    fig.update_xaxes(type="category", row=1, col=2)
    fig.update_layout(title=title, height=320, margin=dict(t=70, b=40, l=50, r=20))
    return fig


def top_rule_share(acts: Float[Tensor, "n units"], truth: Bool[Tensor, "n rules"], *, k: int = 100,
                   max_base_rate: float = 0.05, always: Bool[Tensor, "rules"] | None = None) -> Float[Tensor, "units"]:
    """For each unit, the largest share of its k top-activating characters that one allowed rule (see
    `greedy_cover`) covers: the first step of `greedy_cover`. NaN for a unit positive on fewer than k."""
    return cover_shares(acts, truth, k=k, max_base_rate=max_base_rate, always=always)[:, 0]


def char_rate(out: Int[Tensor, "batch n_new"], ids: Int[Tensor, "c"]) -> float:
    """The share of generated tokens that are one of `ids` (e.g. the characters a latent promotes)."""
    checks.tensor(out, "out", floating=False)
    return torch.isin(out, ids.to(out.device)).float().mean().item()


def steering_table(model, prompts: Int[Tensor, "batch pos"], hook_name: str, directions: dict[str, Float[Tensor, "d"]],
                   char_sets: dict[str, Int[Tensor, "c"]], scales: list[float], *, norm: float = 1.0, n_new: int, n_ctx: int,
                   seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """Steer with every direction at every scale (`scale * norm * direction` added at `hook_name` at every position while
    sampling from `prompts`, the same draws for all) and count every character set in the output:
    table[f"{scale:g}"][direction][chars] = share of generated characters in that set; scale "0" is unsteered."""
    table = {}
    for scale in [0.0, *scales]:
        row = {}
        for name, d in (directions.items() if scale else [("none", None)]):
            hooks = [(hook_name, lambda act, hook, d=d: act + scale * norm * d)] if d is not None else []
            out = generate(model, prompts, n_new, n_ctx=n_ctx, fwd_hooks=hooks, temperature=1.0, seed=seed)
            row[name] = {c: char_rate(out, ids) for c, ids in char_sets.items()}
        table[f"{scale:g}"] = row
    return table


def best_of_groups(model, prompts: Int[Tensor, "batch pos"], hook_name: str, candidates: Float[Tensor, "n d"],
                   char_sets: list[Int[Tensor, "c"]], rivals: dict[str, Float[Tensor, "d"]], *, group: int, scale: float,
                   norm: float = 1.0, n_new: int, n_ctx: int, seed: int = 0) -> tuple[list[int], list[float]]:
    """Of each `group` consecutive candidate directions, the one a steering feature is chosen by: pushed at `scale` (`steering_table`),
    the largest lead of the share of its own characters (`char_sets`, one per candidate) over the most any rival's push gives
    them. Returns the index of each group's choice into `candidates` and its lead."""
    if len(candidates) % checks.count(group, "group", 0) or len(candidates) != len(char_sets) or not rivals:
        raise ValueError(f"candidates ({len(candidates)}) must split into groups of {group}, with one char set each "
                         f"({len(char_sets)}) and at least one rival ({len(rivals)})")
    names = [f"candidate {i}" for i in range(len(candidates))]
    row = steering_table(model, prompts, hook_name, dict(zip(names, candidates)) | rivals, dict(zip(names, char_sets)), [scale],
                         norm=norm, n_new=n_new, n_ctx=n_ctx, seed=seed)[f"{scale:g}"]
    lead = torch.tensor([row[c][c] - max(row[r][c] for r in rivals) for c in names]).view(-1, group)
    best = lead.argmax(1)
    return (torch.arange(len(lead)) * group + best).tolist(), lead.max(1).values.tolist()


@torch.no_grad()
def shuffled_f1(acts_fit: Float[Tensor, "n_fit units"], acts_test: Float[Tensor, "n units"], book: RuleBook,
                fit_codes: Int[Tensor, "n_fit n_vars"], test_codes: Int[Tensor, "n n_vars"], *, seed: int = 0) -> Float[Tensor, "units"]:
    """The chance level of `fit_rules` + `score_rules` for each unit: the same search and score with each text's characters
    shuffled (the unit's activations permuted, so it fires as often, on no character in particular). F1 rewards units that
    fire often; subtract this to compare units of different densities. NaN for units positive nowhere on the fit text."""
    gen = torch.Generator().manual_seed(seed)
    a_fit, a_test = (a[torch.randperm(len(a), generator=gen)] for a in (acts_fit, acts_test))
    fit = fit_rules(a_fit, book, fit_codes)
    return score_rules(a_test, book, test_codes, fit)["f1"].masked_fill(fit.rule < 0, float("nan"))


def rules_to_cover(acts: Float[Tensor, "n units"], truth: Bool[Tensor, "n rules"], *, share: float = 0.8, n_intervals: int = 5,
                   per_interval: int = 20, max_base_rate: float = 0.05, always: Bool[Tensor, "rules"] | None = None,
                   max_rules: int = 10, seed: int = 0) -> Float[Tensor, "units"]:
    """For every unit, how many allowed rules (see `greedy_cover`) it takes to cover `share` of a sample of the characters
    where it fires, drawn across its whole activation range: up to `per_interval` characters at random from each of
    `n_intervals` equal intervals between 0 and its maximum (as Bricken et al. 2023 sampled for their human ratings), so weak
    firings count as much as the strongest. `max_rules + 1` when `max_rules` rules do not reach `share`; NaN for a unit with
    fewer than `per_interval` positive characters. One rule: one pattern; a lookup unit on m unrelated characters needs about m."""
    checks.tensor(acts, "acts", ndim=2, floating=False)
    if len(acts) != len(truth):
        raise ValueError(f"one row of rules per activation expected: {len(acts)} activations, {len(truth)} rows")
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    allowed = truth[:, _allowed(truth, max_base_rate, always)]
    gen = torch.Generator().manual_seed(seed)
    out = torch.full((acts.shape[1],), float("nan"))
    for u in range(acts.shape[1]):
        a = acts[:, u]
        if (a > 0).sum() < per_interval:
            continue
        level = (a / a.max() * n_intervals).ceil().clamp(max=n_intervals)  # 1..n_intervals where positive, 0 elsewhere
        picks = [torch.where(level == i)[0] for i in range(1, n_intervals + 1)]
        sample = torch.cat([p[torch.randperm(len(p), generator=gen)[:per_interval]] for p in picks])
        hit, left, used = allowed[sample], torch.ones(len(sample), dtype=torch.bool), 0
        while left.float().mean() > 1 - share + 1e-9 and used <= max_rules:
            gain = (hit & left[:, None]).sum(0)
            r = int(gain.argmax())
            if gain[r] <= 0:
                used = max_rules + 1
                break
            left &= ~hit[:, r]
            used += 1
        out[u] = min(used, max_rules + 1)
    return out


def lookup_groups(truth: Bool[Tensor, "n rules"], m: int, n_units: int, *, seed: int = 0, low: float = 0.5) -> Float[Tensor, "n n_units"]:
    """A control for `rules_to_cover`: `n_units` lookup units, each positive on `m` rule columns drawn at random (e.g. m
    unrelated characters), on the same number of characters of each (the rarest's count, the rest drawn at random), at a
    random strength in [low, 1]: m unrelated patterns of equal weight by construction, no context."""
    checks.tensor(truth, "truth", ndim=2, floating=False)
    checks.count(m, "m")
    if m > truth.shape[1]:
        raise ValueError(f"m = {m} columns asked of a truth with {truth.shape[1]}")
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros(len(truth), n_units)
    for u in range(n_units):
        cols = torch.randperm(truth.shape[1], generator=gen)[:m]
        where = [torch.where(truth[:, c])[0] for c in cols]
        n_each = min(len(w) for w in where)
        for w in where:
            pos = w[torch.randperm(len(w), generator=gen)[:n_each]]
            out[pos, u] = torch.maximum(out[pos, u], low + (1 - low) * torch.rand(len(pos), generator=gen))
    return out


def variance_explained(acts: Float[Tensor, "n units"], groups: Int[Tensor, "n"], n_groups: int) -> Float[Tensor, "units"]:
    """Each unit's share of activation variance explained by the group means (eta squared: between-group variance over total),
    e.g. groups = the position in the window or the current character. A constant unit gets 0."""
    acts = checks.tensor(acts, "acts", ndim=2).double()
    checks.tensor(groups, "groups", ndim=1, floating=False)
    if len(groups) != len(acts) or groups.min() < 0 or groups.max() >= n_groups:
        raise ValueError(f"groups must hold one id in 0..{n_groups - 1} per row of acts ({len(acts)} rows), got {len(groups)} ids "
                         f"in {groups.min().item()}..{groups.max().item()}")
    mean = acts.mean(0)
    count = torch.bincount(groups, minlength=n_groups).double()
    means = torch.zeros(n_groups, acts.shape[1], dtype=torch.double).index_add_(0, groups, acts) / count.clamp(min=1)[:, None]
    between = (count[:, None] * (means - mean) ** 2).sum(0)
    total = ((acts - mean) ** 2).sum(0)
    return torch.where(total > 0, between / total.clamp(min=1e-30), torch.zeros_like(total)).float()


def log_odds_lift(rate: float, base_rate: float, n: int) -> float:
    """How far steering moved a character set's share from its own base rate, on the log-odds scale (each share counted
    over `n` generated characters, with half a count added to both sides), so that rare and common sets compare."""
    n = checks.count(n, "n")
    odds = lambda r: (r * n + 0.5) / (n - r * n + 0.5)
    return math.log(odds(rate) / odds(base_rate))


def rank_verdict(lift: float, others: list[float], alpha: float = 0.05) -> dict:
    """A unit's rank among control units, as a p-value p = (k + 1) / (n + 1) (k of n controls as high or higher), and the
    verdict it allows: 'beats' (p < alpha), 'cannot decide' (no control as high but n too small for p < alpha: with
    alpha 0.05 only below 19 controls), 'not shown' (a control as high and p >= alpha: not shown beyond the controls,
    which is not evidence that the unit is like them)."""
    n, k = len(others), sum(o >= lift for o in others)
    p = (k + 1) / (n + 1)
    return {"k": k, "n": n, "p": p, "verdict": "beats" if p < alpha else "cannot decide" if k == 0 else "not shown"}


def matched_rank(lift: float, base: float, others: list[float], other_bases: list[float], *, factor: float = 2.0,
                 alpha: float = 0.05) -> dict:
    """`rank_verdict` against only the controls whose base rate lies within `factor` of the unit's own (base / factor <=
    b <= base * factor), so that like base rates are compared whatever the scale of the lift."""
    return rank_verdict(lift, _near(base, others, other_bases, factor), alpha)


def _near(base: float, others: list[float], other_bases: list[float], factor: float) -> list[float]:
    """The controls' lifts whose base rate lies within `factor` of `base` (base / factor <= b <= base * factor)."""
    if len(others) != len(other_bases):
        raise ValueError(f"one base rate per control expected, got {len(others)} lifts and {len(other_bases)} base rates")
    return [o for o, b in zip(others, other_bases) if base / factor <= b <= base * factor]


def calibrate_rank(lifts: list[float], bases: list[float], others: list[float], other_bases: list[float], *, factor: float = 2.0,
                   alpha: float = 0.05) -> dict:
    """The matched rank's false-positive rate, measured: each poser (a control drawn independently of `others`, given by its lift and
    base rate) is ranked as if it were the unit against the `others` of its own base rate (`matched_rank`). Returns k, the posers
    called a feature ('beats'), of n_able, those with enough near controls that they could be (1 / (n + 1) < alpha), of n; the
    one-sided binomial p of k or more under the rate alpha; and 'fails' when that p < alpha: the rank calls posers features
    clearly more often than its alpha allows (one poser passing once is the event alpha allows, not a failure). Its power: 'void_at',
    the smallest k that fails with n_able posers (None if none can), and 'top_unable', the posers that rose above every near control
    (at least one) without enough of them for p < alpha."""
    if len(lifts) != len(bases):
        raise ValueError(f"one base rate per poser expected, got {len(lifts)} lifts and {len(bases)} base rates")
    return _calibration([matched_rank(x, b, others, other_bases, factor=factor, alpha=alpha) for x, b in zip(lifts, bases)], alpha)


def calibrate_rank_loo(lifts: list[float], bases: list[float], *, factor: float = 2.0, alpha: float = 0.05) -> dict:
    """`calibrate_rank` with each control ranked leave-one-out against the other controls of its base rate: a draw of exchangeable
    directions ranked against its own draw, the case on which the calibration must not fail."""
    if len(lifts) != len(bases):
        raise ValueError(f"one base rate per control expected, got {len(lifts)} lifts and {len(bases)} base rates")
    return _calibration([matched_rank(lifts[i], bases[i], lifts[:i] + lifts[i + 1:], bases[:i] + bases[i + 1:], factor=factor, alpha=alpha)
                         for i in range(len(lifts))], alpha)


def _calibration(ranks: list[dict], alpha: float) -> dict:
    """`calibrate_rank`'s counts, binomial test and power from the posers' `matched_rank` results."""
    from scipy.stats import binom
    k, n_able = sum(r["verdict"] == "beats" for r in ranks), sum(1 / (r["n"] + 1) < alpha for r in ranks)
    p = float(binom.sf(k - 1, n_able, alpha)) if n_able else 1.0
    void_at = next((m for m in range(1, n_able + 1) if binom.sf(m - 1, n_able, alpha) < alpha), None)
    top_unable = sum(r["verdict"] == "cannot decide" and r["n"] >= 1 for r in ranks)
    return {"k": k, "n_able": n_able, "n": len(ranks), "share": k / n_able if n_able else None, "binom_p": p,
            "fails": p < alpha, "void_at": void_at, "top_unable": top_unable, "verdicts": [r["verdict"] for r in ranks]}


def bootstrap_median_dd(a1: Float[Tensor, "n_a1"], b1: Float[Tensor, "n_b1"], a2: Float[Tensor, "n_a2"], b2: Float[Tensor, "n_b2"],
                        *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """A difference of differences of medians, (median(a1) - median(b1)) - (median(a2) - median(b2)), with a percentile
    bootstrap interval over units (each of the four groups resampled on its own). Returns (dd, low, high)."""
    groups = [checks.tensor(x, name, ndim=1, floating=False, finite=False).float()
              for x, name in ((a1, "a1"), (b1, "b1"), (a2, "a2"), (b2, "b2"))]
    groups = [x[~x.isnan()] for x in groups]
    if min(len(x) for x in groups) == 0:
        raise ValueError(f"every group needs a non-NaN value, got sizes {[len(x) for x in groups]}")
    gen = torch.Generator().manual_seed(seed)
    boot = [_median(x[torch.randint(0, len(x), (n_boot, len(x)), generator=gen)]) for x in groups]
    dd = (boot[0] - boot[1]) - (boot[2] - boot[3])
    m = [_median(x) for x in groups]
    tail = (1 - level) / 2
    return ((m[0] - m[1]) - (m[2] - m[3])).item(), dd.quantile(tail).item(), dd.quantile(1 - tail).item()


def rank_against(lift: float, base: float, others: list[float], other_bases: list[float], *, factor: float = 2.0,
                 alpha: float = 0.05) -> dict:
    """A unit's rank among controls two ways: 'matched', against only the controls whose base rate lies within `factor` of its
    own (`matched_rank`, the fair one), with the largest of their lifts (None if none is near); and 'all', against every control (`rank_verdict`), with
    the base rates of the controls as high as the unit ('all_as_high_bases')."""
    return {"matched": matched_rank(lift, base, others, other_bases, factor=factor, alpha=alpha),
            "matched_max": max(_near(base, others, other_bases, factor), default=None), "all": rank_verdict(lift, others, alpha),
            "all_as_high_bases": [b for o, b in zip(others, other_bases) if o >= lift]}


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation of two equal-length lists (average ranks for ties: scipy's); 0 when either is constant."""
    from scipy.stats import spearmanr
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"two lists of the same length >= 2 expected, got {len(x)} and {len(y)}")
    if len(set(x)) < 2 or len(set(y)) < 2:
        return 0.0  # no ranking to correlate (scipy would give NaN)
    return float(spearmanr(x, y).statistic)
