"""Issue 27, the tools for any model (ablation, neurons, sae, probes, features, backdoor, pruning,
attribution, concepts, fourier, grokking, regularisation, the journal's MLP): each bad input that gave a silent wrong answer or an error
from deep inside torch is now a clear error naming the argument, or a correct result."""
import math

import pytest
import torch
from torch import nn

from glassbox import ablation, attribution, fourier, neurons, probes, sae
from glassbox.studies import backdoor, char_features, grokking, mnist_mlp, models, pruning, regularisation

NAN = float("nan")


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return models.build_mlp({"sizes": [784, 8, 6, 10]}).eval()


@pytest.fixture(scope="module")
def relu2_sae():
    torch.manual_seed(0)
    return sae.to_inference(sae.make_sae("topk", 6, 12, k=2, model_name="mlp", hook_name="relu2"))


def relu1(model, x):
    return neurons.get_activations(model, "relu1", x)


# ---- ablation ----

def test_a_bool_mask_ablates_exactly_its_true_neurons(mlp):
    x = torch.rand(16, 784)
    mask = torch.zeros(8, dtype=torch.bool)
    mask[[2, 5]] = True
    with ablation.ablate(mlp, "relu1", mask):
        masked, acts = mlp(x), relu1(mlp, x)
    with ablation.ablate(mlp, "relu1", [2, 5]):
        listed = mlp(x)
    assert torch.equal(masked, listed), "a bool mask must ablate the neurons at its True entries"
    assert (acts[:, [2, 5]] == 0).all() and torch.equal(acts[:, [0, 1, 3, 4, 6, 7]], relu1(mlp, x)[:, [0, 1, 3, 4, 6, 7]])
    pruned = ablation.ablate_in_weights(mlp, "relu1", mask, reader="fc2")
    assert torch.allclose(pruned(x), listed, atol=1e-6)
    y = mlp(x).argmax(-1)
    drop = ablation.class_accuracy_drop(mlp, "relu1", x, y, neurons=mask)
    assert torch.equal(drop, ablation.class_accuracy_drop(mlp, "relu1", x, y, neurons=[2, 5])), "one column per True entry"
    with pytest.raises(ValueError, match=r"neurons is a bool mask of shape \(3,\); a mask needs one entry per unit \(8\)"):
        with ablation.ablate(mlp, "relu1", torch.ones(3, dtype=torch.bool)):
            mlp(x)


@pytest.mark.parametrize("neurons_", [[1.7], torch.tensor([1.0, 2.0])])
def test_float_neuron_indices_are_refused_not_truncated(mlp, neurons_):
    with pytest.raises(TypeError, match=r"neurons must be integer indices \(or a bool mask\), got \[1\.\d.*\(torch.float32\)"):
        with ablation.ablate(mlp, "relu1", neurons_):
            pass
    with pytest.raises(TypeError, match="neurons must be integer indices"):
        ablation.ablate_in_weights(mlp, "relu1", neurons_, reader="fc2")


def test_nan_ablation_values_are_refused(mlp):
    values = torch.full((8,), NAN)
    with pytest.raises(ValueError, match=r"values holds 8 NaN or infinite value\(s\)"):
        with ablation.ablate(mlp, "relu1", [0], values):
            pass
    with pytest.raises(ValueError, match="values holds 8 NaN"):
        ablation.ablate_in_weights(mlp, "relu1", [0], values, reader="fc2")


def test_the_finite_check_sees_every_bad_value_and_passes_large_finite_ones():
    """checks.tensor sums first and looks element-wise only when the sum is not finite: a NaN, an inf, or an inf and a
    -inf that cancel must still be refused; finite values whose sum overflows (the fallback's case) must pass."""
    from glassbox import checks
    for bad, n in [([NAN], 1), ([math.inf], 1), ([math.inf, -math.inf], 2)]:
        x = torch.rand(100)
        x[:len(bad)] = torch.tensor(bad)
        with pytest.raises(ValueError, match=f"x holds {n} NaN or infinite"):
            checks.tensor(x, "x")
    large = torch.full((10,), 3e38)
    assert not torch.isfinite(large.sum()), "the control: this input's sum overflows, so the element-wise check must run"
    assert checks.tensor(large, "large") is large


