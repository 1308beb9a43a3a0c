"""Indirect object identification (IOI, Wang et al. 2022) at word level: the sentences, the ABC
corrupted distribution, and the small transformer of notebook 11 trained on them.

    vocab = Vocab.default()
    train = make_ioi(4096, vocab, TRAIN_TEMPLATES, vocab.pairs("train"), seed=0)
    test = make_ioi(1024, vocab, HELD_OUT_TEMPLATES, vocab.pairs("held-out"), seed=1)
    abc = make_abc(test, vocab, seed=2)     # same templates and fillers, three distinct random names
    swapped = rename(test, vocab, "ABA")   # the same names, the IO repeated instead of S
    own_names(rename(test, vocab, "CDD"))  # scored on its own names: the IO slot's name minus the S1 slot's
    logit_diff(model(test.tokens)[:, -1], test).mean()  # logit(IO) - logit(S) at the last position
    found = find_circuit(model, test, abc, vocab, threshold=0.1)  # path patching back from the logits, every earlier
                                                                   # head a sender; head classes from measured signatures
    judged = judge_circuit(F, heads, found["circuit"], band=0.1, randoms=[...])  # F(keep): a share of F(M); the circuit's
                                                     # rank among every circuit of its size, completeness beyond faithfulness

"When Mary and John went to the store , John gave a drink to" -> " Mary": the answer is the name that
appears once (the indirect object, IO); the other (the subject, S) appears twice (S1, S2). Every
sentence is left-padded to `n_ctx` so that the answer is always read at the last position; within one
`group` (template and filler) every word sits at the same position, which mean ablation relies on.
"""
import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from glassbox import patching, training
from glassbox.studies import models

NAMES = ["Mary", "John", "Anna", "Paul", "Lisa", "Mark", "Kate", "Tom", "Emma", "Jack", "Sara", "Adam", "Lucy",
         "Sam", "Rose", "Ben", "Jane", "Max", "Nora", "Carl", "Ruth", "Dan", "Amy", "Leo", "Ella", "Ivan", "Zoe",
         "Hugo", "Mia", "Owen"]
PLACES = ["store", "park", "school", "garden", "station", "office", "market", "beach"]
OBJECTS = ["drink", "book", "ball", "key", "pen", "ring", "bag", "cake"]
FILLERS = ["", "Then ,", "Later that day ,", "Afterwards ,", "On a cold morning ,"]  # openings: absolute positions vary
MIDDLES = ["", "soon", "after that ,", "a bit later ,"]  # between the clauses: the distance from the names to S2 varies
# A template is an intro clause with [A] [B] (the first two names in order: ABBA, A is the IO; BABA, B is)
# and the [PLACE], then an action clause with [S], the repeated name. Held out: the intro-action pairs with
# (i + j) % 6 == 0, so that every clause is trained, but never in those combinations.
INTROS = ["When [A] and [B] went to the [PLACE] ,", "[A] and [B] had a long talk at the [PLACE] .",
          "After [A] and [B] arrived at the [PLACE] ,", "[A] and [B] were working at the [PLACE] .",
          "While [A] and [B] were walking to the [PLACE] ,", "[A] met [B] at the [PLACE] ."]
ACTIONS = ["[S] gave a [OBJECT] to", "[S] handed a [OBJECT] to", "[S] decided to give a [OBJECT] to",
           "[S] passed a [OBJECT] to", "[S] showed a [OBJECT] to", "then [S] threw a [OBJECT] to"]
_PAIRS = [(i, j) for i in range(len(INTROS)) for j in range(len(ACTIONS))]
TRAIN_TEMPLATES = [f"{INTROS[i]} {ACTIONS[j]}" for i, j in _PAIRS if (i + j) % 6]
HELD_OUT_TEMPLATES = [f"{INTROS[i]} {ACTIONS[j]}" for i, j in _PAIRS if (i + j) % 6 == 0]
PAD = "<pad>"


@dataclass(frozen=True)
class Vocab:
    """Word-level vocabulary: one token per word, names first (token id = index in `words`)."""

    words: tuple[str, ...]
    names: tuple[str, ...]
    held_out_every: int = 5  # an unordered name pair is held out when (i * 31 + j) % this == 0 (i < j)

    @classmethod
    def default(cls) -> "Vocab":
        """Names, then every other word of the templates, fillers, places and objects, then the pad token."""
        text = " ".join(TRAIN_TEMPLATES + HELD_OUT_TEMPLATES + FILLERS + MIDDLES + PLACES + OBJECTS)
        others = sorted({w for w in text.split() if not w.startswith("[")})
        return cls(tuple(NAMES + others + [PAD]), tuple(NAMES))

    @property
    def d_vocab(self) -> int:
        return len(self.words)

    @property
    def pad(self) -> int:
        return self.words.index(PAD)

    def encode(self, text: str) -> list[int]:
        """Token ids of a space-separated sentence; an unknown word is an error that names it."""
        index = {w: i for i, w in enumerate(self.words)}
        missing = [w for w in text.split() if w not in index]
        if missing:
            raise ValueError(f"words {missing} are not in the vocabulary; add them to the templates' word lists")
        return [index[w] for w in text.split()]

    def decode(self, tokens) -> str:
        """The sentence of token ids, pads left out."""
        return " ".join(self.words[int(t)] for t in tokens if int(t) != self.pad)

    def pairs(self, split: str) -> list[tuple[int, int]]:
        """Ordered (IO, S) name-token pairs of the 'train' or 'held-out' split; a pair and its reverse share a split."""
        if split not in ("train", "held-out"):
            raise ValueError(f"split must be 'train' or 'held-out', got {split!r}")
        n = len(self.names)
        held = lambda i, j: (min(i, j) * 31 + max(i, j)) % self.held_out_every == 0
        return [(i, j) for i, j in itertools.permutations(range(n), 2) if held(i, j) == (split == "held-out")]


@dataclass
class IOIData:
    """A batch of IOI sentences (or their ABC corruptions) and where everything is."""

    tokens: Int[Tensor, "batch n_ctx"]  # left-padded with the pad token; the answer follows the last position
    io: Int[Tensor, "batch"]  # the indirect object's token (the right answer)
    s: Int[Tensor, "batch"]  # the subject's token (appears twice)
    pos: dict[str, Int[Tensor, "batch"]]  # positions of "IO", "S1", "S2" (in ABC: the three names) and "end"
    group: Int[Tensor, "batch"]  # (template, opening, middle) as one int: equal groups have equal positions
    template: Int[Tensor, "batch"]  # index into the template list the data was made from
    abba: Tensor  # bool [batch]: IO named first (ABBA) or second (BABA)
    templates: list[str]

    def __len__(self) -> int:
        return len(self.tokens)

    def sentences(self, vocab: Vocab, n: int = 5) -> list[str]:
        """The first `n` sentences as text."""
        return [vocab.decode(t) for t in self.tokens[:n]]


