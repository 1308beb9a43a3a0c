"""glassbox.studies.ioi: the IOI sentences, their ABC corruption, the held-out splits and the prediction sets; the
tracing, the head classes and the training recipe of notebook 11."""
import dataclasses

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


def _hooked(seed=0):
    """A model glassbox did not build: a 2-layer attention-only HookedTransformer over the IOI vocabulary."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    cfg = HookedTransformerConfig(n_layers=2, n_heads=2, d_model=32, d_head=8, d_vocab=V.d_vocab, n_ctx=34, attn_only=True,
                                  normalization_type="LN", seed=seed)
    return HookedTransformer(cfg).eval()


@torch.no_grad()
def test_signatures_keep_s1_and_s2_apart_and_direct_by_position_sums_to_the_direct_attribution():
    from glassbox import lens
    model, d = _hooked(), _data(40, ioi.HELD_OUT_TEMPLATES, "held-out")
    sig = ioi.head_signatures(model, d, V.pad)
    assert {"END->IO", "END->S1", "END->S2"} <= set(sig) and "END->S" not in sig
    _, cache = model.run_with_cache(d.tokens)
    a = cache["blocks.1.attn.hook_pattern"][torch.arange(len(d)), 1, -1]
    assert sig["END->S2"][1, 1] == pytest.approx(a[torch.arange(len(d)), d.pos["S2"]].mean().item(), abs=1e-6)
    parts = ioi.direct_by_position(model, d, [(0, 1), (1, 0)])
    components, labels = lens.residual_components(model, cache)  # each head's whole output, not split by position
    for head in [(0, 1), (1, 0)]:
        i = labels.index(f"L{head[0]}H{head[1]}")
        x = components[i, :, -1]
        x = x - x.mean(-1, keepdim=True)
        want = ((x / cache["ln_final.hook_scale"][:, -1]) * model.ln_final.w) @ model.W_U
        want = (want[torch.arange(len(d)), d.io] - want[torch.arange(len(d)), d.s]).mean().item()
        assert sum(parts[head].values()) == pytest.approx(want, abs=1e-4), "the four parts sum to the head's direct effect"
        assert set(parts[head]) == {"IO", "S1", "S2", "rest"}
    swapped = ioi.direct_by_position(model, dataclasses.replace(d, io=d.s, s=d.io), [(0, 1)])[(0, 1)]
    assert all(swapped[k] == pytest.approx(-v, abs=1e-5) for k, v in parts[(0, 1)].items()), "IO and S swapped: every part flips"


def test_rename_moves_the_names_or_the_repetition_and_nothing_else():
    d = _data(200)
    rows = torch.arange(len(d))
    slots = lambda x: torch.stack([x.tokens[rows, d.pos[k]] for k in ("IO", "S1", "S2")], 1)
    io, s = d.io[:, None], d.s[:, None]
    cdd, aba, bab = (slots(ioi.rename(d, V, p, seed=2)) for p in ("CDD", "ABA", "BAB"))
    assert (cdd[:, 1] == cdd[:, 2]).all() and (cdd[:, :2] != io).all() and (cdd[:, :2] != s).all() and (cdd[:, 0] != cdd[:, 1]).all()
    assert torch.equal(aba, torch.cat([io, s, io], 1)), "ABA: the sentence's own names, the IO repeated"
    assert torch.equal(bab, torch.cat([s, io, s], 1)), "BAB: the same names in swapped slots, S still repeated"
    other = ioi.rename(d, V, "CDD", seed=2)
    mask = torch.ones_like(d.tokens, dtype=torch.bool)
    for k in ("IO", "S1", "S2"):
        mask[rows, d.pos[k]] = False
    assert (other.tokens[mask] == d.tokens[mask]).all() and torch.equal(other.io, d.io) and torch.equal(other.s, d.s)
    assert not torch.equal(slots(ioi.rename(d, V, "CDD", seed=3)), cdd), "control: another seed, other new names"
    with pytest.raises(ValueError, match="three letters"):
        ioi.rename(d, V, "AB", seed=0)


def test_classes_follow_the_signatures_and_the_path_numbers():
    att = lambda io, s1, s2, dup=0.1, ind=0.1: {"END->IO": io, "END->S1": s1, "END->S2": s2, "S2->S1 (duplicate)": dup,
                                               "S2->S1+1 (induction)": ind}
    flat = att(0.1, 0.1, 0.1)
    assert ioi.signature_classes(att(0.5, 0.1, 0.0), flat, 0.3, 1) == ["name mover"]
    assert ioi.signature_classes(att(0.0, 0.1, 0.8), att(0.1, 0.1, 0.5), -0.5, 1) == ["last-name suppressor", "last-name reader"]
    assert ioi.signature_classes(att(0.0, 0.1, 0.8), att(0.5, 0.1, 0.1), -0.5, 1) == [], \
        "control: a head that looks at S2 only when a name repeats there is no last-name suppressor (nor reader)"
    assert ioi.signature_classes(att(0.0, 0.8, 0.1), att(0.1, 0.5, 0.1), -0.5, 1) == [], \
        "control: a head that reads S1 and suppresses does not lower the last name"
    assert ioi.signature_classes(att(0.5, 0.1, 0.0), flat, -0.5, 1) == ["negative name mover"]
    assert ioi.reading_margin(att(0.5, 0.2, 0.1)) == pytest.approx(0.3) and ioi.reading_margin(att(0.3, 0.3, 0.1)) == 0
    assert ioi.io_share({"IO": 1.0, "S1": -0.2, "S2": 0.0, "rest": 1.2}, floor=0.5) == pytest.approx(0.5)
    assert ioi.io_share({"IO": 0.3, "S1": 0.0, "S2": 0.0, "rest": 0.1}, floor=0.5) is None, \
        "control: a direct effect below the floor has no share (a ratio over a near-zero total is noise)"
    assert ioi.io_share({"IO": 1.0, "S1": 0.0, "S2": 0.0, "rest": -2.0}, floor=0.5) is None, "a negative total has no share"
    with pytest.raises(ValueError, match="floor"):
        ioi.io_share({"IO": 1.0, "S1": 0.0, "S2": 0.0, "rest": 0.0}, floor=0)
    assert "duplicate-token" in ioi.signature_classes(att(0.1, 0.1, 0.1, dup=0.4), flat, 0.1, 0)
    assert "induction" in ioi.signature_classes(att(0.1, 0.1, 0.1, ind=0.4), flat, 0.1, 1)
    assert "induction" not in ioi.signature_classes(att(0.1, 0.1, 0.1, ind=0.4), flat, 0.1, 0), "layer 0 cannot do induction"
    sigs = {(1, 0): ["name mover"], (1, 1): ["last-name suppressor"], (0, 0): ["last-name reader"], (0, 1): [], (0, 2): ["duplicate-token"]}
    effects = {"to logits": {(1, 0): -0.3, (1, 1): -0.2, (0, 0): -0.15, (0, 1): 0.05, (0, 2): 0.0},
               "to queries": {(0, 0): -0.2, (0, 1): -0.3, (0, 2): 0.0}, "to values": {(0, 0): 0.0, (0, 1): 0.0, (0, 2): -0.4}}
    cls = ioi.classify(effects, sigs, 0.1)
    assert list(cls) == list(ioi.CLASSES)
    assert cls["name mover"] == [(1, 0)] and cls["last-name suppressor"] == [(1, 1)] and cls["other direct"] == [(0, 0)]
    assert cls["last-name reader"] == [(0, 0)] and cls["other query input"] == [(0, 1)] and cls["duplicate-token"] == [(0, 2)]
    assert not cls["negative name mover"] and not cls["induction"], "control: nothing below the threshold gets a class"
    # a name mover takes most of its direct effect from reading the IO; below the share (or with none) it is other direct
    assert ioi.classify(effects, sigs, 0.1, {(1, 0): 0.6}, 0.5)["name mover"] == [(1, 0)]
    weak = ioi.classify(effects, sigs, 0.1, {(1, 0): 0.2}, 0.5)
    assert weak["name mover"] == [] and (1, 0) in weak["other direct"], "control: a head that writes mostly from elsewhere"
    assert ioi.classify(effects, sigs, 0.1, {(1, 0): None}, 0.5)["name mover"] == [], "no share (below its floor): no name mover"


def test_magnitude_bars_keep_diffuse_attention_and_tiny_margins_out_of_every_class():
    att = lambda io, s1, s2, dup=0.03, ind=0.03: {"END->IO": io, "END->S1": s1, "END->S2": s2, "S2->S1 (duplicate)": dup,
                                                 "S2->S1+1 (induction)": ind}
    diffuse, diffuse_abc = att(0.03, 0.02, 0.05, dup=0.05), att(0.03, 0.03, 0.04, dup=0.03)  # an untrained head: argmax, no size
    bars = dict(read_min=0.3, copy_min=0.1)
    assert ioi.signature_classes(diffuse, diffuse_abc, -0.02, 1) == ["last-name suppressor", "last-name reader", "duplicate-token"], \
        "without bars the argmax and sign rules name an untrained-looking head"
    assert ioi.signature_classes(diffuse, diffuse_abc, -0.02, 1, **bars) == [], "control: with the bars it has no class"
    assert ioi.signature_classes(att(0.03, 0.02, 0.9), att(0.03, 0.03, 0.85), -0.02, 1, **bars) == ["last-name reader"], \
        "a margin under copy_min neither copies nor suppresses"
    assert ioi.signature_classes(att(0.03, 0.02, 0.9), att(0.03, 0.03, 0.85), -0.8, 1, **bars) == ["last-name suppressor", "last-name reader"]
    assert ioi.signature_classes(att(0.35, 0.05, 0.0), att(0.1, 0.1, 0.0), 0.6, 1, **bars) == ["name mover"]
    assert ioi.signature_classes(att(0.1, 0.02, 0.0), att(0.1, 0.1, 0.0), 0.6, 1, **bars) == [], "attends 0.1 to the IO: no name mover"
    assert ioi.signature_classes(att(0.1, 0.1, 0.1, dup=0.5), att(0.1, 0.1, 0.1, dup=0.1), 0.0, 0, **bars) == ["duplicate-token"]
    with pytest.raises(ValueError, match="read_min"):
        ioi.signature_classes(diffuse, diffuse_abc, 0.0, 1, read_min=-1)


def test_trace_refuses_a_model_without_a_logit_difference():
    from glassbox.studies import models
    config = models.config_dict(models.TransformerConfig(n_layers=1, n_heads=2, d_model=16, d_head=8, d_vocab=V.d_vocab,
                                                         n_ctx=34, attn_only=True, seed=0))
    model, d = models.build("transformer", config), _data(16, ioi.HELD_OUT_TEMPLATES, "held-out")
    with pytest.raises(ValueError, match="min_logit_diff"):
        ioi.trace(model, d, ioi.make_abc(d, V, seed=3), 0.1, min_logit_diff=1.0)


def test_the_last_name_rule_passes_the_names_or_repetition_test_without_a_repetition():
    d = _data(40, ioi.HELD_OUT_TEMPLATES, "held-out")
    rule = lambda data: ioi.logit_diff(ioi.last_name_rule(data, V.d_vocab), ioi.own_names(data))
    assert torch.equal(rule(d), torch.ones(len(d))) and torch.equal(rule(ioi.rename(d, V, "CDD", seed=1)), torch.ones(len(d)))
    assert torch.equal(rule(ioi.make_abc(d, V, seed=2)), torch.zeros(len(d))), "ABC: the last name is neither scored name"
    aab = ioi.rename(d, V, "AAB", seed=1)  # the IO's name twice (not last), S's once and last: the rules disagree
    top = (ioi.last_name_rule(aab, V.d_vocab)[:, :len(V.names)] + 1e-3 * (aab.tokens[:, :, None] == torch.arange(len(V.names))).any(1)).argmax(-1)
    assert (top == aab.io).all(), "the lookup rule avoids the last name, whoever is repeated"


def test_the_shortcut_rules_answer_every_ioi_sentence_and_fail_where_s_is_not_last():
    d = _data(60)
    rules = ioi.shortcut_answers(d.tokens, len(V.names))
    assert all((r == d.io).all() for r in rules.values())
    swapped = torch.tensor([[V.pad] * 26 + V.encode("Mary and John met . Mary gave John")])  # S (Mary) is not the last name
    assert ioi.shortcut_answers(swapped, len(V.names))["not the last name"].item() == V.names.index("Mary"), \
        "control: 'not the last name' picks the repeated name when S is not last"
    with pytest.raises(ValueError, match="fewer than two"):
        ioi.shortcut_answers(torch.tensor([[V.pad] * 30 + V.encode("Mary gave Mary to")]), len(V.names))


def test_on_aab_not_the_last_name_parts_from_counting_mentions_and_from_avoiding_any_repeated_name():
    """On AAB 'not the last name' answers the twice-named name; 'least-mentioned' and 'avoid any repeated name' (a detector
    of any repeated name, Wang et al.'s duplicate-token reading) answer the once-named one: the control, where the
    measurement must differ. AAB's last name never repeats an earlier name (a detector of the last name's repeat has
    nothing to drop, and answers the first name as 'not the last name' does), while every IOI sentence's last name does."""
    d = _data(60, ioi.HELD_OUT_TEMPLATES, "held-out")
    aab = ioi.rename(d, V, "AAB", seed=1)
    r = ioi.shortcut_answers(aab.tokens, len(V.names))
    assert set(r) == {"not the last name", "least-mentioned", "avoid any repeated name"}
    assert (r["not the last name"] == aab.io).all() and (r["least-mentioned"] == aab.s).all()
    assert (r["avoid any repeated name"] == aab.s).all() and (r["avoid any repeated name"] != r["not the last name"]).all()
    assert (ioi.last_name_repeats(aab.tokens, len(V.names)) == 0).all() and (ioi.last_name_repeats(d.tokens, len(V.names)) == 1).all()
    every = torch.tensor([[V.pad] * 24 + V.encode("Mary and John met . Mary gave John")])  # every name repeats: no answer
    assert ioi.shortcut_answers(every, len(V.names))["avoid any repeated name"].item() == -1


