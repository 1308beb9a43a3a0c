"""glassbox.studies.char_features: character rules, best-rule fitting (checked against brute force), dashboards."""
import math
import numpy as np
import pytest
import torch

from glassbox.studies import char_features

TEXT = "ROMEO:\nBut soft, what light?\n\nJULIET:\nAy me. The rose THE end.\nthe\n"


@pytest.fixture(scope="module")
def book():
    return char_features.RuleBook.from_text(TEXT * 3, n_bigrams=20, n_trigrams=20)


def rule(book, name):
    return book.names.index(name)


def test_codes_read_the_character_itself_and_the_one_before(book):
    truth = book.matrix(book.codes(TEXT))
    i = TEXT.index("soft")  # the 's'
    assert truth[i, rule(book, "char 's'")] and not truth[i, rule(book, "char 'o'")], "char rules must read position t, not t+1"
    assert truth[i, rule(book, "after '␣'")] and truth[i + 1, rule(book, "after 's'")], "after rules must read position t-1"
    assert truth[i, rule(book, "1st letter of a word")] and truth[i + 3, rule(book, "4th+ letter of a word")]
    assert not truth[0, rule(book, "after '␣'")], "the first character has no previous character"
    assert truth[i + 1, rule(book, "bigram 'so'")] and not truth[i, rule(book, "bigram 'so'")], "a bigram ends at t"


def test_speaker_lines_and_caps_words(book):
    truth = book.matrix(book.codes(TEXT))
    speaker, caps = rule(book, "in a speaker's name line"), rule(book, "in an all-caps word")
    marked = "".join(c for c, s in zip(TEXT, truth[:, speaker]) if s)
    assert marked == "ROMEO:JULIET:", f"speaker lines should be the name lines without their newline, got {marked!r}"
    assert "".join(c for c, s in zip(TEXT, truth[:, caps]) if s) == "ROMEOJULIETTHE", "all-caps words of 2+ letters"


def test_counts_equal_the_matrix_column_sums(book):
    codes = book.codes(TEXT)
    assert torch.equal(book.counts(codes), book.matrix(codes).sum(0))
    assert book.matrix(codes).shape == (len(TEXT), book.n_rules) == (len(TEXT), len(book.names))


def brute_force_best_f1(acts, truth, n_sizes):
    best = torch.zeros(acts.shape[1])
    for u in range(acts.shape[1]):
        order = acts[:, u].argsort(descending=True)
        n_pos = int((acts[:, u] > 0).sum())
        for s in n_sizes:
            pred = torch.zeros(len(acts), dtype=torch.bool)
            pred[order[: min(s, n_pos)]] = True
            tp = (pred[:, None] & truth).sum(0).float()
            best[u] = max(best[u], (2 * tp / (pred.sum() + truth.sum(0)).clamp(min=1)).max())
    return best


def test_fit_rules_finds_the_planted_rule_and_agrees_with_brute_force(book):
    codes = book.codes(TEXT)
    truth = book.matrix(codes)
    gen = torch.Generator().manual_seed(0)
    acts = torch.rand(len(TEXT), 6, generator=gen)
    planted = [rule(book, "char 'e'"), rule(book, "after '\\n'"), rule(book, "in a speaker's name line")]
    for u, r in enumerate(planted):
        acts[:, u] = truth[:, r].float() * (1 + acts[:, u])  # fires exactly where the rule holds, zero elsewhere
    acts[:, 3] = -acts[:, 3]  # never positive
    sizes = (0.2, 0.5)  # no size below the rules' counts: the planted rule is then the only perfect one
    fit = char_features.fit_rules(acts, book, codes, sizes=sizes, chunk=4)
    for u, r in enumerate(planted):
        assert truth[:, fit.rule[u]].equal(truth[:, r]), f"unit {u}: found {book.names[fit.rule[u]]!r}, planted {book.names[r]!r}"
        assert fit.f1[u] == pytest.approx(1.0), "a unit that is exactly a rule has F1 1 (is 'every positive activation' a candidate?)"
    assert fit.rule[3] == -1 and fit.f1[3] == 0, "a unit that is never positive has no rule"
    sizes_n = char_features._sizes(len(TEXT), sizes).tolist()
    assert torch.allclose(fit.f1, brute_force_best_f1(acts, truth, sizes_n), atol=1e-6), "fit_rules disagrees with brute force"