def test_flip_rate_refuses_a_target_the_model_lacks(mlp):
    x = torch.rand(8, 784)
    with pytest.raises(ValueError, match=r"target must be in 0\.\.9 \(a class of the model's outputs\), got 12"):
        ablation.flip_rate(mlp, "relu1", x, 12, [0], None)
    with pytest.raises(TypeError, match=r"target must be an int, got 1\.5 \(float\); floats are not truncated"):
        ablation.flip_rate(mlp, "relu1", x, 1.5, [0], None)
    rate = ablation.flip_rate(mlp, "relu1", x, 9, [0], None)
    with ablation.ablate(mlp, "relu1", [0]):
        assert rate == (mlp(x).argmax(-1) == 9).float().mean().item()


# ---- neurons ----

def test_get_activations_reads_in_eval_mode_and_restores_every_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 2)).train()
    model[4].eval()  # a submodule in its own mode must keep it
    stats = model[1].running_mean.clone(), model[1].num_batches_tracked.clone()
    x = torch.randn(32, 4)
    a, b = (neurons.get_activations(model, "3", x) for _ in range(2))
    assert torch.equal(a, b), "dropout must be off during a read"
    assert torch.equal(model[1].running_mean, stats[0]) and torch.equal(model[1].num_batches_tracked, stats[1]), \
        "a read must not update BatchNorm's running statistics"
    assert [m.training for m in model] == [True, True, True, True, False], "each module's mode must be restored"