def _fill(template: str, filler: str, a: str, b: str, s: str, place: str, obj: str, middle: str = "") -> str:
    text = template.replace(" [S]", f" {middle} [S]" if middle else " [S]", 1) if " then [S]" not in template else template.replace(" then [S]", f" {middle} then [S]", 1)
    text = text.replace("[A]", a).replace("[B]", b).replace("[S]", s).replace("[PLACE]", place)
    return " ".join(f"{filler} {text.replace('[OBJECT]', obj)}".split())


def _position(words: list[str], name: str, nth: int) -> int:
    return [i for i, w in enumerate(words) if w == name][nth]


def make_ioi(n: int, vocab: Vocab, templates: list[str], pairs: list[tuple[int, int]], seed: int = 0,
             n_ctx: int = 34) -> IOIData:
    """`n` IOI sentences: template, opening, middle filler, place, object, (IO, S) pair from `pairs` and the
    name order (ABBA or BABA) drawn uniformly at random with `seed`; left-padded to `n_ctx`."""
    if n < 1 or not pairs or not templates:
        raise ValueError(f"need n >= 1 (got {n}), at least one template (got {len(templates)}) and one pair (got {len(pairs)})")
    gen = torch.Generator().manual_seed(seed)
    pick = lambda k: torch.randint(0, k, (n,), generator=gen).tolist()
    t_idx, f_idx, p_idx, o_idx, pair_idx, order, m_idx = (pick(len(templates)), pick(len(FILLERS)), pick(len(PLACES)),
                                                          pick(len(OBJECTS)), pick(len(pairs)), pick(2), pick(len(MIDDLES)))
    rows, io, s, where = [], [], [], {k: [] for k in ("IO", "S1", "S2", "end")}
    for i in range(n):
        io_t, s_t = pairs[pair_idx[i]]
        IO, S = vocab.names[io_t], vocab.names[s_t]
        a, b = (IO, S) if order[i] == 0 else (S, IO)
        words = _fill(templates[t_idx[i]], FILLERS[f_idx[i]], a, b, S, PLACES[p_idx[i]], OBJECTS[o_idx[i]], MIDDLES[m_idx[i]]).split()
        if len(words) > n_ctx:
            raise ValueError(f"a sentence has {len(words)} words, more than n_ctx = {n_ctx}: raise n_ctx")
        offset = n_ctx - len(words)
        rows.append([vocab.pad] * offset + vocab.encode(" ".join(words)))
        io.append(io_t)
        s.append(s_t)
        for key, (name, nth) in {"IO": (IO, 0), "S1": (S, 0), "S2": (S, 1)}.items():
            where[key].append(offset + _position(words, name, nth))
        where["end"].append(n_ctx - 1)
    as_t = lambda v: torch.tensor(v, dtype=torch.long)
    return IOIData(tokens=as_t(rows), io=as_t(io), s=as_t(s), pos={k: as_t(v) for k, v in where.items()},
                   group=(as_t(t_idx) * len(FILLERS) + as_t(f_idx)) * len(MIDDLES) + as_t(m_idx), template=as_t(t_idx),
                   abba=as_t(order) == 0, templates=list(templates))


def make_abc(data: IOIData, vocab: Vocab, seed: int = 0) -> IOIData:
    """The ABC distribution of `data`: each sentence with its three name slots (IO, S1, S2) filled by three
    distinct random names, everything else (template, filler, place, object, positions) unchanged. `io` and
    `s` stay those of the clean sentence, so a metric on ABC logits reads the same two tokens."""
    gen = torch.Generator().manual_seed(seed)
    names = torch.stack([torch.randperm(len(vocab.names), generator=gen)[:3] for _ in range(len(data))])
    tokens = data.tokens.clone()
    rows = torch.arange(len(data))
    for k, key in enumerate(("IO", "S1", "S2")):
        tokens[rows, data.pos[key]] = names[:, k]
    return IOIData(tokens=tokens, io=data.io.clone(), s=data.s.clone(), pos=dict(data.pos), group=data.group.clone(),
                   template=data.template.clone(), abba=data.abba.clone(), templates=data.templates)


def rename(data: IOIData, vocab: Vocab, pattern: str, seed: int = 0) -> IOIData:
    """`data` with its three name slots (IO, S1, S2) refilled by `pattern`, three letters: 'A' the clean IO's name,
    'B' the clean S's, 'C', 'D', 'E' new random names (distinct, and different from A and B). 'CDD': new names,
    the repetition kept; 'ABA': the same names, the IO's repeated (S and IO exchange roles); 'BAB': the same names
    in swapped slots, S still repeated. Everything else, `io` and `s` included, is the clean sentence's."""
    if len(pattern) != 3 or set(pattern) - set("ABCDE"):
        raise ValueError(f"pattern must be three letters of A-E for the slots IO, S1, S2, got {pattern!r}")
    gen, n = torch.Generator().manual_seed(seed), len(vocab.names)
    tokens = data.tokens.clone()
    draws = torch.stack([torch.randperm(n, generator=gen)[:5] for _ in range(len(data))])  # 5 draws: at least 3 are not A or B
    for i in range(len(data)):
        clean = {"A": int(data.io[i]), "B": int(data.s[i])}
        fresh = [int(x) for x in draws[i] if int(x) not in clean.values()]
        fill = clean | dict(zip("CDE", fresh))
        tokens[i, [int(data.pos[k][i]) for k in ("IO", "S1", "S2")]] = torch.tensor([fill[c] for c in pattern])
    return IOIData(tokens=tokens, io=data.io.clone(), s=data.s.clone(), pos=dict(data.pos), group=data.group.clone(),
                   template=data.template.clone(), abba=data.abba.clone(), templates=data.templates)


def own_names(data: IOIData) -> IOIData:
    """`data` scored on its own names: `io` becomes the name in its IO slot and `s` the name in its S1 slot (on a
    clean sentence nothing changes; on CDD the new once-named and repeated names, on ABC two of its three names).
    A corruption that removes both of the clean sentence's names moves the clean names' logit difference to about
    nothing whatever the model does with the repetition; scored on its own names it can tell."""
    rows = torch.arange(len(data))
    return IOIData(tokens=data.tokens, io=data.tokens[rows, data.pos["IO"]].clone(), s=data.tokens[rows, data.pos["S1"]].clone(),
                   pos=dict(data.pos), group=data.group.clone(), template=data.template.clone(), abba=data.abba.clone(),
                   templates=data.templates)


def logit_diff(logits: Float[Tensor, "batch d_vocab"], data: IOIData) -> Float[Tensor, "batch"]:
    """logit(IO) - logit(S) at the last position: Wang et al.'s measure of IOI performance."""
    if logits.ndim == 3:
        logits = logits[:, -1]
    rows = torch.arange(len(data))
    return logits[rows, data.io] - logits[rows, data.s]


def accuracy(logits: Float[Tensor, "batch d_vocab"], data: IOIData) -> float:
    """Share of sentences whose top-1 prediction (over the whole vocabulary) is the IO."""
    if logits.ndim == 3:
        logits = logits[:, -1]
    return (logits.argmax(-1) == data.io).float().mean().item()


