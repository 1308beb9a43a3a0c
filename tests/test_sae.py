"""Unit tests of glassbox.sae (SAE glue around SAELens), checkpoints.save_sae / load_sae and the
feature-dashboard figures, on models glassbox did not build."""
import json
import math

import pytest
import torch
from torch import nn

from glassbox import sae, training, viz
from glassbox.journal import checkpoints


def identity_sae(d: int):
    """A standard SAE that reconstructs any x exactly: latents [relu(x), relu(-x)], decoder [I; -I]."""
    s = sae.make_sae("standard", d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        s.W_enc.copy_(torch.cat([eye, -eye], 1))
        s.W_dec.copy_(torch.cat([eye, -eye], 0))
        s.b_enc.zero_()
        s.b_dec.zero_()
    return sae.to_inference(s)


class TinySeq(nn.Module):
    """A sequence model glassbox did not build: tokens (batch, pos) -> logits (batch, pos, 5)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.mix = nn.Linear(6, 6)
        self.out = nn.Linear(6, 5)

    def forward(self, tokens):
        return self.out(torch.relu(self.mix(self.embed(tokens))))


def test_metrics_match_hand_computed_values():
    assert sae.l0(torch.tensor([[0.0, 1, 2], [0, 0, 3]])) == 1.5, "L0 counts non-zero latents per input, then averages"
    x = torch.tensor([[1.0, 0], [3, 0]])  # mean (2, 0): total squared deviation 2
    assert sae.fvu(x, torch.tensor([[1.0, 1], [3, 0]])) == pytest.approx(0.5), \
        "FVU = squared error (1) / squared deviation from the mean (2): did you divide by |x|^2 instead?"
    assert sae.fvu(x, x.mean(0).expand_as(x)) == pytest.approx(1.0), "predicting the mean must leave all variance unexplained"
    assert sae.dead_fraction(torch.tensor([[0.0, 1, 0], [0, 2, 0]])) == pytest.approx(2 / 3)
    mmcs = sae.mean_max_cosine_similarity(torch.tensor([[1.0, 0], [0, 2]]), torch.tensor([[3.0, 0], [1, 1]]))
    assert mmcs == pytest.approx((1 + 1 / math.sqrt(2)) / 2), "MMCS: per TRUE direction the best cosine, then the mean"
    with pytest.raises(ValueError, match="same shape"):
        sae.fvu(x, x[:1])
    with pytest.raises(ValueError, match=r"\(n_true, d\)"):
        sae.mean_max_cosine_similarity(torch.ones(2, 3), torch.ones(2, 4))


def test_top_k_purity_counts_the_most_common_label_of_the_top_inputs():
    acts = torch.tensor([[5.0, 0.0, 1], [4, 0, 2], [3, 0, 3], [0, 1, 4]])
    labels = torch.tensor([1, 1, 2, 2])
    purity = sae.top_k_purity(acts, labels, k=3)
    assert purity[0] == pytest.approx(2 / 3), "unit 0's top 3 inputs have labels 1, 1, 2"
    assert math.isnan(purity[1]), "a unit positive on fewer than k inputs cannot be judged: NaN"
    assert purity[2] == pytest.approx(2 / 3), "unit 2's top 3 inputs have labels 2, 2, 1"
    with pytest.raises(ValueError, match="at least k=50"):
        sae.top_k_purity(acts, labels)


def test_activation_batches_cover_every_row_once_per_epoch():
    acts = torch.arange(10.0)[:, None]
    it = sae.activation_batches(acts, 5, seed=1)
    epoch = torch.cat([next(it), next(it)])
    assert sorted(epoch.flatten().tolist()) == list(range(10)), "an epoch must visit every row once"
    assert next(it).shape == (5, 1)
    with pytest.raises(ValueError, match="batch_size"):
        next(sae.activation_batches(acts, 11))


def test_make_sae_names_the_architectures_and_options():
    assert sae.make_sae("topk", 8, 16, k=2, hook_name="relu1").cfg.metadata.hook_name == "relu1"
    with pytest.raises(KeyError, match="unknown SAE architecture 'topK'.*'topk'"):
        sae.make_sae("topK", 8, 16)
    with pytest.raises(TypeError, match="rejected the options"):
        sae.make_sae("topk", 8, 16, l1_coefficient=1.0)


def test_make_sae_seed_fixes_the_init_and_leaves_the_global_stream_alone():
    """seed= fixes the initial weights whatever the global stream holds, and leaves that stream where it was;
    control: seed=None (the default) still draws from the global stream, so two draws in a row differ."""
    torch.manual_seed(123)
    one = sae.make_sae("topk", 8, 16, k=2, seed=5)
    after = torch.get_rng_state()
    torch.manual_seed(999)
    two = sae.make_sae("topk", 8, 16, k=2, seed=5)
    assert torch.equal(one.W_enc, two.W_enc) and torch.equal(one.W_dec, two.W_dec), "the same seed must give the same SAE"
    assert not torch.equal(one.W_dec, sae.make_sae("topk", 8, 16, k=2, seed=6).W_dec), "another seed, another SAE"
    torch.manual_seed(123)
    assert torch.equal(torch.get_rng_state(), after), "seed= must leave the global random stream where it was"
    torch.manual_seed(7)
    a, b = sae.make_sae("topk", 8, 16, k=2), sae.make_sae("topk", 8, 16, k=2)
    torch.manual_seed(7)
    assert not torch.equal(a.W_dec, b.W_dec) and torch.equal(a.W_dec, sae.make_sae("topk", 8, 16, k=2).W_dec), \
        "seed=None keeps the old behaviour: the init comes from the global stream"
    with pytest.raises(ValueError, match="seed"):
        sae.make_sae("topk", 8, 16, k=2, seed=-1)


@pytest.fixture
def one_thread():
    """Small matmuls: one thread, as the notebook uses (two are ~20x slower on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_sae_recovers_a_known_dictionary(one_thread):
    torch.manual_seed(0)
    true = torch.linalg.qr(torch.randn(16, 16)).Q[:8]  # 8 orthonormal directions in 16-d

    def sample(n):  # each input: one direction at a random strength
        return torch.rand(n, 1) * true[torch.randint(0, 8, (n,))]

    trained, seconds = sae.train_sae(sae.make_sae("topk", 16, 16, k=1), sae.sampled_batches(sample, 256),
                                     n_samples=60_000, batch_size=256, lr=1e-2)
    assert sae.mean_max_cosine_similarity(true, trained.W_dec.detach()) > 0.95, "the SAE did not find the 8 planted directions"
    assert not trained.training and type(trained).__name__ == "TopKSAE", "train_sae returns the inference SAE"
    with pytest.raises(ValueError, match=r"\(batch_size=256, d_in=16\)"):
        sae.train_sae(sae.make_sae("topk", 16, 16, k=1), sae.sampled_batches(lambda n: torch.ones(n, 3), 256),
                      n_samples=1024, batch_size=256)


def test_splice_an_exact_sae_leaves_a_cnn_unchanged_and_edits_act(tiny_cnn):
    x = torch.rand(7, 28, 28)
    clean = tiny_cnn(x)
    exact = identity_sae(16)
    with sae.splice(tiny_cnn, "head.2", exact):
        assert torch.allclose(tiny_cnn(x), clean, atol=1e-5), "splicing a perfect SAE must not change the outputs"
    with sae.splice(tiny_cnn, "head.2", exact, edit=sae.ablate_latents(range(32))):
        assert torch.allclose(tiny_cnn(x), tiny_cnn.head[3].bias.expand(7, 10), atol=1e-6), "all latents off = layer zeroed"
    assert torch.equal(tiny_cnn(x), clean) and not tiny_cnn.head[2]._forward_hooks, "splice left a hook behind"
    random_sae = sae.to_inference(sae.make_sae("topk", 16, 8, k=2))
    with sae.splice(tiny_cnn, "head.2", random_sae, keep_error=True):
        assert torch.allclose(tiny_cnn(x), clean, atol=1e-5), "keep_error=True without an edit must be exact"
    with sae.splice(tiny_cnn, "head.2", random_sae):
        assert not torch.allclose(tiny_cnn(x), clean, atol=1e-3), "a random SAE's reconstruction must change the outputs"


def test_splice_at_one_position_leaves_the_others():
    torch.manual_seed(0)
    model = TinySeq().eval()
    tokens = torch.randint(0, 10, (4, 3))
    clean = model(tokens)
    random_sae = sae.to_inference(sae.make_sae("topk", 6, 8, k=1))
    with sae.splice(model, "mix", random_sae, position=-1):
        out = model(tokens)
    assert torch.equal(out[:, :-1], clean[:, :-1]), "positions other than `position` must pass through"
    assert not torch.allclose(out[:, -1], clean[:, -1])
    acts = sae.collect_activations(model, "mix", tokens, position=-1)
    assert acts.shape == (4, 6)
    with pytest.raises(ValueError, match="pass position="):
        sae.collect_activations(model, "mix", tokens)


def test_edits_and_logit_effect_match_hand_computation():
    f = torch.tensor([[1.0, 2, 3], [4, 5, 6]])
    assert sae.ablate_latents([0, 2])(f).tolist() == [[0, 2, 0], [0, 5, 0]]
    assert sae.clamp_latent(1, 9.0)(f).tolist() == [[1, 9, 3], [4, 9, 6]]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), nn.Identity(), nn.Linear(3, 2))
    d = torch.tensor([1.0, -2, 0.5])
    effect = sae.logit_effect(model, "1", d, torch.randn(10, 5))
    assert torch.allclose(effect, model[2].weight @ d, atol=1e-5), "through a linear readout the effect is W @ direction"