def test_class_selectivity_refuses_nan_activations_and_label_minus_one():
    acts, y = torch.rand(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.isfinite(neurons.class_selectivity(acts, y)).all()
    with pytest.raises(ValueError, match=r"y must be class indices in 0\.\.n_classes-1, got \[-1\]; drop unlabelled"):
        neurons.class_selectivity(acts, torch.tensor([0, 1, 2, 0, 1, -1]))
    with pytest.raises(ValueError, match=r"y must be class indices in 0\.\.1, got \[2\]"):
        neurons.class_selectivity(acts, y, n_classes=2)
    acts[2, 1] = NAN
    with pytest.raises(ValueError, match=r"acts holds 1 NaN or infinite value"):
        neurons.class_selectivity(acts, y)


# ---- sae ----

def test_sae_metrics_refuse_nan_empty_and_constant_input():
    latents = torch.tensor([[0.0, 1.0], [NAN, 0.0]])
    for metric in (sae.l0, sae.dead_fraction):
        with pytest.raises(ValueError, match=r"latents holds 1 NaN"):
            metric(latents)
        with pytest.raises(ValueError, match=r"latents is empty \(shape \(0, 2\)\)"):
            metric(torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"x has no variance \(all 3 rows are the same\)"):
        sae.fvu(torch.ones(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="x is empty"):
        sae.fvu(torch.zeros(0, 2), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="x_hat holds 1 NaN"):
        sae.fvu(torch.eye(2), latents)
    with pytest.raises(ValueError, match="learned is empty"):
        sae.mean_max_cosine_similarity(torch.eye(2), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="true holds 1 NaN"):
        sae.mean_max_cosine_similarity(latents, torch.eye(2))


def test_evaluate_and_train_refuse_nan_activations(relu2_sae):
    acts = torch.rand(20, 6)
    acts[3, 0] = NAN
    with pytest.raises(ValueError, match=r"acts holds 1 NaN"):
        sae.evaluate_sae(relu2_sae, acts)
    fresh = sae.make_sae("topk", 6, 12, k=2)
    with pytest.raises(ValueError, match=r"data holds 120 NaN"):
        sae.train_sae(fresh, torch.full((20, 6), NAN), n_samples=8, batch_size=4)
    batches = iter([torch.full((4, 6), NAN)] * 3)
    with pytest.raises(ValueError, match=r"activation batch 0 holds 24 NaN"):
        sae.train_sae(fresh, batches, n_samples=8, batch_size=4)


def test_make_sae_refuses_k_above_d_sae_and_no_latents():
    with pytest.raises(ValueError, match=r"k \(latents kept per input\) must be an int in 1\.\.d_sae=4, got 16"):
        sae.make_sae("topk", 8, 4, k=16)
    with pytest.raises(ValueError, match=r"d_sae must be an int >= 1, got 0"):
        sae.make_sae("topk", 8, 0, k=1)
    assert sae.make_sae("topk", 8, 4, k=4).cfg.d_sae == 4


def test_clamp_latent_refuses_nan_and_ablate_latents_refuses_floats():
    with pytest.raises(ValueError, match=r"value must be a finite number to hold latent 0 at, got nan"):
        sae.clamp_latent(0, NAN)
    with pytest.raises(TypeError, match=r"latent must be integer indices \(or a bool mask\), got 1\.5"):
        sae.clamp_latent(1.5, 1.0)
    with pytest.raises(TypeError, match=r"latents must be integer indices .*\[1\.9"):
        sae.ablate_latents([1.9])
    f = torch.ones(2, 4)
    off = sae.ablate_latents(torch.tensor([False, True, False, True]))(f)
    assert off.tolist() == [[1, 0, 1, 0]] * 2, "a bool mask switches off its True latents"
    assert sae.clamp_latent(torch.tensor(2), torch.tensor(5.0))(f)[:, 2].tolist() == [5, 5]
    with pytest.raises(TypeError, match=r"latent must be one int index, got \[1, 2\]"):
        sae.clamp_latent([1, 2], 1.0)


def test_splice_refuses_an_sae_of_another_width(mlp, relu2_sae):
    with pytest.raises(ValueError, match=r"sae reads activations of width d_in=6, but 'relu1' outputs shape \(3, 8\)"):
        with sae.splice(mlp, "relu1", relu2_sae, check_hook=False):
            mlp(torch.rand(3, 784))


def test_splice_refuses_an_sae_trained_on_another_hook_unless_told(mlp):
    torch.manual_seed(0)
    other = sae.to_inference(sae.make_sae("topk", 6, 12, k=2, model_name="median", hook_name="blocks.0.hook_out"))
    with pytest.raises(ValueError, match=r"sae was trained on 'blocks.0.hook_out' of 'median', not on 'relu2'.*check_hook=False"):
        with sae.splice(mlp, "relu2", other):
            pass
    with sae.splice(mlp, "relu2", other, check_hook=False):
        assert mlp(torch.rand(3, 784)).shape == (3, 10)
    untagged = sae.to_inference(sae.make_sae("topk", 6, 12, k=2))
    with sae.splice(mlp, "relu2", untagged):  # no metadata: nothing to compare
        mlp(torch.rand(3, 784))


def test_lm_sae_hook_refuses_an_activation_of_another_width(relu2_sae):
    with pytest.raises(ValueError, match=r"sae reads activations of width d_in=6, but hook '\?' gives shape \(2, 3, 8\)"):
        sae.lm_sae_hook(relu2_sae)(torch.rand(2, 3, 8))


# ---- features ----

def test_f1_score_treats_0_1_integers_as_bools_and_refuses_other_integers():
    pred, truth = torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, 0, 1])
    assert char_features.f1_score(pred, truth) == char_features.f1_score(pred.bool(), truth.bool()) == pytest.approx(2 / 3)
    with pytest.raises(TypeError, match=r"pred must be a bool tensor \(or 0/1 integers\), got torch.int64 with values \[0, 1, 2\]"):
        char_features.f1_score(torch.tensor([2, 0, 1, 1]), truth)  # 2 & 1 == 0 bitwise: a silent wrong answer before
    with pytest.raises(ValueError, match="pred and truth must have the same shape"):
        char_features.f1_score(pred.bool(), truth[:3].bool())


def test_generate_refuses_a_context_of_zero():
    with pytest.raises(ValueError, match=r"n_ctx \(the model's context length\) must be at least 1, got 0"):
        char_features.generate(None, torch.zeros(1, 3, dtype=torch.long), 4, n_ctx=0)
    with pytest.raises(TypeError, match="prompts must be integer token ids"):
        char_features.generate(None, torch.zeros(1, 3), 4, n_ctx=8)


# ---- backdoor, pruning ----

def test_reconstruct_trigger_refuses_0_255_pixels(mlp):
    x = torch.rand(8, 28, 28)
    with pytest.raises(ValueError, match=r"x_clean: expected raw pixels in \[0, 1\], got values in \[.*\]; for 0\.\.255 pixels pass images / 255"):
        backdoor.reconstruct_trigger(mlp, x * 255, 0, steps=1)
    with pytest.raises(TypeError, match="x_clean: expected float pixels"):
        backdoor.reconstruct_trigger(mlp, (x * 255).to(torch.uint8), 0, steps=1)
    with pytest.raises(ValueError, match=r"target must be in 0\.\.9 \(a class of the model's outputs\), got 12"):
        backdoor.reconstruct_trigger(mlp, x, 12, steps=1)
    mask, pattern = backdoor.reconstruct_trigger(mlp, x, 3, steps=2, batch_size=4)
    assert mask.shape == pattern.shape == (28, 28)


