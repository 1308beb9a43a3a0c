"""glassbox.studies.grokking: data, the full-batch loop, and the Fourier progress measures on known inputs."""
import math

import pytest
import torch

from glassbox import fourier
from glassbox.studies import grokking, models


def test_make_data_covers_every_pair_once():
    d = grokking.make_data(7, 0.3, seed=0)
    assert d.tokens.shape == (49, 3) and (d.tokens[:, 2] == 7).all(), "tokens are (a, b, =) with '=' = p"
    assert d.tokens[3 * 7 + 5].tolist() == [3, 5, 7] and d.labels[3 * 7 + 5] == 1, "row a * p + b, label (a + b) mod p"
    assert len(d.train) == round(0.3 * 49) and len(d.train) + len(d.test) == 49
    assert set(d.train.tolist()).isdisjoint(d.test.tolist()), "a pair must not be in train and test"
    assert torch.equal(d.train, grokking.make_data(7, 0.3, seed=0).train), "the split must be reproducible from its seed"
    assert not torch.equal(d.train, grokking.make_data(7, 0.3, seed=1).train)


def test_model_config_and_answer_logits():
    cfg = grokking.model_config(7, seed=0, d_model=16, n_heads=2, d_mlp=32)
    assert cfg["normalization_type"] is None and cfg["act_fn"] == "relu" and cfg["d_vocab"] == 8
    model = models.build("transformer", cfg)
    logits = grokking.answer_logits(model, grokking.make_data(7, 0.5, 0).tokens)
    assert logits.shape == (49, 7), "answers are 0..p-1: the '=' class must be dropped"


def test_full_batch_training_memorises_and_keeps_checkpoints():
    torch.manual_seed(0)
    data = grokking.make_data(7, 0.5, seed=0)
    model = models.build("transformer", grokking.model_config(7, seed=0, d_model=32, n_heads=2, d_mlp=64))
    h = grokking.train_full_batch(model, data, epochs=60, lr=1e-2, weight_decay=0.1, log_every=20,
                                  checkpoint_every=25, progress=False)
    assert [r["epoch"] for r in h.records] == [0, 20, 40, 60]
    assert sorted(h.checkpoints) == [0, 25, 50, 60], "epoch 0, every 25, and the last epoch"
    assert h.records[-1]["train_loss"] < 0.5 * h.records[0]["train_loss"], "full-batch AdamW should fit 25 pairs"
    model.load_state_dict(h.checkpoints[0])
    assert grokking.evaluate(model, data)["train_loss"] == pytest.approx(h.records[0]["train_loss"]), \
        "checkpoint 0 must be a copy of the initial weights, not a reference to the trained ones"
    assert grokking.first_epoch(h.records, "train_loss", h.records[-1]["train_loss"], above=False) == 60
    assert grokking.first_epoch(h.records, "train_accuracy", 2.0) is None


def synthetic_logits(p: int, k: int, other: int) -> torch.Tensor:
    """Logits that solve a + b mod p with frequency k, plus a distracting term at another frequency."""
    a = torch.arange(p, dtype=torch.float64)
    s = (a[:, None] + a[None, :]).reshape(-1)
    return (5 * fourier.cos_logit_table(p, k) + 3 * torch.cos(2 * math.pi * other * s / p)[:, None].float()
            * torch.linspace(-1, 1, p)[None])


def test_restricted_and_excluded_logits():
    p, k = 13, 4
    data = grokking.make_data(p, 0.5, 0)
    logits = synthetic_logits(p, k, other=2)
    kept = grokking.restricted_logits(logits, p, [k])
    assert (kept.argmax(-1) == data.labels).all(), "keeping the solving frequency must keep every answer"
    assert torch.allclose(kept - logits.mean(0), 5 * fourier.cos_logit_table(p, k), atol=1e-4), \
        "restricting to k must remove the distractor exactly"
    removed = grokking.excluded_logits(logits, p, [k])
    assert (removed.argmax(-1) == data.labels).float().mean() < 0.3, "removing k must destroy the answers"
    assert torch.allclose(removed + (kept - logits.mean(0)), logits, atol=1e-4), "the two parts add back to the logits"


def test_neuron_frequencies_on_known_neurons():
    p = 17
    a = torch.arange(p, dtype=torch.float64)
    A, B = a.repeat_interleave(p), a.repeat(p)
    w = 2 * math.pi / p
    acts = torch.stack([torch.relu(torch.cos(w * 3 * A) + torch.cos(w * 3 * B)),  # frequency 3 in a, b and their product
                        torch.cos(w * 6 * A + 1.0) + 0.1 * torch.cos(w * 2 * B)], 1).float()
    freq, share = grokking.neuron_frequencies(acts, p)
    assert freq.tolist() == [3, 6], f"dominant frequencies {freq.tolist()}, expected [3, 6] (a/b axes swapped?)"
    assert share[0] > 0.8 and 0.95 < share[1] < 1.0, f"shares of variance {share.tolist()}"