def test_class_contributions_weigh_the_logit_effect_by_the_activation_on_each_class():
    latents = torch.tensor([[2.0, 0], [4, 1], [0, 3]])  # latent 0: mean 3 on class 0, 0 on class 1
    labels = torch.tensor([0, 0, 1])
    effects = torch.tensor([[10.0, -10], [1, 1]])  # at scale 5 and 1
    out = sae.class_contributions(latents, labels, effects, torch.tensor([5.0, 1]))
    assert torch.allclose(out, torch.tensor([[3 * 2.0, 0 * -2], [0.5 * 1, 3 * 1]])), \
        "contribution[j, c] = mean activation of j on class c x effect[j, c] / scale[j]"
    with pytest.raises(ValueError, match="expected latents"):
        sae.class_contributions(latents, labels[:2], effects, torch.ones(2))

def test_latent_intervention_on_a_dead_latent_changes_nothing(tiny_cnn):
    x, y = torch.rand(40, 28, 28), torch.randint(0, 10, (40,))
    exact = identity_sae(16)
    with torch.no_grad():
        tiny_cnn.head[1].bias.fill_(5.0)  # head.2 = relu(... + 5) > 0: the relu(-x) latents 16..31 never fire
    out = sae.latent_intervention(tiny_cnn, "head.2", exact, 20, 3, x, y, value=0.0, n_classes=10)
    assert out["target_drop"] == 0 and out["max_other_change"] == 0, "switching off a latent that never fires moved a class"
    assert out["class_accuracy_change"].shape == (10,) and out["clamp_flip_rate"] == 0.0