def batches(data: IOIData, batch_size: int, seed: int = 0):
    """Endless shuffled minibatches (tokens, IO) of `data`."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(len(data), generator=gen).split(batch_size):
            yield data.tokens[idx], data.io[idx]


def answer_loss(model: nn.Module, batch) -> Tensor:
    """Cross-entropy of the IO at the last position (the only prediction trained)."""
    tokens, io = batch
    return F.cross_entropy(model(tokens)[:, -1], io)


def train_model(config: dict, train: IOIData, *, steps: int, batch_size: int, lr: float, weight_decay: float, seed: int,
                evaluate=None, eval_every: int = 100, desc: str = "train IOI model") -> tuple[nn.Module, training.History]:
    """Notebook 11's recipe: a transformer built from `config` (its init seeded by config['seed']) trained on the
    answers of `train` (`answer_loss`) with AdamW, 50 warm-up steps, cosine decay and the gradient norm clipped at
    1, minibatches shuffled with `seed`. Returns (model, training.History)."""
    model = models.build("transformer", config)
    history = training.train(model, batches(train, batch_size, seed=seed), steps=steps, lr=lr, weight_decay=weight_decay,
                             loss_fn=answer_loss, evaluate=evaluate, eval_every=eval_every, warmup=50, clip_grad=1.0, desc=desc)
    return model, history


def name_three_times(data: IOIData, vocab: Vocab) -> IOIData:
    """The sentences of `data` with the subject named a third time, in a new first sentence ('S went to the
    PLACE .'), never seen in training: a circuit that answers 'the name that is not repeated' still
    answers the IO. `pos['S1']` becomes the new first mention; S2 stays the last."""
    rows = []
    for t, s in zip(data.tokens, data.s):
        words = vocab.decode(t).split()
        place = next(w for w in words if w in PLACES)
        rows.append(f"{vocab.names[s]} went to the {place} . " + " ".join(words))
    n_ctx = data.tokens.shape[1]
    if max(len(r.split()) for r in rows) > n_ctx:
        raise ValueError(f"a sentence with the third mention has more than n_ctx = {n_ctx} words: make the data with a larger n_ctx")
    tokens = torch.tensor([[vocab.pad] * (n_ctx - len(r.split())) + vocab.encode(r) for r in rows])
    pos = {k: v.clone() for k, v in data.pos.items() if k != "S1"}  # right-aligned: the old words keep their positions
    pos["S1"] = torch.tensor([n_ctx - len(r.split()) for r in rows])
    return IOIData(tokens=tokens, io=data.io.clone(), s=data.s.clone(), pos=pos, group=data.group.clone(),
                   template=data.template.clone(), abba=data.abba.clone(), templates=data.templates)


THREE_NAME_TEMPLATE = "When [A] , [B] and [C] went to the [PLACE] , [S] gave a [OBJECT] to"


@dataclass
class ThreeNames:
    """Sentences with three names, one of them repeated at the end: two non-repeated candidates."""

    tokens: Int[Tensor, "batch n_ctx"]
    s: Int[Tensor, "batch"]  # the repeated name
    others: Int[Tensor, "batch 2"]  # the two names that appear once
    s_slot: Int[Tensor, "batch"]  # which of A, B, C (0, 1, 2) is repeated


def make_three_names(n: int, vocab: Vocab, seed: int = 0, n_ctx: int = 34) -> ThreeNames:
    """`n` sentences of THREE_NAME_TEMPLATE (a form never trained: three names, the repeated one in any of
    three slots, so its first mention can sit where no subject ever did) with random distinct names."""
    gen = torch.Generator().manual_seed(seed)
    rows, s, others, slots = [], [], [], []
    for _ in range(n):
        names = torch.randperm(len(vocab.names), generator=gen)[:3].tolist()
        slot = int(torch.randint(0, 3, (), generator=gen))
        place, obj = (PLACES[int(torch.randint(0, len(PLACES), (), generator=gen))],
                      OBJECTS[int(torch.randint(0, len(OBJECTS), (), generator=gen))])
        a, b, c = (vocab.names[i] for i in names)
        text = THREE_NAME_TEMPLATE.replace("[A]", a).replace("[B]", b).replace("[C]", c)
        text = text.replace("[S]", vocab.names[names[slot]]).replace("[PLACE]", place).replace("[OBJECT]", obj)
        rows.append([vocab.pad] * (n_ctx - len(text.split())) + vocab.encode(text))
        s.append(names[slot])
        others.append([x for k, x in enumerate(names) if k != slot])
        slots.append(slot)
    return ThreeNames(torch.tensor(rows), torch.tensor(s), torch.tensor(others), torch.tensor(slots))


# ---- head signatures ---------------------------------------------------------------------------------

@torch.no_grad()
def head_signatures(model: nn.Module, data: IOIData, pad: int) -> dict[str, Float[Tensor, "layer head"]]:
    """Each head's mean attention, over `data`, from END to the IO, to S1 and to S2 (kept apart: the two
    mentions of S can behave differently), from S2 to S1 (duplicate-token) and to the word after S1
    (induction), and from each word to the one before it (previous-token, over the sentence's words only,
    pads left out). On ABC data the same slots hold three different names."""
    _, cache = model.run_with_cache(data.tokens, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    rows, p = torch.arange(len(data)), data.pos
    words = (data.tokens != pad).float()  # batch pos
    prev_mask = words[:, 1:] * words[:, :-1]  # query q and key q - 1 both words
    out = {k: [] for k in ("END->IO", "END->S1", "END->S2", "S2->S1 (duplicate)", "S2->S1+1 (induction)", "previous-token")}
    for layer in range(model.cfg.n_layers):
        a = cache[f"blocks.{layer}.attn.hook_pattern"]  # batch head q k
        at = lambda q, k: a[rows, :, q, k].mean(0)
        for key in ("IO", "S1", "S2"):
            out[f"END->{key}"].append(at(p["end"], p[key]))
        out["S2->S1 (duplicate)"].append(at(p["S2"], p["S1"]))
        out["S2->S1+1 (induction)"].append(at(p["S2"], p["S1"] + 1))
        prev = a.diagonal(offset=-1, dim1=-2, dim2=-1)  # batch head q-1
        out["previous-token"].append((prev * prev_mask[:, None]).sum((0, 2)) / prev_mask.sum())
    return {k: torch.stack(v) for k, v in out.items()}


@torch.no_grad()
def direct_by_position(model: nn.Module, data: IOIData, heads: list[tuple[int, int]]) -> dict[tuple[int, int], dict[str, float]]:
    """Each head's direct contribution to the logit difference at END (what it writes there, through the final
    LayerNorm with its scale frozen at this run's, onto W_U[IO] - W_U[S]), split by the position its attention
    reads: 'IO', 'S1', 'S2' and 'rest' (every other position). Means over `data`; the four parts sum to the
    head's direct logit attribution."""
    if getattr(model.cfg, "normalization_type", None) not in ("LN", "LNPre", None):
        raise ValueError(f"direct_by_position handles LayerNorm or none, got {model.cfg.normalization_type!r}")
    names = {f"blocks.{layer}.attn.hook_{k}" for layer, _ in heads for k in ("pattern", "v")} | {"ln_final.hook_scale"}
    _, cache = model.run_with_cache(data.tokens, names_filter=lambda n: n in names)
    rows, norm = torch.arange(len(data)), model.cfg.normalization_type
    w = model.ln_final.w if norm == "LN" else torch.ones(model.cfg.d_model)
    direction = (w[:, None] * (model.W_U[:, data.io] - model.W_U[:, data.s])).T  # batch d_model
    scale = cache["ln_final.hook_scale"][rows, -1] if norm is not None else torch.ones(len(data), 1)  # batch 1
    out = {}
    for layer, h in heads:
        a = cache[f"blocks.{layer}.attn.hook_pattern"][rows, h, -1]  # batch key
        written = torch.einsum("bk,bkd,de->bke", a, cache[f"blocks.{layer}.attn.hook_v"][:, :, h], model.W_O[layer, h])
        if norm is not None:
            written = written - written.mean(-1, keepdim=True)
        part = torch.einsum("bke,be->bk", written, direction) / scale  # batch key
        row = {k: part[rows, data.pos[k]].mean().item() for k in ("IO", "S1", "S2")}
        out[(layer, h)] = row | {"rest": part.sum(1).mean().item() - sum(row.values())}
    return out