def test_score_rules_uses_the_threshold_on_new_text(book):
    codes = book.codes(TEXT)
    truth = book.matrix(codes)
    r = rule(book, "char 'e'")
    fit = char_features.RuleFit(rule=torch.tensor([r, r]), threshold=torch.tensor([0.5, 2.0]), f1=torch.zeros(2))
    acts = torch.stack([truth[:, r].float(), truth[:, r].float()], 1)
    scores = char_features.score_rules(acts, book, codes, fit)
    assert scores["f1"][0] == 1.0 and scores["precision"][0] == 1.0 and scores["recall"][0] == 1.0
    assert scores["f1"][1] == 0.0, "a threshold above every activation predicts nothing: F1 0"


def test_greedy_cover_splits_a_two_pattern_unit(book):
    codes = book.codes(TEXT * 4)
    truth = book.matrix(codes)
    e, nl = rule(book, "char 'e'"), rule(book, "char '\\n'")
    acts = truth[:, e].float() * 2 + truth[:, nl].float()  # 'e' strongest, newlines second
    k = int(truth[:, e].sum() + truth[:, nl].sum())
    cover = char_features.greedy_cover(acts, truth, k=k, max_base_rate=0.2)
    names = [book.names[r] for r, _ in cover]
    bigger = "char 'e'" if truth[:, e].sum() > truth[:, nl].sum() else "char '\\n'"
    assert set(names[:2]) == {"char 'e'", "char '\\n'"} and names[0] == bigger, \
        f"the cover should take the pattern covering most of the top k first, then the other; got {names}"
    assert sum(s for _, s in cover[:2]) == pytest.approx(1.0) and len(cover) == 2, "nothing is left after both patterns"
    narrow = char_features.greedy_cover(acts, truth, k=k, max_base_rate=0.01)
    assert all(truth[:, r].float().mean() <= 0.01 for r, _ in narrow), "rules above max_base_rate are not allowed"


def test_contexts_html_marks_the_top_character():
    acts = torch.zeros(len(TEXT))
    acts[TEXT.index("?")] = 3.0
    page = char_features.contexts_html(TEXT, acts, k=1, title="t<x>")
    assert "outline" in page and ">?</span>" in page.split("outline")[1][:80], "the top character must be the boxed one"
    assert "t&lt;x&gt;" in page and "3.00" in page and "↵" in page, "escape the title, print the value, draw newlines"
    with pytest.raises(ValueError, match="one activation per character"):
        char_features.contexts_html(TEXT, acts[:-1])


def test_direct_logit_effect_is_centred_and_follows_the_unembedding():
    W_U = torch.zeros(4, 3)
    W_U[0, 2] = 1.0  # residual dimension 0 writes to token 2
    effect = char_features.direct_logit_effect(torch.tensor([1.0, 0, 0, 0]), W_U)
    assert effect.argmax() == 2 and effect.sum().abs() < 1e-6
    assert char_features.direct_logit_effect(torch.tensor([1.0, 0, 0, 0]), W_U, torch.tensor([-1.0, 1, 1, 1])).argmin() == 2, \
        "a negative LayerNorm weight flips the direction"


def test_random_topk_latents_keep_k_positive_projections():
    acts = torch.randn(50, 8)
    latents, directions = char_features.random_topk_latents(acts, 32, 3, seed=1)
    assert latents.shape == (50, 32) and directions.norm(dim=1).allclose(torch.ones(32))
    assert ((latents > 0).sum(1) <= 3).all() and (latents >= 0).all()
    proj = (acts - acts.mean(0)) @ directions.T
    assert torch.allclose(latents.max(1).values, proj.max(1).values.clamp(min=0)), "the largest projection must be kept"


def test_dashboard_figure_orders_promoted_then_suppressed():
    effect = torch.tensor([0.5, -2.0, 3.0, 0.0])
    fig = char_features.dashboard_figure(torch.tensor([0.0, 1.0, 2.0]), effect, "ab\nc", n_chars=1)
    bar = fig.data[1]
    assert list(bar.x) == ["\\n", "b"] and list(bar.y) == [3.0, -2.0], "most promoted first, most suppressed last"
    assert "66.67%" in fig.layout.annotations[0].text, "density counts non-zero activations over all characters"