@pytest.mark.parametrize("method", ["magnitude", "random", "ablation"])
def test_score_neurons_refuses_a_weight_layer_of_another_width(mlp, method):
    x, y = torch.rand(16, 784), torch.randint(0, 10, (16,))
    with pytest.raises(ValueError, match=r"weight_layers\['relu1'\] = 'fc2' has 6 output units but 'relu1' has 8 neurons"):
        pruning.score_neurons(mlp, method, {"relu1": "fc2"}, x, y)
    with pytest.raises(ValueError, match=r"readers\['relu1'\] = 'out' reads 6 units but 'relu1' has 8 neurons"):
        pruning.score_neurons(mlp, method, {"relu1": "fc1"}, x, y, readers={"relu1": "out"})
    with pytest.raises(ValueError, match=r"readers has no entry for 'relu2'"):
        pruning.score_neurons(mlp, method, {"relu1": "fc1", "relu2": "fc2"}, x, y, readers={"relu1": "fc2"})
    scores = pruning.score_neurons(mlp, method, {"relu1": "fc1", "relu2": "fc2"}, x, y, readers={"relu1": "fc2", "relu2": "out"})
    assert [len(s) for s in scores.values()] == [8, 6]


# ---- probes ----

def probe_data(n=60, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=gen)
    return f, (f[:, 0] > 0).long()


def test_fit_probe_reads_bfloat16_features():
    (f_tr, y_tr), (f_te, y_te) = probe_data(), probe_data(seed=1)
    bf = probes.fit_probe(f_tr.bfloat16(), y_tr, f_te.bfloat16(), y_te)
    exact = probes.fit_probe(f_tr.bfloat16().float(), y_tr, f_te.bfloat16().float(), y_te)
    assert bf.accuracy == exact.accuracy > 0.8, "bfloat16 features must be read as their float values"
    counts = probes.fit_probe(f_tr.sign().long(), y_tr, f_te.sign().long(), y_te)  # integer features stay accepted
    assert counts.accuracy > 0.8


@pytest.mark.parametrize("bad, match", [(NAN, "features_train holds 1 NaN"), (math.inf, "features_train holds 1 NaN or infinite")])
def test_fit_probe_refuses_nan_and_inf_features(bad, match):
    (f_tr, y_tr), (f_te, y_te) = probe_data(), probe_data(seed=1)
    f_tr[4, 2] = bad
    with pytest.raises(ValueError, match=match):
        probes.fit_probe(f_tr, y_tr, f_te, y_te)


def test_fit_probe_refuses_empty_splits_and_float_or_one_hot_labels():
    (f_tr, y_tr), (f_te, y_te) = probe_data(), probe_data(seed=1)
    with pytest.raises(ValueError, match=r"features_test is empty \(shape \(0, 5\)\)"):
        probes.fit_probe(f_tr, y_tr, f_te[:0], y_te[:0])
    with pytest.raises(TypeError, match=r"labels_train must be class indices, got torch.float32 values such as \[0\.5"):
        probes.fit_probe(f_tr, y_tr + 0.5, f_te, y_te)
    with pytest.raises(ValueError, match=r"labels_train must be one class index per example \(1-D\), got shape \(60, 2\) \(one-hot\?"):
        probes.fit_probe(f_tr, nn.functional.one_hot(y_tr), f_te, y_te)
    whole = probes.fit_probe(f_tr, y_tr.float(), f_te, y_te.float())  # whole-number floats stay accepted
    assert whole.accuracy == probes.fit_probe(f_tr, y_tr, f_te, y_te).accuracy


# ---- the journal's MLP in other dtypes ----