def _name_logits(model: nn.Module, layer: int, head: int, names: list[int]) -> Float[Tensor, "name name"]:
    """Each name's embedding (through LayerNorm 1 where the model has one) through the head's OV circuit and the
    unembedding, read at the names: row i, the logits of every name when the head attends to name i."""
    idx = torch.tensor(names)
    x = model.W_E[idx][None]  # 1 name d_model
    if getattr(model.cfg, "normalization_type", None) is not None:
        x = model.blocks[layer].ln1(x)
    out = (x[0] @ model.W_V[layer, head] + model.b_V[layer, head]) @ model.W_O[layer, head]
    return out @ model.W_U[:, idx]


def _self_minus_others(logits: Float[Tensor, "... name name"], columns: Int[Tensor, "... name"]) -> Float[Tensor, "..."]:
    """Mean over names i of (logit of name columns[i] - mean of the other names' logits) in row i."""
    n = logits.shape[-1]
    own = logits.gather(-1, columns[..., None])[..., 0]
    return (own - (logits.sum(-1) - own) / (n - 1)).mean(-1)


@torch.no_grad()
def name_copying(model: nn.Module, layer: int, head: int, names: list[int]) -> dict[str, float]:
    """Wang et al.'s copying test of a head's OV circuit on the names (section 3.1, in spirit): each name's
    embedding through LayerNorm 1, the head's W_V, W_O and the unembedding. 'top-1' is the share of names whose
    own logit is the largest among the names; 'self minus others' the mean of (own logit - mean of the other
    names' logits). Positive: the head copies the name it attends to; negative: it suppresses it."""
    logits = _name_logits(model, layer, head, names)
    return {"top-1": (logits.argmax(1) == torch.arange(len(names))).float().mean().item(),
            "self minus others": _self_minus_others(logits, torch.arange(len(names))).item()}


@torch.no_grad()
def copying_null(model: nn.Module, layer: int, head: int, names: list[int], n_permutations: int = 1000,
                 q: float = 0.99, seed: int = 0) -> float:
    """The |'self minus others'| (`name_copying`) that a head reaches by the scale of its weights alone: its `q`
    quantile over `n_permutations` random pairings of the names with the unembedding's name columns (name i's output
    scored at name p(i)'s logit). Every weight and norm is kept and only which name is 'own' changes, so a trained
    head, whose weights grew, is held to a bar of its own size. Its sign counts only where |margin| is above this."""
    return _null_of(_name_logits(model, layer, head, names), n_permutations, q, seed)


def _null_of(logits: Float[Tensor, "name name"], n_permutations: int, q: float = 0.99, seed: int = 0) -> float:
    """`copying_null` from a head's name logits (`_name_logits`)."""
    g = torch.Generator().manual_seed(seed)
    pairings = torch.rand(n_permutations, logits.shape[-1], generator=g).argsort(-1)
    return torch.quantile(_self_minus_others(logits.expand(n_permutations, -1, -1), pairings).abs(), q).item()


# ---- the circuit, traced back from the logits -----------------------------------------------------------

def trace(model: nn.Module, data: IOIData, abc: IOIData, threshold: float, min_logit_diff: float = 0.0
          ) -> dict[str, dict[tuple[int, int], float]]:
    """Wang et al.'s path patching back from the logits with ABC as the corrupted input; at every step every head
    of an earlier layer is a sender, so one head can be found at two steps. 'to logits': each head's direct path;
    'to queries': into the queries at END of the heads whose direct path moves the logit difference by at least
    `threshold` (of the strongest one when none does, so that the trace goes on); 'to values': into the values,
    at every position, of every head found so far. Each value: the share of the logit difference moved. A model whose
    clean |logit difference| is below `min_logit_diff` is refused: a share of a near-zero difference is noise."""
    metric = lambda logits: logit_diff(logits, data).mean().item()
    with torch.no_grad():
        clean = metric(model(data.tokens))
    if abs(clean) < min_logit_diff or clean == 0:
        raise ValueError(f"the clean logit difference is {clean:.3f}, below min_logit_diff = {min_logit_diff}: the shares "
                         "path patching reports would divide by noise; trace a model that does the task")
    heads = patching.all_heads(model)
    step = lambda receivers, into="q", positions=None: patching.path_effects(model, data.tokens, abc.tokens, metric, heads,
                                                                         receivers, into, positions)
    to_logits = step(None)
    direct = [h for h, e in to_logits.items() if abs(e) >= threshold] or [max(to_logits, key=lambda h: abs(to_logits[h]))]
    to_queries = step(direct, "q", data.pos["end"])
    found = sorted(set(direct) | {h for h, e in to_queries.items() if e <= -threshold})
    return {"to logits": to_logits, "to queries": to_queries, "to values": step(found, "v")}


# ---- classes from measured signatures, and rules that need no circuit ----------------------------------

CLASSES = ("name mover", "last-name suppressor", "negative name mover", "other direct", "last-name reader",
           "other query input", "duplicate-token", "induction", "other value input")


def reads(attention: dict[str, float]) -> str:
    """Which of 'IO', 'S1', 'S2' a head attends to most from END (`attention`: its END->IO, END->S1, END->S2)."""
    return max(("IO", "S1", "S2"), key=lambda k: attention[f"END->{k}"])


def reading_margin(attention: dict[str, float]) -> float:
    """How much more a head attends from END to the slot it reads most (`reads`) than to the next of IO, S1, S2."""
    values = sorted((attention[f"END->{k}"] for k in ("IO", "S1", "S2")), reverse=True)
    return values[0] - values[1]