def test_key_frequencies_counts_clean_neurons_only():
    freq = torch.tensor([3, 3, 3, 5, 5, 5, 7, 0, 9, 9])
    share = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0.3, 0.3])
    assert grokking.key_frequencies(freq, share, min_neurons=0.2, min_share=0.5) == [3, 5], \
        "3 has 3 clean neurons, 5 has 2 (one is unclear), 7 has 1, 9 only unclear ones; 0 is the constant"


def test_cos_fit_recovers_known_coefficients():
    p = 11
    logits = 2.0 * fourier.cos_logit_table(p, 2) - 0.5 * fourier.cos_logit_table(p, 5) + 3.0
    r2, alpha = grokking.cos_fit(logits, p, [2, 5])
    assert r2 == pytest.approx(1.0, abs=1e-6) and alpha == pytest.approx([2.0, -0.5], abs=1e-5)
    r2_wrong, _ = grokking.cos_fit(logits, p, [3, 4])
    assert r2_wrong < 0.05, "other frequencies must explain (almost) none of it: a + b - c, not a + b + c"


def test_embedding_frequency_surgery():
    p = 7
    model = models.build("transformer", grokking.model_config(p, seed=0, d_model=16, n_heads=2, d_mlp=32))
    tokens = grokking.make_data(p, 0.5, 0).tokens
    same = grokking.with_embedding_frequencies(model, p, list(range(1, p // 2 + 1)), keep=True)
    assert torch.allclose(grokking.answer_logits(same, tokens), grokking.answer_logits(model, tokens), atol=1e-5), \
        "keeping every frequency must leave the model unchanged"
    flat = grokking.with_embedding_frequencies(model, p, list(range(1, p // 2 + 1)), keep=False)
    W = flat.W_E.detach()
    assert torch.allclose(W[:p], W[:p].mean(0, keepdim=True).expand(p, -1), atol=1e-5), \
        "removing every frequency leaves the constant: all numbers share one embedding"
    assert torch.equal(W[p], model.W_E.detach()[p]), "the '=' token's embedding must not change"
    assert not torch.equal(model.W_E.detach()[:p], W[:p]), "the original model must not be modified"


def test_key_frequencies_never_empty_and_empty_projection_is_zero():
    assert grokking.key_frequencies(torch.tensor([4, 4, 2]), torch.zeros(3)) == [4], "fallback: most common frequency"
    table = torch.randn(25, 5)
    assert torch.equal(grokking.excluded_logits(table, 5, []), table), "removing no frequency changes nothing"


def test_halfway_epoch():
    epochs = [0, 10, 20, 30, 40, 50]
    falling = [9.0, 8.0, 6.0, 4.0, 1.0, 2.0]  # from 8 at epoch 10 down to 1: half-way is 4.5, first reached at 30
    assert grokking.halfway_epoch(epochs, falling, start=10) == 30
    rising = [1.0, 1.0, 1.5, 3.0, 3.0, 2.0]  # from 1 up to 3: half-way 2 is first reached at 30
    assert grokking.halfway_epoch(epochs, rising, start=0) == 30, "a rising curve must be followed upwards"
    assert grokking.halfway_epoch(epochs, [1e-4, 1e-3, 1e-2, 1e-1, 1, 1], start=0, log=True) == 20, \
        "in log space half-way from 1e-4 to 1 is 1e-2"
    assert grokking.halfway_epoch(epochs, [2.0] * 6, start=0) is None


def test_progress_measures_on_a_tiny_model():
    p = 7
    data = grokking.make_data(p, 0.5, 0)
    model = models.build("transformer", grokking.model_config(p, seed=0, d_model=16, n_heads=2, d_mlp=32))
    m = grokking.progress_measures(model, data, [])
    assert m["excluded_loss"] == pytest.approx(grokking.evaluate(model, data)["train_loss"], rel=1e-5), \
        "with no key frequency removed, the excluded loss is the training loss"
    squares = sum(p_.detach().double().pow(2).sum() for p_ in model.parameters())
    assert m["weight_norm"] == pytest.approx(squares.sqrt().item())
    every = grokking.progress_measures(model, data, list(range(1, p // 2 + 1)))
    assert every["restricted_test_accuracy"] != m["restricted_test_accuracy"] or every["restricted_loss"] != m["restricted_loss"]


def test_restricted_test_logits_cannot_see_the_training_answers():
    p, k = 13, 4
    data = grokking.make_data(p, 0.5, 0)
    logits = synthetic_logits(p, k, other=2)
    pure = grokking.restricted_test_logits(5 * fourier.cos_logit_table(p, k), p, [k], data.test)
    assert pure.shape == (len(data.test), p)
    assert (pure.argmax(-1) == data.labels[data.test]).all(), "the solving frequency on the test rows keeps every answer"
    kept = grokking.restricted_test_logits(logits, p, [k], data.test)
    changed = logits.clone()
    changed[data.train] = torch.randn(len(data.train), p) * 100
    assert torch.allclose(grokking.restricted_test_logits(changed, p, [k], data.test), kept, atol=1e-4), \
        "the training rows must not enter the test pairs' restricted logits"


def test_a_lookup_table_generalises_only_through_the_all_pairs_projection():
    p = 31
    data = grokking.make_data(p, 0.5, 0)
    table = grokking.lookup_table_logits(data, seed=0)
    assert (table[data.train].argmax(-1) == data.labels[data.train]).all(), "right on every training pair"
    _, test_acc = grokking.loss_and_accuracy(table[data.test], data.labels[data.test])
    assert test_acc < 0.1, "noise on the test pairs"
    m = grokking.logit_measures(table, data, [3, 7, 11])
    assert m["restricted_test_accuracy_all_pairs_projection"] > 0.3, \
        "projecting over all pairs carries memorised training answers onto test pairs (the leak this control shows)"
    assert m["restricted_test_accuracy"] < 0.15, "fitted on the test pairs alone, a lookup table answers nothing"


def test_covered_epoch():
    epochs = [0, 10, 20, 30, 40, 50]
    falling = [9.0, 8.0, 6.0, 4.0, 1.0, 2.0]  # from 8 at epoch 10 to 1: 90% of the way is 1.7, reached at 40
    assert grokking.covered_epoch(epochs, falling, start=10, fraction=0.9) == 40
    assert grokking.covered_epoch(epochs, falling, start=10, fraction=0.5) == grokking.halfway_epoch(epochs, falling, 10)
    with pytest.raises(ValueError, match="fraction"):
        grokking.covered_epoch(epochs, falling, start=0, fraction=0)


def test_lockstep_control_reaches_half_accuracy_at_the_given_epoch_and_its_restricted_loss_leads():
    p = 23
    data = grokking.make_data(p, 0.5, 0)
    epochs = list(range(0, 410, 10))
    rows = grokking.lockstep_control(data, [2, 5], epochs, half_epoch=200, seed=0)
    assert [r["epoch"] for r in rows] == epochs
    lead = grokking.restricted_lead(rows, start=0)
    assert lead["test_accuracy_50%"] == 200, "the circuit's strength is calibrated so test accuracy passes 50% at half_epoch"
    assert rows[0]["test_accuracy"] < 0.2 and rows[-1]["test_accuracy"] > 0.5, "a memoriser at first, a circuit later"
    assert lead["lead"] == 200 - lead["restricted_loss_halfway"] > 0, \
        "the denoised test loss leads the raw accuracy even though nothing formed early: what this control shows"
    no_circuit = grokking.lockstep_logits(data, [2, 5], 0.0, seed=0)
    assert (no_circuit[data.train].argmax(-1) == data.labels[data.train]).float().mean() > 0.7, "the memoriser alone knows most training pairs"
    with pytest.raises(ValueError, match="half_epoch"):
        grokking.lockstep_control(data, [2], epochs, half_epoch=0, seed=0)


def test_restricted_lead_on_hand_made_rows():
    rows = [{"epoch": e, "restricted_loss": l, "test_accuracy": a}
            for e, l, a in [(0, 4.0, 0.0), (10, 3.0, 0.1), (20, 1.0, 0.3), (30, 0.5, 0.6), (40, 0.1, 0.9)]]
    lead = grokking.restricted_lead(rows, start=0)
    assert lead == {"test_accuracy_50%": 30, "restricted_loss_halfway": 20, "restricted_loss_halfway_log_scale": 30,
                    "restricted_loss_90%": 40, "lead": 10}


def test_residual_noise_reads_the_memoriser_not_the_circuit():
    data = grokking.make_data(23, 0.5, 0)
    for noise in (1.0, 4.0):
        for strength in (0.0, 5.0):
            measured = grokking.residual_noise(grokking.lockstep_logits(data, [2, 5], strength, seed=1, noise=noise), data, [2, 5])
            assert measured == pytest.approx(noise, rel=0.15), f"noise {noise}, circuit strength {strength}: measured {measured}"