def test_latent_intervention_on_a_model_whose_logits_are_its_input():
    model = nn.Sequential(nn.Identity(), nn.Identity())  # logits = x; identity_sae latent j < 3 is relu(x_j)
    x = torch.tensor([[3.0, 1, 0.5], [4, 0.5, 1], [1, 2, 0.5], [0.5, 3, 1], [2, 1.5, 0], [1, 0.5, 3], [0.5, 1, 2]])
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2])  # input 4 is a 1 misread as 0
    out = sae.latent_intervention(model, "0", identity_sae(3), 0, 0, x, y, value=2.5, n_classes=4)
    assert torch.allclose(out["class_accuracy_change"], torch.tensor([-1.0, 1 / 3, 0.0, 0.0])), \
        "latent 0 off: both 0s lost, the misread 1 now right; n_classes rows"
    assert out["target_drop"] == pytest.approx(1.0) and out["max_other_change"] == pytest.approx(1 / 3)
    assert out["clamp_flip_rate"] == pytest.approx(3 / 5), "x_0 held at 2.5 sends 3 of the 5 non-0 inputs to class 0"
    high = sae.latent_intervention(model, "0", identity_sae(3), 0, 0, x, y, value=10.0, n_classes=3)
    assert high["clamp_flip_rate"] == 1.0 and high["class_accuracy_change"].shape == (3,), "value must be used"