def test_a_carrier_earns_from_the_position_its_kind_says():
    """A name mover's direct contribution should come from the IO, a suppressor's from S2; the control: the other
    kind's position, which a head reading the IO does not earn from."""
    copier, suppressor = {"IO": 0.9, "S1": 0.1, "S2": -0.0, "rest": 0.5}, {"IO": 0.0, "S1": 0.0, "S2": 2.8, "rest": 0.1}
    assert ioi.earns_from(copier) == ioi.KIND_POSITION["name mover"] != ioi.KIND_POSITION["last-name suppressor"]
    assert ioi.earns_from(suppressor) == ioi.KIND_POSITION["last-name suppressor"]
    assert ioi.earns_from({"IO": -0.5, "S1": 0.2, "S2": -0.1, "rest": 3.0}) == "S1", "'rest' is not a name slot"
    counts = ioi.positions_earned({(1, 0): copier, (1, 1): suppressor, (2, 0): copier})
    assert counts == {"IO": 2, "S1": 0, "S2": 1, "n": 3, "rest larger": 0} and ioi.one_position(counts) is None, "control: split heads have no one position"
    assert ioi.one_position(ioi.positions_earned({(1, 0): copier, (2, 0): copier})) == "IO"
    writer = {"IO": 0.2, "S1": -0.3, "S2": 0.0, "rest": 0.25}  # earns most from IO among the name slots, yet |S1| > |rest|
    mostly_rest = {"IO": 0.2, "S1": 0.0, "S2": -0.1, "rest": -0.7}  # 'rest' is largest by absolute size, though negative
    counts = ioi.positions_earned({(1, 0): writer, (1, 1): mostly_rest, (2, 0): copier})
    assert counts == {"IO": 3, "S1": 0, "S2": 0, "n": 3, "rest larger": 1}, "'rest' counted apart, by absolute size, beside the name slot"