def test_top_rule_share_matches_the_first_greedy_step(book):
    codes = book.codes(TEXT * 4)
    truth = book.matrix(codes)
    gen = torch.Generator().manual_seed(1)
    acts = torch.rand(len(truth), 5, generator=gen) + 0.01
    acts[:, 0] = truth[:, rule(book, "char 'e'")].float() + 0.01 * acts[:, 0]  # its top k are all e's
    acts[:, 4] = -1.0  # never positive: NaN
    k = int(truth[:, rule(book, "char 'e'")].sum())
    shares = char_features.top_rule_share(acts, truth, k=k, max_base_rate=0.2)
    assert shares[0] == 1.0, "a unit whose top k all satisfy one rule has share 1"
    for u in range(1, 4):
        assert shares[u] == pytest.approx(char_features.greedy_cover(acts[:, u], truth, k=k, max_base_rate=0.2, n_rules=1)[0][1])
    assert shares[4].isnan()


def test_a_cap_never_bars_the_current_character_when_told(book):
    codes = book.codes(TEXT * 4)
    truth = book.matrix(codes)
    e = rule(book, "char 'e'")
    acts = truth[:, e].float()
    k = int(truth[:, e].sum())
    barred = char_features.greedy_cover(acts, truth, k=k, max_base_rate=0.01, n_rules=1)
    assert all(r != e for r, _ in barred), "a cap below the share of 'e' bars 'char e' (the artefact always= exists for)"
    kept = char_features.greedy_cover(acts, truth, k=k, max_base_rate=0.01, n_rules=1, always=book.char_rules)
    assert kept == [(e, 1.0)], "with the current-character rules always allowed, 'char e' covers the unit"
    assert book.char_rules[e] and not book.char_rules[rule(book, "char vowel")] and not book.char_rules[rule(book, "after 'e'")]


def test_cover_shares_flag_a_sum_of_two_unrelated_patterns_and_not_one(book):
    codes = book.codes(TEXT * 4)
    truth = book.matrix(codes)
    e, nl = truth[:, rule(book, "char 'e'")].float(), truth[:, rule(book, "char '\\n'")].float()
    k = int(min(e.sum(), nl.sum()))
    gen = torch.Generator().manual_seed(0)
    noise = 0.01 * torch.rand(len(e), 3, generator=gen)
    units = torch.stack([e * 2, nl * 2, e + nl], 1) + noise * torch.stack([e, nl, e + nl], 1)  # 'e'; newline; their sum
    shares = char_features.cover_shares(units, truth, k=k, max_base_rate=0.05, always=book.char_rules)
    assert char_features.is_polysemantic(shares).tolist() == [False, False, True], f"shares {shares.tolist()}"
    for u in range(3):
        cover = char_features.greedy_cover(units[:, u], truth, k=k, max_base_rate=0.05, n_rules=2, always=book.char_rules)
        assert shares[u, 0] == pytest.approx(cover[0][1]) and shares[u, 1] == pytest.approx(cover[1][1] if len(cover) > 1 else 0.0)


def test_bootstrap_median_gap_brackets_the_gap_and_straddles_zero_for_equal_groups():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(400, generator=gen) + 0.3, torch.rand(400, generator=gen)
    gap, lo, hi = char_features.bootstrap_median_gap(a, b, n_boot=300)
    assert lo <= gap <= hi and lo > 0, f"a shifted by 0.3 should give an interval above 0, got [{lo:.3f}, {hi:.3f}]"
    _, lo, hi = char_features.bootstrap_median_gap(b, torch.rand(400, generator=gen), n_boot=300)
    assert lo < 0 < hi, "two draws of the same distribution should give an interval around 0"