def io_share(parts: dict[str, float], floor: float) -> float | None:
    """The IO part of a head's direct effect on the logit difference over its net direct effect (`parts`: its
    `direct_by_position` row; the signed sum of the four parts, so negative parts net out and the share can exceed 1;
    `abs_shares` gives the share by absolute parts); None (no share to speak of) when the net direct effect is below
    `floor` (> 0, in the units of `parts`): a ratio over a near-zero or negative total is noise."""
    if not floor > 0:
        raise ValueError(f"floor must be > 0 (a direct effect in logits below which the share is undefined), got {floor}")
    total = sum(parts.values())
    return parts["IO"] / total if total >= floor else None


def signature_classes(attention: dict[str, float], attention_abc: dict[str, float], copying: float, layer: int, *,
                      read_min: float = 0.0, copy_min: float = 0.0) -> list[str]:
    """The classes whose signature one head has, its path-patching numbers aside: 'name mover' (reads the IO most from
    END, `reads`, and its OV circuit copies names: margin > 0, Wang et al. section 3.1), 'negative name mover' (reads the
    IO, suppresses: margin < 0), 'last-name suppressor' (reads S2, the last name, most on the sentences and on their ABC
    versions, where nothing repeats, and suppresses: it lowers the last name's logit by its slot, not because the name
    repeats or is predicted, so it is not McDougall et al.'s copy suppression), 'last-name reader' (from END, more
    attention to S2 than to the IO on the sentences and on their ABC versions: it reads the last name whether or not it
    repeats), 'duplicate-token' (attention from S2 to S1 higher on the sentences than on their ABC versions: it depends
    on S1 being the same name) and 'induction' (layer >= 1; the same for the word after S1, by more). Magnitude bars: a
    slot is read only with at least `read_min` of the attention (on each set the rule names), and the OV circuit
    copies or suppresses only with a margin of at least `copy_min` either way; without them (0) an untrained head's
    diffuse attention and near-zero margin pass on their argmax and sign alone."""
    if read_min < 0 or copy_min < 0:
        raise ValueError(f"read_min and copy_min must be >= 0, got {read_min} and {copy_min}")
    reads_at = lambda a, k: reads(a) == k and a[f"END->{k}"] >= read_min
    copies, suppresses = copying > 0 and copying >= copy_min, copying < 0 and -copying >= copy_min
    out = []
    out += ["name mover"] if reads_at(attention, "IO") and copies else []
    out += ["last-name suppressor"] if reads_at(attention, "S2") and reads_at(attention_abc, "S2") and suppresses else []
    out += ["negative name mover"] if reads_at(attention, "IO") and suppresses else []
    last = lambda a: a["END->S2"] > a["END->IO"] and a["END->S2"] >= read_min
    out += ["last-name reader"] if last(attention) and last(attention_abc) else []
    gain = {k: attention[k] - attention_abc[k] for k in ("S2->S1 (duplicate)", "S2->S1+1 (induction)")}
    dup = gain["S2->S1 (duplicate)"] if attention["S2->S1 (duplicate)"] >= read_min else float("-inf")
    ind = gain["S2->S1+1 (induction)"] if layer >= 1 and attention["S2->S1+1 (induction)"] >= read_min else float("-inf")
    out += ["duplicate-token"] if dup > 0 and dup >= ind else ["induction"] if ind > 0 else []
    return out


def classify(effects: dict[str, dict], signatures: dict[tuple[int, int], list[str]], threshold: float,
             io_shares: dict[tuple[int, int], float | None] | None = None, io_share_min: float = 0.0
             ) -> dict[str, list[tuple[int, int]]]:
    """Head classes from the tracing steps of `trace` (share of the logit difference each head's path moves) and
    each head's `signature_classes`; a head may hold two. Direct path, |effect| >= threshold: 'name mover' or
    'last-name suppressor' if it carries the answer (effect < 0) and has that signature, 'negative name mover' if it
    works against it (effect > 0) and has that one, else 'other direct'. Into the direct heads' queries, effect
    <= -threshold: 'last-name reader' with that signature, else 'other query input'. Into the values of the heads
    found, effect <= -threshold: 'duplicate-token' or 'induction' with the signature, else 'other value input'. A name
    mover must also take at least `io_share_min` of its direct effect from reading the IO (`io_shares`: `io_share`, None
    below its floor, which fails), so that what it writes is mostly the name it copies (Wang et al. section 3.1)."""
    out = {k: [] for k in CLASSES}
    moves = lambda h: io_share_min <= 0 or (io_shares is not None and io_shares.get(h) is not None and io_shares[h] >= io_share_min)
    carries = ("name mover", "last-name suppressor")
    for h, e in effects["to logits"].items():
        if abs(e) >= threshold:
            fits = [k for k in (carries if e < 0 else ("negative name mover",)) if k in signatures[h]
                    and (k != "name mover" or moves(h))]
            out[fits[0] if fits else "other direct"].append(h)
    for h, e in effects.get("to queries", {}).items():
        if e <= -threshold:
            out["last-name reader" if "last-name reader" in signatures[h] else "other query input"].append(h)
    for h, e in effects.get("to values", {}).items():
        if e <= -threshold:
            fits = [k for k in ("duplicate-token", "induction") if k in signatures[h]]
            out[fits[0] if fits else "other value input"].append(h)
    return {k: sorted(v) for k, v in out.items()}


@torch.no_grad()
def head_signature_classes(model: nn.Module, data: IOIData, abc: IOIData, vocab: Vocab, *, read_min: float = 0.0,
                           copy_min: float = 0.0) -> dict:
    """Every head's signatures on `data` and on `abc` (`head_signatures`), its OV copying of the names
    (`name_copying`) and its `signature_classes` with the bars `read_min` and `copy_min`; no path patching, so it runs
    on any model (the untrained control included)."""
    heads = patching.all_heads(model)
    sig, sig_abc = head_signatures(model, data, vocab.pad), head_signatures(model, abc, vocab.pad)
    attention = {h: {k: v[h].item() for k, v in sig.items()} for h in heads}
    attention_abc = {h: {k: v[h].item() for k, v in sig_abc.items()} for h in heads}
    copying = {h: name_copying(model, *h, list(range(len(vocab.names)))) for h in heads}
    signatures = {h: signature_classes(attention[h], attention_abc[h], copying[h]["self minus others"], h[0],
                                       read_min=read_min, copy_min=copy_min) for h in heads}
    return {"attention": attention, "attention ABC": attention_abc, "copying": copying, "signatures": signatures}