def test_the_slot_follows_the_copying_sign_and_the_verdict_reads_the_signs():
    """A copier attending the IO earns from the IO, a suppressor attending S2 earns from S2: the slot follows the OV sign;
    the control: a copier that earns from S2 does not follow it. The verdict counts a sign only above the head's own
    null, layer by layer, against a rule set on some untrained models and tested on others."""
    copier, suppressor = {"IO": 0.9, "S1": 0.1, "S2": -0.0, "rest": 0.5}, {"IO": 0.0, "S1": 0.0, "S2": 2.8, "rest": 0.1}
    signs = lambda ms, ns: {"margins": {f"L{1 + i // 2}H{i % 2}": m for i, m in enumerate(ms)}, "nulls": {f"L{1 + i // 2}H{i % 2}": n for i, n in enumerate(ns)}}
    c = ioi.slot_follows_sign({(1, 0): copier, (1, 1): suppressor}, signs([0.5, -0.8], [0.1, 0.1]))
    assert c == {"copy": 1, "n": 2, "follows": 2, "off |margin|": 0.0, "off above null": 0, "margins": {"L1H0": 0.5, "L1H1": -0.8},
                 "nulls": {"L1H0": 0.1, "L1H1": 0.1}}
    off = ioi.slot_follows_sign({(1, 0): suppressor, (1, 1): suppressor, (2, 0): suppressor}, signs([0.01, -0.8, -0.3], [0.1, 0.2, 0.1]))
    assert off["follows"] == 2 and off["off |margin|"] == 0.01 and off["off above null"] == 0, "control: a copier earning from S2 does not follow"
    assert ioi.slot_follows_sign({(1, 0): suppressor}, signs([0.5], [0.1]))["off above null"] == 1
    assert ioi.above_null(off) == {"copy": 0, "suppress": 2, "within": 1}
    assert ioi.above_null(signs([0.5, -0.4], [0.6, 0.1])) == {"copy": 0, "suppress": 1, "within": 1}, "each head against its own null"
    heads = lambda *ms: signs(ms, [0.1] * len(ms))
    bar_inits, control = [heads(0.2, 0.0, 0.01, 0.0), heads(0.0, 0.01, 0.0, 0.01)], [heads(0.3, 0.0, 0.0, 0.0), heads(0.0, 0.0, 0.0, 0.0)]
    assert ioi.passes_rule({"copy": 0, "suppress": 2, "within": 2}, 2) and not ioi.passes_rule({"copy": 1, "suppress": 2, "within": 1}, 2)
    assert not ioi.passes_rule({"copy": 1, "suppress": 0, "within": 3}, 2), "too few above their nulls"
    bar = ioi.sign_bar(bar_inits, control)
    assert bar == {"most": 1, "need": 2, "bar inits": 2, "control inits": 2, "control most": 1, "control any": 1, "control passing": 0}
    assert ioi.sign_bar(bar_inits, [heads(0.3, 0.4, 0.0, 0.0)])["control passing"] == 1, "control: two of one sign pass a rule of 2"
    assert ioi.sign_bar(bar_inits, [heads(0.3, -0.4, 0.0, 0.0)])["control passing"] == 0, "two of mixed signs do not"
    assert ioi.sign_verdict([heads(0.5, 0.4, 0.01, 0.2), off], bar, [0, 1]) == (
        "layer 1: 2 of 2 copy in seed 0, 1 of 2 suppress and 1 of 2 within their nulls in seed 1 (|margin| 0.400-0.800); layer 2: "
        "1 of 2 copy and 1 of 2 within their nulls in seed 0, 1 of 1 suppress in seed 1 (|margin| 0.200-0.300); the heads above their nulls "
        "are 3, 2 by seed, of one sign in every seed; the rule is 2 or more of one sign, one more than any of 2 untrained inits has (1); 2 other "
        "untrained inits have at most 1 (1 have any), and 0 pass the rule")
    mixed = ioi.sign_verdict([heads(0.5, -0.4), heads(0.5, 0.01), heads(0.5, 0.3)], bar, [0, 1, 2])
    assert "the heads above their nulls are 2, 1, 2 by seed, of one sign in seed 2 only, not in seeds 0 and 1;" in mixed, "control: mixed signs, too few"
    assert ioi.sign_totals([c, off], [c]) == {"trained": 4, "trained n": 5, "off |margin|": 0.01, "off above null": 0, "untrained": 2, "untrained n": 2}