def test_bootstrap_median_gap_uses_the_same_median_as_numpy_for_even_groups():
    """The gap must equal the difference of the medians a notebook reports with np.median: torch's `median` takes the lower
    middle value of an even-sized group, which made notebook 08's co-firing gap disagree with its own medians by 0.005."""
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(32, generator=gen), torch.rand(59, generator=gen)
    gap, lo, hi = char_features.bootstrap_median_gap(a, b, n_boot=200)
    assert gap == pytest.approx(float(np.median(a.numpy()) - np.median(b.numpy())), abs=1e-6), "mean of the two middle values"
    assert gap != pytest.approx((a.median() - b.median()).item(), abs=1e-6), "the lower middle value is not the median here"
    assert lo <= gap <= hi
    gap, _, _ = char_features.bootstrap_median_gap(torch.tensor([0.0, 1.0, float("nan")]), torch.tensor([0.0]), n_boot=10)
    assert gap == pytest.approx(0.5), "NaNs are dropped before the median"


def test_split_coverage_counts_the_parents_firings_covered_by_children():
    parent = torch.tensor([1.0, 1, 1, 1, 0, 0])
    children = torch.tensor([[1.0, 0], [1, 1], [0, 1], [0, 0], [1, 1], [0, 0]])
    out = char_features.split_coverage(parent, children)
    assert out["covered"] == pytest.approx(0.75) and out["best_child"] == pytest.approx(0.5)
    assert out["cofire"] == pytest.approx(1 / 3), "one of the three covered firings has both children on"
    with pytest.raises(ValueError, match="never fires"):
        char_features.split_coverage(torch.zeros(6), children)


def test_mix_scales_give_each_unit_its_share_of_the_top_k_where_kth_scaling_does_not():
    gen = torch.Generator().manual_seed(0)
    n = 2000
    a, b = torch.zeros(n), torch.zeros(n)
    a[:300] = 1 + 9 * torch.rand(300, generator=gen) ** 3  # a heavy tail
    b[300:600] = 1 + 0.5 * torch.rand(300, generator=gen)  # a flat one; the two never fire together
    pair = torch.stack([a, b], 1)
    for share_b in (0.5, 0.25):
        mixed = (pair / char_features.mix_scales(pair, k=100, share_b=share_b)).sum(1)
        from_b = (mixed.topk(100).indices >= 300).float().mean().item()
        assert from_b == pytest.approx(share_b, abs=0.011), f"share_b={share_b}: b supplies {from_b:.2f} of the top 100"
    kth = pair.topk(100, dim=0).values[-1]
    naive = ((pair / kth).sum(1).topk(100).indices >= 300).float().mean().item()
    assert naive < 0.25, f"scaling by the 100th largest should let the heavy tail dominate (b: {naive:.2f}); the control would be unfair"
    with pytest.raises(ValueError, match="share_b"):
        char_features.mix_scales(pair, share_b=1.0)


def test_steering_table_counts_each_set_and_a_zero_push_changes_nothing():
    from glassbox.studies import models
    cfg = models.config_dict(models.TransformerConfig(n_layers=1, n_heads=1, d_model=16, d_head=16, d_mlp=32, d_vocab=5, n_ctx=8,
                                                      act_fn="relu", seed=0))
    model = models.build("transformer", cfg).eval()
    prompts = torch.randint(0, 5, (6, 3), generator=torch.Generator().manual_seed(1))
    effect = (model.W_out[0] @ model.W_U).detach()  # (d_mlp, vocab): the direct path of each neuron to the logits
    up = effect[:, 2] - effect.mean(1)
    table = char_features.steering_table(model, prompts, "blocks.0.mlp.hook_post", {"up": up / up.norm(), "zero": torch.zeros(32)},
                                         {"2": torch.tensor([2]), "01": torch.tensor([0, 1])}, [1000.0], n_new=10, n_ctx=8)
    clean = char_features.generate(model, prompts, 10, n_ctx=8, seed=0)
    assert table["0"]["none"]["2"] == pytest.approx(char_features.char_rate(clean, torch.tensor([2])))
    assert table["1000"]["zero"] == table["0"]["none"], "adding a zero vector must give the unsteered draws"
    assert table["1000"]["up"]["2"] > table["0"]["none"]["2"] + 0.25, f"a large push toward token 2 should produce it more often: {table}"