@torch.no_grad()
def find_circuit(model: nn.Module, data: IOIData, abc: IOIData, vocab: Vocab, threshold: float, *, read_min: float = 0.0,
                 copy_min: float = 0.0, io_share_min: float = 0.0, min_logit_diff: float = 0.0) -> dict:
    """`trace` (refused below `min_logit_diff`), then `head_signature_classes` (bars `read_min`, `copy_min`), each
    head's direct effect split by position (`direct_by_position`) and its `io_share` (floor: `threshold` of the clean
    logit difference), the `classify` classes (a name mover takes at least `io_share_min` of its direct effect from the
    IO) and the circuit (every head of a class; the strongest direct head when no head passes `threshold`)."""
    effects = trace(model, data, abc, threshold, min_logit_diff)
    heads = patching.all_heads(model)
    found = head_signature_classes(model, data, abc, vocab, read_min=read_min, copy_min=copy_min)
    parts = direct_by_position(model, data, heads)
    floor = threshold * abs(logit_diff(model(data.tokens), data).mean().item())
    shares = {h: io_share(parts[h], floor) for h in heads}
    classes = classify(effects, found["signatures"], threshold, shares, io_share_min)
    strongest = max(effects["to logits"], key=lambda h: abs(effects["to logits"][h]))
    circuit = sorted({h for v in classes.values() for h in v}) or [strongest]
    return {"effects": effects, **found, "direct by position": parts, "io shares": shares, "classes": classes, "circuit": circuit}


# ---- a circuit among every circuit of its size ------------------------------------------------------------

Head = tuple[int, int]


def _label(head: Head) -> str:
    return f"L{head[0]}H{head[1]}"


def _spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (ties broken by order: the scores here are continuous); None when undefined."""
    rank = lambda v: torch.tensor(v, dtype=torch.float64).argsort().argsort().double()
    rx, ry = rank(x), rank(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / norm if len(x) > 2 and norm > 0 else None


def circuits_of_size(F: Callable[[list[Head]], float], heads: list[Head], size: int) -> dict[tuple[Head, ...], dict[str, float]]:
    """Every circuit of `size` of `heads` (as sorted tuples) with Wang et al.'s numbers as `F` gives them (`F(keep)`: the
    performance with only the heads in `keep` running, every other head mean-ablated, as a share of F(M); cheap when a
    cache holds `patching.performance_table`): 'faithfulness' F(C); 'gap at K = none' |F(C) - F(M)|, the faithfulness
    gap; 'largest gap' the largest |F(C minus K) - F(M minus K)| over the non-empty K in C (completeness as Wang et al.
    score it); 'beyond faithfulness' the largest gap minus the gap at K = none: what the completeness test adds to the
    faithfulness test."""
    heads = sorted(heads)
    if not 1 <= size <= len(heads):
        raise ValueError(f"size must be 1..{len(heads)} (the number of heads), got {size}")
    full, out = F(heads), {}
    for c in itertools.combinations(heads, size):
        f_c = F(list(c))
        gaps = [abs(F([h for h in c if h not in K]) - F([h for h in heads if h not in K]))
                for r in range(1, size + 1) for K in itertools.combinations(c, r)]
        at_none = abs(f_c - full)
        out[c] = {"faithfulness": f_c, "gap at K = none": at_none, "largest gap": max(gaps), "beyond faithfulness": max(gaps) - at_none}
    return out


def matched_completeness(rows: dict[tuple[Head, ...], dict[str, float]], circuit: list[Head], band: float, tie: float = 0.0) -> dict:
    """Completeness of `circuit` against the circuits of its size whose faithfulness lies within `band` of its own (`rows`:
    `circuits_of_size`): its gap beyond faithfulness, how many matched circuits have a smaller one, and the verdict
    'passes' (none has), 'ties with the best matched' (some have, but the best of them by no more than `tie`: closer
    than the measure moves between sets of sentences), 'fails' (the best is ahead by more) or 'no matched circuit'; with
    its rank in the band (1 = smallest gap) and 'behind best' (its gap minus the smallest matched one). A circuit's
    largest gap is mostly its faithfulness gap; matching faithfulness leaves what the completeness test adds."""
    me = tuple(sorted(circuit))
    if me not in rows:
        raise ValueError(f"circuit {me} is not among the circuits scored ({len(next(iter(rows)))} heads each)")
    mine = rows[me]
    matched = [r["beyond faithfulness"] for c, r in rows.items()
               if c != me and abs(r["faithfulness"] - mine["faithfulness"]) <= band]
    if tie < 0:
        raise ValueError(f"tie must be >= 0 (a share of F(M)), got {tie}")
    below = sum(v < mine["beyond faithfulness"] - 1e-9 for v in matched)  # a rounding error is not a smaller gap
    behind = mine["beyond faithfulness"] - min(matched) if matched else None
    verdict = ("no matched circuit" if not matched else "passes" if not below else
               "ties with the best matched" if behind <= tie else "fails")
    return {"beyond faithfulness": mine["beyond faithfulness"], "n matched": len(matched), "n matched below": below,
            "rank in band": 1 + below, "n in band": 1 + len(matched), "behind best": behind,
            "matched min": min(matched, default=None), "matched median": statistics.median(matched) if matched else None,
            "complete": verdict}


def judge_circuit(F: Callable[[list[Head]], float], heads: list[Head], circuit: list[Head], band: float,
                  randoms: list[list[Head]], tie: float = 0.0) -> dict:
    """`circuit` among every circuit of its size (`circuits_of_size`, with `F` as there): its faithfulness and rank
    (1 = the most faithful; a tie counts against it) and the best circuit; the ranks and the best faithfulness of the
    `randoms` (circuits of the same size drawn at random: the control) and how many are more faithful than the circuit;
    the share of F(M) left when each head alone is mean-ablated, the costliest head and whether the circuit holds it,
    and the baseline that needs no tracing: the heads whose single ablations cost most, as many as the circuit has,
    with their faithfulness and rank; `matched_completeness` of the circuit and, as its control, how many random
    circuits pass the same test; over all circuits, the Spearman correlation of unfaithfulness (1 - F(C)) with the
    largest gap and with the gap beyond faithfulness."""
    heads, me = sorted(heads), tuple(sorted(circuit))
    rows = circuits_of_size(F, heads, len(me))
    faith = {c: r["faithfulness"] for c, r in rows.items()}
    rank = lambda c: 1 + sum(v > faith[tuple(sorted(c))] for v in faith.values())
    single = {h: F([g for g in heads if g != h]) for h in heads}
    costliest, best = sorted(sorted(heads, key=single.get)[:len(me)]), max(faith, key=faith.get)
    random_faith = [faith[tuple(sorted(r))] for r in randoms]
    random_complete = [matched_completeness(rows, r, band, tie) for r in randoms]
    unfaithful = [1 - v for v in faith.values()]
    return {"faithfulness": faith[me], "rank": rank(me), "n circuits": len(rows), "best": ", ".join(map(_label, best)),
            "best faithfulness": faith[best], "random ranks": [rank(r) for r in randoms],
            "random median rank": statistics.median(rank(r) for r in randoms) if randoms else None,
            "random best faithfulness": max(random_faith, default=None), "n random above": sum(f > faith[me] for f in random_faith),
            "single": {_label(h): v for h, v in single.items()}, "costliest head": _label(min(heads, key=single.get)),
            "costliest share left": min(single.values()), "costliest in circuit": min(heads, key=single.get) in me,
            "costliest heads": ", ".join(map(_label, costliest)), "costliest heads faithfulness": faith[tuple(costliest)],
            "costliest heads rank": rank(costliest), "costliest heads are the circuit": tuple(costliest) == me,
            "largest gap": rows[me]["largest gap"], "gap at K = none": rows[me]["gap at K = none"],
            **matched_completeness(rows, list(me), band, tie),
            "random passing completeness": sum(m["complete"] == "passes" for m in random_complete),
            "random passing or tying completeness": sum(m["complete"] in ("passes", "ties with the best matched") for m in random_complete),
            "random ranks in band": [m["rank in band"] for m in random_complete],
            "spearman largest gap": _spearman(unfaithful, [r["largest gap"] for r in rows.values()]),
            "spearman beyond faithfulness": _spearman(unfaithful, [r["beyond faithfulness"] for r in rows.values()])}


def shortcut_answers(tokens: Int[Tensor, "batch pos"], n_names: int) -> dict[str, Int[Tensor, "batch"]]:
    """Three rules that need no circuit and read only the names (tokens < n_names) of each sentence: 'not the last
    name' (the first name that differs from the last name), 'least-mentioned' (the name named fewest times, the first
    of them on a tie) and 'avoid any repeated name' (the first name named once: every name that comes back is dropped,
    as Wang et al. describe their duplicate-token heads, which flag any token that appeared before; -1 where every name
    repeats). On every IOI sentence all three give the IO: a prediction they also get right cannot tell them from the
    circuit. On AAB (A twice, then B once and last) 'not the last name' answers A, the other two B. A last-name-anchored
    duplicate rule (drop the earlier names that the last name repeats, answer the first name left) is not a fourth
    rule: the first earlier name other than the last name is the first name other than the last name, so it is 'not
    the last name' on every list of names."""
    rules = {"not the last name": [], "least-mentioned": [], "avoid any repeated name": []}
    for row in tokens.tolist():
        names = [t for t in row if t < n_names]
        if len(set(names)) < 2:
            raise ValueError(f"a sentence names fewer than two different names: {row}")
        rules["not the last name"].append(next(t for t in names if t != names[-1]))
        rules["least-mentioned"].append(min(dict.fromkeys(names), key=names.count))
        rules["avoid any repeated name"].append(next((t for t in names if names.count(t) == 1), -1))
    return {k: torch.tensor(v) for k, v in rules.items()}


