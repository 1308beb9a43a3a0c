"""glassbox.studies.ioi: the IOI sentences, their ABC corruption, the held-out splits and the prediction sets."""
import pytest
import torch

from glassbox.studies import ioi

V = ioi.Vocab.default()


def _data(n=300, templates=ioi.TRAIN_TEMPLATES, split="train", seed=0):
    return ioi.make_ioi(n, V, templates, V.pairs(split), seed=seed)


def test_each_sentence_has_one_repeated_name_and_the_answer_is_the_other():
    d = _data()
    names = set(range(len(V.names)))
    for row, io, s in zip(d.tokens, d.io, d.s):
        counts = {n: int((row == n).sum()) for n in names if (row == n).any()}
        assert counts == {int(io): 1, int(s): 2}, f"{V.decode(row)}: name counts {counts}"
    rows = torch.arange(len(d))
    assert (d.tokens[rows, d.pos["IO"]] == d.io).all() and (d.tokens[rows, d.pos["S1"]] == d.s).all()
    assert (d.tokens[rows, d.pos["S2"]] == d.s).all() and (d.pos["S1"] < d.pos["S2"]).all()
    assert (d.pos["end"] == d.tokens.shape[1] - 1).all() and V.words[int(d.tokens[0, -1])] == "to"


def test_both_orders_and_positions_vary():
    d = _data(400)
    assert 0.35 < d.abba.float().mean() < 0.65, "ABBA and BABA should be about equally common"
    assert ((d.pos["IO"] < d.pos["S1"]) == d.abba).all(), "ABBA: the IO comes first"
    assert len(set(d.pos["IO"].tolist())) >= 8, "openings and clauses must move the first names around"
    assert len(set(d.pos["S2"].tolist())) >= 2, "right-aligned: the closing clause sets where S2 sits"


def test_held_out_templates_and_pairs_are_disjoint_from_training_yet_use_trained_words():
    assert not set(ioi.TRAIN_TEMPLATES) & set(ioi.HELD_OUT_TEMPLATES) and len(ioi.HELD_OUT_TEMPLATES) == 6
    train, held = set(V.pairs("train")), set(V.pairs("held-out"))
    assert not train & held and len(train | held) == 30 * 29
    assert all((s, io) in held for io, s in held), "a pair and its reverse share a split"
    trained_words = {w for t in ioi.TRAIN_TEMPLATES for w in t.split()}
    assert {w for t in ioi.HELD_OUT_TEMPLATES for w in t.split()} <= trained_words
    for intro in ioi.INTROS:
        assert sum(t.startswith(intro) for t in ioi.TRAIN_TEMPLATES) == 5, "every opening clause is trained"


def test_abc_keeps_everything_but_the_names_and_has_three_distinct_names():
    d = _data(200)
    abc = ioi.make_abc(d, V, seed=1)
    rows = torch.arange(len(d))
    slots = torch.stack([abc.tokens[rows, d.pos[k]] for k in ("IO", "S1", "S2")], 1)
    assert all(len(set(r.tolist())) == 3 for r in slots), "ABC has three different names"
    mask = torch.ones_like(d.tokens, dtype=torch.bool)
    for k in ("IO", "S1", "S2"):
        mask[rows, d.pos[k]] = False
    assert (abc.tokens[mask] == d.tokens[mask]).all() and (abc.group == d.group).all()
    assert not (abc.tokens == d.tokens).all(), "control: the names did change"


def test_prediction_sets():
    d = _data(50, ioi.HELD_OUT_TEMPLATES, "held-out")
    t = ioi.name_three_times(d, V)
    rows = torch.arange(len(t.tokens))
    assert ((t.tokens == t.s[:, None]).sum(1) == 3).all() and ((t.tokens == t.io[:, None]).sum(1) == 1).all()
    assert (t.tokens[rows, t.pos["S1"]] == t.s).all() and (t.tokens[rows, t.pos["IO"]] == t.io).all()
    three = ioi.make_three_names(60, V, seed=0)
    for row, s, others in zip(three.tokens, three.s, three.others):
        assert int((row == s).sum()) == 2 and all(int((row == o).sum()) == 1 for o in others)
    assert set(three.s_slot.tolist()) == {0, 1, 2}


def test_logit_diff_and_accuracy_on_known_logits():
    d = _data(4)
    logits = torch.zeros(4, V.d_vocab)
    logits[torch.arange(4), d.io] = 2.0
    logits[torch.arange(4), d.s] = 0.5
    assert torch.allclose(ioi.logit_diff(logits, d), torch.full((4,), 1.5))
    assert ioi.accuracy(logits, d) == 1.0
    assert ioi.accuracy(-logits, d) == 0.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="n >= 1"):
        ioi.make_ioi(0, V, ioi.TRAIN_TEMPLATES, V.pairs("train"))
    with pytest.raises(ValueError, match="n_ctx"):
        ioi.make_ioi(5, V, ioi.TRAIN_TEMPLATES, V.pairs("train"), n_ctx=8)
    with pytest.raises(ValueError, match="split"):
        V.pairs("test")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        V.encode("Mary zebra")