def test_save_and_load_sae_round_trip_and_errors(tmp_path):
    trained = sae.to_inference(sae.make_sae("topk", 6, 12, k=3, model_name="m", hook_name="h"))
    card_path = checkpoints.save_sae(trained, "sae_x", config={"k": 3}, metrics={"fvu": 0.25}, seed=1,
                                     train_seconds=1.234, directory=tmp_path)
    card = json.loads(card_path.read_text())
    assert card["architecture"] == "topk" and card["hook_name"] == "h" and card["metrics"] == {"fvu": 0.25}
    assert {p.name for p in (tmp_path / "sae_x").iterdir()} == {"sae_weights.safetensors", "cfg.json", "card.json"}
    loaded = checkpoints.load_sae("sae_x", tmp_path)
    x = torch.randn(5, 6)
    assert type(loaded).__name__ == "TopKSAE" and torch.equal(loaded(x), trained(x)), "load_sae must return the same SAE"
    assert checkpoints.available_saes(tmp_path) == ["sae_x"] and checkpoints.available(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="available SAEs: sae_x"):
        checkpoints.load_sae("sae_y", tmp_path)
    (tmp_path / "sae_x" / "sae_weights.safetensors").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256 differs"):
        checkpoints.load_sae("sae_x", tmp_path)
    (tmp_path / "sae_x" / "sae_weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no sae_weights.safetensors"):
        checkpoints.load_sae("sae_x", tmp_path)


def test_feature_figures_draw_and_check_their_inputs():
    acts = torch.tensor([0.0, 2, 0, 5, 1])
    labels = torch.tensor([0, 1, 1, 2, 2])
    fig = viz.feature_dashboard(acts, torch.tensor([0.5, -1.0, 2.0]), labels, k=2)
    assert len(fig.data) == 3 and list(fig.data[1].y) == [0, 1, 1], "top-2 inputs (5 and 2) have labels 2 and 1"
    with pytest.raises(ValueError, match="one label per input"):
        viz.feature_dashboard(acts, torch.zeros(3), labels[:2])
    table = viz.top_inputs_table(torch.arange(15).reshape(5, 3), acts, k=2, answers=labels)
    assert table.to_dict("list") == {"activation": [5.0, 2.0], "input": [" 9 10 11", " 3  4  5"], "answer": [2, 1]}, \
        "the table lists the top inputs, most active first"
    with pytest.raises(ValueError, match=r"tokens \(n, pos\)"):
        viz.top_inputs_table(torch.arange(5), acts)


def test_activation_batches_boundaries_and_seed():
    acts = torch.arange(6.0)[:, None]
    assert next(sae.activation_batches(acts, 1)).shape == (1, 1), "batches of one row are allowed"
    stream = sae.activation_batches(acts, 4, seed=0)
    assert [len(next(stream)) for _ in range(4)] == [4] * 4, "every batch is full: the remainder of an epoch is dropped"
    whole = next(sae.activation_batches(acts, 6, seed=0))
    assert sorted(whole.flatten().tolist()) == list(range(6)), "batch_size = n is allowed: one batch per epoch"
    for bad in (0, 7):
        with pytest.raises(ValueError, match="batch_size must be in 1..6"):
            next(sae.activation_batches(acts, bad))
    same, other = next(sae.activation_batches(acts, 6, seed=1)), next(sae.activation_batches(acts, 6, seed=2))
    assert torch.equal(same, next(sae.activation_batches(acts, 6, seed=1))) and not torch.equal(same, other), \
        "the order is reproducible from the seed and changes with it"