def last_name_repeats(tokens: Int[Tensor, "batch pos"], n_names: int) -> Float[Tensor, "batch"]:
    """1 where the last name of a sentence (tokens < n_names) repeats an earlier name, else 0: where a detector of the
    last name's repeat has something to detect (every IOI sentence; no AAB sentence, whose last name is new)."""
    rows = [[t for t in row if t < n_names] for row in tokens.tolist()]
    return torch.tensor([float(r[-1] in r[:-1]) for r in rows])


def last_name_rule(data: IOIData, d_vocab: int) -> Float[Tensor, "batch d_vocab"]:
    """A lookup rule with no circuit and no repetition detector, as logits at END: -1 on whatever name sits in the S2
    slot (the last name), 0 elsewhere. Scored like a model (`logit_diff`, `own_names`) it is the control of a test that
    claims to see the repetition: it gives IOI and CDD the same difference and ABC none."""
    out = torch.zeros(len(data), d_vocab)
    out[torch.arange(len(data)), data.tokens[torch.arange(len(data)), data.pos["S2"]]] = -1.0
    return out


SIGNATURE_KEYS = ("END->IO", "END->S1", "END->S2", "S2->S1 (duplicate)", "S2->S1+1 (induction)")


def bars_from_control(control: dict, factor: float) -> dict[str, float]:
    """The magnitude bars of `signature_classes` from a control model's `head_signature_classes` (the untrained
    model): `read_min` is `factor` times the largest attention any of its heads gives any slot (`SIGNATURE_KEYS`, on
    the sentences and on ABC), `copy_min` `factor` times its largest |copying margin|. The rule is stated before the
    trained heads are measured against it, so the bars do not depend on the heads they decide."""
    if factor <= 1:
        raise ValueError(f"factor must be > 1 (a bar at the control's own largest value keeps it out only by a hair), got {factor}")
    att = max(a[h][k] for a in (control["attention"], control["attention ABC"]) for h in a for k in SIGNATURE_KEYS)
    copy = max(abs(c["self minus others"]) for c in control["copying"].values())
    return {"read_min": factor * att, "copy_min": factor * copy, "control max attention": att, "control max |margin|": copy}


def answer_kind(classes: dict[str, str | list]) -> str:
    """What carries the answer in one circuit (`classify`'s classes, as lists or as 'none'-or-names text): 'name movers'
    (heads that copy the IO), 'last-name suppressors' (heads that lower the last name), 'both', or 'neither'. Other
    direct heads do not count: they have no class, so they cannot make two circuits differ in kind."""
    has = lambda k: classes[k] not in ("none", [], "")
    kinds = [w for k, w in (("name mover", "name movers"), ("last-name suppressor", "last-name suppressors")) if has(k)]
    return " and ".join(kinds) if kinds else "neither"


KIND_POSITION = {"name mover": "IO", "last-name suppressor": "S2"}  # where each kind earns its direct effect


def earns_from(parts: dict[str, float]) -> str:
    """The name slot ('IO', 'S1' or 'S2') from which a head's direct contribution to the logit difference is largest
    (`direct_by_position`'s parts): a name mover should earn from the IO, whose name it copies, a last-name suppressor
    from S2, whose name it lowers (`KIND_POSITION`). Not a check of the classes: a name mover's half is implied by the
    IO-share rule (`io_share` at least `io_share_min` leaves S1 or S2 above the IO only when 'rest' is strongly negative)."""
    return max(("IO", "S1", "S2"), key=lambda k: parts[k])


def positions_earned(parts: dict[tuple[int, int], dict[str, float]]) -> dict[str, int]:
    """How many of the heads in `parts` (`direct_by_position` rows) earn most from each name slot (`earns_from`), 'n',
    how many heads there are, and 'rest larger', how many get more from the positions that are not names ('rest') than
    from any name slot, by absolute size (`earns_from` compares the name slots only)."""
    counts = {k: 0 for k in ("IO", "S1", "S2")}
    for p in parts.values():
        counts[earns_from(p)] += 1
    larger = sum(abs(p["rest"]) > max(abs(p[k]) for k in ("IO", "S1", "S2")) for p in parts.values())
    return counts | {"n": len(parts), "rest larger": larger}


def one_position(counts: dict[str, int]) -> str | None:
    """The name slot every head of a `positions_earned` count earns most from; None when they are split (or none)."""
    return next((k for k in ("IO", "S1", "S2") if counts["n"] and counts[k] == counts["n"]), None)