def test_best_of_groups_chooses_the_push_that_leads_its_rivals_and_a_copy_of_a_rival_leads_by_nothing():
    from glassbox.studies import models
    cfg = models.config_dict(models.TransformerConfig(n_layers=1, n_heads=1, d_model=16, d_head=16, d_mlp=32, d_vocab=5, n_ctx=8,
                                                      act_fn="relu", seed=0))
    model = models.build("transformer", cfg).eval()
    prompts = torch.randint(0, 5, (6, 3), generator=torch.Generator().manual_seed(1))
    effect = (model.W_out[0] @ model.W_U).detach()
    up = effect[:, 2] - effect.mean(1)
    up = up / up.norm()
    zero, two = torch.zeros(32), torch.tensor([2])
    kw = dict(group=3, scale=1000.0, n_new=10, n_ctx=8)
    pick, lead = char_features.best_of_groups(model, prompts, "blocks.0.mlp.hook_post", torch.stack([zero, up, zero]), [two] * 3,
                                              {"rival": zero}, **kw)
    assert pick == [1] and lead[0] > 0.25, f"the push toward token 2 leads a zero rival on token 2: {pick}, {lead}"
    pick, lead = char_features.best_of_groups(model, prompts, "blocks.0.mlp.hook_post", torch.stack([zero, up, zero]), [two] * 3,
                                              {"rival": up}, **kw)
    assert lead[0] == pytest.approx(0.0), "the control: a rival pushing the same way leaves no lead"
    with pytest.raises(ValueError, match="groups of 3"):
        char_features.best_of_groups(model, prompts, "blocks.0.mlp.hook_post", torch.stack([zero, up]), [two] * 2, {"r": zero}, **kw)


def test_lookup_units_fire_exactly_where_their_rule_holds_and_a_mixed_pair_needs_two_rules(book):
    codes = book.codes(TEXT * 4)
    truth = book.matrix(codes)
    cols = [rule(book, "char 'e'"), rule(book, "char '\\n'")]
    units = char_features.lookup_units(truth[:, cols], seed=0)
    assert torch.equal(units > 0, truth[:, cols]) and units.max() <= 1 and units[units > 0].min() >= 0.5
    assert torch.equal(units, char_features.lookup_units(truth[:, cols], seed=0)), "the same seed gives the same strengths"
    k = int(truth[:, cols].sum(0).min())
    mixed = char_features.mix_pairs(units, units, [(0, 1)], k=k)
    shares = char_features.cover_shares(torch.cat([units, mixed], 1), truth, k=k, max_base_rate=0.05, always=book.char_rules)
    assert char_features.is_polysemantic(shares).tolist() == [False, False, True], f"shares {shares.tolist()}"
    assert char_features.mix_pairs(units, units, []).shape == (len(units), 0)
    with pytest.raises(ValueError, match="same units"):
        char_features.mix_pairs(units, units[:, :1], [(0, 0)])


def test_shuffled_f1_is_high_for_a_dense_unit_and_near_zero_for_a_sparse_one(book):
    """F1 rewards units that fire often: random noise on about half the characters keeps a high F1 with the characters shuffled,
    a unit firing exactly on one rare character keeps almost none; dead units are NaN."""
    text = TEXT * 20
    codes = book.codes(text)
    truth = book.matrix(codes)
    gen = torch.Generator().manual_seed(0)
    dense = (torch.rand(len(text), generator=gen) < 0.5).float()
    sparse = truth[:, rule(book, "char 'J'")].float()
    acts = torch.stack([dense, sparse, torch.zeros(len(text))], 1)
    chance = char_features.shuffled_f1(acts, acts, book, codes, codes, seed=0)
    assert chance[0] > 0.4, f"noise on half the characters should match a broad rule by chance, got {chance[0]:.2f}"
    assert chance[1] < 0.3, f"a rare character shuffled should lose its rule, got {chance[1]:.2f}"
    real = char_features.score_rules(acts, book, codes, char_features.fit_rules(acts, book, codes))["f1"]
    assert real[1] == pytest.approx(1.0) and real[1] - chance[1] > 0.7
    assert chance[2].isnan(), "a unit positive nowhere has no chance level"