def test_train_sae_configures_the_trainer_from_its_arguments(monkeypatch):
    seen = {}

    class Spy:
        def __init__(self, cfg, sae, data_provider):
            seen.update(cfg=cfg, sae=sae, first=next(data_provider))

        def fit(self):
            return seen["sae"]

    monkeypatch.setattr(sae, "_Trainer", Spy)
    monkeypatch.setattr(sae, "to_inference", lambda s, device=None: s)
    clock = iter([10.0, 12.5] + [0.0] * 10)
    monkeypatch.setattr(sae, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: next(clock))}))
    acts = torch.randn(40, 4)
    fresh = sae.make_sae("topk", 4, 8, k=2)
    out, seconds = sae.train_sae(fresh, acts, n_samples=35, batch_size=8, lr=0.02, seed=3, dead_after_steps=7)
    cfg = seen["cfg"]
    assert out is fresh and seconds == 2.5, "seconds: the clock after training minus the clock before"
    assert (cfg.total_training_samples, cfg.train_batch_size_samples, cfg.lr, cfg.lr_end) == (32, 8, 0.02, 0.02), \
        "n_samples // batch_size whole steps at a constant lr"
    assert (cfg.lr_decay_steps, cfg.dead_feature_window, cfg.feature_sampling_window) == (0, 7, 5)
    assert cfg.logger.log_to_wandb is False and cfg.device == "cpu"
    assert torch.equal(seen["first"], next(sae.activation_batches(acts, 8, seed=3))), "batches drawn with the seed"
    sae.train_sae(fresh, acts, n_samples=40, batch_size=4)
    assert (seen["cfg"].lr_decay_steps, seen["cfg"].feature_sampling_window) == (2, 11), "decay over the last 20% of steps"
    sae.train_sae(fresh, acts, n_samples=8, batch_size=8)  # one batch is enough
    with pytest.raises(ValueError, match=r"n_samples \(7\) must be at least one batch \(8\)"):
        sae.train_sae(fresh, acts, n_samples=7, batch_size=8)


def test_make_sae_records_model_and_hook_names():
    s = sae.make_sae("topk", 4, 8, k=2, model_name="mlp", hook_name="relu1")
    assert (s.cfg.metadata.model_name, s.cfg.metadata.hook_name, s.cfg.d_in, s.cfg.d_sae, s.cfg.k) == ("mlp", "relu1", 4, 8, 2)


def test_evaluate_sae_and_encode_on_an_exact_sae():
    exact = identity_sae(3)
    acts = torch.tensor([[1.0, -2.0, 0.0], [0.0, 3.0, 0.0], [2.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.5, 0.0, 0.0]])
    latents = sae.encode(exact, acts, batch_size=2)
    assert torch.equal(latents, torch.cat([acts.clamp(min=0), (-acts).clamp(min=0)], 1)), "chunks joined in order"
    got = sae.evaluate_sae(exact, acts, batch_size=2)
    assert got["fvu"] == pytest.approx(0.0, abs=1e-12) and got["l0"] == pytest.approx(8 / 5)
    assert got["dead_fraction"] == pytest.approx(3 / 6), "latents for +x2, -x0 and -x2 never fire"
    with pytest.raises(ValueError, match=r"expected activations \(n, d_in=3\), got shape \(5, 2\)"):
        sae.encode(exact, acts[:, :2])


@pytest.mark.parametrize("name,args", [("ablate_latents", ([6],)), ("ablate_latents", ([-1],)), ("clamp_latent", (6, 1.0)),
                                       ("clamp_latent", (-1, 1.0))])
def test_edits_refuse_latents_outside_the_sae(name, args):
    with pytest.raises(ValueError, match=r"latent indices must be in 0..5"):
        getattr(sae, name)(*args)(torch.zeros(2, 6))