def test_the_copying_null_holds_a_head_to_its_own_scale():
    """A head whose OV circuit copies every name has a margin far above its null; scaling its weights scales both, so the
    null follows the head's size; the control: a head whose output ignores which name it reads (every name's output the
    same) has margin 0 and is never above its null."""
    import types
    n, d = 6, 6
    model = types.SimpleNamespace(cfg=types.SimpleNamespace(normalization_type=None), W_E=torch.eye(n, d),
                                  W_V=torch.eye(d)[None, None].clone(), b_V=torch.zeros(1, 1, d), W_O=torch.eye(d)[None, None].clone(), W_U=torch.eye(d, n))
    names = list(range(n))
    margin, null = ioi.name_copying(model, 0, 0, names)["self minus others"], ioi.copying_null(model, 0, 0, names, 200)
    assert margin == pytest.approx(1.0) and null < margin
    model.W_O *= 10
    assert ioi.name_copying(model, 0, 0, names)["self minus others"] == pytest.approx(10.0) and ioi.copying_null(model, 0, 0, names, 200) == pytest.approx(10 * null)
    model.W_V = torch.zeros_like(model.W_V); model.b_V = torch.ones(1, 1, d)  # every name gives the same output
    assert ioi.name_copying(model, 0, 0, names)["self minus others"] == pytest.approx(0.0, abs=1e-6)
    assert not abs(ioi.name_copying(model, 0, 0, names)["self minus others"]) > ioi.copying_null(model, 0, 0, names, 200) + 1e-6


