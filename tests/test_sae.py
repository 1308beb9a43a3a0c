"""Unit tests of glassbox.sae (SAE glue around SAELens), checkpoints.save_sae / load_sae and the
feature-dashboard figures, on models glassbox did not build."""
import json
import math

import pytest
import torch
from torch import nn

from glassbox import checkpoints, sae, viz


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
    assert seconds > 0 and not trained.training and type(trained).__name__ == "TopKSAE", "train_sae returns the inference SAE"
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
    assert out["class_accuracy_change"].shape == (10,)
    assert 0 <= out["clamp_flip_rate"] <= 1


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
