"""Unit tests of glassbox.studies.shakespeare: the checked corpus, the character tokenizer, the split and the windows."""
import math

import pytest
import torch

from glassbox import lm
from glassbox.studies import shakespeare


def test_load_shakespeare_checks_the_file(tmp_path):
    corpus = shakespeare.load_shakespeare()
    assert len(corpus) == 1_115_394 and corpus.startswith("First Citizen:")
    with pytest.raises(FileNotFoundError, match="missing.*restore data/tinyshakespeare.txt"):
        shakespeare.load_shakespeare(tmp_path / "none.txt")
    (tmp_path / "edited.txt").write_text(corpus[:-1])
    with pytest.raises(ValueError, match="corrupt or a different version"):
        shakespeare.load_shakespeare(tmp_path / "edited.txt")


def test_tokenizer_ids_are_sorted_characters_and_decode_inverts_encode():
    tok = shakespeare.CharTokenizer.from_text("banana!")
    assert tok.chars == "!abn" and tok.d_vocab == 4
    assert tok.encode("nab").tolist() == [3, 1, 2] and tok.encode("nab").dtype == torch.int64
    assert tok.decode(tok.encode("a!nb")) == "a!nb" and tok.decode([3, 0]) == "n!"
    with pytest.raises(ValueError, match=r"characters \['c', 'z'\] are not in"):
        tok.encode("zabca")
    with pytest.raises(ValueError, match=r"token ids \[4\] are outside 0..3"):
        tok.decode([0, 4])
    with pytest.raises(ValueError, match=r"token ids \[-1\]"):
        tok.decode(torch.tensor([-1, 3]))


@pytest.mark.parametrize("n,fraction,cut", [(10, 0.12, 9), (10, 0.18, 8), (10, 0.5, 5), (3, 0.1, 3)])
def test_split_keeps_the_first_rounded_share_for_training(n, fraction, cut):
    train, val = shakespeare.split(torch.arange(n), fraction)
    assert train.tolist() == list(range(cut)) and val.tolist() == list(range(cut, n)), \
        f"round({n} x (1 - {fraction})) = {cut} training tokens first, the rest for validation, unshuffled"


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_refuses_a_fraction_outside_the_open_interval(fraction):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        shakespeare.split(torch.arange(10), fraction)


def test_random_windows_are_consecutive_slices_from_every_possible_start():
    tokens = torch.arange(100, 106)
    windows = lm.random_windows(tokens, 300, 4, torch.Generator().manual_seed(0))
    assert windows.shape == (300, 4)
    assert (windows.diff(dim=1) == 1).all(), "each window is a run of consecutive tokens"
    assert set(windows[:, 0].tolist()) == {100, 101, 102}, "starts 0..n-length, each possible"
    assert lm.random_windows(tokens, 2, 6).tolist() == [list(range(100, 106))] * 2, "a window as long as the text"


def test_random_windows_follow_their_generator():
    tokens = torch.arange(1000)
    torch.manual_seed(1)
    a = lm.random_windows(tokens, 8, 3, torch.Generator().manual_seed(5))
    torch.manual_seed(2)
    b = lm.random_windows(tokens, 8, 3, torch.Generator().manual_seed(5))
    assert torch.equal(a, b), "the same generator seed must give the same windows"
    assert not torch.equal(a, lm.random_windows(tokens, 8, 3, torch.Generator().manual_seed(6)))


@pytest.mark.parametrize("batch_size,length,match", [(0, 3, "must be >= 1"), (2, 0, "must be >= 1"),
                                                     (2, 7, "windows of 7 tokens do not fit in 6 tokens")])
def test_random_windows_refuse_impossible_shapes(batch_size, length, match):
    with pytest.raises(ValueError, match=match):
        lm.random_windows(torch.arange(6), batch_size, length)


def test_edge_cases_one_window_of_one_token_and_empty_text():
    assert lm.random_windows(torch.arange(5), 1, 1, torch.Generator().manual_seed(0)).shape == (1, 1)
    tok = shakespeare.CharTokenizer.from_text("ab")
    assert tok.encode("").dtype == torch.int64 and tok.decode([]) == ""
    with pytest.raises(AttributeError):
        tok.chars = "xyz"  # frozen: a tokenizer's vocabulary never changes under the ids it gave out