def test_io_share_nets_negative_parts_and_abs_shares_do_not():
    """io_share divides by the signed sum, so a negative part raises it past 1; by absolute parts it cannot."""
    parts = {"IO": 1.4, "S1": -0.16, "S2": -0.07, "rest": 0.01}
    assert ioi.io_share(parts, floor=0.1) == pytest.approx(1.4 / 1.18) and 1.4 / 1.18 > 1
    a = ioi.abs_shares(parts)
    assert a["IO"] == pytest.approx(1.4 / 1.64) and a["IO"] < 1 and sum(a.values()) == pytest.approx(1.0)
    assert ioi.abs_shares({"IO": 0.0, "S1": 0.0, "S2": 0.0, "rest": 0.0})["IO"] is None
    by_position = ioi.abs_shares({"IO": 1.0, "S1": 0.0, "S2": 0.0, "p1": 0.8, "p2": -0.3})  # 'rest' split into its positions
    netted = ioi.abs_shares({"IO": 1.0, "S1": 0.0, "S2": 0.0, "rest": 0.5})["rest"]
    assert netted == pytest.approx(0.5 / 1.5) and netted < by_position["p1"] + by_position["p2"], "the netted 'rest' share is a lower bound"


def test_bars_from_the_control_are_a_factor_above_its_largest_values():
    att = {h: dict.fromkeys(ioi.SIGNATURE_KEYS, 0.01) for h in [(0, 0), (0, 1)]}
    att[(0, 1)]["S2->S1 (duplicate)"] = 0.05
    att_abc = {h: dict.fromkeys(ioi.SIGNATURE_KEYS, 0.02) for h in att}
    control = {"attention": att, "attention ABC": att_abc, "copying": {(0, 0): {"self minus others": -0.03}, (0, 1): {"self minus others": 0.01}}}
    b = ioi.bars_from_control(control, 3)
    assert b["read_min"] == pytest.approx(0.15) and b["copy_min"] == pytest.approx(0.09)
    with pytest.raises(ValueError, match="factor"):
        ioi.bars_from_control(control, 1)