def test_the_mlp_runs_in_float64_and_bfloat16_and_float32_is_unchanged(mlp):
    x = torch.rand(64, 784)
    f32 = mlp(x)
    by_hand = mlp.out(mlp.relu2(mlp.fc2(mlp.relu1(mlp.fc1((x.float() - 0.1307) / 0.3081)))))
    assert torch.equal(f32, by_hand), "float32 results must not change"
    f64 = models.build_mlp({"sizes": [784, 8, 6, 10]})
    f64.load_state_dict(mlp.state_dict())
    f64 = f64.double().eval()
    out64 = f64(x.double())
    assert out64.dtype == torch.float64 and torch.equal(out64.argmax(-1), f32.argmax(-1))
    assert torch.allclose(out64.float(), f32, atol=1e-5)
    bf = f64.bfloat16()(x.bfloat16())
    assert bf.dtype == torch.bfloat16 and (bf.float().argmax(-1) == f32.argmax(-1)).float().mean() > 0.8
    assert torch.equal(mlp(x.double()), f32), "float64 images into a float32 model still work as before"
    assert "normalize.dtype_probe" not in mlp.state_dict(), "checkpoints must not change"


# ---- attribution, concepts ----

def test_attribution_and_concepts_refuse_bad_pixels(mlp):
    x = torch.rand(2, 784)
    x[0, 0] = NAN
    with pytest.raises(ValueError, match="x holds 1 NaN"):
        attribution.attribute(mlp, x, 0, "saliency")
    with pytest.raises(ValueError, match=r"target must be an int >= 0, got -1"):
        attribution.attribute(mlp, torch.rand(2, 784), -1, "saliency")
    with pytest.raises(ValueError, match=r"images must hold pixels in \[0, 1\], got values in \[0, 255\]"):
        mnist_mlp.count_holes(torch.zeros(1, 28, 28).index_fill(1, torch.tensor([3]), 255.0))
    with pytest.raises(ValueError, match=r"a must have 2 or 3"):
        attribution.rank_correlation(torch.rand(5), torch.rand(5))


# ---- property: NaN, empty and wrong-rank input to every public tool -> a clear error naming the argument ----

BOOK = char_features.RuleBook.from_text("First Citizen:\nWe are all resolved.\n", n_bigrams=5, n_trigrams=5)
CODES = BOOK.codes("We are resolved.")