def test_rules_to_cover_counts_one_for_a_character_and_m_for_m_unrelated_characters(book):
    """A lookup unit on one character needs one rule; on m unrelated characters of equal weight about m (80% of 5: 4)."""
    truth = book.matrix(book.codes(TEXT * 40))
    cols = torch.tensor([rule(book, f"char '{c}'") for c in "oetsh"])
    one = char_features.lookup_groups(truth[:, cols[:1]], 1, 3, seed=0)
    five = char_features.lookup_groups(truth[:, cols], 5, 3, seed=0)
    assert torch.equal((one > 0).any(1), truth[:, cols[0]]), "a one-column lookup fires exactly where its rule holds"
    counts = [(five[:, 0] > 0)[truth[:, c]].sum().item() for c in cols]
    assert len(set(counts)) == 1, f"each of the five characters fires equally often: {counts}"
    need_one = char_features.rules_to_cover(one, truth, max_base_rate=0.05, always=book.char_rules, per_interval=5)
    need_five = char_features.rules_to_cover(five, truth, max_base_rate=0.05, always=book.char_rules, per_interval=5)
    assert need_one.tolist() == [1.0, 1.0, 1.0] and need_five.min() >= 3, f"{need_one.tolist()} / {need_five.tolist()}"
    assert char_features.rules_to_cover(torch.zeros(len(truth), 1), truth).isnan().all(), "a silent unit has no count"
    with pytest.raises(ValueError, match="share"):
        char_features.rules_to_cover(one, truth, share=0)


def test_variance_explained_is_one_for_a_group_lookup_and_near_zero_for_noise():
    groups = torch.arange(640) % 64
    lookup = torch.randn(64, generator=torch.Generator().manual_seed(0))[groups]
    noise = torch.randn(640, generator=torch.Generator().manual_seed(1))
    eta = char_features.variance_explained(torch.stack([lookup, noise, torch.ones(640)], 1), groups, 64)
    assert eta[0] == pytest.approx(1.0, abs=1e-6), "a unit that is a function of the group: all its variance is between groups"
    assert eta[1] < 0.2, "noise: only the chance share (about groups / n)"
    assert eta[2] == 0, "a constant unit has no variance to explain"
    with pytest.raises(ValueError, match="groups"):
        char_features.variance_explained(torch.stack([lookup], 1), groups + 1, 64)


def test_log_odds_lift_compares_rare_and_common_sets_and_rank_verdict_can_go_each_way():
    assert char_features.log_odds_lift(0.2, 0.2, 1000) == pytest.approx(0.0)
    rare, common = char_features.log_odds_lift(0.05, 0.01, 1000), char_features.log_odds_lift(0.14, 0.10, 1000)
    assert rare > common > 0, "the same 4-point rise is a larger move from a rare base"
    assert char_features.log_odds_lift(0.0, 0.0, 100) == pytest.approx(0.0), "zero counts stay finite"
    others = [0.1 * i for i in range(39)]
    assert char_features.rank_verdict(9.0, others)["verdict"] == "beats"  # p = 1/40
    assert char_features.rank_verdict(9.0, others[:8])["verdict"] == "cannot decide"  # p = 1/9: too few controls
    v = char_features.rank_verdict(others[20], others)
    assert v["verdict"] == "not shown" and v["k"] == 19 and v["p"] == pytest.approx(20 / 40)
    assert char_features.rank_verdict(others[38], others)["verdict"] == "not shown"  # k = 1 of 39: p = 2/40, not < 0.05


def test_matched_rank_compares_only_like_base_rates():
    """A rare set with a huge log-odds lift beats the feature on the full set of controls, but is left out of the comparison
    when its base rate is unlike the feature's; the feature then beats the controls at its own base rate."""
    common = [0.1 + 0.001 * i for i in range(20)]
    lifts, bases = [1.0 + 0.01 * i for i in range(20)] + [5.0], common + [0.002]
    assert char_features.rank_verdict(2.0, lifts)["verdict"] == "not shown"  # the rare set is as high
    m = char_features.matched_rank(2.0, 0.11, lifts, bases)
    assert m["n"] == 20 and m["k"] == 0 and m["verdict"] == "beats"
    assert char_features.matched_rank(2.0, 0.5, lifts, bases)["n"] == 0  # no control near a 50% base rate
    with pytest.raises(ValueError, match="one base rate per control"):
        char_features.matched_rank(2.0, 0.1, lifts, bases[:-1])