def test_answer_kind_ignores_other_direct_heads():
    """The control the review asked for: two circuits of last-name suppressors that differ only in an other direct head
    are one kind; a circuit of name movers is another."""
    none = dict.fromkeys(ioi.CLASSES, "none")
    a = none | {"last-name suppressor": "L1H0, L1H2"}
    b = none | {"last-name suppressor": "L1H2, L1H3", "other direct": "L0H2"}
    c = none | {"name mover": "L1H1", "other direct": "L0H1, L0H3"}
    assert ioi.answer_kind(a) == ioi.answer_kind(b) == "last-name suppressors" and ioi.answer_kind(c) == "name movers"
    assert ioi.answer_kind({k: [] for k in ioi.CLASSES} | {"other direct": [(0, 1)]}) == "neither"


def test_find_circuit_on_a_model_glassbox_did_not_build():
    model, d = _hooked(1), _data(24, ioi.HELD_OUT_TEMPLATES, "held-out")
    abc = ioi.make_abc(d, V, seed=3)
    found = ioi.find_circuit(model, d, abc, V, threshold=0.1)
    assert set(found["effects"]["to logits"]) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert set(found["effects"]["to queries"]) <= {(0, 0), (0, 1)} and found["circuit"]
    direct = {h for h, e in found["effects"]["to logits"].items() if abs(e) >= 0.1}
    assert direct == {h for k in ("name mover", "last-name suppressor", "negative name mover", "other direct") for h in found["classes"][k]}