def _cases(mlp, relu2_sae):
    y6 = torch.tensor([0, 1, 2, 0, 1, 2])
    truth = BOOK.matrix(CODES)
    return {  # name: (call on the bad tensor, the argument it stands for, a good value, kinds that apply)
        "sae.l0": (sae.l0, "latents", torch.rand(6, 4), "nan empty rank"),
        "sae.dead_fraction": (sae.dead_fraction, "latents", torch.rand(6, 4), "nan empty rank"),
        "sae.fvu": (lambda t: sae.fvu(t, torch.zeros_like(t)), "x", torch.rand(6, 4), "nan empty rank"),
        "sae.mean_max_cosine_similarity": (lambda t: sae.mean_max_cosine_similarity(t, torch.eye(4)), "true",
                                           torch.rand(3, 4), "nan empty rank"),
        "sae.encode": (lambda t: sae.encode(relu2_sae, t), "acts", torch.rand(6, 6), "nan empty rank"),
        "sae.evaluate_sae": (lambda t: sae.evaluate_sae(relu2_sae, t), "acts", torch.rand(6, 6), "nan empty rank"),
        "sae.train_sae": (lambda t: sae.train_sae(sae.make_sae("topk", 6, 12, k=2), t, n_samples=4, batch_size=2),
                          "data", torch.rand(6, 6), "nan empty rank"),
        "sae.top_k_purity": (lambda t: sae.top_k_purity(t, y6[:len(t)], k=2), "acts", torch.rand(6, 3), "nan empty rank"),
        "neurons.get_activations": (lambda t: neurons.get_activations(mlp, "relu1", t), "x", torch.rand(6, 784), "nan empty"),
        "neurons.class_means": (lambda t: neurons.class_means(t, y6[:len(t)]), "acts", torch.rand(6, 3), "nan empty rank"),
        "neurons.class_selectivity": (lambda t: neurons.class_selectivity(t, y6[:len(t)]), "acts", torch.rand(6, 3),
                                      "nan empty rank"),
        "neurons.top_activating": (lambda t: neurons.top_activating(t, 0), "acts", torch.rand(6, 3), "nan empty rank"),
        "ablation.flip_rate": (lambda t: ablation.flip_rate(mlp, "relu1", t, 0, [0], None), "x", torch.rand(6, 784), "nan empty"),
        "ablation.class_accuracy_drop": (lambda t: ablation.class_accuracy_drop(mlp, "relu1", t, y6[:len(t)]), "x",
                                         torch.rand(6, 784), "nan empty"),
        "ablation.ablate": (lambda t: _run_ablated(mlp, t), "values", torch.rand(8), "nan empty rank"),
        "probes.fit_probe": (lambda t: probes.fit_probe(t, y6[:len(t)] % 2, torch.rand(6, 3), y6 % 2), "features_train",
                             torch.rand(6, 3), "nan empty rank"),
        "attribution.attribute": (lambda t: attribution.attribute(mlp, t, 0, "saliency"), "x", torch.rand(2, 784), "nan empty rank"),
        "attribution.rank_correlation": (lambda t: attribution.rank_correlation(t, t.clone()), "a", torch.rand(2, 9),
                                         "nan empty rank"),
        "mnist_mlp.count_holes": (mnist_mlp.count_holes, "images", torch.rand(2, 28, 28), "nan empty rank"),
        "mnist_mlp.stroke_thickness": (mnist_mlp.stroke_thickness, "images", torch.rand(2, 28, 28), "nan empty rank"),
        "mnist_mlp.slant": (mnist_mlp.slant, "images", torch.rand(2, 28, 28), "nan empty rank"),
        "mnist_mlp.binary_labels": (mnist_mlp.binary_labels, "images", torch.rand(2, 28, 28), "nan empty rank"),
        "char_features.f1_score": (lambda t: char_features.f1_score(t, torch.ones_like(t, dtype=torch.bool)), "pred",
                              torch.tensor([1, 0, 1]), "nan empty rank"),
        "char_features.fit_rules": (lambda t: char_features.fit_rules(t, BOOK, CODES[:len(t)]), "acts", torch.rand(len(CODES), 3),
                               "nan empty rank"),
        "char_features.score_rules": (lambda t: char_features.score_rules(t, BOOK, CODES[:len(t)], char_features.RuleFit(
            torch.zeros(3, dtype=torch.long), torch.zeros(3), torch.zeros(3))), "acts", torch.rand(len(CODES), 3), "nan empty rank"),
        "char_features.top_rule_share": (lambda t: char_features.top_rule_share(t, truth[:len(t)], k=2), "acts",
                                    torch.rand(len(CODES), 3), "nan empty rank"),
        "char_features.greedy_cover": (lambda t: char_features.greedy_cover(t, truth, k=2), "acts", torch.rand(len(CODES)),
                                  "nan empty rank"),
        "char_features.random_topk_latents": (lambda t: char_features.random_topk_latents(t, 8, 2), "acts", torch.rand(6, 4),
                                         "nan empty rank"),
        "backdoor.reconstruct_trigger": (lambda t: backdoor.reconstruct_trigger(mlp, t, 0, steps=1), "x_clean",
                                         torch.rand(4, 28, 28), "nan empty rank"),
        "backdoor.apply_trigger": (backdoor.apply_trigger, "images", torch.rand(4, 28, 28), "nan empty rank"),
        "pruning.score_neurons": (lambda t: pruning.score_neurons(mlp, "magnitude", {"relu1": "fc1"}, t, y6[:len(t)]), "x",
                                  torch.rand(6, 784), "nan empty"),
        "pruning.lowest": (lambda t: pruning.lowest({"relu1": t}, 0.5), "scores['relu1']", torch.rand(6), "nan empty rank"),
        "backdoor.neurons_for_share": (lambda t: backdoor.neurons_for_share(t, 0.5), "scores", torch.rand(6), "nan empty rank"),
        "sae.logit_effect": (lambda t: sae.logit_effect(mlp, "relu2", t, torch.rand(2, 784)), "direction", torch.rand(6),
                             "nan empty rank"),
        "sae.class_contributions": (lambda t: sae.class_contributions(t, torch.tensor([0, 1, 0])[:len(t)], torch.rand(2, 2),
                                                                      torch.ones(2)), "latents", torch.rand(3, 2), "nan empty rank"),
        "regularisation.dead_neurons": (regularisation.dead_neurons, "acts", torch.rand(6, 3), "nan empty rank"),
        "regularisation.classes_per_neuron": (lambda t: regularisation.classes_per_neuron(t, y6[:len(t)]), "acts",
                                              torch.rand(6, 3), "nan empty rank"),
        "fourier.gini": (fourier.gini, "x", torch.rand(5), "nan empty rank"),
        "fourier.frequency_norms": (fourier.frequency_norms, "coefficients", torch.rand(5, 3), "nan empty rank"),
        "grokking.neuron_frequencies": (lambda t: grokking.neuron_frequencies(t, 3), "acts", torch.rand(9, 4), "nan empty rank"),
        "grokking.cos_fit": (lambda t: grokking.cos_fit(t, 3, [1]), "logits", torch.rand(9, 3), "nan empty rank"),
    }


