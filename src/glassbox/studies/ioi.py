"""Indirect object identification (IOI, Wang et al. 2022) at word level: the sentences, the ABC
corrupted distribution, and the small transformer of notebook 11 trained on them.

    vocab = Vocab.default()
    train = make_ioi(4096, vocab, TRAIN_TEMPLATES, vocab.pairs("train"), seed=0)
    test = make_ioi(1024, vocab, HELD_OUT_TEMPLATES, vocab.pairs("held-out"), seed=1)
    abc = make_abc(test, vocab, seed=2)     # same templates and fillers, three distinct random names
    logit_diff(model(test.tokens)[:, -1], test).mean()  # logit(IO) - logit(S) at the last position

"When Mary and John went to the store , John gave a drink to" -> " Mary": the answer is the name that
appears once (the indirect object, IO); the other (the subject, S) appears twice (S1, S2). Every
sentence is left-padded to `n_ctx` so that the answer is always read at the last position; within one
`group` (template and filler) every word sits at the same position, which mean ablation relies on.
"""
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

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
    """Each head's mean attention, over `data`, from END to the IO and to the subject (S1 + S2), from S2 to S1
    (duplicate-token) and to the word after S1 (induction), and from each word to the one before it
    (previous-token, over the sentence's words only, pads left out)."""
    _, cache = model.run_with_cache(data.tokens, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    rows, p = torch.arange(len(data)), data.pos
    words = (data.tokens != pad).float()  # batch pos
    prev_mask = words[:, 1:] * words[:, :-1]  # query q and key q - 1 both words
    out = {k: [] for k in ("END->IO", "END->S", "S2->S1 (duplicate)", "S2->S1+1 (induction)", "previous-token")}
    for layer in range(model.cfg.n_layers):
        a = cache[f"blocks.{layer}.attn.hook_pattern"]  # batch head q k
        at = lambda q, k: a[rows, :, q, k].mean(0)
        out["END->IO"].append(at(p["end"], p["IO"]))
        out["END->S"].append(at(p["end"], p["S1"]) + at(p["end"], p["S2"]))
        out["S2->S1 (duplicate)"].append(at(p["S2"], p["S1"]))
        out["S2->S1+1 (induction)"].append(at(p["S2"], p["S1"] + 1))
        prev = a.diagonal(offset=-1, dim1=-2, dim2=-1)  # batch head q-1
        out["previous-token"].append((prev * prev_mask[:, None]).sum((0, 2)) / prev_mask.sum())
    return {k: torch.stack(v) for k, v in out.items()}


@torch.no_grad()
def name_copying(model: nn.Module, layer: int, head: int, names: list[int]) -> dict[str, float]:
    """Wang et al.'s copying test of a head's OV circuit on the names (section 3.1, in spirit): each name's
    embedding through LayerNorm 1, the head's W_V, W_O and the unembedding. 'top-1' is the share of names whose
    own logit is the largest among the names; 'self minus others' the mean of (own logit - mean of the other
    names' logits). Positive: the head copies the name it attends to; negative: it suppresses it."""
    idx = torch.tensor(names)
    x = model.W_E[idx][None]  # 1 name d_model
    if getattr(model.cfg, "normalization_type", None) is not None:
        x = model.blocks[layer].ln1(x)
    out = (x[0] @ model.W_V[layer, head] + model.b_V[layer, head]) @ model.W_O[layer, head]
    logits = out @ model.W_U[:, idx]  # name name
    own = logits.diagonal()
    others = (logits.sum(1) - own) / (len(names) - 1)
    return {"top-1": (logits.argmax(1) == torch.arange(len(names))).float().mean().item(),
            "self minus others": (own - others).mean().item()}