def test_splice_and_logit_effect_at_one_position_leave_the_inputs_alone():
    model = nn.Sequential(nn.Identity(), nn.Identity())  # the patched output is the caller's own tensor
    x = torch.randn(2, 3, 4)
    keep = x.clone()
    random_sae = sae.to_inference(sae.make_sae("topk", 4, 8, k=1))
    with sae.splice(model, "0", random_sae, position=1):
        out = model(x)
    assert torch.equal(x, keep), "splice must not write into the module's output in place"
    assert torch.equal(out[:, [0, 2]], x[:, [0, 2]]) and not torch.allclose(out[:, 1], x[:, 1])
    d = torch.tensor([1.0, 0.0, -1.0, 2.0])
    effect = sae.logit_effect(model, "0", d, x, position=1)
    assert torch.equal(x, keep), "logit_effect must not write into the module's output in place"
    assert torch.allclose(effect, torch.stack([torch.zeros(4), d, torch.zeros(4)])), "added at position 1 only"
    assert torch.allclose(sae.logit_effect(model, "0", d, x, position=1, out_position=1), d)
    assert torch.allclose(sae.logit_effect(model, "0", d, x, out_position=2), d), "no position: added everywhere"


def test_decoder_logit_effects_and_outputs_pass_positions_through():
    torch.manual_seed(0)
    model = TinySeq().eval()
    tokens = torch.randint(0, 10, (6, 3))
    s = sae.to_inference(sae.make_sae("topk", 6, 4, k=1))
    scales = torch.tensor([1.0, 2.0, 0.5, 3.0])
    causal = CumSeq().eval()  # position 1 reaches the output at position 2
    got = sae.decoder_logit_effects(causal, "mix", s, tokens, scales, position=1, out_position=2)
    expected = torch.stack([sae.logit_effect(causal, "mix", s.W_dec[j] * scales[j], tokens, position=1, out_position=2)
                            for j in range(4)])
    assert got.shape == (4, 5) and torch.allclose(got, expected, atol=1e-6) and got.abs().min(1).values.max() > 0
    assert torch.allclose(sae.decoder_logit_effects(causal, "mix", s, tokens, scales, position=2, out_position=1),
                          torch.zeros(4, 5)), "a direction added at position 2 cannot move the output at position 1"
    assert torch.equal(sae.outputs(model, tokens, out_position=1), model(tokens)[:, 1])
    y = model(tokens)[:, 2].argmax(-1)
    assert sae.spliced_accuracy(model, "mix", identity_sae(6), tokens, y, position=1, out_position=2) == 1.0
    broken = sae.spliced_accuracy(model, "mix", s, tokens, y, position=1, out_position=2)
    assert broken == (sae.outputs(model, tokens, 2).argmax(-1) == y).float().mean().item() == 1.0, \
        "an SAE spliced at position 1 cannot change position 2 in a model without attention"


def test_class_contributions_with_more_outputs_than_latents_and_an_absent_class():
    latents = torch.tensor([[2.0, 0], [4, 1]])
    labels = torch.tensor([0, 0])
    effects = torch.tensor([[10.0, -10, 5], [1, 1, 1]])
    out = sae.class_contributions(latents, labels, effects, torch.tensor([5.0, 1]))
    assert torch.allclose(out, torch.tensor([[3 * 2.0, 0, 0], [0.5 * 1, 0, 0]])), "absent classes contribute 0, not NaN"
    dead = sae.class_contributions(torch.tensor([[0.0, 1.0], [0.0, 3.0]]), labels, effects, torch.tensor([0.0, 0.5]))
    assert torch.allclose(dead, torch.tensor([[0.0, 0, 0], [4.0, 0, 0]])), \
        "a latent that never fires (scale 0) contributes 0, not NaN; a scale below 1 divides as it should (2 x 1 / 0.5)"


def test_top_k_purity_with_k_equal_to_the_number_of_inputs():
    acts = torch.tensor([[3.0], [2.0], [1.0]])
    assert sae.top_k_purity(acts, torch.tensor([1, 1, 0]), k=3).tolist() == pytest.approx([2 / 3])


class CumSeq(TinySeq):
    """TinySeq whose position p reads the mix of positions 0..p (a causal sum): edits travel forward only."""

    def forward(self, tokens):
        return self.out(torch.relu(self.mix(self.embed(tokens))).cumsum(1))