@torch.no_grad()
def head_signs(model: nn.Module, heads: list[tuple[int, int]], names: list[int], n_permutations: int = 1000) -> dict[str, dict[str, float]]:
    """Each head's OV copying margin ('margins': `name_copying`'s 'self minus others') and the |margin| its weights'
    scale alone reaches ('nulls': `copying_null`), by label ('L1H0')."""
    logits = {_label(h): _name_logits(model, *h, names) for h in heads}  # each head's, read once for both
    return {"margins": {k: _self_minus_others(x, torch.arange(len(names))).item() for k, x in logits.items()},
            "nulls": {k: _null_of(x, n_permutations) for k, x in logits.items()}}


def slot_follows_sign(parts: dict[tuple[int, int], dict[str, float]], signs: dict[str, dict[str, float]]) -> dict:
    """Whether each head's name slot (`earns_from` on its `direct_by_position` row) follows the sign of its OV copying
    margin (`head_signs`): the IO where it copies (margin > 0), another slot where it suppresses. 'copy': how many heads
    copy, 'n', 'follows': how many agree, 'off |margin|': the largest |margin| among the heads that do not (0.0 if
    none), 'off above null': how many of those have a |margin| above their null, and 'margins' and 'nulls' of the heads
    in `parts`, by label."""
    ms, ns = ({_label(h): signs[k][_label(h)] for h in parts} for k in ("margins", "nulls"))
    copy = {h: ms[_label(h)] > 0 for h in parts}
    off = [_label(h) for h in parts if (earns_from(parts[h]) == "IO") != copy[h]]
    return {"copy": sum(copy.values()), "n": len(parts), "follows": len(parts) - len(off), "off |margin|": max((abs(ms[k]) for k in off), default=0.0),
            "off above null": sum(abs(ms[k]) > ns[k] for k in off), "margins": ms, "nulls": ns}


def above_null(heads: dict) -> dict[str, int]:
    """How many heads (a dict with 'margins' and 'nulls' by label, as `slot_follows_sign` returns) copy and how many
    suppress with a |margin| above their own `copying_null`, and 'within': how many do not, whose sign is not counted."""
    big = [m for k, m in heads["margins"].items() if abs(m) > heads["nulls"][k]]
    return {"copy": sum(m > 0 for m in big), "suppress": sum(m < 0 for m in big), "within": len(heads["margins"]) - len(big)}


def passes_rule(counts: dict[str, int], need: int) -> bool:
    """`sign_verdict`'s rule on one model's `above_null` counts: at least `need` heads above their nulls, all of one sign."""
    return max(counts["copy"], counts["suppress"]) >= need and min(counts["copy"], counts["suppress"]) == 0


def sign_bar(bar_inits: list[dict], control_inits: list[dict]) -> dict:
    """The rule of `sign_verdict`, set on untrained models and tested on others: 'need' is one more head above its null
    than any of `bar_inits` has ('most'); the control is `control_inits` (other untrained models): 'control most', the
    most heads any has above its null, 'control any', how many have at least one, and 'control passing', how many reach
    'need' heads above their nulls all of one sign (the rule must not pass an untrained model: 0)."""
    counts = lambda cs: [above_null(c) for c in cs]
    most = max(a["copy"] + a["suppress"] for a in counts(bar_inits))
    control = counts(control_inits)
    return {"most": most, "need": most + 1, "bar inits": len(bar_inits), "control inits": len(control),
            "control most": max(a["copy"] + a["suppress"] for a in control), "control any": sum(a["copy"] + a["suppress"] > 0 for a in control),
            "control passing": sum(passes_rule(a, most + 1) for a in control)}


def sign_verdict(upper: list[dict], bar: dict, seeds: list[int]) -> str:
    """The OV signs of each seed's upper heads (`slot_follows_sign` counts, one per seed), layer by layer, counting a
    head's sign only where its |margin| is above its own `copying_null`; whether each seed has at least `bar`'s 'need'
    such heads, all of one sign (`sign_bar`: a count no untrained model of the bar's reaches); and the bar's control."""
    layer = lambda k: int(k[1:k.index("H")])
    named = lambda ss: f"seed {ss[0]}" if len(ss) == 1 else f"seeds {', '.join(ss[:-1])} and {ss[-1]}"
    parts = []
    for l in sorted({layer(k) for c in upper for k in c["margins"]}):
        by_seed = {}
        for s, c in zip(seeds, upper):
            a = above_null({key: {k: v for k, v in c[key].items() if layer(k) == l} for key in ("margins", "nulls")})
            n = a["copy"] + a["suppress"] + a["within"]
            words = " and ".join(f"{a[w]} of {n} {t}" for w, t in (("copy", "copy"), ("suppress", "suppress"),
                                                                 ("within", "within their nulls")) if a[w])
            by_seed.setdefault(words, []).append(str(s))
        big = sorted(f"{abs(m):.3f}" for c in upper for k, m in c["margins"].items() if layer(k) == l and abs(m) > c["nulls"][k])
        rng = f" (|margin| {'-'.join(dict.fromkeys((min(big, key=float), max(big, key=float))))})" if big else ""
        parts.append(f"layer {l}: " + ", ".join(f"{w} in {named(ss)}" for w, ss in by_seed.items()) + rng)
    counts = {str(s): above_null(c) for s, c in zip(seeds, upper)}
    passing = [s for s, a in counts.items() if passes_rule(a, bar["need"])]
    failing = [s for s in counts if s not in passing]
    heads = ", ".join(str(a["copy"] + a["suppress"]) for a in counts.values())
    verdict = (f"the heads above their nulls are {heads} by seed, of one sign in "
               + ("every seed" if not failing else f"{named(passing)} only, not in {named(failing)}" if passing else "no seed"))
    return (f"{'; '.join(parts)}; {verdict}; the rule is {bar['need']} or more of one sign, one more than any of {bar['bar inits']} "
            f"untrained inits has ({bar['most']}); {bar['control inits']} other untrained inits have at most {bar['control most']} "
            f"({bar['control any']} have any), and {bar['control passing']} pass the rule")


def sign_totals(trained: list[dict], untrained: list[dict]) -> dict:
    """`slot_follows_sign` counts summed: over the trained models' head groups and over the untrained models' ('off
    |margin|': the largest |margin| among the trained heads whose slot does not follow their sign, 'off above null':
    how many of those are above their `copying_null`)."""
    total = lambda cs, k: sum(c[k] for c in cs)
    return {"trained": total(trained, "follows"), "trained n": total(trained, "n"), "off |margin|": max(c["off |margin|"] for c in trained),
            "off above null": total(trained, "off above null"), "untrained": total(untrained, "follows"), "untrained n": total(untrained, "n")}


def abs_shares(parts: dict[str, float]) -> dict[str, float | None]:
    """Each part of a head's direct effect (`direct_by_position` row) by absolute size: |part| / sum of |parts|, so a
    negative part does not raise another's share (`io_share` nets them); None for every part when all are zero."""
    total = sum(abs(v) for v in parts.values())
    return {k: abs(v) / total if total > 0 else None for k, v in parts.items()}