def test_train_model_follows_the_recipe_and_learns():
    from glassbox.studies import models
    config = models.config_dict(models.TransformerConfig(n_layers=1, n_heads=2, d_model=16, d_head=8, d_vocab=V.d_vocab,
                                                         n_ctx=34, attn_only=True, seed=0))
    train = _data(256)
    model, history = ioi.train_model(config, train, steps=30, batch_size=32, lr=0.01, weight_decay=0.0, seed=0, eval_every=10)
    again, _ = ioi.train_model(config, train, steps=30, batch_size=32, lr=0.01, weight_decay=0.0, seed=0, eval_every=10)
    assert history.column("loss")[-1] < history.column("loss")[0], "the loss falls"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values())), "same seed, same model"


def test_own_names_scores_a_corruption_on_the_names_it_holds():
    d = _data(50)
    assert torch.equal(ioi.own_names(d).io, d.io) and torch.equal(ioi.own_names(d).s, d.s), "a clean sentence keeps its names"
    cdd, abc = ioi.rename(d, V, "CDD", seed=1), ioi.make_abc(d, V, seed=2)
    rows = torch.arange(len(d))
    own = ioi.own_names(cdd)
    assert torch.equal(own.io, cdd.tokens[rows, d.pos["IO"]]) and torch.equal(own.s, cdd.tokens[rows, d.pos["S2"]]), \
        "on CDD the once-named and the repeated new names"
    assert not (own.io == d.io).any() and not (own.s == d.s).any(), "control: none of the clean names is left on CDD"
    assert torch.equal(ioi.own_names(abc).s, abc.tokens[rows, d.pos["S1"]]) and torch.equal(cdd.io, d.io), "the input is not changed"
    logits = torch.zeros(len(d), V.d_vocab)
    logits[rows, own.io] = 3.0
    assert torch.allclose(ioi.logit_diff(logits, own), torch.full((len(d),), 3.0))
    assert torch.allclose(ioi.logit_diff(logits, cdd), torch.zeros(len(d))), "the clean names' metric is blind to it"


HEADS6 = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
WEIGHTS = dict(zip(HEADS6, [32, 16, 8, 4, 2, 1]))  # distinct sums: no ties


def _share(backup: float = 0.0):
    """F(keep) as a share of F(M): every head adds its weight; with `backup` (in weights), L1H2 adds that much when L0H0
    is gone: a head outside a circuit that does L0H0's job once L0H0 is ablated."""
    total = sum(WEIGHTS.values())
    return lambda keep: (sum(WEIGHTS[tuple(h)] for h in keep)
                         + (backup if (1, 2) in map(tuple, keep) and (0, 0) not in map(tuple, keep) else 0)) / total