def test_latent_intervention_edits_only_the_given_position_and_reads_out_position():
    torch.manual_seed(1)
    model = CumSeq().eval()
    tokens = torch.randint(0, 10, (200, 3))
    exact = identity_sae(6)
    latent = int(torch.relu(model.mix(model.embed(tokens)))[:, 2].mean(0).argmax())  # a latent active at position 2
    y = model(tokens)[:, 2].argmax(-1)
    y0 = model(tokens)[:, 0].argmax(-1)
    kw = dict(value=0.0, n_classes=5)
    later = sae.latent_intervention(model, "mix", exact, latent, 0, tokens, y0, position=2, out_position=0, **kw)
    assert not later["class_accuracy_change"].any(), "an edit at position 2 cannot reach the output at position 0"
    here = sae.latent_intervention(model, "mix", exact, latent, 0, tokens, y, position=2, out_position=2, **kw)
    assert here["class_accuracy_change"].abs().sum() > 0, "switching off an active latent at position 2 moves output 2"
    everywhere = sae.latent_intervention(model, "mix", exact, latent, 0, tokens, y0, out_position=0, **kw)
    assert everywhere["class_accuracy_change"].abs().sum() > 0, "without position the edit reaches position 0 too"


def test_latent_intervention_keeps_the_reconstruction_error():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Identity(), nn.Identity())  # logits = x
    rough = sae.to_inference(sae.make_sae("topk", 3, 6, k=1))  # reconstructs x badly
    x = torch.randn(60, 3)
    y = x.argmax(-1)
    out = sae.latent_intervention(model, "0", rough, 0, 1, x, y, value=0.0, n_classes=3)
    with sae.splice(model, "0", rough, edit=sae.ablate_latents([0]), keep_error=True):
        kept = training.per_class_accuracy(model(x), y, 3) - 1.0
    with sae.splice(model, "0", rough, edit=sae.ablate_latents([0])):
        lost = training.per_class_accuracy(model(x), y, 3) - 1.0
    assert torch.allclose(out["class_accuracy_change"], kept), "only the edit may move the outputs: the error is added back"
    assert not torch.allclose(kept, lost), "(the test needs an SAE whose error matters)"


def test_mmcs_takes_the_best_match_of_each_true_direction():
    true = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # rows (not columns) are the directions
    learned = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    assert sae.mean_max_cosine_similarity(true, learned) == pytest.approx((1 + 2 ** -0.5) / 2), \
        "per TRUE direction (rows of the first argument) the best cosine; more learned than true directions is fine"
    with pytest.raises(ValueError, match=r"got \(2, 2\) and \(3, 3\)"):
        sae.mean_max_cosine_similarity(true, torch.ones(3, 3))


def test_edits_work_on_the_last_dim_of_any_shape():
    f = torch.arange(12.0).reshape(2, 1, 6)
    assert sae.clamp_latent(5, -1.0)(f)[..., 5].eq(-1).all() and torch.equal(sae.clamp_latent(5, -1.0)(f)[..., :5], f[..., :5])
    assert torch.equal(sae.ablate_latents([0, 5])(f)[0, 0], torch.tensor([0.0, 1, 2, 3, 4, 0]))


def test_top_k_purity_needs_the_unit_positive_on_all_k_inputs():
    acts = torch.tensor([[3.0], [2.0], [0.0], [0.0]])
    assert math.isnan(sae.top_k_purity(acts, torch.tensor([1, 1, 0, 0]), k=3)[0]), "positive on 2 of the top 3: NaN"
    assert sae.top_k_purity(acts, torch.tensor([1, 1, 0, 0]), k=2).tolist() == [1.0]


def test_max_other_change_is_the_largest_change_in_either_direction():
    model = nn.Sequential(nn.Identity(), nn.Linear(3, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0.5, 0, 1]]))  # class 2 also reads x0
        model[1].bias.zero_()
    x = torch.tensor([[3.0, 1, 0.5], [0.5, 2, 0.5], [1, 1.2, 1]])
    y = torch.tensor([0, 1, 2])
    out = sae.latent_intervention(model, "0", identity_sae(3), 0, 0, x, y, value=0.0, n_classes=3)
    assert torch.allclose(out["class_accuracy_change"], torch.tensor([-1.0, 0.0, -1.0]))
    assert out["max_other_change"] == pytest.approx(1.0), "a class that LOSES accuracy counts too (|change|)"