def test_drop_width_tells_a_sudden_drop_from_a_linear_decline():
    steps = list(range(0, 1001, 20))
    sudden = [4.0 - 3.8 / (1 + math.exp(-(s - 300) / 15)) for s in steps]
    linear = shakespeare.linear_decline(steps, sudden)
    assert shakespeare.drop_width(steps, linear) == pytest.approx(600, abs=1), "a straight line covers 20%->80% in 60% of the run"
    assert shakespeare.drop_width(steps, sudden) < 100, "a logistic drop of scale 15 covers 20%->80% in about 42 steps"
    assert shakespeare.drop_step(steps, sudden, 0.5) == pytest.approx(300, abs=2)
    assert shakespeare.drop_step([0, 10], [1.0, 0.0], 0.25) == pytest.approx(2.5), "interpolated between saved steps"
    with pytest.raises(ValueError, match="no drop"):
        shakespeare.drop_step([0, 1, 2], [1.0, 0.5, 1.0], 0.5)
    with pytest.raises(ValueError, match="fraction"):
        shakespeare.drop_step([0, 1], [1.0, 0.0], 1.0)


def test_exponential_control_has_the_same_half_step_and_tells_a_sudden_drop_from_a_smooth_one():
    steps = list(range(0, 1001, 20))
    sudden = [4.0 - 3.8 / (1 + math.exp(-(s - 300) / 15)) for s in steps]
    smooth = shakespeare.exponential_decline(steps, sudden, 300)
    assert smooth[0] == pytest.approx(sudden[0]) and smooth[-1] == pytest.approx(sudden[-1]), "same end values"
    assert shakespeare.drop_step(steps, smooth, 0.5) == pytest.approx(300, abs=1), "half-way at the asked step"
    assert 1.5 * 300 < shakespeare.drop_width(steps, smooth) < 2 * 300, "20%->80% of an exponential: up to 2x its half step"
    assert all(a > b for a, b in zip(smooth, smooth[1:])), "no plateau: it falls at every step"
    assert shakespeare.drop_width(steps, sudden) < 0.5 * shakespeare.drop_width(steps, smooth), "a logistic drop is far narrower"
    again = shakespeare.exponential_decline(steps, smooth, 300)
    assert shakespeare.drop_width(steps, smooth) > 0.9 * shakespeare.drop_width(steps, again), "an exponential is not narrower than itself"
    with pytest.raises(ValueError, match="halfway"):
        shakespeare.exponential_decline(steps, sudden, 1000)


def test_head_ablation_costs_find_the_head_a_model_needs():
    from glassbox.studies import models
    model = models.build("transformer", models.config_dict(models.TransformerConfig(n_layers=1, n_heads=2, d_model=16, d_head=8,
                                                                                   n_ctx=12, d_vocab=65, seed=0)))
    tokens = torch.randint(0, 65, (8, 13), generator=torch.Generator().manual_seed(0))
    costs = shakespeare.head_ablation_costs(model, tokens[:, :-1], tokens[:, 1:])
    assert set(costs) == {"L0H0", "L0H1", "all heads", "clean loss"}
    assert all(abs(v) < 0.05 for k, v in costs.items() if k != "clean loss"), f"an untrained model needs no head: {costs}"


class _Copier(torch.nn.Module):
    """A lookup that copies: at each position, predicts the character that followed the last earlier copy of the current one."""

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, 65)
        for b in range(tokens.shape[0]):
            after = {}
            for i in range(tokens.shape[1]):
                if i > 0:
                    after[int(tokens[b, i - 1])] = int(tokens[b, i])
                if int(tokens[b, i]) in after:
                    logits[b, i, after[int(tokens[b, i])]] = 10.0
        return logits


def test_span_copy_losses_scramble_control_separates_a_copier_from_a_model_that_ignores_context():
    tokens = shakespeare.CharTokenizer.from_text(text := shakespeare.load_shakespeare()).encode(text)[-20_000:]
    from glassbox import lm
    spans = lm.repeated_word_spans(shakespeare.CharTokenizer.from_text(text).decode(tokens), 64)[:20]
    blind = lambda t: torch.zeros(*t.shape, 65)  # ignores its context: the scramble changes nothing
    same = shakespeare.span_copy_losses(blind, tokens, spans, 64)
    assert torch.allclose(same[0], same[1]), "a model that ignores context cannot tell the scramble"
    copied = shakespeare.span_copy_losses(_Copier(), tokens, spans, 64)
    assert copied[1].mean() > copied[0].mean() + 1, "a copier must lose its advantage when the first copy is scrambled"
    assert copied.shape == (3, len(spans)) and torch.allclose(same[2], same[0]), "row 2: the first copy (uniform for a blind model)"
    with pytest.raises(ValueError, match="empty"):
        shakespeare.span_copy_losses(blind, tokens, [], 64)
