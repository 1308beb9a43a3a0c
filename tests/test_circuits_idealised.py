"""find_median.get_last_position_terms / assemble_logits / tent_rows / logit_fit: the trained network's logits taken
apart exactly, and parts replaced, on randomly initialised models glassbox did not build."""

import pytest
import torch

from glassbox import circuits
from glassbox.studies import find_median
from test_circuits import bridge as random_bridge, hooked_transformer as random_hooked_transformer  # the same small random models

TOKENS = torch.randint(0, 11, (64, 5), generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def bridge(seed: int = 0):
    return random_bridge(n_heads=1, seed=seed)


def hooked_transformer():
    return random_hooked_transformer(n_heads=1)


@pytest.mark.parametrize("make", [bridge, hooked_transformer], ids=["bridge", "HookedTransformer"])
def test_assembled_terms_are_the_logits(make):
    model = make()
    terms = find_median.get_last_position_terms(model, TOKENS)
    assert terms.ov.shape == (64, 5, 11) and terms.pattern.shape == (64, 5) and terms.scale.shape == (64, 1)
    assert torch.allclose(terms.pattern.sum(-1), torch.ones(64), atol=1e-5), "the last query's attention sums to 1"
    assert torch.allclose(find_median.assemble_logits(terms), model(TOKENS)[:, -1], atol=1e-4), \
        "the parts must add up to the logits: is a LayerNorm scale, the skip connection or the bias missing?"


def test_replacing_the_pattern_matches_a_real_forward_pass_up_to_the_final_scale():
    """Uniform attention in the assembled logits equals the hooked forward pass when the final LN scale is the
    hooked run's own: the only difference between the two is that scale."""
    model = bridge()
    uniform = circuits.uniform_causal_pattern(5)
    terms = find_median.get_last_position_terms(model, TOKENS)
    replaced = find_median.assemble_logits(terms, pattern=torch.full((5,), 0.2))
    hooked_scale = {}

    def keep_scale(act, hook):
        hooked_scale["s"] = act
        return act
    with_hooks = model.run_with_hooks(TOKENS, fwd_hooks=circuits.set_pattern_hooks(uniform) + [("ln_final.hook_scale", keep_scale)])[:, -1]
    rescaled = (replaced - terms.bias) * terms.scale / hooked_scale["s"][:, -1] + terms.bias
    assert torch.allclose(rescaled, with_hooks, atol=1e-4), "uniform attention assembled must be the hooked model's logits"
    assert not torch.allclose(replaced, find_median.assemble_logits(terms), atol=1e-2), "the pattern was not used"


def test_each_replacement_is_used():
    terms = find_median.get_last_position_terms(bridge(), TOKENS)
    base = find_median.assemble_logits(terms)
    zero = torch.zeros(11)
    assert torch.allclose(find_median.assemble_logits(terms, bias=zero), base - terms.bias, atol=1e-5)
    assert torch.allclose(find_median.assemble_logits(terms, direct=zero), base - terms.direct / terms.scale, atol=1e-5)
    doubled = find_median.assemble_logits(terms, ov=2 * terms.ov)
    assert torch.allclose(doubled - base, base - terms.direct / terms.scale - terms.bias, atol=1e-4), "ov enters linearly"


def test_tent_rows_keep_each_rows_mean_and_peak_at_the_token():
    terms = find_median.get_last_position_terms(bridge(), TOKENS)
    rows = find_median.tent_rows(terms, TOKENS, c=2.0)
    assert torch.allclose(rows.mean(-1), terms.ov.mean(-1), atol=1e-5), "a row offset is kept (it changes no probability)"
    assert (rows.argmax(-1) == TOKENS).all(), "a tent peaks at its own token"
    step = rows[..., 1:] - rows[..., :-1]
    assert torch.allclose(step.abs(), torch.full_like(step, 2.0), atol=1e-4), "slope c per step on both sides"
    column = torch.arange(11.0)
    assert torch.allclose(find_median.tent_rows(terms, TOKENS, 2.0, column) - rows, column.expand_as(rows))


def test_logit_fit_on_known_logits():
    ref = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    answers = torch.tensor([0, 1])
    same = find_median.logit_fit(ref, ref, answers)
    assert same["accuracy"] == same["agreement"] == same["margin_kept"] == 1.0 and same["logit_r2"] == pytest.approx(1.0)
    assert same["margin"] == pytest.approx(1.5), "margins 3-1 and 2-1: mean 1.5"
    shifted = find_median.logit_fit(ref + torch.tensor([[5.0], [-2.0]]), ref, answers)
    assert shifted["logit_r2"] == pytest.approx(1.0) and shifted["loss"] == pytest.approx(same["loss"]), \
        "a constant per list changes no probability"
    wrong = find_median.logit_fit(torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 1.0]]), ref, answers)
    assert wrong["accuracy"] == 0.5 and wrong["agreement"] == 0.5 and wrong["margin"] == pytest.approx((-1 + 1) / 2)
    assert wrong["margin_kept"] == pytest.approx(0.0)