CORRECT = {  # (tool, kind): the check of a correct result, where the input is not bad for that tool
    ("backdoor.apply_trigger", "empty"): lambda out: out.shape == (0, 28, 28),  # no images in, none out
    ("char_features.f1_score", "rank"): lambda out: out == 1.0,  # one prediction, right: F1 of a 0-d pair is well defined
    ("fourier.gini", "rank"): lambda out: out == 0.0,  # one value holds everything: (n-1)/n = 0
    ("fourier.frequency_norms", "rank"): lambda out: out.shape == (2,),  # a vector in Fourier coordinates (p = 3)
}


def _run_ablated(mlp, values):
    with ablation.ablate(mlp, "relu1", [0], values):
        return mlp(torch.rand(2, 784))


def _bad(good: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "nan":
        bad = good.clone().float()
        bad.view(-1)[0] = NAN
        return bad
    return good[:0] if kind == "empty" else good[0]


CASE_NAMES = ["sae.l0", "sae.dead_fraction", "sae.fvu", "sae.mean_max_cosine_similarity", "sae.encode", "sae.evaluate_sae",
              "sae.train_sae", "sae.top_k_purity", "neurons.get_activations", "neurons.class_means",
              "neurons.class_selectivity", "neurons.top_activating", "ablation.flip_rate", "ablation.class_accuracy_drop",
              "ablation.ablate", "probes.fit_probe", "attribution.attribute", "attribution.rank_correlation",
              "mnist_mlp.count_holes", "mnist_mlp.stroke_thickness", "mnist_mlp.slant", "mnist_mlp.binary_labels",
              "char_features.f1_score", "char_features.fit_rules", "char_features.score_rules", "char_features.top_rule_share",
              "char_features.greedy_cover", "char_features.random_topk_latents", "backdoor.reconstruct_trigger",
              "backdoor.apply_trigger", "pruning.score_neurons", "pruning.lowest", "backdoor.neurons_for_share",
              "sae.logit_effect", "sae.class_contributions", "regularisation.dead_neurons", "regularisation.classes_per_neuron",
              "fourier.gini", "fourier.frequency_norms", "grokking.neuron_frequencies", "grokking.cos_fit"]


@pytest.mark.parametrize("kind", ["nan", "empty", "rank"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_tool_refuses_nan_empty_and_wrong_rank_input_by_name(mlp, relu2_sae, name, kind):
    call, argument, good, kinds = _cases(mlp, relu2_sae)[name]
    if kind not in kinds.split():
        pytest.skip(f"{name}: x's rank is the model's to judge (the MLP refuses it in its Normalize)")
    call(good)  # the good input works
    if (name, kind) in CORRECT:
        assert CORRECT[name, kind](call(_bad(good, kind))), f"{name} on {kind} input must give the correct result"
        return
    with pytest.raises((ValueError, TypeError)) as err:
        call(_bad(good, kind))
    assert argument in str(err.value), f"{name} on {kind} input: the error must name {argument!r}, got: {err.value}"


def test_the_property_test_covers_every_case():
    assert sorted(CASE_NAMES) == sorted(_cases(None, None))


def test_within_class_probes_and_pooled_refuse_when_no_class_can_be_probed():
    x = torch.rand(8, 3)
    same = torch.zeros(8, dtype=torch.long)  # one label value in every class: nothing to fit
    classes = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="nothing to probe within a class"):
        probes.within_class_probes(x, same, classes, x, same, classes)
    with pytest.raises(ValueError, match="per_class holds no test examples"):
        probes.pooled({})