def test_calibrate_rank_passes_exchangeable_posers_and_fails_posers_biased_upward():
    """Posers drawn like the controls are called features about as often as alpha allows; posers shifted upward (a biased rank)
    are flagged; one poser passing once is not a failure; posers with too few near controls cannot be called one."""
    g = torch.Generator().manual_seed(0)
    others, posers = torch.randn(60, generator=g).tolist(), torch.randn(200, generator=g).tolist()
    bases, poser_bases = [0.1] * 60, [0.1] * 200
    fair = char_features.calibrate_rank(posers, poser_bases, others, bases)
    assert fair["n_able"] == 200 and not fair["fails"] and fair["share"] < 0.1, fair
    biased = char_features.calibrate_rank([x + 1.5 for x in posers], poser_bases, others, bases)
    assert biased["fails"] and biased["binom_p"] < 1e-6, biased
    once = char_features.calibrate_rank([9.0] + posers[:19], poser_bases[:20], others, bases)
    assert once["k"] >= 1 and not once["fails"], "one poser passing once is the event alpha allows"
    far = char_features.calibrate_rank([9.0], [0.9], others, bases)
    assert (far["k"], far["n_able"], far["binom_p"], far["fails"]) == (0, 0, 1.0, False), "no near control: cannot be called one"
    with pytest.raises(ValueError, match="one base rate per poser"):
        char_features.calibrate_rank(posers, poser_bases[:-1], others, bases)


def test_calibrate_rank_loo_ranks_each_control_against_the_others_and_passes_an_exchangeable_draw():
    """Leave-one-out: each control is ranked against the rest of its draw (never against itself, else none could pass); an
    exchangeable draw is not flagged; one control lifted far above the rest is the one called a feature."""
    g = torch.Generator().manual_seed(0)
    lifts, bases = torch.randn(60, generator=g).tolist(), [0.1] * 60
    fair = char_features.calibrate_rank_loo(lifts, bases)
    assert fair["n"] == fair["n_able"] == 60 and fair["k"] <= 3 and not fair["fails"], fair  # the top two pass: p 1/60, 2/60
    one = char_features.calibrate_rank_loo([9.0] + lifts[1:], bases)
    assert one["verdicts"][0] == "beats" and one["k"] == fair["k"] and not one["fails"], one
    i = 5
    alone = char_features.calibrate_rank([lifts[i]], [bases[i]], lifts[:i] + lifts[i + 1:], bases[:i] + bases[i + 1:])
    assert fair["verdicts"][i] == alone["verdicts"][0], "the same rank as calibrate_rank against the other controls"
    with pytest.raises(ValueError, match="one base rate per control"):
        char_features.calibrate_rank_loo(lifts, bases[:-1])


def test_bootstrap_median_dd_is_the_difference_of_the_two_gaps_and_straddles_zero_for_equal_gaps():
    g = torch.Generator().manual_seed(0)
    a1, b1, a2, b2 = (torch.rand(300, generator=g) + s for s in (0.5, 0.0, 0.2, 0.0))
    dd = char_features.bootstrap_median_dd(a1, b1, a2, b2, n_boot=300)
    gap = lambda a, b: char_features.bootstrap_median_gap(a, b, n_boot=10)[0]
    assert dd[0] == pytest.approx(gap(a1, b1) - gap(a2, b2), abs=1e-6) and dd[1] > 0
    same = char_features.bootstrap_median_dd(a1, b1, a1 + 0.0, b1 + 0.0, n_boot=300)  # the control: equal gaps
    assert same[1] < 0 < same[2]


def test_rank_against_gives_the_matched_and_the_all_rank_and_spearman_matches_scipy():
    lifts, bases = [1.0, 1.2, 5.0], [0.1, 0.12, 0.002]
    r = char_features.rank_against(2.0, 0.1, lifts, bases)
    assert r["matched"]["n"] == 2 and r["matched"]["k"] == 0 and r["matched_max"] == pytest.approx(1.2) and r["all"]["k"] == 1
    assert r["all_as_high_bases"] == [0.002]
    assert char_features.rank_against(2.0, 0.9, lifts, bases)["matched_max"] is None  # none near: no number, not NaN
    stats = pytest.importorskip("scipy.stats")
    x, y = [0.3, 0.1, 0.1, 0.5, 0.2], [1.0, 2.0, 0.5, -1.0, 3.0]
    assert char_features.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert char_features.spearman(x, x) == pytest.approx(1.0)