def test_idealised_parts_and_choose_slope_on_a_planted_tent_model():
    """A model whose OV rows are exact tents of slope 7 behind uniform attention: the chosen slope of the fully
    idealised splice is 7, and the shuffled-peak control is far from it."""
    from glassbox.studies import find_median

    tokens = torch.randint(0, 20, (300, 7), generator=torch.Generator().manual_seed(0))
    ov = find_median.tent_table(20, c=7.0)[tokens]
    terms = find_median.LastPositionTerms(pattern=torch.full((300, 7), 1 / 7), ov=ov, direct=torch.zeros(300, 20),
                                          scale=torch.ones(300, 1), bias=torch.zeros(20))
    fit = find_median.fit_tent(find_median.tent_table(20, c=3.0))  # a wrong least-squares slope: the choice must fix it
    c = find_median.choose_slope("all, pure tents", terms, tokens, fit)
    assert c == pytest.approx(7.0, rel=1e-3)
    reference = find_median.assemble_logits(terms)
    kl = lambda name, c: find_median.kl_from_reference(
        find_median.assemble_logits(terms, **find_median.idealised_parts(name, terms, tokens, c, fit)), reference)
    assert kl("all, pure tents", c) < 1e-6 < 1.0 < kl("control: tents peaked at shuffled tokens", c)
    with pytest.raises(ValueError, match="bonus_fit"):
        find_median.idealised_parts("tents+bonus", terms, tokens, c, fit)
    with pytest.raises(ValueError, match="unknown"):
        find_median.idealised_parts("tents", terms, tokens, c, fit)


def test_lookup_control_and_fixed_scale_on_a_planted_tent_model():
    """The lookup control writes -c|m - median| whatever the list: on a planted tent model it is as accurate as the
    tents but reproduces less of the logits; fixing s at its mean changes nothing when every s is already equal."""
    tokens = torch.randint(0, 20, (300, 7), generator=torch.Generator().manual_seed(1))
    scale = torch.full((300, 1), 2.0)
    terms = find_median.LastPositionTerms(pattern=torch.full((300, 7), 1 / 7), ov=find_median.tent_table(20, c=7.0)[tokens],
                                          direct=torch.zeros(300, 20), scale=scale, bias=torch.zeros(20))
    fit, reference = find_median.fit_tent(find_median.tent_table(20, c=3.0)), find_median.assemble_logits(terms)
    at = lambda name, c: find_median.assemble_logits(terms, **find_median.idealised_parts(name, terms, tokens, c, fit))
    lookup = at("control: lookup -c|m - median|", 2.0)
    assert torch.allclose(lookup, -2.0 * (torch.arange(20)[None] - find_median.list_targets(tokens)[:, None]).abs().float()), \
        "the lookup's logits are -c|m - median|, the list's scale divided out"
    c = find_median.choose_slope("control: lookup -c|m - median|", terms, tokens, fit)
    tents, table = find_median.logit_fit(at("all, pure tents", 7.0), reference, find_median.list_targets(tokens)), \
        find_median.logit_fit(at("control: lookup -c|m - median|", c), reference, find_median.list_targets(tokens))
    assert tents["logit_r2"] > 0.999 and table["accuracy"] == 1.0 and table["logit_r2"] < 0.9
    assert torch.allclose(at("all, pure tents, s at its mean", 7.0), at("all, pure tents", 7.0), atol=1e-4)


def test_shape_fit_bias_shape_and_slope_evening():
    tent, quadratic = find_median.tent_table(30), find_median.quadratic_table(30)
    assert find_median.fit_shape_r2(tent * 3 + torch.randn(30)[:, None], tent) == pytest.approx(1.0), "row offsets are free"
    assert find_median.fit_shape_r2(quadratic, tent) < 0.95 and find_median.fit_shape_r2(tent, quadratic) < 0.95
    with pytest.raises(ValueError, match="same shape"):
        find_median.fit_shape_r2(tent, quadratic[:10])
    m = torch.arange(30.0)
    shape = find_median.bias_shape((m - 14.5) ** 2, find_median.fit_tent(tent))
    assert shape["corr_quadratic"] == pytest.approx(1.0)
    slopes = 1 + torch.rand(30, generator=torch.Generator().manual_seed(0))
    evened = find_median.slope_attention_evening(slopes, -slopes.log(), n_shuffles=200)
    assert evened["slope_times_attention_spread"] == pytest.approx(0.0, abs=1e-3) and evened["shuffles_spreading_as_little"] == 0.0
    assert evened["corr_slope_key_score"] < -0.9
    unrelated = find_median.slope_attention_evening(slopes, torch.zeros(30), n_shuffles=200)
    assert unrelated["shuffles_spreading_as_little"] == 1.0, "constant attention: every shuffle spreads as little"
    with pytest.raises(ValueError, match="one shape"):
        find_median.slope_attention_evening(slopes, slopes[:5])


def test_width_summary_on_a_random_bridge():
    model = bridge()
    tokens = torch.randint(0, model.cfg.d_vocab, (200, model.cfg.n_ctx), generator=torch.Generator().manual_seed(2))
    s = find_median.width_summary(model, tokens, tokens[:100], tokens[100:])
    assert 0 <= s["accuracy"] <= 1 and 0 < s["attention_entropy_last_pos"] and s["ov_fit_r2"] < 0.5, s
    assert set(s["bias"]) == {"corr_column_residual", "corr_quadratic"} and "shuffles_spreading_as_little" in s["slope_vs_attention"]