def test_a_circuit_among_every_circuit_of_its_size():
    rows = ioi.circuits_of_size(_share(), HEADS6, 2)
    assert len(rows) == 15 and all(abs(r["beyond faithfulness"]) < 1e-12 for r in rows.values()), \
        "heads that add up: removing K costs the circuit what it costs the model, so nothing is beyond faithfulness"
    judged = ioi.judge_circuit(_share(), HEADS6, [(0, 0), (0, 1)], 0.1, [[(1, 1), (1, 2)], [(0, 2), (1, 0)]])
    assert judged["rank"] == 1 and judged["n circuits"] == 15 and judged["best"] == "L0H0, L0H1"
    assert judged["random ranks"] == [15, 10] and judged["n random above"] == 0
    assert judged["costliest head"] == "L0H0" and judged["costliest heads are the circuit"] and judged["costliest heads rank"] == 1
    assert judged["spearman largest gap"] == pytest.approx(1.0), "without a backup the largest gap is the faithfulness gap"
    # the control: a backup head outside the circuit does L0H0's job once it is gone
    backed = ioi.circuits_of_size(_share(backup=30), HEADS6, 2)
    assert backed[((0, 0), (0, 1))]["beyond faithfulness"] == pytest.approx(30 / 63), "the gap at K = {L0H0} is the backup's"
    assert abs(backed[((0, 0), (1, 2))]["beyond faithfulness"]) < 1e-12, "the circuit that holds the backup head is complete"
    judged = ioi.judge_circuit(_share(backup=30), HEADS6, [(0, 0), (0, 1)], 1.0, [])
    assert judged["costliest head"] == "L0H1" and not judged["costliest heads are the circuit"], \
        "with a backup, ablating L0H0 alone costs little: the costliest single head is another"
    assert judged["complete"] == "fails" and judged["n matched below"] >= 1
    assert ioi.matched_completeness(backed, [(0, 0), (1, 2)], 1.0)["n matched below"] == 0
    assert ioi.matched_completeness(backed, [(0, 0), (0, 1)], 0.0)["complete"] == "no matched circuit"
    m = ioi.matched_completeness(backed, [(0, 0), (0, 1)], 1.0)
    assert m["rank in band"] == 1 + m["n matched below"] and m["n in band"] == 1 + m["n matched"]
    assert m["behind best"] == pytest.approx(m["beyond faithfulness"] - m["matched min"])
    assert ioi.matched_completeness(backed, [(0, 0), (0, 1)], 1.0, tie=m["behind best"] + 1e-6)["complete"] == "ties with the best matched"
    assert ioi.matched_completeness(backed, [(0, 0), (0, 1)], 1.0, tie=m["behind best"] / 2)["complete"] == "fails", \
        "control: behind the best by more than the tie fails"
    with pytest.raises(ValueError, match="size"):
        ioi.circuits_of_size(_share(), HEADS6, 0)


@torch.no_grad()
def test_performance_table_on_the_notebooks_transformer_bridge():
    from glassbox import patching
    from glassbox.studies import models
    config = models.config_dict(models.TransformerConfig(n_layers=2, n_heads=2, d_model=16, d_head=8, d_vocab=V.d_vocab,
                                                         n_ctx=34, attn_only=True, seed=0))
    model, d = models.build("transformer", config), _data(20, ioi.HELD_OUT_TEMPLATES, "held-out")
    abc = ioi.make_abc(d, V, seed=1)
    means = patching.group_means(model, abc.tokens, abc.group)
    metric = lambda logits: ioi.logit_diff(logits, d).mean().item()
    table = patching.performance_table(model, d.tokens, metric, means, d.group)
    assert len(table) == 16
    for keep in [[], [(0, 1)], [(0, 0), (1, 1)], [(1, 0), (1, 1), (0, 1)]]:
        assert table[frozenset(keep)] == pytest.approx(patching.performance(model, d.tokens, metric, keep, means, d.group), abs=1e-5)
